//! Key-range chunks: the pure range model, arithmetic chunks and buckets over a single
//! integer key, and probes between keys of other kinds.

mod buckets;
mod probe;
mod range;

pub use buckets::{
    coalesce, int_row, parse_int, row_int, Buckets, Grid, IntRange, MAX_BUCKETED_SPAN, MAX_LEVEL,
};
pub use probe::{between, Alphabet, Dec, Lead, Stamp};
pub use range::{compare_predicate, range_predicate, with_filter, KeyRange};
