//! The sysbench-shaped write load (`syncgate::testdata::load`) against a real MariaDB: it
//! reaches its rate, every committed transaction is in the binlog and changed the data
//! exactly once, it stops promptly, survives a killed server, and fails on other errors;
//! and `syncgate playground load` end to end.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use syncgate::interrupt::{Interrupt, Signal};
use syncgate::schema::TableRef;
use syncgate::testdata::{run_load, sbtest_ddl, sbtest_rows, spawn_load, LoadOptions, LoadStats};

use crate::harness_smoke::{playground_options, PlaygroundGuard};
use crate::scenario::{describe, syncgate};
use crate::signals::{finish, send, spawn};
use crate::support::{start_server, TestDb};

/// sbtest tables made for one test, in database `db` of the server of `opts`.
struct Tables {
    opts: Opts,
    refs: Vec<TableRef>,
}

/// What the load's invariants are checked on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Totals {
    rows: Vec<u64>,
    k_sum: i64,
}

impl Tables {
    /// `sbtest1..=n` in `db` with `rows` sysbench rows each.
    async fn create(opts: Opts, db: &str, n: u32, rows: u64) -> Tables {
        let mut conn = Conn::new(opts.clone()).await.expect("connect");
        conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS `{db}`; USE `{db}`"))
            .await
            .expect("create database");
        for table in 1..=n {
            conn.query_drop(sbtest_ddl(table))
                .await
                .expect("create table");
            let values: Vec<String> = sbtest_rows(9, table, rows)
                .map(|r| format!("({},{},'{}','{}')", r.id, r.k, r.c, r.pad))
                .collect();
            let sql = format!(
                "INSERT INTO sbtest{table} (id, k, c, pad) VALUES {}",
                values.join(",")
            );
            conn.query_drop(sql).await.expect("insert rows");
        }
        let _ = conn.disconnect().await;
        let refs = (1..=n)
            .map(|t| TableRef::new(db, format!("sbtest{t}")))
            .collect();
        Tables { opts, refs }
    }

    fn load(&self, tps: u32, duration: Option<Duration>) -> LoadOptions {
        LoadOptions {
            tps,
            duration,
            tables: self.refs.clone(),
            connections: 4,
            seed: 1,
        }
    }

    async fn totals(&self) -> Totals {
        let mut conn = Conn::new(self.opts.clone()).await.expect("connect");
        let mut totals = Totals {
            rows: Vec::new(),
            k_sum: 0,
        };
        for t in &self.refs {
            let sql = format!(
                "SELECT COUNT(*), CAST(SUM(k) AS SIGNED) FROM {}",
                t.quoted()
            );
            let (rows, k_sum): (u64, i64) = conn.query_first(sql).await.unwrap().unwrap();
            totals.rows.push(rows);
            totals.k_sum += k_sum;
        }
        let _ = conn.disconnect().await;
        totals
    }
}

/// The sum of the sequence numbers in `@@gtid_binlog_pos` (one per committed transaction).
async fn gtid_seq(opts: &Opts) -> u64 {
    let mut conn = Conn::new(opts.clone()).await.expect("connect");
    let pos: String = conn
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap_or_default();
    let _ = conn.disconnect().await;
    pos.split(',')
        .filter(|g| !g.trim().is_empty())
        .map(|g| g.trim().rsplit('-').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Wait (bounded) until `done` holds for the load's live stats.
async fn wait_for(what: &str, stats: impl Fn() -> LoadStats, done: impl Fn(&LoadStats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(&stats()) {
        assert!(Instant::now() < deadline, "{what}: {}", stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The invariants of a clean run: rows unchanged, `k` grew by one per transaction, and
/// the binlog holds at least that many new transactions.
async fn assert_committed_once(t: &Tables, before: &Totals, gtid_before: u64, s: &LoadStats) {
    let after = t.totals().await;
    assert_eq!(after.rows, before.rows, "row counts changed: {s}");
    assert_eq!(
        after.k_sum - before.k_sum,
        s.transactions as i64,
        "k sum against transactions: {s}"
    );
    let gtid_after = gtid_seq(&t.opts).await;
    assert!(
        gtid_after - gtid_before >= s.transactions,
        "gtid advanced by {} for {s}",
        gtid_after - gtid_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_load_reaches_its_rate_and_commits_each_transaction_once() {
    let db = TestDb::new().await;
    let t = Tables::create(db.server().opts(), db.name(), 2, 1000).await;
    let before = t.totals().await;
    let gtid_before = gtid_seq(&t.opts).await;

    let load = t.load(100, Some(Duration::from_secs(3)));
    let s = run_load(&t.opts, &load, &Interrupt::never()).await.unwrap();

    assert!(s.achieved_tps() >= 90.0, "{s}");
    assert!((270..=300).contains(&s.transactions), "{s}");
    assert!(s.elapsed >= Duration::from_millis(2970), "{s}");
    assert_eq!(s.errors, 0, "{s}");
    assert!(s.statements >= 6 * s.transactions, "{s}");
    assert_committed_once(&t, &before, gtid_before, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlocks_are_retried_and_each_transaction_lands_once() {
    let db = TestDb::new().await;
    // Three rows under eight unpaced connections: transactions lock the same rows in
    // different orders and deadlock.
    let t = Tables::create(db.server().opts(), db.name(), 1, 3).await;
    let before = t.totals().await;
    let gtid_before = gtid_seq(&t.opts).await;

    let load = LoadOptions {
        connections: 8,
        ..t.load(0, Some(Duration::from_secs(1)))
    };
    let s = run_load(&t.opts, &load, &Interrupt::never()).await.unwrap();

    assert!(s.retried > 0, "{s}");
    assert_eq!(s.errors, 0, "{s}");
    assert_committed_once(&t, &before, gtid_before, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_load_stops_promptly() {
    let db = TestDb::new().await;
    let t = Tables::create(db.server().opts(), db.name(), 1, 500).await;
    let before = t.totals().await;
    let gtid_before = gtid_seq(&t.opts).await;

    let handle = spawn_load(t.opts.clone(), t.load(200, None));
    wait_for(
        "20 transactions",
        || handle.stats(),
        |s| s.transactions >= 20,
    )
    .await;
    assert!(!handle.is_finished());
    let asked = Instant::now();
    let s = handle.stop().await.unwrap();
    let took = asked.elapsed();

    assert!(took < Duration::from_secs(1), "stop took {took:?}");
    assert!(s.transactions >= 20, "{s}");
    assert_committed_once(&t, &before, gtid_before, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_ends_run_load() {
    let db = TestDb::new().await;
    let t = Tables::create(db.server().opts(), db.name(), 1, 500).await;
    let (interrupt, fire) = Interrupt::manual();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        fire(Signal::Interrupt);
    });
    let started = Instant::now();
    let s = run_load(&t.opts, &t.load(100, None), &interrupt)
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1700), "ran {took:?}");
    assert!(s.transactions > 0, "{s}");
    assert_eq!(interrupt.fired(), Some(Signal::Interrupt));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_costs_errors_not_the_load() {
    let mut server = start_server(41).await;
    let t = Tables::create(server.opts(), "sg_load_kill", 1, 500).await;
    let before = t.totals().await;

    let handle = spawn_load(t.opts.clone(), t.load(100, None));
    wait_for(
        "first transactions",
        || handle.stats(),
        |s| s.transactions >= 10,
    )
    .await;
    server.kill();
    wait_for("errors while down", || handle.stats(), |s| s.errors >= 1).await;
    let while_down = handle.stats().transactions;
    server.restart().await.expect("restart the server");
    wait_for(
        "transactions after the restart",
        || handle.stats(),
        |s| s.transactions >= while_down + 20,
    )
    .await;
    let s = handle.stop().await.expect("the load survives the crash");

    assert!(s.errors >= 1, "{s}");
    let after = t.totals().await;
    assert_eq!(after.rows, before.rows, "{s}");
    // A COMMIT whose answer was lost with the server counts as an error, yet may have
    // committed: the sum can exceed the count, never fall short of it.
    assert!(after.k_sum - before.k_sum >= s.transactions as i64, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_errors_end_the_load() {
    let db = TestDb::new().await;
    let t = Tables::create(db.server().opts(), db.name(), 2, 200).await;

    let handle = spawn_load(t.opts.clone(), t.load(200, None));
    wait_for(
        "first transactions",
        || handle.stats(),
        |s| s.transactions >= 5,
    )
    .await;
    db.exec("DROP TABLE sbtest2").await;
    wait_for(
        "the load to fail",
        || handle.stats(),
        |_| handle.is_finished(),
    )
    .await;
    let err = handle.stop().await.unwrap_err();
    let syncgate::Error::Local(local) = &err else {
        panic!("{err}")
    };
    assert_eq!(local.server_code(), Some(1146), "{err}");
    assert!(err.to_string().contains("sbtest2"), "{err}");

    // A table without rows is refused before anything is written.
    db.exec("CREATE TABLE empty_t LIKE sbtest1").await;
    let load = LoadOptions {
        tables: vec![TableRef::new(db.name(), "empty_t")],
        ..t.load(10, Some(Duration::from_secs(1)))
    };
    let err = run_load(&t.opts, &load, &Interrupt::never())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("has no rows"), "{err}");
}

/// The summary line's transaction count.
fn summary_transactions(stdout: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("load: "))
        .unwrap_or_else(|| panic!("no summary in {stdout}"));
    line["load: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playground_load_runs_for_its_seconds_and_stops_on_sigint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pg");
    let opts = playground_options(tmp.path(), &dir);
    let _guard = PlaygroundGuard(dir.clone());
    syncgate::playground::up(&opts).await.unwrap();
    let d = dir.to_str().unwrap();

    let out = syncgate(&[
        "playground",
        "load",
        "--dir",
        d,
        "--tps",
        "50",
        "--seconds",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let n = summary_transactions(&stdout);
    assert!((90..=100).contains(&n), "{}", describe(&out));
    assert!(
        stdout.contains("(target 50), 0 errors"),
        "{}",
        describe(&out)
    );

    let child = spawn(&["playground", "load", "--dir", d, "--tps", "50"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    send(&child, "INT");
    let (out, took) = finish(child, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(took < Duration::from_secs(2), "exit took {took:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(stopped by SIGINT)"), "{}", describe(&out));
    assert!(summary_transactions(&stdout) > 0, "{}", describe(&out));

    let missing = tmp.path().join("none");
    let out = syncgate(&[
        "playground",
        "load",
        "--dir",
        missing.to_str().unwrap(),
        "--tps",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not running"),
        "{}",
        describe(&out)
    );
}
