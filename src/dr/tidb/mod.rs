//! TiDB's side of the DR flow: `BACKUP`/`RESTORE` through SQL, `SHOW BACKUPS`, a fresh TSO
//! for verification points, and the flow's GC hold (a PD service GC safepoint).
//!
//! **Built against TiDB's and PD's documented interfaces, not a live cluster.** TiDB cannot
//! run where syncgate is developed; this follows dr-interfaces A1 (BR through SQL: syntax,
//! behaviour, result columns, `SHOW BACKUPS`), A4 (TSO) and A5 (GC), TiDB's executor
//! (pingcap/tidb `pkg/executor/brie.go`: the result rows, `ErrBRIEBackupFailed` 8124 /
//! `ErrBRIERestoreFailed` 8125, a storage string without its URL parameters) and PD's
//! `UpdateServiceGCSafePoint` (see [`crate::snapshot::pd`]). It is covered by contract tests:
//! a MySQL-protocol stand-in that answers these statements as documented, and the mock PD.
//!
//! # Running a job
//!
//! [`backup`] and [`restore`] run the statement on one long-lived connection: it blocks
//! until the job has finished (A1.2). The session is set to UTC (the result's times are in
//! the session time zone) and to an `sql_mode` without `NO_BACKSLASH_ESCAPES`, so the URI
//! literal means what [`backup_sql`] wrote. The connection's ID comes from
//! `SELECT CONNECTION_ID()`, not from the handshake: with TiDB's global kill (v6.1 to v7.2)
//! IDs have 64 bits and the handshake carries only the low 32. When the interrupt fires,
//! `KILL TIDB QUERY <id>` goes out on a second connection (TiDB cancels the job; dropping
//! the connection would not) and the call returns
//! [`Error::Interrupted`](crate::Error::Interrupted) without waiting for the job to wind
//! down. `KILL TIDB` reaches only the TiDB server that runs the job
//! unless global kill is on, so `opts` should name one TiDB server, not a load balancer.
//!
//! # Results
//!
//! Columns are looked up **by name** (A1.3 "Client rule"). A result without a row is refused
//! (no backup point is known then), and `BackupTS` must be a positive TSO. RESTORE answers
//! 6 columns since TiDB ~v6.2 (`BackupTS` = the archive's snapshot, `Cluster TS` = the restore
//! TS) and 5 before, when `BackupTS` held the restore TS ([`RestoreResult`]). Neither TS is
//! the moment the restored data became readable, so [`restore`] takes the downstream's
//! verification point with [`fresh_tso`] on the same connection after RESTORE returns.
//!
//! # Secrets
//!
//! The statement carries the storage credentials (TiDB needs them). Its text is logged and
//! put into errors only with the URI's query string removed ([`redact_uri`]), and a server
//! message that echoes the URI has its secrets masked ([`redact_secrets`]) before it is
//! surfaced.

use crate::error::{Result, ServerError};
use crate::interrupt::Interrupt;
use crate::snapshot::pd::{parse_pd_addr, PdLeader};
use crate::snapshot::tidb::Tso;
use mysql_async::prelude::Queryable;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// TiDB error code of a failed BACKUP: `Backup failed: %s` (`ErrBRIEBackupFailed`).
pub const ER_BRIE_BACKUP_FAILED: u16 = 8124;
/// TiDB error code of a failed RESTORE: `Restore failed: %s` (`ErrBRIERestoreFailed`).
pub const ER_BRIE_RESTORE_FAILED: u16 = 8125;

/// Default TTL of the DR flow's GC hold: 24 h, TiCDC's `gc-ttl`. The hold must outlive the
/// backup, the restore and the gate until the changefeed holds GC itself, across process
/// exits, so it is not refreshed: it is set once and removed by [`release_gc`].
pub const DEFAULT_GC_HOLD_TTL_SECS: i64 = 24 * 60 * 60;

/// How long connecting to TiDB may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long sending `KILL TIDB QUERY` on an interrupt may take.
pub(super) const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// Session settings of the job's connection: results in UTC, and the URI literal read with
/// backslash escapes whatever the server's `sql_mode`.
pub(super) const SESSION_SETUP: [&str; 2] = [
    "SET SESSION time_zone = '+00:00'",
    "SET SESSION sql_mode = REPLACE(REPLACE(@@SESSION.sql_mode, 'NO_BACKSLASH_ESCAPES', ''), \
     'ANSI_QUOTES', '')",
];

/// URI query parameters whose values are secrets (BR's S3 and Azure options; `_` and `-`
/// are interchangeable, as in BR).
pub(super) const SECRET_PARAMS: [&str; 4] = [
    "secret-access-key",
    "session-token",
    "account-key",
    "sas-token",
];

// ---------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------

/// Options of a BACKUP or RESTORE statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrOptions {
    /// `CONCURRENCY = n`; BR's default when unset.
    pub concurrency: Option<u32>,
    /// `RATE_LIMIT = n MB/SECOND` (per TiKV); no limit when unset.
    pub rate_limit_mb: Option<u32>,
    /// `CHECKSUM = TRUE|FALSE`, always written out. Defaults to true: a backup taken without
    /// a checksum silently disables the restore's check (tidb #56373).
    pub checksum: bool,
}

impl Default for BrOptions {
    fn default() -> Self {
        BrOptions {
            concurrency: None,
            rate_limit_mb: None,
            checksum: true,
        }
    }
}

impl BrOptions {
    /// Zero is refused rather than passed on: `CONCURRENCY = 0` and `RATE_LIMIT = 0` mean
    /// "BR's default" and "no limit", which a config should say by leaving them out.
    fn validate(&self) -> std::result::Result<(), BrError> {
        if self.concurrency == Some(0) {
            return Err(BrError::InvalidOptions(
                "concurrency must be at least 1 (leave it unset for BR's default)".into(),
            ));
        }
        if self.rate_limit_mb == Some(0) {
            return Err(BrError::InvalidOptions(
                "rate limit must be at least 1 MB/s (leave it unset for no limit)".into(),
            ));
        }
        Ok(())
    }
}

/// What BACKUP answered (A1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupResult {
    /// The storage, without its URL parameters (TiDB strips them).
    pub destination: String,
    /// Bytes written.
    pub size: u64,
    /// The TSO of the backed-up snapshot: data committed before it is in the backup. Always
    /// positive.
    pub backup_ts: u64,
    /// When the job was queued (UTC, as the session's time zone is).
    pub queue_time: Option<String>,
    /// When the job started to run (UTC).
    pub execution_time: Option<String>,
}

/// What RESTORE answered (A1.3), plus the downstream's verification point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreResult {
    /// The storage, without its URL parameters.
    pub destination: String,
    /// Bytes restored.
    pub size: u64,
    /// The archive's snapshot TSO (its `end_version`), from the 6-column shape. 0 when the
    /// server answers the older 5-column shape, whose `BackupTS` held the restore TS (that
    /// value is then in `cluster_ts`).
    pub backup_ts: u64,
    /// The restore TS: a downstream PD TSO taken before data ingestion (`Cluster TS`, or the
    /// old shape's `BackupTS`); `None` when the server reported 0. Not the moment the data
    /// became readable: do not compare at it.
    pub cluster_ts: Option<u64>,
    /// A fresh downstream TSO taken on the job's connection after RESTORE returned: the point
    /// to read the restored side at. Filled in by [`restore`] (`None` from
    /// [`parse_restore_result`], and when it could not be taken: use [`fresh_tso`] then).
    pub verification_ts: Option<u64>,
}

/// One row of `SHOW BACKUPS` (A1.4).
#[derive(Debug, Clone, PartialEq)]
pub struct BrJob {
    /// The job ID (older TiDB versions have no `Id` column).
    pub id: Option<i64>,
    /// The storage, without its URL parameters.
    pub destination: String,
    /// The current step (`Wait`, `Backup`, `Checksum`, …), or `<step> Canceled`.
    pub state: String,
    /// Percent done.
    pub progress: f64,
    /// The connection running the job.
    pub connection: Option<u64>,
    /// The error of a failed job.
    pub message: Option<String>,
}

/// A PD service GC safepoint held for the DR flow ([`hold_gc`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcHold {
    /// The service ID on PD.
    pub service_id: String,
    /// The TSO GC is held at.
    pub safe_point: u64,
    /// When PD drops the hold unless it is set again (Unix seconds).
    pub expires_at_unix: i64,
}

/// What went wrong with a BR statement, its result, or the GC hold. Server errors keep the
/// server's code ([`BrError::server_error`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrError {
    /// Options that would not mean what they say.
    #[error("invalid BR options: {0}")]
    InvalidOptions(String),
    /// A column the result must have is missing.
    #[error("{statement} result has no column {column:?} (columns: {})", .columns.join(", "))]
    MissingColumn {
        statement: String,
        column: String,
        columns: Vec<String>,
    },
    /// A row whose width is not the number of columns.
    #[error("{statement} result row has {cells} values for {columns} columns")]
    RowShape {
        statement: String,
        cells: usize,
        columns: usize,
    },
    /// A value that cannot be read.
    #[error("{statement} result: {column} is {}: {reason}", value_phrase(.value.as_deref()))]
    BadValue {
        statement: String,
        column: String,
        value: Option<String>,
        reason: String,
    },
    /// The statement answered no row: its outcome (and the backup point) is unknown.
    #[error("{statement} on {addr} answered no row: the job's outcome and its TSO are unknown, refusing to go on")]
    EmptyResult { statement: String, addr: String },
    /// Connecting to TiDB failed.
    #[error("cannot connect to TiDB at {addr}: {message}")]
    Connect {
        addr: String,
        message: String,
        server: Option<Box<ServerError>>,
    },
    /// The server refused or failed a statement (secrets masked in `sql` and the message).
    #[error("{statement} on {addr} failed: {server} (sql: {sql})")]
    Server {
        statement: String,
        addr: String,
        sql: String,
        server: Box<ServerError>,
    },
    /// The connection failed during a statement.
    #[error("{statement} on {addr}: connection failed: {message} (sql: {sql})")]
    ConnectionLost {
        statement: String,
        addr: String,
        sql: String,
        message: String,
    },
    /// PD could not be used for the GC hold.
    #[error("PD {addr}: {message}")]
    Pd { addr: String, message: String },
    /// PD's GC safe point is already above the requested hold: data at that point may be
    /// collected (GC passed the start point: tiflow #1048, #1839).
    #[error("cannot hold GC at {safe_point} as service {service_id}: GC has already passed it (PD {addr} reports the minimum safe point {gc_safe_point}, held by {holder}); data at that point may already be collected, take a new backup")]
    GcPassed {
        addr: String,
        service_id: String,
        safe_point: Tso,
        gc_safe_point: Tso,
        holder: String,
    },
}

pub(super) fn value_phrase(value: Option<&str>) -> String {
    match value {
        Some(v) => format!("{v:?}"),
        None => "NULL".to_string(),
    }
}

impl BrError {
    /// The server's error, for errors a server raised.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            BrError::Server { server, .. } => Some(server),
            BrError::Connect { server, .. } => server.as_deref(),
            _ => None,
        }
    }
}

mod gc;
mod parse;
mod run;
mod sql;

pub use gc::*;
pub use parse::*;
pub use run::*;
pub use sql::*;

#[cfg(test)]
mod tests;
