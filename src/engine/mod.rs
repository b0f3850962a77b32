//! Orchestration of a check: open both sides, pick the tables, compare structures, then run
//! the chunk pipeline (index walk → checksums on both sides at once → bisection of differing
//! chunks → streamed row merge → fix SQL), and assemble the report.
//!
//! Concurrency: one producer task walks the chunk key on the upstream and feeds a bounded
//! queue (so a huge table is never split up front); `threads` workers each own one
//! connection per side and take chunks from the queue; the calling task aggregates results,
//! writes fix SQL and drives progress. Pure work (hashing, merging, SQL rendering) happens
//! inline in small pieces and never blocks a worker for long.

mod plan;
mod worker;

pub use plan::{Side, TablePlan};

use crate::chunk::KeyRange;
use crate::diff::RowChange;
use crate::error::{Error, Result};
use crate::fixsql::{FixHeader, FixSqlWriter, FixTable};
use crate::report::progress::{Progress, TableProgress};
use crate::report::{RunReport, RunResult, SourceReport, TableReport, TableResult};
use crate::schema::{compare_structure, discover_table, list_tables, TableRef};
use crate::source::{Conn, Flavour, Source, SourceSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, Mutex};
use worker::{ChunkJob, WorkerMsg};

/// Rows per chunk when the table config does not say.
pub const DEFAULT_CHUNK_SIZE: u64 = 50_000;

/// Per-table settings from the configuration.
#[derive(Debug, Clone, Default)]
pub struct TableSettings {
    pub ignore_columns: Vec<String>,
    pub index_fields: Vec<String>,
    pub range: Option<String>,
    /// 0 = automatic.
    pub chunk_size: u64,
}

/// Which tables to compare and how; implemented over the configuration.
pub trait TableSelector: Send + Sync {
    /// Whether the target (downstream) table is selected.
    fn wants(&self, target: &TableRef) -> bool;
    /// The target name of an upstream table (routes); `None` when the table must be left
    /// out (it has the name of a route's target but matches no rule).
    fn route(&self, upstream: &TableRef) -> Option<TableRef>;
    /// Settings for a target table.
    fn settings(&self, target: &TableRef) -> Result<TableSettings>;
    /// Tables named without wildcards: they must exist on at least one side.
    fn exact_names(&self) -> Vec<TableRef>;
}

/// A fully resolved check.
pub struct CheckJob {
    pub upstream: SourceSpec,
    pub downstream: SourceSpec,
    pub threads: usize,
    pub export_fix_sql: bool,
    pub struct_only: bool,
    pub data_only: bool,
    pub skip_missing: bool,
    pub apply_fix: bool,
    /// `[task] syncpoint-changefeed`: which changefeed's syncpoints TiDB `auto` uses.
    pub syncpoint_changefeed: Option<String>,
    pub output_dir: PathBuf,
    pub selector: Box<dyn TableSelector>,
}

/// Live state of one table during the data phase.
struct TableState {
    report: TableReport,
    progress: Option<TableProgress>,
    started: Instant,
    chunks_total: Option<u64>,
    chunks_done: u64,
    fix: Option<FixSqlWriter>,
    /// Ranges with differences, re-checked after `--apply-fix`.
    dirty: Vec<KeyRange>,
    finished: bool,
}

/// Run a check to completion and return its report. Errors that stop the whole run (bad
/// connection, missing table) are returned as `Err`; errors confined to a table are recorded
/// in its report and the run goes on.
pub async fn run_check(job: CheckJob, progress: Progress) -> Result<RunReport> {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let up = Source::open(job.upstream.clone()).await?;
    let down = Source::open(job.downstream.clone()).await?;
    let (up, down) = resolve_tidb_auto(up, down, job.syncpoint_changefeed.as_deref()).await?;
    let mut warnings = Vec::new();
    for s in [&up, &down] {
        let configured = s.spec().snapshot.trim();
        if !s.pins_tidb_snapshot() && !wants_consistent(s) && !wants_auto(s) {
            if !configured.is_empty() {
                warnings.push(format!(
                    "{}: snapshot '{configured}' is not applied to a {} server",
                    s.name(),
                    s.flavour()
                ));
            }
            warnings.push(format!(
                "{} is read live, not pinned: concurrent writes can show up as differences",
                s.name()
            ));
        }
    }
    let plans = prepare_tables(&job, &up, &down).await?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let fix_dir = job
        .output_dir
        .join(format!("fix-on-{}", job.downstream.name));
    if job.export_fix_sql {
        std::fs::create_dir_all(&fix_dir).map_err(|source| Error::Output {
            path: fix_dir.clone(),
            source,
        })?;
    }

    let mut states: Vec<TableState> = Vec::new();
    let mut data_plans: Vec<(usize, Arc<TablePlan>)> = Vec::new();
    progress.set_total(plans.len() as u64);
    for prepared in plans {
        let idx = states.len();
        let data = prepared.plan.is_some() && !job.struct_only;
        if let Some(plan) = prepared.plan.filter(|_| data) {
            data_plans.push((idx, Arc::new(plan)));
        }
        states.push(TableState {
            report: prepared.report,
            progress: None,
            started: Instant::now(),
            chunks_total: None,
            chunks_done: 0,
            fix: None,
            dirty: Vec::new(),
            finished: !data,
        });
    }
    for st in states.iter().filter(|s| s.finished) {
        progress
            .table_started(
                &format!("{}.{}", st.report.schema, st.report.table),
                Some(0),
            )
            .finish(st.report.result);
    }

    let mut points = (snapshot_point(&up), snapshot_point(&down));
    if !data_plans.is_empty() {
        let threads = job.threads.max(1);
        let (up_side, down_side) = open_sides(&up, &down, threads).await?;
        points = (up_side.point.clone(), down_side.point.clone());
        run_data_phase(
            &job,
            (&up, up_side),
            (&down, down_side),
            &data_plans,
            &mut states,
            &progress,
            &fix_dir,
        )
        .await?;
    }
    progress.finish();

    let mut tables: Vec<TableReport> = states.into_iter().map(|s| s.report).collect();
    for t in &mut tables {
        if let Some(p) = &t.fix_sql {
            t.fix_sql = Some(
                p.strip_prefix(&job.output_dir)
                    .map(|p| p.to_path_buf())
                    .unwrap_or_else(|_| p.clone()),
            );
        }
    }
    let source_report = |s: &Source, point: &str| SourceReport {
        name: s.name().to_string(),
        address: s.spec().address(),
        flavour: s.flavour().to_string(),
        version: s.version().to_string(),
        snapshot: point.to_string(),
    };
    let mut report = RunReport {
        result: RunResult::Equal,
        syncgate_version: env!("CARGO_PKG_VERSION").to_string(),
        checksum: crate::checksum::CHECKSUM_VERSION.to_string(),
        started_at,
        duration_ms: started.elapsed().as_millis() as u64,
        upstream: vec![source_report(&up, &points.0)],
        downstream: source_report(&down, &points.1),
        output_dir: job.output_dir.clone(),
        tables,
        error: None,
        warnings,
    };
    report.compute_result();
    Ok(report)
}

/// A table ready for the data phase (or already decided).
struct Prepared {
    report: TableReport,
    plan: Option<TablePlan>,
}

fn empty_report(target: &TableRef, upstream: &TableRef) -> TableReport {
    TableReport {
        schema: target.schema.clone(),
        table: target.table.clone(),
        upstream_table: upstream.to_string(),
        result: TableResult::Equal,
        structure_equal: true,
        structure_diffs: Vec::new(),
        data_checked: false,
        rows_missing: 0,
        rows_extra: 0,
        rows_changed: 0,
        rows_upstream: 0,
        rows_downstream: 0,
        chunks: 0,
        chunks_different: 0,
        fix_sql: None,
        fix_applied: false,
        recheck_equal: None,
        skip_reason: None,
        error: None,
        duration_ms: 0,
    }
}

/// Select the table pairs, discover and compare their structures, and build plans.
async fn prepare_tables(job: &CheckJob, up: &Source, down: &Source) -> Result<Vec<Prepared>> {
    let mut up_conn = up.connect().await?;
    let mut down_conn = down.connect().await?;
    let is_system = |t: &TableRef| crate::config::is_system_schema(&t.schema);

    let down_tables: BTreeSet<TableRef> = list_tables(&mut down_conn)
        .await?
        .into_iter()
        .filter(|t| !is_system(t) && job.selector.wants(t))
        .collect();
    // target name -> upstream name
    let mut up_tables: BTreeMap<TableRef, TableRef> = BTreeMap::new();
    for t in list_tables(&mut up_conn).await? {
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
    let targets: BTreeSet<TableRef> = down_tables
        .iter()
        .cloned()
        .chain(up_tables.keys().cloned())
        .collect();
    if targets.is_empty() {
        return Err(Error::Config(
            "no table matches task.target-check-tables on either side".into(),
        ));
    }

    let mut out = Vec::new();
    for target in targets {
        let upstream = up_tables.get(&target).cloned();
        let mut report = empty_report(&target, upstream.as_ref().unwrap_or(&target));
        let (upstream, in_down) = (upstream, down_tables.contains(&target));
        if upstream.is_none() || !in_down {
            let side = if upstream.is_none() {
                "upstream"
            } else {
                "downstream"
            };
            if job.skip_missing {
                report.result = TableResult::Skipped;
                report.structure_equal = false;
                report.skip_reason = Some(format!("table does not exist in {side}"));
                out.push(Prepared { report, plan: None });
                continue;
            }
            return Err(Error::MissingTable {
                table: target.to_string(),
                side: side.into(),
            });
        }
        let upstream = upstream.unwrap_or_else(|| target.clone());
        let up_schema = discover_table(&mut up_conn, &upstream).await?;
        let down_schema = discover_table(&mut down_conn, &target).await?;
        let (Some(up_schema), Some(down_schema)) = (up_schema, down_schema) else {
            return Err(Error::MissingTable {
                table: target.to_string(),
                side: "upstream or downstream (dropped during the check)".into(),
            });
        };
        if !job.data_only {
            let diffs = compare_structure(&up_schema, &down_schema);
            report.structure_equal = diffs.is_empty();
            report.structure_diffs = diffs.into_iter().map(|d| d.0).collect();
            if !report.structure_equal {
                report.result = TableResult::Different;
            }
        }
        let settings = match job.selector.settings(&target) {
            Ok(s) => s,
            Err(e) => return Err(e),
        };
        let chunk_size = if settings.chunk_size == 0 {
            DEFAULT_CHUNK_SIZE
        } else {
            settings.chunk_size
        };
        match TablePlan::new(
            target.clone(),
            &up_schema,
            &down_schema,
            &settings.ignore_columns,
            &settings.index_fields,
            settings.range.clone(),
            chunk_size,
        ) {
            Ok(plan) => out.push(Prepared {
                report,
                plan: Some(plan),
            }),
            Err(message) => {
                report.result = TableResult::Error;
                report.error = Some(format!("data not compared: {message}"));
                out.push(Prepared { report, plan: None });
            }
        }
    }
    up_conn.close().await;
    down_conn.close().await;
    Ok(out)
}

/// The worker connections of one side, and the point they read at.
struct SideConns {
    conns: Vec<Conn>,
    /// Whether the connections hold a snapshot that a new connection could not rejoin.
    pinned: bool,
    point: String,
}

fn wants_consistent(s: &Source) -> bool {
    s.spec().snapshot.trim().eq_ignore_ascii_case("consistent")
}

fn wants_auto(s: &Source) -> bool {
    s.spec().snapshot.trim().eq_ignore_ascii_case("auto")
}

/// TiDB `snapshot = "auto"`: read the newest TiCDC syncpoint on the downstream and pin the
/// upstream at its `primary_ts`, the downstream at its `secondary_ts`.
async fn resolve_tidb_auto(
    up: Source,
    down: Source,
    changefeed: Option<&str>,
) -> Result<(Source, Source)> {
    if !(wants_auto(&up) && wants_auto(&down) && down.flavour() == Flavour::TiDb) {
        return Ok((up, down));
    }
    let mut conn = down.connect().await?;
    let point = crate::snapshot::tidb::query_syncpoint(&mut conn, changefeed).await?;
    conn.close().await;
    tracing::info!(
        upstream = %point.upstream,
        downstream = %point.downstream,
        "snapshot auto: using the newest syncpoint"
    );
    Ok((
        up.with_snapshot(point.upstream.0.to_string()),
        down.with_snapshot(point.downstream.0.to_string()),
    ))
}

/// Worker connections for both sides. `auto` on two MySQL/MariaDB sources fences the
/// primary/replica pair at one GTID; otherwise each side is opened on its own.
async fn open_sides(up: &Source, down: &Source, n: usize) -> Result<(SideConns, SideConns)> {
    if wants_auto(up) && wants_auto(down) && up.flavour() != Flavour::TiDb {
        let pair = crate::snapshot::mysql::pin_replica_pair(
            up,
            down,
            n,
            crate::snapshot::mysql::LOCK_WAIT_TIMEOUT_SECS,
            crate::snapshot::mysql::REPLICA_WAIT_SECS,
        )
        .await?;
        let side = |conns, point: &crate::snapshot::mysql::PinnedPoint, role: &str| SideConns {
            conns,
            pinned: true,
            point: format!(
                "{} (pair fenced at GTID {}, {role})",
                point.describe(),
                pair.gtid
            ),
        };
        return Ok((
            side(pair.primary, &pair.primary_point, "primary"),
            side(pair.replica, &pair.replica_point, "replica"),
        ));
    }
    tokio::try_join!(open_side(up, n), open_side(down, n))
}

/// Open `n` worker connections to a side: pinned to one consistent snapshot when the source
/// asks for it, else plain (TiDB snapshots are set per connection and survive reconnects).
async fn open_side(s: &Source, n: usize) -> Result<SideConns> {
    if wants_consistent(s) {
        let (conns, point) = crate::snapshot::mysql::pin_consistent(
            s,
            n,
            crate::snapshot::mysql::LOCK_WAIT_TIMEOUT_SECS,
        )
        .await?;
        return Ok(SideConns {
            conns,
            pinned: true,
            point: point.describe(),
        });
    }
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(s.connect().await?);
    }
    Ok(SideConns {
        conns,
        pinned: false,
        point: snapshot_point(s),
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_data_phase(
    job: &CheckJob,
    (up, up_side): (&Source, SideConns),
    (down, down_side): (&Source, SideConns),
    plans: &[(usize, Arc<TablePlan>)],
    states: &mut [TableState],
    progress: &Progress,
    fix_dir: &std::path::Path,
) -> Result<()> {
    let threads = job.threads.max(1);
    let (job_tx, job_rx) = mpsc::channel::<ChunkJob>(threads * 4);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (msg_tx, mut msg_rx) = mpsc::channel::<WorkerMsg>(threads * 8);

    // Producer: walks each keyed table's index on the upstream, lazily.
    let producer = {
        let up = up.clone();
        let plans = plans.to_vec();
        let msg_tx = msg_tx.clone();
        tokio::spawn(async move { worker::produce(up, plans, job_tx, msg_tx).await })
    };
    let pinned = (up_side.pinned, down_side.pinned);
    let header = FixHeader {
        upstream: format!("{} ({})", up.name(), up.spec().address()),
        downstream: format!("{} ({})", down.name(), down.spec().address()),
        upstream_point: up_side.point.clone(),
        downstream_point: down_side.point.clone(),
    };
    let mut workers = Vec::new();
    for pair in up_side.conns.into_iter().zip(down_side.conns).take(threads) {
        let (up, down) = (up.clone(), down.clone());
        let (job_rx, msg_tx) = (job_rx.clone(), msg_tx.clone());
        workers.push(tokio::spawn(async move {
            worker::work(up, down, pair, pinned, job_rx, msg_tx).await
        }));
    }
    drop(msg_tx);

    let plan_of: BTreeMap<usize, Arc<TablePlan>> = plans.iter().cloned().collect();
    let mut apply_conn = if job.apply_fix {
        let mut conn = down.connect().await?;
        for setting in crate::fixsql::APPLY_SESSION_SETTINGS {
            conn.exec(setting).await?;
        }
        Some(conn)
    } else {
        None
    };

    while let Some(msg) = msg_rx.recv().await {
        match msg {
            WorkerMsg::TableStarted { table } => {
                let st = &mut states[table];
                st.started = Instant::now();
                st.report.data_checked = true;
                st.progress = Some(
                    progress
                        .table_started(&format!("{}.{}", st.report.schema, st.report.table), None),
                );
            }
            WorkerMsg::TableChunks { table, chunks } => {
                states[table].chunks_total = Some(chunks);
            }
            WorkerMsg::Changes {
                table,
                range,
                changes,
            } => {
                let plan = &plan_of[&table];
                let st = &mut states[table];
                for c in &changes {
                    match c {
                        RowChange::Missing { .. } => st.report.rows_missing += 1,
                        RowChange::Extra { .. } => st.report.rows_extra += 1,
                        RowChange::Changed { .. } => st.report.rows_changed += 1,
                    }
                }
                if changes.is_empty() {
                    continue;
                }
                let fix_table = FixTable {
                    target: &plan.target,
                    columns: &plan.up_cols,
                    key: plan.key.clone(),
                };
                let desc = range.describe(&plan.key_cols());
                if job.export_fix_sql {
                    if st.fix.is_none() {
                        st.fix = Some(FixSqlWriter::create(fix_dir, &plan.target, &header)?);
                    }
                    if let Some(w) = st.fix.as_mut() {
                        w.append_chunk(
                            &desc,
                            &crate::fixsql::render_changes(&fix_table, &changes),
                        )?;
                    }
                }
                if let Some(conn) = apply_conn.as_mut() {
                    let stmts = crate::fixsql::statements_for_apply(&fix_table, &changes);
                    if let Err(e) = worker::apply(conn, &stmts).await {
                        st.report.error = Some(format!("applying fix SQL failed: {e}"));
                    }
                }
                st.dirty.push(range);
            }
            WorkerMsg::ChunkDone {
                table,
                up_count,
                down_count,
                different,
            } => {
                let st = &mut states[table];
                st.chunks_done += 1;
                st.report.chunks += 1;
                st.report.rows_upstream += up_count;
                st.report.rows_downstream += down_count;
                if different {
                    st.report.chunks_different += 1;
                }
                if let Some(p) = &st.progress {
                    p.chunk_done();
                }
            }
            WorkerMsg::TableError { table, message } => {
                let st = &mut states[table];
                if st.report.error.is_none() {
                    st.report.error = Some(message);
                }
            }
        }
        // Finish tables whose chunks are all done.
        for st in states.iter_mut() {
            if !st.finished && st.chunks_total.is_some_and(|t| t == st.chunks_done) {
                finish_table(st)?;
            }
        }
    }
    producer.await.map_err(join_error)?;
    for w in workers {
        w.await.map_err(join_error)?;
    }
    for st in states.iter_mut().filter(|s| !s.finished) {
        if st.report.error.is_none() {
            st.report.error = Some("data check did not complete".into());
        }
        finish_table(st)?;
    }

    if job.apply_fix {
        for (idx, plan) in plans {
            let st = &mut states[*idx];
            if st.dirty.is_empty() || st.report.error.is_some() {
                continue;
            }
            let equal = worker::recheck(up, down, plan, &st.dirty).await?;
            st.report.fix_applied = true;
            st.report.recheck_equal = Some(equal);
        }
    }
    Ok(())
}

fn finish_table(st: &mut TableState) -> Result<()> {
    st.finished = true;
    st.report.duration_ms = st.started.elapsed().as_millis() as u64;
    if let Some(w) = st.fix.take() {
        st.report.fix_sql = Some(w.finish()?);
    }
    let r = &mut st.report;
    r.result = if r.error.is_some() {
        TableResult::Error
    } else if r.rows_missing + r.rows_extra + r.rows_changed > 0
        || r.chunks_different > 0
        || !r.structure_equal
    {
        TableResult::Different
    } else {
        TableResult::Equal
    };
    if let Some(p) = st.progress.take() {
        p.finish(r.result);
    }
    Ok(())
}

/// The point a side is read at, as stated in reports.
fn snapshot_point(s: &Source) -> String {
    if s.pins_tidb_snapshot() {
        let value = s.spec().snapshot.trim();
        match value.parse::<crate::snapshot::tidb::Tso>() {
            Ok(tso) => format!("tidb_snapshot {tso}"),
            Err(_) => format!("tidb_snapshot '{value}'"),
        }
    } else {
        "live, not pinned".to_string()
    }
}

fn join_error(e: tokio::task::JoinError) -> Error {
    Error::Server(format!("internal task failed: {e}"))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
