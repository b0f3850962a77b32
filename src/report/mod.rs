//! Run results: the report model, `summary.txt`, `summary.json`, the terminal table and
//! progress display. Pure rendering plus file writes; no database access.
//!
//! The JSON schema is documented in docs/summary-json.md and is a stable contract.
//!
//! Submodules: [`summary`] writes `summary.json` / `summary.txt`, [`terminal`] renders the
//! end-of-run table, [`progress`] shows live progress (bars on a TTY, plain lines otherwise).

mod format;
pub mod metrics;
pub mod progress;
pub mod summary;
pub mod terminal;

pub use progress::{Progress, TableProgress};
pub use summary::{render_summary_txt, write_summary, SUMMARY_JSON, SUMMARY_TXT};
pub use terminal::render_terminal;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// The snapshot text for a side that was read without a pinned point in time; the summary
/// warns about it because concurrent writes then show up as differences.
pub const SNAPSHOT_LIVE: &str = "live, not pinned";

/// Overall outcome; decides the exit code (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    Equal,
    /// Differences were found, `--apply-fix` applied the fix SQL and the re-check of every
    /// repaired table found it equal: the downstream is now equal (exit 0).
    Repaired,
    Different,
    Error,
}

/// Outcome of one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableResult {
    Equal,
    Different,
    Skipped,
    Error,
}

/// What was learned about one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Undo SQL file (restores the downstream as read, applied after the fix), relative to
    /// the output directory, written beside the fix SQL.
    #[serde(default)]
    pub undo_sql: Option<PathBuf>,
    pub skip_reason: Option<String>,
    pub error: Option<String>,
    pub duration_ms: u64,
    /// The fix SQL was executed on the downstream during the run (apply mode).
    #[serde(default)]
    pub fix_applied: bool,
    /// After applying the fix, whether re-checking the repaired ranges found them equal;
    /// `None` when no re-check ran. `result` still describes what was found before the fix.
    #[serde(default)]
    pub recheck_equal: Option<bool>,
    /// Chunks whose results were taken from a checkpoint (`check --resume`) instead of being
    /// checked in this run: all of them for a table finished before the interruption.
    #[serde(default)]
    pub resumed_chunks: u64,
    /// A system-versioned table compared with its history (`system-versioned-history`):
    /// every row version, period columns included, as a multiset; no fix SQL is written.
    #[serde(default)]
    pub history: bool,
    /// Shard merge: keys held by more than one upstream table of this target (the target
    /// can hold only one row per key; the first part's row is compared).
    #[serde(default)]
    pub overlapping_keys: u64,
    /// The first few of them: the key and the upstream tables holding it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overlaps: Vec<String>,
}

/// One side of the comparison as it was read.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Whether the side was read at a pinned point (a snapshot, a fenced GTID); false means
    /// live, where concurrent writes can look like differences.
    #[serde(default)]
    pub pinned: bool,
    /// Whether the connection to this side is encrypted (TLS).
    #[serde(default)]
    pub encrypted: bool,
    /// The TLS cipher the server reports, e.g. `TLS_AES_256_GCM_SHA384`; `None` for a plain
    /// connection (or a server that does not say).
    #[serde(default)]
    pub tls_cipher: Option<String>,
}

/// An object in a checked schema that the check does not compare (it holds no table data):
/// a view, sequence, procedure, function, trigger or event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotCompared {
    /// `view`, `sequence`, `procedure`, `function`, `package`, `package body`, `trigger`
    /// or `event`.
    pub kind: String,
    /// Schema (downstream name for views and sequences).
    pub schema: String,
    pub name: String,
    /// `both`, `upstream only` or `downstream only`.
    pub on: String,
}

/// A difference in what the downstream hands out next rather than in its rows: an
/// AUTO_INCREMENT counter at or below a key the upstream holds, or a sequence behind,
/// defined differently or missing. A promoted downstream with one reuses ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataDiff {
    /// `auto_increment` or `sequence`.
    pub kind: String,
    /// Downstream schema and name of the table or sequence.
    pub schema: String,
    pub name: String,
    /// What differs, with both sides' values.
    pub detail: String,
    /// The statements that fix it on the downstream, in order.
    pub fix: Vec<String>,
    /// `--apply-fix` ran [`Self::fix`] and a second read found the downstream fixed.
    #[serde(default)]
    pub fixed: bool,
}

impl fmt::Display for MetadataDiff {
    /// `kind `schema`.`name`: detail`, as the summary, the terminal and the fix file say it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}.{}: {}",
            self.kind,
            crate::sql::quote_ident(&self.schema),
            crate::sql::quote_ident(&self.name),
            self.detail
        )
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Objects of the checked schemas that were not compared (see [`NotCompared`]).
    #[serde(default)]
    pub not_compared: Vec<NotCompared>,
    /// AUTO_INCREMENT counters and sequences that differ (see [`MetadataDiff`]).
    #[serde(default)]
    pub metadata: Vec<MetadataDiff>,
    /// The file holding [`Self::metadata`]'s fix statements, relative to the output
    /// directory.
    #[serde(default)]
    pub metadata_fix_sql: Option<PathBuf>,
}

impl RunResult {
    /// The lowercase word used in summary.json, summary.txt and the terminal.
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Equal => "equal",
            RunResult::Repaired => "repaired",
            RunResult::Different => "different",
            RunResult::Error => "error",
        }
    }
}

impl fmt::Display for RunResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TableResult {
    /// The lowercase word used in summary.json, summary.txt and the terminal.
    pub fn as_str(self) -> &'static str {
        match self {
            TableResult::Equal => "equal",
            TableResult::Different => "different",
            TableResult::Skipped => "skipped",
            TableResult::Error => "error",
        }
    }
}

impl fmt::Display for TableResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TableReport {
    /// `schema.table` of the downstream (target) table.
    pub fn name(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    /// The target name, plus the upstream name when a route maps it from elsewhere.
    pub fn display_name(&self) -> String {
        let name = self.name();
        if self.upstream_table.is_empty() || self.upstream_table == name {
            name
        } else {
            format!("{name} (from {})", self.upstream_table)
        }
    }
}

impl SourceReport {
    /// True when the side was read live, so the summary must warn that concurrent writes
    /// can look like differences.
    pub fn is_live(&self) -> bool {
        !self.pinned
    }
}

/// Per-result table counts, for the one-line totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableCounts {
    pub total: usize,
    pub equal: usize,
    pub different: usize,
    pub skipped: usize,
    pub error: usize,
}

impl fmt::Display for TableCounts {
    /// `N tables: E equal, D different, S skipped, X errors`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {} equal, {} different, {} skipped, {} {}",
            self.total,
            if self.total == 1 { "table" } else { "tables" },
            self.equal,
            self.different,
            self.skipped,
            self.error,
            if self.error == 1 { "error" } else { "errors" },
        )
    }
}

impl RunReport {
    /// Rows found missing, extra or changed, over all tables.
    pub fn differing_rows(&self) -> u64 {
        self.tables
            .iter()
            .map(|t| t.rows_missing + t.rows_extra + t.rows_changed)
            .sum()
    }

    /// Sets [`RunReport::result`] from the run error and the table results.
    ///
    /// Error wins over different; skipped tables do not change the result (as in
    /// sync-diff-inspector, where `skip-non-existing-table` still exits 0) but are listed
    /// in every output so they are not overlooked.
    pub fn compute_result(&mut self) {
        let any = |r: TableResult| self.tables.iter().any(|t| t.result == r);
        self.result = if self.error.is_some() || any(TableResult::Error) {
            RunResult::Error
        } else if any(TableResult::Different) || !self.metadata.is_empty() {
            let repaired = |t: &TableReport| t.fix_applied && t.recheck_equal == Some(true);
            let all_repaired = self
                .tables
                .iter()
                .filter(|t| t.result == TableResult::Different)
                .all(repaired)
                && self.metadata.iter().all(|m| m.fixed);
            if all_repaired {
                RunResult::Repaired
            } else {
                RunResult::Different
            }
        } else {
            RunResult::Equal
        };
    }

    /// Process exit code for [`RunReport::result`]; call [`RunReport::compute_result`]
    /// first.
    pub fn exit_code(&self) -> i32 {
        match self.result {
            RunResult::Equal | RunResult::Repaired => crate::exit::EQUAL,
            RunResult::Different => crate::exit::DIFFERENT,
            RunResult::Error => crate::exit::ERROR,
        }
    }

    /// How many tables ended in each result.
    pub fn counts(&self) -> TableCounts {
        let mut c = TableCounts {
            total: self.tables.len(),
            ..TableCounts::default()
        };
        for t in &self.tables {
            match t.result {
                TableResult::Equal => c.equal += 1,
                TableResult::Different => c.different += 1,
                TableResult::Skipped => c.skipped += 1,
                TableResult::Error => c.error += 1,
            }
        }
        c
    }

    /// The directory holding the fix SQL files (relative to the output directory), when
    /// any were written: their common parent, or `""` for mixed locations.
    pub fn fix_sql_dir(&self) -> Option<PathBuf> {
        let mut dirs = self
            .tables
            .iter()
            .filter_map(|t| t.fix_sql.as_ref())
            .map(|p| p.parent().map(PathBuf::from).unwrap_or_default());
        let first = dirs.next()?;
        Some(if dirs.all(|d| d == first) {
            first
        } else {
            PathBuf::new()
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
