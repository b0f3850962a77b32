//! Scheduled checks: `--max-runtime` stops resumably, `--lock` refuses an overlapping run,
//! `[task] report-storage` keeps every run's report and fix SQL, `report history` lists
//! them, and `--metrics-file` writes Prometheus metrics.

use crate::resume::{fix_sql, load, results, uninterrupted_reference};
use crate::scenario::{describe, syncgate, Scenario};
use std::process::Output;
use std::sync::Arc;
use syncgate::local::LocalS3;
use syncgate::storage::{Lease, LocalStore, ObjectStore};

/// A run stopped by `--max-runtime` exits 3 with the resume command and metrics saying
/// so; `--resume` then ends with exactly the uninterrupted run's result and fix SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_runtime_stops_resumably_and_the_resume_equals_an_uninterrupted_run() {
    let s = Scenario::empty().await;
    load(&s).await;
    let cfg = crate::resume::config(&s);
    let cfg = cfg.to_str().unwrap().to_string();
    let (reference, _) = uninterrupted_reference(&s, &cfg);
    let metrics = s.dir.path().join("syncgate.prom");
    let metrics_arg = metrics.to_str().unwrap();

    let out = syncgate(&[
        "check",
        "-C",
        &cfg,
        "--check-thread-count",
        "1",
        "--max-runtime",
        "300ms",
        "--metrics-file",
        metrics_arg,
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stopped by the --max-runtime limit"),
        "{stderr}"
    );
    assert!(stderr.contains("--resume"), "{stderr}");
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(prom.contains("syncgate_check_exit_code 3\n"), "{prom}");
    assert!(!prom.contains("last_success"), "never passed: {prom}");

    let out = syncgate(&[
        "check",
        "-C",
        &cfg,
        "--resume",
        "--metrics-file",
        metrics_arg,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        results(&s.summary()),
        results(&crate::scenario::summary(&reference))
    );
    assert_eq!(fix_sql(&s.output_dir()), fix_sql(&reference));
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(prom.contains("syncgate_check_exit_code 1\n"), "{prom}");
    assert!(
        prom.contains("syncgate_check_tables{result=\"different\"} 4\n"),
        "{prom}"
    );
}

/// `--lock` refuses while a live run holds the lease in report-storage (exit 4, one line
/// naming the holder) and runs once it is released; every run's report and fix SQL land in
/// report-storage, and `report history` lists them in order with their results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_refuses_overlaps_and_report_storage_keeps_the_history() {
    let s = Scenario::load("basic_drift", true).await;
    let reports = s.dir.path().join("reports");
    let cfg = s.config(&format!(
        "report-storage = \"local://{}\"\n",
        reports.display()
    ));
    let cfg = cfg.to_str().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(&reports).await.unwrap());

    // Another run (this test process, alive) holds the lock.
    let held = Lease::acquire(
        store.clone(),
        syncgate::runs::LOCK_KEY,
        "check -C other.toml",
    )
    .await
    .unwrap();
    let out = syncgate(&["check", "-C", cfg, "--lock"]);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("is locked by `check -C other.toml`"),
        "{stderr}"
    );
    assert!(!s.output_dir().join("summary.json").exists(), "nothing ran");
    held.release().await.unwrap();

    let out = syncgate(&["check", "-C", cfg, "--lock"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        store.get(syncgate::runs::LOCK_KEY).await.unwrap().is_none(),
        "released"
    );
    assert_eq!(s.apply_fix_files().await, 3);
    // Distinct run ids need distinct start seconds.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let out = syncgate(&["check", "-C", cfg, "--lock"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    let out = syncgate(&["report", "history", "-C", cfg, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert_eq!(runs[0]["result"], "different");
    assert_eq!(runs[0]["tables_different"], 3);
    assert_eq!(runs[1]["result"], "equal");
    let first = runs[0]["id"].as_str().unwrap();
    let published = store.list(&format!("runs/{first}")).await.unwrap();
    let keys: Vec<&str> = published.iter().map(|o| o.key.as_str()).collect();
    assert!(
        keys.iter().any(|k| k.ends_with("/summary.json")),
        "{keys:?}"
    );
    assert_eq!(
        keys.iter()
            .filter(|k| k.contains("/fix-on-down/") && k.ends_with(".sql"))
            .count(),
        3,
        "{keys:?}"
    );
    let out = syncgate(&["report", "history", "-C", cfg]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(first) && table.contains("different"),
        "{table}"
    );
}

/// One check spread over three processes (`--shard I/3`, the index also from
/// `JOB_COMPLETION_INDEX` as in a Kubernetes Indexed Job), joined by `report merge`: the
/// same tables, counts and fix SQL as a single process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_merged_equal_a_single_process_run() {
    let s = Scenario::empty().await;
    load(&s).await;
    let cfg = crate::resume::config(&s);
    let cfg = cfg.to_str().unwrap().to_string();
    let (reference, _) = uninterrupted_reference(&s, &cfg);

    let mut dirs = Vec::new();
    let mut owned = 0;
    for i in 0..3 {
        let dir = s.dir.path().join(format!("shard-{i}"));
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_syncgate"));
        cmd.args(["check", "-C", &cfg, "--output-dir", dir.to_str().unwrap()]);
        if i == 2 {
            cmd.args(["--shard", "3"]).env("JOB_COMPLETION_INDEX", "2");
        } else {
            cmd.args(["--shard", &format!("{i}/3")]);
        }
        let out = cmd.env_remove("RUST_LOG").output().unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            describe(&out)
        );
        let tables = crate::scenario::summary(&dir)["tables"]
            .as_array()
            .unwrap()
            .len();
        owned += tables;
        dirs.push(dir);
    }
    assert_eq!(owned, 4, "every table in exactly one shard");

    let merged = s.dir.path().join("merged");
    let mut args = vec!["report", "merge", "--output-dir", merged.to_str().unwrap()];
    args.extend(dirs.iter().map(|d| d.to_str().unwrap()));
    let out = syncgate(&args);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        results(&crate::scenario::summary(&merged)),
        results(&crate::scenario::summary(&reference))
    );
    assert_eq!(fix_sql(&merged), fix_sql(&reference));

    let out = syncgate(&["check", "-C", &cfg, "--shard", "3/3"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

/// A local S3 server with a bucket for reports, and the `report-storage` URI of a prefix
/// in it (credentials included).
async fn s3_report_storage(s: &Scenario) -> (LocalS3, String) {
    let server = LocalS3::start(&s.dir.path().join("s3"), "syncgate-test", "Sg+s3cr3t/V=1")
        .await
        .expect("local S3");
    server.create_bucket("reports").expect("bucket");
    let uri = server
        .uri("reports")
        .replacen("s3://reports?", "s3://reports/syncgate?", 1);
    assert!(uri.starts_with("s3://reports/syncgate?"), "{uri}");
    (server, uri)
}

/// `cfg` with `[task] report-storage = uri`, written next to it as `name`.
fn with_report_storage(cfg: &str, uri: &str, name: &str) -> String {
    let text = std::fs::read_to_string(cfg).unwrap();
    assert!(text.contains("\n[task]\n"), "{text}");
    let text = text.replacen(
        "\n[task]\n",
        &format!("\n[task]\nreport-storage = \"{uri}\"\n"),
        1,
    );
    let path = std::path::Path::new(cfg).with_file_name(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Runs the binary on a blocking thread (the S3 server serves on this runtime meanwhile).
async fn syncgate_with_env(args: Vec<String>, env: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_syncgate"))
            .args(&args)
            .env_remove("RUST_LOG")
            .env_remove("SYNCGATE_RUN_ID")
            .env_remove("JOB_COMPLETION_INDEX")
            .envs(env)
            .output()
            .expect("run syncgate")
    })
    .await
    .unwrap()
}

/// `syncgate report merge --run RUN -C CFG --output-dir OUT`.
async fn report_merge(cfg: &str, run: &str, out: &std::path::Path) -> Output {
    let args = [
        "report",
        "merge",
        "--run",
        run,
        "-C",
        cfg,
        "--output-dir",
        out.to_str().unwrap(),
    ];
    syncgate_with_env(words(&args), vec![]).await
}

fn words(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// `report history --json`, parsed.
async fn history(cfg: &str) -> Vec<serde_json::Value> {
    let out = syncgate_with_env(words(&["report", "history", "-C", cfg, "--json"]), vec![]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    runs.as_array().unwrap().clone()
}

/// Three processes of one check (`--shard I/3` with one run id, given as `--run-id` or in
/// `SYNCGATE_RUN_ID`, the index also from `JOB_COMPLETION_INDEX`) publish their parts to
/// report-storage on S3; `report merge --run` joins them from there into the same tables,
/// counts and fix SQL as a single process, and publishes the run once for `report history`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_published_to_s3_merged_by_run_id_equal_a_single_process_run() {
    let s = Scenario::empty().await;
    load(&s).await;
    let cfg = crate::resume::config(&s);
    let cfg = cfg.to_str().unwrap().to_string();
    let (reference, _) = uninterrupted_reference(&s, &cfg);
    let (server, uri) = s3_report_storage(&s).await;
    let cfg = with_report_storage(&cfg, &uri, "s3.toml");
    let run = "syncgate-check-29512345";

    let shards = (0..3).map(|i| {
        let dir = s.dir.path().join(format!("shard-{i}"));
        let mut args = words(&["check", "-C", &cfg, "--lock", "--output-dir"]);
        args.push(dir.to_str().unwrap().to_string());
        let mut env = vec![];
        match i {
            0 => args.extend(words(&["--shard", "0/3", "--run-id", run])),
            1 => {
                args.extend(words(&["--shard", "1/3"]));
                env.push(("SYNCGATE_RUN_ID", run.to_string()));
            }
            _ => {
                args.extend(words(&["--shard", "3", "--run-id", run]));
                env.push(("JOB_COMPLETION_INDEX", "2".to_string()));
            }
        }
        syncgate_with_env(args, env)
    });
    let mut owned = 0;
    for (i, out) in futures_util::future::join_all(shards)
        .await
        .into_iter()
        .enumerate()
    {
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            describe(&out)
        );
        let dir = s.dir.path().join(format!("shard-{i}"));
        owned += crate::scenario::summary(&dir)["tables"]
            .as_array()
            .unwrap()
            .len();
    }
    assert_eq!(owned, 4, "every table in exactly one shard");

    let store = syncgate::storage::open(&syncgate::storage::StorageUri::parse(&uri).unwrap())
        .await
        .unwrap();
    for i in 0..3 {
        let key = format!("runs/{run}/shard-{i}-of-3/summary.json");
        assert!(store.head(&key).await.unwrap().is_some(), "{key}");
    }
    // Published but not merged yet: one run, not three.
    let runs = history(&cfg).await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["id"], run);
    assert_eq!(runs[0]["result"], "unmerged");
    assert_eq!(
        runs[0]["shards"],
        serde_json::json!({"published": 3, "count": 3})
    );
    assert_eq!(runs[0]["tables"], 4);

    let merged = s.dir.path().join("merged");
    let out = report_merge(&cfg, run, &merged).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        results(&crate::scenario::summary(&merged)),
        results(&crate::scenario::summary(&reference))
    );
    assert_eq!(fix_sql(&merged), fix_sql(&reference));

    // The merged run is listed once, with its result, counts and shards.
    let runs = history(&cfg).await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["id"], run);
    assert_eq!(runs[0]["result"], "different");
    assert_eq!(runs[0]["tables"], 4);
    assert_eq!(runs[0]["tables_different"], 4);
    assert_eq!(
        runs[0]["shards"],
        serde_json::json!({"published": 3, "count": 3})
    );
    let reference_summary = crate::scenario::summary(&reference);
    let missing: u64 = reference_summary["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["rows_missing"].as_u64().unwrap())
        .sum();
    assert_eq!(runs[0]["rows_missing"], missing);
    // Its files are the run's own, next to the shards' parts.
    let keys: Vec<String> = store
        .list(&format!("runs/{run}"))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    let own_fix = keys
        .iter()
        .filter(|k| k.starts_with(&format!("runs/{run}/fix-on-down/")))
        .count();
    assert_eq!(own_fix, fix_sql(&reference).len(), "{keys:#?}");
    assert!(
        keys.contains(&format!("runs/{run}/summary.json")),
        "{keys:#?}"
    );
    server.stop().await;
}

/// `report merge --run` refuses a run one of whose shards has not published, with one line
/// naming that shard, and publishes nothing; the missing shard run with `--merge` finds
/// every part published and joins them itself. Run ids that are not one key segment are
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_shard_is_named_and_the_last_shard_merges() {
    let s = Scenario::empty().await;
    load(&s).await;
    let cfg = crate::resume::config(&s);
    let cfg = cfg.to_str().unwrap().to_string();
    let (reference, _) = uninterrupted_reference(&s, &cfg);
    let (server, uri) = s3_report_storage(&s).await;
    let cfg = with_report_storage(&cfg, &uri, "s3.toml");
    let run = "nightly-7";
    let check = |i: u32, merge: bool| {
        let dir = s.dir.path().join(format!("shard-{i}"));
        let mut args = words(&["check", "-C", &cfg, "--run-id", run, "--output-dir"]);
        args.push(dir.to_str().unwrap().to_string());
        args.extend(["--shard".to_string(), format!("{i}/3")]);
        if merge {
            args.push("--merge".into());
        }
        syncgate_with_env(args, vec![])
    };
    for i in [0, 2] {
        let out = check(i, true).await;
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            describe(&out)
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("merged the shards"),
            "not the last shard: {}",
            describe(&out)
        );
    }

    let merged = s.dir.path().join("merged");
    let out = report_merge(&cfg, run, &merged).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("shard 1/3"), "{stderr}");
    assert!(
        !stderr.contains("shard 0/3") && !stderr.contains("shard 2/3"),
        "{stderr}"
    );
    assert!(stderr.contains(run), "{stderr}");
    assert!(!merged.join("summary.json").exists());
    let store = syncgate::storage::open(&syncgate::storage::StorageUri::parse(&uri).unwrap())
        .await
        .unwrap();
    let summary = format!("runs/{run}/summary.json");
    assert!(
        store.head(&summary).await.unwrap().is_none(),
        "nothing merged"
    );
    let runs = history(&cfg).await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["result"], "unmerged");
    assert_eq!(
        runs[0]["shards"],
        serde_json::json!({"published": 2, "count": 3})
    );

    // The missing shard, last to publish, merges.
    let out = check(1, true).await;
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        describe(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("merged the shards of run {run}: different")),
        "{}",
        describe(&out)
    );
    assert!(store.head(&summary).await.unwrap().is_some());
    let by_last = s.dir.path().join("shard-1").join("merged");
    assert_eq!(
        results(&crate::scenario::summary(&by_last)),
        results(&crate::scenario::summary(&reference))
    );
    assert_eq!(fix_sql(&by_last), fix_sql(&reference));
    let runs = history(&cfg).await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["result"], "different");
    assert_eq!(
        runs[0]["shards"],
        serde_json::json!({"published": 3, "count": 3})
    );

    for bad in ["../x", "a/b", ".."] {
        let out = syncgate_with_env(
            words(&["check", "-C", &cfg, "--shard", "0/3", "--run-id", bad]),
            vec![],
        )
        .await;
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("run id '{bad}'")),
            "{}",
            describe(&out)
        );
    }
    server.stop().await;
}
