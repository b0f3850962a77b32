//! The chunk producer and the check workers.

use super::plan::{Side, TablePlan};
use crate::checksum::{parse_checksum, Checksum};
use crate::chunk::{coalesce, int_row, parse_int, row_int, Buckets, Grid, IntRange, KeyRange};
use crate::diff::{MultisetDiff, RowChange, RowLayout, Step};
use crate::error::{Error, Result};
use crate::row::Row;
use crate::source::{cell_u64, Conn, Source};
use std::collections::{BTreeMap, BTreeSet};
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
const DENSE_COUNT_DIFF: u64 = 8;
/// Row changes are sent to the aggregator in batches of at most this many (bounded memory).
const CHANGE_BATCH: usize = 1_000;
/// Keyless tables: how many differing hash buckets are diffed per scan.
const BUCKETS_PER_SCAN: usize = 4;

/// Work for a check worker.
pub enum ChunkJob {
    Range {
        table: usize,
        /// Position of the chunk in the table's key order (0, 1, …).
        seq: u64,
        plan: Arc<TablePlan>,
        range: KeyRange,
    },
    Keyless {
        table: usize,
        plan: Arc<TablePlan>,
    },
}

impl ChunkJob {
    fn table(&self) -> usize {
        match self {
            ChunkJob::Range { table, .. } | ChunkJob::Keyless { table, .. } => *table,
        }
    }

    /// The chunk's position in its table's key order (a keyless table is one chunk, 0).
    fn seq(&self) -> u64 {
        match self {
            ChunkJob::Range { seq, .. } => *seq,
            ChunkJob::Keyless { .. } => 0,
        }
    }
}

/// Messages from the producer and workers to the aggregator.
pub enum WorkerMsg {
    TableStarted {
        table: usize,
    },
    /// The producer finished splitting a table into this many chunks.
    TableChunks {
        table: usize,
        chunks: u64,
    },
    /// The producer queued chunk `seq`; `upper` is its upper bound (`None` for the last).
    ChunkQueued {
        table: usize,
        seq: u64,
        upper: Option<Row>,
    },
    /// Row differences found in `range`, part of chunk `seq`.
    Changes {
        table: usize,
        seq: u64,
        range: KeyRange,
        changes: Vec<RowChange>,
    },
    ChunkDone {
        table: usize,
        seq: u64,
        up_count: u64,
        down_count: u64,
        different: bool,
    },
    TableError {
        table: usize,
        message: String,
    },
}

/// Where the producer starts a table: after the finished prefix of a resumed run.
#[derive(Debug, Clone, Default)]
pub struct ChunkStart {
    /// Sequence number of the first chunk to produce; chunks before it are finished.
    pub seq: u64,
    /// That chunk's (exclusive) lower bound: the upper bound of the last finished chunk.
    pub lower: Option<Row>,
    /// Every chunk of the table is finished already: nothing to produce.
    pub done: bool,
}

/// Walk each keyed table's chunk key on the upstream and queue chunk ranges, numbered in key
/// order per table (`seq`, from `ChunkStart::seq`). Each chunk is announced to the
/// aggregator (`ChunkQueued`, with its upper bound) before a worker can take it.
pub async fn produce(
    up: Source,
    plans: Vec<(usize, Arc<TablePlan>, ChunkStart)>,
    jobs: mpsc::Sender<ChunkJob>,
    msgs: mpsc::Sender<WorkerMsg>,
) {
    let mut conn = match up.connect().await {
        Ok(c) => Some(c),
        Err(e) => {
            for (table, _, start) in &plans {
                let _ = msgs
                    .send(WorkerMsg::TableError {
                        table: *table,
                        message: e.to_string(),
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
    let Some(conn) = conn.as_mut() else { return };
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
        let mut out = Emitter {
            table,
            plan: &plan,
            seq: start.seq,
            jobs: &jobs,
            msgs: &msgs,
        };
        let split = if plan.int_key() {
            split_int(conn, &mut out, start.lower).await
        } else {
            walk(conn, &mut out, start.lower).await
        };
        match split {
            Ok(true) => {}
            // The workers are gone.
            Ok(false) => return,
            Err(e) => {
                let _ = msgs
                    .send(WorkerMsg::TableError {
                        table,
                        message: format!("splitting failed: {e}"),
                    })
                    .await;
            }
        }
        let chunks = out.seq;
        let _ = msgs.send(WorkerMsg::TableChunks { table, chunks }).await;
    }
}

/// Queues a table's chunks in key order.
struct Emitter<'a> {
    table: usize,
    plan: &'a Arc<TablePlan>,
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

/// Split by walking the key index: each chunk ends at the key `chunk_size - 1` rows past
/// its start. Returns false when the workers are gone.
async fn walk(conn: &mut Conn, out: &mut Emitter<'_>, mut lower: Option<Row>) -> Result<bool> {
    let plan = out.plan.clone();
    loop {
        let open = KeyRange {
            lower: lower.clone(),
            upper: None,
        };
        let sql = plan.key_at_sql(Side::Up, &open, plan.chunk_size - 1);
        let range = match conn.first(&sql).await? {
            Some(bound) => {
                lower = Some(bound.clone());
                KeyRange {
                    lower: open.lower,
                    upper: Some(bound),
                }
            }
            // The last chunk: no upper bound.
            None => open,
        };
        let last = range.upper.is_none();
        if !out.emit(range).await {
            return Ok(false);
        }
        if last {
            return Ok(true);
        }
    }
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
    let plan = out.plan.clone();
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
    let origin = min - 1;
    let target = plan.chunk_size.min(i64::MAX as u64) as i128;
    let span = max - origin;
    // Estimates are biased (InnoDB extrapolates from a few leaf pages): the first block of
    // a chunk's width is counted exactly, and every estimate is scaled by the ratio found.
    let whole = estimate(
        conn,
        &plan,
        IntRange {
            lower: origin,
            upper: max,
        },
    )
    .await?;
    if whole <= 0 {
        // The server gives no row estimates (an unknown engine, or EXPLAIN without `rows`):
        // walk the index instead of cutting blind.
        tracing::debug!(
            "{}: no row estimate from EXPLAIN; walking the key",
            plan.target
        );
        return walk(conn, out, resume_from).await;
    }
    // About one chunk from the start (halved while the estimate says far more: skewed keys),
    // so the exact count stays cheap.
    let mut width = (span * target / whole.max(1)).clamp(1, span);
    let first = loop {
        let r = IntRange {
            lower: origin,
            upper: origin + width,
        };
        if width == 1 || estimate(conn, &plan, r).await? <= 2 * target {
            break r;
        }
        width /= 2;
    };
    let exact = count_rows(conn, &plan, first).await?;
    let scale = exact.max(1) as f64 / estimate(conn, &plan, first).await?.max(1) as f64;
    let base = (span as f64 * target as f64 / (whole as f64 * scale).max(1.0)) as i128;
    let grid = Grid { origin };
    let fits = |est: i128| (est as f64 * scale) <= target as f64 * 1.5;

    let mut cursor = match &resume_from {
        Some(row) => match row_int(row) {
            Some(v) => v,
            None => return walk(conn, out, resume_from).await,
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
    let mut level = Grid::level_for(base);
    while cursor < max {
        let top = grid.top_level(cursor);
        let block = |l: u32| IntRange {
            lower: cursor,
            upper: (cursor + Grid::block(l)).min(max),
        };
        // The largest level in 0..=top whose block fits. Estimates grow with the block, so
        // any search finds the same level; galloping from the previous chunk's level takes
        // about two dives on even data and a few more where the density changes.
        let (mut lo, mut hi) = (None::<u32>, None::<u32>);
        let guess = level.min(top);
        if fits(estimate(conn, &plan, block(guess)).await?) {
            lo = Some(guess);
            let mut step = 1;
            while let Some(l) = lo {
                if l == top || block(l).upper == max {
                    break;
                }
                let next = (l + step).min(top);
                if fits(estimate(conn, &plan, block(next)).await?) {
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
                if fits(estimate(conn, &plan, block(next)).await?) {
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
            if fits(estimate(conn, &plan, block(mid)).await?) {
                lo = Some(mid);
            } else {
                hi = Some(mid);
            }
        }
        // Nothing fits: a single key's block (more rows than a chunk cannot share one key).
        level = lo.unwrap_or(0);
        let chunk = block(level);
        if !out
            .emit(KeyRange {
                lower: Some(int_row(chunk.lower)),
                upper: Some(int_row(chunk.upper)),
            })
            .await
        {
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

/// The exact number of upstream rows in a key range.
async fn count_rows(conn: &mut Conn, plan: &TablePlan, range: IntRange) -> Result<i128> {
    let row = conn.first(&plan.count_sql(range)).await?;
    Ok(row
        .as_ref()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|v| parse_int(&v))
        .unwrap_or(0))
}

/// The server's row estimate for a key range (`rows` on MySQL/MariaDB, `estRows` on TiDB);
/// 0 when it gives none.
async fn estimate(conn: &mut Conn, plan: &TablePlan, range: IntRange) -> Result<i128> {
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

/// Per table: whether its most recently finished chunk had many differing rows (at least
/// `DENSE_COUNT_DIFF`), so that the next chunk is merged row by row without checksums first.
/// Shared by the workers; a hint only (chunks run in parallel), never a correctness input.
pub struct DenseHints(Vec<AtomicBool>);

impl DenseHints {
    pub fn new(tables: usize) -> DenseHints {
        DenseHints((0..tables).map(|_| AtomicBool::new(false)).collect())
    }

    fn get(&self, table: usize) -> bool {
        self.0.get(table).is_some_and(|b| b.load(Ordering::Relaxed))
    }

    fn set(&self, table: usize, dense: bool) {
        if let Some(b) = self.0.get(table) {
            b.store(dense, Ordering::Relaxed);
        }
    }
}

/// How often an idempotent read is retried on a new connection after its connection broke.
const MAX_RETRIES: u32 = 3;

/// A worker's two connections, and how to replace them.
struct Sides {
    up: Source,
    down: Source,
    uc: Conn,
    dc: Conn,
    /// A pinned snapshot cannot be rejoined by a new connection: no retries then.
    pinned: bool,
}

impl Sides {
    /// Replace both connections after a lost one (attempt `attempt`, with backoff).
    async fn reconnect(&mut self, attempt: u32, cause: &Error) -> Result<()> {
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
                let $uc: &mut Conn = &mut $ctx.uc;
                let $dc: &mut Conn = &mut $ctx.dc;
                $body.await
            };
            match result {
                Err(e) if e.is_connection_lost() && !$ctx.pinned && attempt < MAX_RETRIES => {
                    attempt += 1;
                    $ctx.reconnect(attempt, &e).await?;
                }
                other => break other,
            }
        }
    }};
}

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
                check_range(ctx, table, seq, plan, range.clone(), &hints, &msgs).await
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

async fn checksum(
    conn: &mut Conn,
    plan: &TablePlan,
    side: Side,
    range: &KeyRange,
) -> Result<Checksum> {
    let sql = plan.checksum_sql(side, range);
    let row = conn.first(&sql).await?.unwrap_or_default();
    parse_checksum(
        row.first().and_then(|v| v.as_deref()),
        row.get(1).and_then(|v| v.as_deref()),
    )
    .ok_or_else(|| Error::Query {
        source_name: conn.source_name().to_string(),
        sql,
        message: "unexpected checksum result".into(),
    })
}

async fn checksum_both(
    uc: &mut Conn,
    dc: &mut Conn,
    plan: &TablePlan,
    range: &KeyRange,
) -> Result<(Checksum, Checksum)> {
    tokio::try_join!(
        checksum(uc, plan, Side::Up, range),
        checksum(dc, plan, Side::Down, range)
    )
}

/// Check one chunk: checksum both sides; on a difference bisect until ranges are small,
/// then diff their rows. Dense differences are not bisected: a range whose counts differ by
/// at least `DENSE_COUNT_DIFF` rows, or whose two halves both still differ after a split for
/// the second level in a row, is streamed from both sides and merged whole (each further
/// level would checksum the whole range again on both sides). One split with both halves
/// differing is still bisected on, so two or three sparse rows in a chunk are isolated.
async fn check_range(
    ctx: &mut Sides,
    table: usize,
    seq: u64,
    plan: &TablePlan,
    range: KeyRange,
    hints: &DenseHints,
    msgs: &mpsc::Sender<WorkerMsg>,
) -> Result<()> {
    if hints.get(table) {
        // The table's last chunk had many differing rows: this one likely has too. Merging
        // its rows directly costs about one scan per side, where checksums first and then
        // locating the differences would cost two to three.
        let m = if plan.int_key() {
            merge_by_hashes(ctx, table, seq, plan, &range, msgs).await?
        } else {
            diff_range(ctx, table, seq, plan, &range, u64::MAX, msgs).await?
        };
        hints.set(table, m.changes >= DENSE_COUNT_DIFF);
        let _ = msgs
            .send(WorkerMsg::ChunkDone {
                table,
                seq,
                up_count: m.up_rows,
                down_count: m.down_rows,
                different: m.changes > 0,
            })
            .await;
        return Ok(());
    }
    let (cu, cd) = retry!(ctx, |uc, dc| checksum_both(uc, dc, plan, &range))?;
    let different = cu != cd;
    let mut found = 0;
    // Row counts that differ by many rows mean dense differences: start with buckets of a
    // few rows each, so one bucketed scan already isolates most rows that differ.
    let count_diff = cu.count.abs_diff(cd.count) as i128;
    let buckets = plan.int_range(&range).and_then(|r| {
        let dense = (count_diff * DENSE_BUCKETS_PER_ROW).min(r.span() / MIN_BUCKET_WIDTH);
        Buckets::over(r, dense.max(CHUNK_BUCKETS))
    });
    if let (true, Some(buckets)) = (different && cu.count.max(cd.count) > LEAF_ROWS, buckets) {
        found += locate_in_buckets(ctx, table, seq, plan, buckets, msgs).await?;
    } else if different {
        // (range, its checksums, whether its parent's split left both halves differing)
        let mut stack = vec![(range, cu, cd, false)];
        while let Some((r, cu, cd, spread)) = stack.pop() {
            if cu.count.max(cd.count) <= LEAF_ROWS
                || cu.count.abs_diff(cd.count) >= DENSE_COUNT_DIFF
            {
                found += diff_range(ctx, table, seq, plan, &r, cu.count.max(cd.count), msgs)
                    .await?
                    .changes;
                continue;
            }
            let (side, n) = if cu.count > 0 {
                (Side::Up, cu.count)
            } else {
                (Side::Down, cd.count)
            };
            let sql = plan.key_at_sql(side, &r, n / 2 - 1);
            let mid = retry!(ctx, |uc, dc| async {
                match side {
                    Side::Up => uc.first(&sql).await,
                    Side::Down => dc.first(&sql).await,
                }
            })?;
            let Some(mid) = mid.filter(|m| Some(m) != r.upper.as_ref()) else {
                found += diff_range(ctx, table, seq, plan, &r, cu.count.max(cd.count), msgs)
                    .await?
                    .changes;
                continue;
            };
            let (left, right) = r.split_at(mid);
            let ((lu, ld), (ru, rd)) = retry!(ctx, |uc, dc| async {
                let l = checksum_both(uc, dc, plan, &left).await?;
                let r = checksum_both(uc, dc, plan, &right).await?;
                Ok::<_, Error>((l, r))
            })?;
            match (lu != ld, ru != rd) {
                // Both halves differ again, as did this range's sibling: the differences are
                // spread out, and bisecting further would re-checksum the whole range per
                // level. Merge it whole instead.
                (true, true) if spread => {
                    found += diff_range(ctx, table, seq, plan, &r, cu.count.max(cd.count), msgs)
                        .await?
                        .changes;
                }
                (true, true) => {
                    stack.push((right, ru, rd, true));
                    stack.push((left, lu, ld, true));
                }
                (true, false) => stack.push((left, lu, ld, false)),
                (false, true) => stack.push((right, ru, rd, false)),
                (false, false) => {}
            }
        }
    }
    hints.set(table, found >= DENSE_COUNT_DIFF);
    let _ = msgs
        .send(WorkerMsg::ChunkDone {
            table,
            seq,
            up_count: cu.count,
            down_count: cd.count,
            different,
        })
        .await;
    Ok(())
}

/// Buckets per arithmetic chunk: a differing row is located to 1/64 of its chunk by the
/// chunk's own checksum query.
const CHUNK_BUCKETS: i128 = 64;
/// Buckets per row of count difference when a chunk's counts differ a lot: the count
/// difference is a lower bound of the differing rows, so this aims at about one differing
/// row per 16 buckets.
const DENSE_BUCKETS_PER_ROW: i128 = 16;
/// A bucket level is refined with buckets this many times narrower.
const REFINE: i128 = 64;
/// Narrowest bucket (in key values) that dense differences are refined to.
const MIN_BUCKET_WIDTH: i128 = 8;
/// Most ranges in one row stream (see [`TablePlan::rows_in_ranges_sql`]).
const RANGES_PER_STREAM: usize = 2048;

/// Keys per statement when full rows are fetched by key.
const KEYS_PER_FETCH: usize = 1_000;

/// A dense chunk of an integer-keyed table: stream `(key, row hash)` from both sides and
/// merge them, then fetch and merge full rows only for the keys that are missing, extra or
/// hashed differently. Each side's server hashes every row once (as a checksum would) but
/// sends two short fields per row instead of the row. A changed row whose 32-bit hash does
/// not change is missed, as it would be by the chunk checksum.
async fn merge_by_hashes(
    ctx: &mut Sides,
    table: usize,
    seq: u64,
    plan: &TablePlan,
    range: &KeyRange,
    msgs: &mpsc::Sender<WorkerMsg>,
) -> Result<Merged> {
    let sql = (
        plan.key_hashes_sql(Side::Up, range),
        plan.key_hashes_sql(Side::Down, range),
    );
    let (up_rows, down_rows, keys) = retry!(ctx, |uc, dc| differing_keys(uc, dc, &sql))?;
    let mut merged = Merged {
        up_rows,
        down_rows,
        changes: 0,
    };
    for batch in keys.chunks(KEYS_PER_FETCH) {
        let sql = (
            plan.rows_with_keys_sql(Side::Up, batch),
            plan.rows_with_keys_sql(Side::Down, batch),
        );
        let rows = batch.len() as u64;
        merged.changes += diff_streams(ctx, table, seq, plan, range, sql, rows, msgs)
            .await?
            .changes;
    }
    Ok(merged)
}

/// Merge two `(integer key, hash)` streams in key order: rows per side, and the keys whose
/// rows are on one side only or hash differently.
async fn differing_keys(
    uc: &mut Conn,
    dc: &mut Conn,
    (up_sql, down_sql): &(String, String),
) -> Result<(u64, u64, Vec<i128>)> {
    let mut us = uc.stream(up_sql).await?;
    let mut ds = dc.stream(down_sql).await?;
    let key = |r: &Option<Row>, sql: &str| -> Result<Option<i128>> {
        match r {
            None => Ok(None),
            Some(r) => match r.first().and_then(|v| v.as_deref()).and_then(parse_int) {
                Some(k) => Ok(Some(k)),
                None => Err(Error::Query {
                    source_name: String::new(),
                    sql: sql.to_string(),
                    message: "a row without an integer key".into(),
                }),
            },
        }
    };
    let (mut nu, mut nd) = (0u64, 0u64);
    let mut keys = Vec::new();
    let mut u = us.next().await?;
    let mut d = ds.next().await?;
    loop {
        let (ku, kd) = (key(&u, up_sql)?, key(&d, down_sql)?);
        let (take_u, take_d) = match (ku, kd) {
            (None, None) => break,
            (Some(a), None) => {
                keys.push(a);
                (true, false)
            }
            (None, Some(b)) => {
                keys.push(b);
                (false, true)
            }
            (Some(a), Some(b)) if a < b => {
                keys.push(a);
                (true, false)
            }
            (Some(a), Some(b)) if a > b => {
                keys.push(b);
                (false, true)
            }
            (Some(a), Some(_)) => {
                if u.as_ref().map(|r| r.get(1)) != d.as_ref().map(|r| r.get(1)) {
                    keys.push(a);
                }
                (true, true)
            }
        };
        if take_u {
            nu += 1;
            u = us.next().await?;
        }
        if take_d {
            nd += 1;
            d = ds.next().await?;
        }
    }
    Ok((nu, nd, keys))
}

/// Per-bucket checksums of one side.
type BucketSums = BTreeMap<i128, Checksum>;

async fn bucket_sums(
    conn: &mut Conn,
    plan: &TablePlan,
    side: Side,
    buckets: &Buckets,
) -> Result<BucketSums> {
    let sql = plan.bucket_checksum_sql(side, buckets);
    let mut out = BTreeMap::new();
    for r in conn.rows(&sql).await? {
        let id = r.first().and_then(|v| v.as_deref()).and_then(parse_int);
        let cs = parse_checksum(
            r.get(1).and_then(|v| v.as_deref()),
            r.get(2).and_then(|v| v.as_deref()),
        );
        match (id, cs) {
            (Some(id), Some(cs)) => {
                out.insert(id, cs);
            }
            _ => {
                return Err(Error::Query {
                    source_name: conn.source_name().to_string(),
                    sql,
                    message: "unexpected bucket checksum result".into(),
                })
            }
        }
    }
    Ok(out)
}

async fn bucket_sums_both(
    ctx: &mut Sides,
    plan: &TablePlan,
    buckets: &Buckets,
) -> Result<(BucketSums, BucketSums)> {
    retry!(ctx, |uc, dc| async {
        tokio::try_join!(
            bucket_sums(uc, plan, Side::Up, buckets),
            bucket_sums(dc, plan, Side::Down, buckets)
        )
    })
}

/// Find the differing rows of a differing range of an integer-keyed table: one scan per
/// side yields the checksum of each of `CHUNK_BUCKETS` buckets of keys. Differing buckets are
/// narrowed without rescanning the range: buckets of at most `LEAF_ROWS` rows are streamed
/// and merged (all of them in a few multi-range queries); larger ones are bucketed again.
/// When most buckets of a level differ (dense differences), the level is re-checksummed with
/// buckets `REFINE` times narrower first, so only the rows near a difference are streamed.
async fn locate_in_buckets(
    ctx: &mut Sides,
    table: usize,
    seq: u64,
    plan: &TablePlan,
    buckets: Buckets,
    msgs: &mpsc::Sender<WorkerMsg>,
) -> Result<u64> {
    let (gu, gd) = bucket_sums_both(ctx, plan, &buckets).await?;
    let mut found = 0;
    let mut stream: Vec<(IntRange, u64)> = Vec::new();
    let mut levels = vec![(buckets, gu, gd)];
    while let Some((b, gu, gd)) = levels.pop() {
        let ids: BTreeSet<i128> = gu.keys().chain(gd.keys()).copied().collect();
        let differing: Vec<(i128, u64)> = ids
            .iter()
            .filter_map(|id| {
                let (u, d) = (
                    gu.get(id).copied().unwrap_or_default(),
                    gd.get(id).copied().unwrap_or_default(),
                );
                (u != d).then_some((*id, u.count.max(d.count)))
            })
            .collect();
        let (Some(first), Some(last)) = (differing.first(), differing.last()) else {
            continue;
        };
        if differing.len() * 2 > ids.len() && b.width > MIN_BUCKET_WIDTH {
            let cover = IntRange {
                lower: b.range_of(first.0).lower,
                upper: b.range_of(last.0).upper,
            };
            if let Some(fine) = Buckets::with_width(cover, (b.width / REFINE).max(MIN_BUCKET_WIDTH))
            {
                let (fu, fd) = bucket_sums_both(ctx, plan, &fine).await?;
                levels.push((fine, fu, fd));
                continue;
            }
        }
        for (id, rows) in differing {
            let r = b.range_of(id);
            match Buckets::over(r, REFINE) {
                Some(sub) if rows > LEAF_ROWS && b.width > 1 => {
                    let (su, sd) = bucket_sums_both(ctx, plan, &sub).await?;
                    levels.push((sub, su, sd));
                }
                _ => stream.push((r, rows)),
            }
        }
    }
    stream.sort_by_key(|(r, _)| r.lower);
    for batch in stream.chunks(RANGES_PER_STREAM) {
        let ranges: Vec<IntRange> = batch.iter().map(|(r, _)| *r).collect();
        let ranges = coalesce(&ranges);
        let rows = batch.iter().map(|(_, n)| n).sum();
        let (Some(first), Some(last)) = (ranges.first(), ranges.last()) else {
            continue;
        };
        let covering = KeyRange {
            lower: Some(int_row(first.lower)),
            upper: Some(int_row(last.upper)),
        };
        let sql = (
            plan.rows_in_ranges_sql(Side::Up, &ranges),
            plan.rows_in_ranges_sql(Side::Down, &ranges),
        );
        found += diff_streams(ctx, table, seq, plan, &covering, sql, rows, msgs)
            .await?
            .changes;
    }
    Ok(found)
}

/// Where a merge puts the changes it finds: into `buf`, and, when `stream` is set, on to the
/// aggregator every `CHANGE_BATCH` changes (`sent` then records that some were published).
struct ChangeSink<'a> {
    msgs: &'a mpsc::Sender<WorkerMsg>,
    table: usize,
    seq: u64,
    range: &'a KeyRange,
    stream: bool,
    buf: Vec<RowChange>,
    sent: bool,
    /// Changes pushed.
    found: u64,
}

impl ChangeSink<'_> {
    async fn push(&mut self, change: RowChange) {
        self.found += 1;
        self.buf.push(change);
        if self.stream && self.buf.len() >= CHANGE_BATCH {
            self.flush().await;
        }
    }

    async fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        self.sent = true;
        let changes = std::mem::take(&mut self.buf);
        send_changes(self.msgs, self.table, self.seq, self.range, changes).await;
    }
}

/// Diff the rows of `range` (at most `rows` rows on either side, from its checksums) and
/// publish its changes.
///
/// Retry semantics: a leaf (at most `LEAF_ROWS` rows a side) collects all its changes and
/// publishes them only after the merge succeeded, so a step retried after a lost connection
/// cannot publish anything twice. A larger range streams its changes to the aggregator in
/// batches while merging (bounded memory); it is retried only while nothing has been sent
/// yet. Once a batch went out, a lost connection fails the chunk with the error instead
/// (re-merging would publish the sent changes a second time).
async fn diff_range(
    ctx: &mut Sides,
    table: usize,
    seq: u64,
    plan: &TablePlan,
    range: &KeyRange,
    rows: u64,
    msgs: &mpsc::Sender<WorkerMsg>,
) -> Result<Merged> {
    let sql = (
        plan.rows_sql(Side::Up, range),
        plan.rows_sql(Side::Down, range),
    );
    diff_streams(ctx, table, seq, plan, range, sql, rows, msgs).await
}

/// [`diff_range`] over given row statements (upstream, downstream), which must return the
/// rows of `range` (or of parts of it) in key order as [`TablePlan::rows_sql`] does.
#[allow(clippy::too_many_arguments)]
async fn diff_streams(
    ctx: &mut Sides,
    table: usize,
    seq: u64,
    plan: &TablePlan,
    range: &KeyRange,
    sql: (String, String),
    rows: u64,
    msgs: &mpsc::Sender<WorkerMsg>,
) -> Result<Merged> {
    let mut attempt = 0u32;
    loop {
        let mut sink = ChangeSink {
            msgs,
            table,
            seq,
            range,
            stream: rows > LEAF_ROWS,
            buf: Vec::new(),
            sent: false,
            found: 0,
        };
        match diff_rows(&mut ctx.uc, &mut ctx.dc, plan, &sql, &mut sink).await {
            Ok((up_rows, down_rows)) => {
                sink.flush().await;
                return Ok(Merged {
                    up_rows,
                    down_rows,
                    changes: sink.found,
                });
            }
            Err(e)
                if e.is_connection_lost() && !sink.sent && !ctx.pinned && attempt < MAX_RETRIES =>
            {
                attempt += 1;
                ctx.reconnect(attempt, &e).await?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// What a merge saw.
#[derive(Debug, Clone, Copy, Default)]
struct Merged {
    up_rows: u64,
    down_rows: u64,
    /// Row changes found.
    changes: u64,
}

/// Stream the rows of `range` from both sides in key order and merge them, handing every
/// change to `sink` as it is found. Returns the rows read per side.
async fn diff_rows(
    uc: &mut Conn,
    dc: &mut Conn,
    plan: &TablePlan,
    (up_sql, down_sql): &(String, String),
    sink: &mut ChangeSink<'_>,
) -> Result<(u64, u64)> {
    let layout: RowLayout = plan.layout();
    let mut us = uc.stream(up_sql).await?;
    let mut ds = dc.stream(down_sql).await?;
    let (mut nu, mut nd) = (0u64, 0u64);
    let mut u = us.next().await?;
    nu += u.is_some() as u64;
    let mut d = ds.next().await?;
    nd += d.is_some() as u64;
    loop {
        match (u.take(), d.take()) {
            (None, None) => break,
            (Some(ur), None) => {
                sink.push(RowChange::Missing {
                    up: layout.strip(ur),
                })
                .await;
                u = us.next().await?;
                nu += u.is_some() as u64;
            }
            (None, Some(dr)) => {
                sink.push(RowChange::Extra {
                    down: layout.strip(dr),
                })
                .await;
                d = ds.next().await?;
                nd += d.is_some() as u64;
            }
            (Some(ur), Some(dr)) => match layout.step(&ur, &dr) {
                Step::Missing => {
                    sink.push(RowChange::Missing {
                        up: layout.strip(ur),
                    })
                    .await;
                    d = Some(dr);
                    u = us.next().await?;
                    nu += u.is_some() as u64;
                }
                Step::Extra => {
                    sink.push(RowChange::Extra {
                        down: layout.strip(dr),
                    })
                    .await;
                    u = Some(ur);
                    d = ds.next().await?;
                    nd += d.is_some() as u64;
                }
                Step::Same => {
                    u = us.next().await?;
                    nu += u.is_some() as u64;
                    d = ds.next().await?;
                    nd += d.is_some() as u64;
                }
                Step::Changed => {
                    sink.push(RowChange::Changed {
                        up: layout.strip(ur),
                        down: layout.strip(dr),
                    })
                    .await;
                    u = us.next().await?;
                    nu += u.is_some() as u64;
                    d = ds.next().await?;
                    nd += d.is_some() as u64;
                }
            },
        }
    }
    Ok((nu, nd))
}

/// Send changes to the aggregator in batches of at most `CHANGE_BATCH`.
async fn send_changes(
    msgs: &mpsc::Sender<WorkerMsg>,
    table: usize,
    seq: u64,
    range: &KeyRange,
    changes: Vec<RowChange>,
) {
    for batch in changes.chunks(CHANGE_BATCH) {
        let _ = msgs
            .send(WorkerMsg::Changes {
                table,
                seq,
                range: range.clone(),
                changes: batch.to_vec(),
            })
            .await;
    }
}

/// Per-bucket (count, sum) of a keyless table on one side.
async fn bucket_checksums(
    conn: &mut Conn,
    plan: &TablePlan,
    side: Side,
    buckets: u64,
) -> Result<BTreeMap<u64, Checksum>> {
    let rows = conn.rows(&plan.bucket_checksums_sql(side, buckets)).await?;
    let mut out = BTreeMap::new();
    for r in rows {
        let b = cell_u64(&r, 0).unwrap_or(0);
        let cs = parse_checksum(
            r.get(1).and_then(|v| v.as_deref()),
            r.get(2).and_then(|v| v.as_deref()),
        )
        .unwrap_or_default();
        out.insert(b, cs);
    }
    Ok(out)
}

/// Keyless tables: rows are spread over hash buckets of about `chunk_size` rows; bucket
/// checksums from one scan per side find the differing buckets, whose rows are then
/// compared as multisets a few buckets at a time.
async fn check_keyless(
    ctx: &mut Sides,
    table: usize,
    plan: &TablePlan,
    msgs: &mpsc::Sender<WorkerMsg>,
) -> Result<()> {
    let count_sql = format!(
        "SELECT COUNT(*) FROM {} WHERE {}",
        plan.upstream.quoted(),
        plan.where_clause(&KeyRange::full())
    );
    let n = retry!(ctx, |uc, _dc| uc.first(&count_sql))?
        .and_then(|r| cell_u64(&r, 0))
        .unwrap_or(0);
    let buckets = n.div_ceil(plan.chunk_size).max(1);
    let (bu, bd) = retry!(ctx, |uc, dc| async {
        tokio::try_join!(
            bucket_checksums(uc, plan, Side::Up, buckets),
            bucket_checksums(dc, plan, Side::Down, buckets)
        )
    })?;
    let all: BTreeSet<u64> = bu.keys().chain(bd.keys()).copied().collect();
    let differing: Vec<u64> = all
        .into_iter()
        .filter(|b| {
            bu.get(b).copied().unwrap_or_default() != bd.get(b).copied().unwrap_or_default()
        })
        .collect();
    let up_count = bu.values().map(|c| c.count).sum();
    let down_count = bd.values().map(|c| c.count).sum();
    for group in differing.chunks(BUCKETS_PER_SCAN) {
        let changes = retry!(ctx, |uc, dc| async {
            let mut m = MultisetDiff::new();
            let mut s = uc
                .stream(&plan.bucket_rows_sql(Side::Up, buckets, group))
                .await?;
            while let Some(row) = s.next().await? {
                m.add_up(row);
            }
            drop(s);
            let mut s = dc
                .stream(&plan.bucket_rows_sql(Side::Down, buckets, group))
                .await?;
            while let Some(row) = s.next().await? {
                m.add_down(row);
            }
            drop(s);
            Ok::<_, Error>(m.finish())
        })?;
        send_changes(msgs, table, 0, &KeyRange::full(), changes).await;
    }
    let _ = msgs
        .send(WorkerMsg::ChunkDone {
            table,
            seq: 0,
            up_count,
            down_count,
            different: !differing.is_empty(),
        })
        .await;
    Ok(())
}

/// Execute fix statements in one transaction.
pub async fn apply(conn: &mut Conn, statements: &[String]) -> Result<()> {
    conn.exec("START TRANSACTION").await?;
    for s in statements {
        if let Err(e) = conn.exec(s).await {
            let _ = conn.exec("ROLLBACK").await;
            return Err(e);
        }
    }
    conn.exec("COMMIT").await
}

/// After fixes were applied: checksum the ranges that differed again. True when all match.
pub async fn recheck(
    up: &Source,
    down: &Source,
    plan: &TablePlan,
    ranges: &[KeyRange],
) -> Result<bool> {
    let (mut uc, mut dc) = tokio::try_join!(up.connect(), down.connect())?;
    let mut equal = true;
    if plan.key.is_none() {
        let n = 64;
        let (bu, bd) = tokio::try_join!(
            bucket_checksums(&mut uc, plan, Side::Up, n),
            bucket_checksums(&mut dc, plan, Side::Down, n)
        )?;
        equal = bu == bd;
    } else {
        let mut seen = BTreeSet::new();
        for r in ranges {
            let key = serde_json::to_string(r).unwrap_or_default();
            if !seen.insert(key) {
                continue;
            }
            let (cu, cd) = checksum_both(&mut uc, &mut dc, plan, r).await?;
            if cu != cd {
                equal = false;
                break;
            }
        }
    }
    uc.close().await;
    dc.close().await;
    Ok(equal)
}
