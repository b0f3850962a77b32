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

/// The sysbench-shaped write load (`testdata::load`) on the primary's sbtest tables.
pub fn writes(server: &LocalServer, tables: u32, tps: u32) -> syncgate::testdata::LoadHandle {
    let load = syncgate::testdata::LoadOptions {
        tps,
        duration: None,
        tables: (1..=tables)
            .map(|t| syncgate::schema::TableRef::new("sbtest", format!("sbtest{t}")))
            .collect(),
        connections: 2,
        seed: 11,
    };
    syncgate::testdata::spawn_load(server.opts(), load)
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
    let writes = writes(&flow.primary, 4, 100);
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
    let stats = writes.stop().await.expect("the load ran without errors");
    assert!(stats.transactions > 50, "the load ran: {stats:?}");
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
    find_where(dir, &|p: &Path| p.file_name().is_some_and(|n| n == name))
}

/// The first file under `dir` (recursively) that `pred` accepts.
fn find_where(dir: &Path, pred: &dyn Fn(&Path) -> bool) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()? {
        let p = entry.ok()?.path();
        if p.is_dir() {
            if let Some(f) = find_where(&p, pred) {
                return Some(f);
            }
        } else if pred(&p) {
            return Some(p);
        }
    }
    None
}

/// Wait until the backup's dump is being uploaded: its temporary object in local storage
/// holds at least 1 MiB (of about 11 MiB), so the step is midway whatever the machine's speed.
pub(crate) fn wait_uploading(flow: &Flow, child: &mut std::process::Child) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let midway = |p: &Path| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".dump.sql.zst.sg-tmp-"))
            && p.metadata().is_ok_and(|m| m.len() >= 1 << 20)
    };
    while find_where(&flow.storage(), &midway).is_none() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("dr backup ended ({status}) before it was seen uploading");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dr backup never uploaded"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Wait until the flow state's copy says `step` is running (the step is under way).
pub(crate) fn wait_running(flow: &Flow, step: &str, child: &mut std::process::Child) {
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
pub(crate) async fn rows_on(server: &LocalServer, table: &str) -> u64 {
    let mut c = server.conn().await.unwrap();
    let n: Result<Option<u64>, _> = c.query_first(format!("SELECT COUNT(*) FROM {table}")).await;
    n.ok().flatten().unwrap_or(0)
}

pub(crate) fn signal(child: &std::process::Child, sig: &str) {
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
    wait_uploading(&flow, &mut child);
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
    wait_uploading(&flow, &mut child);
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

/// Every file under `dir`, with its contents (lossy UTF-8).
fn files_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if let Ok(b) = std::fs::read(&p) {
            out.push((p, String::from_utf8_lossy(&b).into_owned()));
        }
    }
    out
}

const SECRET: &str = "s3cr3t-Never-Shown+/=";

/// The whole flow with backups in a real S3 server over HTTP, under writes; the secret
/// appears in no output, log, report, manifest or flow state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_flow_under_writes_never_shows_the_secret() {
    let s3_root = tempfile::tempdir().unwrap();
    let s3 = syncgate::local::LocalS3::start(s3_root.path(), "sgkey", SECRET)
        .await
        .unwrap();
    s3.create_bucket("backup").unwrap();
    let uri = format!(
        "s3://backup/prod?access-key=sgkey&secret-access-key={}&endpoint={}&force-path-style=true",
        syncgate::storage::encode_query_value(SECRET),
        s3.endpoint()
    );
    let flow = Flow::new(2, 5_000, Some(uri)).await;
    let load = writes(&flow.primary, 2, 100);
    let mut outputs = Vec::new();
    for (step, args) in [
        ("backup", vec!["--dry-run"]),
        ("backup", vec![]),
        ("restore", vec!["--dry-run"]),
        ("restore", vec![]),
        ("status", vec![]),
    ] {
        let out = flow.run(step, &args);
        assert_eq!(out.status.code(), Some(0), "{step}: {}", describe(&out));
        outputs.push(out);
    }
    load.stop().await.expect("load");
    assert!(
        stdout(&outputs[3]).contains("gate 1: equal"),
        "{}",
        describe(&outputs[3])
    );
    assert!(stdout(&outputs[4]).contains("backups: 1 complete"));
    // The objects really are in the S3 server's bucket.
    let stored = files_under(s3_root.path());
    assert!(
        stored.iter().any(|(p, _)| p.ends_with("prod/flow.json")),
        "{stored:?}"
    );
    assert!(stored.iter().any(|(p, _)| p.ends_with("manifest.json")));
    let encoded = syncgate::storage::encode_query_value(SECRET);
    let mut looked = 0;
    for out in &outputs {
        for text in [
            stdout(out),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ] {
            assert!(!text.contains(SECRET) && !text.contains(&encoded), "{text}");
            looked += 1;
        }
    }
    for (path, text) in files_under(&flow.out()).into_iter().chain(stored) {
        if path.extension().is_some_and(|e| e == "zst") {
            continue; // compressed data, not text
        }
        assert!(
            !text.contains(SECRET) && !text.contains(&encoded),
            "{} shows the secret",
            path.display()
        );
        looked += 1;
    }
    assert!(looked > 10, "only {looked} texts were searched");
    assert!(flow.out().join("dr.log").exists());
}

/// Wrong credentials, an unreachable endpoint and a missing bucket: one line each, exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_failures_are_one_line_and_exit_2() {
    let s3_root = tempfile::tempdir().unwrap();
    let s3 = syncgate::local::LocalS3::start(s3_root.path(), "sgkey", SECRET)
        .await
        .unwrap();
    s3.create_bucket("backup").unwrap();
    let closed = syncgate::local::free_port().unwrap();
    let cases = [
        (
            format!(
                "s3://backup/p?access-key=sgkey&secret-access-key=wrong-{}&endpoint={}&force-path-style=true",
                "x", s3.endpoint()
            ),
            "credentials were rejected",
        ),
        (
            format!(
                "s3://backup/p?access-key=sgkey&secret-access-key=whatever&endpoint=http://127.0.0.1:{closed}&force-path-style=true"
            ),
            "cannot reach",
        ),
        (
            format!(
                "s3://nobucket/p?access-key=sgkey&secret-access-key={}&endpoint={}&force-path-style=true",
                syncgate::storage::encode_query_value(SECRET),
                s3.endpoint()
            ),
            "does not exist",
        ),
    ];
    let flow = Flow::new(1, 100, None).await;
    for (uri, expected) in cases {
        let text = std::fs::read_to_string(&flow.config).unwrap();
        let start = text.find("backup-storage = ").unwrap();
        let end = start + text[start..].find('\n').unwrap();
        let changed = format!(
            "{}backup-storage = \"{uri}\"{}",
            &text[..start],
            &text[end..]
        );
        std::fs::write(&flow.config, changed).unwrap();
        let out = flow.run("backup", &[]);
        assert_eq!(out.status.code(), Some(2), "{uri}: {}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(expected), "{expected}: {err}");
        assert!(!err.contains("whatever") && !err.contains("wrong-x") && !err.contains(SECRET));
    }
}
