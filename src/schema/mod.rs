//! Table structure: the model, its discovery from `information_schema`, and the
//! comparison of two sides.

mod compare;
mod discover;
mod model;

pub use compare::{compare_structure, StructureDiff};
pub use discover::{discover_table, discover_tables, list_tables, Discovered};
pub use model::{Column, ForeignKey, Generated, Index, TableRef, TableSchema, TypeClass};
