//! The data phase: one producer task splits tables into a bounded chunk queue, `threads`
//! workers check chunks, and the aggregator (the calling task) turns their messages into
//! counts, fix SQL part files, `--apply-fix` statements, checkpoints and progress.

use super::apply::apply;
use super::msg::{ChunkJob, ChunkStart, WorkerMsg};
use super::open::SideConns;
use super::plan::TablePlan;
use super::resume::Checkpointer;
use super::sides::{DenseHints, PartConns};
use super::state::{append_part, finish_table, sync_file, TableState};
use super::worker;
use super::{join_error, CheckJob, Interrupt};
use crate::checkpoint;
use crate::chunk::KeyRange;
use crate::db::{Conn, Source};
use crate::diff::RowChange;
use crate::error::{Error, Result};
use crate::fixsql::{FixHeader, FixTable};
use crate::report::progress::Progress;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, Mutex};

/// A table to check in the data phase: its index, plan, and where its split starts.
pub(super) type Pending = (usize, Arc<TablePlan>, ChunkStart);

/// Folds the producer's and workers' messages into the tables' state.
pub(super) struct Aggregator<'a> {
    pub states: &'a mut [TableState],
    pub progress: &'a Progress,
    pub fix_dir: &'a Path,
    pub undo_dir: &'a Path,
    pub ck: &'a mut Checkpointer,
    pub header: FixHeader,
    /// The downstream connection fixes are applied on (`--apply-fix`).
    apply_conn: Option<Conn>,
}

/// Run the data phase to its end, or until `interrupt` fires (then the producer and the
/// workers are stopped, chunks in flight are dropped, and the checkpoint keeps what
/// finished). A stop by interrupt returns [`Error::Interrupted`].
/// Overlapping keys listed per table in the report (all are counted).
const MAX_OVERLAPS_LISTED: usize = 20;

pub(super) async fn run_data_phase(
    job: &CheckJob,
    (up, up_side, parts): (&Source, SideConns, Vec<PartConns>),
    (down, down_side): (&Source, SideConns),
    pending: &[Pending],
    agg: &mut Aggregator<'_>,
    interrupt: &Interrupt,
) -> Result<()> {
    let threads = job.threads.max(1);
    let (job_tx, job_rx) = mpsc::channel::<ChunkJob>(threads * 4);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (msg_tx, mut msg_rx) = mpsc::channel::<WorkerMsg>(threads * 8);
    let mut tasks = tokio::task::JoinSet::new();
    {
        let sources = (up.clone(), down.clone());
        let (plans, msg_tx) = (pending.to_vec(), msg_tx.clone());
        tasks.spawn(super::split::produce(sources, plans, job_tx, msg_tx));
    }
    let pinned = (up_side.pinned, down_side.pinned);
    let hints = Arc::new(DenseHints::new(agg.states.len()));
    let conns = up_side.conns.into_iter().zip(down_side.conns).zip(parts);
    for ((uc, dc), parts) in conns.take(threads) {
        let (up, down) = (up.clone(), down.clone());
        let (job_rx, msg_tx, hints) = (job_rx.clone(), msg_tx.clone(), hints.clone());
        let initial = (uc, dc, parts);
        tasks.spawn(worker::work(
            up, down, initial, pinned, job_rx, hints, msg_tx,
        ));
    }
    drop(msg_tx);
    if job.apply_fix {
        let mut conn = down.connect().await?;
        for setting in crate::fixsql::APPLY_SESSION_SETTINGS {
            conn.exec(setting).await?;
        }
        if job.fix_sql_binlog == Some(crate::config::FixSqlBinlog::Skip) {
            conn.exec(crate::fixsql::SKIP_BINLOG).await?;
        }
        agg.apply_conn = Some(conn);
    }
    loop {
        // Wait for the next message, but not past the time a checkpoint write is due.
        let wait = agg.ck.wait();
        let msg = tokio::select! {
            signal = interrupt.wait() => {
                // Stop reading: in-flight chunks are not counted, the prefix is saved.
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                agg.ck.write(agg.states).await;
                return Err(Error::Interrupted { signal });
            }
            _ = sleep_or_forever(wait) => {
                agg.ck.write(agg.states).await;
                continue;
            }
            // A task that panicked never sends what the others wait for: stop them all
            // rather than wait forever (the checkpoint keeps what finished).
            Some(Err(e)) = tasks.join_next(), if !tasks.is_empty() => {
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                agg.ck.write(agg.states).await;
                return Err(join_error(e));
            }
            msg = msg_rx.recv() => msg,
        };
        let Some(msg) = msg else { break };
        let table = msg.table();
        agg.handle(msg).await?;
        agg.finish_if_ready(table).await?;
        agg.ck.write_if_due(agg.states).await;
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(join_error)?;
    }
    agg.finish_rest().await
}

/// Sleep for `wait`, or forever when there is nothing to wait for.
async fn sleep_or_forever(wait: Option<std::time::Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

impl<'a> Aggregator<'a> {
    pub fn new(
        states: &'a mut [TableState],
        progress: &'a Progress,
        (fix_dir, undo_dir): (&'a Path, &'a Path),
        ck: &'a mut Checkpointer,
        header: FixHeader,
    ) -> Self {
        Aggregator {
            states,
            progress,
            fix_dir,
            undo_dir,
            ck,
            header,
            apply_conn: None,
        }
    }

    async fn handle(&mut self, msg: WorkerMsg) -> Result<()> {
        match msg {
            WorkerMsg::TableStarted { table } => self.table_started(table),
            WorkerMsg::TableChunks { table, chunks } => {
                self.states[table].chunks_total = Some(chunks);
            }
            WorkerMsg::ChunkQueued { table, seq, upper } => {
                self.ck.dirty |= self.states[table].chunks.queued(seq, upper);
            }
            WorkerMsg::Changes {
                table,
                seq,
                range,
                changes,
            } => self.changes(table, seq, range, changes).await?,
            WorkerMsg::ChunkDone {
                table,
                seq,
                up_count,
                down_count,
                different,
            } => {
                let st = &mut self.states[table];
                st.chunks_done += 1;
                st.report.chunks += 1;
                st.report.rows_upstream += up_count;
                st.report.rows_downstream += down_count;
                st.report.chunks_different += different as u64;
                if let Some(p) = &st.progress {
                    p.chunk_done();
                }
                // A part must be on disk before a checkpoint counts its chunk as finished.
                if st.unsynced_parts.remove(&seq) {
                    let paths: Vec<_> = [&st.parts, &st.undo_parts]
                        .into_iter()
                        .flatten()
                        .map(|dir| checkpoint::part_path(dir, seq))
                        .collect();
                    tokio::task::spawn_blocking(move || {
                        paths.iter().try_for_each(|p| sync_file(p))
                    })
                    .await
                    .map_err(join_error)??;
                }
                self.ck.dirty |= st.chunks.done(seq, up_count, down_count, different);
            }
            WorkerMsg::TableError { table, message } => {
                let st = &mut self.states[table];
                if st.report.error.is_none() {
                    st.report.error = Some(message);
                }
                st.chunks.freeze();
            }
            WorkerMsg::Overlaps { table, seq, keys } => {
                let st = &mut self.states[table];
                st.chunks.overlaps(seq, keys.len() as u64);
                let r = &mut st.report;
                r.overlapping_keys += keys.len() as u64;
                let room = MAX_OVERLAPS_LISTED.saturating_sub(r.overlaps.len());
                r.overlaps.extend(keys.into_iter().take(room));
            }
        }
        Ok(())
    }

    fn table_started(&mut self, table: usize) {
        let st = &mut self.states[table];
        st.started = Instant::now();
        st.report.data_checked = true;
        let p = self.progress.table_started(&st.report.name(), None);
        for _ in 0..st.report.resumed_chunks {
            p.chunk_done();
        }
        st.progress = Some(p);
    }

    /// Count a batch of row changes, write its fix SQL part, apply it (`--apply-fix`).
    async fn changes(
        &mut self,
        table: usize,
        seq: u64,
        range: KeyRange,
        changes: Vec<RowChange>,
    ) -> Result<()> {
        let st = &mut self.states[table];
        // Only tables with a plan are given to the producer, so only they send changes.
        let Some(plan) = st.plan.clone() else {
            return Ok(());
        };
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
        // History rows cannot be written one by one (their period columns are the server's
        // and DELETE only removes current rows): counted, never fixed.
        if changes.is_empty() || plan.history {
            return Ok(());
        }
        let fix_table = FixTable {
            target: &plan.target,
            columns: &plan.up_cols,
            key: plan.key.clone(),
        };
        if let (Some(dir), Some(undo_dir)) = (&st.parts, &st.undo_parts) {
            let described = range.describe(&plan.key_cols());
            let block = crate::fixsql::chunk_block(
                &described,
                &crate::fixsql::render_changes(&fix_table, &changes),
            );
            let (deletes, writes) = crate::fixsql::render_undo_split(&fix_table, &changes);
            append_part(dir, seq, &block)?;
            append_part(
                undo_dir,
                seq,
                &crate::fixsql::undo_part(&described, &deletes, &writes),
            )?;
            st.unsynced_parts.insert(seq);
        }
        if let Some(conn) = self.apply_conn.as_mut() {
            let stmts = crate::fixsql::statements_for_apply(&fix_table, &changes);
            if let Err(e) = apply(conn, &stmts).await {
                st.report.error = Some(format!("applying fix SQL failed: {e}"));
                st.chunks.freeze();
            }
            st.chunks.dirty(seq, range.clone());
        }
        st.dirty.push(range);
        Ok(())
    }

    /// Close `table` if its chunks are all done (only the table a message is about can
    /// have become ready: no scan of all tables per message).
    async fn finish_if_ready(&mut self, table: usize) -> Result<()> {
        let st = &mut self.states[table];
        if st.ready_to_finish() {
            let cleanup = finish_table(st, (self.fix_dir, self.undo_dir), &self.header).await?;
            self.ck.cleanup.extend(cleanup);
            self.ck.dirty = true;
        }
        Ok(())
    }

    /// The queue is drained: a table still open did not complete (an error stopped it).
    async fn finish_rest(&mut self) -> Result<()> {
        for st in self.states.iter_mut().filter(|s| !s.finished) {
            if st.report.error.is_none() {
                st.report.error = Some("data check did not complete".into());
            }
            let cleanup = finish_table(st, (self.fix_dir, self.undo_dir), &self.header).await?;
            self.ck.cleanup.extend(cleanup);
        }
        self.ck.write(self.states).await;
        Ok(())
    }
}
