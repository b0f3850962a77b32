//! The snapshot config value, the datetime → TSO query, the session statement that pins a
//! snapshot, and the GC errors of a snapshot read.

use super::SAMPLE;
use syncgate::snapshot::tidb::{
    classify_query_error, classify_tidb_error, clear_snapshot_sql, datetime_to_tso_sql,
    parse_snapshot, set_snapshot_sql, tso_from_unix_timestamp_result, SnapshotError,
    SnapshotSetting, Tso,
};
use syncgate::Error;

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
