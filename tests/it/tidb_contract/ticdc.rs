//! `syncgate::dr::tidb_steps::replicate` against a TiCDC OpenAPI v2 stand-in (dr-interfaces
//! A6: endpoints, `ChangefeedConfig`, validation, states, error bodies) and the mock PD that
//! holds the flow's GC safepoint: the exact create body, a changefeed walked through its
//! states, the documented errors, and the order of "changefeed normal" and "GC hold removed".

use super::fake_tidb::FakeTidb;
use super::mock_pd::{update, Call, MockPd};
use super::SAMPLE;
use crate::scenario::describe;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use syncgate::dr::flow::Flow;
use syncgate::dr::tidb_steps::{replicate, ReplicateOptions, ReplicateOutcome};
use syncgate::dr::DrContext;
use tokio::net::TcpListener;

const CLUSTER: u64 = 6_923_430_002_174_811_241;
const GC_HOLD_TTL: i64 = 7_200;
const HOLD_AT: u64 = SAMPLE + (100_000 << 18);
const BACKUP_TS: u64 = SAMPLE + (200_000 << 18);
const BACKUP_ID: &str = "20260105T101500Z-0a1b2";
const FEED: &str = "syncgate-dr-20260105t101500z-0a1b2";
const SERVICE: &str = "syncgate-dr-20260105T101500Z-0a1b2";
/// The secondary's password: needs percent-encoding in a URI.
const PASSWORD: &str = "s3cr:t@pw/1";
const REDO_SECRET: &str = "REDOSECRETKEY0123";
const SINK: &str = "mysql://repl:s3cr%3At%40pw%2F1@127.0.0.1:4001/";

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub(super) struct Req {
    at: Instant,
    pub(super) method: String,
    pub(super) path: String,
    pub(super) body: String,
}

/// A changefeed the stand-in knows: its info, and the states its next GETs answer (the last
/// one repeats).
pub(super) struct Feed {
    pub(super) start_ts: u64,
    pub(super) sink_uri: String,
    pub(super) script: Vec<(&'static str, Option<String>)>,
}

#[derive(Default)]
pub(super) struct CdcState {
    pub(super) feeds: BTreeMap<String, Feed>,
    /// Every changefeed's checkpoint (never below its start-ts).
    pub(super) checkpoint: u64,
    /// The states a created changefeed walks through.
    pub(super) script: Vec<(&'static str, Option<String>)>,
    /// `start_ts` at or below this is refused with `ErrStartTsBeforeGC` (A6.3).
    gc_safe_point: u64,
    requests: Vec<Req>,
}

fn error_body(code: &str, msg: &str) -> (u16, Value) {
    (
        400,
        json!({"error_msg": format!("[{code}]{msg}"), "error_code": code}),
    )
}

impl CdcState {
    /// TiCDC's GET answer masks the sink's password (`xxxxx`); the rest as documented.
    fn info(&self, id: &str, f: &Feed, state: &str, error: &Option<String>) -> Value {
        let masked = match f.sink_uri.split_once('@') {
            Some((userinfo, rest)) => {
                let user = userinfo.rsplit_once(':').map_or(userinfo, |(u, _)| u);
                format!("{user}:xxxxx@{rest}")
            }
            None => f.sink_uri.clone(),
        };
        json!({
            "upstream_id": 7, "namespace": "default", "id": id, "sink_uri": masked,
            "create_time": "2026-01-05 10:20:00.000", "start_ts": f.start_ts, "target_ts": 0,
            "admin_job_type": 0, "state": state, "creator_version": "v8.5.0",
            "resolved_ts": f.start_ts, "checkpoint_ts": f.start_ts.max(self.checkpoint),
            "checkpoint_time": "2026-01-05 10:15:00.000",
            "error": error.as_ref().map(|m| json!({"time": "2026-01-05T10:20:01Z",
                "addr": "10.0.0.5:8300", "code": "CDC:ErrMySQLConnectionError", "message": m})),
        })
    }

    fn answer(&mut self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        assert!(
            query.contains("namespace=default"),
            "every changefeed call names its namespace: {query}"
        );
        let parts: Vec<&str> = path.trim_start_matches("/api/v2/").split('/').collect();
        match (method, parts.as_slice()) {
            ("POST", ["changefeeds"]) => {
                let cfg: Value = serde_json::from_str(body).expect("create body is JSON");
                let id = cfg["changefeed_id"].as_str().unwrap().to_string();
                let start_ts = cfg["start_ts"].as_u64().unwrap();
                if self.feeds.contains_key(&id) {
                    return error_body(
                        "CDC:ErrChangeFeedAlreadyExists",
                        &format!("changefeed already exists, namespace: default, id: {id}"),
                    );
                }
                if start_ts <= self.gc_safe_point {
                    return error_body(
                        "CDC:ErrStartTsBeforeGC",
                        &format!(
                            "fail to create or maintain changefeed because start-ts {start_ts} \
                             is earlier than or equal to GC safepoint at {}",
                            self.gc_safe_point
                        ),
                    );
                }
                let feed = Feed {
                    start_ts,
                    sink_uri: cfg["sink_uri"].as_str().unwrap().to_string(),
                    script: self.script.clone(),
                };
                let info = self.info(&id, &feed, "normal", &None);
                self.feeds.insert(id, feed);
                (200, info)
            }
            ("GET", [feed]) if *feed == "changefeeds" => (200, json!({"total": 0, "items": []})),
            ("GET", ["changefeeds", id]) => match self.feeds.remove(*id) {
                None => error_body(
                    "CDC:ErrChangeFeedNotExists",
                    &format!("changefeed not exists, namespace: default, id: {id}"),
                ),
                Some(mut f) => {
                    let (state, error) = if f.script.len() > 1 {
                        f.script.remove(0)
                    } else {
                        f.script[0].clone()
                    };
                    let info = self.info(id, &f, state, &error);
                    self.feeds.insert(id.to_string(), f);
                    (200, info)
                }
            },
            ("POST", ["changefeeds", _, "pause" | "resume"]) => (200, json!({})),
            ("DELETE", ["changefeeds", id]) => {
                self.feeds.remove(*id);
                (200, json!({}))
            }
            _ => (
                404,
                json!({"error_msg": "no such route", "error_code": "CDC:ErrUnknown"}),
            ),
        }
    }
}

/// The TiCDC stand-in on 127.0.0.1.
pub(super) struct MockCdc {
    pub(super) addr: SocketAddr,
    state: Arc<Mutex<CdcState>>,
    server: tokio::task::JoinHandle<()>,
}

impl MockCdc {
    pub(super) async fn start() -> MockCdc {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(CdcState {
            script: vec![("normal", None)],
            ..CdcState::default()
        }));
        let shared = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let shared = shared.clone();
                            async move {
                                let method = req.method().to_string();
                                let path = req.uri().to_string();
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let body = String::from_utf8(body.to_vec()).unwrap();
                                let mut s = shared.lock().unwrap();
                                s.requests.push(Req {
                                    at: Instant::now(),
                                    method: method.clone(),
                                    path: path.clone(),
                                    body: body.clone(),
                                });
                                let (status, answer) = s.answer(&method, &path, &body);
                                let resp = Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(answer.to_string())))
                                    .unwrap();
                                Ok::<_, Infallible>(resp)
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), svc)
                        .await;
                });
            }
        });
        MockCdc {
            addr,
            state,
            server,
        }
    }

    pub(super) fn with<R>(&self, f: impl FnOnce(&mut CdcState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub(super) fn requests(&self) -> Vec<Req> {
        self.with(|s| s.requests.clone())
    }

    pub(super) fn creates(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.starts_with("/api/v2/changefeeds?"))
            .map(|r| serde_json::from_str(&r.body).unwrap())
            .collect()
    }
}

impl Drop for MockCdc {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The mock PD holding the flow's GC safepoint, the TiCDC stand-in, storage with a flow that
/// has a TiDB backup at BACKUP_TS, a restore with its gate passed, and the GC hold.
struct Setup {
    pd: MockPd,
    cdc: MockCdc,
    dir: tempfile::TempDir,
    storage: PathBuf,
    ctx: DrContext,
    /// The config's text (the secondary at 127.0.0.1:4001).
    text: String,
}

impl Setup {
    async fn start() -> Setup {
        Self::start_with(true).await
    }

    async fn start_with(hold: bool) -> Setup {
        let pd = MockPd::start(CLUSTER, SAMPLE).await;
        pd.with(|s| {
            s.services
                .insert(SERVICE.to_string(), (HOLD_AT, GC_HOLD_TTL))
        });
        let cdc = MockCdc::start().await;
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let mut flow = json!({
            "version": 1, "flavour": "tidb",
            "steps": {
                "backup": {"status": "done", "started": "2026-01-05T10:15:00Z",
                    "ended": "2026-01-05T10:16:00Z", "backup_id": BACKUP_ID,
                    "point": {"kind": "tso", "tso": BACKUP_TS}},
                "restore": {"status": "done", "started": "2026-01-05T10:17:00Z",
                    "ended": "2026-01-05T10:18:00Z", "backup_id": BACKUP_ID,
                    "point": {"kind": "tso", "tso": BACKUP_TS},
                    "gate": {"result": "equal", "differing_rows": 0, "report": "restore"}},
            },
        });
        if hold {
            flow["gc_hold"] = json!({"service_id": SERVICE, "safe_point": HOLD_AT,
                "pd": [pd.url()]});
        }
        std::fs::write(storage.join("flow.json"), flow.to_string()).unwrap();
        let text = format!(
            "[data-sources.primary]\nhost = \"127.0.0.1\"\nport = 4000\n\
             cdc-addr = \"http://{}\"\n\
             [data-sources.secondary]\nhost = \"127.0.0.1\"\nport = 4001\nuser = \"repl\"\n\
             password = \"{PASSWORD}\"\n\
             [dr]\nprimary = \"primary\"\nsecondary = \"secondary\"\n\
             backup-storage = \"local://{}\"\ngc-hold-ttl = {GC_HOLD_TTL}\n\
             redo-storage = \"s3://redo-bucket/dr?access-key=AKIDREDO&secret-access-key={REDO_SECRET}&endpoint=http://127.0.0.1:9\"\n\
             [task]\noutput-dir = \"{}\"\ntarget-check-tables = [\"*.*\"]\n",
            cdc.addr,
            storage.display(),
            dir.path().join("out").display()
        );
        let config = syncgate::config::Config::from_toml_str(&text, "dr.toml").unwrap();
        let ctx = DrContext::new(
            &config,
            Some(dir.path().join("out")),
            syncgate::interrupt::Interrupt::never(),
        )
        .unwrap();
        Setup {
            pd,
            cdc,
            dir,
            storage,
            ctx,
            text,
        }
    }

    async fn replicate(&self, wait: Duration) -> syncgate::Result<ReplicateOutcome> {
        let store = self.ctx.store().await.unwrap();
        let opts = ReplicateOptions {
            wait_normal: wait,
            poll: Duration::from_millis(20),
            ..ReplicateOptions::default()
        };
        let out = self.ctx.output_dir.clone();
        Flow::with_lock(store, &out, "dr replicate", async |flow| {
            replicate(&self.ctx, flow, &opts).await
        })
        .await
    }

    fn flow_state(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.storage.join("flow.json")).unwrap())
            .unwrap()
    }

    fn pd_updates(&self) -> Vec<(Instant, Call)> {
        self.pd.with(|s| {
            s.calls
                .iter()
                .filter(|(_, c)| matches!(c, Call::Update { .. }))
                .cloned()
                .collect()
        })
    }

    /// The hold was set again at its point (the check that it is still in force) and never
    /// removed.
    fn assert_hold_kept(&self) {
        let calls: Vec<Call> = self.pd_updates().into_iter().map(|(_, c)| c).collect();
        assert!(
            calls
                .iter()
                .all(|c| *c == update(CLUSTER, SERVICE, GC_HOLD_TTL, HOLD_AT)),
            "the hold is only renewed, never removed: {calls:?}"
        );
        assert!(self.pd.with(|s| s.services.contains_key(SERVICE)));
        assert_eq!(self.flow_state()["gc_hold"]["service_id"], SERVICE);
    }
}

/// The exact create body (A6.2): BackupTS, the secondary as a MySQL sink with its password
/// percent-encoded, syncpoints every minute, eventual redo under a prefix of its own.
fn expected_create_body() -> Value {
    json!({
        "namespace": "default",
        "changefeed_id": FEED,
        "start_ts": BACKUP_TS,
        "sink_uri": SINK,
        "replica_config": {
            "enable_sync_point": true,
            "sync_point_interval": "60s",
            "consistent": {
                "level": "eventual",
                "storage": format!("s3://redo-bucket/dr/{FEED}?access-key=AKIDREDO&secret-access-key={REDO_SECRET}&endpoint=http://127.0.0.1:9"),
                "flush_interval": 1000,
                "meta_flush_interval": 200,
            },
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicate_creates_the_changefeed_waits_for_normal_then_releases_the_gc_hold() {
    let s = Setup::start().await;
    s.cdc.with(|c| {
        c.script = vec![
            ("warning", Some("sink not ready, retrying".into())),
            ("pending", None),
            ("normal", None),
        ]
    });
    let outcome = s.replicate(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        outcome,
        ReplicateOutcome {
            changefeed_id: FEED.into(),
            start_ts: BACKUP_TS,
            state: "normal".into(),
            adopted: false,
            // The redacted form leaves the key pair out.
            redo_storage: format!("s3://redo-bucket/dr/{FEED}?endpoint=http://127.0.0.1:9"),
            gc_hold_released: true,
        }
    );
    let creates = s.cdc.creates();
    assert_eq!(
        creates,
        vec![expected_create_body()],
        "one create, exact body"
    );

    // The GET that answered `normal` came before the hold's removal, and the removal is the
    // last PD call.
    let requests = s.cdc.requests();
    let gets: Vec<&Req> = requests
        .iter()
        .filter(|r| {
            r.method == "GET" && r.path.starts_with(&format!("/api/v2/changefeeds/{FEED}?"))
        })
        .collect();
    // One existence check before create, then warning, pending, normal.
    assert_eq!(gets.len(), 4, "{requests:?}");
    let normal_at = gets[3].at;
    let updates = s.pd_updates();
    let calls: Vec<Call> = updates.iter().map(|(_, c)| c.clone()).collect();
    assert_eq!(
        calls,
        vec![
            update(CLUSTER, SERVICE, GC_HOLD_TTL, HOLD_AT),
            update(CLUSTER, SERVICE, 0, 0),
        ],
        "renewed at its point, removed once normal"
    );
    assert!(updates[0].0 < requests[0].at, "the hold was checked first");
    assert!(
        updates[1].0 > normal_at,
        "the hold was removed before normal"
    );
    assert!(s.pd.with(|p| !p.services.contains_key(SERVICE)));
    let state = s.flow_state();
    assert!(state.get("gc_hold").is_none(), "release recorded: {state}");
    let text = state.to_string();
    assert!(
        !text.contains(REDO_SECRET) && !text.contains("s3cr"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_ts_below_the_gc_safepoint_is_a_clear_error_and_the_hold_stays() {
    let s = Setup::start().await;
    s.cdc.with(|c| c.gc_safe_point = BACKUP_TS + 5);
    let err = s.replicate(Duration::from_secs(5)).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            &err,
            syncgate::Error::Cdc(syncgate::dr::ticdc::CdcError::StartTsBeforeGc {
                start_ts: BACKUP_TS,
                gc_safe_point: Some(g),
                ..
            }) if *g == BACKUP_TS + 5
        ),
        "{err:?}"
    );
    assert!(text.contains("take a new backup"), "{text}");
    assert_eq!(s.cdc.creates().len(), 1);
    s.assert_hold_kept();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changefeed_id_taken_by_another_feed_is_refused_and_nothing_is_created() {
    let s = Setup::start().await;
    s.cdc.with(|c| {
        c.feeds.insert(
            FEED.into(),
            Feed {
                start_ts: BACKUP_TS - 1000,
                sink_uri: "mysql://root:other@10.9.9.9:4000/".into(),
                script: vec![("normal", None)],
            },
        )
    });
    let err = s.replicate(Duration::from_secs(5)).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("changefeed {FEED} already exists"))
            && text.contains("not this flow's")
            && text.contains("changefeed-id"),
        "{text}"
    );
    assert!(s.cdc.creates().is_empty(), "nothing created");
    assert!(
        s.cdc.requests().iter().all(|r| r.method == "GET"),
        "nothing paused, resumed or removed: {:?}",
        s.cdc.requests()
    );
    s.assert_hold_kept();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_flows_own_changefeed_is_adopted_not_created_again() {
    let s = Setup::start().await;
    s.cdc.with(|c| {
        c.feeds.insert(
            FEED.into(),
            Feed {
                start_ts: BACKUP_TS,
                sink_uri: SINK.into(),
                script: vec![("warning", None), ("normal", None)],
            },
        )
    });
    let outcome = s.replicate(Duration::from_secs(5)).await.unwrap();
    assert!(outcome.adopted && outcome.gc_hold_released, "{outcome:?}");
    assert!(s.cdc.creates().is_empty());
    assert!(s.flow_state().get("gc_hold").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changefeed_that_never_becomes_normal_times_out_and_the_hold_stays() {
    let s = Setup::start().await;
    s.cdc
        .with(|c| c.script = vec![("warning", Some("downstream unreachable".into()))]);
    let started = Instant::now();
    let err = s.replicate(Duration::from_millis(600)).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("changefeed {FEED} did not become normal"))
            && text.contains("last state warning")
            && text.contains("downstream unreachable"),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    s.assert_hold_kept();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_gc_hold_or_with_gc_past_it_nothing_is_sent_to_ticdc() {
    let s = Setup::start_with(false).await;
    let err = s.replicate(Duration::from_secs(5)).await.unwrap_err();
    assert!(err.to_string().contains("holds no GC safepoint"), "{err}");
    assert!(s.cdc.requests().is_empty());

    // The hold expired and GC moved past it: PD refuses to set it again.
    let s = Setup::start().await;
    s.pd.with(|p| {
        p.services.clear();
        p.gc_floor = BACKUP_TS + 1;
    });
    let err = s.replicate(Duration::from_secs(5)).await.unwrap_err();
    assert!(
        err.to_string().contains("GC has already passed it"),
        "{err}"
    );
    assert!(s.cdc.requests().is_empty());
}

/// Captures the log lines of one test (current-thread runtime: the subscriber is
/// thread-local).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn sink_and_redo_secrets_stay_out_of_errors_logs_and_the_flow_state() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let s = Setup::start().await;
    // TiCDC echoes the sink URI, password and all, in the changefeed's error, then gives
    // up naming the redo storage with its key.
    let redo = format!("s3://redo-bucket/dr/{FEED}?secret-access-key={REDO_SECRET}");
    s.cdc.with(|c| {
        c.script = vec![
            (
                "warning",
                Some(format!(
                    "cannot connect to mysql://repl:{PASSWORD}@127.0.0.1:4001/ ({SINK})"
                )),
            ),
            (
                "failed",
                Some(format!("redo storage {redo} is unreachable")),
            ),
        ]
    });
    let err = s.replicate(Duration::from_secs(5)).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(
        text.contains("is failed") && text.contains("<redacted>"),
        "{text}"
    );
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("creating changefeed"),
        "logs captured: {logs}"
    );
    for secret in [PASSWORD, "s3cr%3At%40pw%2F1", REDO_SECRET] {
        assert!(!text.contains(secret), "{secret} in the error: {text}");
        assert!(!logs.contains(secret), "{secret} in the logs: {logs}");
        assert!(
            !s.flow_state().to_string().contains(secret),
            "{secret} in the flow state"
        );
    }
    // The secrets did reach TiCDC, which needs them.
    assert_eq!(s.cdc.creates(), vec![expected_create_body()]);
    s.assert_hold_kept();
}

/// `syncgate dr replicate` on TiDB through the binary: the stand-in TiDB is the secondary (its
/// flavour picks the TiDB path), the TiCDC stand-in answers at the primary's `cdc-addr`, the
/// mock PD holds the flow's GC hold. `--dry-run` sends nothing; the run prints the plan and
/// the changefeed, sends the exact create body, removes the hold after `normal`, records the
/// step `done` with its changefeed and TiCDC's address, and leaks no secret; a second run is
/// refused; `--again` adopts the changefeed instead of creating another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_replicate_on_tidb_through_the_binary() {
    let s = Setup::start().await;
    let tidb = FakeTidb::start().await;
    let port = tidb.addr.port();
    let config = s.dir.path().join("dr.toml");
    std::fs::write(
        &config,
        s.text.replace("port = 4001", &format!("port = {port}")),
    )
    .unwrap();
    let sink = SINK.replace(":4001/", &format!(":{port}/"));
    let mut body = expected_create_body();
    body["sink_uri"] = json!(sink);
    s.cdc
        .with(|c| c.script = vec![("pending", None), ("normal", None)]);
    let run = |extra: &'static [&'static str]| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_syncgate"))
                .args(["dr", "replicate", "-C"])
                .arg(&config)
                .args(extra)
                .env_remove("RUST_LOG")
                .output()
                .expect("run syncgate")
        })
    };
    let no_secrets = |text: &str| {
        for secret in [PASSWORD, "s3cr%3At%40pw%2F1", REDO_SECRET] {
            assert!(!text.contains(secret), "{secret} in: {text}");
        }
    };

    let out = run(&["--dry-run"]).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains(&format!(
            "would create changefeed {FEED} on TiCDC http://{} (or adopt this flow's own) from \
             BackupTS {BACKUP_TS}",
            s.cdc.addr
        )) && text.contains(&format!(
            "release the flow's GC hold {SERVICE} at {HOLD_AT}"
        )),
        "{text}"
    );
    assert!(text.contains("sink mysql://repl:"), "{text}");
    no_secrets(&describe(&out));
    assert!(s.cdc.requests().is_empty(), "--dry-run sent nothing");
    assert!(s.pd_updates().is_empty(), "--dry-run sent nothing to PD");

    let out = run(&[]).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains(&format!(
            "replication runs: changefeed {FEED} on TiCDC http://{} created from BackupTS \
             {BACKUP_TS} to 'secondary', state normal",
            s.cdc.addr
        )),
        "{text}"
    );
    assert!(text.contains("GC hold is released"), "{text}");
    assert!(text.contains("gate 2: run `dr verify`"), "{text}");
    no_secrets(&describe(&out));
    assert_eq!(s.cdc.creates(), vec![body], "one create, exact body");
    let calls: Vec<Call> = s.pd_updates().into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        calls,
        vec![
            update(CLUSTER, SERVICE, GC_HOLD_TTL, HOLD_AT),
            update(CLUSTER, SERVICE, 0, 0),
        ],
        "renewed at its point, removed once normal"
    );
    let state = s.flow_state();
    let step = &state["steps"]["replicate"];
    assert_eq!(step["status"], "done", "{state}");
    assert_eq!(step["changefeed"], FEED, "{state}");
    assert_eq!(step["source"], format!("http://{}", s.cdc.addr), "{state}");
    assert_eq!(step["backup_id"], BACKUP_ID, "{state}");
    assert_eq!(
        step["point"],
        json!({"kind": "tso", "tso": BACKUP_TS}),
        "{state}"
    );
    assert!(state.get("gc_hold").is_none(), "{state}");
    no_secrets(&state.to_string());

    // Done already: refused, nothing sent.
    let sent = s.cdc.requests().len();
    let out = run(&[]).await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("replication was already set up"),
        "{}",
        describe(&out)
    );
    assert_eq!(s.cdc.requests().len(), sent);

    // --again: the flow's GC hold is gone, so nothing is sent and the line says why.
    let out = run(&["--again"]).await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds no GC safepoint"),
        "{}",
        describe(&out)
    );
    assert_eq!(s.cdc.requests().len(), sent);
    assert_eq!(s.flow_state()["steps"]["replicate"]["status"], "failed");
    drop(tidb);
}

/// The bytes TiCDC's owner writes into a redo meta file (tinylib/msgp, A8.2): a fixmap of
/// two, `checkpointTs` and `resolvedTs` as uint64 (0xcf).
fn redo_meta_bytes(checkpoint: u64, resolved: u64) -> Vec<u8> {
    let mut b = vec![0x82, 0xac];
    b.extend_from_slice(b"checkpointTs");
    b.push(0xcf);
    b.extend_from_slice(&checkpoint.to_be_bytes());
    b.push(0xaa);
    b.extend_from_slice(b"resolvedTs");
    b.push(0xcf);
    b.extend_from_slice(&resolved.to_be_bytes());
    b
}

/// `dr failover` on TiDB through the binary (A8-A10): the redo meta read from the bytes
/// TiCDC writes, in a real S3 server; the changefeed paused on the TiCDC stand-in and never
/// removed; a stand-in `cdc` that records its arguments and environment and prints the
/// documented lines. A failing apply is exit 2 with its output (no secrets); the next run
/// applies, gate 3 (a) holds (resolved-ts at or after the checkpoint), (b) says the dead
/// upstream was not compared, and the flow records the new TSO anchor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_failover_on_tidb_pauses_the_changefeed_and_applies_the_redo() {
    const CHECKPOINT: u64 = BACKUP_TS + (5_000 << 18);
    const RESOLVED: u64 = BACKUP_TS + (7_000 << 18);
    let s = Setup::start().await;
    let tidb = FakeTidb::start().await;
    let s3_root = tempfile::tempdir().unwrap();
    let s3 = syncgate::local::LocalS3::start(s3_root.path(), "AKIDREDO", REDO_SECRET)
        .await
        .unwrap();
    s3.create_bucket("redo-bucket").unwrap();
    let redo = format!(
        "s3://redo-bucket/dr?access-key=AKIDREDO&secret-access-key={REDO_SECRET}&endpoint={}&force-path-style=true",
        s3.endpoint()
    );
    let feed_redo = syncgate::storage::StorageUri::parse(&redo)
        .unwrap()
        .join(FEED);
    let store = syncgate::storage::open(&feed_redo).await.unwrap();
    store
        .put(
            &format!("10.0.0.5:8300_default_{FEED}_meta_0b7e.meta"),
            redo_meta_bytes(CHECKPOINT, RESOLVED),
        )
        .await
        .unwrap();
    // The flow after `dr replicate`.
    let mut flow = s.flow_state();
    flow["steps"]["replicate"] = json!({"status": "done", "started": "2026-01-05T10:19:00Z",
        "ended": "2026-01-05T10:20:00Z", "backup_id": BACKUP_ID, "changefeed": FEED,
        "source": format!("http://{}", s.cdc.addr), "point": {"kind": "tso", "tso": BACKUP_TS}});
    std::fs::write(s.storage.join("flow.json"), flow.to_string()).unwrap();
    s.cdc.with(|c| {
        c.feeds.insert(
            FEED.into(),
            Feed {
                start_ts: BACKUP_TS,
                sink_uri: SINK.into(),
                script: vec![("normal", None)],
            },
        )
    });
    let bin = s.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let cdc = bin.join("cdc");
    std::fs::write(
        &cdc,
        "#!/bin/sh\nd=$(dirname \"$0\")\necho \"$@\" > \"$d/args\"\n\
         echo \"$AWS_ACCESS_KEY_ID $AWS_SECRET_ACCESS_KEY\" > \"$d/env\"\n\
         if [ -f \"$d/fail\" ]; then\n  echo '[ERROR] [redo.go:88] apply failed: \
         [CDC:ErrMySQLConnectionError]dial tcp: connection refused' >&2\n  exit 1\nfi\n\
         echo '[INFO] [redo.go:60] [\"start to apply redo log\"]'\n\
         echo 'Apply redo log successfully'\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cdc, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(bin.join("fail"), "").unwrap();

    let config = s.dir.path().join("dr.toml");
    let redo_line = s
        .text
        .lines()
        .find(|l| l.starts_with("redo-storage"))
        .unwrap()
        .to_string();
    let text = s
        .text
        .replace("port = 4001", &format!("port = {}", tidb.addr.port()))
        .replace(
            &redo_line,
            &format!(
                "redo-storage = \"{redo}\"\ncdc-binary = \"{}\"",
                cdc.display()
            ),
        );
    std::fs::write(&config, text).unwrap();
    let run = || {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_syncgate"))
                .args(["dr", "failover", "-C"])
                .arg(&config)
                .env_remove("RUST_LOG")
                .output()
                .expect("run syncgate")
        })
    };
    let no_secrets = |text: &str| {
        for secret in [PASSWORD, "s3cr%3At%40pw%2F1", REDO_SECRET] {
            assert!(!text.contains(secret), "{secret} in: {text}");
        }
    };

    let dry = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_syncgate"))
                .args(["dr", "failover", "--dry-run", "-C"])
                .arg(&config)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    assert_eq!(dry.status.code(), Some(0), "{}", describe(&dry));
    let text = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(
        text.contains(&format!("would pause changefeed {FEED}"))
            && text.contains(&format!(
                "checkpoint-ts {CHECKPOINT}, resolved-ts {RESOLVED}"
            )),
        "{text}"
    );
    no_secrets(&describe(&dry));
    assert!(s.cdc.requests().is_empty(), "--dry-run sent nothing");
    assert!(!bin.join("args").exists(), "--dry-run ran nothing");

    let out = run().await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("cdc redo apply failed") && err.contains("ErrMySQLConnectionError"),
        "{err}"
    );
    no_secrets(&describe(&out));
    let paused = |reqs: &[Req]| {
        reqs.iter()
            .filter(|r| r.method == "POST" && r.path.contains(&format!("/{FEED}/pause")))
            .count()
    };
    assert_eq!(paused(&s.cdc.requests()), 1, "{:?}", s.cdc.requests());
    assert_eq!(s.flow_state()["steps"]["failover"]["status"], "failed");

    std::fs::remove_file(bin.join("fail")).unwrap();
    let out = run().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("gate 3 (a) position: equal"), "{stdout}");
    assert!(
        stdout.contains(&format!("resolved-ts {RESOLVED}"))
            && stdout.contains("not compared: the upstream does not answer"),
        "{stdout}"
    );
    assert!(stdout.contains("recovery point: 20"), "{stdout}");
    no_secrets(&describe(&out));
    // The documented command line; the storage's credentials went through the environment.
    let args = std::fs::read_to_string(bin.join("args")).unwrap();
    let sink = SINK.replace(":4001/", &format!(":{}/", tidb.addr.port()));
    assert!(
        args.starts_with("redo apply --storage=s3://redo-bucket/dr/")
            && args.contains(&format!("/{FEED}?"))
            && args.contains("--tmp-dir=/")
            && args.trim_end().ends_with(&format!("--sink-uri={sink}")),
        "{args}"
    );
    assert!(
        !args.contains(REDO_SECRET) && !args.contains("AKIDREDO"),
        "{args}"
    );
    let env = std::fs::read_to_string(bin.join("env")).unwrap();
    assert_eq!(env.trim(), format!("AKIDREDO {REDO_SECRET}"));
    // Paused again (it was running), never removed: removing deletes the redo.
    assert!(
        s.cdc.requests().iter().all(|r| r.method != "DELETE"),
        "{:?}",
        s.cdc.requests()
    );
    let state = s.flow_state();
    let step = &state["steps"]["failover"];
    assert_eq!(step["status"], "done", "{state}");
    assert_eq!(step["changefeed"], FEED, "{state}");
    assert_eq!(step["point"]["kind"], "tso", "{state}");
    // The secondary's fresh TSO after the apply (the stand-in's next one): the new anchor.
    assert_eq!(
        step["point"]["tso"].as_u64(),
        Some(SAMPLE + (100_000 << 18)),
        "{state}"
    );
    s3.stop().await;
}
