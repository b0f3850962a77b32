//! Library error type and the process exit codes it maps to.
//!
//! Exit codes (documented in README.md, stable):
//! - [`EXIT_EQUAL`] `0`: every checked table is equal.
//! - [`EXIT_DIFFERENT`] `1`: at least one table differs (data or structure).
//! - [`EXIT_ERROR`] `2`: the run could not complete (bad config, connection failure,
//!   missing table, server error). Partial results are still written when possible.

use std::path::PathBuf;

/// All tables equal.
pub const EXIT_EQUAL: i32 = 0;
/// Differences found.
pub const EXIT_DIFFERENT: i32 = 1;
/// The check could not be completed.
pub const EXIT_ERROR: i32 = 2;

/// Errors raised by the library. Messages are lowercase fragments that read well after
/// "error: ".
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file could not be read.
    #[error("cannot read config {path}: {source}")]
    ConfigRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The configuration is syntactically or semantically invalid.
    #[error("{0}")]
    Config(String),
    /// Connecting to or authenticating with a data source failed.
    #[error("cannot connect to data source '{source_name}' ({addr}): {message}")]
    Connect {
        source_name: String,
        addr: String,
        message: String,
    },
    /// A server returned an error for a statement.
    #[error("query failed on '{source_name}': {message} (sql: {sql})")]
    Query {
        source_name: String,
        sql: String,
        message: String,
    },
    /// The connection broke (killed, server restarted, network): the statement may be
    /// retried on a new connection when it is an idempotent read.
    #[error("connection to '{source_name}' lost: {message} (sql: {sql})")]
    ConnectionLost {
        source_name: String,
        sql: String,
        message: String,
    },
    /// A table that must exist was not found.
    #[error("table {table} does not exist in {side}")]
    MissingTable { table: String, side: String },
    /// A table cannot be compared as configured.
    #[error("table {table}: {message}")]
    Table { table: String, message: String },
    /// Writing output failed.
    #[error("cannot write {path}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A local server (playground, tests, benches) could not be managed.
    #[error(transparent)]
    Local(#[from] crate::local::LocalError),
    /// A failure inside syncgate itself (a task panicked).
    #[error("{0}")]
    Internal(String),
    /// Any other I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Whether this error means the connection itself is gone.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Error::ConnectionLost { .. })
    }
}

/// Library result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
