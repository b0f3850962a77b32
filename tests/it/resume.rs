//! Checkpoint and resume: a run killed with SIGKILL and resumed with `--resume` ends with the
//! result of an uninterrupted run; a changed configuration is refused.

use crate::scenario::{describe, syncgate, Scenario};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEYED: [&str; 3] = ["a", "b", "c"];

/// Three keyed tables of 40,000 rows (even ids) and a keyless one, identical on both sides;
/// then drift spread over the whole key space downstream: deleted, changed and added rows.
/// `c`'s key is text (the same numbers as strings), so it is split by probes and resumed
/// from a text bound.
pub(crate) async fn load(s: &Scenario) {
    let seed = |t: &str| {
        let id = if t == "c" { "VARCHAR(12)" } else { "INT" };
        format!(
            "CREATE TABLE {t} (id {id} PRIMARY KEY, k INT NOT NULL, v VARCHAR(40)); \
             SET SESSION max_recursive_iterations = 1000000; \
             INSERT INTO {t} WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r \
             WHERE n < 40000) SELECT n * 2, n % 97, CONCAT('{t}-', n) FROM r"
        )
    };
    let keyless = "CREATE TABLE d (k INT, v VARCHAR(20)); \
                   SET SESSION max_recursive_iterations = 1000000; \
                   INSERT INTO d WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 \
                   FROM r WHERE n < 3000) SELECT n % 500, CONCAT('d-', n % 700) FROM r";
    for db in [&s.up, &s.down] {
        for t in KEYED {
            db.exec(&seed(t)).await;
        }
        db.exec(keyless).await;
    }
    for (i, t) in KEYED.iter().enumerate() {
        let m = 601 + 100 * i;
        s.down
            .exec(&format!(
                "DELETE FROM {t} WHERE id % {m} = 0; \
                 UPDATE {t} SET v = CONCAT(v, '~') WHERE id % {} = 4; \
                 INSERT INTO {t} SELECT id + 1, 0, 'extra' FROM {t} WHERE id % {} = 2",
                m + 306,
                m + 600
            ))
            .await;
    }
    s.down
        .exec("DELETE FROM d WHERE k = 7 LIMIT 3; INSERT INTO d VALUES (9999, 'extra')")
        .await;
}

pub(crate) fn config(s: &Scenario) -> PathBuf {
    s.config(&format!(
        "target-configs = [\"small\"]\n\n[table-configs.small]\ntarget-tables = [\"{}.*\"]\n\
         chunk-size = 100\n",
        s.up.name()
    ))
}

/// The same with both sides read at a consistent snapshot (pinned again on resume).
pub(crate) fn consistent_config(s: &Scenario) -> PathBuf {
    let path = config(s);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "password = \"\"\n",
        "password = \"\"\nsnapshot = \"consistent\"\n",
    );
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) fn checkpoint_file(out: &Path) -> PathBuf {
    out.join("checkpoint").join("checkpoint.json")
}

pub(crate) fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// `(finished tables, largest prefix of a table in progress)` of a checkpoint.
pub(crate) fn progress_of(ck: &Value) -> (usize, u64) {
    let tables = ck["tables"].as_array().cloned().unwrap_or_default();
    let finished = tables.iter().filter(|t| t["state"] == "finished").count();
    let prefix = tables
        .iter()
        .filter(|t| t["state"] == "in_progress")
        .filter_map(|t| t["prefix"]["chunks"].as_u64())
        .max()
        .unwrap_or(0);
    (finished, prefix)
}

/// The summary fields that must not depend on an interruption, per table.
pub(crate) fn results(summary: &Value) -> Vec<Value> {
    summary["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| {
            serde_json::json!({
                "table": t["table"], "result": t["result"], "error": t["error"],
                "rows_missing": t["rows_missing"], "rows_extra": t["rows_extra"],
                "rows_changed": t["rows_changed"], "rows_upstream": t["rows_upstream"],
                "rows_downstream": t["rows_downstream"], "chunks": t["chunks"],
                "chunks_different": t["chunks_different"], "fix_sql": t["fix_sql"],
            })
        })
        .collect()
}

/// The fix SQL files' lines without the header comments (time, read points), per file.
pub(crate) fn fix_sql(out: &Path) -> Vec<(String, Vec<String>)> {
    sql_files(out, "fix-on-down")
}

/// The undo files, as [`fix_sql`].
fn undo_sql(out: &Path) -> Vec<(String, Vec<String>)> {
    sql_files(out, "undo-on-down")
}

fn sql_files(out: &Path, dir: &str) -> Vec<(String, Vec<String>)> {
    let dir = out.join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fix dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let lines = text
                .lines()
                .filter(|l| !l.starts_with("-- ") || l.starts_with("-- range:"))
                .map(str::to_string)
                .collect();
            (f.file_name().unwrap().to_string_lossy().into_owned(), lines)
        })
        .collect()
}

/// The reference: one uninterrupted run into another output directory (not part of the
/// fingerprint), with other parallelism (not part of it either). Its directory and wall time.
pub(crate) fn uninterrupted_reference(s: &Scenario, cfg: &str) -> (PathBuf, Duration) {
    reference_run(s.dir.path(), cfg)
}

/// [`uninterrupted_reference`] into `dir/reference`.
pub(crate) fn reference_run(dir: &Path, cfg: &str) -> (PathBuf, Duration) {
    let reference = dir.join("reference");
    let t0 = Instant::now();
    let out = syncgate(&[
        "check",
        "-C",
        cfg,
        "--output-dir",
        reference.to_str().unwrap(),
        "--check-thread-count",
        "4",
    ]);
    let uninterrupted = t0.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        !checkpoint_file(&reference).exists(),
        "a completed run removes its checkpoint"
    );
    (reference, uninterrupted)
}

/// The same check, killed with SIGKILL once one table is finished and another has a
/// finished prefix: the checkpoint seen before the kill and the one on disk after it.
pub(crate) fn killed_after_partial_progress(
    cfg: &str,
    out_dir: &Path,
    uninterrupted: Duration,
) -> (Value, Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args(["check", "-C", cfg, "--check-thread-count", "1"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start syncgate");
    let deadline = Instant::now() + Duration::from_secs(120);
    let saved = loop {
        if let Some(ck) = read_json(&checkpoint_file(out_dir)) {
            let (finished, prefix) = progress_of(&ck);
            if finished >= 1 && prefix > 0 {
                child.kill().expect("kill -9");
                break ck;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the run ended ({status}) before the checkpoint showed a finished table and a \
                 partly checked one (an uninterrupted run takes {uninterrupted:?})"
            );
        }
        assert!(Instant::now() < deadline, "no checkpoint progress");
        std::thread::sleep(Duration::from_millis(5));
    };
    child.wait().unwrap();
    // The file on disk after the kill is complete and at least as far as the one seen.
    let on_disk = read_json(&checkpoint_file(out_dir)).expect("checkpoint after kill -9");
    let (finished, prefix) = progress_of(&on_disk);
    assert!(finished >= 1 && prefix > 0, "{on_disk:#}");
    eprintln!(
        "uninterrupted run {uninterrupted:?}; killed with {finished} tables finished and a \
         prefix of {prefix} chunks"
    );
    (saved, on_disk)
}

/// What the checkpoint held was not checked again.
fn assert_checkpoint_not_rechecked(on_disk: &Value, resumed: &Value) {
    let entries = on_disk["tables"].as_array().unwrap();
    for t in resumed["tables"].as_array().unwrap() {
        let entry = entries.iter().find(|e| e["table"] == t["table"]);
        let want = match entry {
            Some(e) if e["state"] == "finished" => t["chunks"].as_u64().unwrap(),
            Some(e) => e["prefix"]["chunks"].as_u64().unwrap(),
            None => 0,
        };
        assert_eq!(t["resumed_chunks"].as_u64(), Some(want), "{t:#}");
    }
    assert!(
        resumed["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["resumed_chunks"].as_u64() > Some(0) && t["resumed_chunks"] != t["chunks"]),
        "one table continued from a prefix: {resumed:#}"
    );
}

/// The consistent snapshots were pinned again: the report says which tables were read at
/// the old points.
fn assert_resume_warning(on_disk: &Value, resumed: &Value) {
    let warnings: Vec<&str> = resumed["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w.as_str())
        .filter(|w| w.starts_with("resumed from a checkpoint"))
        .collect();
    assert_eq!(warnings.len(), 1, "{resumed:#}");
    eprintln!("{}", warnings[0]);
    let old_point = on_disk["tables"][0]["read_at"][0]["upstream"]
        .as_str()
        .unwrap();
    let new_point = resumed["upstream"][0]["snapshot"].as_str().unwrap();
    assert!(old_point.starts_with("consistent snapshot"), "{old_point}");
    assert_ne!(old_point, new_point);
    assert!(warnings[0].contains(old_point), "{}", warnings[0]);
    assert!(
        warnings[0].contains(&format!("the rest at upstream {new_point}")),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].contains("chunks)"), "{}", warnings[0]);
}

/// Every downstream row of the loaded tables as hex text, in order, and each table's
/// `CHECKSUM TABLE`.
async fn downstream_rows(s: &Scenario) -> Vec<String> {
    let mut out = Vec::new();
    for (t, cols) in [
        ("a", "id, k, v"),
        ("b", "id, k, v"),
        ("c", "id, k, v"),
        ("d", "k, v"),
    ] {
        let hexed: Vec<String> = cols
            .split(", ")
            .map(|c| format!("IFNULL(HEX({c}), 'NULL')"))
            .collect();
        let rows: Vec<String> = s
            .down
            .query(&format!(
                "SELECT CONCAT_WS('|', {}) FROM {t} ORDER BY {cols}",
                hexed.join(", ")
            ))
            .await;
        out.push(format!("{t}: {}", rows.join(",")));
        let ck: Vec<(String, Option<u64>)> = s.down.query(&format!("CHECKSUM TABLE {t}")).await;
        out.push(format!("{t} checksum {:?}", ck[0].1));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_run_resumes_to_the_uninterrupted_result() {
    let s = Scenario::empty().await;
    load(&s).await;
    let cfg = consistent_config(&s);
    let cfg = cfg.to_str().unwrap().to_string();

    let (reference, uninterrupted) = uninterrupted_reference(&s, &cfg);
    let out_dir = s.output_dir();
    let (saved, on_disk) = killed_after_partial_progress(&cfg, &out_dir, uninterrupted);

    let out = syncgate(&["check", "-C", &cfg, "--resume"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let resumed = s.summary();
    assert_eq!(
        results(&resumed),
        results(&crate::scenario::summary(&reference)),
        "resumed run differs from the uninterrupted one\n{}",
        describe(&out)
    );
    assert_eq!(fix_sql(&out_dir), fix_sql(&reference));
    assert!(!fix_sql(&out_dir).is_empty());
    assert_eq!(undo_sql(&out_dir), undo_sql(&reference));

    // The resumed run's fix, then its undo (parts from before and after the kill joined),
    // put the downstream back byte for byte.
    let before = downstream_rows(&s).await;
    let applied = crate::scenario::apply_fix_dir(&s.down, &out_dir).await;
    assert_eq!(applied.len(), 4);
    assert_ne!(
        downstream_rows(&s).await,
        before,
        "the fix changed the downstream"
    );
    let mut undo: Vec<PathBuf> = std::fs::read_dir(out_dir.join("undo-on-down"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    undo.sort();
    assert_eq!(undo.len(), 4);
    for f in undo {
        s.down.exec(&std::fs::read_to_string(f).unwrap()).await;
    }
    assert_eq!(downstream_rows(&s).await, before);

    assert_checkpoint_not_rechecked(&on_disk, &resumed);
    assert_resume_warning(&on_disk, &resumed);
    let txt = std::fs::read_to_string(out_dir.join("summary.txt")).unwrap();
    assert!(txt.contains("resumed from a checkpoint"), "{txt}");
    // A completed run leaves neither the checkpoint nor part files behind.
    assert!(!checkpoint_file(&out_dir).exists());
    assert!(!out_dir.join("fix-on-down").join(".parts").exists());
    assert!(progress_of(&saved).0 >= 1);
    // A table finished before the interruption says where its chunks came from.
    let text = describe(&out);
    assert!(text.contains("chunks from the checkpoint)"), "{text}");
    assert!(!text.contains(": different (0 chunks"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_under_a_changed_config_is_refused() {
    let s = Scenario::empty().await;
    s.up.exec("CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 1)")
        .await;
    s.down
        .exec("CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 2)")
        .await;
    let cfg = config(&s);
    let cfg = cfg.to_str().unwrap().to_string();
    // A checkpoint as an interrupted run of this config leaves it (a run that completes
    // removes its own, so write one for the same fingerprint by hand).
    let config = syncgate::config::Config::from_file(Path::new(&cfg)).unwrap();
    let job = syncgate::job::job_from_config(&config, &Default::default()).unwrap();
    let ck = syncgate::checkpoint::Checkpoint {
        version: syncgate::checkpoint::FORMAT_VERSION,
        fingerprint: job.fingerprint.hash.clone(),
        config: job.fingerprint.config.clone(),
        written_at: "2025-01-01T00:00:00Z".into(),
        tidb_auto: None,
        tables: vec![],
    };
    syncgate::checkpoint::save(&s.output_dir(), &ck).unwrap();

    // Another chunk size changes results: refused, one line, nothing else done.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("chunk-size = 100", "chunk-size = 50");
    std::fs::write(&cfg, text).unwrap();
    let out = syncgate(&["check", "-C", &cfg, "--resume"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{}", describe(&out));
    assert!(stderr.contains("different configuration"), "{stderr}");
    assert!(stderr.contains("chunk-size"), "{stderr}");
    assert!(
        stderr.contains("remove it or use another output-dir"),
        "{stderr}"
    );
    assert!(
        checkpoint_file(&s.output_dir()).exists(),
        "the checkpoint is kept"
    );
    assert!(!s.output_dir().join("summary.json").exists());

    // Parallelism is not part of the fingerprint: with the original chunk size, a resume
    // with another thread count is accepted.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("chunk-size = 50", "chunk-size = 100");
    std::fs::write(&cfg, text).unwrap();
    let out = syncgate(&["check", "-C", &cfg, "--resume", "--check-thread-count", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(!checkpoint_file(&s.output_dir()).exists());

    // Without --resume a checkpoint is discarded with a notice, and the run starts afresh.
    syncgate::checkpoint::save(&s.output_dir(), &ck).unwrap();
    let out = syncgate(&["check", "-C", &cfg]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("discarding the checkpoint"), "{stderr}");
    assert_eq!(s.summary()["tables"][0]["resumed_chunks"], 0);
}
