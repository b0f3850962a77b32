//! Narrowing a differing chunk down to the rows that differ: bucketed checksums for
//! integer keys (one scan tells which narrow key ranges differ), checksums of key-hash
//! buckets for other keys, and a direct merge for dense differences (ARCHITECTURE.md, "Mismatch handling").

use super::merge::{diff_range, diff_streams, merge_by_hashes};
use super::plan::{Side, TablePlan};
use super::probes;
use super::sides::{retry, Chunk, DenseHints, Sides, DENSE_COUNT_DIFF, LEAF_ROWS};
use crate::checksum::{parse_checksum, Checksum};
use crate::chunk::{coalesce, int_row, parse_int, Buckets, IntRange, KeyRange};
use crate::db::Conn;
use crate::error::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};

pub(super) async fn checksum(
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
        server: None,
    })
}

pub(super) async fn checksum_both(
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

/// Check one chunk: checksum both sides; on a difference locate the differing rows
/// (bucketed checksums by key value for integer keys; parts cut at probed keys, or buckets
/// of a key hash, for others) and diff them. A chunk whose counts already differ by many
/// rows is merged on `(key, row hash)` at once, and a table whose last chunk had dense
/// differences is merged directly ([`merge_dense`]).
pub(super) async fn check_range(
    ctx: &mut Sides,
    chunk: &Chunk<'_>,
    range: KeyRange,
    hints: &DenseHints,
) -> Result<()> {
    let plan = chunk.plan;
    if hints.get(chunk.table) {
        return merge_dense(ctx, chunk, range, hints).await;
    }
    let (cu, cd) = retry!(ctx, |uc, dc| checksum_both(uc, dc, plan, &range))?;
    let different = cu != cd;
    // Row counts that differ by many rows mean dense differences: start with buckets of a
    // few rows each, so one bucketed scan already isolates most rows that differ.
    let count_diff = cu.count.abs_diff(cd.count) as i128;
    let buckets = plan.int_range(&range).and_then(|r| {
        let dense = (count_diff * DENSE_BUCKETS_PER_ROW).min(r.span() / MIN_BUCKET_WIDTH);
        Buckets::over(r, dense.max(CHUNK_BUCKETS))
    });
    let rows = cu.count.max(cd.count);
    let found = match (different, buckets) {
        (false, _) => 0,
        (true, _) if rows <= LEAF_ROWS => diff_range(ctx, chunk, &range, rows).await?.changes,
        (true, Some(buckets)) => locate_in_buckets(ctx, chunk, &range, rows, buckets).await?,
        (true, None) if count_diff >= DENSE_COUNT_DIFF as i128 => {
            merge_by_hashes(ctx, chunk, &range).await?.changes
        }
        (true, None) if plan.probe_lead().is_some() => {
            locate_in_parts(ctx, chunk, range, cu, cd).await?
        }
        (true, None) => locate_in_key_hashes(ctx, chunk, &range, rows).await?,
    };
    hints.set(chunk.table, found >= DENSE_COUNT_DIFF);
    chunk.done(cu.count, cd.count, different).await;
    Ok(())
}

/// The table's last chunk had many differing rows: this one likely has too. Merging its
/// rows directly costs about one scan per side, where checksums first and then locating
/// the differences would cost two to three.
async fn merge_dense(
    ctx: &mut Sides,
    chunk: &Chunk<'_>,
    range: KeyRange,
    hints: &DenseHints,
) -> Result<()> {
    let m = merge_by_hashes(ctx, chunk, &range).await?;
    hints.set(chunk.table, m.changes >= DENSE_COUNT_DIFF);
    chunk.done(m.up_rows, m.down_rows, m.changes > 0).await;
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

/// Most rows of a chunk with dense differences merged on `(key, row hash)` after its first
/// bucket level: the packed lists of both sides are then a few megabytes at most.
const PACKED_MERGE_ROWS: u64 = 100_000;

/// Most ranges in one row stream (see [`TablePlan::rows_in_ranges_sql`]).
const RANGES_PER_STREAM: usize = 2048;

/// Per-bucket checksums of one side.
type BucketSums = BTreeMap<i128, Checksum>;

async fn bucket_sums(
    conn: &mut Conn,
    plan: &TablePlan,
    side: Side,
    buckets: &Buckets,
) -> Result<BucketSums> {
    read_bucket_sums(conn, plan.bucket_checksum_sql(side, buckets)).await
}

/// The rows of a bucketed checksum statement: `(bucket, count, checksum)`.
async fn read_bucket_sums(conn: &mut Conn, sql: String) -> Result<BucketSums> {
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
                    server: None,
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

/// Parts a differing range of a probe-split key is cut into per level.
const PARTS: usize = 8;

/// Find the differing rows of a differing chunk whose key is led by a string or an integer
/// (not one integer): cut it into up to `PARTS` parts at real keys near probes (index
/// dives, [`probes::cut`]), checksum every part on both sides (one scan of the range in
/// all), and go on with the parts that differ, until a part holds at most `LEAF_ROWS` rows
/// and is merged. One differing row in a 20,000-row chunk costs about 1.15 scans of the
/// chunk a side. A range that cannot be cut, or where most parts differ (differences
/// spread out), goes to [`locate_in_key_hashes`]. Returns the rows found differing.
async fn locate_in_parts(
    ctx: &mut Sides,
    chunk: &Chunk<'_>,
    range: KeyRange,
    cu: Checksum,
    cd: Checksum,
) -> Result<u64> {
    let plan = chunk.plan;
    let mut found = 0;
    let mut stack = vec![(range, cu, cd)];
    while let Some((r, cu, cd)) = stack.pop() {
        let rows = cu.count.max(cd.count);
        if rows <= LEAF_ROWS {
            found += diff_range(ctx, chunk, &r, rows).await?.changes;
            continue;
        }
        let parts = retry!(ctx, |uc, _dc| probes::cut(uc, plan, &r, PARTS))?;
        if parts.len() < 2 {
            found += locate_in_key_hashes(ctx, chunk, &r, rows).await?;
            continue;
        }
        let sums = retry!(ctx, |uc, dc| async {
            let mut sums = Vec::with_capacity(parts.len());
            for p in &parts {
                sums.push(checksum_both(uc, dc, plan, p).await?);
            }
            Ok::<_, Error>(sums)
        })?;
        let all = parts.len();
        let differing: Vec<_> = (parts.into_iter().zip(sums))
            .filter(|(_, (u, d))| u != d)
            .collect();
        if differing.len() * 2 > all {
            found += locate_in_key_hashes(ctx, chunk, &r, rows).await?;
            continue;
        }
        for (p, (u, d)) in differing.into_iter().rev() {
            stack.push((p, u, d));
        }
    }
    Ok(found)
}

/// Rows per key-hash bucket aimed at when locating in a chunk not keyed by an integer.
const ROWS_PER_HASH_BUCKET: u64 = 16;

/// Find the differing rows of a differing chunk whose key is not one integer: one scan per
/// side yields the checksum of each bucket of a hash of the key (about 16 rows each), then
/// the rows of the differing buckets are streamed from both sides (one filtered scan that
/// sends only them) and merged. Most buckets differing (dense differences): the chunk is
/// merged on `(key, row hash)` instead. Returns the rows found differing.
async fn locate_in_key_hashes(
    ctx: &mut Sides,
    chunk: &Chunk<'_>,
    range: &KeyRange,
    rows: u64,
) -> Result<u64> {
    let plan = chunk.plan;
    let n = (rows / ROWS_PER_HASH_BUCKET).clamp(64, 4096) as u32;
    let sql = (
        plan.key_hash_bucket_sql(Side::Up, range, n),
        plan.key_hash_bucket_sql(Side::Down, range, n),
    );
    let (gu, gd) = retry!(ctx, |uc, dc| async {
        tokio::try_join!(
            read_bucket_sums(uc, sql.0.clone()),
            read_bucket_sums(dc, sql.1.clone())
        )
    })?;
    let ids: BTreeSet<i128> = gu.keys().chain(gd.keys()).copied().collect();
    let mut differing = Vec::new();
    let mut rows = 0;
    for id in ids {
        let (u, d) = (
            gu.get(&id).copied().unwrap_or_default(),
            gd.get(&id).copied().unwrap_or_default(),
        );
        if u != d {
            differing.push(id);
            rows += u.count.max(d.count);
        }
    }
    if differing.len() * 4 > n as usize {
        return Ok(merge_by_hashes(ctx, chunk, range).await?.changes);
    }
    let sql = (
        plan.rows_in_key_hash_buckets_sql(Side::Up, range, n, &differing),
        plan.rows_in_key_hash_buckets_sql(Side::Down, range, n, &differing),
    );
    Ok(diff_streams(ctx, chunk, range, sql, rows).await?.changes)
}

/// Find the differing rows of a differing range of an integer-keyed table: one scan per
/// side yields the checksum of each of `CHUNK_BUCKETS` buckets of keys. Differing buckets are
/// narrowed without rescanning the range: buckets of at most `LEAF_ROWS` rows are streamed
/// and merged (all of them in a few multi-range queries); larger ones are bucketed again.
/// When most buckets of a level differ (dense differences), the level is re-checksummed with
/// buckets `REFINE` times narrower first, so only the rows near a difference are streamed.
/// A chunk of at most `PACKED_MERGE_ROWS` rows whose first level leaves more than
/// `LEAF_ROWS` rows to stream or refine is merged on `(key, row hash)` instead: one scan a
/// side and the differing rows, where streaming (a scan of the covered range) or refining
/// costs as much or more and sends every row of the differing buckets.
async fn locate_in_buckets(
    ctx: &mut Sides,
    chunk: &Chunk<'_>,
    range: &KeyRange,
    rows: u64,
    buckets: Buckets,
) -> Result<u64> {
    let plan = chunk.plan;
    let (gu, gd) = bucket_sums_both(ctx, plan, &buckets).await?;
    let mut found = 0;
    let mut stream: Vec<(IntRange, u64)> = Vec::new();
    let mut first_level = rows <= PACKED_MERGE_ROWS;
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
        let dense = differing.len() * 2 > ids.len();
        let streamed: u64 = differing.iter().map(|(_, rows)| rows).sum();
        if std::mem::take(&mut first_level) && (dense || streamed > LEAF_ROWS) {
            return Ok(merge_by_hashes(ctx, chunk, range).await?.changes);
        }
        if dense && b.width > MIN_BUCKET_WIDTH {
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
        found += diff_streams(ctx, chunk, &covering, sql, rows)
            .await?
            .changes;
    }
    Ok(found)
}
