//! Per-table chunk bookkeeping: chunks finish out of order, and only the contiguous
//! finished prefix in key order is saved.

use crate::chunk::KeyRange;
use crate::row::Row;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Row counts accumulated over chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkCounts {
    pub rows_missing: u64,
    pub rows_extra: u64,
    pub rows_changed: u64,
    pub rows_upstream: u64,
    pub rows_downstream: u64,
    pub chunks_different: u64,
    /// Shard merge: keys held by several upstream tables.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub overlapping_keys: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ChunkCounts {
    fn add(&mut self, o: &ChunkCounts) {
        self.rows_missing += o.rows_missing;
        self.rows_extra += o.rows_extra;
        self.rows_changed += o.rows_changed;
        self.rows_upstream += o.rows_upstream;
        self.rows_downstream += o.rows_downstream;
        self.chunks_different += o.chunks_different;
        self.overlapping_keys += o.overlapping_keys;
    }
}

/// The contiguous finished prefix of a table's chunks (in key order, the order the
/// producer numbers them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prefix {
    /// Names of the chunk key columns; a resume whose plan has another key starts over.
    pub key: Vec<String>,
    /// Chunks `0..chunks` are finished.
    pub chunks: u64,
    /// Upper bound of chunk `chunks - 1`: the index walk resumes after it. Each value is
    /// its text when that is UTF-8, else `{"hex": "…"}`.
    #[serde(with = "key_json")]
    pub upper: Option<Row>,
    /// Chunk `chunks - 1` was the table's last (no upper bound): nothing is left.
    pub last: bool,
    /// Counts of the prefix's chunks.
    pub counts: ChunkCounts,
    /// Ranges with differences in the prefix (kept for `--apply-fix`'s re-check only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirty: Vec<KeyRange>,
}

/// Key values as readable JSON: `null`, the text when it is UTF-8, else `{"hex": "…"}`.
mod key_json {
    use crate::row::{Row, Value as Cell};
    use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::{json, Value};

    pub fn serialize<S: Serializer>(row: &Option<Row>, s: S) -> Result<S::Ok, S::Error> {
        let cell = |c: &Cell| match c {
            None => Value::Null,
            Some(b) => match std::str::from_utf8(b) {
                Ok(text) => Value::String(text.to_string()),
                Err(_) => json!({ "hex": hex::encode(b) }),
            },
        };
        row.as_ref()
            .map(|r| r.iter().map(cell).collect::<Vec<_>>())
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Row>, D::Error> {
        let cell = |v: Value| -> Result<Cell, D::Error> {
            match v {
                Value::Null => Ok(None),
                Value::String(text) => Ok(Some(text.into_bytes())),
                Value::Object(m) => match m.get("hex").and_then(Value::as_str) {
                    Some(h) => hex::decode(h).map(Some).map_err(D::Error::custom),
                    None => Err(D::Error::custom("a key value object needs \"hex\"")),
                },
                other => Err(D::Error::custom(format!("unexpected key value {other}"))),
            }
        };
        Option::<Vec<Value>>::deserialize(d)?
            .map(|vals| vals.into_iter().map(cell).collect())
            .transpose()
    }
}

/// A chunk after the prefix: known from the producer (`queued`) and/or finished (`done`).
#[derive(Debug, Clone, Default)]
struct Pending {
    queued: bool,
    upper: Option<Row>,
    done: bool,
    counts: ChunkCounts,
    dirty: Vec<KeyRange>,
}

/// One table's chunks in key order, and their contiguous finished prefix (sync-diff's
/// checkpoint heap). Memory: one entry per chunk queued or finished after the prefix.
#[derive(Debug, Clone, Default)]
pub struct ChunkTracker {
    prefix: Prefix,
    pending: BTreeMap<u64, Pending>,
    frozen: bool,
}

impl ChunkTracker {
    /// Start from a saved prefix (or `Prefix::default()` with the key names).
    pub fn new(prefix: Prefix) -> Self {
        ChunkTracker {
            prefix,
            pending: BTreeMap::new(),
            frozen: false,
        }
    }

    /// The producer queued chunk `seq` with this upper bound (`None`: the table's last).
    pub fn queued(&mut self, seq: u64, upper: Option<Row>) -> bool {
        let p = self.pending.entry(seq).or_default();
        p.queued = true;
        p.upper = upper;
        self.advance()
    }

    /// Row changes found in chunk `seq`.
    pub fn changes(&mut self, seq: u64, missing: u64, extra: u64, changed: u64) {
        let c = &mut self.pending.entry(seq).or_default().counts;
        c.rows_missing += missing;
        c.rows_extra += extra;
        c.rows_changed += changed;
    }

    /// Keys of chunk `seq` held by several upstream tables (shard merge).
    pub fn overlaps(&mut self, seq: u64, keys: u64) {
        self.pending.entry(seq).or_default().counts.overlapping_keys += keys;
    }

    /// A range of chunk `seq` had differences (for `--apply-fix`).
    pub fn dirty(&mut self, seq: u64, range: KeyRange) {
        self.pending.entry(seq).or_default().dirty.push(range);
    }

    /// Chunk `seq` finished. Returns whether the prefix grew.
    pub fn done(&mut self, seq: u64, up: u64, down: u64, different: bool) -> bool {
        let p = self.pending.entry(seq).or_default();
        p.done = true;
        p.counts.rows_upstream += up;
        p.counts.rows_downstream += down;
        p.counts.chunks_different += u64::from(different);
        self.advance()
    }

    /// An error was reported for the table, by a chunk not finished yet (so after the
    /// prefix): the prefix stops growing, and a resume checks everything after it again.
    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    pub fn prefix(&self) -> &Prefix {
        &self.prefix
    }

    fn advance(&mut self) -> bool {
        let mut grew = false;
        while !self.frozen && !self.prefix.last {
            let seq = self.prefix.chunks;
            match self.pending.get(&seq) {
                Some(p) if p.queued && p.done => {}
                _ => break,
            }
            let p = self.pending.remove(&seq).unwrap_or_default();
            self.prefix.chunks += 1;
            self.prefix.last = p.upper.is_none();
            self.prefix.upper = p.upper;
            self.prefix.counts.add(&p.counts);
            self.prefix.dirty.extend(p.dirty);
            grew = true;
        }
        if grew && self.pending.is_empty() {
            // An emptied BTreeMap keeps its node (about a kilobyte here): with thousands of
            // finished tables that is most of the run's memory.
            self.pending = BTreeMap::new();
        }
        grew
    }
}
