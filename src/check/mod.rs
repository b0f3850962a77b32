//! The check: open both sides, pick the tables, compare structures, then run the chunk
//! pipeline and assemble the report. One module per stage:
//!
//! | stage | module |
//! |---|---|
//! | table pairs, structures, plans | `prepare`, `plan` |
//! | read points: snapshots, fences, GC safepoints | `open` |
//! | splitting tables into chunks (producer) | `split` |
//! | real keys inside a range, near interpolated probes | `probes` |
//! | the worker loop, connection retry | `worker` |
//! | narrowing a differing chunk (parts, key-value or key-hash buckets) | `locate` |
//! | row merges over server streams | `merge` |
//! | tables without a key | `keyless` |
//! | `--apply-fix` and the re-check | `apply` |
//! | AUTO_INCREMENT counters, sequences | `metadata` |
//! | views, routines and other objects listed as not compared | `objects` |
//! | results, fix SQL parts, progress | `aggregate`, `state` |
//! | checkpoint and resume | `resume` |
//! | messages between the stages | `msg` |
//!
//! Concurrency: one producer task splits tables into a bounded queue (so a huge table is
//! never split up front); `threads` workers each own one connection per side and take
//! chunks from the queue; the calling task aggregates results, writes fix SQL and drives
//! progress. Pure work (hashing, merging, SQL rendering) happens inline in small pieces and
//! never blocks a worker for long; fsync and file joins run on blocking threads.

mod aggregate;
mod apply;
mod keyless;
mod locate;
mod merge;
mod metadata;
mod msg;
mod objects;
mod open;
pub mod plan;
mod prepare;
mod probes;
mod replica;
mod resume;
mod sides;
mod split;
mod state;
mod union;
mod worker;

pub use metadata::raise_own_counters;
pub use plan::{Side, TablePlan};
pub use sides::LEAF_ROWS;

use crate::checkpoint::{self, Checkpoint, Fingerprint, ReadAt};
use crate::db::{Conn, Flavour, Source, SourceSpec};
use crate::error::{Error, Result};
use crate::fixsql::FixHeader;
use crate::interrupt::Interrupt;
use crate::report::progress::Progress;
use crate::report::{RunReport, RunResult, SourceReport, TableReport};
use crate::schema::TableRef;
use crate::snapshot::{ReadPoint, Snapshot};
use aggregate::{Aggregator, Pending};
use msg::ChunkStart;
use open::{open_sides, snapshot_point, wants_auto};
use resume::{open_checkpoint, Checkpointer};
use state::TableState;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Rows per chunk when the table config does not say. Smaller chunks cost a query round
/// trip each; larger ones make a differing chunk costlier to narrow down (4 × 1 M rows with
/// 15 differing rows: 20,000 measured best of 10k–50k, benches/README.md).
pub const DEFAULT_CHUNK_SIZE: u64 = 20_000;

/// Per-table settings from the configuration.
#[derive(Debug, Clone, Default)]
pub struct TableSettings {
    pub ignore_columns: Vec<String>,
    /// Compare a system-versioned table's history (`system-versioned-history`).
    pub history: bool,
    pub index_fields: Vec<String>,
    pub range: Option<String>,
    /// 0 = automatic.
    pub chunk_size: u64,
}

/// Which tables to compare and how; implemented over the configuration.
pub trait TableSelector: Send + Sync {
    /// Whether the target (downstream) table is selected.
    fn wants(&self, target: &TableRef) -> bool;
    /// The target name of a table of upstream source `source` (an index into
    /// `source-instances`), by that source's routes; `None` when the table must be left out
    /// (it has the name of a route's target but matches no rule).
    fn route(&self, source: usize, upstream: &TableRef) -> Option<TableRef>;
    /// Whether a route rule of `source` (not the identity) names `upstream`'s target: such
    /// a name is matched exactly with the downstream's tables, the identity
    /// case-insensitively (sync-diff-inspector's table router).
    fn by_rule(&self, source: usize, upstream: &TableRef) -> bool;
    /// Settings for a target table.
    fn settings(&self, target: &TableRef) -> Result<TableSettings>;
    /// Tables named without wildcards: they must exist on at least one side.
    fn exact_names(&self) -> Vec<TableRef>;
}

/// A fully resolved check.
pub struct CheckJob {
    /// The first upstream source (`source-instances[0]`).
    pub upstream: SourceSpec,
    /// Further upstream sources: their tables are merged with the first's into the targets
    /// the routes name (shard merge, `check::union`).
    pub more_upstreams: Vec<SourceSpec>,
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
    /// `[task] fix-sql-binlog`: whether applied fix SQL is binary-logged downstream.
    pub fix_sql_binlog: Option<crate::config::FixSqlBinlog>,
    pub output_dir: PathBuf,
    pub selector: Box<dyn TableSelector>,
    /// Ctrl-C / SIGTERM: the run stops at the next safe point with the checkpoint written
    /// and everything held on the servers released ([`Error::Interrupted`]).
    pub interrupt: Interrupt,
    /// Notes from building the job (settings accepted but not used), for the report.
    pub warnings: Vec<String>,
    /// `check --shard I/N`: this run checks only the tables [`Shard::owns`].
    pub shard: Option<Shard>,
}

/// One of `count` processes sharing a check (`--shard index/count`, e.g. a Kubernetes
/// Indexed Job). Tables are dealt out by a hash of their target name, so every process
/// agrees without talking to the others and the split is stable under `--resume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// `I/N` with `0 <= I < N`.
    pub fn parse(text: &str) -> std::result::Result<Shard, String> {
        let (i, n) = text
            .split_once('/')
            .ok_or_else(|| format!("shard '{text}' is not of the form INDEX/COUNT"))?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| format!("shard index '{i}' is not a number"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("shard count '{n}' is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!(
                "shard {index}/{count}: the index must be below the count"
            ));
        }
        Ok(Shard { index, count })
    }

    /// Whether this shard checks `target` (its downstream name, case-insensitively).
    pub fn owns(&self, target: &crate::schema::TableRef) -> bool {
        let key = format!(
            "{}\0{}",
            target.schema.to_lowercase(),
            target.table.to_lowercase()
        );
        xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % u64::from(self.count) == u64::from(self.index)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Run a check to completion and return its report. Errors that stop the whole run (bad
/// connection, missing table) are returned as `Err`; errors confined to a table are recorded
/// in its report and the run goes on.
///
/// Progress is checkpointed in `output_dir` as chunks finish; with `job.resume` the run
/// continues from that checkpoint. A run that completes removes it. PD service safepoints
/// are removed on every path, interrupts and errors included.
pub async fn run_check(job: CheckJob, progress: Progress) -> Result<RunReport> {
    run(job, progress)
        .await
        .map_err(crate::snapshot::tidb::explain)
}

async fn run(job: CheckJob, progress: Progress) -> Result<RunReport> {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let saved = open_checkpoint(&job)?;
    let (up, down, tidb_auto) = open_sources(&job, saved.as_ref()).await?;
    let more_ups = open_more_upstreams(&job, &up).await?;
    let mut warnings = job.warnings.clone();
    let sides: Vec<&Source> = [&up, &down].into_iter().chain(&more_ups).collect();
    warnings.extend(live_warnings(&sides));
    for s in more_ups.iter().filter(|s| s.pins_tidb_snapshot()) {
        warnings.push(format!(
            "{}: no PD service safepoint is held for a further upstream source; make sure \
             tidb_gc_life_time covers the check",
            s.name()
        ));
    }
    let ups: Arc<[Source]> = std::iter::once(up.clone()).chain(more_ups).collect();
    let fix_dir = job
        .output_dir
        .join(format!("fix-on-{}", job.downstream.name));
    let undo_dir = job
        .output_dir
        .join(format!("undo-on-{}", job.downstream.name));
    if saved.is_none() {
        for (dir, what) in [(&fix_dir, "fix"), (&undo_dir, "undo")] {
            if let Some(old) = crate::fixsql::supersede_previous(&job.output_dir, dir)? {
                warnings.push(format!(
                    "moved an earlier run's {what} SQL ({} file(s)) to {}: it was written for \
                     data that may have changed since; only this run's {what} SQL is in {}",
                    old.files,
                    old.moved_to.display(),
                    dir.display()
                ));
            }
        }
    }
    let replica = replica::detect(&down).await?;
    if let Some(r) = &replica {
        warnings.push(replica::warning(r, job.fix_sql_binlog));
        replica::refuse_apply(&job, r)?;
    }
    // Hold GC behind the TiDB snapshots (PD service safepoints) until the last read.
    let mut gc = open::start_gc_keepers(&up, &down, &mut warnings).await?;
    let run = Run {
        job: &job,
        up: &up,
        ups: ups.clone(),
        down: &down,
        progress: &progress,
        fix_dir,
        undo_dir,
        replica,
    };
    let checked = run.check_tables(saved.as_ref(), tidb_auto, &warnings).await;
    let gc_notes = gc.stop(&mut warnings).await;
    let (states, points, more_points, meta) = checked?;
    warnings.extend(meta.warnings);
    progress.finish();
    if saved.is_some() {
        warnings.extend(resume::resume_warnings(
            &states,
            &read_at(&points),
            job.apply_fix,
        ));
    }
    let not_compared =
        not_compared_objects(&job, &up, &down, &states, meta.sequences_compared).await;
    let metadata: Vec<_> = meta.found.into_iter().map(|f| f.diff).collect();
    let metadata_fix_sql = match job.export_fix_sql && !metadata.is_empty() {
        true => Some(write_metadata_fix(
            &run.fix_header(&read_at(&points)),
            &metadata,
            &run.fix_dir,
            &job.output_dir,
        )?),
        false => None,
    };
    let mut report = RunReport {
        result: RunResult::Equal,
        syncgate_version: env!("CARGO_PKG_VERSION").to_string(),
        checksum: crate::checksum::CHECKSUM_VERSION.to_string(),
        started_at,
        duration_ms: started.elapsed().as_millis() as u64,
        upstream: std::iter::once(source_report(&up, &points[0], &gc_notes[0]))
            .chain(more_ups_report(&ups, &more_points))
            .collect(),
        downstream: source_report(&down, &points[1], &gc_notes[1]),
        output_dir: job.output_dir.clone(),
        tables: relative_fix_paths(states, &job.output_dir),
        error: None,
        warnings,
        not_compared,
        metadata,
        metadata_fix_sql,
    };
    report.compute_result();
    // A run that completes (whatever its result) leaves no checkpoint, as sync-diff-inspector.
    // The checkpoint goes first: parts without it are never read.
    if let Err(e) = checkpoint::remove(&job.output_dir)
        .and_then(|()| checkpoint::prune_parts(&run.fix_dir, &BTreeMap::new()))
        .and_then(|()| checkpoint::prune_parts(&run.undo_dir, &BTreeMap::new()))
    {
        tracing::warn!("cannot remove the checkpoint of the completed run: {e}");
    }
    Ok(report)
}

/// The objects of the checked schemas that are not compared; a failure to list them costs
/// the list, not the run's result (logged).
async fn not_compared_objects(
    job: &CheckJob,
    up: &Source,
    down: &Source,
    states: &[TableState],
    sequences_compared: bool,
) -> Vec<crate::report::NotCompared> {
    let schemas = checked_schemas(states);
    match objects::not_compared(job, up, down, schemas, sequences_compared).await {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!("cannot list the views, sequences and routines not compared: {e}");
            Vec::new()
        }
    }
}

/// The schemas holding checked tables: upstream's, downstream's.
fn checked_schemas(states: &[TableState]) -> [BTreeSet<String>; 2] {
    let mut schemas: [BTreeSet<String>; 2] = Default::default();
    for st in states {
        let up_schema = st.plan.as_ref().map(|p| &p.upstream.schema);
        schemas[0].insert(up_schema.unwrap_or(&st.report.schema).clone());
        schemas[1].insert(st.report.schema.clone());
    }
    schemas
}

/// Write the counters' and sequences' fix statements to `fix_dir` (a run's, or the merge of
/// its shards'); returns the file's path relative to the output directory.
pub(crate) fn write_metadata_fix(
    header: &FixHeader,
    diffs: &[crate::report::MetadataDiff],
    fix_dir: &Path,
    output_dir: &Path,
) -> Result<PathBuf> {
    let path = fix_dir.join(crate::fixsql::METADATA_FILE);
    let items: Vec<(String, Vec<String>)> = diffs
        .iter()
        .map(|d| (d.to_string(), d.fix.clone()))
        .collect();
    let text = crate::fixsql::metadata_fix_text(header, &items);
    std::fs::create_dir_all(fix_dir)
        .and_then(|()| std::fs::write(&path, text))
        .map_err(|source| Error::Output {
            path: path.clone(),
            source,
        })?;
    Ok(path.strip_prefix(output_dir).unwrap_or(&path).to_path_buf())
}

/// What the counters' and sequences' step found.
#[derive(Default)]
struct MetadataChecked {
    found: Vec<metadata::Found>,
    warnings: Vec<String>,
    /// Sequences were read on both sides (MariaDB): the not-compared list leaves them out.
    sequences_compared: bool,
}

/// One run's fixed inputs.
struct Run<'a> {
    job: &'a CheckJob,
    up: &'a Source,
    /// Every upstream source, `up` first (shard merge reads the others too).
    ups: Arc<[Source]>,
    down: &'a Source,
    progress: &'a Progress,
    fix_dir: PathBuf,
    /// `undo-on-<target>/`: the undo SQL beside the fix SQL.
    undo_dir: PathBuf,
    /// The downstream's replication, when it is a replica.
    replica: Option<replica::Replica>,
}

impl Run<'_> {
    /// Prepare the tables, apply the checkpoint, run the data phase and the `--apply-fix`
    /// re-check. Returns the tables' states and the points they were read at.
    async fn check_tables(
        &self,
        saved: Option<&Checkpoint>,
        tidb_auto: Option<ReadAt>,
        warnings: &[String],
    ) -> Result<(
        Vec<TableState>,
        [ReadPoint; 2],
        Vec<ReadPoint>,
        MetadataChecked,
    )> {
        let job = self.job;
        let plans = job
            .interrupt
            .interruptible(prepare::prepare_tables(job, &self.ups, self.down))
            .await??;
        for w in warnings.iter() {
            tracing::warn!("{w}");
        }
        if job.export_fix_sql {
            std::fs::create_dir_all(&self.fix_dir).map_err(|source| Error::Output {
                path: self.fix_dir.clone(),
                source,
            })?;
        }
        let mut states = self.initial_states(plans);
        let keep_parts = match saved {
            Some(saved) => resume::resume_states(job, saved, &mut states),
            None => BTreeMap::new(),
        };
        // Parts after a saved prefix (or of any earlier run, when not resuming) are redone.
        checkpoint::prune_parts(&self.fix_dir, &keep_parts)?;
        checkpoint::prune_parts(&self.undo_dir, &keep_parts)?;
        for st in states.iter().filter(|s| s.finished) {
            self.progress
                .table_started(&st.report.name(), Some(0))
                .finish_resumed(st.report.result, st.report.resumed_chunks);
        }
        let mut points = [snapshot_point(self.up), snapshot_point(self.down)];
        if let Some(at) = states.iter().find_map(|s| s.read_at.last()) {
            // Nothing is read in this run unless a table is left: report where it was read.
            points = [
                ReadPoint::Saved {
                    text: at.upstream.clone(),
                    pinned: open::configured_pinned(self.up),
                },
                ReadPoint::Saved {
                    text: at.downstream.clone(),
                    pinned: open::configured_pinned(self.down),
                },
            ];
        }
        let pending = pending_tables(&states);
        let mut meta = MetadataChecked::default();
        // Where the further upstream sources were read (shard merge).
        let mut more_points = Vec::new();
        if !pending.is_empty() {
            (points, more_points, meta) = self.data_phase(&pending, &mut states, tidb_auto).await?;
        }
        if job.apply_fix {
            let recheck = apply::recheck_fixed(&self.ups, self.down, &mut states);
            job.interrupt.interruptible(recheck).await??;
            if !meta.found.is_empty() {
                let mut dc = self.down.connect().await?;
                if job.fix_sql_binlog == Some(crate::config::FixSqlBinlog::Skip) {
                    dc.exec(crate::fixsql::SKIP_BINLOG).await?;
                }
                let applied = metadata::apply_and_recheck(&mut dc, &mut meta.found);
                job.interrupt.interruptible(applied).await??;
                dc.close().await;
            }
        }
        Ok((states, points, more_points, meta))
    }

    /// Counters and sequences, read where the data phase reads (`uc`, `dc`: a worker
    /// connection of each side, before the workers start). A failure costs this step, not
    /// the run: it is reported as a warning.
    async fn check_metadata(
        &self,
        uc: &mut Conn,
        dc: &mut Conn,
        states: &[TableState],
    ) -> MetadataChecked {
        let mut out = MetadataChecked::default();
        let plans: Vec<&TablePlan> = states.iter().filter_map(|s| s.plan.as_deref()).collect();
        match metadata::counters(uc, dc, &plans).await {
            Ok(found) => out.found = found,
            Err(e) => out
                .warnings
                .push(format!("AUTO_INCREMENT counters not compared: {e}")),
        }
        let both_mariadb = [self.up, self.down]
            .iter()
            .all(|s| s.flavour() == Flavour::MariaDb);
        if !both_mariadb {
            return out;
        }
        let [up_schemas, _] = checked_schemas(states);
        let pairs = match objects::sequences(uc, &up_schemas).await {
            Ok(list) => self.sequence_pairs(list),
            Err(e) => {
                out.warnings
                    .push(format!("sequences not compared: cannot list them: {e}"));
                return out;
            }
        };
        match metadata::sequences(uc, dc, &pairs, &mut out.warnings).await {
            Ok(found) => {
                out.found.extend(found);
                out.sequences_compared = true;
            }
            Err(e) => out.warnings.push(format!("sequences not compared: {e}")),
        }
        out
    }

    /// Upstream sequences selected by the tables' filters and routes (and this shard):
    /// `(upstream name, downstream name)`.
    fn sequence_pairs(&self, upstream: Vec<TableRef>) -> Vec<(TableRef, TableRef)> {
        let job = self.job;
        upstream
            .into_iter()
            .filter_map(|t| {
                let target = job.selector.route(0, &t)?;
                let wanted =
                    job.selector.wants(&target) && job.shard.is_none_or(|s| s.owns(&target));
                wanted.then_some((t, target))
            })
            .collect()
    }

    /// The header of this run's fix files.
    fn fix_header(&self, at: &ReadAt) -> FixHeader {
        FixHeader {
            upstream: format!("{} ({})", self.up.name(), self.up.spec().address()),
            downstream: format!("{} ({})", self.down.name(), self.down.spec().address()),
            upstream_point: at.upstream.clone(),
            downstream_point: at.downstream.clone(),
            replica_warning: self
                .replica
                .as_ref()
                .map(|r| replica::warning(r, self.job.fix_sql_binlog)),
            skip_binlog: self.job.fix_sql_binlog == Some(crate::config::FixSqlBinlog::Skip),
        }
    }

    /// The tables' states before the data phase: decided ones finished, the rest with
    /// their plans (none in a structure-only run).
    fn initial_states(&self, plans: Vec<prepare::Prepared>) -> Vec<TableState> {
        self.progress.set_total(plans.len() as u64);
        plans
            .into_iter()
            .map(|p| {
                let plan = p.plan.filter(|_| !self.job.struct_only).map(Arc::new);
                let parts = plan
                    .as_ref()
                    .filter(|_| self.job.export_fix_sql)
                    .map(|plan| {
                        let name = crate::fixsql::file_name(&plan.target);
                        (
                            checkpoint::parts_dir(&self.fix_dir, &name),
                            checkpoint::parts_dir(&self.undo_dir, &name),
                        )
                    });
                TableState::new(p.report, plan, parts)
            })
            .collect()
    }

    /// Open the worker connections at the read points and run the chunk pipeline; returns
    /// the points read at.
    async fn data_phase(
        &self,
        pending: &[Pending],
        states: &mut [TableState],
        tidb_auto: Option<ReadAt>,
    ) -> Result<([ReadPoint; 2], Vec<ReadPoint>, MetadataChecked)> {
        let job = self.job;
        let threads = job.threads.max(1);
        let slots = part_slots(pending);
        let extra0 = slots.iter().filter(|s| s.0 == 0).count();
        let counts = (threads, threads * (1 + extra0));
        let (mut up_side, mut down_side) =
            open_sides(self.up, self.down, counts, &job.interrupt).await?;
        let (parts, more_points) = self.open_parts(&mut up_side, &slots, threads).await?;
        let points = [up_side.point.clone(), down_side.point.clone()];
        let at = read_at(&points);
        let meta = match (up_side.conns.first_mut(), down_side.conns.first_mut()) {
            (Some(uc), Some(dc)) if !job.struct_only => {
                let checked = self.check_metadata(uc, dc, states);
                job.interrupt.interruptible(checked).await?
            }
            _ => MetadataChecked::default(),
        };
        let mut ck = Checkpointer::new(job, tidb_auto, at.clone());
        let header = self.fix_header(&at);
        let dirs = (self.fix_dir.as_path(), self.undo_dir.as_path());
        let mut agg = Aggregator::new(states, self.progress, dirs, &mut ck, header);
        aggregate::run_data_phase(
            job,
            (self.up, up_side, parts),
            (self.down, down_side),
            pending,
            &mut agg,
            &job.interrupt,
        )
        .await?;
        Ok((points, more_points, meta))
    }
}

impl Run<'_> {
    /// Shard merge: the workers' connections to the upstream tables beyond `uc` — the rest
    /// of `up_side` (source 0's further slots, opened in its snapshot) and `threads`
    /// connections per slot of every other source, each source at its own read point.
    async fn open_parts(
        &self,
        up_side: &mut open::SideConns,
        slots: &BTreeSet<(usize, usize)>,
        threads: usize,
    ) -> Result<(Vec<sides::PartConns>, Vec<ReadPoint>)> {
        let mut per_worker: Vec<sides::PartConns> = (0..threads)
            .map(|_| sides::PartConns {
                sources: self.ups.clone(),
                conns: Vec::new(),
            })
            .collect();
        let mut more_points = Vec::new();
        let mut by_source: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &(source, slot) in slots {
            by_source.entry(source).or_default().push(slot);
        }
        for (source, s) in self.ups.iter().enumerate().skip(1) {
            let Some(list) = by_source.get(&source) else {
                more_points.push(snapshot_point(s));
                continue;
            };
            let opened = open::open_side(s, threads * list.len());
            let side = self.job.interrupt.interruptible(opened).await??;
            up_side.pinned |= side.pinned;
            more_points.push(side.point);
            deal(&mut per_worker, side.conns, source, list);
        }
        if let Some(list) = by_source.get(&0) {
            let rest = up_side.conns.split_off(threads);
            deal(&mut per_worker, rest, 0, list);
        }
        Ok((per_worker, more_points))
    }
}

/// Hand `conns` out to the workers, `slots.len()` each, keyed `(source, slot)`.
fn deal(workers: &mut [sides::PartConns], conns: Vec<Conn>, source: usize, slots: &[usize]) {
    let mut conns = conns.into_iter();
    for w in workers.iter_mut() {
        for &slot in slots {
            if let Some(c) = conns.next() {
                w.conns.push(((source, slot), c));
            }
        }
    }
}

/// The `(source, slot)` connections the merged targets among `pending` need beyond each
/// worker's first upstream connection (source 0, slot 0).
fn part_slots(pending: &[Pending]) -> BTreeSet<(usize, usize)> {
    pending
        .iter()
        .flat_map(|(_, plan, _)| plan.parts.iter().map(|p| (p.source, p.slot)))
        .filter(|&s| s != (0, 0))
        .collect()
}

/// The report's lines for the further upstream sources.
fn more_ups_report(ups: &[Source], points: &[ReadPoint]) -> Vec<SourceReport> {
    ups.iter()
        .skip(1)
        .enumerate()
        .map(|(i, s)| {
            let point = points.get(i).cloned().unwrap_or_else(|| snapshot_point(s));
            source_report(s, &point, &None)
        })
        .collect()
}

/// Open the further upstream sources (`source-instances` after the first). `auto` pairs
/// one upstream with the downstream, so it is refused when there are several.
async fn open_more_upstreams(job: &CheckJob, up: &Source) -> Result<Vec<Source>> {
    let mut out = Vec::with_capacity(job.more_upstreams.len());
    for spec in &job.more_upstreams {
        let s = Source::open(spec.clone()).await?;
        refuse_foreign_point(&s)?;
        out.push(s);
    }
    if let Some(s) = std::iter::once(up).chain(&out).find(|s| wants_auto(s)) {
        if !out.is_empty() {
            return Err(Error::Config(format!(
                "data source '{}': snapshot \"auto\" pairs one upstream with the downstream; \
                 with several source-instances use \"consistent\" (each source at its own \
                 snapshot) or a TiDB TSO",
                s.name()
            )));
        }
    }
    Ok(out)
}

/// The tables the data phase still has to check, each with where its split starts.
fn pending_tables(states: &[TableState]) -> Vec<Pending> {
    states
        .iter()
        .enumerate()
        .filter(|(_, st)| !st.finished)
        .filter_map(|(idx, st)| {
            let p = st.chunks.prefix();
            let start = ChunkStart {
                seq: p.chunks,
                lower: p.upper.clone(),
                done: p.last,
            };
            Some((idx, st.plan.clone()?, start))
        })
        .collect()
}

/// Open both sources; for TiDB `auto`, resolve the syncpoint (or take the checkpoint's,
/// when resuming). Returns the sources and, for TiDB `auto`, the TSOs read at.
async fn open_sources(
    job: &CheckJob,
    saved: Option<&Checkpoint>,
) -> Result<(Source, Source, Option<ReadAt>)> {
    let up = Source::open(job.upstream.clone()).await?;
    let down = Source::open(job.downstream.clone()).await?;
    for s in [&up, &down] {
        refuse_foreign_point(s)?;
    }
    let tidb_auto = wants_auto(&up) && wants_auto(&down) && down.flavour() == Flavour::TiDb;
    let (up, down) = match saved.and_then(|c| c.tidb_auto.clone()) {
        // A resume reads at the TSOs the interrupted run used, not at a newer syncpoint.
        Some(at) if tidb_auto => {
            tracing::info!(
                upstream = %at.upstream,
                downstream = %at.downstream,
                "snapshot auto: resuming at the checkpoint's syncpoint"
            );
            (
                up.with_snapshot(Snapshot::parse(&at.upstream)?),
                down.with_snapshot(Snapshot::parse(&at.downstream)?),
            )
        }
        _ => open::resolve_tidb_auto(up, down, job.syncpoint_changefeed.as_deref()).await?,
    };
    let tidb_auto = tidb_auto.then(|| ReadAt {
        upstream: up.spec().snapshot.to_string(),
        downstream: down.spec().snapshot.to_string(),
    });
    Ok((up, down, tidb_auto))
}

/// Warnings for sides read live: a snapshot setting their flavour cannot honour, and
/// concurrent writes showing up as differences.
/// A TiDB point in time (TSO or datetime) on a server that cannot read the past: reading
/// it live instead would compare something other than what was asked for, so it stops the
/// check and names the modes that work there.
fn refuse_foreign_point(s: &Source) -> Result<()> {
    let configured = &s.spec().snapshot;
    if !configured.is_tidb_point() || s.flavour() == Flavour::TiDb {
        return Ok(());
    }
    Err(crate::error::Error::Config(format!(
        "data source '{}': snapshot '{configured}' is a TiDB point in time, which a {} server \
         cannot read; use \"consistent\" (one snapshot shared by every worker), \"auto\" on a \
         primary and its replica (both at one GTID), or \"\" to read live",
        s.name(),
        s.flavour()
    )))
}

fn live_warnings(sources: &[&Source]) -> Vec<String> {
    let mut warnings = Vec::new();
    for s in sources {
        let configured = &s.spec().snapshot;
        if !open::configured_pinned(s) {
            if *configured != Snapshot::Live {
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
    warnings
}

/// The tables' reports, fix SQL paths relative to the output directory.
fn relative_fix_paths(states: Vec<TableState>, output_dir: &Path) -> Vec<TableReport> {
    let mut tables: Vec<TableReport> = states.into_iter().map(|s| s.report).collect();
    for t in &mut tables {
        for p in [&mut t.fix_sql, &mut t.undo_sql].into_iter().flatten() {
            if let Ok(rel) = p.strip_prefix(output_dir) {
                *p = rel.to_path_buf();
            }
        }
    }
    tables
}

/// The points as the checkpoint and fix SQL headers state them.
fn read_at(points: &[ReadPoint; 2]) -> ReadAt {
    ReadAt {
        upstream: points[0].describe(),
        downstream: points[1].describe(),
    }
}

/// A side as the report states it: where it was read and how GC was held behind it.
fn source_report(s: &Source, point: &ReadPoint, gc_note: &Option<String>) -> SourceReport {
    let text = point.describe();
    SourceReport {
        name: s.name().to_string(),
        address: s.spec().address(),
        flavour: s.flavour().to_string(),
        version: s.version().to_string(),
        snapshot: match gc_note {
            Some(note) => format!("{text}; {note}"),
            None => text,
        },
        pinned: point.is_pinned(),
        encrypted: s.encrypted(),
        tls_cipher: s.tls_cipher().map(str::to_string),
    }
}

fn join_error(e: tokio::task::JoinError) -> Error {
    Error::Internal(format!("a task of the check failed: {e}"))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
