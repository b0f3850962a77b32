//! `syncgate dr failover` on real MariaDB servers with the redo (the binlog archive of
//! `dr archive`) in a real S3 server: a writer at ~100 TPS in which every transaction also
//! appends the next sequence number to a ledger table, the primary killed with SIGKILL
//! mid-load, the archive applied to the secondary exactly once; and a damaged archive (a
//! missing middle segment, a truncated last one).

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use syncgate::config::Config;
use syncgate::dr::archive;
use syncgate::dr::binlog::GtidPos;
use syncgate::dr::DrContext;
use syncgate::local::{LocalS3, LocalServer};

use crate::dr_backup::Flow;
use crate::scenario::describe;

pub(crate) const SECRET: &str = "failover-S3cret";

/// The writer: one connection, one transaction per tick, each an UPDATE of the sbtest
/// table (when there is one) and the next ledger row. `committed` is the last sequence
/// number whose COMMIT returned.
pub(crate) struct Ledger {
    stop: Arc<AtomicBool>,
    committed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Ledger {
    pub(crate) fn start(server: &LocalServer, tps: u64, with_sbtest: bool) -> Ledger {
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(AtomicU64::new(0));
        let opts = server.opts();
        let (s, c) = (stop.clone(), committed.clone());
        let task = tokio::spawn(async move {
            let Ok(mut conn) = mysql_async::Conn::new(opts).await else {
                return;
            };
            let period = Duration::from_micros(1_000_000 / tps);
            let mut tick = tokio::time::interval(period);
            let mut n = 0u64;
            while !s.load(Ordering::SeqCst) {
                tick.tick().await;
                n += 1;
                let mut sql = vec!["BEGIN".to_string()];
                if with_sbtest {
                    sql.push(format!(
                        "UPDATE sbtest.sbtest1 SET k = k + 1 WHERE id = {}",
                        n % 1000 + 1
                    ));
                }
                sql.push(format!("INSERT INTO sbtest.ledger (seq) VALUES ({n})"));
                sql.push("COMMIT".into());
                let mut ok = true;
                for q in &sql {
                    if conn.query_drop(q).await.is_err() {
                        ok = false;
                        break;
                    }
                }
                if !ok {
                    return; // the primary is gone
                }
                c.store(n, Ordering::SeqCst);
            }
        });
        Ledger {
            stop,
            committed,
            task,
        }
    }

    pub(crate) async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        self.committed.load(Ordering::SeqCst)
    }
}

pub(crate) async fn exec(server: &LocalServer, sql: &str) {
    let mut c = server.conn().await.unwrap();
    c.query_drop(sql)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
}

pub(crate) async fn scalar(server: &LocalServer, sql: &str) -> String {
    let mut c = server.conn().await.unwrap();
    let v: Option<String> = c.query_first(sql).await.unwrap();
    v.unwrap_or_default()
}

pub(crate) async fn ledger(server: &LocalServer) -> Vec<u64> {
    let mut c = server.conn().await.unwrap();
    c.query("SELECT seq FROM sbtest.ledger ORDER BY seq")
        .await
        .unwrap()
}

/// The seq of domain 0 in a GTID position.
pub(crate) fn seq0(pos: &str) -> u64 {
    GtidPos::parse(pos).unwrap().0[&0].seq
}

/// A local S3 server with the buckets `backup` and `redo` (and the dir it keeps them in).
pub(crate) async fn s3_backup_and_redo() -> (tempfile::TempDir, LocalS3) {
    let root = tempfile::tempdir().unwrap();
    let s3 = LocalS3::start(root.path(), "sgkey", SECRET).await.unwrap();
    s3.create_bucket("backup").unwrap();
    s3.create_bucket("redo").unwrap();
    (root, s3)
}

pub(crate) fn s3_uri(s3: &LocalS3, bucket: &str) -> String {
    format!(
        "s3://{bucket}/prod?access-key=sgkey&secret-access-key={SECRET}&endpoint={}&force-path-style=true",
        s3.endpoint()
    )
}

pub(crate) fn add_to_dr_section(config: &Path, lines: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(config, text.replace("[dr]\n", &format!("[dr]\n{lines}\n"))).unwrap();
}

pub(crate) fn archiver(flow: &Flow, extra: &[&str]) -> Child {
    let log = std::fs::File::create(flow.dir.path().join("archive.log")).unwrap();
    let mut args = vec!["-L", "info"];
    args.extend_from_slice(extra);
    flow.command("archive", &args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start dr archive")
}

pub(crate) async fn context(flow: &Flow) -> DrContext {
    let cfg = Config::from_file(&flow.config).unwrap();
    DrContext::new(&cfg, None, syncgate::interrupt::Interrupt::never()).unwrap()
}

/// Wait until the archive's position stops moving (1.5 s unchanged), then stop the
/// archiver with SIGTERM; the archive's position.
pub(crate) async fn settle_and_stop(flow: &Flow, mut arch: Child) -> GtidPos {
    let ctx = context(flow).await;
    let store = archive::redo_store(&ctx).await.unwrap();
    let mut last = GtidPos::default();
    let mut since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pos = archive::archived_position(&archive::load_index(store.as_ref()).await.unwrap())
            .unwrap();
        if pos != last {
            last = pos;
            since = Instant::now();
        } else if !last.0.is_empty() && since.elapsed() > Duration::from_millis(1500) {
            break;
        }
        assert!(Instant::now() < deadline, "the archive never settled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    crate::signals::send(&arch, "TERM");
    let status = arch.wait().unwrap();
    let log = std::fs::read_to_string(flow.dir.path().join("archive.log")).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{log}");
    last
}

/// Nothing was applied to the secondary and nothing about it changed.
async fn assert_unchanged(secondary: &LocalServer, start: &str) {
    assert!(ledger(secondary).await.is_empty(), "nothing applied");
    assert_eq!(scalar(secondary, "SELECT @@gtid_slave_pos").await, start);
    assert_eq!(scalar(secondary, "SELECT @@read_only").await, "1");
}

fn failover_json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(out)))
}

/// A flow whose primary was killed mid-load (see the test below): its parts and positions.
struct Killed {
    s3: LocalS3,
    flow: Flow,
    /// The GTID seq before the writer's first transaction (seq n is GTID base + n).
    base: u64,
    /// The secondary's seq when the primary died, and the archive's end.
    behind: u64,
    end: GtidPos,
    /// Ledger rows whose COMMIT returned.
    acknowledged: u64,
    _s3_root: tempfile::TempDir,
}

/// Backup, restore, replicate and archive under the ledger writer (real S3 for both
/// storages); the secondary's replication is stopped so it falls behind, then the primary
/// is killed with SIGKILL and the archiver stopped once the archive settles.
async fn killed_primary() -> Killed {
    let (s3_root, s3) = s3_backup_and_redo().await;
    let mut flow = Flow::new(1, 1_000, Some(s3_uri(&s3, "backup"))).await;
    add_to_dr_section(
        &flow.config,
        &format!(
            "redo-storage = \"{}\"\nflush-interval = 0.2",
            s3_uri(&s3, "redo")
        ),
    );
    exec(
        &flow.primary,
        "CREATE TABLE sbtest.ledger (seq BIGINT PRIMARY KEY, at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))",
    )
    .await;
    let base = seq0(&scalar(&flow.primary, "SELECT @@gtid_binlog_pos").await);

    // Refused before anything else: no archive yet.
    let out = flow.run("failover", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));

    let writer = Ledger::start(&flow.primary, 100, true);
    for step in ["backup", "restore", "replicate"] {
        let out = flow.run(step, &[]);
        assert_eq!(out.status.code(), Some(0), "{step}: {}", describe(&out));
    }
    let arch = archiver(&flow, &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The secondary falls behind: what it lacks is only in the archive (and its relay log,
    // which the failover does not use).
    exec(&flow.secondary, "STOP SLAVE").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    flow.primary.kill(); // SIGKILL mid-load
    let acknowledged = writer.stop().await;
    assert!(acknowledged > 300, "{acknowledged} transactions committed");
    let behind = seq0(&scalar(&flow.secondary, "SELECT @@gtid_slave_pos").await);
    let end = settle_and_stop(&flow, arch).await;
    assert!(
        end.0[&0].seq > behind + 100,
        "the archive ({end}) holds the transactions the secondary lacks (at {behind})"
    );
    Killed {
        s3,
        flow,
        base,
        behind,
        end,
        acknowledged,
        _s3_root: s3_root,
    }
}

/// Backup, restore, replicate and archive under the ledger writer (real S3 for both
/// storages); the secondary falls behind (its replication stopped), the primary is killed
/// with SIGKILL mid-load; `dr failover` applies the archive after the secondary's position
/// exactly once: gate 3 (a) equal, the ledger a gap-free prefix ending at the archive's
/// last transaction, the recovery point printed, the secondary writable and no longer a
/// replica; gate 3 (b): the secondary equals the backup restored into a scratch server
/// plus the whole archive replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_after_primary_kill_applies_the_archive_exactly_once() {
    let Killed {
        s3,
        flow,
        base,
        behind,
        end,
        acknowledged,
        _s3_root,
    } = killed_primary().await;
    let end_seq = end.0[&0].seq;

    // --dry-run runs the checks and changes nothing.
    let out = flow.run("failover", &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("would stop replication"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        seq0(&scalar(&flow.secondary, "SELECT @@gtid_slave_pos").await),
        behind
    );

    let out = flow.run("failover", &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let doc = failover_json(&out);
    assert_eq!(doc["gate_position"]["result"], "equal", "{doc}");
    assert_eq!(doc["archive_end"], end.to_string(), "{doc}");
    assert_eq!(seq0(doc["position"].as_str().unwrap()), end_seq, "{doc}");
    assert_eq!(
        doc["applied_transactions"].as_u64().unwrap(),
        end_seq - behind,
        "exactly the transactions after the secondary's position: {doc}"
    );
    assert!(doc["truncated"].is_null(), "{doc}");
    assert_eq!(doc["gate_data_result"], "equal", "{doc}");
    assert_eq!(doc["last_recovered"], format!("0-1-{end_seq}"), "{doc}");
    let rp = doc["recovery_point_unix"].as_u64().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    assert!(
        rp <= now && rp + 120 > now,
        "recovery point {rp}, now {now}"
    );
    assert!(doc["recovery_point"].as_str().unwrap().ends_with('Z'));
    assert!(doc["writable_after_ms"].as_u64().unwrap() < 60_000, "{doc}");
    // The counters were checked before the node took writes (sbtest's ids are AUTO_INCREMENT).
    let counters = doc["gate_counters"].as_str().unwrap();
    assert!(
        counters.contains("checked, all above") && !counters.starts_with("0 "),
        "{doc}"
    );
    assert!(
        doc["lost_transactions"].is_null(),
        "the primary is dead: {doc}"
    );

    // The ledger: a gap-free prefix ending at the archive's last transaction.
    let seqs = ledger(&flow.secondary).await;
    let last = end_seq - base;
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    assert!(
        last <= acknowledged && last + 50 >= acknowledged,
        "archived {last}, acknowledged {acknowledged}"
    );
    // Writable, no longer a replica, GTID state set for serving as a source.
    assert_eq!(scalar(&flow.secondary, "SELECT @@read_only").await, "0");
    assert_eq!(scalar(&flow.secondary, "SHOW SLAVE STATUS").await, "");
    assert_eq!(
        seq0(&scalar(&flow.secondary, "SELECT @@gtid_slave_pos").await),
        end_seq
    );
    exec(
        &flow.secondary,
        "INSERT INTO sbtest.ledger (seq) VALUES (1000000)",
    )
    .await;
    // The flow state records the step and its point; the text report has the recovery point.
    let state = flow.flow_state();
    assert_eq!(state["steps"]["failover"]["status"], "done", "{state}");
    assert_eq!(state["steps"]["failover"]["gate"]["result"], "equal");
    // The writes moved to the secondary at the failover's point.
    assert_eq!(state["acting_primary"]["node"], "secondary", "{state}");
    assert_eq!(state["acting_primary"]["by"], "failover", "{state}");
    assert_eq!(
        state["acting_primary"]["since"], state["steps"]["failover"]["point"],
        "{state}"
    );
    assert_eq!(
        seq0(
            state["steps"]["failover"]["point"]["gtid"]
                .as_str()
                .unwrap()
        ),
        end_seq
    );
    let text = std::fs::read_to_string(flow.out().join("failover/report.txt")).unwrap();
    assert!(text.contains("recovery point: 20"), "{text}");
    assert!(text.contains("gate 3 (a) position: equal"), "{text}");
    assert!(
        text.contains("gate 3 (b) data: equal: the secondary against a reconstruction"),
        "{text}"
    );
    let data = crate::scenario::summary(&flow.out().join("failover/data"));
    assert_eq!(data["result"], "equal", "{data:#}");
    assert_eq!(data["upstream"][0]["name"], "reconstruction", "{data:#}");
    // A second run is refused: the failover is recorded as done.
    let out = flow.run("failover", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already ran"),
        "{}",
        describe(&out)
    );
    s3.stop().await;
}

/// A missing middle segment (its object, then its index entry too) is refused with exit 2
/// naming the gap, nothing applied; a truncated last segment is applied up to its last
/// complete transaction and the report says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_archive_is_refused_or_applied_to_its_last_complete_transaction() {
    let (_s3_root, s3) = s3_backup_and_redo().await;
    let flow = Flow::new(1, 10, Some(s3_uri(&s3, "backup"))).await;
    add_to_dr_section(
        &flow.config,
        &format!(
            "redo-storage = \"{}\"\nflush-interval = 0.2",
            s3_uri(&s3, "redo")
        ),
    );
    let ddl = "CREATE TABLE IF NOT EXISTS sbtest.ledger (seq BIGINT PRIMARY KEY, at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))";
    exec(&flow.primary, ddl).await;
    exec(
        &flow.secondary,
        &format!("SET sql_log_bin = 0; CREATE DATABASE IF NOT EXISTS sbtest; {ddl}"),
    )
    .await;
    let start = scalar(&flow.primary, "SELECT @@gtid_binlog_pos").await;
    let base = seq0(&start);
    // The secondary as a restored one: same data, at the start position, read-only.
    exec(
        &flow.secondary,
        &format!("SET GLOBAL gtid_slave_pos = '{start}'; SET GLOBAL read_only = 1"),
    )
    .await;
    let arch = archiver(&flow, &["--start-gtid", &start]);
    let writer = Ledger::start(&flow.primary, 100, false);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let committed = writer.stop().await;
    assert!(committed > 100, "{committed}");
    // Two more transactions back to back: the last segment holds at least these two (a
    // flush would have to fall between them), so cutting its tail leaves one complete.
    exec(
        &flow.primary,
        &format!(
            "INSERT INTO sbtest.ledger (seq) VALUES ({}); INSERT INTO sbtest.ledger (seq) VALUES ({})",
            committed + 1,
            committed + 2
        ),
    )
    .await;
    let committed = committed + 2;
    let end = settle_and_stop(&flow, arch).await;
    assert_eq!(end.0[&0].seq, base + committed);

    let ctx = context(&flow).await;
    let store = archive::redo_store(&ctx).await.unwrap();
    let mut index = archive::load_index(store.as_ref()).await.unwrap();
    index.sort_by_key(|e| e.number);
    assert!(index.len() >= 4, "{} segments", index.len());
    // A middle segment's object is gone: refused, naming it.
    let middle = index[index.len() / 2].clone();
    let seg_bytes = store.get(&middle.segment).await.unwrap().unwrap();
    store.delete(&middle.segment).await.unwrap();
    let out = flow.run("failover", &["--no-data-gate"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("gap") && err.contains(&middle.segment),
        "{err}"
    );
    assert!(
        err.contains(&middle.first) && err.contains(&middle.last),
        "{err}"
    );
    assert_unchanged(&flow.secondary, &start).await;
    // Its index entry too: the index itself has the gap.
    let entry_key = middle.segment.replace(".bin", ".json");
    let entry_bytes = store.get(&entry_key).await.unwrap().unwrap();
    store.delete(&entry_key).await.unwrap();
    let out = flow.run("failover", &["--json", "--no-data-gate"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let first_missing = GtidPos::parse(&middle.first).unwrap().0[&0].seq;
    assert!(
        err.contains("gap in domain 0") && err.contains(&format!("seq {first_missing}")),
        "{err}"
    );
    assert_unchanged(&flow.secondary, &start).await;
    store.put(&middle.segment, seg_bytes).await.unwrap();
    store.put(&entry_key, entry_bytes).await.unwrap();

    // The last segment loses its tail (cut inside its last event).
    let last = index.last().unwrap().clone();
    let bytes = store.get(&last.segment).await.unwrap().unwrap();
    assert!(last.transactions >= 2, "{last:?}");
    let cut = bytes[..bytes.len() - 10].to_vec();
    let complete: Vec<_> = syncgate::dr::binlog::transactions(&cut).unwrap();
    let complete_to = complete.last().copied().unwrap();
    assert_eq!(
        complete_to.seq + 1,
        seq0(&last.last),
        "one transaction lost"
    );
    store.put(&last.segment, cut).await.unwrap();
    let out = flow.run("failover", &["--json", "--no-data-gate"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let doc = failover_json(&out);
    assert_eq!(doc["gate_position"]["result"], "equal", "{doc}");
    assert_eq!(doc["truncated"]["segment"], last.segment, "{doc}");
    assert_eq!(
        doc["truncated"]["complete_to"],
        complete_to.to_string(),
        "{doc}"
    );
    assert_eq!(doc["truncated"]["indexed_last"], last.last, "{doc}");
    assert!(
        doc["notes"].to_string().contains("truncated"),
        "the report says so: {doc}"
    );
    assert_eq!(doc["last_recovered"], complete_to.to_string());
    let seqs = ledger(&flow.secondary).await;
    assert_eq!(seqs, (1..=complete_to.seq - base).collect::<Vec<_>>());
    assert_eq!(scalar(&flow.secondary, "SELECT @@read_only").await, "0");
    let text = std::fs::read_to_string(flow.out().join("failover/report.txt")).unwrap();
    assert!(text.contains("truncated"), "{text}");
    s3.stop().await;
}

/// Gate 3 (b) finds what gate 3 (a) cannot: a row changed on the secondary without a binlog
/// entry leaves positions equal, but the secondary differs from the reconstruction, so the
/// failover exits 1 and leaves it read-only, naming the row in the gate's report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_that_differs_from_the_reconstruction_is_left_read_only() {
    let k = killed_primary().await;
    exec(
        &k.flow.secondary,
        "SET SESSION sql_log_bin = 0; UPDATE sbtest.ledger SET at = '2001-01-01' WHERE seq = 7",
    )
    .await;
    let out = k.flow.run("failover", &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let doc = failover_json(&out);
    assert_eq!(doc["gate_position"]["result"], "equal", "{doc}");
    assert_eq!(doc["gate_data_result"], "different", "{doc}");
    assert!(doc["writable_after_ms"].is_null(), "{doc}");
    assert!(
        doc["notes"].to_string().contains("NOT made writable"),
        "{doc}"
    );
    assert_eq!(scalar(&k.flow.secondary, "SELECT @@read_only").await, "1");
    let data = crate::scenario::summary(&k.flow.out().join("failover/data"));
    let ledger_report = data["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "ledger")
        .unwrap();
    assert_eq!(ledger_report["rows_changed"], 1, "{data:#}");
    let state = k.flow.flow_state();
    assert_eq!(
        state["steps"]["failover"]["status"], "gate-failed",
        "{state}"
    );
    k.s3.stop().await;
}
