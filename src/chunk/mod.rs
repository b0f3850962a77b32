//! Key-range chunks: the pure range model, and arithmetic chunks and buckets over a single
//! integer key.

mod buckets;
mod range;

pub use buckets::{
    coalesce, int_row, parse_int, row_int, Buckets, Grid, IntRange, MAX_BUCKETED_SPAN, MAX_LEVEL,
};
pub use range::{range_predicate, with_filter, KeyRange};
