//! Data: both servers seeded with the same deterministic sysbench rows, then the downstream
//! drifted with plain SQL.

use crate::scenario::{DataSpec, Expected};
use crate::{Res, DATABASE};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use mysql_async::prelude::Queryable;
use std::collections::HashSet;
use syncgate::local::LocalServer;
use syncgate::testdata::SplitMix64;

/// Connection options with `sbtest` as the default database (the sequence tables need one).
fn in_database(opts: mysql_async::Opts) -> mysql_async::Opts {
    mysql_async::OptsBuilder::from_opts(opts)
        .db_name(Some(DATABASE))
        .into()
}

/// Create and fill `sbtest<table>` on one server.
async fn seed_table(opts: mysql_async::Opts, table: u32, rows: u64) -> Res<()> {
    syncgate::testdata::seq::seed_table(in_database(opts), table, rows).await?;
    Ok(())
}

async fn seed(servers: &[&LocalServer; 2], spec: &DataSpec) -> Res<()> {
    for s in servers {
        let mut conn = s.conn().await?;
        conn.query_drop(format!(
            // The server's default charset (`--charset`; utf8mb4 otherwise).
            "DROP DATABASE IF EXISTS `{DATABASE}`; CREATE DATABASE `{DATABASE}`"
        ))
        .await?;
        conn.disconnect().await?;
    }
    let mut loads = Vec::new();
    for s in servers {
        for t in 1..=spec.tables {
            loads.push(seed_table(s.opts(), t, spec.rows));
        }
    }
    run_bounded(loads).await
}

/// `want` distinct ids of `1..=rows` for the deleted and changed rows, chosen uniformly by a
/// PRNG seeded per table.
fn pick_ids(table: u32, rows: u64, want: usize) -> Res<Vec<u64>> {
    if want as u64 > rows {
        return Err(format!("cannot drift {want} of {rows} rows").into());
    }
    let mut rng = SplitMix64::new(0x5EED_0000 + u64::from(table));
    let mut seen = HashSet::new();
    let mut picked = Vec::with_capacity(want);
    while picked.len() < want {
        let id = 1 + rng.below(rows);
        if seen.insert(id) {
            picked.push(id);
        }
    }
    Ok(picked)
}

/// Apply `e` to `sbtest<table>` on the downstream; plain SQL, deterministic.
async fn drift_table(opts: mysql_async::Opts, table: u32, rows: u64, e: Expected) -> Res<()> {
    if e.total() == 0 {
        return Ok(());
    }
    let mut conn = mysql_async::Conn::new(in_database(opts)).await?;
    let name = format!("`{DATABASE}`.sbtest{table}");
    conn.query_drop(format!("SET @sg_t = {}", u64::from(table) * 7919))
        .await?;
    let picked = pick_ids(table, rows, (e.missing + e.changed) as usize)?;
    let (missing, changed) = picked.split_at(e.missing as usize);
    let ids = |chunk: &[u64]| {
        chunk
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    conn.query_drop("START TRANSACTION").await?;
    for chunk in missing.chunks(1000) {
        conn.query_drop(format!("DELETE FROM {name} WHERE id IN ({})", ids(chunk)))
            .await?;
    }
    // `c` starts with a digit, so an 'x' in front always changes it.
    for chunk in changed.chunks(1000) {
        conn.query_drop(format!(
            "UPDATE {name} SET c = CONCAT('x', SUBSTRING(c, 2)) WHERE id IN ({})",
            ids(chunk)
        ))
        .await?;
    }
    if e.extra > 0 {
        conn.query_drop(format!(
            "INSERT INTO {name} (id, k, c, pad) {}",
            syncgate::testdata::seq::generator_select(rows + 1, rows + e.extra, rows)
        ))
        .await?;
    }
    conn.query_drop("COMMIT").await?;
    let count: u64 = conn
        .query_first(format!("SELECT COUNT(*) FROM {name}"))
        .await?
        .unwrap_or(0);
    let want_count = rows - e.missing + e.extra;
    if count != want_count {
        return Err(format!("{name}: {count} rows after drift, expected {want_count}").into());
    }
    conn.disconnect().await?;
    Ok(())
}

/// Seed both servers, then drift the downstream (`servers[1]`) by `plan`, all tables at once.
pub(crate) async fn seed_and_drift(
    servers: &[&LocalServer; 2],
    spec: &DataSpec,
    plan: &[Expected],
) -> Res<()> {
    seed(servers, spec).await?;
    run_bounded(
        plan.iter()
            .enumerate()
            .map(|(i, e)| drift_table(servers[1].opts(), i as u32 + 1, spec.rows, *e)),
    )
    .await
}

/// The chunk key's shape (`--key`): sysbench's `id INT` as seeded, or the same rows keyed by
/// text (the integer written as a string, so the drift stays what was planned) or by a
/// composite `(grp VARCHAR, id INT)` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyShape {
    Int,
    Char,
    Varchar,
    Composite,
}

impl KeyShape {
    pub(crate) fn parse(s: &str) -> Option<KeyShape> {
        Some(match s.to_ascii_lowercase().as_str() {
            "int" => KeyShape::Int,
            "char" => KeyShape::Char,
            "varchar" => KeyShape::Varchar,
            "composite" => KeyShape::Composite,
            _ => return None,
        })
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            KeyShape::Int => "int",
            KeyShape::Char => "char",
            KeyShape::Varchar => "varchar",
            KeyShape::Composite => "composite",
        }
    }

    /// The statements that turn a seeded and drifted `sbtest<n>` into this shape.
    fn statements(self, table: u32) -> Vec<String> {
        let t = format!("sbtest.sbtest{table}");
        match self {
            KeyShape::Int => vec![],
            KeyShape::Char => vec![format!("ALTER TABLE {t} MODIFY id CHAR(32) NOT NULL")],
            KeyShape::Varchar => vec![format!("ALTER TABLE {t} MODIFY id VARCHAR(64) NOT NULL")],
            KeyShape::Composite => vec![
                format!(
                    "ALTER TABLE {t} MODIFY id INT NOT NULL, \
                     ADD COLUMN grp VARCHAR(16) NOT NULL DEFAULT '' FIRST"
                ),
                format!("UPDATE {t} SET grp = CONCAT('g', id % 97)"),
                format!("ALTER TABLE {t} DROP PRIMARY KEY, ADD PRIMARY KEY (grp, id)"),
            ],
        }
    }
}

/// Reshape every table's key on both servers (after seeding and drift).
pub(crate) async fn reshape_keys(
    servers: &[&LocalServer; 2],
    spec: &DataSpec,
    shape: KeyShape,
) -> Res<()> {
    let jobs = servers.iter().flat_map(|s| {
        (1..=spec.tables).map(move |table| {
            let opts = s.opts();
            async move {
                let mut conn = mysql_async::Conn::new(opts).await?;
                conn.query_drop("SET SESSION sql_log_bin = 0").await?;
                for sql in shape.statements(table) {
                    conn.query_drop(sql).await?;
                }
                conn.disconnect().await?;
                Ok(())
            }
        })
    });
    run_bounded(jobs).await
}

/// Runs `jobs` at most [`SEED_CONNECTIONS`] at a time (each holds a connection: a thousand
/// tables must not open a thousand connections per server).
async fn run_bounded<F>(jobs: impl IntoIterator<Item = F>) -> Res<()>
where
    F: std::future::Future<Output = Res<()>>,
{
    stream::iter(jobs)
        .buffer_unordered(SEED_CONNECTIONS)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Seeding and drifting connections in flight (both servers together).
const SEED_CONNECTIONS: usize = 16;
