//! A check worker: owns one connection per side and checks chunks from the queue until it
//! closes. Reads are idempotent, so a lost connection is replaced and the step retried
//! (`retry!`), except on connections that hold a pinned snapshot, which a new connection
//! could not rejoin.

use super::keyless::check_keyless;
use super::locate::check_range;
use super::msg::{ChunkJob, WorkerMsg};
use super::plan::TablePlan;
use crate::db::{Conn, Source};
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};

/// A differing range at most this many rows (on either side) is diffed row by row instead
/// of being bisected further.
pub const LEAF_ROWS: u64 = 2_000;
/// A differing range whose row counts alone differ by at least this many rows is streamed
/// and merged whole instead of being bisected: it holds at least that many differing rows,
/// and isolating k of them costs about log2(k) + 2 checksum scans of the range per side
/// (plus an OFFSET midpoint query per split), more than one streamed pass.
pub(super) const DENSE_COUNT_DIFF: u64 = 8;

/// The chunk a step works on, and where its results go.
pub(super) struct Chunk<'a> {
    pub table: usize,
    /// Position of the chunk in its table's key order.
    pub seq: u64,
    pub plan: &'a TablePlan,
    pub msgs: &'a mpsc::Sender<WorkerMsg>,
}

impl Chunk<'_> {
    /// Report the chunk finished with its row counts.
    pub async fn done(&self, up_count: u64, down_count: u64, different: bool) {
        let _ = self
            .msgs
            .send(WorkerMsg::ChunkDone {
                table: self.table,
                seq: self.seq,
                up_count,
                down_count,
                different,
            })
            .await;
    }
}

/// Per table: whether its most recently finished chunk had many differing rows (at least
/// `DENSE_COUNT_DIFF`), so that the next chunk is merged row by row without checksums first.
/// Shared by the workers; a hint only (chunks run in parallel), never a correctness input.
pub struct DenseHints(Vec<AtomicBool>);

impl DenseHints {
    pub fn new(tables: usize) -> DenseHints {
        DenseHints((0..tables).map(|_| AtomicBool::new(false)).collect())
    }

    pub(super) fn get(&self, table: usize) -> bool {
        self.0.get(table).is_some_and(|b| b.load(Ordering::Relaxed))
    }

    pub(super) fn set(&self, table: usize, dense: bool) {
        if let Some(b) = self.0.get(table) {
            b.store(dense, Ordering::Relaxed);
        }
    }
}

/// How often an idempotent read is retried on a new connection after its connection broke.
pub(super) const MAX_RETRIES: u32 = 3;

/// A worker's two connections, and how to replace them.
pub(super) struct Sides {
    up: Source,
    down: Source,
    pub(super) uc: Conn,
    pub(super) dc: Conn,
    /// A pinned snapshot cannot be rejoined by a new connection: no retries then.
    pub(super) pinned: bool,
}

impl Sides {
    /// Replace both connections after a lost one (attempt `attempt`, with backoff).
    pub(super) async fn reconnect(&mut self, attempt: u32, cause: &Error) -> Result<()> {
        tracing::warn!("{cause}; reconnecting and retrying ({attempt}/{MAX_RETRIES})");
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        let (uc, dc) = tokio::try_join!(self.up.connect(), self.down.connect())?;
        self.uc = uc;
        self.dc = dc;
        Ok(())
    }
}

/// Run an idempotent read step `$body` (a future using the connections `$uc`, `$dc`); if a
/// connection was lost (killed, server restart), reconnect both sides and run it again, a
/// few times with backoff, unless the connections hold a pinned snapshot. Steps never write,
/// and their results are only published after they succeed, so a retry counts nothing twice.
macro_rules! retry {
    ($ctx:expr, |$uc:ident, $dc:ident| $body:expr) => {{
        let mut attempt = 0u32;
        loop {
            let result = {
                let $uc: &mut $crate::db::Conn = &mut $ctx.uc;
                let $dc: &mut $crate::db::Conn = &mut $ctx.dc;
                $body.await
            };
            match result {
                Err(e)
                    if e.is_connection_lost()
                        && !$ctx.pinned
                        && attempt < $crate::check::worker::MAX_RETRIES =>
                {
                    attempt += 1;
                    $ctx.reconnect(attempt, &e).await?;
                }
                other => break other,
            }
        }
    }};
}

pub(super) use retry;

/// A worker: owns one connection per side and checks chunks until the queue closes.
///
/// `pinned` says, per side, that the connection holds a snapshot a new connection could not
/// rejoin: after an error on such a worker its remaining jobs fail (reported per table)
/// instead of being read from live data. Unpinned connections (and TiDB ones, whose snapshot
/// is set again on connect) are replaced and the failed step retried.
pub async fn work(
    up: Source,
    down: Source,
    initial: (Conn, Conn),
    pinned: (bool, bool),
    jobs: Arc<Mutex<mpsc::Receiver<ChunkJob>>>,
    hints: Arc<DenseHints>,
    msgs: mpsc::Sender<WorkerMsg>,
) {
    let pinned = pinned.0 || pinned.1;
    let mut sides = Some(Sides {
        up: up.clone(),
        down: down.clone(),
        uc: initial.0,
        dc: initial.1,
        pinned,
    });
    let mut lost: Option<String> = None;
    loop {
        let job = { jobs.lock().await.recv().await };
        let Some(job) = job else { break };
        let table = job.table();
        let seq = job.seq();
        if let Some(reason) = &lost {
            fail(
                &msgs,
                table,
                seq,
                Error::Table {
                    table: format!("#{table}"),
                    message: format!("not checked: the pinned snapshot was lost ({reason})"),
                },
            )
            .await;
            continue;
        }
        if sides.is_none() {
            match tokio::try_join!(up.connect(), down.connect()) {
                Ok((uc, dc)) => {
                    sides = Some(Sides {
                        up: up.clone(),
                        down: down.clone(),
                        uc,
                        dc,
                        pinned,
                    })
                }
                Err(e) => {
                    fail(&msgs, table, seq, e).await;
                    continue;
                }
            }
        }
        let Some(ctx) = sides.as_mut() else {
            continue;
        };
        let result = match &job {
            ChunkJob::Range { plan, range, .. } => {
                let chunk = Chunk {
                    table,
                    seq,
                    plan,
                    msgs: &msgs,
                };
                check_range(ctx, &chunk, range.clone(), &hints).await
            }
            ChunkJob::Keyless { plan, .. } => check_keyless(ctx, table, plan, &msgs).await,
        };
        if let Err(e) = result {
            if pinned {
                lost = Some(e.to_string());
            }
            fail(&msgs, table, seq, e).await;
            // The connections may be in an unknown state: start afresh for the next job.
            sides = None;
        }
    }
    if let Some(ctx) = sides {
        ctx.uc.close().await;
        ctx.dc.close().await;
    }
}

async fn fail(msgs: &mpsc::Sender<WorkerMsg>, table: usize, seq: u64, e: Error) {
    let _ = msgs
        .send(WorkerMsg::TableError {
            table,
            message: e.to_string(),
        })
        .await;
    let _ = msgs
        .send(WorkerMsg::ChunkDone {
            table,
            seq,
            up_count: 0,
            down_count: 0,
            different: true,
        })
        .await;
}
