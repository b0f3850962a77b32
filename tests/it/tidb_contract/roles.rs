//! `dr reseed` and `dr switchover` on TiDB through the binary, after a failover: two
//! stand-in TiDB clusters (`fake_tidb`) whose data statements run on real MariaDB servers
//! behind them, so gate 4 and the switchover's gate compare real rows; the mock PD for the
//! GC hold; one TiCDC stand-in per cluster. The stand-in's RESTORE plays BR's data
//! movement with statements the test gives it. What is checked is what syncgate sends
//! (BR statements, snapshots, the read-only flag, changefeed calls) and what it decides from
//! the answers: a drifted restore creates no changefeed; a lagging changefeed freezes
//! nothing; a drift at the frozen point thaws and switches nothing; a clean run reverses the
//! changefeeds and moves the writes.

use super::fake_tidb::FakeTidb;
use super::mock_pd::MockPd;
use super::ticdc::{Feed, MockCdc};
use super::SAMPLE;
use crate::scenario::describe;
use crate::support::TestDb;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Output;

const CLUSTER: u64 = 7_301_112_415_003_921_777;
const BACKUP_TS: u64 = SAMPLE + (200_000 << 18);
const OLD_FEED: &str = "syncgate-dr-20260105t101500z-0a1b2";

/// 200 rows, the same on both sides unless a test changes one.
fn load(db: &str) -> Vec<String> {
    vec![
        format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(20))"),
        format!(
            "INSERT INTO `{db}`.t WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 \
             FROM r WHERE n < 200) SELECT n, CONCAT('v', n) FROM r"
        ),
    ]
}

struct Clusters {
    /// The acting primary (the flow's secondary, promoted by the failover).
    acting: FakeTidb,
    /// The rebuilt cluster.
    fresh: FakeTidb,
    pd: MockPd,
    acting_cdc: MockCdc,
    fresh_cdc: MockCdc,
    up: TestDb,
    down: TestDb,
    dir: tempfile::TempDir,
    storage: PathBuf,
    config: PathBuf,
}

impl Clusters {
    async fn start() -> Clusters {
        let (up, down) = TestDb::pair().await;
        for sql in load(up.name()) {
            up.exec(&sql).await;
        }
        let pd = MockPd::start(CLUSTER, SAMPLE).await;
        let acting = FakeTidb::start().await;
        let fresh = FakeTidb::start().await;
        for (fake, db) in [(&acting, &up), (&fresh, &down)] {
            let backing = db.server().opts();
            let pd_addr = pd.addr.to_string();
            fake.with(|s| {
                s.backup_ts = BACKUP_TS;
                s.pd_instances = vec![pd_addr];
                s.backing = Some(backing);
            });
        }
        let acting_cdc = MockCdc::start().await;
        let fresh_cdc = MockCdc::start().await;
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        // The flow after `dr failover` on TiDB: the secondary ('acting') is the primary.
        let done = |extra: Value| {
            let mut v = json!({"status": "done", "started": "2026-01-05T10:15:00Z",
                "ended": "2026-01-05T10:16:00Z"});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            v
        };
        let point = json!({"kind": "tso", "tso": SAMPLE});
        let flow = json!({
            "version": 1, "flavour": "tidb",
            "steps": {
                "backup": done(json!({"backup_id": "20260105T101500Z-0a1b2", "point": point})),
                "restore": done(json!({"backup_id": "20260105T101500Z-0a1b2", "point": point})),
                "replicate": done(json!({"changefeed": "syncgate-dr-first", "point": point})),
                "failover": done(json!({"changefeed": "syncgate-dr-first",
                    "point": {"kind": "tso", "tso": SAMPLE + (50_000 << 18)}})),
            },
        });
        std::fs::write(storage.join("flow.json"), flow.to_string()).unwrap();
        let source = |name: &str, fake: &FakeTidb, cdc: &MockCdc| {
            format!(
                "[data-sources.{name}]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"root\"\n\
                 cdc-addr = \"http://{}\"\n",
                fake.addr.port(),
                cdc.addr
            )
        };
        let config = dir.path().join("dr.toml");
        std::fs::write(
            &config,
            format!(
                "[data-sources.lost]\nhost = \"127.0.0.1\"\nport = 9\n{}{}\
                 [dr]\nprimary = \"lost\"\nsecondary = \"acting\"\n\
                 backup-storage = \"local://{}\"\n\
                 redo-storage = \"local://{}\"\n\
                 [task]\noutput-dir = \"{}\"\ntarget-check-tables = [\"{}.*\"]\n",
                source("acting", &acting, &acting_cdc),
                source("fresh", &fresh, &fresh_cdc),
                storage.display(),
                dir.path().join("redo").display(),
                dir.path().join("out").display(),
                up.name()
            ),
        )
        .unwrap();
        Clusters {
            acting,
            fresh,
            pd,
            acting_cdc,
            fresh_cdc,
            up,
            down,
            dir,
            storage,
            config,
        }
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_syncgate"));
        cmd.arg("dr")
            .args(args)
            .arg("-C")
            .arg(&self.config)
            .env_remove("RUST_LOG");
        tokio::task::spawn_blocking(move || cmd.output().expect("run syncgate"))
            .await
            .unwrap()
    }

    fn flow_state(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.storage.join("flow.json")).unwrap())
            .unwrap()
    }

    fn statements(fake: &FakeTidb, prefix: &str) -> Vec<String> {
        fake.statements()
            .into_iter()
            .map(|(_, sql)| sql)
            .filter(|sql| sql.starts_with(prefix))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reseed_then_switchover_on_tidb() {
    let c = Clusters::start().await;
    let db = c.up.name().to_string();

    // A restore that does not hold the backup's rows: gate 4 differs, no changefeed.
    let mut drifted = load(&db);
    drifted.push(format!("UPDATE `{db}`.t SET v = 'drift' WHERE id = 7"));
    c.fresh.with(|s| s.on_restore = drifted);
    let dry = c
        .run(&["reseed", "--new-primary", "fresh", "--dry-run"])
        .await;
    assert_eq!(dry.status.code(), Some(0), "{}", describe(&dry));
    let text = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(
        text.contains("would back up the acting primary 'acting' with BR")
            && text.contains(&format!("TiCDC http://{}", c.acting_cdc.addr)),
        "{text}"
    );
    assert!(Clusters::statements(&c.acting, "BACKUP").is_empty());

    let out = c.run(&["reseed", "--new-primary", "fresh"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("gate 4: different"), "{stdout}");
    assert_eq!(Clusters::statements(&c.acting, "BACKUP DATABASE").len(), 1);
    assert_eq!(Clusters::statements(&c.fresh, "RESTORE DATABASE").len(), 1);
    // The acting primary was read at BackupTS.
    let pinned: Vec<String> = Clusters::statements(&c.acting, "SET SESSION tidb_snapshot")
        .into_iter()
        .filter(|s| !s.ends_with("''"))
        .collect();
    assert!(
        !pinned.is_empty() && pinned.iter().all(|s| s.contains(&BACKUP_TS.to_string())),
        "{pinned:?}"
    );
    assert!(
        c.acting_cdc.creates().is_empty(),
        "no changefeed after a drift"
    );
    let state = c.flow_state();
    assert_eq!(state["steps"]["reseed"]["status"], "gate-failed", "{state}");
    assert!(
        state["gc_hold"]["service_id"].is_string(),
        "the hold stays: {state}"
    );

    // The node emptied and restored right: gate 4 equal, then the changefeed from BackupTS.
    c.down.exec("DROP TABLE t").await;
    c.fresh.with(|s| s.on_restore = load(&db));
    let out = c.run(&["reseed", "--new-primary", "fresh"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("gate 4: equal"), "{stdout}");
    let creates = c.acting_cdc.creates();
    assert_eq!(creates.len(), 1, "{creates:?}");
    assert_eq!(creates[0]["start_ts"], BACKUP_TS);
    let sink = creates[0]["sink_uri"].as_str().unwrap();
    assert!(
        sink.contains(&format!("@127.0.0.1:{}/", c.fresh.addr.port())),
        "the sink is the rebuilt node: {sink}"
    );
    let state = c.flow_state();
    let reseed = &state["steps"]["reseed"];
    assert_eq!(reseed["status"], "done", "{state}");
    assert_eq!(reseed["node"], "fresh", "{state}");
    let feed = reseed["changefeed"].as_str().unwrap().to_string();
    assert_eq!(creates[0]["changefeed_id"], feed.as_str());
    assert!(
        state.get("gc_hold").is_none_or(Value::is_null),
        "released: {state}"
    );
    assert!(
        c.pd.with(|s| s.services.is_empty()),
        "the GC hold is gone from PD"
    );
    assert_ne!(feed, OLD_FEED);

    // Again, while that changefeed still writes into the node: refused, nothing changed.
    let backups = Clusters::statements(&c.acting, "BACKUP DATABASE").len();
    let out = c
        .run(&["reseed", "--new-primary", "fresh", "--again"])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains(&format!(
            "changefeed {feed} of the earlier reseed is normal"
        )),
        "{err}"
    );
    assert_eq!(
        Clusters::statements(&c.acting, "BACKUP DATABASE").len(),
        backups
    );
    assert_eq!(c.flow_state()["steps"]["reseed"]["status"], "done");

    // Switchover, 1: the changefeed lags (its checkpoint stays at BackupTS while the acting
    // primary's clock has moved on): nothing frozen.
    c.acting.with(|s| s.next_tso = BACKUP_TS + (60_000 << 18));
    let out = c.run(&["switchover", "--catch-up-timeout", "1"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("nothing was frozen or switched"), "{err}");
    assert!(Clusters::statements(&c.acting, "SET GLOBAL tidb_super_read_only").is_empty());

    // 2: caught up, but the new node drifted: frozen, gated, thawed, nothing switched.
    c.acting_cdc.with(|s| s.checkpoint = u64::MAX / 2);
    c.down.exec("UPDATE t SET v = 'late' WHERE id = 100").await;
    let out = c.run(&["switchover", "--json"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["gate"], "different", "{report}");
    assert_eq!(report["switched"], false, "{report}");
    assert_eq!(report["differing_rows"], 1, "{report}");
    assert_eq!(
        Clusters::statements(&c.acting, "SET GLOBAL tidb_super_read_only"),
        [
            "SET GLOBAL tidb_super_read_only = ON",
            "SET GLOBAL tidb_super_read_only = OFF"
        ]
    );
    assert!(!c.acting.with(|s| s.super_read_only), "thawed");
    assert!(c.fresh_cdc.creates().is_empty());
    assert!(
        c.acting_cdc
            .requests()
            .iter()
            .all(|r| r.method == "GET" || r.path.starts_with("/api/v2/changefeeds?")),
        "the reseed's changefeed was neither paused nor removed: {:?}",
        c.acting_cdc.requests()
    );

    // 3: equal at the frozen point: the changefeeds reversed, the writes moved.
    c.down.exec("UPDATE t SET v = 'v100' WHERE id = 100").await;
    c.fresh.with(|s| s.super_read_only = true);
    let out = c.run(&["switchover", "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["gate"], "equal", "{report}");
    assert_eq!(report["switched"], true, "{report}");
    assert_eq!(report["compared_rows"], 200, "{report}");
    assert!(report["freeze_ms"].as_u64().is_some(), "{report}");
    assert!(
        c.acting.with(|s| s.super_read_only),
        "the old primary stays read-only"
    );
    assert!(
        !c.fresh.with(|s| s.super_read_only),
        "the new primary is writable"
    );
    let frozen_at: u64 = report["frozen_at"]
        .as_str()
        .unwrap()
        .trim_start_matches("TSO ")
        .parse()
        .unwrap();
    assert!(
        Clusters::statements(&c.acting, "SET SESSION tidb_snapshot")
            .iter()
            .any(|s| s.contains(&frozen_at.to_string())),
        "the old primary was compared at the frozen point"
    );
    let calls: Vec<(String, String)> = c
        .acting_cdc
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| (r.method, r.path.split('?').next().unwrap().to_string()))
        .collect();
    assert_eq!(
        calls[1..],
        [
            ("POST".into(), format!("/api/v2/changefeeds/{feed}/pause")),
            ("DELETE".into(), format!("/api/v2/changefeeds/{feed}")),
        ],
        "paused, then removed once the reverse one runs: {calls:?}"
    );
    let reverse = c.fresh_cdc.creates();
    assert_eq!(reverse.len(), 1, "{reverse:?}");
    let sink = reverse[0]["sink_uri"].as_str().unwrap();
    assert!(
        sink.contains(&format!("@127.0.0.1:{}/", c.acting.addr.port())),
        "the reverse sink is the old primary: {sink}"
    );
    // Its start: a TSO the new cluster handed out after the frozen point was taken.
    let start = reverse[0]["start_ts"].as_u64().unwrap();
    assert!(c.fresh.with(|s| s.handed_out.contains(&start)), "{start}");
    let state = c.flow_state();
    assert_eq!(state["steps"]["switchover"]["status"], "done", "{state}");
    assert_eq!(
        state["steps"]["switchover"]["changefeed"], reverse[0]["changefeed_id"],
        "{state}"
    );
    assert_eq!(state["acting_primary"]["node"], "fresh", "{state}");
    assert_eq!(state["acting_primary"]["from"], "acting", "{state}");
    assert_eq!(
        state["acting_primary"]["since"]["tso"], frozen_at,
        "{state}"
    );
    drop(c.dir);
}

/// The flow after a reseed of 'fresh' with its changefeed running, both sides holding the
/// same rows.
async fn reseeded() -> (Clusters, String) {
    let c = Clusters::start().await;
    for sql in load(c.down.name()) {
        c.down.exec(&sql).await;
    }
    let feed = "syncgate-dr-20260105t110000z-1c2d3".to_string();
    let mut state = c.flow_state();
    state["steps"]["reseed"] = json!({"status": "done", "started": "2026-01-05T11:00:00Z",
        "ended": "2026-01-05T11:05:00Z", "node": "fresh", "changefeed": feed,
        "point": {"kind": "tso", "tso": BACKUP_TS},
        "gate": {"result": "equal", "differing_rows": 0, "report": "reseed/summary.txt"}});
    std::fs::write(c.storage.join("flow.json"), state.to_string()).unwrap();
    let sink = format!("mysql://root:@127.0.0.1:{}/", c.fresh.addr.port());
    c.acting_cdc.with(|s| {
        s.feeds.insert(
            feed.clone(),
            Feed {
                start_ts: BACKUP_TS,
                sink_uri: sink,
                script: vec![("normal", None)],
            },
        )
    });
    (c, feed)
}

/// Every way out of the TiDB freeze before the switch gives the writes back and leaves the
/// reseed's changefeed as it was: the changefeed stops short of the frozen point (timeout),
/// SIGINT while waiting for it, and a reverse changefeed that never becomes normal (it is
/// removed again, the old one resumed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_on_tidb_unfreezes_on_every_way_out() {
    let (c, feed) = reseeded().await;
    let froze_and_thawed = |c: &Clusters, n: usize| {
        let flags = Clusters::statements(&c.acting, "SET GLOBAL tidb_super_read_only");
        assert_eq!(flags.len(), 2 * n, "{flags:?}");
        assert!(flags.ends_with(&[
            "SET GLOBAL tidb_super_read_only = ON".to_string(),
            "SET GLOBAL tidb_super_read_only = OFF".to_string()
        ]));
        assert!(!c.acting.with(|s| s.super_read_only), "thawed");
    };

    // The changefeed reaches the TSO of the check before the freeze, not the frozen one.
    let now = BACKUP_TS + (60_000 << 18);
    c.acting.with(|s| s.next_tso = now);
    c.acting_cdc.with(|s| s.checkpoint = now);
    let out = c.run(&["switchover", "--catch-up-timeout", "1"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("did not reach the frozen TSO") && err.contains("writes are unfrozen"),
        "{err}"
    );
    froze_and_thawed(&c, 1);
    assert_eq!(c.flow_state()["steps"]["switchover"]["status"], "failed");

    // SIGINT while frozen and waiting.
    c.acting.with(|s| s.next_tso = now);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args(["dr", "switchover", "--catch-up-timeout", "60", "-C"])
        .arg(&c.config)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while Clusters::statements(&c.acting, "SET GLOBAL tidb_super_read_only").len() < 3 {
        assert!(std::time::Instant::now() < deadline, "never froze");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", describe(&out));
    froze_and_thawed(&c, 2);
    assert_eq!(
        c.flow_state()["steps"]["switchover"]["status"],
        "interrupted"
    );

    // Caught up and equal, but the reverse changefeed fails on the new cluster's TiCDC.
    c.acting_cdc.with(|s| s.checkpoint = u64::MAX / 2);
    c.fresh_cdc.with(|s| {
        s.script = vec![(
            "failed",
            Some("[CDC:ErrMySQLConnectionError]Error 8132: read-only".into()),
        )]
    });
    let out = c.run(&["switchover", "--catch-up-timeout", "2"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    froze_and_thawed(&c, 3);
    let reverse = c.fresh_cdc.creates();
    assert_eq!(reverse.len(), 1, "{reverse:?}");
    let id = reverse[0]["changefeed_id"].as_str().unwrap();
    assert!(
        c.fresh_cdc
            .requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.path.contains(&format!("/changefeeds/{id}?"))),
        "the failed reverse changefeed is removed again"
    );
    let old: Vec<String> = c
        .acting_cdc
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path.split('?').next().unwrap()))
        .collect();
    assert_eq!(
        old,
        [
            format!("POST /api/v2/changefeeds/{feed}/pause"),
            format!("POST /api/v2/changefeeds/{feed}/resume"),
        ],
        "the old changefeed runs again and is never removed"
    );
    let state = c.flow_state();
    assert!(
        state.get("acting_primary").is_none_or(Value::is_null),
        "{state}"
    );
}
