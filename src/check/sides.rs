//! What a worker's steps share: the chunk being checked, the worker's two connections and
//! how they are replaced (`retry!`), the per-table dense-difference hints, and the size
//! thresholds the steps decide by. Every step module (`locate`, `merge`, `keyless`) builds
//! on this one; none of them on the worker loop.

use super::msg::WorkerMsg;
use super::plan::TablePlan;
use crate::db::{Conn, Source};
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// A differing range at most this many rows (on either side) is diffed row by row instead
/// of being narrowed further.
pub const LEAF_ROWS: u64 = 2_000;

/// A chunk whose merge found at least this many differing rows marks its table dense: the
/// next chunk is merged directly, without a checksum first (`DenseHints`).
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
    /// Shard merge: the worker's further upstream connections.
    pub(super) parts: PartConns,
}

/// Shard merge: every upstream source, and a worker's connections to them beyond `uc`
/// (which is source 0, slot 0), keyed by `(source, slot)` as [`super::plan::UpPart`] names
/// them. Empty when no target is merged.
#[derive(Default)]
pub(super) struct PartConns {
    pub sources: Arc<[Source]>,
    pub conns: Vec<((usize, usize), Conn)>,
}

impl PartConns {
    /// New connections for the same slots.
    pub async fn reopen(&self) -> Result<PartConns> {
        let slots: Vec<_> = self.conns.iter().map(|(k, _)| *k).collect();
        PartConns::open(self.sources.clone(), &slots).await
    }

    /// Connections for `slots` of `sources`.
    pub async fn open(sources: Arc<[Source]>, slots: &[(usize, usize)]) -> Result<PartConns> {
        let mut conns = Vec::with_capacity(slots.len());
        for &slot in slots {
            conns.push((slot, sources[slot.0].connect().await?));
        }
        Ok(PartConns { sources, conns })
    }

    /// The `(source, slot)` keys held.
    pub fn slots(&self) -> Vec<(usize, usize)> {
        self.conns.iter().map(|(k, _)| *k).collect()
    }

    pub async fn close(self) {
        for (_, c) in self.conns {
            c.close().await;
        }
    }
}

impl Sides {
    /// Replace the connections after a lost one (attempt `attempt`, with backoff).
    pub(super) async fn reconnect(&mut self, attempt: u32, cause: &Error) -> Result<()> {
        tracing::warn!("{cause}; reconnecting and retrying ({attempt}/{MAX_RETRIES})");
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        let (uc, dc, parts) =
            tokio::try_join!(self.up.connect(), self.down.connect(), self.parts.reopen())?;
        self.uc = uc;
        self.dc = dc;
        self.parts = parts;
        Ok(())
    }

    /// The connections that read `parts` (in their order), and the downstream's.
    pub(super) fn part_conns(
        &mut self,
        parts: &[super::plan::UpPart],
    ) -> Result<(Vec<&mut Conn>, &mut Conn)> {
        let mut by_slot: std::collections::HashMap<(usize, usize), &mut Conn> =
            self.parts.conns.iter_mut().map(|(k, c)| (*k, c)).collect();
        by_slot.insert((0, 0), &mut self.uc);
        let mut out = Vec::with_capacity(parts.len());
        for p in parts {
            let conn = by_slot.remove(&(p.source, p.slot)).ok_or_else(|| {
                Error::Internal(format!(
                    "no worker connection for upstream source {} slot {}",
                    p.source, p.slot
                ))
            })?;
            out.push(conn);
        }
        Ok((out, &mut self.dc))
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
