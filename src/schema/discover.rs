//! Discovery (in progress).
/// Discover a table.
pub fn discover_table() {}
/// List tables.
pub fn list_tables() {}
