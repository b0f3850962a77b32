//! Row-level comparison of two key-ordered row streams, and of two row multisets for
//! tables without a key. Pure and synchronous: the engine feeds rows as they arrive, so
//! memory stays bounded by one row per side (keyed) or by one hash bucket (keyless).

use crate::row::{compare_keys, row_hash, KeyKind, Row};
use std::cmp::Ordering;
use std::collections::HashMap;

/// One row-level difference. Rows hold the compared columns in plan order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowChange {
    /// Present upstream, absent downstream.
    Missing { up: Row },
    /// Present downstream only.
    Extra { down: Row },
    /// Same key, other values.
    Changed { up: Row, down: Row },
}

/// Shape of the rows streamed for a merge: the compared columns first, then one sort value
/// per key column (the server's own sort order made comparable with memcmp/number rules).
#[derive(Debug, Clone)]
pub struct RowLayout {
    /// Number of compared columns at the front of each row.
    pub columns: usize,
    /// How each trailing sort value compares.
    pub sort_kinds: Vec<KeyKind>,
}

/// What the heads of the two streams say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The upstream head's key is smaller: it is missing downstream (advance upstream).
    Missing,
    /// The downstream head's key is smaller: it is extra (advance downstream).
    Extra,
    /// Same key, same values (advance both).
    Same,
    /// Same key, other values (advance both).
    Changed,
}

impl RowLayout {
    /// Compare the heads of both streams.
    pub fn step(&self, up: &Row, down: &Row) -> Step {
        match compare_keys(&self.sort_kinds, &up[self.columns..], &down[self.columns..]) {
            Ordering::Less => Step::Missing,
            Ordering::Greater => Step::Extra,
            Ordering::Equal => {
                // Byte equality of the compared values: exact, and cheaper than hashing both.
                if up[..self.columns] == down[..self.columns] {
                    Step::Same
                } else {
                    Step::Changed
                }
            }
        }
    }

    /// Drop the trailing sort values, keeping the compared columns.
    pub fn strip(&self, mut row: Row) -> Row {
        row.truncate(self.columns);
        row
    }
}

/// The merge of two key-ordered row streams, as a pure state machine: the caller reads the
/// rows [`Merger::wants`] from its streams (iterators, database cursors), hands them over
/// with [`Merger::put_up`] / [`Merger::put_down`] (`None` at the end of a stream), and calls
/// [`Merger::advance`] for the next difference. Every row merge of the checker runs through
/// it: [`diff_sorted`] over iterators and the engine over server streams, so what the
/// property tests exercise is what runs. Holds one row per side.
#[derive(Debug)]
pub struct Merger {
    layout: RowLayout,
    up: Head,
    down: Head,
    rows: (u64, u64),
}

/// A stream's current row, as far as the merge knows it.
#[derive(Debug)]
enum Head {
    /// The next row has not been read yet.
    Unread,
    Row(Row),
    Ended,
}

/// What one [`Merger::advance`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    /// A difference; the merge goes on.
    Change(RowChange),
    /// Two equal rows; the merge goes on.
    Same,
    /// Both streams ended.
    Done,
}

impl Merger {
    pub fn new(layout: RowLayout) -> Merger {
        Merger {
            layout,
            up: Head::Unread,
            down: Head::Unread,
            rows: (0, 0),
        }
    }

    /// Which streams the next [`Merger::advance`] needs a row (or the end) from:
    /// `(upstream, downstream)`.
    pub fn wants(&self) -> (bool, bool) {
        (
            matches!(self.up, Head::Unread),
            matches!(self.down, Head::Unread),
        )
    }

    /// The upstream's next row, `None` when it ended.
    pub fn put_up(&mut self, row: Option<Row>) {
        debug_assert!(matches!(self.up, Head::Unread), "upstream row not wanted");
        self.rows.0 += row.is_some() as u64;
        self.up = row.map_or(Head::Ended, Head::Row);
    }

    /// The downstream's next row, `None` when it ended.
    pub fn put_down(&mut self, row: Option<Row>) {
        debug_assert!(
            matches!(self.down, Head::Unread),
            "downstream row not wanted"
        );
        self.rows.1 += row.is_some() as u64;
        self.down = row.map_or(Head::Ended, Head::Row);
    }

    /// Rows put so far: `(upstream, downstream)`.
    pub fn rows(&self) -> (u64, u64) {
        self.rows
    }

    /// Compare the heads and consume what they decide. Panics when a wanted row was not
    /// put first.
    pub fn advance(&mut self) -> Advance {
        let up = std::mem::replace(&mut self.up, Head::Unread);
        let down = std::mem::replace(&mut self.down, Head::Unread);
        let l = &self.layout;
        match (up, down) {
            (Head::Ended, Head::Ended) => {
                (self.up, self.down) = (Head::Ended, Head::Ended);
                Advance::Done
            }
            (Head::Row(u), Head::Ended) => {
                self.down = Head::Ended;
                Advance::Change(RowChange::Missing { up: l.strip(u) })
            }
            (Head::Ended, Head::Row(d)) => {
                self.up = Head::Ended;
                Advance::Change(RowChange::Extra { down: l.strip(d) })
            }
            (Head::Row(u), Head::Row(d)) => match l.step(&u, &d) {
                Step::Missing => {
                    self.down = Head::Row(d);
                    Advance::Change(RowChange::Missing { up: l.strip(u) })
                }
                Step::Extra => {
                    self.up = Head::Row(u);
                    Advance::Change(RowChange::Extra { down: l.strip(d) })
                }
                Step::Same => Advance::Same,
                Step::Changed => Advance::Change(RowChange::Changed {
                    up: l.strip(u),
                    down: l.strip(d),
                }),
            },
            // A caller bug, not a data condition: looping on `Same` would hang the merge.
            _ => panic!("Merger::advance before the rows it wants were put"),
        }
    }
}

/// Merge two key-ordered row sequences into their differences (a [`Merger`] over iterators).
pub fn diff_sorted(
    layout: &RowLayout,
    up: impl IntoIterator<Item = Row>,
    down: impl IntoIterator<Item = Row>,
) -> Vec<RowChange> {
    let (mut up, mut down) = (up.into_iter(), down.into_iter());
    let mut m = Merger::new(layout.clone());
    let mut out = Vec::new();
    loop {
        let (wu, wd) = m.wants();
        if wu {
            m.put_up(up.next());
        }
        if wd {
            m.put_down(down.next());
        }
        match m.advance() {
            Advance::Change(c) => out.push(c),
            Advance::Same => {}
            Advance::Done => return out,
        }
    }
}

/// Multiset difference for tables without a key: rows are counted by their 128-bit hash,
/// and every surplus copy becomes one Missing (upstream surplus) or Extra (downstream
/// surplus). Memory is bounded by the distinct rows fed in, so the engine feeds one hash
/// bucket at a time.
#[derive(Debug, Default)]
pub struct MultisetDiff {
    rows: HashMap<u128, (i64, Row)>,
}

impl MultisetDiff {
    pub fn new() -> Self {
        Self::default()
    }

    /// Count one upstream copy.
    pub fn add_up(&mut self, row: Row) {
        let entry = self.rows.entry(row_hash(&row)).or_insert((0, Vec::new()));
        if entry.1.is_empty() {
            entry.1 = row;
        }
        entry.0 += 1;
    }

    /// Count one downstream copy.
    pub fn add_down(&mut self, row: Row) {
        let entry = self.rows.entry(row_hash(&row)).or_insert((0, Vec::new()));
        if entry.1.is_empty() {
            entry.1 = row;
        }
        entry.0 -= 1;
    }

    /// The surplus copies, in a deterministic order.
    pub fn finish(self) -> Vec<RowChange> {
        let mut entries: Vec<_> = self
            .rows
            .into_iter()
            .filter(|(_, (n, _))| *n != 0)
            .collect();
        entries.sort_by_key(|(h, _)| *h);
        let mut out = Vec::new();
        for (_, (n, row)) in entries {
            for _ in 0..n.unsigned_abs() {
                out.push(if n > 0 {
                    RowChange::Missing { up: row.clone() }
                } else {
                    RowChange::Extra { down: row.clone() }
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn row(k: i64, v: &str) -> Row {
        // compared columns: k, v; sort value: k
        vec![
            Some(k.to_string().into_bytes()),
            Some(v.as_bytes().to_vec()),
            Some(k.to_string().into_bytes()),
        ]
    }

    fn layout() -> RowLayout {
        RowLayout {
            columns: 2,
            sort_kinds: vec![KeyKind::Int],
        }
    }

    #[test]
    fn finds_missing_extra_changed() {
        let up = vec![row(1, "a"), row(2, "b"), row(4, "d")];
        let down = vec![row(2, "B"), row(3, "c"), row(4, "d")];
        let d = diff_sorted(&layout(), up, down);
        assert_eq!(d.len(), 3);
        assert!(matches!(&d[0], RowChange::Missing { up } if up.len() == 2));
        assert!(matches!(&d[1], RowChange::Changed { .. }));
        assert!(matches!(&d[2], RowChange::Extra { .. }));
    }

    #[test]
    fn multiset_counts_copies() {
        let r = |s: &str| vec![Some(s.as_bytes().to_vec())];
        let mut m = MultisetDiff::new();
        m.add_up(r("x"));
        m.add_up(r("x"));
        m.add_down(r("x"));
        m.add_down(r("y"));
        let d = m.finish();
        assert_eq!(d.len(), 2);
        assert_eq!(
            d.iter()
                .filter(|c| matches!(c, RowChange::Missing { .. }))
                .count(),
            1
        );
        assert_eq!(
            d.iter()
                .filter(|c| matches!(c, RowChange::Extra { .. }))
                .count(),
            1
        );
    }

    proptest! {
        /// The merge diff equals the diff of two key->value maps.
        #[test]
        fn merge_matches_map_model(
            up in proptest::collection::btree_map(-50i64..50, "[a-c]{0,2}", 0..40),
            down in proptest::collection::btree_map(-50i64..50, "[a-c]{0,2}", 0..40),
        ) {
            let to_rows = |m: &BTreeMap<i64, String>| m.iter().map(|(k, v)| row(*k, v)).collect::<Vec<_>>();
            let d = diff_sorted(&layout(), to_rows(&up), to_rows(&down));
            let (mut missing, mut extra, mut changed) = (0, 0, 0);
            for c in &d {
                match c {
                    RowChange::Missing { .. } => missing += 1,
                    RowChange::Extra { .. } => extra += 1,
                    RowChange::Changed { .. } => changed += 1,
                }
            }
            let exp_missing = up.keys().filter(|k| !down.contains_key(k)).count();
            let exp_extra = down.keys().filter(|k| !up.contains_key(k)).count();
            let exp_changed = up.iter().filter(|(k, v)| down.get(k).is_some_and(|dv| dv != *v)).count();
            prop_assert_eq!((missing, extra, changed), (exp_missing, exp_extra, exp_changed));
        }

        /// The merger as the engine drives it on `(key, hash, key)` streams of dense chunks:
        /// it counts every row it was given and names exactly the keys that are on one side
        /// only or whose hash differs.
        #[test]
        fn merger_counts_rows_and_names_differing_keys(
            up in proptest::collection::btree_map(-50i64..50, 0u32..4, 0..40),
            down in proptest::collection::btree_map(-50i64..50, 0u32..4, 0..40),
        ) {
            let rows = |m: &BTreeMap<i64, u32>| -> Vec<Row> {
                m.iter()
                    .map(|(k, h)| {
                        let k = Some(k.to_string().into_bytes());
                        vec![k.clone(), Some(h.to_string().into_bytes()), k]
                    })
                    .collect()
            };
            let (mut us, mut ds) = (rows(&up).into_iter(), rows(&down).into_iter());
            let mut m = Merger::new(layout());
            let mut keys = Vec::new();
            loop {
                let (wu, wd) = m.wants();
                if wu { m.put_up(us.next()); }
                if wd { m.put_down(ds.next()); }
                match m.advance() {
                    Advance::Done => break,
                    Advance::Same => {}
                    Advance::Change(c) => {
                        let r = match c {
                            RowChange::Missing { up } | RowChange::Changed { up, .. } => up,
                            RowChange::Extra { down } => down,
                        };
                        prop_assert_eq!(r.len(), 2);
                        let k = String::from_utf8(r[0].clone().unwrap()).unwrap();
                        keys.push(k.parse::<i64>().unwrap());
                    }
                }
            }
            prop_assert_eq!(m.rows(), (up.len() as u64, down.len() as u64));
            let expected: Vec<i64> = up
                .keys()
                .chain(down.keys())
                .copied()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter(|k| up.get(k) != down.get(k))
                .collect();
            prop_assert_eq!(keys, expected);
        }
    }
}
