//! `syncgate dr reseed` and `dr switchover` on real MariaDB servers after a real failover
//! (archive in a real S3 server, the primary killed with SIGKILL): a fresh server is
//! reseeded from the acting primary while a ledger writer runs (gate 4), a switchover with
//! a row changed on the new node is refused (exit 1, nothing switched, writes back), and
//! then the switchover runs: the writer follows the writable primary and its ledger is
//! gap-free on both nodes.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use syncgate::local::{LocalS3, LocalServer};
use syncgate::testdata::LedgerWriter;

use crate::dr_backup::Flow;
use syncgate::dr::delta_gate::{self, BinlogStart};
use syncgate::dr::{archive, binlog, binlog::GtidPos};

use crate::dr_failover::{
    add_to_dr_section, archiver, context, exec, s3_backup_and_redo, s3_uri, scalar,
    settle_and_stop, Ledger,
};
use crate::scenario::describe;
use crate::support::start_server;

const LEDGER_DDL: &str =
    "(seq BIGINT PRIMARY KEY, at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))";

/// `[data-sources.NAME]` for `server`, as root.
fn add_source(flow: &Flow, name: &str, server: &LocalServer) {
    let text = std::fs::read_to_string(&flow.config).unwrap();
    let source = format!(
        "[data-sources.{name}]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"root\"\n[dr]\n",
        server.port()
    );
    std::fs::write(&flow.config, text.replace("[dr]\n", &source)).unwrap();
}

/// A user without SUPER: `read_only` stops it (root would write through the freeze).
async fn add_app_user(server: &LocalServer) {
    exec(
        server,
        "SET sql_log_bin = 0; CREATE USER 'app'@'%' IDENTIFIED BY 'app'; \
         GRANT ALL ON sbtest.* TO 'app'@'%'",
    )
    .await;
}

fn app_opts(server: &LocalServer) -> mysql_async::Opts {
    mysql_async::OptsBuilder::from_opts(server.opts())
        .user(Some("app"))
        .pass(Some("app"))
        .into()
}

/// `SHOW SLAVE STATUS` fields, None when the server is no replica.
async fn slave_status(server: &LocalServer, field: &str) -> Option<String> {
    let mut c = server.conn().await.unwrap();
    let row: Option<mysql_async::Row> = c.query_first("SHOW SLAVE STATUS").await.unwrap();
    row.and_then(|r| r.get::<Option<String>, &str>(field).flatten())
}

async fn app_ledger(server: &LocalServer) -> Vec<u64> {
    let mut c = server.conn().await.unwrap();
    c.query("SELECT seq FROM sbtest.ledger_app ORDER BY seq")
        .await
        .unwrap()
}

async fn wait_for(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A refused switchover: exit 2 with `message`, the acting primary writable again, the new
/// node still a read-only replica.
async fn assert_not_switched(
    out: &std::process::Output,
    message: &str,
    acting: &LocalServer,
    node: &LocalServer,
) {
    assert_eq!(out.status.code(), Some(2), "{}", describe(out));
    assert!(stderr(out).contains(message), "{}", describe(out));
    assert_unfrozen_not_switched(acting, node).await;
    assert_eq!(
        slave_status(node, "Slave_IO_Running").await.as_deref(),
        Some("Yes"),
        "the new node still replicates"
    );
}

/// Writes unfrozen on the acting primary, the new node still read-only.
async fn assert_unfrozen_not_switched(acting: &LocalServer, node: &LocalServer) {
    assert_eq!(
        scalar(acting, "SELECT @@read_only").await,
        "0",
        "writes unfrozen"
    );
    assert_eq!(
        scalar(node, "SELECT @@read_only").await,
        "1",
        "nothing switched"
    );
}

/// A fresh server added to the flow's config as `rebuilt`, with the application user on it
/// and on the acting primary (the failed-over secondary).
async fn rebuilt_node(flow: &Flow) -> LocalServer {
    let node = start_server(3).await;
    add_source(flow, "rebuilt", &node);
    add_app_user(&flow.secondary).await;
    add_app_user(&node).await;
    node
}

/// A flow that went through backup, restore, replicate with archive, the primary's
/// SIGKILL and `dr failover`: the secondary is the acting primary.
async fn failed_over(s3: &LocalS3) -> Flow {
    let mut flow = Flow::new(2, 1_000, Some(s3_uri(s3, "backup"))).await;
    add_to_dr_section(
        &flow.config,
        &format!(
            "redo-storage = \"{}\"\nflush-interval = 0.2",
            s3_uri(s3, "redo")
        ),
    );
    exec(
        &flow.primary,
        &format!(
            "CREATE TABLE sbtest.ledger {LEDGER_DDL}; CREATE TABLE sbtest.ledger_app {LEDGER_DDL}"
        ),
    )
    .await;
    for step in ["backup", "restore", "replicate"] {
        let out = flow.run(step, &[]);
        assert_eq!(out.status.code(), Some(0), "{step}: {}", describe(&out));
    }
    let arch = archiver(&flow, &[]);
    let writer = Ledger::start(&flow.primary, 100, true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    flow.primary.kill();
    writer.stop().await;
    settle_and_stop(&flow, arch).await;
    let out = flow.run("failover", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    flow
}

/// Reseed onto a fresh server while the ledger writer runs on the acting primary → gate 4
/// equal; a switchover whose catch-up times out, or during which a SUPER connection writes
/// through read_only → exit 2, writes unfrozen; a switchover with a row changed on the new node → exit 1, nothing switched, the
/// acting primary writable again; the row put back, the switchover → gate equal, the new
/// node the writable primary, the old one its replica, the freeze printed; the writer's
/// ledger gap-free and the same on both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reseed_then_switchover_under_writes() {
    let (_s3_root, s3) = s3_backup_and_redo().await;
    let flow = failed_over(&s3).await;
    let acting = &flow.secondary;
    let node = rebuilt_node(&flow).await;
    // The archiver runs again after the failover: it follows the writes to the acting
    // primary, and through the switchover to the new one.
    let arch = archiver(&flow, &[]);

    // A node holding rows in the selected tables is refused before anything is done.
    exec(
        &node,
        "CREATE DATABASE sbtest; CREATE TABLE sbtest.junk (id INT PRIMARY KEY); \
         INSERT INTO sbtest.junk VALUES (1)",
    )
    .await;
    let out = flow.run("reseed", &["--new-primary", "rebuilt"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("not empty") && stderr(&out).contains("sbtest.junk"),
        "{}",
        describe(&out)
    );
    exec(&node, "DROP DATABASE sbtest").await;

    // --dry-run prints the plan and changes nothing.
    let out = flow.run("reseed", &["--new-primary", "rebuilt", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).contains("would take a full backup of the acting primary 'secondary'"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        scalar(
            &node,
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'sbtest'"
        )
        .await,
        "0"
    );
    assert!(flow.flow_state()["steps"]["reseed"].is_null());

    // Reseed while the application writes on the acting primary.
    let writer = LedgerWriter::start(
        vec![app_opts(acting), app_opts(&node)],
        "sbtest.ledger_app",
        100,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = flow.run("reseed", &["--new-primary", "rebuilt"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(stdout(&out).contains("gate 4: equal"), "{}", describe(&out));
    let state = flow.flow_state();
    let reseed = &state["steps"]["reseed"];
    assert_eq!(reseed["status"], "done", "{state}");
    assert_eq!(reseed["node"], "rebuilt", "{state}");
    assert_eq!(reseed["gate"]["result"], "equal", "{state}");
    assert!(reseed["point"]["gtid"].as_str().unwrap().starts_with("0-"));
    assert_eq!(
        state["steps"]["backup"]["status"], "done",
        "the first backup is kept"
    );
    assert_eq!(scalar(&node, "SELECT @@read_only").await, "1");
    assert_eq!(
        slave_status(&node, "Slave_SQL_Running").await.as_deref(),
        Some("Yes")
    );
    let before = writer.committed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        writer.committed() > before,
        "writes go on during and after the reseed"
    );

    // The new node cannot catch up (a table lock holds its replication's writes): the
    // catch-up times out, writes are unfrozen, nothing switched, exit 2.
    let mut lock = node.conn().await.unwrap();
    lock.query_drop("LOCK TABLES sbtest.ledger_app WRITE")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = flow.run("switchover", &["--catch-up-timeout", "1"]);
    assert_not_switched(
        &out,
        "did not apply everything up to the acting primary's position",
        acting,
        &node,
    )
    .await;
    assert!(
        stderr(&out).contains("nothing was frozen"),
        "{}",
        describe(&out)
    );
    // With the whole compare inside the freeze there is no gate before it: the catch-up
    // under the freeze times out and writes are unfrozen.
    let out = flow.run("switchover", &["--catch-up-timeout", "1", "--full-gate"]);
    assert_not_switched(
        &out,
        "did not apply everything up to the frozen point",
        acting,
        &node,
    )
    .await;
    assert_eq!(flow.flow_state()["steps"]["switchover"]["status"], "failed");
    lock.query_drop("UNLOCK TABLES").await.unwrap();
    drop(lock);
    assert_eq!(
        slave_status(&node, "Slave_SQL_Running").await.as_deref(),
        Some("Yes")
    );

    // A writer with SUPER (root) is not stopped by read_only: the moved frozen point is
    // found and nothing is switched.
    exec(
        acting,
        &format!("CREATE TABLE sbtest.ledger_root {LEDGER_DDL}"),
    )
    .await;
    let root = LedgerWriter::start(vec![acting.opts()], "sbtest.ledger_root", 100);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = flow.run("switchover", &[]);
    root.stop().await;
    assert_not_switched(&out, "writes went on during the freeze", acting, &node).await;

    // A row differs on the new node (not through replication): the switchover refuses.
    let original = scalar(&node, "SELECT c FROM sbtest.sbtest2 WHERE id = 5").await;
    exec(
        &node,
        "SET sql_log_bin = 0; UPDATE sbtest.sbtest2 SET c = 'changed behind replication' WHERE id = 5",
    )
    .await;
    let out = flow.run("switchover", &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)));
    assert_eq!(doc["switched"], false, "{doc}");
    assert_eq!(doc["gate"], "different", "{doc}");
    assert_eq!(doc["differing_rows"], 1, "{doc}");
    assert_unfrozen_not_switched(acting, &node).await;
    assert_eq!(
        slave_status(&node, "Slave_SQL_Running").await.as_deref(),
        Some("Yes")
    );
    assert_eq!(slave_status(acting, "Slave_IO_Running").await, None);
    assert_eq!(
        flow.flow_state()["steps"]["switchover"]["status"],
        "gate-failed"
    );
    let before = writer.committed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        writer.committed() > before,
        "the acting primary takes writes again"
    );

    // Put back, the switchover runs.
    exec(
        &node,
        &format!("SET sql_log_bin = 0; UPDATE sbtest.sbtest2 SET c = '{original}' WHERE id = 5"),
    )
    .await;
    writer.reset_gap();
    let out = flow.run("switchover", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = stdout(&out);
    assert!(text.contains("gate at the frozen point"), "{text}");
    assert!(text.contains(": equal"), "{text}");
    // Everything was compared before the freeze, only what was written since inside it.
    assert!(
        text.contains("gate before the freeze (every selected row, writes going on): equal"),
        "{text}"
    );
    assert!(text.contains("since the gate before the freeze"), "{text}");
    let freeze_ms: u64 = text
        .split("write freeze: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no freeze printed: {text}"));
    assert!(freeze_ms < 30_000, "{text}");
    // The new node is the writable primary, the old one its read-only replica.
    assert_eq!(scalar(&node, "SELECT @@read_only").await, "0");
    assert_eq!(slave_status(&node, "Slave_IO_Running").await, None);
    assert_eq!(scalar(acting, "SELECT @@read_only").await, "1");
    wait_for("the old primary to replicate", async || {
        slave_status(acting, "Slave_SQL_Running").await.as_deref() == Some("Yes")
    })
    .await;
    assert_eq!(
        slave_status(acting, "Master_Port").await,
        Some(node.port().to_string())
    );
    exec(&node, "INSERT INTO sbtest.ledger (seq) VALUES (99999999)").await;
    wait_for(
        "a write on the new primary to reach the old one",
        async || {
            scalar(
                acting,
                "SELECT COUNT(*) FROM sbtest.ledger WHERE seq = 99999999",
            )
            .await
                == "1"
        },
    )
    .await;
    let state = flow.flow_state();
    assert_eq!(state["steps"]["switchover"]["status"], "done", "{state}");
    assert_eq!(
        state["steps"]["switchover"]["freeze_ms"], freeze_ms,
        "{state}"
    );
    // The writes moved: the flow records where (the archiver follows it).
    let moved = &state["acting_primary"];
    assert_eq!(moved["node"], "rebuilt", "{state}");
    assert_eq!(moved["from"], "secondary", "{state}");
    assert_eq!(moved["by"], "switchover", "{state}");
    let status = flow.run("status", &[]);
    assert!(
        stdout(&status).contains("writes go to 'rebuilt' since GTID"),
        "{}",
        describe(&status)
    );

    // The application followed the writable primary; nothing lost, nothing twice.
    let before = writer.committed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        writer.committed() > before,
        "writes go on on the new primary"
    );
    let stats = writer.stop().await;
    eprintln!(
        "switchover: freeze {freeze_ms} ms reported; the writer's longest gap {} ms, {} \
         committed",
        stats.longest_gap.as_millis(),
        stats.committed
    );
    let expected: Vec<u64> = (1..=stats.committed).collect();
    assert_eq!(app_ledger(&node).await, expected);
    wait_for("the old primary to catch up", async || {
        app_ledger(acting).await.len() as u64 == stats.committed
    })
    .await;
    assert_eq!(app_ledger(acting).await, expected);

    // The archive followed the writes through both role changes: from the backup point to
    // the new primary's last transaction with no gap and nothing twice, read from the
    // binlogs of three servers.
    let end = settle_and_stop(&flow, arch).await;
    let node_pos = GtidPos::parse(&scalar(&node, "SELECT @@gtid_binlog_pos").await).unwrap();
    assert_eq!(
        end, node_pos,
        "the archive ends at the new primary's position"
    );
    let log = std::fs::read_to_string(flow.dir.path().join("archive.log")).unwrap();
    assert!(log.contains("the writes moved to 'rebuilt'"), "{log}");
    let backup = &flow.flow_state()["steps"]["backup"]["point"]["gtid"];
    let from = GtidPos::parse(backup.as_str().unwrap()).unwrap();
    let ctx = context(&flow).await;
    let store = archive::redo_store(&ctx).await.unwrap();
    let index = archive::load_index(store.as_ref()).await.unwrap();
    let plan = archive::plan(&index, &from).unwrap();
    let mut seqs = Vec::new();
    for e in &plan {
        let bytes = store.get(&e.segment).await.unwrap().unwrap();
        seqs.extend(binlog::transactions(&bytes).unwrap().iter().map(|g| g.seq));
    }
    let (first, last) = (from.0[&0].seq + 1, node_pos.0[&0].seq);
    assert_eq!(seqs, (first..=last).collect::<Vec<u64>>());
    let sources: std::collections::BTreeSet<&str> =
        plan.iter().map(|e| e.source.as_str()).collect();
    assert_eq!(sources.len(), 3, "{sources:?}");
    s3.stop().await;
}

/// Reseed and switchover refuse what they cannot do, with exit 2 and nothing changed:
/// an unknown node, no failover yet (with and without --dry-run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reseed_and_switchover_preconditions() {
    let flow = Flow::new(1, 10, None).await;
    let cases: [(&str, &[&str], &str); 5] = [
        ("reseed", &["--new-primary", "nosuch"], "not a data source"),
        (
            "reseed",
            &["--new-primary", "primary"],
            "failover has not happened",
        ),
        (
            "reseed",
            &["--new-primary", "primary", "--dry-run"],
            "failover has not happened",
        ),
        ("switchover", &[], "failover has not happened"),
        ("switchover", &["--dry-run"], "failover has not happened"),
    ];
    for (step, args, message) in cases {
        let out = flow.run(step, args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{step} {args:?}: {}",
            describe(&out)
        );
        assert!(
            stderr(&out).contains(message),
            "{step} {args:?}: {}",
            describe(&out)
        );
    }
    assert_eq!(scalar(&flow.primary, "SELECT @@read_only").await, "0");
    assert_eq!(
        slave_status(&flow.secondary, "Slave_IO_Running").await,
        None
    );
}

/// SIGINT while writes are frozen (the new node held back by a table lock, so the catch-up
/// waits): the switchover stops at once with exit 130, writes are unfrozen, nothing is
/// switched, the step is recorded interrupted; once the lock is gone the next switchover
/// completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_during_the_switchover_freeze_unfreezes_and_switches_nothing() {
    let (_s3_root, s3) = s3_backup_and_redo().await;
    let flow = failed_over(&s3).await;
    let acting = &flow.secondary;
    let node = rebuilt_node(&flow).await;
    let writer = LedgerWriter::start(
        vec![app_opts(acting), app_opts(&node)],
        "sbtest.ledger_app",
        100,
    );
    let out = flow.run("reseed", &["--new-primary", "rebuilt"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    let mut lock = node.conn().await.unwrap();
    lock.query_drop("LOCK TABLES sbtest.ledger_app WRITE")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let child = flow
        // --full-gate: no gate before the freeze, whose fence would wait for the held
        // node before anything is frozen.
        .command("switchover", &["--catch-up-timeout", "60", "--full-gate"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the freeze", async || {
        scalar(acting, "SELECT @@read_only").await == "1"
    })
    .await;
    let sent = Instant::now();
    crate::signals::send(&child, "INT");
    let out = child.wait_with_output().unwrap();
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "stopped at once, not after the timeout"
    );
    assert_eq!(out.status.code(), Some(130), "{}", describe(&out));
    assert_unfrozen_not_switched(acting, &node).await;
    assert_eq!(
        flow.flow_state()["steps"]["switchover"]["status"],
        "interrupted"
    );
    let before = writer.committed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        writer.committed() > before,
        "the acting primary takes writes again"
    );

    lock.query_drop("UNLOCK TABLES").await.unwrap();
    drop(lock);
    let out = flow.run("switchover", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        scalar(&node, "SELECT @@read_only").await,
        "0",
        "the node is the primary"
    );
    let stats = writer.stop().await;
    let ledger = app_ledger(&node).await;
    assert_eq!(
        ledger.len() as u64,
        stats.committed,
        "every committed row, once"
    );
}

/// The gate inside the switchover's freeze lists what the primary's binlog wrote since a
/// position and compares only those rows: keys decoded from real row events (a latin1
/// text key with a non-ASCII byte, an UNSIGNED composite key past the signed range, an
/// update, a delete); a table without a primary key compared whole. A row changed behind
/// replication that was written is found; one that was not written is not (the gate before
/// the freeze is what covers it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_in_the_freeze_compares_the_rows_written_since() {
    let flow = Flow::new(1, 1_000, None).await;
    exec(
        &flow.primary,
        "CREATE TABLE sbtest.k_latin1 (name VARCHAR(20) CHARACTER SET latin1 PRIMARY KEY, v INT); \
         CREATE TABLE sbtest.k_comp (a INT UNSIGNED, b VARCHAR(10), v INT, PRIMARY KEY (a, b)); \
         CREATE TABLE sbtest.nokey (v INT)",
    )
    .await;
    for step in ["backup", "restore", "replicate"] {
        let out = flow.run(step, &[]);
        assert_eq!(out.status.code(), Some(0), "{step}: {}", describe(&out));
    }
    let ctx = context(&flow).await;
    let primary = syncgate::db::Source::open(ctx.primary.clone())
        .await
        .unwrap();
    let mut conn = primary.connect().await.unwrap();
    let start = BinlogStart::read(&mut conn)
        .await
        .unwrap()
        .expect("binlog on");
    conn.close().await;
    exec(
        &flow.primary,
        "UPDATE sbtest.sbtest1 SET k = k + 1 WHERE id IN (3, 4); \
         INSERT INTO sbtest.k_latin1 VALUES (CONVERT(_utf8mb4 'café' USING latin1), 1), ('zz', 2); \
         DELETE FROM sbtest.k_latin1 WHERE name = 'zz'; \
         INSERT INTO sbtest.k_comp VALUES (4294967295, 'x', 1); \
         INSERT INTO sbtest.nokey VALUES (1)",
    )
    .await;
    let pos = scalar(&flow.primary, "SELECT @@gtid_binlog_pos").await;
    let waited = scalar(
        &flow.secondary,
        &format!("SELECT MASTER_GTID_WAIT('{pos}', 30)"),
    )
    .await;
    assert_eq!(waited, "0");
    // Behind replication on the secondary: three written rows and one that was not.
    exec(
        &flow.secondary,
        "SET sql_log_bin = 0; \
         UPDATE sbtest.sbtest1 SET c = 'behind' WHERE id IN (3, 500); \
         UPDATE sbtest.k_latin1 SET v = 9 WHERE name = CONVERT(_utf8mb4 'café' USING latin1); \
         UPDATE sbtest.k_comp SET v = 9 WHERE a = 4294967295",
    )
    .await;

    let (report, scope) = delta_gate::gate(&ctx, &start, None, "written-since")
        .await
        .unwrap();
    assert_eq!(scope.whole, None, "{scope:?}");
    assert_eq!((scope.tables, scope.keys), (4, 5), "{scope:?}");
    let table = |name: &str| {
        report
            .tables
            .iter()
            .find(|t| t.table == name)
            .unwrap_or_else(|| panic!("{name} not compared: {:#?}", report.tables))
    };
    let sb = table("sbtest1");
    assert_eq!(sb.rows_upstream, 2, "only the written rows are read");
    assert_eq!(sb.rows_changed, 1, "id 3, not id 500");
    assert_eq!(table("k_latin1").rows_changed, 1);
    assert_eq!(table("k_latin1").rows_upstream, 1, "'zz' was deleted");
    assert_eq!(table("k_comp").rows_changed, 1);
    assert_eq!(table("nokey").rows_upstream, 1, "compared whole");
    assert_eq!(report.tables.len(), 4);
}
