//! Arithmetic chunks and buckets over a single integer key. Pure.
//!
//! A table keyed by one integer column is split by key *value*, not by walking its index:
//! chunk bounds are computed from the key's MIN/MAX and the server's row estimate for a
//! candidate range (`EXPLAIN`, an index dive that reads no rows), so the upstream is not read
//! a second time just to find where chunks end. A chunk with both bounds known is checksummed
//! per bucket of keys in the same scan (`GROUP BY (key - base) DIV width`), which costs a few
//! per cent more than one checksum and tells, when the chunk differs, which narrow key ranges
//! to look at without another scan.

use super::range::KeyRange;
use crate::row::Row;

/// Key spans wider than this are not bucketed: `key - base` could leave BIGINT's range on
/// the server (an error), and such sparse keys gain nothing from arithmetic buckets.
pub const MAX_BUCKETED_SPAN: i128 = 1 << 62;

/// Parse an integer key value as the server prints it.
pub fn parse_int(v: &[u8]) -> Option<i128> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// A key tuple holding one integer value.
pub fn int_row(v: i128) -> Row {
    vec![Some(v.to_string().into_bytes())]
}

/// The integer value of a one-column bound.
pub fn row_int(row: &Row) -> Option<i128> {
    match row.as_slice() {
        [Some(v)] => parse_int(v),
        _ => None,
    }
}

/// A half-open integer key range `lower < key <= upper`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntRange {
    pub lower: i128,
    pub upper: i128,
}

impl IntRange {
    pub fn span(&self) -> i128 {
        self.upper - self.lower
    }

    pub fn to_bounds(self) -> (Row, Row) {
        (int_row(self.lower), int_row(self.upper))
    }

    /// This range cut into at most `n` consecutive ranges of (about) equal key width.
    pub fn cut(self, n: i128) -> Vec<IntRange> {
        let step = ((self.span() + n - 1) / n.max(1)).max(1);
        let mut out = Vec::new();
        let mut lower = self.lower;
        while lower < self.upper {
            let upper = lower.saturating_add(step).min(self.upper);
            out.push(IntRange { lower, upper });
            lower = upper;
        }
        out
    }

    /// The same range as key bounds.
    pub fn key_range(self) -> KeyRange {
        KeyRange {
            lower: Some(int_row(self.lower)),
            upper: Some(int_row(self.upper)),
        }
    }
}

/// Buckets `(key - base) DIV width` over a range whose lower bound is `base`: bucket `b`
/// holds `base + b*width < key <= …` — see [`Buckets::range_of`]. Keys inside the range
/// are `> base`, so `key - base >= 1` and truncating division never mixes signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    pub range: IntRange,
    pub width: i128,
}

impl Buckets {
    /// About `count` buckets over `range` (at least one key wide each). `None` when the
    /// range cannot be bucketed (empty, or wider than [`MAX_BUCKETED_SPAN`]).
    pub fn over(range: IntRange, count: i128) -> Option<Buckets> {
        if range.span() <= 0 || range.span() > MAX_BUCKETED_SPAN {
            return None;
        }
        let width = (range.span() + count.max(1) - 1) / count.max(1);
        Some(Buckets {
            range,
            width: width.max(1),
        })
    }

    /// Buckets of `width` keys over `range`.
    pub fn with_width(range: IntRange, width: i128) -> Option<Buckets> {
        Self::over(range, 1).map(|b| Buckets {
            width: width.max(1),
            ..b
        })
    }

    /// How many buckets cover the range.
    pub fn count(&self) -> i128 {
        // Keys run from base+1 to upper: bucket ids 0 ..= (span - 1) / width... except that
        // `(key - base) DIV width` for key = base + width is 1, so ids reach span / width.
        self.range.span() / self.width + 1
    }

    /// The SQL expression of the bucket id for key expression `key`.
    pub fn sql(&self, key: &str) -> String {
        let base = self.range.lower;
        let shifted = if base >= 0 {
            format!("{key} - {base}")
        } else {
            format!("{key} + {}", -base)
        };
        format!("({shifted}) DIV {}", self.width)
    }

    /// The keys of bucket `b`: `(key - base) DIV width = b` ⇔ `base + b*width <= key <
    /// base + (b+1)*width`, i.e. `base + b*width - 1 < key <= base + (b+1)*width - 1`,
    /// clipped to the range.
    pub fn range_of(&self, b: i128) -> IntRange {
        let base = self.range.lower;
        IntRange {
            lower: (base + b * self.width - 1).max(self.range.lower),
            upper: (base + (b + 1) * self.width - 1).min(self.range.upper),
        }
    }
}

/// Merge ranges that touch (`a.upper == b.lower`) into one; input sorted by `lower`.
pub fn coalesce(ranges: &[IntRange]) -> Vec<IntRange> {
    let mut out: Vec<IntRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if last.upper >= r.lower => last.upper = last.upper.max(r.upper),
            _ => out.push(*r),
        }
    }
    out
}

/// The widest block of the arithmetic split: `2^MAX_LEVEL` keys (wider than any integer
/// type's range).
pub const MAX_LEVEL: u32 = 100;

/// The arithmetic split's grid: chunks are blocks of `2^level` keys that start at a
/// multiple of their own size from `origin` (the key below the smallest one). Which block
/// is taken at a position depends only on that position and the data, never on where a run
/// started, so a resumed run cuts the same chunks as an uninterrupted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub origin: i128,
}

impl Grid {
    pub fn block(level: u32) -> i128 {
        1i128 << level.min(MAX_LEVEL)
    }

    /// The largest level whose blocks may start at `cursor` (a grid position).
    pub fn top_level(&self, cursor: i128) -> u32 {
        let off = cursor - self.origin;
        if off <= 0 {
            MAX_LEVEL
        } else {
            off.trailing_zeros().min(MAX_LEVEL)
        }
    }

    /// The level whose blocks are closest to (at most) `keys` wide.
    pub fn level_for(keys: i128) -> u32 {
        (127 - keys.max(1).leading_zeros()).min(MAX_LEVEL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `(key - base) DIV width` as the server computes it (truncating; key > base).
    fn server_bucket(b: &Buckets, key: i128) -> i128 {
        (key - b.range.lower) / b.width
    }

    #[test]
    fn a_range_is_cut_into_consecutive_pieces_that_cover_it() {
        let r = |lower, upper| IntRange { lower, upper };
        assert_eq!(
            r(0, 16).cut(8),
            (0..8).map(|i| r(2 * i, 2 * i + 2)).collect::<Vec<_>>()
        );
        assert_eq!(r(-5, 5).cut(3), vec![r(-5, -1), r(-1, 3), r(3, 5)]);
        assert_eq!(r(7, 9).cut(8), vec![r(7, 8), r(8, 9)]);
        assert!(r(3, 3).cut(8).is_empty());
    }

    #[test]
    fn bucket_sql_shifts_by_base() {
        let b = Buckets::over(
            IntRange {
                lower: 100,
                upper: 1100,
            },
            10,
        )
        .unwrap();
        assert_eq!(b.width, 100);
        assert_eq!(b.sql("`id`"), "(`id` - 100) DIV 100");
        let b = Buckets::over(
            IntRange {
                lower: -1,
                upper: 9,
            },
            5,
        )
        .unwrap();
        assert_eq!(b.sql("`id`"), "(`id` + 1) DIV 2");
    }

    #[test]
    fn empty_or_huge_ranges_are_not_bucketed() {
        assert!(Buckets::over(IntRange { lower: 5, upper: 5 }, 4).is_none());
        let huge = IntRange {
            lower: i64::MIN as i128 - 1,
            upper: i64::MAX as i128,
        };
        assert!(Buckets::over(huge, 64).is_none());
    }

    #[test]
    fn coalesce_joins_touching_ranges_only() {
        let r = |lower, upper| IntRange { lower, upper };
        assert_eq!(
            coalesce(&[r(0, 10), r(10, 20), r(25, 30), r(30, 31)]),
            vec![r(0, 20), r(25, 31)]
        );
        assert!(coalesce(&[]).is_empty());
    }

    #[test]
    fn grid_blocks_align_to_their_size() {
        let g = Grid { origin: -1 };
        assert_eq!(g.top_level(-1), MAX_LEVEL);
        assert_eq!(g.top_level(-1 + 6400), 8);
        assert_eq!(g.top_level(-1 + 301), 0);
        assert_eq!(g.top_level(-1 + 1024), 10);
        assert_eq!(Grid::block(10), 1024);
        assert_eq!(Grid::level_for(1), 0);
        assert_eq!(Grid::level_for(1000), 9);
        assert_eq!(Grid::level_for(1024), 10);
    }

    proptest! {
        /// Every key of the range is in exactly the bucket whose range holds it, bucket ids
        /// stay below `count()`, and bucket ranges tile the range.
        #[test]
        fn buckets_tile_the_range(
            lower in -1_000_000i128..1_000_000,
            span in 1i128..5_000,
            count in 1i128..100,
        ) {
            let range = IntRange { lower, upper: lower + span };
            let b = Buckets::over(range, count).unwrap();
            for key in range.lower + 1..=range.upper {
                let id = server_bucket(&b, key);
                prop_assert!(id >= 0 && id < b.count());
                let r = b.range_of(id);
                prop_assert!(r.lower < key && key <= r.upper, "key {key} bucket {id} range {r:?}");
            }
            let mut next = range.lower;
            for id in 0..b.count() {
                let r = b.range_of(id);
                if r.upper <= r.lower {
                    continue;
                }
                prop_assert_eq!(r.lower, next);
                next = r.upper;
            }
            prop_assert_eq!(next, range.upper);
        }
    }
}
