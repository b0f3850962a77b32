//! `syncgate dr backup` / `dr restore` / gate 1 end to end: real MariaDB servers (primary
//! with binlog, secondary), the real `mariadb-dump` and `mariadb` client, storage in a
//! local directory or a real S3 server, the primary under write load throughout.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use syncgate::local::LocalServer;

use crate::scenario::describe;
use crate::support::start_server;

/// Two servers, a storage location and a config file for the flow.
pub struct Flow {
    pub primary: LocalServer,
    pub secondary: LocalServer,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Flow {
    /// Servers with `tables` sbtest tables of `rows` rows on the primary, storage at
    /// `storage` (None: a local directory inside the test dir).
    pub async fn new(tables: u32, rows: u64, storage: Option<String>) -> Flow {
        let primary = start_server(1).await;
        let secondary = start_server(2).await;
        syncgate::testdata::sbtest::seed_sbtest(&[primary.opts()], tables, rows, 7)
            .await
            .expect("seed the primary");
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = storage.unwrap_or_else(|| {
            let p = dir.path().join("storage");
            std::fs::create_dir_all(&p).unwrap();
            format!("local://{}", p.display())
        });
        let config = dir.path().join("dr.toml");
        std::fs::write(
            &config,
            format!(
                "check-thread-count = 2\n\
                 [data-sources.primary]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"root\"\n\
                 [data-sources.secondary]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"root\"\n\
                 [dr]\nprimary = \"primary\"\nsecondary = \"secondary\"\n\
                 backup-storage = \"{storage}\"\n\
                 [task]\noutput-dir = \"{}\"\ntarget-check-tables = [\"sbtest.*\"]\n",
                primary.port(),
                secondary.port(),
                dir.path().join("out").display()
            ),
        )
        .unwrap();
        Flow {
            primary,
            secondary,
            dir,
            config,
        }
    }

    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// `syncgate dr <step> -C <config> <extra…>`.
    pub fn run(&self, step: &str, extra: &[&str]) -> Output {
        self.command(step, extra).output().expect("run syncgate")
    }

    pub fn command(&self, step: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncgate"));
        cmd.args(["dr", step, "-C"])
            .arg(&self.config)
            .args(extra)
            .env_remove("RUST_LOG");
        cmd
    }

    pub fn flow_state(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.out().join("flow.json")).expect("flow.json");
        serde_json::from_str(&text).unwrap()
    }
}

/// A sysbench-shaped writer on the primary (~`tps` transactions per second) until dropped.
pub struct Writes {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<u64>,
}

impl Writes {
    pub fn start(server: &LocalServer, tps: u32) -> Writes {
        let opts = server.opts();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut conn = mysql_async::Conn::new(opts).await.expect("writer connects");
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / tps as f64));
            let mut n: u64 = 0;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                let id = 1 + (n * 7919) % 500;
                let sql = format!(
                    "BEGIN; UPDATE sbtest.sbtest1 SET k = k + 1 WHERE id = {id}; \
                     DELETE FROM sbtest.sbtest2 WHERE id = {id}; \
                     INSERT INTO sbtest.sbtest2 (id, k, c, pad) VALUES ({id}, {n}, 'w', 'w'); COMMIT"
                );
                if conn.query_drop(sql).await.is_err() {
                    break;
                }
                n += 1;
            }
            n
        });
        Writes { stop, task }
    }

    /// Stop and return the number of transactions written.
    pub async fn stop(self) -> u64 {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or(0)
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn scalar(server: &LocalServer, sql: &str) -> String {
    let mut c = server.conn().await.unwrap();
    let v: Option<String> = c.query_first(sql).await.unwrap();
    v.unwrap_or_default()
}

/// Backup under writes → restore → gate 1 equal; then one row deleted and one changed on
/// the secondary → gate 1 names both and exits 1; a restore into the non-empty secondary
/// is refused; with --overwrite it succeeds and the gate is equal again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_restore_gate_under_writes() {
    let flow = Flow::new(4, 5_000, None).await;
    let writes = Writes::start(&flow.primary, 100);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let out = flow.run("backup", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(stdout(&out).contains("20000 row(s)"), "{}", describe(&out));
    let state = flow.flow_state();
    assert_eq!(state["steps"]["backup"]["status"], "done");
    let gtid = state["steps"]["backup"]["point"]["gtid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(gtid.starts_with("0-1-"), "{gtid}");

    // Writes go on: the primary moves past the backup point while we restore.
    let out = flow.run("restore", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(stdout(&out).contains("gate 1: equal"), "{}", describe(&out));
    let written = writes.stop().await;
    assert!(written > 50, "the load ran ({written} transactions)");
    assert_ne!(
        scalar(&flow.primary, "SELECT @@gtid_binlog_pos").await,
        gtid
    );
    assert_eq!(
        scalar(&flow.secondary, "SELECT @@gtid_slave_pos").await,
        gtid
    );
    // The restore wrote no local GTIDs on the secondary.
    assert_eq!(
        scalar(&flow.secondary, "SELECT @@gtid_binlog_pos").await,
        ""
    );
    let state = flow.flow_state();
    assert_eq!(state["steps"]["restore"]["status"], "done");
    assert_eq!(state["steps"]["restore"]["gate"]["result"], "equal");

    // Damage the secondary: one row lost, one changed.
    let mut c = flow.secondary.conn().await.unwrap();
    c.query_drop("DELETE FROM sbtest.sbtest3 WHERE id = 42")
        .await
        .unwrap();
    c.query_drop("UPDATE sbtest.sbtest4 SET c = 'changed' WHERE id = 4242")
        .await
        .unwrap();
    drop(c);
    let out = flow.run("restore", &["--gate-only"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = std::fs::read_to_string(flow.out().join("restore/gate.txt")).unwrap();
    assert!(text.contains("missing: `id` = 42"), "{text}");
    assert!(text.contains("changed: `id` = 4242"), "{text}");
    assert!(
        text.contains("table sbtest.sbtest3: 1 missing, 0 extra, 0 changed"),
        "{text}"
    );
    assert_eq!(
        flow.flow_state()["steps"]["restore"]["status"],
        "gate-failed"
    );

    // A restore onto a secondary holding data is refused and says what it would replace.
    let out = flow.run("restore", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sbtest.sbtest1 (~"), "{err}");
    assert!(err.contains("--overwrite"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let out = flow.run("restore", &["--overwrite"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(stdout(&out).contains("gate 1: equal"), "{}", describe(&out));

    // Done is done: a second restore needs --again.
    let out = flow.run("restore", &["--overwrite"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--again"));
}

/// A backup object damaged in storage is refused before the secondary is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_backup_is_refused_before_restoring() {
    let flow = Flow::new(1, 2_000, None).await;
    let out = flow.run("backup", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let dump = find(&flow.storage(), "dump.sql.zst").expect("dump object");
    let mut bytes = std::fs::read(&dump).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&dump, bytes).unwrap();
    let out = flow.run("restore", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is damaged"), "{err}");
    let tables = scalar(
        &flow.secondary,
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'sbtest'",
    )
    .await;
    assert_eq!(tables, "0", "nothing was restored");
    assert_eq!(flow.flow_state()["steps"]["restore"]["status"], "failed");
}

/// The first file named `name` under `dir`.
pub fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()? {
        let p = entry.ok()?.path();
        if p.is_dir() {
            if let Some(f) = find(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

/// Wait until the flow state's copy says `step` is running (the step is under way).
fn wait_running(flow: &Flow, step: &str, child: &mut std::process::Child) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(flow.out().join("flow.json")) {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if v["steps"][step]["status"] == "running" {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("dr {step} ended ({status}) before it was seen running");
        }
        assert!(std::time::Instant::now() < deadline, "dr {step} never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Rows in `table`, 0 when it does not exist (yet).
async fn rows_on(server: &LocalServer, table: &str) -> u64 {
    let mut c = server.conn().await.unwrap();
    let n: Result<Option<u64>, _> = c.query_first(format!("SELECT COUNT(*) FROM {table}")).await;
    n.ok().flatten().unwrap_or(0)
}

fn signal(child: &std::process::Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// kill -9 in the middle of a backup leaves no backup that looks complete and a flow that
/// the next run takes over; kill -9 in the middle of a restore leaves a secondary that the
/// next restore refuses without --overwrite and restores with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_midway_leaves_nothing_that_looks_complete() {
    let flow = Flow::new(2, 60_000, None).await;
    let mut child = flow.command("backup", &[]).spawn().unwrap();
    wait_running(&flow, "backup", &mut child);
    std::thread::sleep(Duration::from_millis(400));
    signal(&child, "-9");
    let _ = child.wait();
    assert!(
        find(&flow.storage(), "manifest.json").is_none(),
        "a killed backup has no manifest"
    );
    assert!(
        flow.storage().join("flow.lock").exists(),
        "the dead run's lock is left"
    );
    let out = flow.run("status", &[]);
    assert!(
        stdout(&out).contains("backups: 0 complete"),
        "{}",
        describe(&out)
    );

    let out = flow.run("backup", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(stdout(&out).contains("120000 row(s)"), "{}", describe(&out));
    assert!(
        !flow.storage().join("flow.lock").exists(),
        "the lock is released"
    );

    let mut child = flow.command("restore", &[]).spawn().unwrap();
    wait_running(&flow, "restore", &mut child);
    // Until rows arrive on the secondary, the restore is still fetching.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while rows_on(&flow.secondary, "sbtest.sbtest1").await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the restore never loaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&child, "-9");
    let _ = child.wait();
    let out = flow.run("restore", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--overwrite"));
    let out = flow.run("restore", &["--overwrite"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(stdout(&out).contains("gate 1: equal"), "{}", describe(&out));
}

/// SIGINT during a backup: exit 130, the step recorded as interrupted, the lock released,
/// no manifest; the next run completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_during_backup_is_recorded_and_retried() {
    let flow = Flow::new(2, 60_000, None).await;
    let mut child = flow
        .command("backup", &[])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_running(&flow, "backup", &mut child);
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped by SIGINT"));
    assert_eq!(
        flow.flow_state()["steps"]["backup"]["status"],
        "interrupted"
    );
    assert!(!flow.storage().join("flow.lock").exists());
    assert!(find(&flow.storage(), "manifest.json").is_none());
    assert!(
        find(&flow.storage(), "dump.sql.zst").is_none(),
        "the interrupted backup's objects are removed"
    );
    let out = flow.run("backup", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}
