//! `snapshot = "consistent"` on MariaDB: every worker reads one point while writes go on.

use crate::scenario::{describe, syncgate, Scenario};
use crate::support::TestDb;
use mysql_async::prelude::Queryable;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use syncgate::db::Source;
use syncgate::snapshot::mysql::pin_consistent;

/// A 40,000-row table `t`, loaded identically on both sides of the kill tests.
const FORTY_K_ROWS: &str = "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); \
    SET SESSION max_recursive_iterations = 1000000; \
    INSERT INTO t WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r \
    WHERE n < 40000) SELECT n, CONCAT('v', n) FROM r";

/// Insert rows one transaction at a time until `stop` is set.
fn start_writer(db: &TestDb, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let opts = mysql_async::OptsBuilder::from_opts(db.server().opts()).db_name(Some(db.name()));
    tokio::spawn(async move {
        let mut conn = mysql_async::Conn::new(opts).await.unwrap();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            conn.query_drop("INSERT INTO t (v) VALUES ('w')")
                .await
                .unwrap();
            n += 1;
        }
        n
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_workers_share_one_point_while_writes_go_on() {
    let db = TestDb::new().await;
    db.exec("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(8))")
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_writer(&db, stop.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;

    let source = Source::open(db.source_spec(syncgate::snapshot::Snapshot::Consistent))
        .await
        .unwrap();
    let (mut conns, point) = pin_consistent(&source, 4, 5).await.unwrap();
    assert_eq!(point.connections, 4);
    assert!(
        point.gtid.as_deref().is_some_and(|g| !g.is_empty()),
        "{point:?}"
    );
    assert!(
        point.binlog.is_some(),
        "binlog is on in test servers: {point:?}"
    );
    assert!(point.lock_held < Duration::from_secs(2), "{point:?}");
    assert!(point.describe().contains("consistent snapshot at GTID"));

    let count_sql = format!("SELECT COUNT(*) FROM `{}`.t", db.name());
    let mut first = Vec::new();
    for c in &mut conns {
        first.push(syncgate::db::cell_u64(
            &c.first(&count_sql).await.unwrap().unwrap(),
            0,
        ));
    }
    assert!(first.windows(2).all(|w| w[0] == w[1]), "{first:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for c in &mut conns {
        let again = syncgate::db::cell_u64(&c.first(&count_sql).await.unwrap().unwrap(), 0);
        assert_eq!(again, first[0], "a pinned worker saw newer rows");
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    let live: Vec<u64> = db.query("SELECT COUNT(*) FROM t").await;
    assert!(
        live[0] > first[0].unwrap(),
        "writes went on: {written} written"
    );
}

#[tokio::test]
async fn commit_lock_that_cannot_be_taken_is_a_clear_error() {
    let db = TestDb::new().await;
    let mut holder = db.conn().await;
    holder
        .query_drop("BACKUP STAGE START; BACKUP STAGE BLOCK_COMMIT")
        .await
        .unwrap();
    let source = Source::open(db.source_spec(syncgate::snapshot::Snapshot::Consistent))
        .await
        .unwrap();
    let err = pin_consistent(&source, 2, 1)
        .await
        .err()
        .expect("pin must fail");
    let msg = err.to_string();
    assert!(msg.contains("cannot block commits"), "{msg}");
    assert!(msg.contains("waited up to 1s"), "{msg}");
    holder.query_drop("BACKUP STAGE END").await.unwrap();
    // Once the lock is free, pinning works again.
    pin_consistent(&source, 2, 1).await.unwrap();
}

/// A pinned worker whose connection is killed must not go on reading live data: its chunks
/// are reported as errors and the run exits 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_pinned_connection_is_an_error_not_a_live_read() {
    let s = Scenario::empty().await;
    s.up.exec(FORTY_K_ROWS).await;
    s.down.exec(FORTY_K_ROWS).await;
    let cfg = s.config(&format!(
        "target-configs = [\"tiny\"]\n[table-configs.tiny]\ntarget-tables = [\"{}.t\"]\nchunk-size = 50\n",
        s.up.name()
    ));
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "password = \"\"\n",
        "password = \"\"\nsnapshot = \"consistent\"\n",
    );
    std::fs::write(&cfg, text).unwrap();

    // Kill one downstream connection that is inside a snapshot transaction, mid-run.
    let killer = {
        let opts = s.down.server().opts();
        tokio::spawn(async move {
            let mut conn = mysql_async::Conn::new(opts).await.unwrap();
            // Only pinned workers run chunk checksums; poll without pausing to catch one.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                let ids: Vec<u64> = conn
                    .query(
                        "SELECT ID FROM information_schema.PROCESSLIST \
                         WHERE ID <> CONNECTION_ID() AND INFO LIKE '%BIT\\_XOR(CRC32%' LIMIT 1",
                    )
                    .await
                    .unwrap();
                if let Some(id) = ids.first() {
                    conn.query_drop(format!("KILL CONNECTION {id}"))
                        .await
                        .unwrap();
                    return true;
                }
            }
            false
        })
    };
    let path = cfg.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || syncgate(&["check", "-C", &path]))
        .await
        .unwrap();
    assert!(
        killer.await.unwrap(),
        "no snapshot connection was found to kill"
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let summary = s.summary();
    let t = &summary["tables"][0];
    assert_eq!(t["result"], "error", "{t:#}");
    assert!(
        t["error"].as_str().unwrap_or("").contains("connection")
            || t["error"].as_str().unwrap_or("").contains("snapshot"),
        "{t:#}"
    );
}

/// Without a pinned snapshot a killed connection is replaced and the step retried: the run
/// completes and its counts are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_unpinned_connections_are_retried() {
    let s = Scenario::empty().await;
    s.up.exec(FORTY_K_ROWS).await;
    s.down.exec(FORTY_K_ROWS).await;
    s.down
        .exec("DELETE FROM t WHERE id IN (7, 20000); UPDATE t SET v = 'x' WHERE id = 39999")
        .await;
    let cfg = s.config(&format!(
        "target-configs = [\"tiny\"]\n[table-configs.tiny]\ntarget-tables = [\"{}.t\"]\nchunk-size = 50\n",
        s.up.name()
    ));
    // The killer is connected and polling before the check starts, and polls until the
    // check has ended: a checksum in flight is found however fast or loaded the machine.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let killer = {
        let opts = s.down.server().opts();
        let done = done.clone();
        tokio::spawn(async move {
            let mut conn = mysql_async::Conn::new(opts).await.unwrap();
            let _ = ready_tx.send(());
            let mut killed = 0;
            while killed < 3 && !done.load(std::sync::atomic::Ordering::SeqCst) {
                let ids: Vec<u64> = conn
                    .query(
                        "SELECT ID FROM information_schema.PROCESSLIST \
                         WHERE ID <> CONNECTION_ID() AND INFO LIKE 'SELECT COUNT(*), BIT%' LIMIT 1",
                    )
                    .await
                    .unwrap();
                if let Some(id) = ids.first() {
                    let _ = conn.query_drop(format!("KILL CONNECTION {id}")).await;
                    killed += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            killed
        })
    };
    ready_rx.await.unwrap();
    let path = cfg.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || syncgate(&["check", "-C", &path]))
        .await
        .unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let killed = killer.await.unwrap();
    assert!(killed >= 1, "no connection was killed");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(crate::scenario::counts(&s.summary(), "t"), (2, 0, 1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("retrying"),
        "{}",
        describe(&out)
    );
}
