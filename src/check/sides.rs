//! What a worker's steps share: the chunk being checked, the worker's two connections and
//! how they are replaced (`retry!`), the per-table dense-difference hints, and the size
//! thresholds the steps decide by. Every step module (`locate`, `merge`, `keyless`) builds
//! on this one; none of them on the worker loop.

use super::msg::WorkerMsg;
use super::plan::TablePlan;
use crate::db::{Conn, Source};
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

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
    pub(super) up: Source,
    pub(super) down: Source,
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
                        && attempt < $crate::check::sides::MAX_RETRIES =>
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
