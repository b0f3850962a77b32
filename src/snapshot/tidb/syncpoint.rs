//! `snapshot = "auto"`: the newest TiCDC syncpoint (`tidb_cdc.syncpoint_v1`) on the
//! downstream gives the TSO pair both sides are read at.

use super::errors::ER_NO_SUCH_TABLE;
use super::{SnapshotError, Tso};
use crate::db::Conn;
use crate::error::Result;
use crate::row::Row;

/// One syncpoint: the downstream at `downstream` equals the upstream at `upstream`
/// (dr-interfaces A7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syncpoint {
    /// `primary_ts`: the upstream TSO (becomes the upstream's snapshot).
    pub upstream: Tso,
    /// `secondary_ts`: the downstream TSO (becomes the downstream's snapshot).
    pub downstream: Tso,
}

/// The query for the newest syncpoint, run on the downstream (sync-diff-inspector §8.2).
///
/// Table layout, dr-interfaces A7.1 (`tidb_cdc.syncpoint_v1`, created by TiCDC):
/// `ticdc_cluster_id varchar(255)`, `changefeed varchar(255)`, `primary_ts varchar(18)`,
/// `secondary_ts varchar(18)`, `created_at timestamp`, `PRIMARY KEY (changefeed,
/// primary_ts)`. `changefeed` holds the changefeed ID as TiCDC writes it (tiflow's
/// `mysql_syncpoint_store.go` writes the ID without namespace); the configured
/// `syncpoint-changefeed` is compared verbatim. The TSOs are strings; ordering them as
/// strings is right because all TSOs in use have 18 digits (A7.3), and with the filter it
/// follows the primary key. Without a changefeed the newest syncpoint of *any* changefeed
/// is taken, which is how sync-diff-inspector reported false differences (§8.2).
pub fn syncpoint_sql(changefeed: Option<&str>) -> String {
    let filter = match changefeed {
        Some(cf) => format!(" WHERE changefeed = {}", crate::sql::quote_str(cf)),
        None => String::new(),
    };
    format!(
        "SELECT primary_ts, secondary_ts FROM tidb_cdc.syncpoint_v1{filter} \
         ORDER BY primary_ts DESC LIMIT 1"
    )
}

/// Read the answer of [`syncpoint_sql`]: no row is [`SnapshotError::NoSyncpoint`]; a row
/// with a NULL, empty or non-numeric TSO is [`SnapshotError::BadSyncpoint`].
pub fn parse_syncpoint_row(
    changefeed: Option<&str>,
    row: Option<&Row>,
) -> std::result::Result<Syncpoint, SnapshotError> {
    let Some(row) = row else {
        return Err(SnapshotError::NoSyncpoint {
            changefeed: changefeed.map(str::to_string),
        });
    };
    let cell = |i: usize, name: &str| -> std::result::Result<Tso, SnapshotError> {
        let text = match row.get(i) {
            None => return Err(SnapshotError::BadSyncpoint(format!("{name} is missing"))),
            Some(None) => return Err(SnapshotError::BadSyncpoint(format!("{name} is NULL"))),
            Some(Some(b)) => String::from_utf8_lossy(b).into_owned(),
        };
        text.parse::<Tso>()
            .map_err(|_| SnapshotError::BadSyncpoint(format!("{name} {text:?} is not a TSO")))
    };
    Ok(Syncpoint {
        upstream: cell(0, "primary_ts")?,
        downstream: cell(1, "secondary_ts")?,
    })
}

/// Run [`syncpoint_sql`] on a live (unpinned) connection to the downstream and read the
/// newest syncpoint. A missing table gets its own clear error.
pub async fn query_syncpoint(conn: &mut Conn, changefeed: Option<&str>) -> Result<Syncpoint> {
    let sql = syncpoint_sql(changefeed);
    let row = match conn.first(&sql).await {
        Ok(row) => row,
        Err(e) if e.server_code() == Some(ER_NO_SUCH_TABLE) => {
            return Err(SnapshotError::NoSyncpointTable {
                source_name: conn.source_name().to_string(),
            }
            .into())
        }
        Err(e) => return Err(e),
    };
    Ok(parse_syncpoint_row(changefeed, row.as_ref())?)
}
