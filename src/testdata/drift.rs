//! Known drift between two copies of the `sbtest` tables: [`inject_drift`] makes the
//! downstream differ from the upstream and returns the exact ground truth ([`DriftReport`]).

use std::fmt;

use mysql_async::prelude::{FromValue, Queryable};
use mysql_async::{Conn, Opts};
use serde::{Deserialize, Serialize};

use super::sbtest::{
    digit_groups, next_row, push_values, sbtest_tables, table_seed, SplitMix64, DATABASE,
};
use crate::local::{self, LocalError, Result};

/// How much drift [`inject_drift`] applies to *each* table of the downstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftSpec {
    /// Rows deleted from the downstream (missing there).
    pub missing: u64,
    /// Rows inserted into the downstream only, with ids beyond both sides' maximum.
    pub extra: u64,
    /// Rows whose `c` is changed on the downstream.
    pub changed: u64,
    /// Seed choosing the rows and the new values.
    pub seed: u64,
}

impl Default for DriftSpec {
    fn default() -> Self {
        DriftSpec {
            missing: 5,
            extra: 5,
            changed: 5,
            seed: 1,
        }
    }
}

/// Ground truth for one table: the primary keys that now differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDrift {
    /// `sbtest.sbtestN`.
    pub table: String,
    /// Ids deleted from the downstream, ascending.
    pub missing: Vec<i64>,
    /// Ids inserted into the downstream only, ascending.
    pub extra: Vec<i64>,
    /// Ids whose `c` differs, ascending.
    pub changed: Vec<i64>,
}

impl TableDrift {
    /// Total differing rows.
    pub fn total(&self) -> usize {
        self.missing.len() + self.extra.len() + self.changed.len()
    }
}

/// What [`inject_drift`] changed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DriftReport {
    pub tables: Vec<TableDrift>,
}

impl DriftReport {
    pub fn missing(&self) -> usize {
        self.tables.iter().map(|t| t.missing.len()).sum()
    }
    pub fn extra(&self) -> usize {
        self.tables.iter().map(|t| t.extra.len()).sum()
    }
    pub fn changed(&self) -> usize {
        self.tables.iter().map(|t| t.changed.len()).sum()
    }
    pub fn table(&self, name: &str) -> Option<&TableDrift> {
        self.tables.iter().find(|t| t.table == name)
    }
}

impl fmt::Display for DriftReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<20} {:>8} {:>8} {:>8}",
            "table", "missing", "extra", "changed"
        )?;
        for t in &self.tables {
            writeln!(
                f,
                "{:<20} {:>8} {:>8} {:>8}",
                t.table,
                t.missing.len(),
                t.extra.len(),
                t.changed.len()
            )?;
        }
        write!(
            f,
            "{:<20} {:>8} {:>8} {:>8}",
            "total",
            self.missing(),
            self.extra(),
            self.changed()
        )
    }
}

/// Make `downstream` differ from `upstream`: in every `sbtest` table of the downstream,
/// delete `spec.missing` rows, insert `spec.extra` rows and change `c` in `spec.changed`
/// rows, with `sql_log_bin = 0` (nothing reaches the binlog). Deterministic for a given spec
/// and data. Deleted and changed rows are distinct and chosen among rows present on the
/// downstream with ids not above the upstream maximum, so the returned ground truth is exact
/// when the two sides were identical before the call.
pub async fn inject_drift(
    upstream: &Opts,
    downstream: &Opts,
    spec: &DriftSpec,
) -> Result<DriftReport> {
    let mut up = Side::open(upstream).await?;
    let mut down = Side::open(downstream).await?;
    down.run("SET SESSION sql_log_bin = 0").await?;
    let tables = sbtest_tables(&mut down.conn, &down.addr).await?;
    let mut report = DriftReport::default();
    for (ti, name) in tables.iter().enumerate() {
        let mut rng = SplitMix64::new(table_seed(spec.seed ^ 0xA5A5_5A5A_DEAD_BEEF, ti as u32 + 1));
        let drift = drift_table(&mut up, &mut down, name, &mut rng, spec).await?;
        report.tables.push(drift);
    }
    let _ = up.conn.disconnect().await;
    let _ = down.conn.disconnect().await;
    Ok(report)
}

/// One side of the pair: a connection and its address for messages.
struct Side {
    conn: Conn,
    addr: String,
}

impl Side {
    async fn open(opts: &Opts) -> Result<Side> {
        Ok(Side {
            conn: local::connect_to(opts).await?,
            addr: local::addr(opts),
        })
    }

    async fn run(&mut self, sql: &str) -> Result<()> {
        self.conn
            .query_drop(sql)
            .await
            .map_err(LocalError::query(&self.addr, sql))
    }

    async fn first<T: FromValue + Send + 'static>(&mut self, sql: &str) -> Result<Option<T>> {
        self.conn
            .query_first(sql)
            .await
            .map_err(LocalError::query(&self.addr, sql))
    }

    async fn column<T: FromValue + Send + 'static>(&mut self, sql: &str) -> Result<Vec<T>> {
        self.conn
            .query(sql)
            .await
            .map_err(LocalError::query(&self.addr, sql))
    }
}

/// Drift one table `name` of the downstream (see [`inject_drift`]).
async fn drift_table(
    up: &mut Side,
    down: &mut Side,
    name: &str,
    rng: &mut SplitMix64,
    spec: &DriftSpec,
) -> Result<TableDrift> {
    let qualified = format!("`{DATABASE}`.`{name}`");
    let max_up: i64 = up
        .first(&format!("SELECT COALESCE(MAX(id), 0) FROM {qualified}"))
        .await?
        .unwrap_or(0);
    let ids_down: Vec<i64> = down
        .column(&format!("SELECT id FROM {qualified} ORDER BY id"))
        .await?;
    let drift = plan_drift(format!("{DATABASE}.{name}"), ids_down, max_up, rng, spec);
    for sql in drift_statements(&qualified, &drift, max_up, rng) {
        down.run(&sql).await?;
    }
    tracing::info!(
        "drift on {}: {} missing, {} extra, {} changed",
        drift.table,
        drift.missing.len(),
        drift.extra.len(),
        drift.changed.len()
    );
    Ok(drift)
}

/// Choose the rows to delete and change among `ids_down` (ascending ids of the downstream,
/// only those up to `max_up` qualify) and the ids to insert (beyond both maxima).
fn plan_drift(
    table: String,
    ids_down: Vec<i64>,
    max_up: i64,
    rng: &mut SplitMix64,
    spec: &DriftSpec,
) -> TableDrift {
    let max_down = ids_down.last().copied().unwrap_or(0);
    let mut candidates: Vec<i64> = ids_down.into_iter().filter(|id| *id <= max_up).collect();
    let want = (spec.missing + spec.changed).min(candidates.len() as u64) as usize;
    // Partial Fisher-Yates: the first `want` candidates become a uniform sample.
    for i in 0..want {
        let j = i + rng.below((candidates.len() - i) as u64) as usize;
        candidates.swap(i, j);
    }
    let n_missing = (spec.missing as usize).min(want);
    let mut missing = candidates[..n_missing].to_vec();
    let mut changed = candidates[n_missing..want].to_vec();
    missing.sort_unstable();
    changed.sort_unstable();
    let first_extra = max_up.max(max_down) + 1;
    let extra: Vec<i64> = (0..spec.extra as i64).map(|i| first_extra + i).collect();
    TableDrift {
        table,
        missing,
        extra,
        changed,
    }
}

/// The statements applying `drift` to table `qualified`, in one transaction (new `c` values
/// and extra rows drawn from `rng`).
fn drift_statements(
    qualified: &str,
    drift: &TableDrift,
    max_up: i64,
    rng: &mut SplitMix64,
) -> Vec<String> {
    let mut stmts = vec!["START TRANSACTION".to_string()];
    if !drift.missing.is_empty() {
        stmts.push(format!(
            "DELETE FROM {qualified} WHERE id IN ({})",
            join_ids(&drift.missing)
        ));
    }
    for id in &drift.changed {
        let mut c = String::with_capacity(119);
        digit_groups(rng, 10, &mut c);
        stmts.push(format!("UPDATE {qualified} SET c = '{c}' WHERE id = {id}"));
    }
    if !drift.extra.is_empty() {
        let mut sql = format!("INSERT INTO {qualified} (id, k, c, pad) VALUES ");
        for (i, id) in drift.extra.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            let row = next_row(rng, *id, max_up.max(1) as u64);
            push_values(&mut sql, &row);
        }
        stmts.push(sql);
    }
    stmts.push("COMMIT".into());
    stmts
}

fn join_ids(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_report_totals() {
        let r = DriftReport {
            tables: vec![
                TableDrift {
                    table: "sbtest.sbtest1".into(),
                    missing: vec![1, 2],
                    extra: vec![100],
                    changed: vec![],
                },
                TableDrift {
                    table: "sbtest.sbtest2".into(),
                    missing: vec![],
                    extra: vec![],
                    changed: vec![5],
                },
            ],
        };
        assert_eq!((r.missing(), r.extra(), r.changed()), (2, 1, 1));
        assert_eq!(r.table("sbtest.sbtest1").unwrap().total(), 3);
        assert!(r.to_string().contains("total"));
    }

    #[test]
    fn plan_picks_distinct_rows_and_new_ids() {
        let spec = DriftSpec {
            missing: 3,
            extra: 2,
            changed: 4,
            seed: 9,
        };
        // Downstream ids 1..=20 and 30; the upstream stops at 20.
        let ids: Vec<i64> = (1..=20).chain([30]).collect();
        let plan = |seed| {
            let mut rng = SplitMix64::new(seed);
            plan_drift("t".into(), ids.clone(), 20, &mut rng, &spec)
        };
        let d = plan(1);
        assert_eq!(d, plan(1), "deterministic");
        assert_eq!((d.missing.len(), d.changed.len()), (3, 4));
        assert!(d.missing.is_sorted() && d.changed.is_sorted());
        assert!(d
            .missing
            .iter()
            .chain(&d.changed)
            .all(|id| (1..=20).contains(id)));
        assert!(d.missing.iter().all(|id| !d.changed.contains(id)));
        assert_eq!(d.extra, vec![31, 32]);

        let mut rng = SplitMix64::new(1);
        let sql = drift_statements("`sbtest`.`t`", &d, 20, &mut rng);
        assert_eq!(sql.len(), 1 + 1 + 4 + 1 + 1);
        assert_eq!(
            (sql[0].as_str(), sql[7].as_str()),
            ("START TRANSACTION", "COMMIT")
        );
        assert!(sql[6].starts_with("INSERT INTO `sbtest`.`t` (id, k, c, pad) VALUES (31,"));
    }
}
