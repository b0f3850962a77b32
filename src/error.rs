//! Library error type and the process exit codes it maps to.
//!
//! Exit codes (documented in README.md, stable):
//! - [`EXIT_EQUAL`] `0`: every checked table is equal.
//! - [`EXIT_DIFFERENT`] `1`: at least one table differs (data or structure).
//! - [`EXIT_ERROR`] `2`: the run could not complete (bad config, connection failure,
//!   missing table, server error). Partial results are still written when possible.

use std::path::PathBuf;

/// All tables equal ([`crate::exit`] maps every outcome to its code).
pub const EXIT_EQUAL: i32 = crate::exit::EQUAL;
/// Differences found.
pub const EXIT_DIFFERENT: i32 = crate::exit::DIFFERENT;
/// The check could not be completed.
pub const EXIT_ERROR: i32 = crate::exit::ERROR;

/// Errors raised by the library. Messages are lowercase fragments that read well after
/// "error: ".
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file could not be read.
    /// The I/O error is part of the message and deliberately not a `source()`: printing
    /// the chain would state it twice.
    #[error("cannot read config {path}: {cause}")]
    ConfigRead {
        path: PathBuf,
        cause: std::io::Error,
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
        /// The server's own error, when it sent one (e.g. 1045 access denied).
        server: Option<Box<ServerError>>,
    },
    /// The TLS settings of a data source (`[data-sources.NAME.security]`) cannot be used:
    /// a file cannot be read, or holds no certificate or key.
    #[error("data source '{source_name}': TLS settings: {message}")]
    Tls {
        source_name: String,
        message: String,
    },
    /// A server returned an error for a statement.
    #[error("query failed on '{source_name}': {message} (sql: {sql})")]
    Query {
        source_name: String,
        sql: String,
        /// What to tell the user (the server's message, or an explanation of its code).
        message: String,
        /// The server's own error, when it sent one.
        server: Option<Box<ServerError>>,
    },
    /// The connection broke (killed, server restarted, network): the statement may be
    /// retried on a new connection when it is an idempotent read.
    #[error("connection to '{source_name}' lost: {message} (sql: {sql})")]
    ConnectionLost {
        source_name: String,
        sql: String,
        message: String,
        server: Option<Box<ServerError>>,
    },
    /// A TiDB snapshot could not be resolved, pinned or protected from GC.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::tidb::SnapshotError),
    /// A TiDB BACKUP/RESTORE, its result, or the DR flow's GC hold failed.
    #[error(transparent)]
    Br(#[from] crate::dr::tidb::BrError),

    #[error(transparent)]
    Cdc(#[from] crate::dr::ticdc::CdcError),
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
    /// Object storage (S3, local directories) failed.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// A run id, or the shard reports of a run, cannot be used.
    #[error(transparent)]
    Runs(#[from] crate::runs::RunsError),
    /// SIGINT or SIGTERM stopped the run at a safe point (checkpoint written, servers
    /// released).
    #[error("interrupted by {signal}")]
    Interrupted { signal: crate::interrupt::Signal },
    /// A DR step could not be carried out.
    #[error(transparent)]
    Dr(#[from] crate::dr::DrError),
    /// A bug or a panicked task: not the user's doing.
    #[error("internal error: {0}")]
    Internal(String),
    /// Any other I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// An error as the server sent it: its code (match it as a number), SQLSTATE and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub code: u16,
    pub state: String,
    pub message: String,
}

impl From<&mysql_async::ServerError> for ServerError {
    fn from(e: &mysql_async::ServerError) -> Self {
        ServerError {
            code: e.code,
            state: e.state.clone(),
            message: e.message.clone(),
        }
    }
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (server error {})", self.message, self.code)
    }
}

impl From<crate::interrupt::Signal> for Error {
    fn from(signal: crate::interrupt::Signal) -> Self {
        Error::Interrupted { signal }
    }
}

impl Error {
    /// The process exit code of a run that stopped with this error ([`crate::exit`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Interrupted { signal } => signal.exit_code(),
            _ => crate::exit::ERROR,
        }
    }

    /// The server's error, for errors a server raised.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            Error::Connect { server, .. }
            | Error::Query { server, .. }
            | Error::ConnectionLost { server, .. } => server.as_deref(),
            Error::Br(e) => e.server_error(),
            _ => None,
        }
    }

    /// The server's error code, for errors a server raised.
    pub fn server_code(&self) -> Option<u16> {
        self.server_error().map(|s| s.code)
    }

    /// Whether this error means the connection itself is gone.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Error::ConnectionLost { .. })
    }
}

/// Library result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
