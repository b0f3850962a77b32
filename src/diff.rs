//! Row-level comparison of two key-ordered row streams. Pure and synchronous.

use crate::row::Row;

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
