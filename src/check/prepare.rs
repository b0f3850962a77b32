//! Choosing what to compare: the table pairs (routes, filters, missing tables), their
//! structures discovered and compared, and a [`TablePlan`] for each pair whose data can be
//! compared.

use super::plan::{Counter, Side, TablePlan, UpPart};
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
    /// target name -> its upstream tables, each with its source's index (several: a shard
    /// merge)
    up: BTreeMap<TableRef, Vec<(usize, TableRef)>>,
}

/// Select the table pairs, discover and compare their structures, and build plans. `ups`
/// are the upstream sources in `source-instances` order.
pub(super) async fn prepare_tables(
    job: &CheckJob,
    ups: &[Source],
    down: &Source,
) -> Result<Vec<Prepared>> {
    let mut up_conns = Vec::with_capacity(ups.len());
    for s in ups {
        up_conns.push(s.connect().await?);
    }
    let mut down_conn = down.connect().await?;
    let sel = select_tables(job, &mut up_conns, &mut down_conn).await?;
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
        let parts = sel.up.get(&target).cloned().unwrap_or_default();
        let in_down = sel.down.contains(&target);
        let mut report = empty_report(&target, parts.first().map_or(&target, |p| &p.1));
        report.upstream_table = upstream_names(&parts, ups).unwrap_or(report.upstream_table);
        if parts.is_empty() || !in_down {
            let side = if parts.is_empty() {
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
            // As sync-diff-inspector's summary: the existing side's rows are all missing
            // (upstream only) or extra (downstream only). Counted live.
            if parts.is_empty() {
                let n = count_rows(&mut down_conn, &target).await?;
                (report.rows_downstream, report.rows_extra) = (n, n);
            } else {
                for (source, table) in &parts {
                    let n = count_rows(&mut up_conns[*source], table).await?;
                    report.rows_upstream += n;
                    report.rows_missing += n;
                }
            }
            out.push(Prepared { report, plan: None });
            continue;
        }
        pairs.push((out.len(), parts, target, report));
        // A placeholder, replaced below (keeps the tables in target order).
        out.push(Prepared {
            report: empty_report(&TableRef::new("", ""), &TableRef::new("", "")),
            plan: None,
        });
    }
    let up_names: Vec<Vec<TableRef>> = (0..ups.len())
        .map(|source| {
            let parts = pairs.iter().flat_map(|p| p.1.iter());
            parts
                .filter(|(s, _)| *s == source)
                .map(|(_, t)| t.clone())
                .collect()
        })
        .collect();
    let down_names: Vec<TableRef> = pairs.iter().map(|p| p.2.clone()).collect();
    // Every side at once (each source's discovery is a few queries per schema).
    let up_side = async {
        let each = up_conns
            .iter_mut()
            .zip(&up_names)
            .map(|(conn, names)| discover_tables(conn, names));
        futures_util::future::try_join_all(each).await
    };
    let (mut up_found, mut down_found) =
        tokio::try_join!(up_side, discover_tables(&mut down_conn, &down_names))?;
    for c in up_conns {
        c.close().await;
    }
    down_conn.close().await;
    let dropped = |target: &TableRef| Error::MissingTable {
        table: target.to_string(),
        side: "upstream or downstream (dropped during the check)".into(),
    };
    for (i, parts, target, report) in pairs {
        let down_schema = down_found.remove(&target).ok_or_else(|| dropped(&target))?;
        let mut found = Vec::with_capacity(parts.len());
        for (source, table) in &parts {
            let f = up_found[*source]
                .remove(table)
                .ok_or_else(|| dropped(&target))?;
            found.push((*source, f));
        }
        out[i] = match found.len() {
            1 => {
                let (source, up_schema) = found.pop().expect("one part");
                let sources = (job, &ups[source], down);
                prepare_pair(sources, [up_schema, down_schema], &target, report)?
            }
            _ => prepare_merged((job, ups, down), found, down_schema, &target, report)?,
        };
    }
    Ok(out)
}

/// `schema.table` of each upstream table of a merged target, with its source's name when
/// there are several sources; `None` for one table (the report keeps its plain name).
fn upstream_names(parts: &[(usize, TableRef)], ups: &[Source]) -> Option<String> {
    if parts.len() < 2 {
        return None;
    }
    let names: Vec<String> = parts
        .iter()
        .map(|(s, t)| match ups.len() {
            1 => t.to_string(),
            _ => format!("{}:{t}", ups[*s].name()),
        })
        .collect();
    Some(names.join(", "))
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

/// List every side's tables and keep the selected ones; tables named without wildcards must
/// exist on at least one side.
///
/// Upstream tables are routed by their source's rules and grouped by target, as
/// sync-diff-inspector's table router does: patterns match case-insensitively, a rule's
/// target name is taken as written, and a table no rule matches goes to the downstream
/// table of its name — exactly, else case-insensitively when that finds one table (the
/// router's identity rule per target). So `Db.t`, `db.T` and `db.t` upstream can all be
/// parts of one target `db.t`.
async fn select_tables(job: &CheckJob, ups: &mut [Conn], down: &mut Conn) -> Result<Selection> {
    let is_system = |t: &TableRef| crate::config::is_system_schema(&t.schema);
    let down_tables: BTreeSet<TableRef> = list_tables(down)
        .await?
        .into_iter()
        .filter(|t| !is_system(t) && job.selector.wants(t))
        .collect();
    let lower = |t: &TableRef| (t.schema.to_lowercase(), t.table.to_lowercase());
    let mut down_by_lower: BTreeMap<(String, String), Vec<&TableRef>> = BTreeMap::new();
    for t in &down_tables {
        down_by_lower.entry(lower(t)).or_default().push(t);
    }
    let mut up_tables: BTreeMap<TableRef, Vec<(usize, TableRef)>> = BTreeMap::new();
    for (source, conn) in ups.iter_mut().enumerate() {
        for t in list_tables(conn).await? {
            if is_system(&t) {
                continue;
            }
            let Some(routed) = job.selector.route(source, &t) else {
                continue;
            };
            let target = match down_by_lower.get(&lower(&routed)) {
                _ if down_tables.contains(&routed) || job.selector.by_rule(source, &t) => routed,
                Some(found) if found.len() == 1 => found[0].clone(),
                _ => routed,
            };
            if job.selector.wants(&target) {
                up_tables.entry(target).or_default().push((source, t));
            }
        }
    }
    for name in job.selector.exact_names() {
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

/// A target merged from several upstream tables (shard merge): each part is compared with
/// the target's structure and planned on its own; the parts must read the target alike
/// (same compared columns, key and expressions), since one downstream read serves them all.
fn prepare_merged(
    (job, ups, down): (&CheckJob, &[Source], &Source),
    parts: Vec<(usize, Discovered)>,
    down_found: Discovered,
    target: &TableRef,
    mut report: TableReport,
) -> Result<Prepared> {
    let down_estimate = down_found.rows_estimate;
    let mut plans = Vec::with_capacity(parts.len());
    let mut slots: BTreeMap<usize, usize> = BTreeMap::new();
    let mut estimate = 0u64;
    for (source, up_found) in parts {
        let name = up_found.schema.table.clone();
        let part_report = empty_report(target, &name);
        let prepared = prepare_pair(
            (job, &ups[source], down),
            [up_found, down_found.clone()],
            target,
            part_report,
        )?;
        let p = prepared.report;
        let prefix = match ups.len() {
            1 => name.to_string(),
            _ => format!("{}:{name}", ups[source].name()),
        };
        report
            .structure_diffs
            .extend(p.structure_diffs.iter().map(|d| format!("{prefix}: {d}")));
        report.structure_equal &= p.structure_equal;
        report.history |= p.history;
        if let Some(e) = p.error {
            report.result = TableResult::Error;
            report.error = Some(format!("{prefix}: {e}"));
            return Ok(Prepared { report, plan: None });
        }
        let Some(mut plan) = prepared.plan else {
            continue;
        };
        estimate = estimate.saturating_add(plan.rows_estimate.unwrap_or(0));
        // A merged target's counter is not compared (docs: it must pass every part's keys).
        plan.counter = None;
        let slot = slots.entry(source).or_insert(0);
        plans.push(UpPart {
            source,
            slot: *slot,
            plan,
        });
        *slot += 1;
    }
    if !report.structure_equal {
        report.result = TableResult::Different;
    }
    let Some(first) = plans.first() else {
        return Ok(Prepared { report, plan: None });
    };
    if let Err(message) = parts_compatible(&plans) {
        report.result = TableResult::Error;
        report.error = Some(format!("data not compared: {message}"));
        return Ok(Prepared { report, plan: None });
    }
    let mut plan = first.plan.clone();
    plan.rows_estimate = Some(estimate.max(down_estimate.unwrap_or(0)));
    plan.parts = plans;
    Ok(Prepared {
        report,
        plan: Some(plan),
    })
}

/// Whether the parts of a merged target can share one read of the downstream and one row
/// order: a key, the same downstream statements, the same row layout.
fn parts_compatible(parts: &[UpPart]) -> std::result::Result<(), String> {
    let first = &parts[0].plan;
    if first.key.is_none() || first.history {
        return Err(
            "a target merged from several upstream tables needs a primary or unique key on              every part (rows are merged in key order)"
                .into(),
        );
    }
    let all = crate::chunk::KeyRange::default();
    for p in &parts[1..] {
        let same = p.plan.key == first.key
            && p.plan.unsplit == first.unsplit
            && p.plan.layout() == first.layout()
            && p.plan.checksum_sql(Side::Down, &all) == first.checksum_sql(Side::Down, &all)
            && p.plan.rows_sql(Side::Down, &all) == first.rows_sql(Side::Down, &all);
        if !same {
            return Err(format!(
                "the upstream tables {} and {} read the target differently (other compared \
                 columns, key, types or charsets): merge them after making their structures \
                 alike, or list them under separate targets",
                first.upstream, p.plan.upstream
            ));
        }
    }
    Ok(())
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
