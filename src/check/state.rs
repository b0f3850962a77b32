//! The live state of each table during a run, and how a table is closed: its result and
//! its fix SQL file joined from the part files.

use super::plan::TablePlan;
use crate::checkpoint::{self, ChunkTracker, Prefix, ReadAt};
use crate::chunk::KeyRange;
use crate::error::{Error, Result};
use crate::fixsql::{FileKind, FixHeader, FixSqlWriter};
use crate::report::progress::TableProgress;
use crate::report::{TableReport, TableResult};
use crate::schema::TableRef;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Live state of one table during the data phase.
pub(super) struct TableState {
    pub report: TableReport,
    /// The plan of a table in the data phase.
    pub plan: Option<Arc<TablePlan>>,
    pub progress: Option<TableProgress>,
    pub started: Instant,
    pub chunks_total: Option<u64>,
    pub chunks_done: u64,
    /// Ranges with differences, re-checked after `--apply-fix`.
    pub dirty: Vec<KeyRange>,
    pub finished: bool,
    /// Chunks in key order and their contiguous finished prefix (the checkpoint's unit).
    pub chunks: ChunkTracker,
    /// Directory of this table's fix SQL part files, when fix SQL is exported.
    pub parts: Option<PathBuf>,
    /// Directory of its undo SQL part files (same names, under `undo-on-<target>/`).
    pub undo_parts: Option<PathBuf>,
    /// Chunks whose part file was written but not yet synced to disk.
    pub unsynced_parts: BTreeSet<u64>,
    /// The points earlier (interrupted) runs read this table's resumed part at.
    pub read_at: Vec<ReadAt>,
    /// The whole table was taken from the checkpoint, not checked in this run.
    pub resumed_whole: bool,
}

impl TableState {
    /// A table about to be checked (`plan` set) or already decided (no plan: missing,
    /// skipped, refused, or a structure-only run). `parts` is its fix SQL part directory.
    pub fn new(
        report: TableReport,
        plan: Option<Arc<TablePlan>>,
        parts: Option<(PathBuf, PathBuf)>,
    ) -> Self {
        let (parts, undo_parts) = parts.unzip();
        let key = plan.as_ref().map_or_else(Vec::new, |p| {
            p.key_cols().iter().map(|c| c.name.clone()).collect()
        });
        TableState {
            report,
            finished: plan.is_none(),
            plan,
            progress: None,
            started: Instant::now(),
            chunks_total: None,
            chunks_done: 0,
            dirty: Vec::new(),
            chunks: ChunkTracker::new(Prefix {
                key,
                ..Prefix::default()
            }),
            parts,
            undo_parts,
            unsynced_parts: BTreeSet::new(),
            read_at: Vec::new(),
            resumed_whole: false,
        }
    }

    /// Every chunk of the table is done but the table is not closed yet.
    pub fn ready_to_finish(&self) -> bool {
        !self.finished && self.chunks_total.is_some_and(|t| t == self.chunks_done)
    }
}

/// A fresh report for a target table and the upstream table it is compared with.
pub(super) fn empty_report(target: &TableRef, upstream: &TableRef) -> TableReport {
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
        undo_sql: None,
        fix_applied: false,
        recheck_equal: None,
        skip_reason: None,
        error: None,
        duration_ms: 0,
        resumed_chunks: 0,
        history: false,
        overlapping_keys: 0,
        overlaps: Vec::new(),
    }
}

/// Close a table: its result, and its fix SQL file, joined from the part files in key
/// order (file work on a blocking thread). Returns the part directory, to remove once a
/// checkpoint records the table finished.
pub(super) async fn finish_table(
    st: &mut TableState,
    (fix_dir, undo_dir): (&Path, &Path),
    header: &FixHeader,
) -> Result<Vec<PathBuf>> {
    st.finished = true;
    st.report.duration_ms = st.started.elapsed().as_millis() as u64;
    let mut cleanup = Vec::new();
    if let (Some(parts), Some(undo_parts), Some(plan)) = (&st.parts, &st.undo_parts, &st.plan) {
        let header = header_with_resumed_points(header, &st.read_at);
        let dirs = [
            (parts.clone(), fix_dir.to_path_buf()),
            (undo_parts.clone(), undo_dir.to_path_buf()),
        ];
        let target = plan.target.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let fix = join_parts(&dirs[0].0, &dirs[0].1, &target, &header, FileKind::Fix)?;
            let undo = join_parts(&dirs[1].0, &dirs[1].1, &target, &header, FileKind::Undo)?;
            Ok::<_, Error>((fix, undo))
        })
        .await
        .map_err(super::join_error)??;
        st.report.fix_sql = joined.0.or(st.report.fix_sql.take());
        st.report.undo_sql = joined.1.or(st.report.undo_sql.take());
        cleanup = vec![parts.clone(), undo_parts.clone()];
    }
    st.report.result = table_result(&st.report);
    if let Some(p) = st.progress.take() {
        p.finish(st.report.result);
    }
    Ok(cleanup)
}

/// Join a table's part files into its fix (or undo) SQL file and sync it; `None` when there
/// are none.
fn join_parts(
    parts: &Path,
    dir: &Path,
    target: &TableRef,
    header: &FixHeader,
    kind: FileKind,
) -> Result<Option<PathBuf>> {
    let list = checkpoint::list_parts(parts)?;
    if list.is_empty() {
        return Ok(None);
    }
    let mut w = FixSqlWriter::create_kind(dir, target, header, kind)?;
    match kind {
        FileKind::Fix => {
            for (_, part) in &list {
                w.append_part(part)?;
            }
        }
        FileKind::Undo => {
            let paths: Vec<PathBuf> = list.into_iter().map(|(_, p)| p).collect();
            w.append_undo_parts(&paths)?;
        }
    }
    let path = w.finish()?;
    sync_file(&path)?;
    Ok(Some(path))
}

/// Add a rendered block to the part file of chunk `seq`.
pub(super) fn append_part(dir: &Path, seq: u64, block: &str) -> Result<()> {
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

/// fsync one file.
pub(super) fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|source| Error::Output {
            path: path.to_path_buf(),
            source,
        })
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
pub(super) fn table_result(r: &TableReport) -> TableResult {
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
