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

use crate::checkpoint::{
    self, Checkpoint, ChunkTracker, EntryState, Fingerprint, Prefix, ReadAt, TableEntry,
};
use crate::chunk::KeyRange;
use crate::diff::RowChange;
use crate::error::{Error, Result};
use crate::fixsql::{FixHeader, FixSqlWriter, FixTable};
use crate::report::progress::{Progress, TableProgress};
use crate::report::{RunReport, RunResult, SourceReport, TableReport, TableResult};
use crate::schema::{compare_structure, discover_table, list_tables, TableRef};
use crate::source::{Conn, Flavour, Source, SourceSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};
use worker::{ChunkJob, ChunkStart, WorkerMsg};

/// Rows per chunk when the table config does not say. Smaller chunks cost a query round
/// trip each; larger ones make a differing chunk costlier to narrow down (4 × 1 M rows with
/// 15 differing rows: 20,000 measured best of 10k–50k, benches/README.md).
pub const DEFAULT_CHUNK_SIZE: u64 = 20_000;

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
    /// Continue from the checkpoint in `output_dir` (`--resume`).
    pub resume: bool,
    /// Identity of the configuration; a checkpoint is only resumed under the same one.
    pub fingerprint: Fingerprint,
    /// `[task] syncpoint-changefeed`: which changefeed's syncpoints TiDB `auto` uses.
    pub syncpoint_changefeed: Option<String>,
    pub output_dir: PathBuf,
    pub selector: Box<dyn TableSelector>,
}

/// Live state of one table during the data phase.
struct TableState {
    report: TableReport,
    /// The plan of a table in the data phase.
    plan: Option<Arc<TablePlan>>,
    progress: Option<TableProgress>,
    started: Instant,
    chunks_total: Option<u64>,
    chunks_done: u64,
    /// Ranges with differences, re-checked after `--apply-fix`.
    dirty: Vec<KeyRange>,
    finished: bool,
    /// Chunks in key order and their contiguous finished prefix (the checkpoint's unit).
    chunks: ChunkTracker,
    /// Directory of this table's fix SQL part files, when fix SQL is exported.
    parts: Option<PathBuf>,
    /// Chunks whose part file was written but not yet synced to disk.
    unsynced_parts: BTreeSet<u64>,
    /// The points earlier (interrupted) runs read this table's resumed part at.
    read_at: Vec<ReadAt>,
    /// The whole table was taken from the checkpoint, not checked in this run.
    resumed_whole: bool,
}

/// Run a check to completion and return its report. Errors that stop the whole run (bad
/// connection, missing table) are returned as `Err`; errors confined to a table are recorded
/// in its report and the run goes on.
///
/// Progress is checkpointed in `output_dir` as chunks finish; with `job.resume` the run
/// continues from that checkpoint. A run that completes removes it.
pub async fn run_check(job: CheckJob, progress: Progress) -> Result<RunReport> {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let saved = open_checkpoint(&job)?;
    let up = Source::open(job.upstream.clone()).await?;
    let down = Source::open(job.downstream.clone()).await?;
    let tidb_auto = wants_auto(&up) && wants_auto(&down) && down.flavour() == Flavour::TiDb;
    let (up, down) = match saved.as_ref().and_then(|c| c.tidb_auto.clone()) {
        // A resume reads at the TSOs the interrupted run used, not at a newer syncpoint.
        Some(at) if tidb_auto => {
            tracing::info!(
                upstream = %at.upstream,
                downstream = %at.downstream,
                "snapshot auto: resuming at the checkpoint's syncpoint"
            );
            (
                up.with_snapshot(at.upstream),
                down.with_snapshot(at.downstream),
            )
        }
        _ => resolve_tidb_auto(up, down, job.syncpoint_changefeed.as_deref()).await?,
    };
    let tidb_auto = tidb_auto.then(|| ReadAt {
        upstream: up.spec().snapshot.clone(),
        downstream: down.spec().snapshot.clone(),
    });
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
    // Hold GC behind the TiDB snapshots (PD service safepoints) until the last read.
    let mut gc = start_gc_keepers(&up, &down, &mut warnings).await?;
    let plans = gc.check(prepare_tables(&job, &up, &down).await).await?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let fix_dir = job
        .output_dir
        .join(format!("fix-on-{}", job.downstream.name));
    if job.export_fix_sql {
        let created = std::fs::create_dir_all(&fix_dir).map_err(|source| Error::Output {
            path: fix_dir.clone(),
            source,
        });
        gc.check(created).await?;
    }

    let mut states: Vec<TableState> = Vec::new();
    let mut data_plans: Vec<(usize, Arc<TablePlan>)> = Vec::new();
    progress.set_total(plans.len() as u64);
    for prepared in plans {
        let idx = states.len();
        let data = prepared.plan.is_some() && !job.struct_only;
        let plan = prepared.plan.filter(|_| data).map(Arc::new);
        let mut key = Vec::new();
        let mut parts = None;
        if let Some(plan) = &plan {
            data_plans.push((idx, plan.clone()));
            key = plan.key_cols().iter().map(|c| c.name.clone()).collect();
            if job.export_fix_sql {
                let name = crate::fixsql::file_name(&plan.target);
                parts = Some(checkpoint::parts_dir(&fix_dir, &name));
            }
        }
        states.push(TableState {
            report: prepared.report,
            plan,
            progress: None,
            started: Instant::now(),
            chunks_total: None,
            chunks_done: 0,
            dirty: Vec::new(),
            finished: !data,
            chunks: ChunkTracker::new(Prefix {
                key,
                ..Prefix::default()
            }),
            parts,
            unsynced_parts: BTreeSet::new(),
            read_at: Vec::new(),
            resumed_whole: false,
        });
    }
    let keep_parts = match &saved {
        Some(saved) => resume_states(&job, saved, &mut states),
        None => BTreeMap::new(),
    };
    // Parts after a saved prefix (or of any earlier run, when not resuming) are redone.
    gc.check(checkpoint::prune_parts(&fix_dir, &keep_parts))
        .await?;
    for st in states.iter().filter(|s| s.finished) {
        progress
            .table_started(
                &format!("{}.{}", st.report.schema, st.report.table),
                Some(0),
            )
            .finish(st.report.result);
    }

    let pending: Vec<(usize, Arc<TablePlan>, ChunkStart)> = data_plans
        .iter()
        .filter(|(idx, _)| !states[*idx].finished)
        .map(|(idx, plan)| {
            let p = states[*idx].chunks.prefix();
            let start = ChunkStart {
                seq: p.chunks,
                lower: p.upper.clone(),
                done: p.last,
            };
            (*idx, plan.clone(), start)
        })
        .collect();
    let mut points = (snapshot_point(&up), snapshot_point(&down));
    if let Some(at) = states.iter().find_map(|s| s.read_at.last()) {
        // Nothing is read in this run unless a table is left: report where it was read.
        points = (at.upstream.clone(), at.downstream.clone());
    }
    if !pending.is_empty() {
        let threads = job.threads.max(1);
        let (up_side, down_side) = gc.check(open_sides(&up, &down, threads).await).await?;
        points = (up_side.point.clone(), down_side.point.clone());
        let mut ck = Checkpointer {
            output_dir: job.output_dir.clone(),
            fingerprint: job.fingerprint.clone(),
            tidb_auto,
            current: ReadAt {
                upstream: points.0.clone(),
                downstream: points.1.clone(),
            },
            apply_fix: job.apply_fix,
            dirty: false,
            last_write: None,
            cleanup: Vec::new(),
            failed: false,
        };
        let done = run_data_phase(
            &job,
            (&up, up_side),
            (&down, down_side),
            &pending,
            &mut states,
            &progress,
            &fix_dir,
            &mut ck,
        )
        .await;
        gc.check(done).await?;
    }
    if job.apply_fix {
        let rechecked = recheck_fixed(&up, &down, &data_plans, &mut states).await;
        gc.check(rechecked).await?;
    }
    let gc_notes = gc.stop(&mut warnings).await;
    progress.finish();
    if saved.is_some() {
        warnings.extend(resume_warnings(
            &states,
            &ReadAt {
                upstream: points.0.clone(),
                downstream: points.1.clone(),
            },
            job.apply_fix,
        ));
    }

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
    let source_report = |s: &Source, point: &str, gc_note: &Option<String>| SourceReport {
        name: s.name().to_string(),
        address: s.spec().address(),
        flavour: s.flavour().to_string(),
        version: s.version().to_string(),
        snapshot: match gc_note {
            Some(note) => format!("{point}; {note}"),
            None => point.to_string(),
        },
    };
    let mut report = RunReport {
        result: RunResult::Equal,
        syncgate_version: env!("CARGO_PKG_VERSION").to_string(),
        checksum: crate::checksum::CHECKSUM_VERSION.to_string(),
        started_at,
        duration_ms: started.elapsed().as_millis() as u64,
        upstream: vec![source_report(&up, &points.0, &gc_notes[0])],
        downstream: source_report(&down, &points.1, &gc_notes[1]),
        output_dir: job.output_dir.clone(),
        tables,
        error: None,
        warnings,
    };
    report.compute_result();
    // A run that completes (whatever its result) leaves no checkpoint, as sync-diff-inspector.
    // The checkpoint goes first: parts without it are never read.
    if let Err(e) = checkpoint::remove(&job.output_dir)
        .and_then(|()| checkpoint::prune_parts(&fix_dir, &BTreeMap::new()))
    {
        tracing::warn!("cannot remove the checkpoint of the completed run: {e}");
    }
    Ok(report)
}

/// Without `--resume`, discard any checkpoint; with it, load the checkpoint and refuse one
/// written under another configuration.
fn open_checkpoint(job: &CheckJob) -> Result<Option<Checkpoint>> {
    let dir = checkpoint::checkpoint_dir(&job.output_dir);
    if !job.resume {
        if dir.join(checkpoint::CHECKPOINT_FILE).exists() {
            tracing::warn!(
                "discarding the checkpoint of an interrupted run in {} (pass --resume to \
                 continue it)",
                dir.display()
            );
        }
        checkpoint::remove(&job.output_dir)?;
        return Ok(None);
    }
    match checkpoint::load(&job.output_dir)? {
        None => {
            tracing::warn!(
                "--resume: no checkpoint in {}; checking from the beginning",
                dir.display()
            );
            Ok(None)
        }
        Some(ck) if ck.fingerprint != job.fingerprint.hash => Err(Error::Config(
            checkpoint::mismatch_message(&dir, &ck, &job.fingerprint),
        )),
        Some(ck) => Ok(Some(ck)),
    }
}

/// Apply a checkpoint to the data-phase tables: finished tables take their saved report
/// (with this run's structure comparison) and are not checked again; partly checked tables
/// start with their finished prefix. Returns, per part directory, how many chunks' parts to
/// keep.
fn resume_states(
    job: &CheckJob,
    saved: &Checkpoint,
    states: &mut [TableState],
) -> BTreeMap<String, u64> {
    let mut keep = BTreeMap::new();
    let (mut whole, mut partly) = (0, 0);
    for st in states.iter_mut().filter(|s| s.plan.is_some()) {
        let Some(entry) = saved.entry(&st.report.schema, &st.report.table) else {
            continue;
        };
        match &entry.state {
            EntryState::Finished { report, dirty } => {
                let mut r = (**report).clone();
                r.upstream_table = st.report.upstream_table.clone();
                r.structure_equal = st.report.structure_equal;
                r.structure_diffs = std::mem::take(&mut st.report.structure_diffs);
                r.fix_sql = r.fix_sql.map(|p| job.output_dir.join(p));
                r.resumed_chunks = r.chunks;
                r.result = table_result(&r);
                st.report = r;
                st.dirty = dirty.clone();
                st.finished = true;
                st.resumed_whole = true;
                whole += 1;
            }
            EntryState::InProgress { prefix } => {
                if prefix.key != st.chunks.prefix().key {
                    tracing::warn!(
                        "{}: the checkpoint split it on ({}), this run on ({}); checking it \
                         from the beginning",
                        st.report.name(),
                        prefix.key.join(", "),
                        st.chunks.prefix().key.join(", ")
                    );
                    continue;
                }
                let (r, c) = (&mut st.report, &prefix.counts);
                r.rows_missing = c.rows_missing;
                r.rows_extra = c.rows_extra;
                r.rows_changed = c.rows_changed;
                r.rows_upstream = c.rows_upstream;
                r.rows_downstream = c.rows_downstream;
                r.chunks_different = c.chunks_different;
                r.chunks = prefix.chunks;
                r.resumed_chunks = prefix.chunks;
                st.chunks_done = prefix.chunks;
                st.dirty = prefix.dirty.clone();
                st.chunks = ChunkTracker::new(prefix.clone());
                if let Some(name) = st.parts.as_ref().and_then(|p| p.file_name()) {
                    keep.insert(name.to_string_lossy().into_owned(), prefix.chunks);
                }
                partly += 1;
            }
        }
        st.read_at = entry.read_at.clone();
    }
    tracing::info!(
        "resuming from the checkpoint written at {}: {whole} tables finished, {partly} partly \
         checked",
        saved.written_at
    );
    keep
}

/// Warnings of a resumed run: the tables (or their first chunks) read at another point than
/// the rest (a MySQL/MariaDB consistent snapshot is pinned again on resume), and fixes applied
/// before the interruption.
fn resume_warnings(states: &[TableState], now: &ReadAt, apply_fix: bool) -> Vec<String> {
    let mut by_point: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for st in states {
        for at in st.read_at.iter().filter(|at| *at != now) {
            let name = if st.resumed_whole {
                st.report.name()
            } else {
                format!(
                    "{} (its first {} chunks)",
                    st.report.name(),
                    st.report.resumed_chunks
                )
            };
            by_point
                .entry((at.upstream.clone(), at.downstream.clone()))
                .or_default()
                .push(name);
        }
    }
    let mut out = Vec::new();
    for ((up, down), mut names) in by_point {
        let (mut then, mut rest) = (Vec::new(), Vec::new());
        if up != now.upstream {
            then.push(format!("upstream {up}"));
            rest.push(format!("upstream {}", now.upstream));
        }
        if down != now.downstream {
            then.push(format!("downstream {down}"));
            rest.push(format!("downstream {}", now.downstream));
        }
        let count = names.len();
        if count > 10 {
            names.truncate(10);
            names.push(format!("and {} more", count - 10));
        }
        out.push(format!(
            "resumed from a checkpoint: {} {} {} compared at {}; the rest at {}",
            if count == 1 { "table" } else { "tables" },
            names.join(", "),
            if count == 1 { "was" } else { "were" },
            then.join(" and "),
            rest.join(" and ")
        ));
    }
    if apply_fix && states.iter().any(|s| s.report.resumed_chunks > 0) {
        out.push(
            "resumed from a checkpoint with --apply-fix: rows fixed after the last checkpoint \
             and before the interruption were found equal this time and are not counted"
                .to_string(),
        );
    }
    out
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
        resumed_chunks: 0,
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

/// PD service GC safepoints held for the TiDB sides read at a snapshot (index 0 upstream,
/// 1 downstream), from before the first read at the snapshot to after the last.
#[derive(Default)]
struct GcGuards {
    keepers: [Option<crate::snapshot::tidb::GcKeeper>; 2],
}

impl GcGuards {
    /// Remove the service safepoints; returns, per side, the report's note on its GC
    /// protection. Problems during the run or at removal become report warnings.
    async fn stop(&mut self, warnings: &mut Vec<String>) -> [Option<String>; 2] {
        let mut notes = [None, None];
        for (slot, note) in self.keepers.iter_mut().zip(notes.iter_mut()) {
            let Some(keeper) = slot.take() else { continue };
            *note = Some(keeper.describe());
            warnings.extend(keeper.warnings());
            if let Err(e) = keeper.stop().await {
                tracing::warn!("{e}");
                warnings.push(e.to_string());
            }
        }
        notes
    }

    /// Pass `r` on; on an error the run ends, so remove the service safepoints first.
    async fn check<T>(&mut self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            self.stop(&mut Vec::new()).await;
        }
        r
    }
}

/// For each TiDB side read at a TSO or datetime, find PD through the side's
/// `information_schema.cluster_info` and hold a PD service GC safepoint at its TSO
/// (sync-diff-inspector.md §2.1 "GC keeper"). No PD found, or none reachable: a report
/// warning, the run goes on (it then relies on `tidb_gc_life_time`). A snapshot GC has
/// already passed ends the run with a clear error.
async fn start_gc_keepers(
    up: &Source,
    down: &Source,
    warnings: &mut Vec<String>,
) -> Result<GcGuards> {
    let mut guards = GcGuards::default();
    let base = crate::snapshot::tidb::default_service_id();
    for (i, (s, role)) in [(up, "upstream"), (down, "downstream")]
        .into_iter()
        .enumerate()
    {
        if !s.pins_tidb_snapshot() {
            continue;
        }
        let service_id = format!("{base}_{role}");
        match protect_snapshot(s, &service_id, warnings).await {
            Ok(keeper) => guards.keepers[i] = keeper,
            Err(e) => {
                guards.stop(&mut Vec::new()).await;
                return Err(e);
            }
        }
    }
    Ok(guards)
}

/// [`start_gc_keepers`] for one side.
async fn protect_snapshot(
    s: &Source,
    service_id: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<crate::snapshot::tidb::GcKeeper>> {
    use crate::snapshot::tidb::{self as tidb, SnapshotError, SnapshotSetting};
    let unprotected = |why: String| {
        format!(
            "{}: {why}: the snapshot is not protected from GC; make sure tidb_gc_life_time \
             covers the check",
            s.name()
        )
    };
    // Connecting sets tidb_snapshot: a snapshot below the GC safe point fails here with
    // TiDB's error 8055, explained (source.rs).
    let mut conn = s.connect().await?;
    conn.exec(tidb::clear_snapshot_sql()).await?;
    let tso = match tidb::parse_snapshot(&s.spec().snapshot)? {
        SnapshotSetting::Tso(t) => t,
        SnapshotSetting::Datetime(d) => tidb::resolve_datetime(&mut conn, &d).await?,
        SnapshotSetting::Live | SnapshotSetting::Auto => return Ok(None),
    };
    let found = tidb::discover_pd(&mut conn).await;
    conn.close().await;
    let addrs = match found {
        Ok(addrs) if addrs.is_empty() => {
            warnings.push(unprotected(format!(
                "no PD address found ({} returned none)",
                tidb::pd_discovery_sql()
            )));
            return Ok(None);
        }
        Ok(addrs) => addrs,
        Err(e) => {
            warnings.push(unprotected(format!("no PD address found ({e})")));
            return Ok(None);
        }
    };
    match tidb::GcKeeper::start(&addrs.join(","), service_id, tso, tidb::DEFAULT_GC_TTL_SECS).await
    {
        Ok(keeper) => Ok(Some(keeper)),
        Err(e @ SnapshotError::AlreadyCollected { .. }) => Err(e.into()),
        Err(e) => {
            warnings.push(unprotected(e.to_string()));
            Ok(None)
        }
    }
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

/// How often at most the checkpoint is written while chunks finish.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// Writes the checkpoint from the tables' state, at most every [`CHECKPOINT_INTERVAL`].
struct Checkpointer {
    output_dir: PathBuf,
    fingerprint: Fingerprint,
    tidb_auto: Option<ReadAt>,
    /// The points this run reads at.
    current: ReadAt,
    apply_fix: bool,
    /// Something changed since the last write.
    dirty: bool,
    last_write: Option<Instant>,
    /// Part directories of finished tables, removed once a written checkpoint records them
    /// finished (before that, a resume still needs them).
    cleanup: Vec<PathBuf>,
    /// A write failed (warned once).
    failed: bool,
}

impl Checkpointer {
    /// How long until a write is due; `None` when nothing changed.
    fn wait(&self) -> Option<Duration> {
        self.dirty.then(|| {
            self.last_write.map_or(Duration::ZERO, |t| {
                CHECKPOINT_INTERVAL.saturating_sub(t.elapsed())
            })
        })
    }

    fn write_if_due(&mut self, states: &[TableState]) {
        if self.wait() == Some(Duration::ZERO) {
            self.write(states);
        }
    }

    /// Write now. A failure is a warning: the previous checkpoint stays valid (older).
    fn write(&mut self, states: &[TableState]) {
        let ck = Checkpoint {
            version: checkpoint::FORMAT_VERSION,
            fingerprint: self.fingerprint.hash.clone(),
            config: self.fingerprint.config.clone(),
            written_at: now_rfc3339(),
            tidb_auto: self.tidb_auto.clone(),
            tables: states.iter().filter_map(|s| self.entry(s)).collect(),
        };
        self.last_write = Some(Instant::now());
        match checkpoint::save(&self.output_dir, &ck) {
            Ok(()) => {
                self.dirty = false;
                for dir in self.cleanup.drain(..) {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            Err(e) if !self.failed => {
                self.failed = true;
                tracing::warn!("{e}: the checkpoint is not updated; a resume repeats more work");
            }
            Err(_) => {}
        }
    }

    /// A table's entry: finished without an error, else its finished prefix (if any).
    fn entry(&self, st: &TableState) -> Option<TableEntry> {
        st.plan.as_ref()?;
        let state = if st.finished && st.report.error.is_none() {
            let mut report = st.report.clone();
            report.fix_sql = report.fix_sql.map(|p| {
                p.strip_prefix(&self.output_dir)
                    .map(Path::to_path_buf)
                    .unwrap_or(p)
            });
            EntryState::Finished {
                report: Box::new(report),
                dirty: if self.apply_fix {
                    st.dirty.clone()
                } else {
                    Vec::new()
                },
            }
        } else {
            let prefix = st.chunks.prefix();
            if prefix.chunks == 0 {
                return None;
            }
            EntryState::InProgress {
                prefix: prefix.clone(),
            }
        };
        let mut read_at = st.read_at.clone();
        let read_now = match &state {
            EntryState::Finished { .. } => !st.resumed_whole,
            EntryState::InProgress { prefix } => prefix.chunks > st.report.resumed_chunks,
        };
        if read_now && !read_at.contains(&self.current) {
            read_at.push(self.current.clone());
        }
        Some(TableEntry {
            schema: st.report.schema.clone(),
            table: st.report.table.clone(),
            state,
            read_at,
        })
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_data_phase(
    job: &CheckJob,
    (up, up_side): (&Source, SideConns),
    (down, down_side): (&Source, SideConns),
    plans: &[(usize, Arc<TablePlan>, ChunkStart)],
    states: &mut [TableState],
    progress: &Progress,
    fix_dir: &Path,
    ck: &mut Checkpointer,
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
    let hints = Arc::new(worker::DenseHints::new(states.len()));
    for pair in up_side.conns.into_iter().zip(down_side.conns).take(threads) {
        let (up, down) = (up.clone(), down.clone());
        let (job_rx, msg_tx, hints) = (job_rx.clone(), msg_tx.clone(), hints.clone());
        workers.push(tokio::spawn(async move {
            worker::work(up, down, pair, pinned, job_rx, hints, msg_tx).await
        }));
    }
    drop(msg_tx);

    let plan_of: BTreeMap<usize, Arc<TablePlan>> = plans
        .iter()
        .map(|(idx, plan, _)| (*idx, plan.clone()))
        .collect();
    let mut apply_conn = if job.apply_fix {
        let mut conn = down.connect().await?;
        for setting in crate::fixsql::APPLY_SESSION_SETTINGS {
            conn.exec(setting).await?;
        }
        Some(conn)
    } else {
        None
    };

    loop {
        // Wait for the next message, but not past the time a due checkpoint write is due.
        let msg = match ck.wait() {
            Some(wait) => match tokio::time::timeout(wait, msg_rx.recv()).await {
                Ok(msg) => msg,
                Err(_) => {
                    ck.write(states);
                    continue;
                }
            },
            None => msg_rx.recv().await,
        };
        let Some(msg) = msg else { break };
        match msg {
            WorkerMsg::TableStarted { table } => {
                let st = &mut states[table];
                st.started = Instant::now();
                st.report.data_checked = true;
                let p = progress
                    .table_started(&format!("{}.{}", st.report.schema, st.report.table), None);
                for _ in 0..st.report.resumed_chunks {
                    p.chunk_done();
                }
                st.progress = Some(p);
            }
            WorkerMsg::TableChunks { table, chunks } => {
                states[table].chunks_total = Some(chunks);
            }
            WorkerMsg::ChunkQueued { table, seq, upper } => {
                ck.dirty |= states[table].chunks.queued(seq, upper);
            }
            WorkerMsg::Changes {
                table,
                seq,
                range,
                changes,
            } => {
                let plan = &plan_of[&table];
                let st = &mut states[table];
                let (mut missing, mut extra, mut changed) = (0, 0, 0);
                for c in &changes {
                    match c {
                        RowChange::Missing { .. } => missing += 1,
                        RowChange::Extra { .. } => extra += 1,
                        RowChange::Changed { .. } => changed += 1,
                    }
                }
                st.report.rows_missing += missing;
                st.report.rows_extra += extra;
                st.report.rows_changed += changed;
                st.chunks.changes(seq, missing, extra, changed);
                if changes.is_empty() {
                    continue;
                }
                let fix_table = FixTable {
                    target: &plan.target,
                    columns: &plan.up_cols,
                    key: plan.key.clone(),
                };
                if let Some(dir) = &st.parts {
                    let block = crate::fixsql::chunk_block(
                        &range.describe(&plan.key_cols()),
                        &crate::fixsql::render_changes(&fix_table, &changes),
                    );
                    append_part(dir, seq, &block)?;
                    st.unsynced_parts.insert(seq);
                }
                if let Some(conn) = apply_conn.as_mut() {
                    let stmts = crate::fixsql::statements_for_apply(&fix_table, &changes);
                    if let Err(e) = worker::apply(conn, &stmts).await {
                        st.report.error = Some(format!("applying fix SQL failed: {e}"));
                        st.chunks.freeze();
                    }
                    st.chunks.dirty(seq, range.clone());
                }
                st.dirty.push(range);
            }
            WorkerMsg::ChunkDone {
                table,
                seq,
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
                // A part must be on disk before a checkpoint counts its chunk as finished.
                if let (true, Some(dir)) = (st.unsynced_parts.remove(&seq), &st.parts) {
                    sync_file(&checkpoint::part_path(dir, seq))?;
                }
                ck.dirty |= st.chunks.done(seq, up_count, down_count, different);
            }
            WorkerMsg::TableError { table, message } => {
                let st = &mut states[table];
                if st.report.error.is_none() {
                    st.report.error = Some(message);
                }
                st.chunks.freeze();
            }
        }
        // Finish tables whose chunks are all done.
        for st in states.iter_mut() {
            if !st.finished && st.chunks_total.is_some_and(|t| t == st.chunks_done) {
                ck.cleanup.extend(finish_table(st, fix_dir, &header)?);
                ck.dirty = true;
            }
        }
        ck.write_if_due(states);
    }
    producer.await.map_err(join_error)?;
    for w in workers {
        w.await.map_err(join_error)?;
    }
    for st in states.iter_mut().filter(|s| !s.finished) {
        if st.report.error.is_none() {
            st.report.error = Some("data check did not complete".into());
        }
        ck.cleanup.extend(finish_table(st, fix_dir, &header)?);
    }
    ck.write(states);
    Ok(())
}

/// `--apply-fix`: checksum the repaired ranges again (tables taken whole from a checkpoint
/// included, unless their re-check already ran).
async fn recheck_fixed(
    up: &Source,
    down: &Source,
    plans: &[(usize, Arc<TablePlan>)],
    states: &mut [TableState],
) -> Result<()> {
    for (idx, plan) in plans {
        let st = &mut states[*idx];
        if st.dirty.is_empty() || st.report.error.is_some() || st.report.recheck_equal.is_some() {
            continue;
        }
        let equal = worker::recheck(up, down, plan, &st.dirty).await?;
        st.report.fix_applied = true;
        st.report.recheck_equal = Some(equal);
    }
    Ok(())
}

/// Add a rendered block to the part file of chunk `seq`.
fn append_part(dir: &Path, seq: u64, block: &str) -> Result<()> {
    use std::io::Write;
    let path = checkpoint::part_path(dir, seq);
    let res = std::fs::create_dir_all(dir).and_then(|()| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?
            .write_all(block.as_bytes())
    });
    res.map_err(|source| Error::Output { path, source })
}

fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|source| Error::Output {
            path: path.to_path_buf(),
            source,
        })
}

/// Close a table: its result, and its fix SQL file, joined from the part files in key
/// order. Returns the part directory, to remove once a checkpoint records the table finished.
fn finish_table(
    st: &mut TableState,
    fix_dir: &Path,
    header: &FixHeader,
) -> Result<Option<PathBuf>> {
    st.finished = true;
    st.report.duration_ms = st.started.elapsed().as_millis() as u64;
    let mut cleanup = None;
    if let (Some(parts), Some(plan)) = (&st.parts, &st.plan) {
        let list = checkpoint::list_parts(parts)?;
        if !list.is_empty() {
            let header = header_with_resumed_points(header, &st.read_at);
            let mut w = FixSqlWriter::create(fix_dir, &plan.target, &header)?;
            for (_, part) in &list {
                w.append_part(part)?;
            }
            let path = w.finish()?;
            sync_file(&path)?;
            st.report.fix_sql = Some(path);
        }
        cleanup = Some(parts.clone());
    }
    st.report.result = table_result(&st.report);
    if let Some(p) = st.progress.take() {
        p.finish(st.report.result);
    }
    Ok(cleanup)
}

/// A fix file header naming the points earlier runs read the resumed chunks at, too.
fn header_with_resumed_points(header: &FixHeader, read_at: &[ReadAt]) -> FixHeader {
    let join = |now: &str, then: Vec<&str>| {
        let then: Vec<&str> = then.into_iter().filter(|p| *p != now).collect();
        if then.is_empty() {
            now.to_string()
        } else {
            format!("{} (chunks before the resume), then {now}", then.join("; "))
        }
    };
    FixHeader {
        upstream_point: join(
            &header.upstream_point,
            read_at.iter().map(|r| r.upstream.as_str()).collect(),
        ),
        downstream_point: join(
            &header.downstream_point,
            read_at.iter().map(|r| r.downstream.as_str()).collect(),
        ),
        ..header.clone()
    }
}

/// A table's result from its report.
fn table_result(r: &TableReport) -> TableResult {
    if r.error.is_some() {
        TableResult::Error
    } else if r.rows_missing + r.rows_extra + r.rows_changed > 0
        || r.chunks_different > 0
        || !r.structure_equal
    {
        TableResult::Different
    } else {
        TableResult::Equal
    }
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
    Error::Internal(format!("internal task failed: {e}"))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
