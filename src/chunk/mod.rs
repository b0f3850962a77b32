//! Key-range chunks: the pure range model and the splitter that walks the index.

mod range;

pub use range::{range_predicate, with_filter, KeyRange};
