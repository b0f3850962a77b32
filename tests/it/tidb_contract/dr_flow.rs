//! `syncgate dr backup`, the real binary, with the stand-in TiDB as the primary, the mock PD
//! as its cluster's PD (found through `information_schema.cluster_info`) and backup-storage
//! in a local directory: the TSO read, the PD GC hold at that TSO before the one BACKUP
//! statement, the manifest and the flow state; and a failing BACKUP releasing the hold.

use super::fake_tidb::{FakeTidb, Outcome};
use super::mock_pd::{update, Call, MockPd};
use super::SAMPLE;
use crate::scenario::describe;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const CLUSTER: u64 = 7_108_529_601_739_112_473;
/// `[dr] gc-hold-ttl`, not the default.
const GC_HOLD_TTL: i64 = 7_200;
/// The BackupTS the stand-in answers: after the hold's TSO, as on a real cluster.
const BACKUP_TS: u64 = SAMPLE + (200_000 << 18);

/// The stand-in TiDB, the mock PD, storage (a directory whose name needs escaping in a
/// string literal) and a config naming them.
struct Primary {
    tidb: FakeTidb,
    pd: MockPd,
    dir: tempfile::TempDir,
    storage: PathBuf,
    config: PathBuf,
}

impl Primary {
    async fn start() -> Primary {
        let tidb = FakeTidb::start().await;
        let pd = MockPd::start(CLUSTER, SAMPLE).await;
        tidb.with(|s| {
            s.backup_ts = BACKUP_TS;
            s.pd_instances = vec![pd.addr.to_string()];
            s.tables = [("shop", "orders"), ("shop", "items"), ("we`ird", "t")]
                .iter()
                .map(|(d, t)| (d.to_string(), t.to_string()))
                .collect();
        });
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = dir.path().join("it's");
        std::fs::create_dir_all(&storage).unwrap();
        let config = dir.path().join("dr.toml");
        let port = tidb.addr.port();
        std::fs::write(
            &config,
            format!(
                "[data-sources.primary]\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"root\"\n\
                 [data-sources.secondary]\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"root\"\n\
                 [dr]\nprimary = \"primary\"\nsecondary = \"secondary\"\n\
                 backup-storage = \"local://{}\"\ngc-hold-ttl = {GC_HOLD_TTL}\n\
                 [task]\noutput-dir = \"{}\"\ntarget-check-tables = [\"*.*\"]\n",
                storage.display(),
                dir.path().join("out").display()
            ),
        )
        .unwrap();
        Primary {
            tidb,
            pd,
            dir,
            storage,
            config,
        }
    }

    /// `syncgate dr backup -C <config>`, not started.
    fn backup_command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncgate"));
        cmd.args(["dr", "backup", "-C"])
            .arg(&self.config)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG");
        cmd
    }

    /// `syncgate dr backup -C <config>`, off the runtime that serves the stand-ins.
    async fn backup(&self) -> Output {
        let mut cmd = self.backup_command();
        tokio::task::spawn_blocking(move || cmd.output().expect("run syncgate"))
            .await
            .unwrap()
    }

    fn flow_state(&self) -> serde_json::Value {
        json(&self.storage.join("flow.json"))
    }

    /// The backup's ID, from the flow state.
    fn backup_id(&self) -> String {
        self.flow_state()["steps"]["backup"]["backup_id"]
            .as_str()
            .expect("the backup step names its backup")
            .to_string()
    }

    /// The exact BACKUP statement for backup `id`: both schemas quoted, the storage URI
    /// with its `'` doubled.
    fn expected_backup_sql(&self, id: &str) -> String {
        let uri = format!("local://{}/backups/{id}/br", self.storage.display());
        format!(
            "BACKUP DATABASE `shop`, `we``ird` TO '{}' CHECKSUM = TRUE",
            uri.replace('\'', "''")
        )
    }

    /// Every BACKUP statement the stand-in received, with its arrival time.
    fn backups(&self) -> Vec<(Instant, String)> {
        self.tidb.with(|s| {
            s.statements
                .iter()
                .zip(&s.arrived)
                .filter(|((_, sql), _)| sql.starts_with("BACKUP "))
                .map(|((_, sql), at)| (*at, sql.clone()))
                .collect()
        })
    }

    /// The PD's `UpdateServiceGCSafePoint` calls with their arrival times.
    fn pd_updates(&self) -> Vec<(Instant, Call)> {
        self.pd.with(|s| {
            s.calls
                .iter()
                .filter(|(_, c)| matches!(c, Call::Update { .. }))
                .cloned()
                .collect()
        })
    }

    /// The one TSO the stand-in handed out (the hold's), and that it was read before any
    /// BACKUP arrived.
    fn hold_tso(&self) -> u64 {
        let (handed_out, statements) = self
            .tidb
            .with(|s| (s.handed_out.clone(), s.statements.clone()));
        assert_eq!(handed_out.len(), 1, "one fresh TSO: {handed_out:?}");
        let position = |text: &str| statements.iter().position(|(_, sql)| sql == text);
        let read = position("SELECT @@tidb_current_ts").expect("the TSO was read");
        if let Some(backup) = statements
            .iter()
            .position(|(_, sql)| sql.starts_with("BACKUP "))
        {
            assert!(read < backup, "TSO read after BACKUP: {statements:?}");
        }
        handed_out[0]
    }
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_backup_holds_gc_at_a_fresh_tso_then_backs_up_and_records_backup_ts() {
    let p = Primary::start().await;
    let out = p.backup().await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let id = p.backup_id();
    let tso = p.hold_tso();

    let backups = p.backups();
    assert_eq!(backups.len(), 1, "exactly one BACKUP: {backups:?}");
    let (backup_at, sql) = &backups[0];
    assert_eq!(sql, &p.expected_backup_sql(&id));

    let service = format!("syncgate-dr-{id}");
    let updates = p.pd_updates();
    let expected = update(CLUSTER, &service, GC_HOLD_TTL, tso);
    assert_eq!(
        updates.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>(),
        vec![expected],
        "one hold, kept after a successful backup"
    );
    assert!(updates[0].0 < *backup_at, "the GC hold came after BACKUP");

    let manifest = json(&p.storage.join(format!("backups/{id}/manifest.json")));
    assert_eq!(manifest["id"], id.as_str());
    assert_eq!(manifest["flavour"], "tidb");
    assert_eq!(
        manifest["point"],
        serde_json::json!({"kind": "tso", "tso": BACKUP_TS})
    );

    let state = p.flow_state();
    assert_eq!(state["steps"]["backup"]["status"], "done");
    assert_eq!(
        state["steps"]["backup"]["point"],
        serde_json::json!({"kind": "tso", "tso": BACKUP_TS})
    );
    assert_eq!(
        state["gc_hold"],
        serde_json::json!({
            "service_id": service,
            "safe_point": tso,
            "pd": [format!("http://{}", p.pd.addr)],
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_backup_whose_backup_fails_releases_the_gc_hold_and_keeps_no_manifest() {
    let p = Primary::start().await;
    p.tidb.with(|s| {
        s.backup = Outcome::Fail {
            code: 8124,
            state: "HY000".into(),
            message: "Backup failed: disk full".into(),
        }
    });
    let out = p.backup().await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let id = p.backup_id();
    let tso = p.hold_tso();
    assert_eq!(p.backups().len(), 1, "one BACKUP attempt");

    let service = format!("syncgate-dr-{id}");
    let calls: Vec<Call> = p.pd_updates().into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        calls,
        vec![
            update(CLUSTER, &service, GC_HOLD_TTL, tso),
            update(CLUSTER, &service, 0, 0),
        ],
        "the hold is set, then removed (TTL 0)"
    );
    assert!(p.pd.with(|s| s.services.is_empty()));

    let state = p.flow_state();
    assert_eq!(state["steps"]["backup"]["status"], "failed");
    assert!(state.get("gc_hold").is_none(), "{state}");
    assert!(!p.storage.join(format!("backups/{id}")).exists());
}

/// SIGINT while TiDB runs the BACKUP job: the job is cancelled with `KILL TIDB QUERY`, the
/// GC hold is released (TTL 0) after the kill, the step is recorded as interrupted, no
/// manifest is kept, and the exit code is 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_during_backup_kills_the_job_and_releases_the_gc_hold() {
    let p = Primary::start().await;
    p.tidb.with(|s| s.backup = Outcome::Hold);
    let mut child = p
        .backup_command()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while p.backups().is_empty() {
        assert!(Instant::now() < deadline, "BACKUP never arrived");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || {
        let _ = &mut child;
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", describe(&out));

    let killed = p.tidb.with(|s| s.killed_at.clone());
    assert_eq!(killed.len(), 1, "the BACKUP job was killed once");
    let id = p.backup_id();
    let tso = p.hold_tso();
    let service = format!("syncgate-dr-{id}");
    let updates = p.pd_updates();
    let calls: Vec<Call> = updates.iter().map(|(_, c)| c.clone()).collect();
    assert_eq!(
        calls,
        vec![
            update(CLUSTER, &service, GC_HOLD_TTL, tso),
            update(CLUSTER, &service, 0, 0),
        ],
        "the hold is set, then removed (TTL 0)"
    );
    assert!(
        updates[1].0 >= killed[0],
        "the hold was released after the kill"
    );
    assert!(p.pd.with(|s| s.services.is_empty()));

    let state = p.flow_state();
    assert_eq!(state["steps"]["backup"]["status"], "interrupted");
    assert!(state.get("gc_hold").is_none(), "{state}");
    assert!(!p.storage.join(format!("backups/{id}")).exists());
    assert!(
        !p.storage.join("flow.lock").exists(),
        "the lock is released"
    );
}
