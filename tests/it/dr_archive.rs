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
use crate::support::{purge_binlogs, start_server};

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
    // `dr status --json` carries the archive's state as fields; the primary is idle, so
    // nothing is left to archive.
    let index = archive::load_index(store.as_ref()).await.unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args(["dr", "status", "--json", "-C"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0), "{status:?}");
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let a = &doc["archive"];
    assert_eq!(a["segments"], index.len() as u64, "{a}");
    assert_eq!(a["bytes"], index.iter().map(|e| e.size).sum::<u64>(), "{a}");
    assert_eq!(a["last_gtid"], end.to_string(), "{a}");
    assert_eq!(a["position"], end.to_string(), "{a}");
    assert!(
        a["transactions"].as_u64().unwrap() >= stats.transactions,
        "{a}"
    );
    let age = a["age_seconds"].as_u64().unwrap();
    assert!(age < 120, "{a}");
    let newest = index.iter().map(|e| e.last_commit).max().unwrap();
    let newest = time::OffsetDateTime::from_unix_timestamp(newest as i64)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert_eq!(a["last_commit"], newest, "{a}");
    assert_eq!(a["lag_transactions"]["0"], 0, "{a}");
    assert!(a["error"].is_null(), "{a}");
    let text = Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args(["dr", "status", "-C"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains(&format!("last transaction {end} committed")),
        "{text}"
    );

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

/// Run the archiver to its end; panic if it is still running after `limit` (it retries
/// what it should have given up on).
fn archiver_exit(config: &Path, start: &str, limit: Duration) -> (Option<i32>, String) {
    let mut child = archiver(config, start);
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "dr archive still ran after {limit:?} (retrying a permanent error):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `error:` lines of the binary's stderr (the archiver also logs at info here).
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("error:")).collect()
}

/// The binlogs after the start are purged: exit 2 at once (no retrying), one error line
/// with server error 1236, the GTID the archive needs, and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_binlog_is_a_clear_error() {
    let primary = start_server(3).await;
    let mut c = primary.conn().await.unwrap();
    c.query_drop(
        "CREATE DATABASE p; CREATE TABLE p.t (a int primary key); INSERT INTO p.t VALUES (1),(2)",
    )
    .await
    .unwrap();
    let left = purge_binlogs(&primary).await;
    // The one binlog left starts after 0-3-1: what comes after it is gone.
    let starts: Option<String> = c
        .query_first(format!("SELECT BINLOG_GTID_POS('{left}', 4)"))
        .await
        .unwrap();
    let starts = GtidPos::parse(&starts.unwrap()).unwrap();
    assert!(
        !GtidPos::parse("0-3-1").unwrap().covers(&starts),
        "{left} starts at {starts}"
    );
    drop(c);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), primary.port(), primary.port());
    let (code, stderr) = archiver_exit(&cfg, "0-3-1", Duration::from_secs(30));
    assert_eq!(code, Some(2), "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    for part in [
        "server error 1236",
        "after GTID 0-3-1",
        "purged",
        "take a new backup",
    ] {
        assert!(errors[0].contains(part), "{part} in: {stderr}");
    }
    assert!(!stderr.contains("reconnecting"), "no retry: {stderr}");
    assert!(
        std::fs::read_dir(dir.path().join("redo"))
            .unwrap()
            .next()
            .is_none(),
        "nothing archived"
    );
}

/// mariadb-binlog's own refusal (the user may read but not dump the binlog: 1227) and a
/// refused login (1045) stop the archiver with one line each; neither is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_privilege_or_login_stops_the_archiver() {
    let primary = start_server(4).await;
    let mut c = primary.conn().await.unwrap();
    c.query_drop(
        "CREATE USER 'arch'@'%' IDENTIFIED BY 'Arch1pw'; \
         GRANT SELECT, BINLOG MONITOR ON *.* TO 'arch'@'%'; \
         CREATE DATABASE p; CREATE TABLE p.t (a int primary key); INSERT INTO p.t VALUES (1)",
    )
    .await
    .unwrap();
    let start: Option<String> = c.query_first("SELECT @@gtid_binlog_pos").await.unwrap();
    let start = start.unwrap();
    drop(c);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), primary.port(), primary.port());
    let root = "user = \"root\"\n";
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(root, "user = \"arch\"\npassword = \"Arch1pw\"\n"),
    )
    .unwrap();
    let (code, stderr) = archiver_exit(&cfg, &start, Duration::from_secs(30));
    assert_eq!(code, Some(2), "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("server error 1227") && errors[0].contains("grant REPLICATION SLAVE"),
        "{stderr}"
    );

    std::fs::write(
        &cfg,
        text.replace(root, "user = \"arch\"\npassword = \"Wr0ngPw\"\n"),
    )
    .unwrap();
    let (code, stderr) = archiver_exit(&cfg, &start, Duration::from_secs(30));
    assert_eq!(code, Some(2), "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("Access denied") && errors[0].contains("1045"),
        "{stderr}"
    );
    assert!(!stderr.contains("Wr0ngPw"), "{stderr}");
}
