//! TiDB snapshots: TSOs, the `snapshot` config value, pinning a session, GC errors, and a
//! watcher of PD's GC safe points.
//!
//! **Built against TiDB's documented contracts.** TiDB cannot run where syncgate is
//! developed, so everything here follows the documented interfaces (cited per item from
//! `shared/reference/dr-interfaces.md` and `sync-diff-inspector.md`) and is tested by
//! *contract tests* (`tests/it/tidb_contract.rs`): pure functions for SQL text and parsing,
//! and a local mock HTTP server standing in for PD. No test runs against a live TiDB or PD.
//!
//! # Pieces
//!
//! - [`Tso`]: `ts = (physical_ms << 18) + logical` (dr-interfaces A4.1).
//! - [`parse_snapshot`]: the `snapshot` value of a data source: a decimal TSO, a datetime
//!   `YYYY-MM-DD hh:mm:ss[.ffffff]`, `"auto"`, or empty (live). A datetime becomes a TSO on the
//!   server, as in sync-diff-inspector (§8.1: `SELECT unix_timestamp(?)`):
//!   [`datetime_to_tso_sql`] builds the query and [`tso_from_unix_timestamp_result`] reads
//!   its answer. `UNIX_TIMESTAMP` reads the datetime in the *session* time zone; syncgate's
//!   sessions use `+00:00` (see `source.rs`), so on a connection from `Source::connect` the
//!   datetime means UTC. Unlike sync-diff-inspector, which keeps whole seconds, the
//!   milliseconds of the datetime are kept.
//! - `snapshot = "auto"`: [`syncpoint_sql`] and [`parse_syncpoint_row`] read the newest row
//!   of TiCDC's `tidb_cdc.syncpoint_v1` on the downstream (dr-interfaces A7,
//!   sync-diff-inspector §8.2); [`query_syncpoint`] runs it.
//! - [`set_snapshot_sql`]: `SET SESSION tidb_snapshot = '<tso>'` (dr-interfaces A4.3).
//! - [`classify_tidb_error`]: error 8055 (snapshot older than the GC safe point, raised when
//!   `tidb_snapshot` is set) and 9006 (GC life time shorter than the transaction, raised by a
//!   read below the safe point), dr-interfaces A4.3, turned into messages that say what to do.
//! - [`GcKeeper`]: GC protection through PD, see below.
//!
//! # GC protection: what is and is not covered
//!
//! sync-diff-inspector registers a PD *service GC safepoint* `Sync_diff_<ns>` (TTL 300 s,
//! refreshed every 150 s) through PD's gRPC client (`UpdateServiceGCSafePoint`,
//! sync-diff-inspector.md §2.1 "GC keeper", §8.3). The reference documents **no HTTP call
//! that registers or refreshes a service safepoint**: the only documented PD HTTP interface
//! for them is the read-only
//!
//! ```text
//! GET http://<pd>:2379/pd/api/v1/gc/safepoint
//! → {"service_gc_safe_points": [{"service_id", "expired_at", "safe_point"}], "gc_safe_point"}
//! ```
//!
//! (dr-interfaces.md §A5 "Service GC safepoints"). PD's gRPC API is not implemented here.
//! So [`GcKeeper`] **does not hold GC back itself**. What it does, over that documented
//! endpoint only:
//!
//! - at start, reads PD's safe points and fails with a clear error when PD cannot be
//!   reached or answers badly, or when the snapshot is already below the GC safe point (its
//!   data is gone): the check never starts unguarded without saying so;
//! - reports whether the snapshot is *protected*: another service (the TiCDC owner's
//!   changefeed safepoint, BR, …; dr-interfaces §A5 "Holders") holds an unexpired service
//!   safepoint at or below the snapshot, so GC cannot pass it. Without such a holder it logs
//!   a warning at start: the run then relies on `tidb_gc_life_time` being long enough;
//! - re-reads every `ttl / 2` and logs a warning when protection is lost, an error when the
//!   GC safe point passes the snapshot, and a warning (then keeps trying) when PD cannot be
//!   reached;
//! - sends nothing that changes PD's state: `stop()` and `Drop` only end the watcher.
//!
//! In a DR flow the snapshot is normally protected: TiCDC keeps its service safepoint at or
//! below the changefeed checkpoint, which is at or below the syncpoint's `primary_ts`
//! (dr-interfaces §A10 step on verification). For a hand-picked old TSO without such a
//! holder, raise `tidb_gc_life_time` for the duration of the check.

use crate::error::{Error, Result};
use crate::row::Row;
use crate::source::Conn;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------
// TSO
// ---------------------------------------------------------------------------------------

/// A TiDB/PD timestamp: `(physical_ms << 18) + logical` (dr-interfaces A4.1, tikv/client-go
/// `oracle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tso(pub u64);

impl Tso {
    /// Bits of the logical part.
    pub const LOGICAL_BITS: u32 = 18;
    /// Mask of the logical part.
    pub const LOGICAL_MASK: u64 = (1 << Self::LOGICAL_BITS) - 1;
    /// Largest physical part a TSO can hold (ms since the Unix epoch, about year 4199).
    pub const MAX_PHYSICAL_MS: u64 = u64::MAX >> Self::LOGICAL_BITS;

    /// The TSO of a physical time (Unix ms) and a logical counter. Parts out of range are
    /// clamped to their maximum.
    pub fn new(physical_ms: u64, logical: u64) -> Tso {
        Tso(
            (physical_ms.min(Self::MAX_PHYSICAL_MS) << Self::LOGICAL_BITS)
                | logical.min(Self::LOGICAL_MASK),
        )
    }

    /// The TSO of a time in Unix milliseconds, logical part 0 (`GoTimeToTS`). Values past
    /// [`Tso::MAX_PHYSICAL_MS`] are clamped.
    pub fn from_unix_ms(ms: u64) -> Tso {
        Tso::new(ms, 0)
    }

    /// Physical part: milliseconds since the Unix epoch.
    pub fn physical_ms(self) -> u64 {
        self.0 >> Self::LOGICAL_BITS
    }

    /// Logical part.
    pub fn logical(self) -> u64 {
        self.0 & Self::LOGICAL_MASK
    }

    /// The physical time as RFC 3339 in UTC with milliseconds, e.g.
    /// `2022-02-25T11:57:59.990Z`.
    pub fn to_datetime_utc(self) -> String {
        self.format_utc(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
    }

    /// The physical time as `YYYY-MM-DD hh:mm:ss.fff` in UTC (the form TiDB accepts as a
    /// datetime and the one shown to users).
    pub fn to_sql_datetime_utc(self) -> String {
        self.format_utc(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]"
        ))
    }

    fn format_utc(self, format: &[time::format_description::FormatItem<'_>]) -> String {
        let nanos = i128::from(self.physical_ms()) * 1_000_000;
        match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => t
                .format(format)
                .unwrap_or_else(|_| format!("{} ms", self.physical_ms())),
            Err(_) => format!("{} ms", self.physical_ms()),
        }
    }
}

/// `TSO 431434047157698561 (2022-02-25 11:57:59.990 UTC)`.
impl fmt::Display for Tso {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TSO {} ({} UTC)", self.0, self.to_sql_datetime_utc())
    }
}

impl std::str::FromStr for Tso {
    type Err = SnapshotError;

    /// A decimal TSO (surrounding whitespace allowed).
    fn from_str(s: &str) -> std::result::Result<Tso, SnapshotError> {
        let t = s.trim();
        let invalid = |reason: &str| SnapshotError::InvalidValue {
            value: s.to_string(),
            reason: reason.to_string(),
        };
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("a TSO is a decimal number"));
        }
        let n: u64 = t
            .parse()
            .map_err(|_| invalid("the TSO does not fit in 64 bits"))?;
        if n == 0 {
            return Err(invalid("a TSO must be positive"));
        }
        Ok(Tso(n))
    }
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// What went wrong with a snapshot. Converts into [`crate::error::Error::Config`] (the
/// message stands on its own).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The `snapshot` value is not a TSO, a datetime, `"auto"` or empty.
    #[error("invalid snapshot {value:?}: {reason}")]
    InvalidValue { value: String, reason: String },
    /// `UNIX_TIMESTAMP(datetime)` gave no usable answer.
    #[error(
        "cannot turn datetime {datetime:?} into a TSO: the server answered {answer:?} ({reason})"
    )]
    BadUnixTimestamp {
        datetime: String,
        answer: String,
        reason: String,
    },
    /// No row in `tidb_cdc.syncpoint_v1` (for the changefeed, when one is named).
    #[error("{}", no_syncpoint_message(.changefeed.as_deref()))]
    NoSyncpoint { changefeed: Option<String> },
    /// The syncpoint table does not exist on the downstream.
    #[error("tidb_cdc.syncpoint_v1 does not exist on {source_name}: snapshot = \"auto\" needs a TiCDC changefeed with enable-sync-point = true replicating into it")]
    NoSyncpointTable { source_name: String },
    /// A syncpoint row whose TSOs cannot be read.
    #[error("invalid row in tidb_cdc.syncpoint_v1: {0}")]
    BadSyncpoint(String),
    /// TiDB error 8055: the snapshot is older than the GC safe point.
    #[error("{}", gc_message(.source_name.as_deref(), .snapshot, .server_message))]
    OlderThanGcSafePoint {
        source_name: Option<String>,
        snapshot: Option<Tso>,
        /// TiDB's own message, which names the safe point.
        server_message: String,
    },
    /// TiDB error 9006: a read hit data below the GC safe point.
    #[error("{}", gc_too_early_message(.source_name.as_deref(), .snapshot, .server_message))]
    GcTooEarly {
        source_name: Option<String>,
        snapshot: Option<Tso>,
        server_message: String,
    },
    /// PD could not be reached or answered badly.
    #[error("PD {addr}: {message}")]
    Pd { addr: String, message: String },
    /// PD reports a GC safe point above the snapshot: its data is already gone.
    #[error("snapshot {snapshot} is already older than the GC safe point {gc_safe_point} reported by PD {addr}; choose a newer snapshot")]
    AlreadyCollected {
        addr: String,
        snapshot: Tso,
        gc_safe_point: Tso,
    },
}

fn no_syncpoint_message(changefeed: Option<&str>) -> String {
    match changefeed {
        Some(cf) => {
            let mut s = format!("no syncpoint found for changefeed {cf} in tidb_cdc.syncpoint_v1");
            if cf.contains('/') {
                // tiflow's mysql_syncpoint_store.go writes the changefeed ID without its
                // namespace.
                s.push_str(" (TiCDC records the changefeed ID without its namespace)");
            }
            s
        }
        None => "no syncpoint found for any changefeed in tidb_cdc.syncpoint_v1".to_string(),
    }
}

fn snapshot_phrase(snapshot: &Option<Tso>) -> String {
    match snapshot {
        Some(t) => format!("snapshot {t}"),
        None => "the snapshot".to_string(),
    }
}

fn gc_message(source: Option<&str>, snapshot: &Option<Tso>, server: &str) -> String {
    format!(
        "{} is older than the GC safe point of {}; choose a newer snapshot or raise \
         tidb_gc_life_time (server: {server})",
        snapshot_phrase(snapshot),
        source.unwrap_or("the server"),
    )
}

fn gc_too_early_message(source: Option<&str>, snapshot: &Option<Tso>, server: &str) -> String {
    format!(
        "the GC safe point of {} passed {} while it was being read; raise tidb_gc_life_time \
         above the check's duration or keep GC behind the snapshot (e.g. a TiCDC changefeed) \
         and run again (server: {server})",
        source.unwrap_or("the server"),
        snapshot_phrase(snapshot),
    )
}

impl SnapshotError {
    /// Name the data source and snapshot in a GC error from [`classify_tidb_error`]; other
    /// errors are returned unchanged.
    pub fn with_context(self, source: &str, snapshot: Option<Tso>) -> SnapshotError {
        match self {
            SnapshotError::OlderThanGcSafePoint { server_message, .. } => {
                SnapshotError::OlderThanGcSafePoint {
                    source_name: Some(source.to_string()),
                    snapshot,
                    server_message,
                }
            }
            SnapshotError::GcTooEarly { server_message, .. } => SnapshotError::GcTooEarly {
                source_name: Some(source.to_string()),
                snapshot,
                server_message,
            },
            other => other,
        }
    }
}

impl From<SnapshotError> for Error {
    fn from(e: SnapshotError) -> Error {
        Error::Config(e.to_string())
    }
}

/// TiDB error code: `snapshot is older than GC safe point` (`ErrSnapshotTooOld`).
pub const ER_SNAPSHOT_TOO_OLD: u16 = 8055;
/// TiDB error code: `GC life time is shorter than transaction duration` (`ErrGCTooEarly`).
pub const ER_GC_TOO_EARLY: u16 = 9006;

/// Recognise the two errors TiDB raises when a snapshot falls below the GC safe point
/// (dr-interfaces A4.3): 8055 when `tidb_snapshot` is set, 9006 when a read reaches data
/// already collected. Other codes give `None`. Add the source and snapshot with
/// [`SnapshotError::with_context`].
pub fn classify_tidb_error(code: u16, message: &str) -> Option<SnapshotError> {
    let server_message = message.trim().to_string();
    match code {
        ER_SNAPSHOT_TOO_OLD => Some(SnapshotError::OlderThanGcSafePoint {
            source_name: None,
            snapshot: None,
            server_message,
        }),
        ER_GC_TOO_EARLY => Some(SnapshotError::GcTooEarly {
            source_name: None,
            snapshot: None,
            server_message,
        }),
        _ => None,
    }
}

/// [`classify_tidb_error`] for an [`Error::Query`] raised by `source::Conn`, whose message
/// ends with `(server error <code>)` (`source::describe_mysql_error`). The source name is
/// filled in; add the snapshot with [`SnapshotError::with_context`].
pub fn classify_query_error(err: &Error) -> Option<SnapshotError> {
    let Error::Query {
        source_name,
        message,
        ..
    } = err
    else {
        return None;
    };
    let (text, code) = split_server_error(message)?;
    classify_tidb_error(code, text).map(|e| e.with_context(source_name, None))
}

/// `"<text> (server error <code>)"` → `(text, code)`.
fn split_server_error(message: &str) -> Option<(&str, u16)> {
    let rest = message.trim_end().strip_suffix(')')?;
    let at = rest.rfind(" (server error ")?;
    let code = rest[at + " (server error ".len()..].trim().parse().ok()?;
    Some((&rest[..at], code))
}

// ---------------------------------------------------------------------------------------
// The `snapshot` config value
// ---------------------------------------------------------------------------------------

/// A data source's `snapshot` setting, read for a TiDB server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotSetting {
    /// Empty: read current data.
    Live,
    /// A decimal TSO.
    Tso(Tso),
    /// A datetime `YYYY-MM-DD hh:mm:ss[.ffffff]`, turned into a TSO on the server with
    /// [`datetime_to_tso_sql`].
    Datetime(String),
    /// `"auto"`: from the newest TiCDC syncpoint (sync-diff-inspector §8.2).
    Auto,
}

/// Read a `snapshot` value (sync-diff-inspector §8.1/§8.2, dr-interfaces A4.3): empty, a
/// decimal TSO, a datetime `YYYY-MM-DD hh:mm:ss[.ffffff]`, or `auto` (any case).
pub fn parse_snapshot(value: &str) -> std::result::Result<SnapshotSetting, SnapshotError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(SnapshotSetting::Live);
    }
    if v.eq_ignore_ascii_case("auto") {
        return Ok(SnapshotSetting::Auto);
    }
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse().map(SnapshotSetting::Tso);
    }
    match check_datetime(v) {
        Ok(()) => Ok(SnapshotSetting::Datetime(v.to_string())),
        Err(reason) => Err(SnapshotError::InvalidValue {
            value: value.to_string(),
            reason: format!(
                "{reason}; expected a TSO, a datetime 'YYYY-MM-DD hh:mm:ss[.fff]' or \"auto\""
            ),
        }),
    }
}

/// Validate `YYYY-MM-DD hh:mm:ss[.f{1,6}]`.
fn check_datetime(v: &str) -> std::result::Result<(), String> {
    let b = v.as_bytes();
    let shape_ok = b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b' '
        && b[13] == b':'
        && b[16] == b':'
        && [0..4, 5..7, 8..10, 11..13, 14..16, 17..19]
            .into_iter()
            .all(|r| b[r].iter().all(u8::is_ascii_digit));
    if !shape_ok {
        return Err("not a datetime".to_string());
    }
    if b.len() > 19 {
        let frac = &b[20..];
        if b[19] != b'.'
            || frac.is_empty()
            || frac.len() > 6
            || !frac.iter().all(u8::is_ascii_digit)
        {
            return Err("the fraction of seconds must be 1 to 6 digits after '.'".to_string());
        }
    }
    let num = |r: std::ops::Range<usize>| -> u32 { v[r].parse().unwrap_or(u32::MAX) };
    let (year, month, day) = (num(0..4) as i32, num(5..7), num(8..10));
    let (hour, minute, second) = (num(11..13), num(14..16), num(17..19));
    let month = u8::try_from(month)
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or_else(|| format!("month {month} does not exist"))?;
    time::Date::from_calendar_date(year, month, day as u8)
        .map_err(|_| format!("{} is not a date", &v[..10]))?;
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!("{} is not a time of day", &v[11..19]));
    }
    Ok(())
}

/// The query that turns a datetime into Unix seconds on the server, as sync-diff-inspector
/// does (§8.1, `SELECT unix_timestamp(?)`). The datetime is read in the session time zone
/// (UTC on syncgate's sessions). Parse the answer with [`tso_from_unix_timestamp_result`].
pub fn datetime_to_tso_sql(datetime: &str) -> String {
    format!(
        "SELECT unix_timestamp({})",
        crate::sql::quote_str(datetime.trim())
    )
}

/// The TSO of an answer of [`datetime_to_tso_sql`] such as `1645790279.000000`:
/// `(ms << 18)`, logical 0 (dr-interfaces A4.1 `GoTimeToTS`). Milliseconds are kept;
/// finer digits are dropped. `""` (NULL), `0` (the server's answer for an out-of-range
/// datetime) and anything but a positive decimal are errors.
pub fn tso_from_unix_timestamp_result(text: &str) -> std::result::Result<Tso, SnapshotError> {
    let t = text.trim();
    let bad = |reason: &str| SnapshotError::BadUnixTimestamp {
        datetime: String::new(),
        answer: text.to_string(),
        reason: reason.to_string(),
    };
    if t.is_empty() {
        return Err(bad("NULL: the datetime is not valid on the server"));
    }
    let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad("not a non-negative decimal number of seconds"));
    }
    let secs: u64 = secs.parse().map_err(|_| bad("too large"))?;
    let mut ms_digits = frac.chars().take(3).collect::<String>();
    while ms_digits.len() < 3 {
        ms_digits.push('0');
    }
    let ms: u64 = ms_digits.parse().unwrap_or(0);
    let total = secs
        .checked_mul(1000)
        .and_then(|s| s.checked_add(ms))
        .filter(|&m| m <= Tso::MAX_PHYSICAL_MS)
        .ok_or_else(|| bad("too large"))?;
    if total == 0 {
        return Err(bad("0: the datetime is out of the server's range"));
    }
    Ok(Tso::from_unix_ms(total))
}

/// Resolve a datetime to a TSO on `conn` (whose session time zone gives the datetime its
/// meaning: UTC on syncgate's sessions).
pub async fn resolve_datetime(conn: &mut Conn, datetime: &str) -> Result<Tso> {
    let sql = datetime_to_tso_sql(datetime);
    let row = conn.first(&sql).await?;
    let text = row
        .as_ref()
        .and_then(|r| r.first())
        .and_then(|v| v.as_ref())
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    tso_from_unix_timestamp_result(&text).map_err(|e| {
        Error::from(match e {
            SnapshotError::BadUnixTimestamp { answer, reason, .. } => {
                SnapshotError::BadUnixTimestamp {
                    datetime: datetime.to_string(),
                    answer,
                    reason,
                }
            }
            other => other,
        })
    })
}

// ---------------------------------------------------------------------------------------
// Pinning a session
// ---------------------------------------------------------------------------------------

/// The statement that makes every later read on the session see `tso`
/// (dr-interfaces A4.3: `SET @@tidb_snapshot = '<TSO as string>'`). TiDB validates it and
/// fails with 8055 when the TSO is below the GC safe point ([`classify_tidb_error`]).
pub fn set_snapshot_sql(tso: Tso) -> String {
    format!("SET SESSION tidb_snapshot = '{}'", tso.0)
}

/// The statement that returns the session to current data (`''` clears it, A4.3).
pub fn clear_snapshot_sql() -> &'static str {
    "SET SESSION tidb_snapshot = ''"
}

// ---------------------------------------------------------------------------------------
// snapshot = "auto": TiCDC syncpoints
// ---------------------------------------------------------------------------------------

/// One syncpoint: the downstream at `downstream` equals the upstream at `upstream`
/// (dr-interfaces A7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syncpoint {
    /// `primary_ts`: the upstream TSO (becomes the upstream's snapshot).
    pub upstream: Tso,
    /// `secondary_ts`: the downstream TSO (becomes the downstream's snapshot).
    pub downstream: Tso,
}

/// The query for the newest syncpoint, run on the downstream (sync-diff-inspector §8.2).
///
/// Table layout, dr-interfaces A7.1 (`tidb_cdc.syncpoint_v1`, created by TiCDC):
/// `ticdc_cluster_id varchar(255)`, `changefeed varchar(255)`, `primary_ts varchar(18)`,
/// `secondary_ts varchar(18)`, `created_at timestamp`, `PRIMARY KEY (changefeed,
/// primary_ts)`. `changefeed` holds the changefeed ID as TiCDC writes it (tiflow's
/// `mysql_syncpoint_store.go` writes the ID without namespace); the configured
/// `syncpoint-changefeed` is compared verbatim. The TSOs are strings; ordering them as
/// strings is right because all TSOs in use have 18 digits (A7.3), and with the filter it
/// follows the primary key. Without a changefeed the newest syncpoint of *any* changefeed
/// is taken, which is how sync-diff-inspector reported false differences (§8.2).
pub fn syncpoint_sql(changefeed: Option<&str>) -> String {
    let filter = match changefeed {
        Some(cf) => format!(" WHERE changefeed = {}", crate::sql::quote_str(cf)),
        None => String::new(),
    };
    format!(
        "SELECT primary_ts, secondary_ts FROM tidb_cdc.syncpoint_v1{filter} \
         ORDER BY primary_ts DESC LIMIT 1"
    )
}

/// Read the answer of [`syncpoint_sql`]: no row is [`SnapshotError::NoSyncpoint`]; a row
/// with a NULL, empty or non-numeric TSO is [`SnapshotError::BadSyncpoint`].
pub fn parse_syncpoint_row(
    changefeed: Option<&str>,
    row: Option<&Row>,
) -> std::result::Result<Syncpoint, SnapshotError> {
    let Some(row) = row else {
        return Err(SnapshotError::NoSyncpoint {
            changefeed: changefeed.map(str::to_string),
        });
    };
    let cell = |i: usize, name: &str| -> std::result::Result<Tso, SnapshotError> {
        let text = match row.get(i) {
            None => return Err(SnapshotError::BadSyncpoint(format!("{name} is missing"))),
            Some(None) => return Err(SnapshotError::BadSyncpoint(format!("{name} is NULL"))),
            Some(Some(b)) => String::from_utf8_lossy(b).into_owned(),
        };
        text.parse::<Tso>()
            .map_err(|_| SnapshotError::BadSyncpoint(format!("{name} {text:?} is not a TSO")))
    };
    Ok(Syncpoint {
        upstream: cell(0, "primary_ts")?,
        downstream: cell(1, "secondary_ts")?,
    })
}

/// Run [`syncpoint_sql`] on a live (unpinned) connection to the downstream and read the
/// newest syncpoint. A missing table gets its own clear error.
pub async fn query_syncpoint(conn: &mut Conn, changefeed: Option<&str>) -> Result<Syncpoint> {
    let sql = syncpoint_sql(changefeed);
    let row = match conn.first(&sql).await {
        Ok(row) => row,
        Err(Error::Query { message, .. })
            if split_server_error(&message).map(|(_, c)| c) == Some(1146) =>
        {
            return Err(SnapshotError::NoSyncpointTable {
                source_name: conn.source_name().to_string(),
            }
            .into())
        }
        Err(e) => return Err(e),
    };
    Ok(parse_syncpoint_row(changefeed, row.as_ref())?)
}

// ---------------------------------------------------------------------------------------
// PD: service GC safe points (read-only HTTP API, dr-interfaces A5)
// ---------------------------------------------------------------------------------------

/// Default TTL, as sync-diff-inspector's `Sync_diff_<ns>` (dr-interfaces A5): 300 s,
/// re-checked every 150 s.
pub const DEFAULT_GC_TTL_SECS: u64 = 300;

/// The documented PD HTTP path listing service GC safe points (dr-interfaces A5).
pub const PD_SAFEPOINT_PATH: &str = "/pd/api/v1/gc/safepoint";

/// The service ID PD uses for TiDB's own GC worker; it never protects a snapshot.
pub const GC_WORKER_SERVICE_ID: &str = "gc_worker";

/// How long one PD request may take.
const PD_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A service ID for this run: `syncgate_<unix ms>` (after sync-diff-inspector's
/// `Sync_diff_<timestamp>`).
pub fn default_service_id() -> String {
    format!("syncgate_{}", unix_ms_now())
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One entry of PD's `service_gc_safe_points`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ServiceSafePoint {
    pub service_id: String,
    /// Unix seconds; `i64::MAX` for entries that never expire.
    #[serde(default)]
    pub expired_at: i64,
    pub safe_point: u64,
}

/// PD's answer to `GET /pd/api/v1/gc/safepoint` (dr-interfaces A5).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct PdSafePoints {
    #[serde(default)]
    pub service_gc_safe_points: Vec<ServiceSafePoint>,
    pub gc_safe_point: u64,
}

/// Parse PD's safe-point listing.
pub fn parse_pd_safepoints(json: &str) -> std::result::Result<PdSafePoints, String> {
    serde_json::from_str(json).map_err(|e| format!("unexpected answer ({e})"))
}

/// Whether a snapshot's data is safe from GC, as PD's safe points show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcProtection {
    /// Unexpired service safepoints at or below the snapshot hold GC back; their IDs.
    Held { by: Vec<String> },
    /// Readable now, but nothing holds GC back: it is safe only while
    /// `tidb_gc_life_time` covers the snapshot's age plus the check.
    Unprotected { gc_safe_point: Tso },
    /// The GC safe point (or the GC worker's safe point, with no holder) is above the
    /// snapshot: its data is gone or about to be.
    Collected { gc_safe_point: Tso },
}

/// Judge `snapshot` against PD's safe points at `now_unix_secs`.
///
/// - `gc_safe_point > snapshot`: collected (TiDB refuses reads below it, A4.3).
/// - else, any unexpired service safepoint other than `gc_worker` at or below the snapshot:
///   held (GC cannot pass the minimum service safepoint).
/// - else, `gc_worker`'s safe point above the snapshot: collected (GC is moving there).
/// - else unprotected.
pub fn assess_protection(points: &PdSafePoints, snapshot: Tso, now_unix_secs: i64) -> GcProtection {
    if points.gc_safe_point > snapshot.0 {
        return GcProtection::Collected {
            gc_safe_point: Tso(points.gc_safe_point),
        };
    }
    let by: Vec<String> = points
        .service_gc_safe_points
        .iter()
        .filter(|s| {
            s.service_id != GC_WORKER_SERVICE_ID
                && s.expired_at > now_unix_secs
                && s.safe_point <= snapshot.0
        })
        .map(|s| s.service_id.clone())
        .collect();
    if !by.is_empty() {
        return GcProtection::Held { by };
    }
    let worker = points
        .service_gc_safe_points
        .iter()
        .filter(|s| s.service_id == GC_WORKER_SERVICE_ID)
        .map(|s| s.safe_point)
        .max();
    match worker {
        Some(w) if w > snapshot.0 => GcProtection::Collected {
            gc_safe_point: Tso(w),
        },
        _ => GcProtection::Unprotected {
            gc_safe_point: Tso(points.gc_safe_point),
        },
    }
}

/// The watcher's latest view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcStatus {
    /// Protection at the last successful read of PD.
    pub protection: GcProtection,
    /// The error of the last read, when it failed (the protection above is then older).
    pub last_error: Option<String>,
}

/// Watches PD's GC safe points for one snapshot over PD's documented HTTP API. It does
/// **not** register a service safepoint (no documented HTTP call does; see the module docs).
pub struct GcKeeper {
    service_id: String,
    addr: String,
    snapshot: Tso,
    status: watch::Receiver<GcStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl GcKeeper {
    /// Read PD's safe points now and start re-reading them every `ttl_secs / 2` in a tokio
    /// task. `pd_addr` is `host:port` or `http://host:port`, or several separated by
    /// commas (tried in order). `service_id` names this run in logs ([`default_service_id`]).
    ///
    /// Errors when PD cannot be reached or answers badly, or when `safepoint` is already
    /// below the GC safe point. When nothing holds GC at or below `safepoint`, it starts and
    /// logs a warning (see [`GcProtection::Unprotected`]).
    pub async fn start(
        pd_addr: &str,
        service_id: &str,
        safepoint: Tso,
        ttl_secs: u64,
    ) -> Result<GcKeeper> {
        if ttl_secs == 0 {
            return Err(Error::Config("GC keeper TTL must be at least 1 s".into()));
        }
        let pd = PdClient::new(pd_addr)?;
        let points = pd.safepoints().await.map_err(|(addr, message)| {
            Error::from(SnapshotError::Pd {
                addr,
                message: format!(
                    "{message}; the GC safe point cannot be checked, so the snapshot would \
                     not be guarded"
                ),
            })
        })?;
        let protection = assess_protection(&points.1, safepoint, unix_secs_now());
        match &protection {
            GcProtection::Collected { gc_safe_point } => {
                return Err(SnapshotError::AlreadyCollected {
                    addr: points.0,
                    snapshot: safepoint,
                    gc_safe_point: *gc_safe_point,
                }
                .into())
            }
            GcProtection::Held { by } => tracing::info!(
                "{service_id}: {safepoint} is protected from GC by service safepoint(s) {} on PD {}",
                by.join(", "),
                points.0
            ),
            GcProtection::Unprotected { gc_safe_point } => tracing::warn!(
                "{service_id}: nothing holds GC at or below {safepoint} (PD {}, GC safe point \
                 {gc_safe_point}); the check relies on tidb_gc_life_time covering the \
                 snapshot's age and the check's duration",
                points.0
            ),
        }
        let (status_tx, status_rx) = watch::channel(GcStatus {
            protection,
            last_error: None,
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let interval = Duration::from_millis(ttl_secs.saturating_mul(500));
        let task = tokio::spawn(watch_loop(
            pd,
            service_id.to_string(),
            safepoint,
            interval,
            status_tx,
            stop_rx,
        ));
        Ok(GcKeeper {
            service_id: service_id.to_string(),
            addr: points.0,
            snapshot: safepoint,
            status: status_rx,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// The service ID this keeper was started with.
    pub fn service_id(&self) -> &str {
        &self.service_id
    }

    /// The PD address that answered at start.
    pub fn pd_addr(&self) -> &str {
        &self.addr
    }

    /// The snapshot being watched.
    pub fn snapshot(&self) -> Tso {
        self.snapshot
    }

    /// The latest status.
    pub fn status(&self) -> GcStatus {
        self.status.borrow().clone()
    }

    /// The latest protection.
    pub fn protection(&self) -> GcProtection {
        self.status.borrow().protection.clone()
    }

    /// End the watcher and wait for it. Nothing is sent to PD.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for GcKeeper {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn unix_secs_now() -> i64 {
    (unix_ms_now() / 1000) as i64
}

async fn watch_loop(
    pd: PdClient,
    service_id: String,
    snapshot: Tso,
    interval: Duration,
    status: watch::Sender<GcStatus>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match pd.safepoints().await {
            Ok((addr, points)) => {
                let now = assess_protection(&points, snapshot, unix_secs_now());
                let before = status.borrow().protection.clone();
                if now != before {
                    match &now {
                        GcProtection::Collected { gc_safe_point } => tracing::error!(
                            "{service_id}: the GC safe point {gc_safe_point} on PD {addr} \
                             has passed {snapshot}; reads at it will fail (TiDB error 9006)"
                        ),
                        GcProtection::Unprotected { gc_safe_point } => tracing::warn!(
                            "{service_id}: {snapshot} is no longer protected from GC \
                             (PD {addr}, GC safe point {gc_safe_point})"
                        ),
                        GcProtection::Held { by } => tracing::info!(
                            "{service_id}: {snapshot} is protected from GC by {}",
                            by.join(", ")
                        ),
                    }
                }
                status.send_replace(GcStatus {
                    protection: now,
                    last_error: None,
                });
            }
            Err((addr, message)) => {
                tracing::warn!(
                    "{service_id}: cannot read GC safe points from PD {addr} (will retry): \
                     {message}"
                );
                status.send_modify(|s| s.last_error = Some(format!("PD {addr}: {message}")));
            }
        }
    }
}

/// A minimal client for PD's HTTP API (plain HTTP; TLS is not supported).
struct PdClient {
    /// Base URLs, e.g. `http://127.0.0.1:2379`, tried in order.
    bases: Arc<[String]>,
    http: reqwest::Client,
}

impl PdClient {
    fn new(pd_addr: &str) -> Result<PdClient> {
        let mut bases = Vec::new();
        for raw in pd_addr.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let base = raw.trim_end_matches('/');
            if base.starts_with("https://") {
                return Err(Error::Config(format!(
                    "PD address {raw}: https is not supported; use the plain http address"
                )));
            }
            let base = if base.starts_with("http://") {
                base.to_string()
            } else if base.contains("://") {
                return Err(Error::Config(format!(
                    "PD address {raw}: expected host:port or http://host:port"
                )));
            } else {
                format!("http://{base}")
            };
            bases.push(base);
        }
        if bases.is_empty() {
            return Err(Error::Config("no PD address given".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(PD_REQUEST_TIMEOUT)
            .connect_timeout(PD_REQUEST_TIMEOUT)
            .build()
            .map_err(|e| Error::Config(format!("cannot set up an HTTP client for PD: {e}")))?;
        Ok(PdClient {
            bases: bases.into(),
            http,
        })
    }

    /// `GET /pd/api/v1/gc/safepoint` on the first address that answers. On failure, the
    /// addresses tried and the last error.
    async fn safepoints(&self) -> std::result::Result<(String, PdSafePoints), (String, String)> {
        let mut last = String::new();
        for base in self.bases.iter() {
            match self.get_safepoints(base).await {
                Ok(points) => return Ok((base.clone(), points)),
                Err(e) => last = e,
            }
        }
        Err((self.bases.join(","), last))
    }

    async fn get_safepoints(&self, base: &str) -> std::result::Result<PdSafePoints, String> {
        let url = format!("{base}{PD_SAFEPOINT_PATH}");
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url} failed: {}", describe_reqwest_error(&e)))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| format!("GET {url}: cannot read the answer: {e}"))?;
        if !status.is_success() {
            let body = body.trim();
            let body: String = body.chars().take(200).collect();
            return Err(format!("GET {url} answered HTTP {status}: {body}"));
        }
        parse_pd_safepoints(&body).map_err(|e| format!("GET {url}: {e}"))
    }
}

fn describe_reqwest_error(e: &reqwest::Error) -> String {
    let mut s = if e.is_connect() {
        "cannot connect".to_string()
    } else if e.is_timeout() {
        format!("no answer within {}s", PD_REQUEST_TIMEOUT.as_secs())
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
