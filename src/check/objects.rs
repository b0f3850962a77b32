//! Objects in the checked schemas that hold no table data the check compares — views,
//! sequences, routines, triggers, events — listed in the report as not compared, so none
//! is passed over in silence.

use super::CheckJob;
use crate::db::{cell_str, Conn, Source};
use crate::error::Result;
use crate::report::NotCompared;
use crate::schema::TableRef;
use crate::sql::{quote_ident, quote_str};
use std::collections::{BTreeMap, BTreeSet};

/// The objects of both sides that the check does not compare. Views and sequences are
/// selected by `target-check-tables` like tables (upstream names routed to their target);
/// routines, triggers and events by their schema holding a checked table (`schemas`:
/// upstream's, downstream's). With `sequences_compared` (`check::metadata` read them), only
/// sequences the downstream alone has are listed.
pub(super) async fn not_compared(
    job: &CheckJob,
    up: &Source,
    down: &Source,
    schemas: [BTreeSet<String>; 2],
    sequences_compared: bool,
) -> Result<Vec<NotCompared>> {
    let mut found: BTreeMap<(String, String, String), (bool, bool)> = BTreeMap::new();
    for (side, source) in [(0, up), (1, down)] {
        let mut conn = source.connect().await?;
        let listed = list(&mut conn, &schemas[side]).await;
        conn.close().await;
        for (kind, object) in listed? {
            let target = if side == 0 && is_table_like(&kind) {
                match job.selector.route(0, &object) {
                    Some(t) => t,
                    None => continue,
                }
            } else {
                object
            };
            if is_table_like(&kind) && !job.selector.wants(&target) {
                continue;
            }
            let seen = found
                .entry((target.schema, target.table, kind))
                .or_default();
            if side == 0 {
                seen.0 = true;
            } else {
                seen.1 = true;
            }
        }
    }
    Ok(found
        .into_iter()
        .filter(|((_, _, kind), (up, _))| !(sequences_compared && kind == "sequence" && *up))
        .map(|((schema, name, kind), (up, down))| NotCompared {
            kind,
            schema,
            name,
            on: match (up, down) {
                (true, true) => "both",
                (true, false) => "upstream only",
                _ => "downstream only",
            }
            .to_string(),
        })
        .collect())
}

fn is_table_like(kind: &str) -> bool {
    kind == "view" || kind == "sequence"
}

/// `(kind, schema.name)` of the views, sequences, routines, triggers and events of every
/// schema the server has. Schemas are listed with SHOW DATABASES so that a schema
/// missing on this side is simply absent.
async fn list(conn: &mut Conn, schemas: &BTreeSet<String>) -> Result<Vec<(String, TableRef)>> {
    let mut out = Vec::new();
    for schema in present(conn, schemas).await? {
        out.extend(show_full_tables(conn, &schema, "IN ('VIEW', 'SEQUENCE')").await?);
        let s = quote_str(&schema);
        let queries = [
            format!(
                "SELECT LOWER(ROUTINE_TYPE), ROUTINE_NAME FROM information_schema.ROUTINES \
                 WHERE ROUTINE_SCHEMA = {s}"
            ),
            format!(
                "SELECT 'trigger', TRIGGER_NAME FROM information_schema.TRIGGERS \
                 WHERE TRIGGER_SCHEMA = {s}"
            ),
            format!(
                "SELECT 'event', EVENT_NAME FROM information_schema.EVENTS \
                 WHERE EVENT_SCHEMA = {s}"
            ),
        ];
        for sql in queries {
            for r in conn.rows(&sql).await? {
                if let (Some(kind), Some(name)) = (cell_str(&r, 0), cell_str(&r, 1)) {
                    out.push((kind, TableRef::new(schema.clone(), name)));
                }
            }
        }
    }
    Ok(out)
}

/// The sequences of `schemas` (those this server has).
pub(super) async fn sequences(
    conn: &mut Conn,
    schemas: &BTreeSet<String>,
) -> Result<Vec<TableRef>> {
    let mut out = Vec::new();
    for schema in present(conn, schemas).await? {
        let found = show_full_tables(conn, &schema, "= 'SEQUENCE'").await?;
        out.extend(found.into_iter().map(|(_, t)| t));
    }
    Ok(out)
}

/// Those of `schemas` the server has.
async fn present(conn: &mut Conn, schemas: &BTreeSet<String>) -> Result<Vec<String>> {
    let present: BTreeSet<String> = conn
        .rows("SHOW DATABASES")
        .await?
        .iter()
        .filter_map(|r| cell_str(r, 0))
        .collect();
    Ok(schemas.intersection(&present).cloned().collect())
}

/// `(kind, schema.name)` of `SHOW FULL TABLES FROM schema WHERE Table_type <types>`, kinds
/// lowercase.
async fn show_full_tables(
    conn: &mut Conn,
    schema: &str,
    types: &str,
) -> Result<Vec<(String, TableRef)>> {
    let sql = format!(
        "SHOW FULL TABLES FROM {} WHERE Table_type {types}",
        quote_ident(schema)
    );
    Ok(conn
        .rows(&sql)
        .await?
        .iter()
        .filter_map(|r| {
            let (name, kind) = (cell_str(r, 0)?, cell_str(r, 1)?);
            Some((kind.to_ascii_lowercase(), TableRef::new(schema, name)))
        })
        .collect())
}
