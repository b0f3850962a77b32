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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// The union of several key-ordered row streams (the upstream tables of a merged target),
/// in key order, as a pure state machine like [`Merger`]: feed each stream's next row where
/// [`Union::wants`] says, then take the smallest with [`Union::pop`]. Streams are assumed
/// to hold distinct keys each; a key found in several streams is an *overlap*: the row of
/// the lowest-numbered stream is the union's, the others are reported beside it.
#[derive(Debug)]
pub struct Union {
    layout: RowLayout,
    heads: Vec<Head>,
}

/// The union's next row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnionRow {
    /// The stream it came from.
    pub part: usize,
    pub row: Row,
    /// Other streams that held the same key (their rows were consumed).
    pub overlaps: Vec<usize>,
}

impl Union {
    pub fn new(layout: RowLayout, parts: usize) -> Union {
        Union {
            layout,
            heads: (0..parts).map(|_| Head::Unread).collect(),
        }
    }

    /// The first stream whose next row (or end) is needed before [`Union::pop`].
    pub fn wants(&self) -> Option<usize> {
        self.heads.iter().position(|h| matches!(h, Head::Unread))
    }

    /// Stream `part`'s next row, `None` when it ended.
    pub fn put(&mut self, part: usize, row: Option<Row>) {
        self.heads[part] = match row {
            Some(r) => Head::Row(r),
            None => Head::Ended,
        };
    }

    /// The row with the smallest key among the heads, or `None` when every stream ended.
    /// Call only when [`Union::wants`] is `None`.
    pub fn pop(&mut self) -> Option<UnionRow> {
        let cols = self.layout.columns;
        let kinds = &self.layout.sort_kinds;
        let mut best: Option<usize> = None;
        let mut ties = Vec::new();
        for (i, h) in self.heads.iter().enumerate() {
            let Head::Row(r) = h else { continue };
            match best {
                None => best = Some(i),
                Some(b) => {
                    let Head::Row(br) = &self.heads[b] else {
                        continue;
                    };
                    match compare_keys(kinds, &r[cols..], &br[cols..]) {
                        Ordering::Less => {
                            best = Some(i);
                            ties.clear();
                        }
                        Ordering::Equal => ties.push(i),
                        Ordering::Greater => {}
                    }
                }
            }
        }
        let part = best?;
        for &t in &ties {
            self.heads[t] = Head::Unread;
        }
        let Head::Row(row) = std::mem::replace(&mut self.heads[part], Head::Unread) else {
            return None;
        };
        Some(UnionRow {
            part,
            row,
            overlaps: ties,
        })
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

/// The `(integer key, row hash)` pairs a server packed into one value (`hash,key;hash,key…`,
/// any order), sorted by key. `None` when the text is not that (the caller then reads the
/// pairs row by row); NULL (no rows) is an empty list.
///
/// A list the server cut short (`group_concat_max_len`, `max_allowed_packet`) ends inside a
/// pair: without its `,` (refused here), with fewer pairs than the rows counted, or with
/// its last key cut, which [`key_xor`] against the server's `BIT_XOR` of the keys tells.
pub fn parse_key_hashes(packed: Option<&[u8]>) -> Option<Vec<(i128, u32)>> {
    let Some(packed) = packed.filter(|p| !p.is_empty()) else {
        return Some(Vec::new());
    };
    // One pass over the bytes: a dense chunk's list is megabytes, and `str::parse` per field
    // (UTF-8 check, then the generic integer parser) was most of the client's time on it.
    let mut pairs = Vec::with_capacity(packed.len() / 16);
    let mut rest = packed;
    loop {
        let (hash, after) = leading_digits(rest)?;
        let (b',', after) = after.split_first()? else {
            return None;
        };
        let hash = u32::try_from(hash).ok()?;
        let (negative, after) = match after.split_first() {
            Some((b'-', tail)) => (true, tail),
            _ => (false, after),
        };
        let (magnitude, after) = leading_digits(after)?;
        let key = if negative {
            -i128::from(magnitude)
        } else {
            i128::from(magnitude)
        };
        pairs.push((key, hash));
        match after.split_first() {
            None => break,
            Some((b';', tail)) if !tail.is_empty() => rest = tail,
            Some(_) => return None,
        }
    }
    if !pairs.is_sorted_by_key(|p| p.0) {
        pairs.sort_unstable_by_key(|p| p.0);
    }
    Some(pairs)
}

/// The unsigned decimal number `text` starts with (at least one digit, at most 2^64 - 1)
/// and what follows it.
fn leading_digits(text: &[u8]) -> Option<(u64, &[u8])> {
    let end = text
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(text.len());
    if end == 0 || end > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in &text[..end] {
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some((n, &text[end..]))
}

/// The keys XORed as the server's `BIT_XOR` does: on their 64-bit two's complement.
pub fn key_xor(pairs: &[(i128, u32)]) -> u64 {
    pairs.iter().fold(0, |x, (k, _)| x ^ (*k as u64))
}

/// The keys of two key-sorted `(key, hash)` lists that are on one side only or hashed
/// differently, in key order.
pub fn differing_keys(up: &[(i128, u32)], down: &[(i128, u32)]) -> Vec<i128> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < up.len() || j < down.len() {
        match (up.get(i), down.get(j)) {
            (Some(u), Some(d)) if u.0 == d.0 => {
                if u.1 != d.1 {
                    out.push(u.0);
                }
                i += 1;
                j += 1;
            }
            (Some(u), Some(d)) if u.0 < d.0 => {
                out.push(u.0);
                i += 1;
            }
            (Some(_), Some(d)) => {
                out.push(d.0);
                j += 1;
            }
            (Some(u), None) => {
                out.push(u.0);
                i += 1;
            }
            (None, Some(d)) => {
                out.push(d.0);
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
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

    /// Drive a [`Union`] over in-memory streams: `(part, row, overlaps)` in order.
    fn union_of(parts: Vec<Vec<Row>>) -> Vec<UnionRow> {
        let mut iters: Vec<_> = parts.into_iter().map(|p| p.into_iter()).collect();
        let mut u = Union::new(layout(), iters.len());
        let mut out = Vec::new();
        loop {
            while let Some(i) = u.wants() {
                u.put(i, iters[i].next());
            }
            match u.pop() {
                Some(r) => out.push(r),
                None => return out,
            }
        }
    }

    #[test]
    fn union_orders_parts_and_reports_overlaps() {
        let got = union_of(vec![
            vec![row(1, "a"), row(4, "d")],
            vec![row(2, "b"), row(4, "D"), row(5, "e")],
            vec![],
            vec![row(3, "c"), row(4, "x")],
        ]);
        let keys: Vec<(usize, String)> = got
            .iter()
            .map(|r| {
                (
                    r.part,
                    String::from_utf8(r.row[1].clone().unwrap()).unwrap(),
                )
            })
            .collect();
        let want = [(0, "a"), (1, "b"), (3, "c"), (0, "d"), (1, "e")];
        assert_eq!(keys, want.map(|(p, v)| (p, v.to_string())));
        assert_eq!(got[3].overlaps, vec![1, 3]);
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, r)| i == 3 || r.overlaps.is_empty()));
    }

    #[test]
    fn packed_key_hashes_refuse_what_is_not_a_list() {
        assert_eq!(parse_key_hashes(None), Some(Vec::new()));
        let pairs = parse_key_hashes(Some(b"7,3;4294967295,-1;0,18446744073709551615")).unwrap();
        assert_eq!(
            pairs,
            vec![(-1, u32::MAX), (3, 7), (18_446_744_073_709_551_615, 0)]
        );
        // As the server's BIT_XOR: -1 (BIGINT) and 2^64 - 1 (UNSIGNED) are the same bits.
        assert_eq!(key_xor(&pairs), 3);
        // Cut inside a hash or after a separator, a stray value, a hash out of range.
        for bad in [
            &b"1,2;3"[..],
            b"1,2;x,3",
            b"4294967296,1",
            b"1,2;",
            b"1,2;3,",
            b"1,2;;3,4",
            b",1",
            b"1,",
            b"1,-",
            b"1,2,3",
            b"1,18446744073709551616",
            b"1,+2",
        ] {
            assert_eq!(parse_key_hashes(Some(bad)), None, "{bad:?}");
        }
        // Cut inside the last key: it parses, and the keys' XOR tells.
        let cut = parse_key_hashes(Some(b"1,10;2,12")).unwrap();
        assert_ne!(key_xor(&cut), 10 ^ 123);
    }

    proptest! {
        /// The union of key-disjoint sorted parts is their sorted concatenation; a key in
        /// several parts comes once, from the lowest part, with the others as overlaps.
        #[test]
        fn union_matches_sorted_model(
            parts in proptest::collection::vec(
                proptest::collection::btree_map(-30i64..30, "[a-c]{0,2}", 0..15), 1..5),
        ) {
            let rows = parts
                .iter()
                .map(|m| m.iter().map(|(k, v)| row(*k, v)).collect())
                .collect();
            let got = union_of(rows);
            let mut want: BTreeMap<i64, (usize, Vec<usize>)> = BTreeMap::new();
            for (i, m) in parts.iter().enumerate() {
                for k in m.keys() {
                    want.entry(*k).and_modify(|e| e.1.push(i)).or_insert((i, Vec::new()));
                }
            }
            let got: Vec<(i64, usize, Vec<usize>)> = got
                .into_iter()
                .map(|r| {
                    let k = String::from_utf8(r.row[0].clone().unwrap()).unwrap().parse().unwrap();
                    (k, r.part, r.overlaps)
                })
                .collect();
            let want: Vec<(i64, usize, Vec<usize>)> =
                want.into_iter().map(|(k, (p, o))| (k, p, o)).collect();
            prop_assert_eq!(got, want);
        }

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

        /// A packed `(key, hash)` list in any order parses to the sorted pairs, and the
        /// differing keys are exactly those on one side only or hashed differently.
        #[test]
        fn packed_key_hashes_give_the_keys_whose_hashes_differ(
            up in proptest::collection::btree_map(-1_000i64..1_000, 0u32..4, 0..60),
            down in proptest::collection::btree_map(-1_000i64..1_000, 0u32..4, 0..60),
            seed in any::<u64>(),
        ) {
            let pack = |m: &BTreeMap<i64, u32>| {
                let mut pairs: Vec<String> = m.iter().map(|(k, h)| format!("{h},{k}")).collect();
                // Any order: the server's GROUP_CONCAT promises none.
                let n = pairs.len().max(1);
                pairs.rotate_left((seed as usize) % n);
                pairs.join(";").into_bytes()
            };
            let (pu, pd) = (pack(&up), pack(&down));
            let u = parse_key_hashes(Some(&pu)).unwrap();
            let d = parse_key_hashes(Some(&pd)).unwrap();
            prop_assert_eq!(u.len(), up.len());
            let got = differing_keys(&u, &d);
            let keys: std::collections::BTreeSet<i64> = up.keys().chain(down.keys()).copied().collect();
            let want: Vec<i128> = keys
                .into_iter()
                .filter(|k| up.get(k) != down.get(k))
                .map(i128::from)
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
