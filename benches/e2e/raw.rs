//! The raw limit: one `COUNT(*), BIT_XOR(CRC32(…))` per table per side over
//! `check-thread-count` connections per side (as many as syncgate gets), all at once.

use crate::scenario::Expected;
use crate::{Res, DATABASE};
use futures_util::future::try_join_all;
use mysql_async::prelude::Queryable;
use std::time::{Duration, Instant};
use syncgate::local::LocalServer;

const RAW_SQL: &str = "SELECT COUNT(*), BIT_XOR(CRC32(CONCAT_WS(',', id, k, c, pad)))";

/// `per_side` connections per side, opened once; connection `i` of a side checksums tables
/// `i + 1`, `i + 1 + per_side`, … in turn (with at least as many connections as tables, one
/// table each).
pub(crate) struct RawConns {
    /// (side 0 = upstream / 1 = downstream, its tables, connection)
    conns: Vec<(usize, Vec<u32>, mysql_async::Conn)>,
}

impl RawConns {
    pub(crate) async fn open(
        servers: &[&LocalServer; 2],
        tables: u32,
        per_side: usize,
    ) -> Res<RawConns> {
        let per_side = per_side.clamp(1, tables.max(1) as usize);
        let mut conns = Vec::new();
        for (side, s) in servers.iter().enumerate() {
            for i in 0..per_side {
                let mine = (1..=tables)
                    .filter(|t| (*t as usize - 1) % per_side == i)
                    .collect();
                conns.push((side, mine, s.conn().await?));
            }
        }
        Ok(RawConns { conns })
    }

    /// All tables, both sides at once; returns the wall time and each (side, table, count,
    /// xor).
    pub(crate) async fn run(&mut self) -> Res<(Duration, Vec<(usize, u32, u64, u64)>)> {
        let start = Instant::now();
        let per_conn = try_join_all(self.conns.iter_mut().map(|(side, tables, conn)| {
            let side = *side;
            async move {
                let mut out = Vec::with_capacity(tables.len());
                for &t in tables.iter() {
                    let sql = format!("{RAW_SQL} FROM `{DATABASE}`.sbtest{t}");
                    let r: Option<(u64, u64)> = conn.query_first(sql).await?;
                    let (count, xor) = r.unwrap_or((0, 0));
                    out.push((side, t, count, xor));
                }
                Ok::<_, mysql_async::Error>(out)
            }
        }))
        .await?;
        Ok((start.elapsed(), per_conn.into_iter().flatten().collect()))
    }

    pub(crate) async fn close(self) {
        for (_, _, c) in self.conns {
            let _ = c.disconnect().await;
        }
    }
}

/// Sanity check of the data from one raw run: the sides' checksums differ exactly in the
/// tables `plan` drifted.
pub(crate) fn check_against_plan(sums: &[(usize, u32, u64, u64)], plan: &[Expected]) -> Res<()> {
    for t in 1..=plan.len() as u32 {
        let side = |s: usize| {
            sums.iter()
                .find(|(side, tt, _, _)| *side == s && *tt == t)
                .map(|(_, _, c, x)| (*c, *x))
        };
        let drifted = plan[t as usize - 1].total() > 0;
        if (side(0) != side(1)) != drifted {
            return Err(format!(
                "sbtest{t}: raw checksums up {:?} down {:?} do not match the drift plan",
                side(0),
                side(1)
            )
            .into());
        }
    }
    Ok(())
}
