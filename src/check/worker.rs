//! A check worker: owns one connection per side and checks chunks from the queue until it
//! closes. Reads are idempotent, so a lost connection is replaced and the step retried
//! (`sides::retry!`), except on connections that hold a pinned snapshot, which a new
//! connection could not rejoin.

use super::keyless::check_keyless;
use super::locate::check_range;
use super::msg::{ChunkJob, WorkerMsg};
use super::sides::{Chunk, DenseHints, PartConns, Sides};
use super::union::check_merged;
use crate::db::{Conn, Source};
use crate::error::Error;
use std::sync::Arc;
use tokio::sync::{mpsc, Mutex};

/// A worker: owns one connection per side and checks chunks until the queue closes.
///
/// `pinned` says, per side, that the connection holds a snapshot a new connection could not
/// rejoin: after an error on such a worker its remaining jobs fail (reported per table)
/// instead of being read from live data. Unpinned connections (and TiDB ones, whose snapshot
/// is set again on connect) are replaced and the failed step retried.
pub async fn work(
    up: Source,
    down: Source,
    initial: (Conn, Conn, PartConns),
    pinned: (bool, bool),
    jobs: Arc<Mutex<mpsc::Receiver<ChunkJob>>>,
    hints: Arc<DenseHints>,
    msgs: mpsc::Sender<WorkerMsg>,
) {
    let pinned = pinned.0 || pinned.1;
    let (part_sources, part_slots) = (initial.2.sources.clone(), initial.2.slots());
    let mut sides = Some(Sides {
        up: up.clone(),
        down: down.clone(),
        uc: initial.0,
        dc: initial.1,
        pinned,
        parts: initial.2,
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
            let parts = PartConns::open(part_sources.clone(), &part_slots);
            match tokio::try_join!(up.connect(), down.connect(), parts) {
                Ok((uc, dc, parts)) => {
                    sides = Some(Sides {
                        up: up.clone(),
                        down: down.clone(),
                        uc,
                        dc,
                        pinned,
                        parts,
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
                let chunk = Chunk {
                    table,
                    seq,
                    plan,
                    msgs: &msgs,
                };
                match plan.is_merged() {
                    true => check_merged(ctx, &chunk, range.clone()).await,
                    false => check_range(ctx, &chunk, range.clone(), &hints).await,
                }
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
        ctx.parts.close().await;
    }
}

async fn fail(msgs: &mpsc::Sender<WorkerMsg>, table: usize, seq: u64, e: Error) {
    let _ = msgs
        .send(WorkerMsg::TableError {
            table,
            message: crate::snapshot::tidb::explain(e).to_string(),
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
