//! PD discovery: the PD addresses of a TiDB cluster from
//! `information_schema.cluster_info`, as sync-diff-inspector finds them.

use crate::db::Conn;
use crate::error::Result;
use crate::row::Row;

/// The query listing the PD instances of the cluster a TiDB server belongs to, as
/// sync-diff-inspector finds PD (sync-diff-inspector.md §2.1 "GC keeper": "It finds PD
/// addresses in `information_schema.cluster_info`"). Table and columns from TiDB's docs
/// (`information-schema-cluster-info.md`): `TYPE` is `tidb`, `pd` or `tikv`; `INSTANCE` is the
/// instance address `IP:PORT` (for PD its client address, where gRPC is served). Read the
/// answer with [`pd_addrs_from_rows`].
pub fn pd_discovery_sql() -> &'static str {
    "SELECT INSTANCE FROM information_schema.cluster_info WHERE TYPE = 'pd'"
}

/// PD addresses (`http://host:port`, in the order given, without duplicates) from the rows
/// of [`pd_discovery_sql`], and a description of each value that is not a usable address
/// (NULL, TLS, garbage).
pub fn pd_addrs_from_rows(rows: &[Row]) -> (Vec<String>, Vec<String>) {
    let (mut addrs, mut rejected) = (Vec::new(), Vec::new());
    for row in rows {
        match row.first() {
            Some(Some(bytes)) => {
                match crate::snapshot::pd::parse_pd_addr(&String::from_utf8_lossy(bytes)) {
                    Ok(a) if !addrs.contains(&a) => addrs.push(a),
                    Ok(_) => {}
                    Err(e) => rejected.push(e),
                }
            }
            _ => rejected.push("INSTANCE is NULL".to_string()),
        }
    }
    (addrs, rejected)
}

/// Run [`pd_discovery_sql`] on `conn` and return the usable PD addresses (possibly none).
/// Unusable values are logged.
pub async fn discover_pd(conn: &mut Conn) -> Result<Vec<String>> {
    let rows = conn.rows(pd_discovery_sql()).await?;
    let (addrs, rejected) = pd_addrs_from_rows(&rows);
    for r in rejected {
        tracing::warn!("{}: ignoring a PD instance: {r}", conn.source_name());
    }
    Ok(addrs)
}
