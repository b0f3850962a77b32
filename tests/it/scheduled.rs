//! Scheduled checks: `--max-runtime` stops resumably, `--lock` refuses an overlapping run,
//! `[task] report-storage` keeps every run's report and fix SQL, `report history` lists
//! them, and `--metrics-file` writes Prometheus metrics.

use crate::resume::{fix_sql, load, results, uninterrupted_reference};
use crate::scenario::{describe, syncgate, Scenario};
use std::sync::Arc;
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
