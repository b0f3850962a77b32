//! Shard merge: a target compared with the union of its upstream tables
//! ([`TablePlan::parts`], on one upstream source or several).
//!
//! Chunks are cut on the downstream, which holds the union (`split`). Each chunk range is
//! checksummed on the downstream and on every part at once; the parts' results combine as
//! sync-diff-inspector's shard sources do: counts add, checksums XOR (keys are distinct
//! within a part; a key held by two parts adds to the count, so it cannot cancel out
//! unseen). A chunk that differs is not narrowed further: every part streams the range in
//! key order, `diff::Union` merges them into one stream, and that stream and the
//! downstream's go through the one merge, `diff::Merger`. Keys found in several parts are
//! reported as overlaps (the target can hold one row per key; the first part's is compared).

use super::locate::checksum;
use super::merge::diff_union;
use super::msg::WorkerMsg;
use super::plan::{Side, TablePlan};
use super::sides::{Chunk, Sides, MAX_RETRIES};
use crate::checksum::Checksum;
use crate::chunk::KeyRange;
use crate::db::Conn;
use crate::error::Result;
use crate::row::Row;

/// Check one chunk of a merged target.
pub(super) async fn check_merged(
    ctx: &mut Sides,
    chunk: &Chunk<'_>,
    range: KeyRange,
) -> Result<()> {
    let plan = chunk.plan;
    let mut attempt = 0u32;
    let (up, down) = loop {
        let (ups, dc) = ctx.part_conns(&plan.parts)?;
        match checksums(ups, dc, plan, &range).await {
            Err(e) if e.is_connection_lost() && !ctx.pinned && attempt < MAX_RETRIES => {
                attempt += 1;
                ctx.reconnect(attempt, &e).await?;
            }
            other => break other?,
        }
    };
    if up == down {
        chunk.done(up.count, down.count, false).await;
        return Ok(());
    }
    let (_, overlaps) = diff_union(ctx, chunk, &range).await?;
    if !overlaps.is_empty() {
        let keys = overlaps
            .iter()
            .map(|(row, parts)| describe_overlap(plan, row, parts, ctx))
            .collect();
        let msg = WorkerMsg::Overlaps {
            table: chunk.table,
            seq: chunk.seq,
            keys,
        };
        let _ = chunk.msgs.send(msg).await;
    }
    chunk.done(up.count, down.count, true).await;
    Ok(())
}

/// The range's checksum on the downstream and the parts' combined one: `(up, down)`.
pub(super) async fn checksums(
    ups: Vec<&mut Conn>,
    dc: &mut Conn,
    plan: &TablePlan,
    range: &KeyRange,
) -> Result<(Checksum, Checksum)> {
    let parts = ups
        .into_iter()
        .zip(&plan.parts)
        .map(|(c, p)| checksum(c, &p.plan, Side::Up, range));
    let up = async {
        let all = futures_util::future::try_join_all(parts).await?;
        Ok(all.iter().fold(Checksum::default(), |acc, c| Checksum {
            count: acc.count + c.count,
            sum: acc.sum ^ c.sum,
        }))
    };
    tokio::try_join!(up, checksum(dc, plan, Side::Down, range))
}

/// `key (1, 'a') in db.t_1 (source a), db.t_2 (source b)`.
fn describe_overlap(plan: &TablePlan, row: &Row, parts: &[usize], ctx: &Sides) -> String {
    let key: Vec<String> = plan
        .key
        .iter()
        .flatten()
        .map(|&p| match row.get(p).and_then(|v| v.as_deref()) {
            Some(v) if crate::sql::is_plain_number(v) => String::from_utf8_lossy(v).into(),
            Some(v) => crate::sql::quote_str(&String::from_utf8_lossy(v)),
            None => "NULL".into(),
        })
        .collect();
    let tables: Vec<String> = parts
        .iter()
        .filter_map(|&i| plan.parts.get(i))
        .map(|p| match ctx.parts.sources.get(p.source) {
            Some(s) if ctx.parts.sources.len() > 1 => format!("{} ({})", p.plan.upstream, s.name()),
            _ => p.plan.upstream.to_string(),
        })
        .collect();
    format!("key ({}) in {}", key.join(", "), tables.join(", "))
}
