//! Run results: the report model, `summary.txt`, `summary.json`, the terminal table and
//! progress display. Pure rendering plus file writes; no database access.
//!
//! The JSON schema is documented in docs/summary-json.md and is a stable contract.

use serde::Serialize;
use std::path::PathBuf;

/// Overall outcome; decides the exit code (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    Equal,
    Different,
    Error,
}

/// Outcome of one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableResult {
    Equal,
    Different,
    Skipped,
    Error,
}

/// What was learned about one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    /// Downstream (target) schema and table name.
    pub schema: String,
    pub table: String,
    /// Upstream name when routes map it elsewhere (`schema.table`).
    pub upstream_table: String,
    pub result: TableResult,
    pub structure_equal: bool,
    /// One line per structure difference.
    pub structure_diffs: Vec<String>,
    /// Whether the data was compared (false for check-struct-only, skipped or failed tables).
    pub data_checked: bool,
    /// Rows present upstream and absent downstream.
    pub rows_missing: u64,
    /// Rows present only downstream.
    pub rows_extra: u64,
    /// Rows with the same key and other values (always 0 for keyless tables).
    pub rows_changed: u64,
    pub rows_upstream: u64,
    pub rows_downstream: u64,
    pub chunks: u64,
    pub chunks_different: u64,
    /// Fix SQL file, relative to the output directory, when one was written.
    pub fix_sql: Option<PathBuf>,
    pub skip_reason: Option<String>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// One side of the comparison as it was read.
#[derive(Debug, Clone, Serialize)]
pub struct SourceReport {
    /// Data-source name from the config.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// `mariadb`, `mysql` or `tidb`.
    pub flavour: String,
    pub version: String,
    /// The point the side was read at, e.g. `live, not pinned`.
    pub snapshot: String,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub result: RunResult,
    pub syncgate_version: String,
    /// Checksum definition used ([`crate::checksum::CHECKSUM_VERSION`]).
    pub checksum: String,
    pub started_at: String,
    pub duration_ms: u64,
    pub upstream: Vec<SourceReport>,
    pub downstream: SourceReport,
    pub output_dir: PathBuf,
    pub tables: Vec<TableReport>,
    /// A run-level error (tables may still carry their own).
    pub error: Option<String>,
    pub warnings: Vec<String>,
}
