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
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long sending `KILL TIDB QUERY` on an interrupt may take.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// Session settings of the job's connection: results in UTC, and the URI literal read with
/// backslash escapes whatever the server's `sql_mode`.
const SESSION_SETUP: [&str; 2] = [
    "SET SESSION time_zone = '+00:00'",
    "SET SESSION sql_mode = REPLACE(REPLACE(@@SESSION.sql_mode, 'NO_BACKSLASH_ESCAPES', ''), \
     'ANSI_QUOTES', '')",
];

/// URI query parameters whose values are secrets (BR's S3 and Azure options; `_` and `-`
/// are interchangeable, as in BR).
const SECRET_PARAMS: [&str; 4] = [
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

fn value_phrase(value: Option<&str>) -> String {
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

// ---------------------------------------------------------------------------------------
// Statements
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BrKind {
    Backup,
    Restore,
}

impl BrKind {
    fn keyword(self) -> &'static str {
        match self {
            BrKind::Backup => "BACKUP",
            BrKind::Restore => "RESTORE",
        }
    }

    fn preposition(self) -> &'static str {
        match self {
            BrKind::Backup => "TO",
            BrKind::Restore => "FROM",
        }
    }
}

fn brie_sql(kind: BrKind, schemas: &[String], uri: &str, opts: &BrOptions) -> String {
    let target = if schemas.is_empty() {
        "*".to_string()
    } else {
        crate::sql::ident_list(schemas.iter().map(String::as_str))
    };
    let mut sql = format!(
        "{} DATABASE {target} {} {}",
        kind.keyword(),
        kind.preposition(),
        crate::sql::quote_str(uri)
    );
    if let Some(n) = opts.concurrency {
        let _ = write!(sql, " CONCURRENCY = {n}");
    }
    if let Some(n) = opts.rate_limit_mb {
        let _ = write!(sql, " RATE_LIMIT = {n} MB/SECOND");
    }
    sql.push_str(if opts.checksum {
        " CHECKSUM = TRUE"
    } else {
        " CHECKSUM = FALSE"
    });
    sql
}

/// `BACKUP DATABASE `a`, `b` TO '<uri>' [CONCURRENCY = n] [RATE_LIMIT = n MB/SECOND]
/// CHECKSUM = TRUE|FALSE`; no schemas means `DATABASE *` (every schema but the system ones).
/// The URI is a string literal with `'` and `\` escaped (read as such on the job's session).
pub fn backup_sql(schemas: &[String], uri_with_secrets: &str, opts: &BrOptions) -> String {
    brie_sql(BrKind::Backup, schemas, uri_with_secrets, opts)
}

/// `RESTORE DATABASE … FROM '<uri>' …`, as [`backup_sql`].
pub fn restore_sql(schemas: &[String], uri_with_secrets: &str, opts: &BrOptions) -> String {
    brie_sql(BrKind::Restore, schemas, uri_with_secrets, opts)
}

/// `KILL TIDB QUERY <id>`: cancels the statement running on connection `id` (A1.2).
pub fn kill_sql(connection_id: u64) -> String {
    format!("KILL TIDB QUERY {connection_id}")
}

// ---------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------

/// A storage URI fit to print: without its query string and fragment (where BR URIs carry
/// credentials), and with a `user:password@` replaced by `***@`.
pub fn redact_uri(uri: &str) -> String {
    let base = uri.split(['?', '#']).next().unwrap_or_default();
    if let Some((scheme, rest)) = base.split_once("://") {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if let Some((_, host)) = authority.rsplit_once('@') {
            return format!("{scheme}://***@{host}{path}");
        }
    }
    base.to_string()
}

/// `text` (e.g. a server's error message) with the secrets of `uri` masked: the URI itself
/// becomes [`redact_uri`], the values of its secret parameters (as written and
/// percent-decoded) become `***`, and so does the value after any `secret-access-key=`,
/// `session-token=`, `account-key=` or `sas-token=`.
pub fn redact_secrets(text: &str, uri: &str) -> String {
    let mut out = if uri.is_empty() {
        text.to_string()
    } else {
        text.replace(uri, &redact_uri(uri))
    };
    for secret in secret_values(uri) {
        // Shorter values are no secrets, and masking them would garble the text.
        if secret.len() >= 4 {
            out = out.replace(&secret, "***");
        }
    }
    mask_secret_params(&out)
}

fn is_secret_param(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase().replace('_', "-");
    SECRET_PARAMS.contains(&key.as_str())
}

fn secret_values(uri: &str) -> Vec<String> {
    let mut out = Vec::new();
    let without_fragment = uri.split('#').next().unwrap_or_default();
    if let Some((base, query)) = without_fragment.split_once('?') {
        for (key, value) in query.split('&').filter_map(|p| p.split_once('=')) {
            if is_secret_param(key) {
                out.push(value.to_string());
                out.push(percent_decode(value));
            }
        }
        if let Some((_, rest)) = base.split_once("://") {
            let authority = rest.split('/').next().unwrap_or_default();
            if let Some((userinfo, _)) = authority.rsplit_once('@') {
                if let Some((_, password)) = userinfo.split_once(':') {
                    out.push(password.to_string());
                }
            }
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `key=value` → `key=***` for the secret parameters, wherever they appear.
fn mask_secret_params(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if let Some(key_len) = secret_param_at(bytes, i) {
            out.push_str(&text[i..i + key_len]);
            out.push_str("***");
            i += key_len;
            while i < bytes.len() && !ends_value(bytes[i]) {
                i += 1;
            }
            continue;
        }
        let ch = text[i..].chars().next().unwrap_or_default();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The length of `<secret key>=` starting at `i`, if one does.
fn secret_param_at(bytes: &[u8], i: usize) -> Option<usize> {
    SECRET_PARAMS.iter().find_map(|key| {
        let candidate = bytes.get(i..i + key.len())?;
        let same = candidate.iter().zip(key.bytes()).all(|(&c, k)| {
            let c = if c == b'_' { b'-' } else { c };
            c.eq_ignore_ascii_case(&k)
        });
        (same && bytes.get(i + key.len()) == Some(&b'=')).then_some(key.len() + 1)
    })
}

fn ends_value(b: u8) -> bool {
    b.is_ascii_whitespace() || b"&'\",;)]}>\\".contains(&b)
}

// ---------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------

/// Names compared without case, `_` read as a space: `Queue Time` (BACKUP) and
/// `Queue_time` (SHOW BACKUPS) are one name.
fn normalize(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('_', " ")
}

/// One result row read by column name.
struct Named<'a> {
    statement: &'static str,
    columns: &'a [String],
    normalized: Vec<String>,
    row: &'a [Option<Vec<u8>>],
}

impl<'a> Named<'a> {
    fn new(
        statement: &'static str,
        columns: &'a [String],
        row: &'a [Option<Vec<u8>>],
    ) -> std::result::Result<Self, BrError> {
        if row.len() != columns.len() {
            return Err(BrError::RowShape {
                statement: statement.into(),
                cells: row.len(),
                columns: columns.len(),
            });
        }
        Ok(Named {
            statement,
            columns,
            normalized: columns.iter().map(|c| normalize(c)).collect(),
            row,
        })
    }

    fn has(&self, column: &str) -> bool {
        self.normalized.contains(&normalize(column))
    }

    fn bad(&self, column: &str, value: Option<&str>, reason: &str) -> BrError {
        BrError::BadValue {
            statement: self.statement.into(),
            column: column.into(),
            value: value.map(str::to_string),
            reason: reason.into(),
        }
    }

    /// The cell of `column` (`None` for NULL); a missing column is an error.
    fn cell(&self, column: &str) -> std::result::Result<Option<&'a str>, BrError> {
        let wanted = normalize(column);
        let Some(i) = self.normalized.iter().position(|c| *c == wanted) else {
            return Err(BrError::MissingColumn {
                statement: self.statement.into(),
                column: column.into(),
                columns: self.columns.to_vec(),
            });
        };
        match self.row[i].as_deref() {
            None => Ok(None),
            Some(bytes) => std::str::from_utf8(bytes)
                .map(Some)
                .map_err(|_| self.bad(column, None, "not UTF-8 text")),
        }
    }

    /// [`Named::cell`] of a column that may be absent (`None` then).
    fn optional(&self, column: &str) -> std::result::Result<Option<&'a str>, BrError> {
        if self.has(column) {
            self.cell(column)
        } else {
            Ok(None)
        }
    }

    fn text(&self, column: &str) -> std::result::Result<String, BrError> {
        self.cell(column)?
            .map(str::to_string)
            .ok_or_else(|| self.bad(column, None, "a value is required"))
    }

    fn parse<T: std::str::FromStr>(
        &self,
        column: &str,
        value: Option<&str>,
        what: &str,
    ) -> std::result::Result<T, BrError> {
        let text = value.ok_or_else(|| self.bad(column, None, &format!("{what} expected")))?;
        text.trim()
            .parse()
            .map_err(|_| self.bad(column, Some(text), &format!("not {what}")))
    }

    fn number<T: std::str::FromStr>(
        &self,
        column: &str,
        what: &str,
    ) -> std::result::Result<T, BrError> {
        self.parse(column, self.cell(column)?, what)
    }

    /// The backup point: a positive TSO.
    fn tso(&self, column: &str) -> std::result::Result<u64, BrError> {
        let ts: u64 = self.number(column, "an unsigned integer (a TSO)")?;
        if ts == 0 {
            return Err(self.bad(
                column,
                Some("0"),
                "the backup point must be a positive TSO; without it nothing can be compared \
                 or replicated from it",
            ));
        }
        Ok(ts)
    }
}

/// Read BACKUP's row (A1.3): `Destination`, `Size`, `BackupTS` (a positive TSO) and the
/// optional `Queue Time`, `Execution Time`, found by name in any order.
pub fn parse_backup_result(
    columns: &[String],
    row: &[Option<Vec<u8>>],
) -> std::result::Result<BackupResult, BrError> {
    let r = Named::new("BACKUP", columns, row)?;
    Ok(BackupResult {
        destination: r.text("Destination")?,
        size: r.number("Size", "an unsigned integer")?,
        backup_ts: r.tso("BackupTS")?,
        queue_time: r.optional("Queue Time")?.map(str::to_string),
        execution_time: r.optional("Execution Time")?.map(str::to_string),
    })
}

/// Read RESTORE's row (A1.3), by name: with `Cluster TS` (6 columns), `BackupTS` is the
/// archive's snapshot (a positive TSO) and `Cluster TS` the restore TS; without it (5
/// columns, older TiDB), `BackupTS` held the restore TS and is reported as `cluster_ts`, with
/// `backup_ts` 0.
pub fn parse_restore_result(
    columns: &[String],
    row: &[Option<Vec<u8>>],
) -> std::result::Result<RestoreResult, BrError> {
    let r = Named::new("RESTORE", columns, row)?;
    let destination = r.text("Destination")?;
    let size = r.number("Size", "an unsigned integer")?;
    let nonzero = |ts: u64| (ts > 0).then_some(ts);
    let (backup_ts, cluster_ts) = if r.has("Cluster TS") {
        let cluster: u64 = r.number("Cluster TS", "an unsigned integer (a TSO)")?;
        (r.tso("BackupTS")?, nonzero(cluster))
    } else {
        let restore_ts: u64 = r.number("BackupTS", "an unsigned integer (a TSO)")?;
        (0, nonzero(restore_ts))
    };
    Ok(RestoreResult {
        destination,
        size,
        backup_ts,
        cluster_ts,
        verification_ts: None,
    })
}

/// Read `SHOW BACKUPS` (A1.4), by name: `Destination`, `State` and `Progress` are required;
/// `Id` (absent on older TiDB), `Connection` and `Message` may be missing or NULL. TiDB strips
/// the URL parameters from `Destination`, but a failed job's `Message` is the BR error, which
/// may quote the URI: its secret parameters are masked.
pub fn parse_show_backups(
    columns: &[String],
    rows: &[Vec<Option<Vec<u8>>>],
) -> std::result::Result<Vec<BrJob>, BrError> {
    rows.iter()
        .map(|row| {
            let r = Named::new("SHOW BACKUPS", columns, row)?;
            let progress: f64 = r.number("Progress", "a percentage")?;
            if !progress.is_finite() {
                return Err(r.bad("Progress", None, "not a finite percentage"));
            }
            let id = r.optional("Id")?;
            let connection = r.optional("Connection")?;
            Ok(BrJob {
                id: id
                    .map(|v| r.parse("Id", Some(v), "an integer"))
                    .transpose()?,
                destination: r.text("Destination")?,
                state: r.text("State")?,
                progress,
                connection: connection
                    .map(|v| r.parse("Connection", Some(v), "an unsigned integer"))
                    .transpose()?,
                message: r.optional("Message")?.map(mask_secret_params),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Running statements
// ---------------------------------------------------------------------------------------

type Rows = Vec<Vec<Option<Vec<u8>>>>;

fn addr_of(opts: &mysql_async::Opts) -> String {
    format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port())
}

/// A driver error as a [`BrError`], with the secrets of `uri` masked in what the server said.
fn statement_error(
    statement: &str,
    addr: &str,
    sql: &str,
    uri: &str,
    e: &mysql_async::Error,
) -> BrError {
    match e {
        mysql_async::Error::Server(s) => BrError::Server {
            statement: statement.into(),
            addr: addr.into(),
            sql: sql.into(),
            server: Box::new(ServerError {
                code: s.code,
                state: s.state.clone(),
                message: redact_secrets(&s.message, uri),
            }),
        },
        other => BrError::ConnectionLost {
            statement: statement.into(),
            addr: addr.into(),
            sql: sql.into(),
            message: redact_secrets(&crate::db::describe_mysql_error(other), uri),
        },
    }
}

async fn connect(opts: &mysql_async::Opts) -> std::result::Result<mysql_async::Conn, BrError> {
    let addr = addr_of(opts);
    match tokio::time::timeout(CONNECT_TIMEOUT, mysql_async::Conn::new(opts.clone())).await {
        Err(_) => Err(BrError::Connect {
            addr,
            message: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
            server: None,
        }),
        Ok(Err(e)) => Err(BrError::Connect {
            addr,
            message: crate::db::describe_mysql_error(&e),
            server: match &e {
                mysql_async::Error::Server(s) => Some(Box::new(s.into())),
                _ => None,
            },
        }),
        Ok(Ok(conn)) => Ok(conn),
    }
}

/// Run a query and collect its column names and rows (text-protocol values).
async fn query_named(
    conn: &mut mysql_async::Conn,
    sql: &str,
) -> std::result::Result<(Vec<String>, Rows), mysql_async::Error> {
    let mut result = conn.query_iter(sql).await?;
    let columns = result
        .columns()
        .map(|cols| cols.iter().map(|c| c.name_str().into_owned()).collect())
        .unwrap_or_default();
    let rows: Vec<mysql_async::Row> = result.collect().await?;
    result.drop_result().await?;
    let rows = rows
        .into_iter()
        .map(|row| {
            row.unwrap()
                .into_iter()
                .map(|v| match v {
                    mysql_async::Value::NULL => None,
                    mysql_async::Value::Bytes(b) => Some(b),
                    other => Some(other.as_sql(true).into_bytes()),
                })
                .collect()
        })
        .collect();
    Ok((columns, rows))
}

/// The connection's ID as `KILL` expects it (see the module docs for why not the
/// handshake's).
async fn connection_id(conn: &mut mysql_async::Conn, addr: &str) -> Result<u64> {
    const SQL: &str = "SELECT CONNECTION_ID()";
    let (columns, rows) = query_named(conn, SQL)
        .await
        .map_err(|e| statement_error(SQL, addr, SQL, "", &e))?;
    let row = rows.first().ok_or_else(|| BrError::EmptyResult {
        statement: SQL.into(),
        addr: addr.into(),
    })?;
    let name = columns.first().cloned().unwrap_or_default();
    let r = Named::new("SELECT CONNECTION_ID()", &columns, row)?;
    Ok(r.number(&name, "an unsigned integer")?)
}

/// Run BACKUP or RESTORE on a new connection (see the module docs): the result's columns
/// and rows (at least one), and the connection, still open.
async fn run_brie(
    kind: BrKind,
    opts: &mysql_async::Opts,
    schemas: &[String],
    uri: &str,
    br: &BrOptions,
    interrupt: &Interrupt,
) -> Result<(Vec<String>, Rows, mysql_async::Conn)> {
    br.validate()?;
    let addr = addr_of(opts);
    let statement = kind.keyword();
    let sql = brie_sql(kind, schemas, uri, br);
    let shown = brie_sql(kind, schemas, &redact_uri(uri), br);
    if let Some(signal) = interrupt.fired() {
        return Err(signal.into());
    }
    let mut conn = interrupt.interruptible(connect(opts)).await??;
    for setup in SESSION_SETUP {
        conn.query_drop(setup)
            .await
            .map_err(|e| statement_error("session setup", &addr, setup, "", &e))?;
    }
    let id = connection_id(&mut conn, &addr).await?;
    if !br.checksum {
        tracing::warn!(
            "{statement} with CHECKSUM = FALSE: the data is not verified, and a backup without \
             checksums disables the restore's check"
        );
    }
    tracing::info!("{statement} on {addr} (connection {id}), blocks until the job ends: {shown}");
    let started = std::time::Instant::now();
    let answer = interrupt.interruptible(query_named(&mut conn, &sql)).await;
    let (columns, rows) = match answer {
        Err(signal) => {
            kill(opts, &addr, id, statement).await;
            drop(conn);
            return Err(signal.into());
        }
        Ok(Err(e)) => return Err(statement_error(statement, &addr, &shown, uri, &e).into()),
        Ok(Ok(answer)) => answer,
    };
    if rows.is_empty() {
        return Err(BrError::EmptyResult {
            statement: statement.into(),
            addr,
        }
        .into());
    }
    tracing::info!(
        "{statement} on {addr} finished in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok((columns, rows, conn))
}

/// Cancel the job on connection `id` from a second connection. Failures are logged, not
/// returned: the caller is stopping either way, and says so.
async fn kill(opts: &mysql_async::Opts, addr: &str, id: u64, statement: &str) {
    let sql = kill_sql(id);
    let attempt = async {
        let mut conn = connect(opts).await?;
        conn.query_drop(&sql)
            .await
            .map_err(|e| statement_error("KILL", addr, &sql, "", &e))?;
        let _ = conn.disconnect().await;
        Ok::<(), BrError>(())
    };
    match tokio::time::timeout(KILL_TIMEOUT, attempt).await {
        Ok(Ok(())) => tracing::warn!(
            "{statement} on {addr} interrupted: sent {sql}; TiDB cancels the job (SHOW BACKUPS \
             shows it as canceled)"
        ),
        Ok(Err(e)) => tracing::error!(
            "{statement} on {addr} interrupted, but the job could not be cancelled and may \
             still run: {e}; cancel it with {sql} on that server"
        ),
        Err(_) => tracing::error!(
            "{statement} on {addr} interrupted, but {sql} got no answer within {}s: the job may \
             still run",
            KILL_TIMEOUT.as_secs()
        ),
    }
}

/// Back up `schemas` (all non-system schemas when empty) to `uri_with_secrets` and return
/// BACKUP's answer; blocks until the job ends. On `interrupt`, the job is cancelled with
/// `KILL TIDB QUERY` from a second connection and the result is
/// [`Error::Interrupted`](crate::Error::Interrupted).
pub async fn backup(
    opts: &mysql_async::Opts,
    schemas: &[String],
    uri_with_secrets: &str,
    br: &BrOptions,
    interrupt: &Interrupt,
) -> Result<BackupResult> {
    let (columns, rows, conn) = run_brie(
        BrKind::Backup,
        opts,
        schemas,
        uri_with_secrets,
        br,
        interrupt,
    )
    .await?;
    let _ = conn.disconnect().await;
    let result = parse_backup_result(&columns, &rows[0])?;
    tracing::info!(
        "backup to {} done: {} bytes, BackupTS {}",
        result.destination,
        result.size,
        Tso(result.backup_ts)
    );
    Ok(result)
}

/// Restore `schemas` (all in the archive when empty) from `uri_with_secrets`, as
/// [`backup`], then take the verification point with [`fresh_tso`] on the same connection
/// ([`RestoreResult::verification_ts`]).
pub async fn restore(
    opts: &mysql_async::Opts,
    schemas: &[String],
    uri_with_secrets: &str,
    br: &BrOptions,
    interrupt: &Interrupt,
) -> Result<RestoreResult> {
    let (columns, rows, mut conn) = run_brie(
        BrKind::Restore,
        opts,
        schemas,
        uri_with_secrets,
        br,
        interrupt,
    )
    .await?;
    let mut result = parse_restore_result(&columns, &rows[0])?;
    match fresh_tso(&mut conn).await {
        Ok(ts) => result.verification_ts = Some(ts),
        Err(e) => tracing::warn!(
            "restore done, but no verification TSO could be taken after it ({e}); take one \
             before comparing"
        ),
    }
    let _ = conn.disconnect().await;
    tracing::info!(
        "restore from {} done: {} bytes, archive BackupTS {}, restore TS {:?}",
        result.destination,
        result.size,
        result.backup_ts,
        result.cluster_ts
    );
    Ok(result)
}

/// The BR jobs this TiDB server knows (`SHOW BACKUPS`; needs `SUPER`).
pub async fn show_backups(conn: &mut mysql_async::Conn) -> Result<Vec<BrJob>> {
    const SQL: &str = "SHOW BACKUPS";
    let addr = addr_of(conn.opts());
    let (columns, rows) = query_named(conn, SQL)
        .await
        .map_err(|e| statement_error(SQL, &addr, SQL, "", &e))?;
    Ok(parse_show_backups(&columns, &rows)?)
}

/// A fresh TSO of the server's cluster: `BEGIN`, `SELECT @@tidb_current_ts` (the
/// transaction's start TS; dr-interfaces A4.2), `ROLLBACK` (sent even when the read fails).
/// 0 (outside a transaction, or not TiDB) is an error.
pub async fn fresh_tso(conn: &mut mysql_async::Conn) -> Result<u64> {
    const SQL: &str = "SELECT @@tidb_current_ts";
    let addr = addr_of(conn.opts());
    let failed = |sql: &str, e: mysql_async::Error| statement_error(sql, &addr, sql, "", &e);
    conn.query_drop("BEGIN")
        .await
        .map_err(|e| failed("BEGIN", e))?;
    let read = query_named(conn, SQL).await;
    let rollback = conn.query_drop("ROLLBACK").await;
    let (columns, rows) = read.map_err(|e| failed(SQL, e))?;
    rollback.map_err(|e| failed("ROLLBACK", e))?;
    let row = rows.first().ok_or_else(|| BrError::EmptyResult {
        statement: SQL.into(),
        addr: addr.clone(),
    })?;
    let name = columns.first().cloned().unwrap_or_default();
    let r = Named::new(SQL, &columns, row)?;
    let ts: u64 = r.number(&name, "an unsigned integer (a TSO)")?;
    if ts == 0 {
        return Err(r
            .bad(
                &name,
                Some("0"),
                "no transaction TSO: not a TiDB server, or BEGIN did not start a transaction",
            )
            .into());
    }
    Ok(ts)
}

// ---------------------------------------------------------------------------------------
// GC hold
// ---------------------------------------------------------------------------------------

fn pd_addresses(pd_addrs: &[String]) -> std::result::Result<Vec<String>, BrError> {
    let mut out = Vec::new();
    for raw in pd_addrs {
        let addr = parse_pd_addr(raw).map_err(|message| BrError::Pd {
            addr: raw.clone(),
            message,
        })?;
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    if out.is_empty() {
        return Err(BrError::Pd {
            addr: String::new(),
            message: "no PD address given".into(),
        });
    }
    Ok(out)
}

/// The PD leader of `pd_addrs`, for a GC hold or release of `service_id`.
async fn pd_leader(pd_addrs: &[String], service_id: &str, action: &str) -> Result<PdLeader> {
    let addrs = pd_addresses(pd_addrs)?;
    let refuse = |message: String| BrError::Pd {
        addr: addrs.join(","),
        message,
    };
    if service_id.is_empty() {
        return Err(refuse("the service ID is empty".into()).into());
    }
    if service_id == "gc_worker" {
        return Err(refuse("\"gc_worker\" is GC's own service ID on PD".into()).into());
    }
    PdLeader::connect(&addrs).await.map_err(|e| {
        refuse(format!(
            "cannot {action} service GC safepoint {service_id}: {e}"
        ))
        .into()
    })
}

/// Hold GC at `safe_point` (a TSO taken before the backup) with the PD service safepoint
/// `service_id`, for `ttl_secs` ([`DEFAULT_GC_HOLD_TTL_SECS`] in the flow); calling it again
/// renews the hold. It is not refreshed in the background: it outlives this process, and
/// replaces the DR guide's cluster-wide `SET GLOBAL tidb_gc_enable = FALSE` (A5). PD answering
/// a minimum safepoint above `safe_point` means GC has passed it and nothing was held:
/// [`BrError::GcPassed`].
pub async fn hold_gc(
    pd_addrs: &[String],
    service_id: &str,
    safe_point: u64,
    ttl_secs: i64,
) -> Result<GcHold> {
    if ttl_secs < 1 {
        return Err(BrError::Pd {
            addr: pd_addrs.join(","),
            message: format!(
                "a GC hold needs a TTL of at least 1 s (got {ttl_secs}; 0 or less removes it)"
            ),
        }
        .into());
    }
    if safe_point == 0 {
        return Err(BrError::Pd {
            addr: pd_addrs.join(","),
            message: "a GC hold needs a positive TSO".into(),
        }
        .into());
    }
    let mut leader = pd_leader(pd_addrs, service_id, "set").await?;
    let answer = leader
        .update_service_gc_safe_point(service_id, ttl_secs, safe_point)
        .await
        .map_err(|e| BrError::Pd {
            addr: leader.addr.clone(),
            message: format!("cannot set service GC safepoint {service_id}: {e}"),
        })?;
    if answer.min_safe_point > safe_point {
        return Err(BrError::GcPassed {
            addr: leader.addr.clone(),
            service_id: service_id.into(),
            safe_point: Tso(safe_point),
            gc_safe_point: Tso(answer.min_safe_point),
            holder: answer.min_service_id,
        }
        .into());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let hold = GcHold {
        service_id: service_id.into(),
        safe_point,
        expires_at_unix: now.saturating_add(ttl_secs),
    };
    tracing::info!(
        "GC held at {} by service safepoint {service_id} on PD {} (TTL {ttl_secs} s)",
        Tso(safe_point),
        leader.addr
    );
    Ok(hold)
}

/// Remove the GC hold `service_id` (TTL 0: PD's documented removal). Removing a hold that
/// does not exist succeeds.
pub async fn release_gc(pd_addrs: &[String], service_id: &str) -> Result<()> {
    let mut leader = pd_leader(pd_addrs, service_id, "remove").await?;
    leader
        .update_service_gc_safe_point(service_id, 0, 0)
        .await
        .map_err(|e| BrError::Pd {
            addr: leader.addr.clone(),
            message: format!("cannot remove service GC safepoint {service_id}: {e}"),
        })?;
    tracing::info!("GC hold {service_id} removed from PD {}", leader.addr);
    Ok(())
}

#[cfg(test)]
mod tests;
