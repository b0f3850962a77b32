//! Fix statements for executing over a connection (`--apply-fix`) rather than writing to a
//! file.

use super::render::plan;
use super::FixTable;
use crate::diff::RowChange;

/// Session settings the statements rely on. The fix file sets them itself; a connection that
/// applies [`statements_for_apply`] should run these first.
pub const APPLY_SESSION_SETTINGS: [&str; 3] = [
    "SET NAMES utf8mb4",
    "SET time_zone = '+00:00'",
    "SET SESSION foreign_key_checks = 0",
];

/// The same statements as [`render_changes`], in the same order, one per element, without
/// comments or `;`, for executing over a connection (see [`APPLY_SESSION_SETTINGS`]).
///
/// [`render_changes`]: super::render_changes
pub fn statements_for_apply(table: &FixTable, changes: &[RowChange]) -> Vec<String> {
    plan(table, changes).into_iter().map(|s| s.sql).collect()
}
