//! `--apply-fix`: fix statements executed on the downstream as the aggregator receives
//! them (one transaction per batch of changes), and the repaired ranges checksummed again
//! when the run's data phase is over.

use super::keyless::bucket_checksums;
use super::locate::checksum_both;
use super::plan::{Side, TablePlan};
use super::state::TableState;
use super::union::checksums;
use crate::chunk::KeyRange;
use crate::db::{Conn, Source};
use crate::error::Result;
use std::collections::BTreeSet;

/// Execute fix statements in one transaction.
pub(super) async fn apply(conn: &mut Conn, statements: &[String]) -> Result<()> {
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
/// `ups` are the upstream sources, `source-instances` order.
async fn recheck(
    ups: &[Source],
    down: &Source,
    plan: &TablePlan,
    ranges: &[KeyRange],
) -> Result<bool> {
    if plan.is_merged() {
        return recheck_merged(ups, down, plan, ranges).await;
    }
    let (mut uc, mut dc) = tokio::try_join!(ups[0].connect(), down.connect())?;
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

/// [`recheck`] of a merged target: one connection per part.
async fn recheck_merged(
    ups: &[Source],
    down: &Source,
    plan: &TablePlan,
    ranges: &[KeyRange],
) -> Result<bool> {
    let mut conns = Vec::with_capacity(plan.parts.len());
    for p in &plan.parts {
        conns.push(ups[p.source].connect().await?);
    }
    let mut dc = down.connect().await?;
    let mut equal = true;
    for r in ranges {
        let (cu, cd) = checksums(conns.iter_mut().collect(), &mut dc, plan, r).await?;
        if cu != cd {
            equal = false;
            break;
        }
    }
    for c in conns {
        c.close().await;
    }
    dc.close().await;
    Ok(equal)
}

/// `--apply-fix`: checksum the repaired ranges again (tables taken whole from a checkpoint
/// included, unless their re-check already ran).
pub(super) async fn recheck_fixed(
    ups: &[Source],
    down: &Source,
    states: &mut [TableState],
) -> Result<()> {
    for st in states.iter_mut() {
        let Some(plan) = st.plan.clone() else {
            continue;
        };
        if st.dirty.is_empty() || st.report.error.is_some() || st.report.recheck_equal.is_some() {
            continue;
        }
        let equal = recheck(ups, down, &plan, &st.dirty).await?;
        st.report.fix_applied = true;
        st.report.recheck_equal = Some(equal);
    }
    Ok(())
}
