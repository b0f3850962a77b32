//! The chunk producer and the check workers.

use super::plan::{Side, TablePlan};
use crate::checksum::{parse_checksum, Checksum};
use crate::chunk::KeyRange;
use crate::diff::{MultisetDiff, RowChange, RowLayout, Step};
use crate::error::{Error, Result};
use crate::row::Row;
use crate::source::{cell_u64, Conn, Source};
use std::collections::{BTreeMap, BTreeSet};
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
        let mut chunks = start.seq;
        let mut lower: Option<Row> = start.lower;
        loop {
            let open = KeyRange {
                lower: lower.clone(),
                upper: None,
            };
            let sql = plan.key_at_sql(Side::Up, &open, plan.chunk_size - 1);
            let range = match conn.first(&sql).await {
                Ok(Some(bound)) => {
                    lower = Some(bound.clone());
                    KeyRange {
                        lower: open.lower,
                        upper: Some(bound),
                    }
                }
                // The last chunk: no upper bound.
                Ok(None) => open,
                Err(e) => {
                    let _ = msgs
                        .send(WorkerMsg::TableError {
                            table,
                            message: format!("splitting failed: {e}"),
                        })
                        .await;
                    break;
                }
            };
            let seq = chunks;
            chunks += 1;
            let last = range.upper.is_none();
            let queued = WorkerMsg::ChunkQueued {
                table,
                seq,
                upper: range.upper.clone(),
            };
            let _ = msgs.send(queued).await;
            let job = ChunkJob::Range {
                table,
                seq,
                plan: plan.clone(),
                range,
            };
            if jobs.send(job).await.is_err() {
                return;
            }
            if last {
                break;
            }
        }
        let _ = msgs.send(WorkerMsg::TableChunks { table, chunks }).await;
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
                check_range(ctx, table, seq, plan, range.clone(), &msgs).await
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
    msgs: &mpsc::Sender<WorkerMsg>,
) -> Result<()> {
    let (cu, cd) = retry!(ctx, |uc, dc| checksum_both(uc, dc, plan, &range))?;
    let different = cu != cd;
    if different {
        // (range, its checksums, whether its parent's split left both halves differing)
        let mut stack = vec![(range, cu, cd, false)];
        while let Some((r, cu, cd, spread)) = stack.pop() {
            if cu.count.max(cd.count) <= LEAF_ROWS
                || cu.count.abs_diff(cd.count) >= DENSE_COUNT_DIFF
            {
                diff_range(ctx, table, seq, plan, &r, cu.count.max(cd.count), msgs).await?;
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
                diff_range(ctx, table, seq, plan, &r, cu.count.max(cd.count), msgs).await?;
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
                    diff_range(ctx, table, seq, plan, &r, cu.count.max(cd.count), msgs).await?
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
}

impl ChangeSink<'_> {
    async fn push(&mut self, change: RowChange) {
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
) -> Result<()> {
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
        };
        match diff_rows(&mut ctx.uc, &mut ctx.dc, plan, range, &mut sink).await {
            Ok(()) => {
                sink.flush().await;
                return Ok(());
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

/// Stream the rows of `range` from both sides in key order and merge them, handing every
/// change to `sink` as it is found.
async fn diff_rows(
    uc: &mut Conn,
    dc: &mut Conn,
    plan: &TablePlan,
    range: &KeyRange,
    sink: &mut ChangeSink<'_>,
) -> Result<()> {
    let layout: RowLayout = plan.layout();
    let up_sql = plan.rows_sql(Side::Up, range);
    let down_sql = plan.rows_sql(Side::Down, range);
    let mut us = uc.stream(&up_sql).await?;
    let mut ds = dc.stream(&down_sql).await?;
    let mut u = us.next().await?;
    let mut d = ds.next().await?;
    loop {
        match (u.take(), d.take()) {
            (None, None) => break,
            (Some(ur), None) => {
                sink.push(RowChange::Missing {
                    up: layout.strip(ur),
                })
                .await;
                u = us.next().await?;
            }
            (None, Some(dr)) => {
                sink.push(RowChange::Extra {
                    down: layout.strip(dr),
                })
                .await;
                d = ds.next().await?;
            }
            (Some(ur), Some(dr)) => match layout.step(&ur, &dr) {
                Step::Missing => {
                    sink.push(RowChange::Missing {
                        up: layout.strip(ur),
                    })
                    .await;
                    d = Some(dr);
                    u = us.next().await?;
                }
                Step::Extra => {
                    sink.push(RowChange::Extra {
                        down: layout.strip(dr),
                    })
                    .await;
                    u = Some(ur);
                    d = ds.next().await?;
                }
                Step::Same => {
                    u = us.next().await?;
                    d = ds.next().await?;
                }
                Step::Changed => {
                    sink.push(RowChange::Changed {
                        up: layout.strip(ur),
                        down: layout.strip(dr),
                    })
                    .await;
                    u = us.next().await?;
                    d = ds.next().await?;
                }
            },
        }
    }
    Ok(())
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
