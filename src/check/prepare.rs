//! Choosing what to compare: the table pairs (routes, filters, missing tables), their
//! structures discovered and compared, and a [`TablePlan`] for each pair whose data can be
//! compared.

use super::plan::{Counter, Side, TablePlan};
use super::state::empty_report;
use super::{CheckJob, DEFAULT_CHUNK_SIZE};
use crate::db::{Conn, Source};
use crate::error::{Error, Result};
use crate::report::{TableReport, TableResult};
use crate::schema::{
    compare_structure, discover_tables, list_tables, Discovered, TableRef, TableSchema,
};
use std::collections::{BTreeMap, BTreeSet};

/// A table ready for the data phase (or already decided).
pub(super) struct Prepared {
    pub report: TableReport,
    pub plan: Option<TablePlan>,
}

/// The selected tables: downstream targets, and upstream tables by their target name.
struct Selection {
    down: BTreeSet<TableRef>,
    /// target name -> upstream name
    up: BTreeMap<TableRef, TableRef>,
}

/// Select the table pairs, discover and compare their structures, and build plans.
pub(super) async fn prepare_tables(
    job: &CheckJob,
    up: &Source,
    down: &Source,
) -> Result<Vec<Prepared>> {
    let mut up_conn = up.connect().await?;
    let mut down_conn = down.connect().await?;
    let sel = select_tables(job, &mut up_conn, &mut down_conn).await?;
    let targets: BTreeSet<TableRef> = sel
        .down
        .iter()
        .cloned()
        .chain(sel.up.keys().cloned())
        .collect();
    if targets.is_empty() {
        return Err(Error::Config(
            "no table matches task.target-check-tables on either side".into(),
        ));
    }
    // A shard's part may be empty: its report is then empty and equal.
    let targets = targets
        .into_iter()
        .filter(|t| job.shard.is_none_or(|s| s.owns(t)));
    let mut out = Vec::new();
    // Pairs present on both sides, discovered together after the loop.
    let mut pairs = Vec::new();
    for target in targets {
        let upstream = sel.up.get(&target).cloned();
        let in_down = sel.down.contains(&target);
        let mut report = empty_report(&target, upstream.as_ref().unwrap_or(&target));
        let upstream = match (upstream, in_down) {
            (Some(upstream), true) => upstream,
            (upstream, _) => {
                let side = if upstream.is_none() {
                    "upstream"
                } else {
                    "downstream"
                };
                if !job.skip_missing {
                    return Err(Error::MissingTable {
                        table: target.to_string(),
                        side: side.into(),
                    });
                }
                report.result = TableResult::Skipped;
                report.structure_equal = false;
                report.skip_reason = Some(format!("table does not exist in {side}"));
                // As sync-diff-inspector's summary: the existing side's rows are all
                // missing (upstream only) or extra (downstream only). Counted live.
                match &upstream {
                    Some(up_table) => {
                        let n = count_rows(&mut up_conn, up_table).await?;
                        (report.rows_upstream, report.rows_missing) = (n, n);
                    }
                    None => {
                        let n = count_rows(&mut down_conn, &target).await?;
                        (report.rows_downstream, report.rows_extra) = (n, n);
                    }
                }
                out.push(Prepared { report, plan: None });
                continue;
            }
        };
        pairs.push((out.len(), upstream, target, report));
        // A placeholder, replaced below (keeps the tables in target order).
        out.push(Prepared {
            report: empty_report(&TableRef::new("", ""), &TableRef::new("", "")),
            plan: None,
        });
    }
    let up_names: Vec<TableRef> = pairs.iter().map(|p| p.1.clone()).collect();
    let down_names: Vec<TableRef> = pairs.iter().map(|p| p.2.clone()).collect();
    let (mut up_found, mut down_found) = tokio::try_join!(
        discover_tables(&mut up_conn, &up_names),
        discover_tables(&mut down_conn, &down_names)
    )?;
    up_conn.close().await;
    down_conn.close().await;
    for (i, upstream, target, report) in pairs {
        let found = (up_found.remove(&upstream), down_found.remove(&target));
        let (Some(up_schema), Some(down_schema)) = found else {
            return Err(Error::MissingTable {
                table: target.to_string(),
                side: "upstream or downstream (dropped during the check)".into(),
            });
        };
        out[i] = prepare_pair((job, up, down), [up_schema, down_schema], &target, report)?;
    }
    Ok(out)
}

/// `COUNT(*)` of `table`.
async fn count_rows(conn: &mut Conn, table: &TableRef) -> Result<u64> {
    let row = conn
        .first(&format!("SELECT COUNT(*) FROM {}", table.quoted()))
        .await?;
    Ok(row
        .and_then(|r| r.into_iter().next().flatten())
        .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
        .unwrap_or(0))
}

/// List both sides' tables and keep the selected ones; tables named without wildcards must
/// exist on at least one side.
async fn select_tables(job: &CheckJob, up: &mut Conn, down: &mut Conn) -> Result<Selection> {
    let is_system = |t: &TableRef| crate::config::is_system_schema(&t.schema);
    let down_tables: BTreeSet<TableRef> = list_tables(down)
        .await?
        .into_iter()
        .filter(|t| !is_system(t) && job.selector.wants(t))
        .collect();
    let mut up_tables: BTreeMap<TableRef, TableRef> = BTreeMap::new();
    for t in list_tables(up).await? {
        if is_system(&t) {
            continue;
        }
        let Some(target) = job.selector.route(&t) else {
            continue;
        };
        if job.selector.wants(&target) {
            if let Some(prev) = up_tables.insert(target.clone(), t.clone()) {
                return Err(Error::Table {
                    table: target.to_string(),
                    message: format!(
                        "both {prev} and {t} upstream map to it; merging shards is not supported"
                    ),
                });
            }
        }
    }
    for name in job.selector.exact_names() {
        let lower = |t: &TableRef| (t.schema.to_lowercase(), t.table.to_lowercase());
        let key = lower(&name);
        let found = down_tables.iter().any(|t| lower(t) == key)
            || up_tables.keys().any(|t| lower(t) == key);
        if !found {
            return Err(Error::MissingTable {
                table: name.to_string(),
                side: "upstream or downstream".into(),
            });
        }
    }
    Ok(Selection {
        down: down_tables,
        up: up_tables,
    })
}

/// Compare one pair's discovered structures and plan its data comparison.
fn prepare_pair(
    (job, up, down): (&CheckJob, &Source, &Source),
    [up_found, down_found]: [Discovered; 2],
    target: &TableRef,
    mut report: TableReport,
) -> Result<Prepared> {
    let counter = counter(&up_found, &down_found);
    let (up_schema, down_schema) = (up_found.schema, down_found.schema);
    if !job.data_only {
        let diffs = compare_structure(&up_schema, &down_schema);
        report.structure_equal = diffs.is_empty();
        report.structure_diffs = diffs.into_iter().map(|d| d.0).collect();
        if !report.structure_equal {
            report.result = TableResult::Different;
        }
    }
    let settings = job.selector.settings(target)?;
    let chunk_size = if settings.chunk_size == 0 {
        DEFAULT_CHUNK_SIZE
    } else {
        settings.chunk_size
    };
    let history = settings.history && up_schema.system_versioned && down_schema.system_versioned;
    if settings.history && !history {
        tracing::warn!(
            "{target}: system-versioned-history is set but the table is not system-versioned \
             on both sides: its current rows are compared"
        );
    }
    let (up_plan_schema, down_plan_schema) = match history {
        true => (with_history(&up_schema), with_history(&down_schema)),
        false => (up_schema.clone(), down_schema.clone()),
    };
    let plan = TablePlan::new(
        target.clone(),
        &up_plan_schema,
        &down_plan_schema,
        &settings.ignore_columns,
        &settings.index_fields,
        settings.range.clone(),
        chunk_size,
    );
    Ok(match plan {
        Ok(mut plan) => {
            force_key_index(&mut plan, [up, down], [&up_schema, &down_schema]);
            plan.rows_estimate = up_found.rows_estimate;
            plan.counter = counter;
            plan.history = history;
            report.history = history;
            Prepared {
                report,
                plan: Some(plan),
            }
        }
        Err(message) => {
            report.result = TableResult::Error;
            report.error = Some(format!("data not compared: {message}"));
            Prepared { report, plan: None }
        }
    })
}

/// A system-versioned table as its history is compared: the period columns are compared like
/// the others, and no key is used (the versions of one row share its key), so the row
/// versions are compared as a multiset.
fn with_history(schema: &TableSchema) -> TableSchema {
    let mut s = schema.clone();
    s.columns.extend(s.period.iter().cloned().map(|mut c| {
        c.generated = None;
        c
    }));
    s.indexes.clear();
    s
}

/// The pair's AUTO_INCREMENT counters, when the downstream table has one and the upstream
/// the same column (whether or not it has the attribute there: a merged target's counter
/// must still pass every upstream key).
fn counter(up: &Discovered, down: &Discovered) -> Option<Counter> {
    let down_column = down.schema.auto_increment.as_deref()?;
    let column = up.schema.column(down_column)?.name.clone();
    let up_counter = up.counter.filter(|_| up.schema.auto_increment.is_some());
    Some(Counter {
        column,
        up: up_counter,
        down: down.counter?,
    })
}

/// `sql-hint-use-index = "auto"`: name the chunk key's index with `FORCE INDEX` on each side
/// that asks for it (the index may have another name downstream).
fn force_key_index(plan: &mut TablePlan, sources: [&Source; 2], schemas: [&TableSchema; 2]) {
    for ((side, s), schema) in [Side::Up, Side::Down].into_iter().zip(sources).zip(schemas) {
        if s.spec().force_index
            && plan.key.is_some()
            && !plan.unsplit
            && !plan.force_key_index(side, schema)
        {
            tracing::warn!(
                "{}: sql-hint-use-index: {} has no index on exactly the chunk key columns to \
                 force; its queries carry no hint",
                plan.target,
                s.name()
            );
        }
    }
}
