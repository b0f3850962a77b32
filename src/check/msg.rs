//! The messages between the pipeline's stages: the chunk queue (producer → workers) and
//! the results (producer and workers → aggregator). Every chunk is announced
//! (`ChunkQueued`) before a worker can take it, so the aggregator can keep the contiguous
//! finished prefix the checkpoint saves.

use super::plan::TablePlan;
use crate::chunk::KeyRange;
use crate::diff::RowChange;
use crate::row::Row;
use std::sync::Arc;

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
    pub fn table(&self) -> usize {
        match self {
            ChunkJob::Range { table, .. } | ChunkJob::Keyless { table, .. } => *table,
        }
    }

    /// The chunk's position in its table's key order (a keyless table is one chunk, 0).
    pub fn seq(&self) -> u64 {
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
    /// Shard merge: keys held by several upstream tables of the target (described).
    Overlaps {
        table: usize,
        seq: u64,
        keys: Vec<String>,
    },
}

impl WorkerMsg {
    /// The table the message is about.
    pub fn table(&self) -> usize {
        match self {
            WorkerMsg::TableStarted { table }
            | WorkerMsg::TableChunks { table, .. }
            | WorkerMsg::ChunkQueued { table, .. }
            | WorkerMsg::Changes { table, .. }
            | WorkerMsg::ChunkDone { table, .. }
            | WorkerMsg::TableError { table, .. }
            | WorkerMsg::Overlaps { table, .. } => *table,
        }
    }
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
