//! Tables without a usable key, compared as multisets: one bucketed checksum scan per side
//! finds the differing hash buckets, whose rows are then counted by their 128-bit hash a
//! few buckets at a time (memory bounded by the bucket size).

use super::merge::send_changes;
use super::msg::WorkerMsg;
use super::plan::{Side, TablePlan};
use super::sides::{retry, Sides};
use crate::checksum::{parse_checksum, Checksum};
use crate::chunk::KeyRange;
use crate::db::{cell_u64, Conn};
use crate::diff::MultisetDiff;
use crate::error::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::mpsc;

/// Keyless tables: how many differing hash buckets are diffed per scan.
const BUCKETS_PER_SCAN: usize = 4;

/// Per-bucket (count, sum) of a keyless table on one side.
pub(super) async fn bucket_checksums(
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
pub(super) async fn check_keyless(
    ctx: &mut Sides,
    table: usize,
    plan: &TablePlan,
    msgs: &mpsc::Sender<WorkerMsg>,
) -> Result<()> {
    let count_sql = format!(
        "SELECT COUNT(*) FROM {} WHERE {}",
        plan.source(Side::Up),
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
