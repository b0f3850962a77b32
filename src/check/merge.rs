//! Row merges over server streams: both sides stream a range in key order and the one pure
//! merge ([`crate::diff::Merger`]) turns the two streams into missing, extra and changed
//! rows. This module only reads rows into it and sends what it finds on; the merge logic
//! itself is what the property tests and benches run.

use super::msg::WorkerMsg;
use super::plan::{Side, TablePlan};
use super::sides::{retry, Chunk, Sides, LEAF_ROWS, MAX_RETRIES};
use crate::chunk::KeyRange;
use crate::db::{Conn, RowStream};
use crate::diff::{Advance, Merger, RowChange, RowLayout, Union};
use crate::error::{Error, Result};
use crate::row::Row;
use tokio::sync::mpsc;

/// Row changes are sent to the aggregator in batches of at most this many (bounded memory).
const CHANGE_BATCH: usize = 1_000;
/// Keys per statement when full rows are fetched by key.
const KEYS_PER_FETCH: usize = 1_000;

/// What a merge saw.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Merged {
    pub up_rows: u64,
    pub down_rows: u64,
    /// Row changes found.
    pub changes: u64,
}

/// Where a merge hands the differences it finds.
trait OnChange {
    async fn push(&mut self, change: RowChange) -> Result<()>;
}

/// Stream both statements (rows in key order, laid out as `layout` says) and merge them,
/// handing every difference to `sink`. Returns the rows read per side.
async fn merge_streams(
    uc: &mut Conn,
    dc: &mut Conn,
    layout: &RowLayout,
    (up_sql, down_sql): &(String, String),
    sink: &mut impl OnChange,
) -> Result<(u64, u64)> {
    let mut us = uc.stream(up_sql).await?;
    let mut ds = dc.stream(down_sql).await?;
    merge_rows(&mut us, &mut ds, layout, sink).await
}

/// The upstream side of a merge: one server stream, or the union of a merged target's.
trait UpRows {
    async fn next_row(&mut self) -> Result<Option<Row>>;
}

impl UpRows for RowStream<'_> {
    async fn next_row(&mut self) -> Result<Option<Row>> {
        self.next().await
    }
}

/// The one merge loop: rows of both sides through [`Merger`] into `sink`.
async fn merge_rows(
    up: &mut impl UpRows,
    down: &mut RowStream<'_>,
    layout: &RowLayout,
    sink: &mut impl OnChange,
) -> Result<(u64, u64)> {
    let mut merger = Merger::new(layout.clone());
    loop {
        let (want_up, want_down) = merger.wants();
        if want_up {
            merger.put_up(up.next_row().await?);
        }
        if want_down {
            merger.put_down(down.next().await?);
        }
        match merger.advance() {
            Advance::Change(c) => sink.push(c).await?,
            Advance::Same => {}
            Advance::Done => return Ok(merger.rows()),
        }
    }
}

/// Sends a chunk's changes to the aggregator: held back until the merge succeeded (so a
/// retried step publishes nothing twice), or, when `stream` is set, sent every
/// `CHANGE_BATCH` changes (`sent` then records that some were published).
struct ChangeSink<'a> {
    chunk: &'a Chunk<'a>,
    range: &'a KeyRange,
    stream: bool,
    buf: Vec<RowChange>,
    sent: bool,
    /// Changes pushed.
    found: u64,
}

impl OnChange for ChangeSink<'_> {
    async fn push(&mut self, change: RowChange) -> Result<()> {
        self.found += 1;
        self.buf.push(change);
        if self.stream && self.buf.len() >= CHANGE_BATCH {
            self.flush().await;
        }
        Ok(())
    }
}

impl ChangeSink<'_> {
    async fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        self.sent = true;
        let changes = std::mem::take(&mut self.buf);
        let c = self.chunk;
        send_changes(c.msgs, c.table, c.seq, self.range, changes).await;
    }
}

/// Collects the keys (the first `key_len` values) of the rows that differ in a
/// `(key, hash, …)` merge.
struct KeyCollector {
    key_len: usize,
    keys: Vec<Row>,
}

impl OnChange for KeyCollector {
    async fn push(&mut self, change: RowChange) -> Result<()> {
        let row = match &change {
            RowChange::Missing { up } | RowChange::Changed { up, .. } => up,
            RowChange::Extra { down } => down,
        };
        self.keys
            .push(row.iter().take(self.key_len).cloned().collect());
        Ok(())
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
pub(super) async fn diff_range(
    ctx: &mut Sides,
    chunk: &Chunk<'_>,
    range: &KeyRange,
    rows: u64,
) -> Result<Merged> {
    let plan = chunk.plan;
    let sql = (
        plan.rows_sql(Side::Up, range),
        plan.rows_sql(Side::Down, range),
    );
    diff_streams(ctx, chunk, range, sql, rows).await
}

/// [`diff_range`] over given row statements (upstream, downstream), which must return the
/// rows of `range` (or of parts of it) in key order as [`TablePlan::rows_sql`] does.
pub(super) async fn diff_streams(
    ctx: &mut Sides,
    chunk: &Chunk<'_>,
    range: &KeyRange,
    sql: (String, String),
    rows: u64,
) -> Result<Merged> {
    let layout = chunk.plan.layout();
    let mut attempt = 0u32;
    loop {
        let mut sink = ChangeSink {
            chunk,
            range,
            stream: rows > LEAF_ROWS,
            buf: Vec::new(),
            sent: false,
            found: 0,
        };
        match merge_streams(&mut ctx.uc, &mut ctx.dc, &layout, &sql, &mut sink).await {
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

/// Shard merge: the rows of `range` streamed from every part of a merged target at once,
/// unioned in key order ([`Union`]) and merged with the downstream's; the changes are
/// published as [`diff_streams`] does (retried while none was sent). Returns the merge and
/// the union's rows whose key was also in other parts (with those parts' indexes).
pub(super) async fn diff_union(
    ctx: &mut Sides,
    chunk: &Chunk<'_>,
    range: &KeyRange,
) -> Result<(Merged, Vec<(Row, Vec<usize>)>)> {
    let plan = chunk.plan;
    let layout = plan.layout();
    let up_sql: Vec<String> = plan
        .parts
        .iter()
        .map(|p| p.plan.rows_sql(Side::Up, range))
        .collect();
    let down_sql = plan.rows_sql(Side::Down, range);
    let mut attempt = 0u32;
    loop {
        let mut sink = ChangeSink {
            chunk,
            range,
            stream: true,
            buf: Vec::new(),
            sent: false,
            found: 0,
        };
        let mut overlaps = Vec::new();
        let merged = union_streams(ctx, &layout, (&up_sql, &down_sql), &mut sink, &mut overlaps);
        match merged.await {
            Ok((up_rows, down_rows)) => {
                sink.flush().await;
                let m = Merged {
                    up_rows,
                    down_rows,
                    changes: sink.found,
                };
                return Ok((m, overlaps));
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

/// [`diff_union`]'s one attempt: every part's statement streamed on its own connection.
async fn union_streams(
    ctx: &mut Sides,
    layout: &RowLayout,
    (up_sql, down_sql): (&[String], &str),
    sink: &mut ChangeSink<'_>,
    overlaps: &mut Vec<(Row, Vec<usize>)>,
) -> Result<(u64, u64)> {
    let parts = &sink.chunk.plan.parts;
    let (conns, dc) = ctx.part_conns(parts)?;
    let mut streams = Vec::with_capacity(conns.len());
    for (conn, sql) in conns.into_iter().zip(up_sql) {
        streams.push(conn.stream(sql).await?);
    }
    let mut up = UnionRows {
        union: Union::new(layout.clone(), streams.len()),
        streams,
        overlaps,
    };
    let mut ds = dc.stream(down_sql).await?;
    merge_rows(&mut up, &mut ds, layout, sink).await
}

/// The parts' streams as one, in key order; keys found in several parts are noted with
/// the parts' indexes (the first holder's row is the one returned).
struct UnionRows<'s, 'o> {
    union: Union,
    streams: Vec<RowStream<'s>>,
    overlaps: &'o mut Vec<(Row, Vec<usize>)>,
}

impl UpRows for UnionRows<'_, '_> {
    async fn next_row(&mut self) -> Result<Option<Row>> {
        while let Some(i) = self.union.wants() {
            self.union.put(i, self.streams[i].next().await?);
        }
        Ok(self.union.pop().map(|n| {
            if !n.overlaps.is_empty() {
                let mut parts = vec![n.part];
                parts.extend(&n.overlaps);
                self.overlaps.push((n.row.clone(), parts));
            }
            n.row
        }))
    }
}

/// Stream `(key, row hash)` of a chunk from both sides and merge them, then fetch and merge
/// full rows only for the keys that are missing, extra or hashed differently: a dense chunk,
/// or a differing chunk of a table not keyed by an integer (where it replaces bisection:
/// one scan a side instead of a checksum of every half at every level). Each side's server
/// hashes every row once (as a checksum would) but sends the key and the hash instead of
/// the row. A changed row whose 32-bit hash does not change is missed, as it would be by
/// the chunk checksum.
pub(super) async fn merge_by_hashes(
    ctx: &mut Sides,
    chunk: &Chunk<'_>,
    range: &KeyRange,
) -> Result<Merged> {
    let plan: &TablePlan = chunk.plan;
    let ((up_rows, down_rows), keys) = match packed_key_hashes(ctx, plan, range).await? {
        Some(found) => found,
        None => streamed_key_hashes(ctx, plan, range).await?,
    };
    let mut merged = Merged {
        up_rows,
        down_rows,
        changes: 0,
    };
    for batch in keys.chunks(KEYS_PER_FETCH) {
        let fetch = |side| {
            plan.rows_with_keys_sql(side, batch)
                .ok_or_else(|| Error::Table {
                    table: plan.target.to_string(),
                    message: "a (key, hash) row without an integer key".into(),
                })
        };
        let sql = (fetch(Side::Up)?, fetch(Side::Down)?);
        let rows = batch.len() as u64;
        merged.changes += diff_streams(ctx, chunk, range, sql, rows).await?.changes;
    }
    Ok(merged)
}

/// Rows per side and the keys that differ.
type KeyHashes = ((u64, u64), Vec<Row>);

/// The `(key, hash)` merge from one packed row a side (integer keys). `None` when the key
/// is not an integer or a side's answer is not the whole list (cut short by
/// `group_concat_max_len` or `max_allowed_packet`: its count or key XOR differs).
async fn packed_key_hashes(
    ctx: &mut Sides,
    plan: &TablePlan,
    range: &KeyRange,
) -> Result<Option<KeyHashes>> {
    let (Some(up_sql), Some(down_sql)) = (
        plan.packed_key_hashes_sql(Side::Up, range),
        plan.packed_key_hashes_sql(Side::Down, range),
    ) else {
        return Ok(None);
    };
    let (up, down) = retry!(ctx, |uc, dc| async {
        tokio::try_join!(uc.first(&up_sql), dc.first(&down_sql))
    })?;
    let unpack = |row: Option<Row>| {
        let row = row?;
        let number = |i: usize| -> Option<u64> {
            std::str::from_utf8(row.get(i)?.as_deref()?)
                .ok()?
                .parse()
                .ok()
        };
        let count = number(0)? as usize;
        // NULL over no rows.
        let xor: u64 = if count == 0 { 0 } else { number(1)? };
        let pairs = crate::diff::parse_key_hashes(row.get(2)?.as_deref())?;
        (pairs.len() == count && crate::diff::key_xor(&pairs) == xor).then_some(pairs)
    };
    let (Some(up), Some(down)) = (unpack(up), unpack(down)) else {
        tracing::debug!(
            table = %plan.target,
            "packed (key, hash) list incomplete; reading it row by row"
        );
        return Ok(None);
    };
    let keys = crate::diff::differing_keys(&up, &down)
        .into_iter()
        .map(|k| vec![Some(k.to_string().into_bytes())])
        .collect();
    Ok(Some(((up.len() as u64, down.len() as u64), keys)))
}

/// The `(key, hash)` merge over two row streams (any key).
async fn streamed_key_hashes(
    ctx: &mut Sides,
    plan: &TablePlan,
    range: &KeyRange,
) -> Result<KeyHashes> {
    let sql = (
        plan.key_hashes_sql(Side::Up, range),
        plan.key_hashes_sql(Side::Down, range),
    );
    let layout = plan.key_hashes_layout();
    let key_len = layout.sort_kinds.len();
    retry!(ctx, |uc, dc| async {
        let mut keys = KeyCollector {
            key_len,
            keys: Vec::new(),
        };
        let rows = merge_streams(uc, dc, &layout, &sql, &mut keys).await?;
        Ok::<_, Error>((rows, keys.keys))
    })
}

/// Send changes to the aggregator in batches of at most `CHANGE_BATCH`.
pub(super) async fn send_changes(
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
