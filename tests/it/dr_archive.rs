//! `syncgate dr archive` and replay end to end: a real primary under write load (binlog in
//! ROW format), restarted once; the archiver killed with SIGKILL once and started again;
//! the archive replayed onto a second server that holds the same starting data, then
//! `syncgate check` primary against it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use syncgate::config::Config;
use syncgate::dr::archive;
use syncgate::dr::binlog::GtidPos;
use syncgate::dr::DrContext;
use syncgate::local::LocalServer;

use crate::dr_backup::writes;
use crate::support::start_server;

fn config(dir: &Path, primary: u16, secondary: u16) -> std::path::PathBuf {
    let storage = dir.join("storage");
    let redo = dir.join("redo");
    std::fs::create_dir_all(&storage).unwrap();
    std::fs::create_dir_all(&redo).unwrap();
    let path = dir.join("dr.toml");
    std::fs::write(
        &path,
        format!(
            "check-thread-count = 2\n\
             [data-sources.primary]\nhost = \"127.0.0.1\"\nport = {primary}\nuser = \"root\"\n\
             [data-sources.secondary]\nhost = \"127.0.0.1\"\nport = {secondary}\nuser = \"root\"\n\
             [dr]\nprimary = \"primary\"\nsecondary = \"secondary\"\n\
             backup-storage = \"local://{}\"\nredo-storage = \"local://{}\"\n\
             flush-interval = 0.2\n\
             [task]\noutput-dir = \"{}\"\nsource-instances = [\"primary\"]\n\
             target-instance = \"secondary\"\ntarget-check-tables = [\"sbtest.*\"]\n",
            storage.display(),
            redo.display(),
            dir.join("out").display()
        ),
    )
    .unwrap();
    path
}

fn archiver(config: &Path, start: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args(["dr", "archive", "-C"])
        .arg(config)
        .args(["--start-gtid", start, "-L", "info"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dr archive")
}

async fn binlog_pos(server: &LocalServer) -> String {
    let mut c = server.conn().await.unwrap();
    let v: Option<String> = c.query_first("SELECT @@gtid_binlog_pos").await.unwrap();
    v.unwrap_or_default()
}

async fn context(config: &Path) -> DrContext {
    let cfg = Config::from_file(config).unwrap();
    DrContext::new(&cfg, None, syncgate::interrupt::Interrupt::never()).unwrap()
}

/// Archive under ~100 TPS with a primary restart and an archiver SIGKILL; replay onto a
/// server with the same starting data; `syncgate check` finds both equal; every
/// transaction is in the archive exactly once; a damaged segment is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_survives_restart_and_kill_then_replays_exactly_once() {
    let mut primary = start_server(1).await;
    let secondary = start_server(2).await;
    for s in [&primary, &secondary] {
        syncgate::testdata::sbtest::seed_sbtest(&[s.opts()], 2, 500, 7)
            .await
            .expect("seed");
    }
    let start = binlog_pos(&primary).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), primary.port(), secondary.port());
    let mut arch = archiver(&cfg, &start);
    let load = writes(&primary, 2, 100);
    tokio::time::sleep(Duration::from_secs(3)).await;
    primary.restart().await.expect("restart the primary");
    tokio::time::sleep(Duration::from_secs(3)).await;
    arch.kill().unwrap(); // SIGKILL
    arch.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let arch = archiver(&cfg, &start);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = load.stop().await.expect("load");
    assert!(stats.transactions > 100, "{stats:?}");

    // The archive catches up with the primary.
    let end = GtidPos::parse(&binlog_pos(&primary).await).unwrap();
    let ctx = context(&cfg).await;
    let store = archive::redo_store(&ctx).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let index = archive::load_index(store.as_ref()).await.unwrap();
        if archive::archived_position(&index).unwrap().covers(&end) {
            break;
        }
        assert!(Instant::now() < deadline, "the archive never reached {end}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // SIGTERM: exit 0.
    crate::signals::send(&arch, "TERM");
    let out = arch.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Exactly once: the segments after the start are contiguous and hold every
    // transaction from the start to the primary's end, none twice.
    let from = GtidPos::parse(&start).unwrap();
    let index = archive::load_index(store.as_ref()).await.unwrap();
    let plan = archive::plan(&index, &from).unwrap();
    let mut seqs = Vec::new();
    for e in &plan {
        let bytes = store.get(&e.segment).await.unwrap().unwrap();
        for g in syncgate::dr::binlog::transactions(&bytes).unwrap() {
            seqs.push(g.seq);
        }
    }
    let first = from.0[&0].seq + 1;
    let last = end.0[&0].seq;
    assert_eq!(seqs, (first..=last).collect::<Vec<_>>());
    assert!(
        seqs.len() as u64 >= stats.transactions,
        "{} archived, {} committed by the load",
        seqs.len(),
        stats.transactions
    );

    // Replay onto the secondary, then check primary against it.
    let ds = ctx.config.data_sources["secondary"].clone();
    let outcome = archive::replay(store.as_ref(), &ctx.secondary, &ds, Some(from.clone()))
        .await
        .expect("replay");
    assert!(outcome.position.covers(&end), "{:?}", outcome.position);
    let mut c = secondary.conn().await.unwrap();
    let slave_pos: Option<String> = c
        .query_first("SELECT @@GLOBAL.gtid_slave_pos")
        .await
        .unwrap();
    assert!(GtidPos::parse(&slave_pos.unwrap()).unwrap().covers(&end));
    let check = Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args(["check", "-C"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    // A second replay from the new position applies nothing.
    let again = archive::replay(store.as_ref(), &ctx.secondary, &ds, None)
        .await
        .unwrap();
    assert_eq!(again.segments, 0);

    // A damaged segment: replay refuses it before applying anything.
    let victim = dir.path().join("redo").join(&plan[0].segment);
    let mut bytes = std::fs::read(&victim).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();
    let err = archive::replay(store.as_ref(), &ctx.secondary, &ds, Some(from))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");
}

/// The binlogs after the start are purged: a clear error and exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "not working yet: with the start GTID's binlog purged the archiver starts \
            mariadb-binlog on the purged file and retries forever instead of exiting 2"]
async fn purged_binlog_is_a_clear_error() {
    let primary = start_server(3).await;
    let mut c = primary.conn().await.unwrap();
    c.query_drop(
        "CREATE DATABASE p; CREATE TABLE p.t (a int primary key); INSERT INTO p.t VALUES (1),(2)",
    )
    .await
    .unwrap();
    c.query_drop("FLUSH BINARY LOGS").await.unwrap();
    let row: mysql_async::Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
    let file: String = row.get(0).unwrap();
    c.query_drop(format!("PURGE BINARY LOGS TO '{file}'"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), primary.port(), primary.port());
    let out = archiver(&cfg, "0-3-1").wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("purged"), "{stderr}");
}
