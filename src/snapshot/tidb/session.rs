//! Pinning a session to a snapshot (`tidb_snapshot`), and resolving a datetime snapshot
//! to a TSO on a session.

use super::{datetime_to_tso_sql, tso_from_unix_timestamp_result, SnapshotError, Tso};
use crate::db::Conn;
use crate::error::{Error, Result};

/// Resolve a datetime to a TSO on `conn` (whose session time zone gives the datetime its
/// meaning: UTC on syncgate's sessions).
pub async fn resolve_datetime(conn: &mut Conn, datetime: &str) -> Result<Tso> {
    let sql = datetime_to_tso_sql(datetime);
    let row = conn.first(&sql).await?;
    let text = row
        .as_ref()
        .and_then(|r| r.first())
        .and_then(|v| v.as_ref())
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    tso_from_unix_timestamp_result(&text).map_err(|e| {
        Error::from(match e {
            SnapshotError::BadUnixTimestamp { answer, reason, .. } => {
                SnapshotError::BadUnixTimestamp {
                    datetime: datetime.to_string(),
                    answer,
                    reason,
                }
            }
            other => other,
        })
    })
}

/// The statement that makes every later read on the session see `tso`
/// (dr-interfaces A4.3: `SET @@tidb_snapshot = '<TSO as string>'`). TiDB validates it and
/// fails with 8055 when the TSO is below the GC safe point ([`classify_tidb_error`]).
///
/// [`classify_tidb_error`]: super::classify_tidb_error
pub fn set_snapshot_sql(tso: Tso) -> String {
    format!("SET SESSION tidb_snapshot = '{}'", tso.0)
}

/// The statement that returns the session to current data (`''` clears it, A4.3).
pub fn clear_snapshot_sql() -> &'static str {
    "SET SESSION tidb_snapshot = ''"
}
