//! Checkpoint and resume as the run sees them: loading (or discarding) the checkpoint,
//! applying it to the tables' state, the warnings of a resumed run, and the writer that
//! saves the tables' finished prefixes as chunks finish (ARCHITECTURE.md, "Checkpoint and
//! resume").

use super::state::{table_result, TableState};
use super::CheckJob;
use crate::checkpoint::{
    self, Checkpoint, ChunkTracker, EntryState, Fingerprint, ReadAt, TableEntry,
};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Without `--resume`, discard any checkpoint; with it, load the checkpoint and refuse one
/// written under another configuration.
pub(super) fn open_checkpoint(job: &CheckJob) -> Result<Option<Checkpoint>> {
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
pub(super) fn resume_states(
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
                r.undo_sql = r.undo_sql.map(|p| job.output_dir.join(p));
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
                r.overlapping_keys = c.overlapping_keys;
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
pub(super) fn resume_warnings(states: &[TableState], now: &ReadAt, apply_fix: bool) -> Vec<String> {
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

/// How often at most the checkpoint is written while chunks finish.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// The interval is at least this many times the last write's cost: a checkpoint of ten
/// thousand tables (megabytes of JSON, rebuilt and fsynced each time) then takes at most a
/// tenth of the run instead of most of it.
const CHECKPOINT_COST_FACTOR: u32 = 10;

/// The wait before the next checkpoint write, given the cost of the last one.
fn checkpoint_interval(last_cost: Duration) -> Duration {
    CHECKPOINT_INTERVAL.max(last_cost * CHECKPOINT_COST_FACTOR)
}

/// Writes the checkpoint from the tables' state, at most every [`checkpoint_interval`].
pub(super) struct Checkpointer {
    pub output_dir: PathBuf,
    pub fingerprint: Fingerprint,
    pub tidb_auto: Option<ReadAt>,
    /// The points this run reads at.
    pub current: ReadAt,
    pub apply_fix: bool,
    /// Something changed since the last write.
    pub dirty: bool,
    pub last_write: Option<Instant>,
    /// How long the last write took (building the entries, the file work).
    pub last_cost: Duration,
    /// Part directories of finished tables, removed once a written checkpoint records them
    /// finished (before that, a resume still needs them).
    pub cleanup: Vec<PathBuf>,
    /// A write failed (warned once).
    pub failed: bool,
}

impl Checkpointer {
    /// A writer for this run of `job`, reading at `current`.
    pub fn new(job: &CheckJob, tidb_auto: Option<ReadAt>, current: ReadAt) -> Self {
        Checkpointer {
            output_dir: job.output_dir.clone(),
            fingerprint: job.fingerprint.clone(),
            tidb_auto,
            current,
            apply_fix: job.apply_fix,
            dirty: false,
            last_write: None,
            last_cost: Duration::ZERO,
            cleanup: Vec::new(),
            failed: false,
        }
    }

    /// How long until a write is due; `None` when nothing changed.
    pub fn wait(&self) -> Option<Duration> {
        self.dirty.then(|| {
            self.last_write.map_or(Duration::ZERO, |t| {
                checkpoint_interval(self.last_cost).saturating_sub(t.elapsed())
            })
        })
    }

    pub async fn write_if_due(&mut self, states: &[TableState]) {
        if self.wait() == Some(Duration::ZERO) {
            self.write(states).await;
        }
    }

    /// Write now (the file work, with its fsyncs, on a blocking thread). A failure is a
    /// warning: the previous checkpoint stays valid (older).
    pub async fn write(&mut self, states: &[TableState]) {
        let started = Instant::now();
        let ck = Checkpoint {
            version: checkpoint::FORMAT_VERSION,
            fingerprint: self.fingerprint.hash.clone(),
            config: self.fingerprint.config.clone(),
            written_at: super::now_rfc3339(),
            tidb_auto: self.tidb_auto.clone(),
            tables: states.iter().filter_map(|s| self.entry(s)).collect(),
        };
        self.last_write = Some(Instant::now());
        let (dir, cleanup) = (self.output_dir.clone(), std::mem::take(&mut self.cleanup));
        let saved = tokio::task::spawn_blocking(move || {
            checkpoint::save(&dir, &ck)?;
            for dir in cleanup {
                let _ = std::fs::remove_dir_all(dir);
            }
            Ok(())
        })
        .await
        .map_err(super::join_error)
        .and_then(|r: Result<()>| r);
        self.last_cost = started.elapsed();
        match saved {
            Ok(()) => self.dirty = false,
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
            for p in [&mut report.fix_sql, &mut report.undo_sql]
                .into_iter()
                .flatten()
            {
                if let Ok(rel) = p.strip_prefix(&self.output_dir) {
                    *p = rel.to_path_buf();
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_interval_grows_with_the_cost_of_a_write() {
        assert_eq!(checkpoint_interval(Duration::ZERO), CHECKPOINT_INTERVAL);
        assert_eq!(
            checkpoint_interval(Duration::from_millis(5)),
            CHECKPOINT_INTERVAL
        );
        assert_eq!(
            checkpoint_interval(Duration::from_millis(300)),
            Duration::from_secs(3)
        );
    }
}
