//! Contract tests for `syncgate::snapshot::tidb`: TiDB cannot run here, so these check the
//! pieces against TiDB's and PD's documented interfaces (shared/reference/dr-interfaces.md
//! A4, A5, A7; sync-diff-inspector.md §8): pure functions for SQL text and parsing, and a
//! hand-written mock of PD's HTTP API on 127.0.0.1 that records every request. No live
//! TiDB or PD is involved.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use syncgate::snapshot::tidb::{
    assess_protection, classify_query_error, classify_tidb_error, clear_snapshot_sql,
    datetime_to_tso_sql, default_service_id, parse_pd_safepoints, parse_snapshot,
    parse_syncpoint_row, set_snapshot_sql, syncpoint_sql, tso_from_unix_timestamp_result, GcKeeper,
    GcProtection, PdSafePoints, ServiceSafePoint, SnapshotError, SnapshotSetting, Syncpoint, Tso,
    DEFAULT_GC_TTL_SECS, PD_SAFEPOINT_PATH,
};
use syncgate::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    // It converts into the crate error with the same message.
    let e: Error = parse_syncpoint_row(Some("dr-feed"), None)
        .unwrap_err()
        .into();
    assert!(
        matches!(&e, Error::Config(m) if m.contains("changefeed dr-feed")),
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
    };
    assert!(classify_query_error(&other).is_none());
    assert!(classify_query_error(&Error::Config("8055".into())).is_none());
}

// --------------------------------------------------------------------------------------
// PD safe points: parsing and judgement
// --------------------------------------------------------------------------------------

const NOW: i64 = 1_700_000_000;

fn ssp(id: &str, expired_at: i64, safe_point: u64) -> ServiceSafePoint {
    ServiceSafePoint {
        service_id: id.into(),
        expired_at,
        safe_point,
    }
}

#[test]
fn pd_listing_parses_the_documented_shape() {
    // Shape from dr-interfaces.md A5, plus the field newer PDs add.
    let json = r#"{"service_gc_safe_points":[
        {"service_id":"gc_worker","expired_at":9223372036854775807,"safe_point":431434000000000000},
        {"service_id":"ticdc-default-1","expired_at":1700086400,"safe_point":431434040000000000}],
        "min_service_gc_safe_point":431434000000000000,
        "gc_safe_point":431433990000000000}"#;
    let p = parse_pd_safepoints(json).unwrap();
    assert_eq!(p.gc_safe_point, 431_433_990_000_000_000);
    assert_eq!(
        p.service_gc_safe_points,
        vec![
            ssp("gc_worker", i64::MAX, 431_434_000_000_000_000),
            ssp("ticdc-default-1", 1_700_086_400, 431_434_040_000_000_000),
        ]
    );
    assert!(parse_pd_safepoints("not json").is_err());
    assert!(parse_pd_safepoints(r#"{"service_gc_safe_points":[]}"#).is_err());
}

#[test]
fn protection_is_judged_from_holders_and_safe_points() {
    let snap = Tso(SAMPLE);
    let points = |gc: u64, list: Vec<ServiceSafePoint>| PdSafePoints {
        service_gc_safe_points: list,
        gc_safe_point: gc,
    };
    // A live holder at or below the snapshot protects it; gc_worker never does.
    assert_eq!(
        assess_protection(
            &points(
                SAMPLE - 100,
                vec![
                    ssp("gc_worker", i64::MAX, SAMPLE - 100),
                    ssp("ticdc", NOW + 60, SAMPLE),
                    ssp("br", NOW + 60, SAMPLE + 1),
                ]
            ),
            snap,
            NOW
        ),
        GcProtection::Held {
            by: vec!["ticdc".into()]
        }
    );
    // Expired holders and holders above the snapshot do not count.
    assert_eq!(
        assess_protection(
            &points(
                SAMPLE - 100,
                vec![
                    ssp("gc_worker", i64::MAX, SAMPLE - 100),
                    ssp("old", NOW, SAMPLE - 1),
                    ssp("above", NOW + 60, SAMPLE + 1),
                ]
            ),
            snap,
            NOW
        ),
        GcProtection::Unprotected {
            gc_safe_point: Tso(SAMPLE - 100)
        }
    );
    // The GC safe point above the snapshot: gone, whatever the holders say.
    assert_eq!(
        assess_protection(
            &points(SAMPLE + 1, vec![ssp("ticdc", NOW + 60, SAMPLE)]),
            snap,
            NOW
        ),
        GcProtection::Collected {
            gc_safe_point: Tso(SAMPLE + 1)
        }
    );
    // The GC worker moving past an unheld snapshot: gone too.
    assert_eq!(
        assess_protection(
            &points(SAMPLE - 100, vec![ssp("gc_worker", i64::MAX, SAMPLE + 5)]),
            snap,
            NOW
        ),
        GcProtection::Collected {
            gc_safe_point: Tso(SAMPLE + 5)
        }
    );
    // Exactly at the GC safe point is still readable.
    assert_eq!(
        assess_protection(&points(SAMPLE, vec![]), snap, NOW),
        GcProtection::Unprotected {
            gc_safe_point: Tso(SAMPLE)
        }
    );
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
    assert_eq!(PD_SAFEPOINT_PATH, "/pd/api/v1/gc/safepoint");
}

// --------------------------------------------------------------------------------------
// GcKeeper against a mock PD
// --------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct Recorded {
    method: String,
    path: String,
    body: String,
}

/// A PD stand-in: answers every request with the current (status, body) and records it.
struct MockPd {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    answer: Arc<Mutex<(u16, String)>>,
    task: tokio::task::JoinHandle<()>,
}

impl MockPd {
    async fn start(status: u16, body: &str) -> MockPd {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(Mutex::new((status, body.to_string())));
        let (reqs, ans) = (requests.clone(), answer.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (reqs, ans) = (reqs.clone(), ans.clone());
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut sock).await else {
                        return;
                    };
                    reqs.lock().unwrap().push(req);
                    let (status, body) = ans.lock().unwrap().clone();
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        MockPd {
            addr,
            requests,
            answer,
            task,
        }
    }

    fn set_answer(&self, status: u16, body: &str) {
        *self.answer.lock().unwrap() = (status, body.to_string());
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Wait (bounded) until at least `n` requests have arrived.
    async fn wait_for(&self, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.count() < n {
            assert!(
                Instant::now() < deadline,
                "expected {n} requests within {limit:?}, got {:?}",
                self.requests()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for MockPd {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let len = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    Some(Recorded { method, path, body })
}

fn listing(gc_safe_point: u64, holders: &[(&str, i64, u64)]) -> String {
    let list: Vec<serde_json::Value> = holders
        .iter()
        .map(|(id, exp, sp)| serde_json::json!({"service_id": id, "expired_at": exp, "safe_point": sp}))
        .collect();
    serde_json::json!({"service_gc_safe_points": list, "gc_safe_point": gc_safe_point}).to_string()
}

fn far_future() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 86_400
}

fn assert_only_reads(reqs: &[Recorded]) {
    for r in reqs {
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.body.as_str()),
            ("GET", "/pd/api/v1/gc/safepoint", ""),
            "the keeper must only read PD's documented safe-point listing"
        );
    }
}

#[tokio::test]
async fn gc_keeper_reads_at_start_rereads_every_half_ttl_and_stops_quietly() {
    let pd = MockPd::start(
        200,
        &listing(
            SAMPLE - 1000,
            &[
                ("gc_worker", i64::MAX, SAMPLE - 1000),
                ("ticdc-default-dr", far_future(), SAMPLE - 10),
            ],
        ),
    )
    .await;
    let service = default_service_id();
    let started = Instant::now();
    let keeper = GcKeeper::start(&pd.addr.to_string(), &service, Tso(SAMPLE), 2)
        .await
        .expect("PD answers");
    // Start: exactly one read, before start returned.
    assert_eq!(
        pd.requests(),
        vec![Recorded {
            method: "GET".into(),
            path: "/pd/api/v1/gc/safepoint".into(),
            body: String::new(),
        }]
    );
    assert_eq!(keeper.service_id(), service);
    assert_eq!(keeper.snapshot(), Tso(SAMPLE));
    assert_eq!(keeper.pd_addr(), format!("http://{}", pd.addr));
    assert_eq!(
        keeper.protection(),
        GcProtection::Held {
            by: vec!["ticdc-default-dr".into()]
        }
    );

    // Refresh after ttl/2 = 1 s, and not much sooner.
    pd.wait_for(2, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // The holder goes away: the next refresh sees it.
    pd.set_answer(
        200,
        &listing(SAMPLE - 1000, &[("gc_worker", i64::MAX, SAMPLE - 1000)]),
    );
    let n = pd.count();
    pd.wait_for(n + 1, Duration::from_secs(5)).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while keeper.protection()
        == (GcProtection::Held {
            by: vec!["ticdc-default-dr".into()],
        })
    {
        assert!(Instant::now() < deadline, "status not updated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        keeper.protection(),
        GcProtection::Unprotected {
            gc_safe_point: Tso(SAMPLE - 1000)
        }
    );

    // Stop: no request is sent, and the re-reads end.
    keeper.stop().await;
    let after_stop = pd.count();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(pd.count(), after_stop, "{:?}", pd.requests());
    assert!(after_stop >= 3);
    assert_only_reads(&pd.requests());
}

#[tokio::test]
async fn gc_keeper_keeps_trying_when_pd_fails_during_the_run() {
    let pd = MockPd::start(200, &listing(SAMPLE - 1000, &[])).await;
    let keeper = GcKeeper::start(&pd.addr.to_string(), "syncgate_test", Tso(SAMPLE), 2)
        .await
        .unwrap();
    assert_eq!(
        keeper.protection(),
        GcProtection::Unprotected {
            gc_safe_point: Tso(SAMPLE - 1000)
        }
    );
    pd.set_answer(500, "\"etcd is sad\"");
    pd.wait_for(3, Duration::from_secs(6)).await;
    let status = keeper.status();
    let err = status.last_error.expect("the failure is recorded");
    assert!(err.contains("HTTP 500"), "{err}");
    assert!(err.contains("etcd is sad"), "{err}");
    // The last good view is kept.
    assert_eq!(
        status.protection,
        GcProtection::Unprotected {
            gc_safe_point: Tso(SAMPLE - 1000)
        }
    );
    // PD comes back and the GC safe point has passed the snapshot.
    pd.set_answer(200, &listing(SAMPLE + 1, &[]));
    let n = pd.count();
    pd.wait_for(n + 1, Duration::from_secs(5)).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while keeper.status().last_error.is_some() {
        assert!(Instant::now() < deadline, "status not updated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        keeper.protection(),
        GcProtection::Collected {
            gc_safe_point: Tso(SAMPLE + 1)
        }
    );
    drop(keeper);
    let after_drop = pd.count();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(pd.count(), after_drop, "dropping the keeper ends it");
    assert_only_reads(&pd.requests());
}

#[tokio::test]
async fn gc_keeper_refuses_a_snapshot_already_below_the_gc_safe_point() {
    let pd = MockPd::start(200, &listing(SAMPLE + 1, &[])).await;
    let err = match GcKeeper::start(&pd.addr.to_string(), "syncgate_test", Tso(SAMPLE), 300).await {
        Ok(_) => panic!("a collected snapshot must not be accepted"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        err,
        format!(
            "snapshot TSO 431434047157698561 (2022-02-25 11:57:59.990 UTC) is already older \
             than the GC safe point TSO 431434047157698562 (2022-02-25 11:57:59.990 UTC) \
             reported by PD http://{}; choose a newer snapshot",
            pd.addr
        )
    );
    assert_eq!(pd.count(), 1);
}

#[tokio::test]
async fn gc_keeper_start_fails_when_pd_answers_badly() {
    let pd = MockPd::start(500, "\"no leader\"").await;
    let err = match GcKeeper::start(&pd.addr.to_string(), "syncgate_test", Tso(SAMPLE), 300).await {
        Ok(_) => panic!("an HTTP 500 must fail the start"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("HTTP 500"), "{err}");
    assert!(err.contains("no leader"), "{err}");
    assert!(err.contains("would not be guarded"), "{err}");

    pd.set_answer(200, "<html>not PD</html>");
    let err = match GcKeeper::start(&pd.addr.to_string(), "syncgate_test", Tso(SAMPLE), 300).await {
        Ok(_) => panic!("a non-JSON answer must fail the start"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("unexpected answer"), "{err}");
}

/// A port on 127.0.0.1 with nothing listening.
async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

#[tokio::test]
async fn gc_keeper_start_fails_when_pd_is_unreachable() {
    let addr = dead_addr().await;
    let started = Instant::now();
    let err = match GcKeeper::start(&addr.to_string(), "syncgate_test", Tso(SAMPLE), 300).await {
        Ok(_) => panic!("an unreachable PD must fail the start"),
        Err(e) => e,
    };
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "PD http://{addr}: GET http://{addr}/pd/api/v1/gc/safepoint failed: cannot connect"
        )),
        "{msg}"
    );
    assert!(msg.contains("would not be guarded"), "{msg}");
}

#[tokio::test]
async fn gc_keeper_tries_each_pd_address_in_turn() {
    let dead = dead_addr().await;
    let pd = MockPd::start(200, &listing(SAMPLE - 1, &[])).await;
    let addrs = format!("{dead}, http://{}/", pd.addr);
    let keeper = GcKeeper::start(&addrs, "syncgate_test", Tso(SAMPLE), 300)
        .await
        .expect("the second address answers");
    assert_eq!(keeper.pd_addr(), format!("http://{}", pd.addr));
    assert_eq!(pd.count(), 1);
    keeper.stop().await;
}

#[tokio::test]
async fn gc_keeper_rejects_bad_settings() {
    for (addr, ttl, expect) in [
        ("https://pd:2379", 300, "https is not supported"),
        ("grpc://pd:2379", 300, "expected host:port"),
        (" , ", 300, "no PD address"),
        ("127.0.0.1:2379", 0, "TTL must be at least 1 s"),
    ] {
        let err = match GcKeeper::start(addr, "syncgate_test", Tso(SAMPLE), ttl).await {
            Ok(_) => panic!("{addr} / {ttl} must be rejected"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(expect), "{addr}: {err}");
    }
}
