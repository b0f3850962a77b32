//! Contract tests for `syncgate::snapshot::tidb` and `syncgate::snapshot::pd`: TiDB and PD
//! cannot run here, so these check the pieces against TiDB's and PD's documented interfaces
//! (shared/reference/dr-interfaces.md A4, A5, A7; sync-diff-inspector.md §2.1, §8; TiDB's
//! `information_schema.cluster_info` docs; kvproto `pdpb.proto`): pure functions for SQL text
//! and parsing, and a hand-written mock of PD's gRPC service `pdpb.PD` (`GetMembers`,
//! `UpdateServiceGCSafePoint`, with PD's leader and cluster-ID checks) on 127.0.0.1 that
//! records every request. No live TiDB or PD is involved.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use syncgate::snapshot::pd::{
    parse_pd_addr, parse_pd_addrs, GetMembersRequest, GetMembersResponse, Member, PdError,
    ResponseHeader, UpdateServiceGcSafePointRequest, UpdateServiceGcSafePointResponse,
    GET_MEMBERS_PATH, UPDATE_SERVICE_GC_SAFE_POINT_PATH,
};
use syncgate::snapshot::tidb::{
    classify_query_error, classify_tidb_error, clear_snapshot_sql, datetime_to_tso_sql,
    default_service_id, parse_snapshot, parse_syncpoint_row, pd_addrs_from_rows, pd_discovery_sql,
    set_snapshot_sql, syncpoint_sql, tso_from_unix_timestamp_result, GcKeeper, SnapshotError,
    SnapshotSetting, Syncpoint, Tso, DEFAULT_GC_TTL_SECS,
};
use syncgate::Error;
use tokio::net::TcpListener;

/// 2022-02-25 11:57:59.990 UTC, logical 1.
const SAMPLE: u64 = 431_434_047_157_698_561;

// --------------------------------------------------------------------------------------
// TSO
// --------------------------------------------------------------------------------------

#[test]
fn tso_parts_follow_the_oracle_layout() {
    let t = Tso(SAMPLE);
    assert_eq!(t.physical_ms(), 1_645_790_279_990);
    assert_eq!(t.logical(), 1);
    assert_eq!(Tso::new(1_645_790_279_990, 1), t);
    assert_eq!(Tso::from_unix_ms(1_645_790_279_990), Tso(SAMPLE - 1));
    assert_eq!(Tso::from_unix_ms(1_645_790_279_990).logical(), 0);
    // Round trip through the parts for a spread of values.
    for raw in [1u64, 262_143, 262_144, SAMPLE, u64::MAX] {
        let t = Tso(raw);
        assert_eq!(Tso::new(t.physical_ms(), t.logical()), t, "{raw}");
        assert_eq!((t.physical_ms() << 18) + t.logical(), raw);
    }
    // Out-of-range parts clamp instead of wrapping.
    assert_eq!(Tso::new(0, 1 << 20).logical(), Tso::LOGICAL_MASK);
    assert_eq!(
        Tso::from_unix_ms(u64::MAX).physical_ms(),
        Tso::MAX_PHYSICAL_MS
    );
}

#[test]
fn tso_renders_as_utc_time() {
    let t = Tso(SAMPLE);
    assert_eq!(t.to_datetime_utc(), "2022-02-25T11:57:59.990Z");
    assert_eq!(t.to_sql_datetime_utc(), "2022-02-25 11:57:59.990");
    assert_eq!(
        t.to_string(),
        "TSO 431434047157698561 (2022-02-25 11:57:59.990 UTC)"
    );
    assert_eq!(
        Tso::from_unix_ms(1_645_790_279_000).to_string(),
        "TSO 431434046898176000 (2022-02-25 11:57:59.000 UTC)"
    );
    assert_eq!(Tso(0).to_datetime_utc(), "1970-01-01T00:00:00.000Z");
}

#[test]
fn tso_parses_decimal_text_only() {
    assert_eq!("431434047157698561".parse::<Tso>().unwrap(), Tso(SAMPLE));
    assert_eq!(" 431434047157698561\n".parse::<Tso>().unwrap(), Tso(SAMPLE));
    for bad in ["", "0", "-1", "12a", "4.5", "18446744073709551616"] {
        assert!(bad.parse::<Tso>().is_err(), "{bad:?} must not parse");
    }
}

// --------------------------------------------------------------------------------------
// The snapshot config value
// --------------------------------------------------------------------------------------

#[test]
fn snapshot_values_are_classified() {
    assert_eq!(parse_snapshot("").unwrap(), SnapshotSetting::Live);
    assert_eq!(parse_snapshot("  ").unwrap(), SnapshotSetting::Live);
    assert_eq!(parse_snapshot("auto").unwrap(), SnapshotSetting::Auto);
    assert_eq!(parse_snapshot("AUTO").unwrap(), SnapshotSetting::Auto);
    assert_eq!(
        parse_snapshot("431434047157698561").unwrap(),
        SnapshotSetting::Tso(Tso(SAMPLE))
    );
    assert_eq!(
        parse_snapshot("2022-02-25 11:57:59").unwrap(),
        SnapshotSetting::Datetime("2022-02-25 11:57:59".into())
    );
    assert_eq!(
        parse_snapshot(" 2024-02-29 23:59:59.123456 ").unwrap(),
        SnapshotSetting::Datetime("2024-02-29 23:59:59.123456".into())
    );
}

#[test]
fn bad_snapshot_values_are_rejected_with_the_accepted_forms() {
    for bad in [
        "yesterday",
        "2022-02-25",
        "2022-02-25T11:57:59",
        "2022-13-01 00:00:00",
        "2023-02-29 00:00:00",
        "2022-02-25 24:00:00",
        "2022-02-25 11:60:00",
        "2022-02-25 11:57:59.",
        "2022-02-25 11:57:59.1234567",
        "2022-02-25 11:57:59 UTC",
        "0",
    ] {
        let err = parse_snapshot(bad).expect_err(bad);
        let msg = err.to_string();
        assert!(msg.contains(&format!("{bad:?}")), "{msg}");
        if bad != "0" {
            assert!(msg.contains("'YYYY-MM-DD hh:mm:ss[.fff]'"), "{msg}");
        }
    }
}

#[test]
fn datetime_becomes_a_unix_timestamp_query() {
    assert_eq!(
        datetime_to_tso_sql("2022-02-25 11:57:59"),
        "SELECT unix_timestamp('2022-02-25 11:57:59')"
    );
    // The value is always a quoted literal.
    assert_eq!(
        datetime_to_tso_sql("x' OR '1"),
        "SELECT unix_timestamp('x'' OR ''1')"
    );
}

#[test]
fn unix_timestamp_answer_becomes_a_tso() {
    let t = tso_from_unix_timestamp_result("1645790279.000000").unwrap();
    assert_eq!(t, Tso::from_unix_ms(1_645_790_279_000));
    assert_eq!(t.0, 1_645_790_279_000 << 18);
    assert_eq!(t.logical(), 0);
    assert_eq!(
        t.to_string(),
        "TSO 431434046898176000 (2022-02-25 11:57:59.000 UTC)"
    );
    // Milliseconds are kept, finer digits dropped.
    assert_eq!(
        tso_from_unix_timestamp_result("1645790279.990999")
            .unwrap()
            .physical_ms(),
        1_645_790_279_990
    );
    assert_eq!(
        tso_from_unix_timestamp_result("1645790279.5")
            .unwrap()
            .physical_ms(),
        1_645_790_279_500
    );
    assert_eq!(
        tso_from_unix_timestamp_result("1645790279")
            .unwrap()
            .physical_ms(),
        1_645_790_279_000
    );
}

#[test]
fn unusable_unix_timestamp_answers_are_errors() {
    for (answer, why) in [
        ("", "NULL"),
        ("0.000000", "out of the server's range"),
        ("0", "out of the server's range"),
        ("-5.000000", "not a non-negative decimal"),
        ("abc", "not a non-negative decimal"),
        ("1.2.3", "not a non-negative decimal"),
        ("99999999999999999999", "too large"),
    ] {
        let err = tso_from_unix_timestamp_result(answer).expect_err(answer);
        assert!(
            matches!(err, SnapshotError::BadUnixTimestamp { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(why), "{answer:?}: {err}");
    }
}

// --------------------------------------------------------------------------------------
// Session statements
// --------------------------------------------------------------------------------------

#[test]
fn pinning_statement_sets_tidb_snapshot_to_the_tso() {
    assert_eq!(
        set_snapshot_sql(Tso(SAMPLE)),
        "SET SESSION tidb_snapshot = '431434047157698561'"
    );
    assert_eq!(clear_snapshot_sql(), "SET SESSION tidb_snapshot = ''");
}

// --------------------------------------------------------------------------------------
// snapshot = "auto": syncpoints
// --------------------------------------------------------------------------------------

#[test]
fn syncpoint_query_without_and_with_changefeed() {
    assert_eq!(
        syncpoint_sql(None),
        "SELECT primary_ts, secondary_ts FROM tidb_cdc.syncpoint_v1 \
         ORDER BY primary_ts DESC LIMIT 1"
    );
    assert_eq!(
        syncpoint_sql(Some("dr-feed")),
        "SELECT primary_ts, secondary_ts FROM tidb_cdc.syncpoint_v1 \
         WHERE changefeed = 'dr-feed' ORDER BY primary_ts DESC LIMIT 1"
    );
    // Quoted with sql::quote_str.
    assert_eq!(
        syncpoint_sql(Some("a'b\\c")),
        "SELECT primary_ts, secondary_ts FROM tidb_cdc.syncpoint_v1 \
         WHERE changefeed = 'a''b\\\\c' ORDER BY primary_ts DESC LIMIT 1"
    );
}

fn row(cells: &[Option<&str>]) -> Vec<Option<Vec<u8>>> {
    cells
        .iter()
        .map(|c| c.map(|s| s.as_bytes().to_vec()))
        .collect()
}

#[test]
fn syncpoint_row_gives_upstream_and_downstream_tsos() {
    let r = row(&[Some("431434047157698561"), Some("431434048206274562")]);
    assert_eq!(
        parse_syncpoint_row(Some("dr-feed"), Some(&r)).unwrap(),
        Syncpoint {
            upstream: Tso(431_434_047_157_698_561),
            downstream: Tso(431_434_048_206_274_562),
        }
    );
}

#[test]
fn missing_syncpoint_is_a_clear_error() {
    let err = parse_syncpoint_row(Some("dr-feed"), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no syncpoint found for changefeed dr-feed in tidb_cdc.syncpoint_v1"
    );
    let err = parse_syncpoint_row(None, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no syncpoint found for any changefeed in tidb_cdc.syncpoint_v1"
    );
    // A namespaced name gets a hint: TiCDC stores the bare changefeed ID.
    let err = parse_syncpoint_row(Some("default/dr-feed"), None).unwrap_err();
    assert!(err.to_string().contains("without its namespace"), "{err}");
    // It converts into the crate error with the same message, typed as a snapshot error
    // (not a configuration error).
    let e: Error = parse_syncpoint_row(Some("dr-feed"), None)
        .unwrap_err()
        .into();
    assert!(
        matches!(&e, Error::Snapshot(_) if e.to_string().contains("changefeed dr-feed")),
        "{e:?}"
    );
}

#[test]
fn null_empty_or_garbage_syncpoint_cells_are_errors() {
    for (cells, expect) in [
        (
            row(&[None, Some("431434048206274562")]),
            "primary_ts is NULL",
        ),
        (
            row(&[Some("431434047157698561"), None]),
            "secondary_ts is NULL",
        ),
        (
            row(&[Some(""), Some("431434048206274562")]),
            "primary_ts \"\" is not a TSO",
        ),
        (
            row(&[Some("431434047157698561"), Some("abc")]),
            "secondary_ts \"abc\" is not a TSO",
        ),
        (
            row(&[Some("431434047157698561")]),
            "secondary_ts is missing",
        ),
    ] {
        let err = parse_syncpoint_row(None, Some(&cells)).unwrap_err();
        assert!(matches!(err, SnapshotError::BadSyncpoint(_)), "{err:?}");
        assert!(err.to_string().contains(expect), "{err}");
    }
}

// --------------------------------------------------------------------------------------
// GC errors
// --------------------------------------------------------------------------------------

#[test]
fn error_8055_says_snapshot_older_than_gc_safe_point() {
    let server = "snapshot is older than GC safe point 2022-02-25 12:10:00 +0000 UTC";
    let err = classify_tidb_error(8055, server).expect("8055 is a GC error");
    assert!(
        matches!(err, SnapshotError::OlderThanGcSafePoint { .. }),
        "{err:?}"
    );
    let msg = err.with_context("upstream", Some(Tso(SAMPLE))).to_string();
    assert_eq!(
        msg,
        "snapshot TSO 431434047157698561 (2022-02-25 11:57:59.990 UTC) is older than the GC \
         safe point of upstream; choose a newer snapshot or raise tidb_gc_life_time \
         (server: snapshot is older than GC safe point 2022-02-25 12:10:00 +0000 UTC)"
    );
}

#[test]
fn error_9006_says_gc_passed_the_snapshot() {
    let server = "GC life time is shorter than transaction duration, transaction starts at \
                  2022-02-25 11:57:59.990 +0000 UTC, GC safe point is 2022-02-25 12:10:00 +0000 UTC";
    let err = classify_tidb_error(9006, server).expect("9006 is a GC error");
    assert!(matches!(err, SnapshotError::GcTooEarly { .. }), "{err:?}");
    let msg = err
        .with_context("downstream", Some(Tso(SAMPLE)))
        .to_string();
    assert!(
        msg.starts_with(
            "the GC safe point of downstream passed snapshot TSO 431434047157698561 \
             (2022-02-25 11:57:59.990 UTC) while it was being read; raise tidb_gc_life_time"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("GC safe point is 2022-02-25 12:10:00"),
        "{msg}"
    );
    // Without context the message still reads well.
    let bare = classify_tidb_error(9006, server).unwrap().to_string();
    assert!(
        bare.starts_with("the GC safe point of the server passed the snapshot"),
        "{bare}"
    );
}

#[test]
fn other_error_codes_are_not_gc_errors() {
    for code in [0u16, 1045, 1105, 1146, 8054, 8056, 9005, 9007] {
        assert_eq!(
            classify_tidb_error(code, "snapshot is older than GC safe point"),
            None,
            "{code}"
        );
    }
}

#[test]
fn gc_errors_are_found_in_query_errors() {
    let e = Error::Query {
        source_name: "upstream".into(),
        sql: "SET SESSION tidb_snapshot = '431434047157698561'".into(),
        message: "snapshot is older than GC safe point 2022-02-25 12:10:00 (server error 8055)"
            .into(),
        server: Some(Box::new(syncgate::error::ServerError {
            code: 8055,
            state: "HY000".into(),
            message: "snapshot is older than GC safe point 2022-02-25 12:10:00".into(),
        })),
    };
    let err = classify_query_error(&e).expect("8055 inside a query error");
    match &err {
        SnapshotError::OlderThanGcSafePoint {
            source_name,
            server_message,
            ..
        } => {
            assert_eq!(source_name.as_deref(), Some("upstream"));
            assert_eq!(
                server_message,
                "snapshot is older than GC safe point 2022-02-25 12:10:00"
            );
        }
        other => panic!("{other:?}"),
    }
    let crate_err: Error = err.into();
    assert!(
        crate_err.to_string().contains("GC safe point of upstream"),
        "{crate_err}"
    );
    let other = Error::Query {
        source_name: "upstream".into(),
        sql: "SELECT 1".into(),
        message: "Table 'x.y' doesn't exist (server error 1146)".into(),
        server: Some(Box::new(syncgate::error::ServerError {
            code: 1146,
            state: "42S02".into(),
            message: "Table 'x.y' doesn't exist".into(),
        })),
    };
    assert!(classify_query_error(&other).is_none());
    assert!(classify_query_error(&Error::Config("8055".into())).is_none());
}

// --------------------------------------------------------------------------------------
// PD discovery and addresses
// --------------------------------------------------------------------------------------

#[test]
fn pd_discovery_reads_cluster_info() {
    // sync-diff-inspector.md §2.1: PD addresses come from information_schema.cluster_info;
    // TiDB docs: TYPE is tidb/pd/tikv, INSTANCE is IP:PORT.
    assert_eq!(
        pd_discovery_sql(),
        "SELECT INSTANCE FROM information_schema.cluster_info WHERE TYPE = 'pd'"
    );
    let rows = vec![
        row(&[Some("10.0.1.1:2379")]),
        row(&[Some("10.0.1.2:2379")]),
        row(&[None]),
        row(&[Some("10.0.1.1:2379")]),
        row(&[Some("https://10.0.1.3:2379")]),
        row(&[Some("pd-without-port")]),
        row(&[Some("[fd00::4]:2379")]),
    ];
    let (addrs, rejected) = pd_addrs_from_rows(&rows);
    assert_eq!(
        addrs,
        [
            "http://10.0.1.1:2379",
            "http://10.0.1.2:2379",
            "http://[fd00::4]:2379"
        ]
    );
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    assert_eq!(rejected[0], "INSTANCE is NULL");
    assert!(rejected[1].contains("https (PD with TLS) is not supported"));
    assert!(rejected[2].contains("the port is missing"));
    assert_eq!(pd_addrs_from_rows(&[]), (vec![], vec![]));
}

#[test]
fn pd_addresses_are_normalised_to_plain_http() {
    for (raw, want) in [
        ("127.0.0.1:2379", "http://127.0.0.1:2379"),
        (
            " http://pd-0.pd-peer.tidb.svc:2379/ ",
            "http://pd-0.pd-peer.tidb.svc:2379",
        ),
        ("HTTP://pd:2379", "http://pd:2379"),
        ("[::1]:2379", "http://[::1]:2379"),
        ("http://[fd00::1]:12379", "http://[fd00::1]:12379"),
    ] {
        assert_eq!(parse_pd_addr(raw).as_deref(), Ok(want), "{raw:?}");
    }
    for (raw, why) in [
        ("https://pd:2379", "https (PD with TLS) is not supported"),
        ("grpc://pd:2379", "expected host:port or http://host:port"),
        ("pd", "the port is missing"),
        ("pd:", "is not a port"),
        ("pd:0", "is not a port"),
        ("pd:65536", "is not a port"),
        ("pd:http", "is not a port"),
        ("::1:2379", "write IPv6 hosts as [addr]:port"),
        ("[::1]2379", "expected [ipv6]:port"),
        (":2379", "not a host name"),
        ("http://user@pd:2379", "not a host name"),
        ("http://pd:2379/pd/api/v1", "is not a port"),
    ] {
        let err = parse_pd_addr(raw).expect_err(raw);
        assert!(err.contains(why), "{raw:?}: {err}");
    }
    assert_eq!(
        parse_pd_addrs("pd1:2379, http://pd2:2379 ,,pd1:2379").unwrap(),
        ["http://pd1:2379", "http://pd2:2379"]
    );
    assert_eq!(parse_pd_addrs(" , ").unwrap_err(), "no PD address given");
}

#[test]
fn service_id_and_defaults() {
    let id = default_service_id();
    let ms: u64 = id
        .strip_prefix("syncgate_")
        .expect("syncgate_ prefix")
        .parse()
        .expect("unix ms");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(now_ms.abs_diff(ms) < 60_000, "{id}");
    assert_eq!(DEFAULT_GC_TTL_SECS, 300);
    assert_eq!(GET_MEMBERS_PATH, "/pdpb.PD/GetMembers");
    assert_eq!(
        UPDATE_SERVICE_GC_SAFE_POINT_PATH,
        "/pdpb.PD/UpdateServiceGCSafePoint"
    );
}

// --------------------------------------------------------------------------------------
// A mock PD gRPC server
// --------------------------------------------------------------------------------------

/// One request the mock received.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    GetMembers {
        cluster_id: u64,
    },
    Update {
        cluster_id: u64,
        service_id: String,
        ttl: i64,
        safe_point: u64,
    },
}

/// The mock's behaviour and memory. Like PD (tikv/pd `server/grpc_service.go`,
/// `pkg/gc/safepoint.go`): `GetMembers` needs no cluster ID; `UpdateServiceGCSafePoint` is
/// refused by a follower ("not leader") and for another cluster ID ("mismatch cluster id");
/// TTL ≤ 0 removes the service safepoint; a safe point below the current minimum is not
/// stored; the answer carries the minimum over all services (`gc_worker` holds the GC
/// bound).
struct PdState {
    cluster_id: u64,
    /// The leader's client URL to advertise; `None`: this mock is the leader.
    leader_url: Option<String>,
    /// `gc_worker`'s safe point: the GC bound.
    gc_floor: u64,
    /// Answer updates with this gRPC error.
    fail_updates: Option<tonic::Code>,
    /// Answer updates with this error in the response header.
    header_error: Option<(i32, String)>,
    /// Report this minimum safe point whatever is stored.
    force_min: Option<u64>,
    /// Service safepoints stored: ID → (safe point, TTL).
    services: BTreeMap<String, (u64, i64)>,
    calls: Vec<(Instant, Call)>,
}

impl PdState {
    fn members(&mut self, req: GetMembersRequest) -> GetMembersResponse {
        self.calls.push((
            Instant::now(),
            Call::GetMembers {
                cluster_id: req.header.map_or(0, |h| h.cluster_id),
            },
        ));
        let leader = Member {
            name: "pd-leader".into(),
            member_id: 1,
            peer_urls: vec![],
            client_urls: self.leader_url.iter().cloned().collect(),
        };
        GetMembersResponse {
            header: Some(ResponseHeader {
                cluster_id: self.cluster_id,
                error: None,
            }),
            members: vec![leader.clone()],
            leader: Some(leader),
            etcd_leader: None,
        }
    }

    fn update(
        &mut self,
        req: UpdateServiceGcSafePointRequest,
    ) -> Result<UpdateServiceGcSafePointResponse, tonic::Status> {
        let cluster_id = req.header.as_ref().map_or(0, |h| h.cluster_id);
        let service_id = String::from_utf8(req.service_id.clone()).unwrap();
        self.calls.push((
            Instant::now(),
            Call::Update {
                cluster_id,
                service_id: service_id.clone(),
                ttl: req.ttl,
                safe_point: req.safe_point,
            },
        ));
        if let Some(code) = self.fail_updates {
            return Err(tonic::Status::new(code, "mock PD is unavailable"));
        }
        if self.leader_url.is_some() {
            return Err(tonic::Status::unknown("not leader"));
        }
        if cluster_id != self.cluster_id {
            return Err(tonic::Status::failed_precondition(format!(
                "mismatch cluster id, need {} but got {cluster_id}",
                self.cluster_id
            )));
        }
        let header = |error: Option<PdError>| {
            Some(ResponseHeader {
                cluster_id: self.cluster_id,
                error,
            })
        };
        if let Some((t, m)) = &self.header_error {
            return Ok(UpdateServiceGcSafePointResponse {
                header: header(Some(PdError {
                    r#type: *t,
                    message: m.clone(),
                })),
                ..Default::default()
            });
        }
        let current_min = self
            .services
            .values()
            .map(|(sp, _)| *sp)
            .chain([self.gc_floor])
            .min()
            .unwrap();
        if req.ttl <= 0 {
            self.services.remove(&service_id);
        } else if req.safe_point >= current_min {
            self.services.insert(service_id, (req.safe_point, req.ttl));
        }
        let (min_id, min) = self
            .services
            .iter()
            .map(|(id, (sp, _))| (id.clone(), *sp))
            .chain([("gc_worker".to_string(), self.gc_floor)])
            .min_by_key(|(_, sp)| *sp)
            .unwrap();
        Ok(UpdateServiceGcSafePointResponse {
            header: header(None),
            service_id: min_id.into_bytes(),
            ttl: 100,
            min_safe_point: self.force_min.unwrap_or(min),
        })
    }
}

type Shared = Arc<Mutex<PdState>>;
type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

struct GetMembersHandler(Shared);

impl tonic::server::UnaryService<GetMembersRequest> for GetMembersHandler {
    type Response = GetMembersResponse;
    type Future = std::future::Ready<Result<tonic::Response<GetMembersResponse>, tonic::Status>>;

    fn call(&mut self, req: tonic::Request<GetMembersRequest>) -> Self::Future {
        let resp = self.0.lock().unwrap().members(req.into_inner());
        std::future::ready(Ok(tonic::Response::new(resp)))
    }
}

struct UpdateHandler(Shared);

impl tonic::server::UnaryService<UpdateServiceGcSafePointRequest> for UpdateHandler {
    type Response = UpdateServiceGcSafePointResponse;
    type Future = std::future::Ready<
        Result<tonic::Response<UpdateServiceGcSafePointResponse>, tonic::Status>,
    >;

    fn call(&mut self, req: tonic::Request<UpdateServiceGcSafePointRequest>) -> Self::Future {
        let resp = self.0.lock().unwrap().update(req.into_inner());
        std::future::ready(resp.map(tonic::Response::new))
    }
}

/// The `pdpb.PD` service, routed by gRPC path (what tonic's codegen would generate).
#[derive(Clone)]
struct PdService(Shared);

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for PdService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFut<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let state = self.0.clone();
        match req.uri().path() {
            p if p == GET_MEMBERS_PATH => Box::pin(async move {
                let codec =
                    tonic_prost::ProstCodec::<GetMembersResponse, GetMembersRequest>::default();
                let mut grpc = tonic::server::Grpc::new(codec);
                Ok(grpc.unary(GetMembersHandler(state), req).await)
            }),
            p if p == UPDATE_SERVICE_GC_SAFE_POINT_PATH => Box::pin(async move {
                let codec = tonic_prost::ProstCodec::<
                    UpdateServiceGcSafePointResponse,
                    UpdateServiceGcSafePointRequest,
                >::default();
                let mut grpc = tonic::server::Grpc::new(codec);
                Ok(grpc.unary(UpdateHandler(state), req).await)
            }),
            other => {
                let status = tonic::Status::unimplemented(format!("mock PD: no {other}"));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// A running mock PD on 127.0.0.1.
struct MockPd {
    addr: SocketAddr,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl MockPd {
    async fn start(cluster_id: u64, gc_floor: u64) -> MockPd {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(PdState {
            cluster_id,
            leader_url: None,
            gc_floor,
            fail_updates: None,
            header_error: None,
            force_min: None,
            services: BTreeMap::new(),
            calls: Vec::new(),
        }));
        let svc = PdService(state.clone());
        let server = tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = tonic::transport::Server::builder()
                .serve_with_incoming(svc, incoming)
                .await;
        });
        MockPd {
            addr,
            state,
            server,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn with<R>(&self, f: impl FnOnce(&mut PdState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    fn calls(&self) -> Vec<Call> {
        self.with(|s| s.calls.iter().map(|(_, c)| c.clone()).collect())
    }

    fn updates(&self) -> Vec<(Instant, i64)> {
        self.with(|s| {
            s.calls
                .iter()
                .filter_map(|(t, c)| match c {
                    Call::Update { ttl, .. } => Some((*t, *ttl)),
                    _ => None,
                })
                .collect()
        })
    }

    fn count(&self) -> usize {
        self.with(|s| s.calls.len())
    }

    /// Wait until `pred` holds on the calls, at most `limit`.
    async fn wait_until(&self, limit: Duration, pred: impl Fn(&[Call]) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if pred(&self.calls()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mock PD: condition not met within {limit:?}; calls: {:?}",
                self.calls()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for MockPd {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn update(cluster_id: u64, service_id: &str, ttl: i64, safe_point: u64) -> Call {
    Call::Update {
        cluster_id,
        service_id: service_id.into(),
        ttl,
        safe_point,
    }
}

/// An address nothing listens on.
async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

async fn start_err(addr: &str, snapshot: Tso, ttl: u64) -> SnapshotError {
    match GcKeeper::start(addr, "syncgate_test", snapshot, ttl).await {
        Ok(k) => panic!("start must fail, got {k:?}"),
        Err(e) => e,
    }
}

// --------------------------------------------------------------------------------------
// GcKeeper against the mock PD
// --------------------------------------------------------------------------------------

#[tokio::test]
async fn gc_keeper_registers_at_start_refreshes_within_half_ttl_and_removes_at_stop() {
    const CLUSTER: u64 = 6_998_041_512_348_237_823;
    let pd = MockPd::start(CLUSTER, SAMPLE - 1_000_000).await;
    let service = format!("{}_upstream", default_service_id());
    let started = Instant::now();
    let keeper = GcKeeper::start(&pd.addr.to_string(), &service, Tso(SAMPLE), 2)
        .await
        .expect("PD accepts the service safepoint");
    // GetMembers first (no cluster ID needed), then the registration with PD's cluster ID,
    // the TTL and the snapshot TSO as the safe point.
    assert_eq!(
        pd.calls(),
        [
            Call::GetMembers { cluster_id: 0 },
            update(CLUSTER, &service, 2, SAMPLE)
        ]
    );
    assert!(service.starts_with("syncgate_"));
    assert_eq!(keeper.pd_addr(), pd.url());
    assert_eq!(keeper.cluster_id(), CLUSTER);
    assert_eq!(keeper.snapshot(), Tso(SAMPLE));
    assert_eq!(keeper.ttl_secs(), 2);
    assert_eq!(
        keeper.describe(),
        format!(
            "protected from GC by PD service safepoint {service} (PD {}, TTL 2 s)",
            pd.url()
        )
    );
    assert_eq!(
        pd.with(|s| s.services.get(&service).copied()),
        Some((SAMPLE, 2))
    );
    let status = keeper.status();
    assert_eq!(status.refreshes, 1);
    assert_eq!(status.min_safe_point, Tso(SAMPLE - 1_000_000));

    // Refreshes: every TTL/2 = 1 s, on the leader connection (no new GetMembers).
    pd.wait_until(Duration::from_secs(5), |c| c.len() >= 4)
        .await;
    let updates = pd.updates();
    for pair in updates.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= Duration::from_millis(900) && gap < Duration::from_millis(1900),
            "refresh gap {gap:?} must be about TTL/2 and below the TTL"
        );
    }
    assert_eq!(
        pd.calls()[2..4],
        [
            update(CLUSTER, &service, 2, SAMPLE),
            update(CLUSTER, &service, 2, SAMPLE)
        ]
    );
    assert!(keeper.status().refreshes >= 3, "{:?}", keeper.status());
    assert!(keeper.warnings().is_empty(), "{:?}", keeper.warnings());
    assert!(started.elapsed() < Duration::from_secs(5));

    // Stop removes it: TTL 0, PD's removal.
    let n = pd.count();
    keeper.stop().await.expect("removed");
    let calls = pd.calls();
    assert_eq!(calls.len(), n + 1, "{calls:?}");
    assert_eq!(calls[n], update(CLUSTER, &service, 0, SAMPLE));
    assert!(pd.with(|s| s.services.is_empty()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(pd.count(), n + 1, "nothing is sent after stop");
}

#[tokio::test]
async fn gc_keeper_uses_the_given_ttl_of_300_s() {
    let pd = MockPd::start(42, 1).await;
    let keeper = GcKeeper::start(
        &pd.url(),
        "syncgate_1700000000000",
        Tso(SAMPLE),
        DEFAULT_GC_TTL_SECS,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    keeper.stop().await.unwrap();
    assert_eq!(
        pd.calls(),
        [
            Call::GetMembers { cluster_id: 0 },
            update(42, "syncgate_1700000000000", 300, SAMPLE),
            update(42, "syncgate_1700000000000", 0, SAMPLE),
        ]
    );
}

#[tokio::test]
async fn gc_keeper_refuses_a_snapshot_gc_has_already_passed() {
    // PD's minimum safe point (gc_worker) is above the snapshot: PD does not store ours
    // and answers the minimum.
    let pd = MockPd::start(42, SAMPLE + 1).await;
    let err = start_err(&pd.addr.to_string(), Tso(SAMPLE), 300).await;
    assert!(
        matches!(err, SnapshotError::AlreadyCollected { gc_safe_point, .. } if gc_safe_point == Tso(SAMPLE + 1)),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "snapshot TSO 431434047157698561 (2022-02-25 11:57:59.990 UTC) is older than the \
             cluster's GC safe point TSO 431434047157698562 (2022-02-25 11:57:59.990 UTC) \
             (PD {} refused a service GC safepoint there): its data may already be \
             collected; choose a newer snapshot (TiDB reports this as error 8055/9006)",
            pd.url()
        )
    );
    assert_eq!(
        pd.calls(),
        [
            Call::GetMembers { cluster_id: 0 },
            update(42, "syncgate_test", 300, SAMPLE)
        ]
    );
    assert!(pd.with(|s| s.services.is_empty()));
    // As a crate error it keeps the message.
    let crate_err: Error = err.into();
    assert!(crate_err
        .to_string()
        .starts_with("snapshot TSO 431434047157698561"));
}

#[tokio::test]
async fn gc_keeper_start_fails_when_pd_is_unreachable() {
    let addr = dead_addr().await;
    let t = Instant::now();
    let err = start_err(&addr.to_string(), Tso(SAMPLE), 300).await;
    let msg = err.to_string();
    assert!(matches!(err, SnapshotError::Pd { .. }), "{err:?}");
    assert!(
        msg.starts_with(&format!(
            "PD http://{addr}: cannot register service GC safepoint syncgate_test at TSO \
             431434047157698561 (2022-02-25 11:57:59.990 UTC): http://{addr}: cannot connect"
        )),
        "{msg}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "fails fast on refusal"
    );
}

#[tokio::test]
async fn gc_keeper_start_fails_when_pd_answers_with_an_error() {
    let pd = MockPd::start(42, 1).await;
    pd.with(|s| s.header_error = Some((2, "cluster is not bootstrapped".into())));
    let msg = start_err(&pd.url(), Tso(SAMPLE), 300).await.to_string();
    assert!(
        msg.ends_with(&format!(
            "{}: UpdateServiceGCSafePoint answered NOT_BOOTSTRAPPED: cluster is not \
             bootstrapped",
            pd.url()
        )),
        "{msg}"
    );
    pd.with(|s| {
        s.header_error = None;
        s.fail_updates = Some(tonic::Code::Unavailable);
    });
    let msg = start_err(&pd.url(), Tso(SAMPLE), 300).await.to_string();
    assert!(
        msg.contains("UpdateServiceGCSafePoint failed: Unavailable: mock PD is unavailable"),
        "{msg}"
    );
}

#[tokio::test]
async fn gc_keeper_sends_updates_to_the_leader_named_by_get_members() {
    let leader = MockPd::start(42, 1).await;
    let follower = MockPd::start(42, 1).await;
    follower.with(|s| s.leader_url = Some(format!("{}/", leader.url())));
    let keeper = GcKeeper::start(
        &follower.addr.to_string(),
        "syncgate_test",
        Tso(SAMPLE),
        300,
    )
    .await
    .expect("registered on the leader");
    assert_eq!(keeper.pd_addr(), leader.url());
    assert_eq!(follower.calls(), [Call::GetMembers { cluster_id: 0 }]);
    assert_eq!(leader.calls(), [update(42, "syncgate_test", 300, SAMPLE)]);
    keeper.stop().await.unwrap();
    assert_eq!(leader.calls()[1], update(42, "syncgate_test", 0, SAMPLE));
    assert_eq!(follower.count(), 1);
}

#[tokio::test]
async fn gc_keeper_tries_each_pd_address_in_turn() {
    let dead = dead_addr().await;
    let pd = MockPd::start(42, 1).await;
    let addrs = format!("{dead}, http://{}/", pd.addr);
    let keeper = GcKeeper::start(&addrs, "syncgate_test", Tso(SAMPLE), 300)
        .await
        .expect("the second address answers");
    assert_eq!(keeper.pd_addr(), pd.url());
    assert_eq!(pd.count(), 2);
    drop(keeper);
}

#[tokio::test]
async fn gc_keeper_keeps_trying_when_pd_fails_during_the_run() {
    let pd = MockPd::start(42, 1).await;
    let keeper = GcKeeper::start(&pd.url(), "syncgate_test", Tso(SAMPLE), 2)
        .await
        .unwrap();
    // PD goes bad after the registration: refreshes fail, the keeper warns and retries every
    // TTL/8, finding the leader again each time.
    pd.with(|s| s.fail_updates = Some(tonic::Code::Unavailable));
    let deadline = Instant::now() + Duration::from_secs(8);
    while !keeper.status().lapsed {
        assert!(Instant::now() < deadline, "{:?}", keeper.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = keeper.status();
    assert!(status.failures >= 2, "{status:?}");
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap()
            .contains("Unavailable: mock PD is unavailable"),
        "{status:?}"
    );
    assert!(
        pd.calls()
            .iter()
            .skip(2)
            .any(|c| matches!(c, Call::GetMembers { .. })),
        "a failed refresh looks for the leader again: {:?}",
        pd.calls()
    );
    let warnings = keeper.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("PD service safepoint syncgate_test: ")
            && warnings[0].contains("refreshes failed and none succeeded for longer than its TTL (2 s): GC protection may have lapsed"),
        "{warnings:?}"
    );
    // PD comes back: the next retry succeeds.
    let before = keeper.status().refreshes;
    pd.with(|s| s.fail_updates = None);
    let deadline = Instant::now() + Duration::from_secs(5);
    while keeper.status().refreshes == before {
        assert!(Instant::now() < deadline, "{:?}", keeper.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(keeper.status().last_error, None);
    assert!(keeper.status().lapsed, "the lapse stays on record");
    keeper.stop().await.unwrap();
    assert!(matches!(
        pd.calls().last(),
        Some(Call::Update { ttl: 0, .. })
    ));
}

#[tokio::test]
async fn gc_keeper_reports_gc_passing_the_snapshot_during_the_run() {
    let pd = MockPd::start(42, 1).await;
    let keeper = GcKeeper::start(&pd.url(), "syncgate_test", Tso(SAMPLE), 1)
        .await
        .unwrap();
    pd.with(|s| s.force_min = Some(SAMPLE + 5));
    let deadline = Instant::now() + Duration::from_secs(5);
    while keeper.status().passed_by.is_none() {
        assert!(Instant::now() < deadline, "{:?}", keeper.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(keeper.status().passed_by, Some(Tso(SAMPLE + 5)));
    let warnings = keeper.warnings();
    assert!(
        warnings[0].contains("PD reported the minimum safepoint TSO 431434047157698566")
            && warnings[0].contains("GC may have collected data the check read"),
        "{warnings:?}"
    );
    keeper.stop().await.unwrap();
}

#[tokio::test]
async fn stop_reports_a_failed_removal() {
    let pd = MockPd::start(42, 1).await;
    let keeper = GcKeeper::start(&pd.url(), "syncgate_test", Tso(SAMPLE), 300)
        .await
        .unwrap();
    pd.with(|s| s.fail_updates = Some(tonic::Code::Unavailable));
    let err = keeper.stop().await.expect_err("removal fails");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "PD {}: cannot remove service GC safepoint syncgate_test (",
            pd.url()
        )) && msg.ends_with("PD drops it when its TTL of 300 s expires"),
        "{msg}"
    );
}

#[tokio::test]
async fn dropping_the_keeper_removes_the_safepoint_in_the_background() {
    let pd = MockPd::start(42, 1).await;
    let keeper = GcKeeper::start(&pd.url(), "syncgate_test", Tso(SAMPLE), 300)
        .await
        .unwrap();
    drop(keeper);
    pd.wait_until(Duration::from_secs(5), |c| {
        c.last() == Some(&update(42, "syncgate_test", 0, SAMPLE))
    })
    .await;
    assert!(pd.with(|s| s.services.is_empty()));
}

#[tokio::test]
async fn gc_keeper_rejects_bad_settings() {
    for (addr, ttl, want) in [
        (
            "https://pd:2379",
            300,
            "https (PD with TLS) is not supported",
        ),
        (
            "grpc://pd:2379",
            300,
            "expected host:port or http://host:port",
        ),
        (" , ", 300, "no PD address given"),
        ("127.0.0.1:1", 0, "TTL must be at least 1 s"),
    ] {
        let msg = start_err(addr, Tso(SAMPLE), ttl).await.to_string();
        assert!(msg.contains(want), "{addr:?}: {msg}");
    }
}
