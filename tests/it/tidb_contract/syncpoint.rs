//! `snapshot = "auto"`: the TiCDC syncpoint query and its answers.

use super::row;
use syncgate::snapshot::tidb::{parse_syncpoint_row, syncpoint_sql, SnapshotError, Syncpoint, Tso};
use syncgate::Error;

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
