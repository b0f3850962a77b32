//! The producer: splits each keyed table on the upstream into chunk ranges, in key order,
//! and queues them lazily (a bounded queue: a huge table is never split up front).
//! Integer keys are cut by value on a power-of-two grid from `EXPLAIN` estimates; keys led
//! by an integer or a string are halved at real keys near interpolated probes, also from
//! estimates; other keys are walked (ARCHITECTURE.md, "Chunking").

use super::msg::{ChunkJob, ChunkStart, WorkerMsg};
use super::plan::{Side, TablePlan};
use super::probes::Probes;
use crate::chunk::{int_row, parse_int, row_int, Grid, IntRange, KeyRange};
use crate::db::{Conn, Source};
use crate::error::Result;
use crate::row::Row;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Walk each keyed table's chunk key on the upstream and queue chunk ranges, numbered in key
/// order per table (`seq`, from `ChunkStart::seq`). Each chunk is announced to the
/// aggregator (`ChunkQueued`, with its upper bound) before a worker can take it. A target
/// merged from several upstream tables is split on the downstream, which holds their union
/// (as sync-diff-inspector splits shard merges), through [`TablePlan::swapped`].
pub async fn produce(
    (up, down): (Source, Source),
    plans: Vec<(usize, Arc<TablePlan>, ChunkStart)>,
    jobs: mpsc::Sender<ChunkJob>,
    msgs: mpsc::Sender<WorkerMsg>,
) {
    let mut conn = match up.connect().await {
        Ok(c) => Some(c),
        Err(e) => {
            let message = crate::snapshot::tidb::explain(e).to_string();
            for (table, _, start) in &plans {
                let _ = msgs
                    .send(WorkerMsg::TableError {
                        table: *table,
                        message: message.clone(),
                    })
                    .await;
                let _ = msgs
                    .send(WorkerMsg::TableChunks {
                        table: *table,
                        chunks: start.seq,
                    })
                    .await;
            }
            None
        }
    };
    let Some(up_conn) = conn.as_mut() else { return };
    let mut down_conn: Option<Conn> = None;
    for (table, plan, start) in plans {
        let _ = msgs.send(WorkerMsg::TableStarted { table }).await;
        if start.done {
            let _ = msgs
                .send(WorkerMsg::TableChunks {
                    table,
                    chunks: start.seq,
                })
                .await;
            continue;
        }
        if plan.key.is_none() {
            let queued = WorkerMsg::ChunkQueued {
                table,
                seq: 0,
                upper: None,
            };
            let _ = msgs.send(queued).await;
            let _ = jobs
                .send(ChunkJob::Keyless {
                    table,
                    plan: plan.clone(),
                })
                .await;
            let _ = msgs.send(WorkerMsg::TableChunks { table, chunks: 1 }).await;
            continue;
        }
        let (split_plan, conn) = match plan.is_merged() {
            false => (plan.clone(), Ok(&mut *up_conn)),
            true => (
                Arc::new(plan.swapped()),
                open_once(&mut down_conn, &down).await,
            ),
        };
        let mut out = Emitter {
            table,
            plan: &plan,
            split: split_plan,
            seq: start.seq,
            jobs: &jobs,
            msgs: &msgs,
        };
        let split = match conn {
            Ok(conn) => split_table(conn, &mut out, start.lower).await,
            Err(e) => Err(e),
        };
        match split {
            Ok(true) => {}
            // The workers are gone.
            Ok(false) => return,
            Err(e) => {
                let _ = msgs
                    .send(WorkerMsg::TableError {
                        table,
                        message: format!("splitting failed: {}", crate::snapshot::tidb::explain(e)),
                    })
                    .await;
            }
        }
        let chunks = out.seq;
        let _ = msgs.send(WorkerMsg::TableChunks { table, chunks }).await;
    }
}

/// Split one keyed table from `lower` on `conn` (the side `out.split` reads as upstream).
/// Returns false when the workers are gone.
async fn split_table(conn: &mut Conn, out: &mut Emitter<'_>, lower: Option<Row>) -> Result<bool> {
    if out.split.fits_one_chunk() {
        Ok(out.emit(KeyRange { lower, upper: None }).await)
    } else if out.split.int_key() {
        split_int(conn, out, lower).await
    } else if out.split.probe_lead().is_some() {
        split_by_probes(conn, out, lower).await
    } else {
        walk(conn, out, lower, None).await
    }
}

/// The connection in `slot`, opened on first use.
async fn open_once<'c>(slot: &'c mut Option<Conn>, s: &Source) -> Result<&'c mut Conn> {
    if slot.is_none() {
        *slot = Some(s.connect().await?);
    }
    Ok(slot.as_mut().expect("just opened"))
}

/// Queues a table's chunks in key order.
struct Emitter<'a> {
    table: usize,
    /// The plan the queued chunks carry.
    plan: &'a Arc<TablePlan>,
    /// The plan the splitting queries use (the downstream's, swapped, for a merged target).
    split: Arc<TablePlan>,
    /// Sequence number of the next chunk.
    seq: u64,
    jobs: &'a mpsc::Sender<ChunkJob>,
    msgs: &'a mpsc::Sender<WorkerMsg>,
}

impl Emitter<'_> {
    /// Announce and queue a chunk. False when the workers are gone.
    async fn emit(&mut self, range: KeyRange) -> bool {
        let seq = self.seq;
        self.seq += 1;
        let queued = WorkerMsg::ChunkQueued {
            table: self.table,
            seq,
            upper: range.upper.clone(),
        };
        let _ = self.msgs.send(queued).await;
        let job = ChunkJob::Range {
            table: self.table,
            seq,
            plan: self.plan.clone(),
            range,
        };
        self.jobs.send(job).await.is_ok()
    }
}

/// Split `(lower, upper]` (`upper` `None`: to the end) by walking the key index: each chunk
/// ends at the key `chunk_size - 1` rows past its start. Returns false when the workers
/// are gone.
async fn walk(
    conn: &mut Conn,
    out: &mut Emitter<'_>,
    mut lower: Option<Row>,
    upper: Option<Row>,
) -> Result<bool> {
    let plan = out.split.clone();
    loop {
        let open = KeyRange {
            lower: lower.clone(),
            upper: upper.clone(),
        };
        let sql = plan.key_at_sql(Side::Up, &open, plan.chunk_size - 1);
        let (range, last) = match conn.first(&sql).await? {
            Some(bound) if Some(&bound) != upper.as_ref() => {
                lower = Some(bound.clone());
                let range = KeyRange {
                    lower: open.lower,
                    upper: Some(bound),
                };
                (range, false)
            }
            // The last chunk, up to `upper`.
            _ => (open, true),
        };
        if !out.emit(range).await {
            return Ok(false);
        }
        if last {
            return Ok(true);
        }
    }
}

/// Split a table whose leading key column is an integer or a string (not a single integer
/// key, which [`split_int`] cuts on a grid) without reading its rows: `(lower, last key]`
/// is halved at real keys near interpolated probes ([`crate::chunk::between`], one index
/// dive each) until the server's row estimate of a range, calibrated by one exact count,
/// is at most 1.5 chunks; then `(last key, +∞)` catches rows beyond it. Ranges are split
/// depth first, left half first, so chunks are queued in key order. Where no probe lands
/// strictly inside a range that is still too large (one leading value holding more than a
/// chunk, a collation that orders unlike code points), that range is walked. Returns false
/// when the workers are gone.
async fn split_by_probes(
    conn: &mut Conn,
    out: &mut Emitter<'_>,
    resume_from: Option<Row>,
) -> Result<bool> {
    let plan = out.split.clone();
    let (Some(first), Some(last)) = (
        conn.first(&plan.key_end_sql(false)).await?,
        conn.first(&plan.key_end_sql(true)).await?,
    ) else {
        // An empty upstream: one open chunk.
        let lower = resume_from;
        return Ok(out.emit(KeyRange { lower, upper: None }).await);
    };
    let mut probes = Probes::new(&plan, &first, &last);
    let whole = KeyRange {
        lower: resume_from.clone(),
        upper: Some(last.clone()),
    };
    let whole_estimate = estimate(conn, &plan, &whole).await?;
    if whole_estimate <= 0 {
        // No row estimates: walk instead of cutting blind.
        return walk(conn, out, resume_from, None).await;
    }
    // The first range popped is `whole`, already estimated.
    let mut known = Some(whole_estimate);
    let target = plan.chunk_size.min(i64::MAX as u64) as f64;
    // Exact rows per estimated row, from the first range small enough to be a chunk.
    let mut scale: Option<f64> = None;
    // Splits made beyond what a balanced halving needs: past this, estimates are not to
    // be trusted and the rest is walked.
    let mut budget = 64u32;
    let mut stack = vec![whole];
    while let Some(range) = stack.pop() {
        if budget == 0 {
            if !walk(conn, out, range.lower, range.upper).await? {
                return Ok(false);
            }
            continue;
        }
        let est = match known.take() {
            Some(e) => e,
            None => estimate(conn, &plan, &range).await?,
        };
        let est = est.max(0) as f64;
        let rows = match scale {
            Some(s) => est * s,
            None if est <= target * 1.5 => {
                let exact = count_rows(conn, &plan, &range).await? as f64;
                scale = Some(exact.max(1.0) / est.max(1.0));
                exact
            }
            None => est,
        };
        if rows <= target * 1.5 {
            budget += 2;
            if !out.emit(range).await {
                return Ok(false);
            }
            continue;
        }
        budget -= 1;
        match probes.key_inside(conn, &plan, &range).await? {
            Some(mid) => {
                let (left, right) = range.split_at(mid);
                stack.push(right);
                stack.push(left);
            }
            None => {
                if !walk(conn, out, range.lower, range.upper).await? {
                    return Ok(false);
                }
            }
        }
    }
    Ok(out
        .emit(KeyRange {
            lower: Some(last),
            upper: None,
        })
        .await)
}

/// Split a table keyed by one integer column by key value: `(−∞, min − 1]`, then blocks of
/// a [`Grid`] anchored at `min − 1`, then `(max, +∞)`. At each position the largest aligned
/// block whose row estimate stays within 1.5 chunks is taken (`EXPLAIN` dives, calibrated by
/// one exact count), so dense stretches get narrow chunks and gaps wide ones, and the choice
/// depends only on the position and the data. The open chunks at both ends catch keys
/// outside the upstream's MIN/MAX (downstream extras, rows written meanwhile). Returns false
/// when the workers are gone.
async fn split_int(
    conn: &mut Conn,
    out: &mut Emitter<'_>,
    resume_from: Option<Row>,
) -> Result<bool> {
    let plan = out.split.clone();
    let bounds = conn.first(&plan.key_min_max_sql()).await?;
    let int = |i: usize| {
        bounds
            .as_ref()
            .and_then(|r| r.get(i).cloned().flatten())
            .and_then(|v| parse_int(&v))
    };
    let (Some(min), Some(max)) = (int(0), int(1)) else {
        // An empty upstream: one open chunk.
        let lower = resume_from;
        return Ok(out.emit(KeyRange { lower, upper: None }).await);
    };
    let Some(cal) = Calibration::measure(conn, &plan, min - 1, max).await? else {
        // The server gives no row estimates (an unknown engine, or EXPLAIN without `rows`):
        // walk the index instead of cutting blind.
        tracing::debug!(
            "{}: no row estimate from EXPLAIN; walking the key",
            plan.target
        );
        return walk(conn, out, resume_from, None).await;
    };
    let origin = min - 1;
    let mut cursor = match &resume_from {
        Some(row) => match row_int(row) {
            Some(v) => v,
            None => return walk(conn, out, resume_from, None).await,
        },
        None => {
            let below = KeyRange {
                lower: None,
                upper: Some(int_row(origin)),
            };
            if !out.emit(below).await {
                return Ok(false);
            }
            origin
        }
    };
    let grid = Grid { origin };
    let mut level = Grid::level_for(cal.base);
    while cursor < max {
        let blocks = Blocks { cursor, max };
        level = fitting_level(conn, &plan, &cal, blocks, level, grid.top_level(cursor)).await?;
        let chunk = blocks.at(level);
        let range = KeyRange {
            lower: Some(int_row(chunk.lower)),
            upper: Some(int_row(chunk.upper)),
        };
        if !out.emit(range).await {
            return Ok(false);
        }
        cursor = chunk.upper;
    }
    Ok(out
        .emit(KeyRange {
            lower: Some(int_row(cursor)),
            upper: None,
        })
        .await)
}

/// How the server's row estimates translate into rows, for one table.
struct Calibration {
    /// Rows per chunk.
    target: i128,
    /// Exact rows per estimated row, from one counted block.
    scale: f64,
    /// The key span of about one chunk at the table's average density.
    base: i128,
}

impl Calibration {
    /// Estimates are biased (InnoDB extrapolates from a few leaf pages): the first block of
    /// a chunk's width is counted exactly, and every estimate is scaled by the ratio found.
    /// `None` when the server gives no estimates.
    async fn measure(
        conn: &mut Conn,
        plan: &TablePlan,
        origin: i128,
        max: i128,
    ) -> Result<Option<Calibration>> {
        let target = plan.chunk_size.min(i64::MAX as u64) as i128;
        let span = max - origin;
        let whole = estimate(
            conn,
            plan,
            &IntRange {
                lower: origin,
                upper: max,
            }
            .key_range(),
        )
        .await?;
        if whole <= 0 {
            return Ok(None);
        }
        // About one chunk from the start (halved while the estimate says far more: skewed
        // keys), so the exact count stays cheap.
        let mut width = (span * target / whole.max(1)).clamp(1, span);
        let first = loop {
            let r = IntRange {
                lower: origin,
                upper: origin + width,
            };
            if width == 1 || estimate(conn, plan, &r.key_range()).await? <= 2 * target {
                break r;
            }
            width /= 2;
        };
        let exact = count_rows(conn, plan, &first.key_range()).await?;
        let scale =
            exact.max(1) as f64 / estimate(conn, plan, &first.key_range()).await?.max(1) as f64;
        let base = (span as f64 * target as f64 / (whole as f64 * scale).max(1.0)) as i128;
        Ok(Some(Calibration {
            target,
            scale,
            base,
        }))
    }

    /// Whether a block of this estimate makes an acceptable chunk (at most 1.5 chunks).
    fn fits(&self, estimate: i128) -> bool {
        (estimate as f64 * self.scale) <= self.target as f64 * 1.5
    }
}

/// The aligned blocks that start at `cursor`, capped at `max`.
#[derive(Clone, Copy)]
struct Blocks {
    cursor: i128,
    max: i128,
}

impl Blocks {
    fn at(self, level: u32) -> IntRange {
        IntRange {
            lower: self.cursor,
            upper: (self.cursor + Grid::block(level)).min(self.max),
        }
    }
}

/// The largest level in `0..=top` whose block fits. Estimates grow with the block, so any
/// search finds the same level; galloping from the previous chunk's level (`guess`) takes
/// about two dives on even data and a few more where the density changes. Nothing fits: a
/// single key's block (more rows than a chunk cannot share one key).
async fn fitting_level(
    conn: &mut Conn,
    plan: &TablePlan,
    cal: &Calibration,
    blocks: Blocks,
    guess: u32,
    top: u32,
) -> Result<u32> {
    let (mut lo, mut hi) = (None::<u32>, None::<u32>);
    let guess = guess.min(top);
    let mut fits = async |l: u32| -> Result<bool> {
        Ok(cal.fits(estimate(conn, plan, &blocks.at(l).key_range()).await?))
    };
    if fits(guess).await? {
        lo = Some(guess);
        let mut step = 1;
        while let Some(l) = lo {
            if l == top || blocks.at(l).upper == blocks.max {
                break;
            }
            let next = (l + step).min(top);
            if fits(next).await? {
                lo = Some(next);
                step *= 2;
            } else {
                hi = Some(next);
                break;
            }
        }
    } else {
        hi = Some(guess);
        let mut step = 1;
        while let Some(h) = hi {
            if h == 0 {
                break;
            }
            let next = h.saturating_sub(step);
            if fits(next).await? {
                lo = Some(next);
                break;
            }
            hi = Some(next);
            step *= 2;
        }
    }
    // Binary search between a level that fits and one that does not.
    while let (Some(l), Some(h)) = (lo, hi) {
        if h <= l + 1 {
            break;
        }
        let mid = l + (h - l) / 2;
        if fits(mid).await? {
            lo = Some(mid);
        } else {
            hi = Some(mid);
        }
    }
    Ok(lo.unwrap_or(0))
}

/// The exact number of upstream rows in a key range.
async fn count_rows(conn: &mut Conn, plan: &TablePlan, range: &KeyRange) -> Result<i128> {
    let row = conn.first(&plan.count_sql(range)).await?;
    Ok(row
        .as_ref()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|v| parse_int(&v))
        .unwrap_or(0))
}

/// The server's row estimate for a key range (`rows` on MySQL/MariaDB, `estRows` on TiDB);
/// 0 when it gives none.
async fn estimate(conn: &mut Conn, plan: &TablePlan, range: &KeyRange) -> Result<i128> {
    let row = conn.first_named(&plan.estimate_sql(range)).await?;
    Ok(row
        .and_then(|r| {
            r.get("rows")
                .or_else(|| r.get("estRows"))
                .cloned()
                .flatten()
        })
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v.max(0.0) as i128))
}
