//! `snapshot = "auto"` on a live MariaDB primary/replica pair: both sides are read at one
//! GTID, so writes on the primary during the check cause no false differences, while a real
//! divergence on the replica is still found.

use crate::scenario::{counts, describe, summary, syncgate};
use crate::support::start_server;
use mysql_async::prelude::Queryable;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use syncgate::local::LocalServer;

pub(crate) async fn exec(server: &LocalServer, sql: &str) {
    let mut c = server.conn().await.unwrap();
    c.query_drop(sql)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
    c.disconnect().await.unwrap();
}

pub(crate) async fn scalar(server: &LocalServer, sql: &str) -> String {
    let mut c = server.conn().await.unwrap();
    let v: Option<String> = c.query_first(sql).await.unwrap();
    c.disconnect().await.unwrap();
    v.unwrap_or_default()
}

/// Make `replica` replicate from `primary` with GTIDs, and wait until it has caught up.
pub(crate) async fn replicate(primary: &LocalServer, replica: &LocalServer) {
    exec(
        replica,
        &format!(
            "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {}, MASTER_USER = 'root', \
             MASTER_PASSWORD = '', MASTER_USE_GTID = slave_pos; START SLAVE",
            primary.port()
        ),
    )
    .await;
    let pos = scalar(primary, "SELECT @@gtid_binlog_pos").await;
    let waited = scalar(replica, &format!("SELECT MASTER_GTID_WAIT('{pos}', 60)")).await;
    assert_eq!(waited, "0", "replica did not catch up");
}

pub(crate) fn config(dir: &std::path::Path, up: u16, down: u16) -> std::path::PathBuf {
    let text = format!(
        r#"check-thread-count = 4
[data-sources.primary]
host = "127.0.0.1"
port = {up}
user = "root"
snapshot = "auto"

[data-sources.replica]
host = "127.0.0.1"
port = {down}
user = "root"
snapshot = "auto"

[task]
output-dir = "{}"
source-instances = ["primary"]
target-instance = "replica"
target-check-tables = ["app.*"]
target-configs = ["small"]

[table-configs.small]
target-tables = ["app.*"]
chunk-size = 500
"#,
        dir.join("out").display()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_pair_has_no_false_differences_under_load_and_finds_divergence() {
    let primary = start_server(31).await;
    let replica = start_server(32).await;
    exec(
        &primary,
        "CREATE DATABASE app; USE app; \
         CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40), n INT); \
         SET SESSION max_recursive_iterations = 1000000; \
         INSERT INTO t WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r \
         WHERE x < 20000) SELECT x, CONCAT('row', x), 0 FROM r",
    )
    .await;
    replicate(&primary, &replica).await;

    // A write load on the primary for the whole test: inserts and updates of rows > 1000.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, opts) = (stop.clone(), primary.opts());
        tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            let mut i: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                c.query_drop(format!(
                    "INSERT INTO app.t VALUES ({}, 'new', 1); \
                     UPDATE app.t SET n = n + 1, v = CONCAT('u', {i}) WHERE id = {}",
                    100_000 + i,
                    1001 + (i * 7919) % 19_000
                ))
                .await
                .unwrap();
            }
            i
        })
    };

    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), primary.port(), replica.port());
    let cfg = cfg.to_str().unwrap().to_string();
    for run in 0..3 {
        let path = cfg.clone();
        let out = tokio::task::spawn_blocking(move || syncgate(&["check", "-C", &path]))
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "run {run}: {}", describe(&out));
        let s = summary(&dir.path().join("out"));
        let up_point = s["upstream"][0]["snapshot"].as_str().unwrap().to_string();
        let down_point = s["downstream"]["snapshot"].as_str().unwrap().to_string();
        assert!(up_point.contains("pair fenced at GTID"), "{up_point}");
        assert!(down_point.contains("replica"), "{down_point}");
    }

    // A real divergence on the replica (not replicated, not binlogged) is found exactly.
    exec(
        &replica,
        "SET SESSION sql_log_bin = 0; UPDATE app.t SET v = 'diverged' WHERE id = 5; \
         DELETE FROM app.t WHERE id = 6",
    )
    .await;
    let path = cfg.clone();
    let out = tokio::task::spawn_blocking(move || syncgate(&["check", "-C", &path]))
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    assert!(writes > 50, "the write load ran ({writes} rounds)");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(counts(&summary(&dir.path().join("out")), "t"), (1, 0, 1));

    // Replication was restarted after every check.
    let running = scalar(
        &replica,
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'system user'",
    )
    .await;
    assert!(
        running.parse::<u32>().unwrap() >= 1,
        "replication threads are running"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Fix SQL on a real GTID replica (the issue of errant transactions): the replica is
/// detected and named in the report and in the fix file's header; `--apply-fix` is refused
/// until `fix-sql-binlog` says how; with `"skip"` the fix file and `--apply-fix` repair the
/// replica without writing a transaction to its binary log (its GTID position does not move
/// and gains no GTID of its own server id), and replication goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_sql_on_a_real_replica_is_warned_refused_then_applied_unlogged() {
    let primary = start_server(33).await;
    let replica = start_server(34).await;
    exec(
        &primary,
        "CREATE DATABASE app; USE app; \
         CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40)); \
         INSERT INTO t SELECT seq, CONCAT('row', seq) FROM seq_1_to_2000",
    )
    .await;
    replicate(&primary, &replica).await;
    let diverge = "SET SESSION sql_log_bin = 0; UPDATE app.t SET v = 'diverged' WHERE id = 5; \
                   DELETE FROM app.t WHERE id = 6; INSERT INTO app.t VALUES (5000, 'extra')";
    exec(&replica, diverge).await;
    let binlog_pos = || scalar(&replica, "SELECT @@gtid_binlog_pos");
    let before = binlog_pos().await;

    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let cfg = config(dir.path(), primary.port(), replica.port());
    let run = |args: &'static [&'static str]| {
        let path = cfg.to_str().unwrap().to_string();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut all = vec!["check", "-C", &path];
                all.extend_from_slice(args);
                syncgate(&all)
            })
            .await
            .unwrap()
        }
    };
    let out = run(&[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let s = summary(&out_dir);
    assert_eq!(counts(&s, "t"), (1, 1, 1));
    assert!(
        s["warnings"].to_string().contains("is a replica of"),
        "{s:#}"
    );
    let fix_file = out_dir.join("fix-on-replica").join("app.t.sql");
    let fix = std::fs::read_to_string(&fix_file).unwrap();
    assert!(
        fix.contains("-- WARNING: downstream 'replica' is a replica of"),
        "{fix}"
    );
    assert!(!fix.contains("sql_log_bin = 0"), "{fix}");

    let out = run(&["--apply-fix"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--apply-fix refused"),
        "{}",
        describe(&out)
    );

    // fix-sql-binlog = "skip": the file turns the binary log off for its session.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("[task]\n", "[task]\nfix-sql-binlog = \"skip\"\n"),
    )
    .unwrap();
    let out = run(&[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let fix = std::fs::read_to_string(&fix_file).unwrap();
    assert!(fix.contains("SET SESSION sql_log_bin = 0;"), "{fix}");
    exec(&replica, &fix).await;
    assert_eq!(
        binlog_pos().await,
        before,
        "the fix wrote no transaction to the binlog"
    );
    let out = run(&[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    // --apply-fix with "skip" repairs a new divergence, unlogged too.
    exec(&replica, diverge).await;
    let out = run(&["--apply-fix"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(summary(&out_dir)["result"], "repaired");
    assert_eq!(
        binlog_pos().await,
        before,
        "--apply-fix wrote no transaction"
    );

    // Replication is healthy: a primary write arrives, and the pair is equal.
    exec(&primary, "INSERT INTO app.t VALUES (9000, 'after')").await;
    let pos = scalar(&primary, "SELECT @@gtid_binlog_pos").await;
    let waited = scalar(&replica, &format!("SELECT MASTER_GTID_WAIT('{pos}', 60)")).await;
    assert_eq!(waited, "0");
    let out = run(&[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        !binlog_pos().await.contains("-34-"),
        "no GTID of the replica's own server id"
    );
}

#[tokio::test]
async fn auto_on_servers_that_are_not_a_pair_is_a_clear_error() {
    let a = start_server(41).await;
    let b = start_server(42).await;
    exec(
        &a,
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY)",
    )
    .await;
    exec(
        &b,
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY)",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), a.port(), b.port());
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a replica"), "{stderr}");
}
