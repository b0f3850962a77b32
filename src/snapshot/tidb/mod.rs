//! TiDB snapshots: TSOs, the `snapshot` config value, pinning a session, GC errors, PD
//! discovery, and a keeper of a PD service GC safepoint at the snapshot.
//!
//! **Built against TiDB's and PD's documented contracts.** TiDB cannot run where syncgate is
//! developed, so everything here follows the documented interfaces (cited per item from
//! `shared/reference/dr-interfaces.md`, `sync-diff-inspector.md`, TiDB's docs and PD's
//! `pdpb.proto`) and is tested by *contract tests* (`tests/it/tidb_contract.rs`): pure
//! functions for SQL text and parsing, and a mock PD gRPC server on 127.0.0.1 that records
//! every request. No test runs against a live TiDB or PD.
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
//! - [`pd_discovery_sql`] / [`discover_pd`]: the PD addresses of a TiDB cluster from
//!   `information_schema.cluster_info`, as sync-diff-inspector finds them (§2.1).
//! - [`GcKeeper`]: GC protection through PD, see below.
//!
//! # GC protection
//!
//! sync-diff-inspector registers a PD *service GC safepoint* `Sync_diff_<ns>` (TTL 300 s,
//! refreshed every 150 s) through PD's gRPC API (`UpdateServiceGCSafePoint`,
//! sync-diff-inspector.md §2.1 "GC keeper", §8.3; dr-interfaces A5 "Holders"). [`GcKeeper`]
//! does the same with `syncgate_<unix ms>` over the small gRPC client in [`super::pd`]:
//! register at start (refusing a snapshot GC has already passed), refresh every TTL/2,
//! remove at stop (TTL 0). While it is registered, GC cannot pass the snapshot. The engine
//! starts one per TiDB side read at a TSO or datetime when `cluster_info` names a PD it can
//! reach (`engine::run_check`); otherwise the report warns that the run relies on
//! `tidb_gc_life_time`.

use crate::db::Conn;
use crate::error::{Error, Result};
use crate::row::Row;
use std::fmt;
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
    /// PD's minimum service safepoint (GC's bound) is above the snapshot: GC may already
    /// have collected its data, and PD refused to hold GC there.
    #[error("snapshot {snapshot} is older than the cluster's GC safe point {gc_safe_point} (PD {addr} refused a service GC safepoint there): its data may already be collected; choose a newer snapshot (TiDB reports this as error 8055/9006)")]
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

/// MySQL/TiDB error code: table does not exist.
const ER_NO_SUCH_TABLE: u16 = 1146;

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

/// [`classify_tidb_error`] for an [`Error::Query`] raised by `db::Conn`, by the server's
/// error code it carries. The source name is filled in; add the snapshot with
/// [`SnapshotError::with_context`].
pub fn classify_query_error(err: &Error) -> Option<SnapshotError> {
    let Error::Query {
        source_name,
        server: Some(server),
        ..
    } = err
    else {
        return None;
    };
    classify_tidb_error(server.code, &server.message).map(|e| e.with_context(source_name, None))
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
        Err(e) if e.server_code() == Some(ER_NO_SUCH_TABLE) => {
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
// PD discovery (information_schema.cluster_info)
// ---------------------------------------------------------------------------------------

/// The query listing the PD instances of the cluster a TiDB server belongs to, as
/// sync-diff-inspector finds PD (sync-diff-inspector.md §2.1 "GC keeper": "It finds PD
/// addresses in `information_schema.cluster_info`"). Table and columns from TiDB's docs
/// (`information-schema-cluster-info.md`): `TYPE` is `tidb`, `pd` or `tikv`; `INSTANCE` is the
/// instance address `IP:PORT` (for PD its client address, where gRPC is served). Read the
/// answer with [`pd_addrs_from_rows`].
pub fn pd_discovery_sql() -> &'static str {
    "SELECT INSTANCE FROM information_schema.cluster_info WHERE TYPE = 'pd'"
}

/// PD addresses (`http://host:port`, in the order given, without duplicates) from the rows
/// of [`pd_discovery_sql`], and a description of each value that is not a usable address
/// (NULL, TLS, garbage).
pub fn pd_addrs_from_rows(rows: &[Row]) -> (Vec<String>, Vec<String>) {
    let (mut addrs, mut rejected) = (Vec::new(), Vec::new());
    for row in rows {
        match row.first() {
            Some(Some(bytes)) => match super::pd::parse_pd_addr(&String::from_utf8_lossy(bytes)) {
                Ok(a) if !addrs.contains(&a) => addrs.push(a),
                Ok(_) => {}
                Err(e) => rejected.push(e),
            },
            _ => rejected.push("INSTANCE is NULL".to_string()),
        }
    }
    (addrs, rejected)
}

/// Run [`pd_discovery_sql`] on `conn` and return the usable PD addresses (possibly none).
/// Unusable values are logged.
pub async fn discover_pd(conn: &mut Conn) -> Result<Vec<String>> {
    let rows = conn.rows(pd_discovery_sql()).await?;
    let (addrs, rejected) = pd_addrs_from_rows(&rows);
    for r in rejected {
        tracing::warn!("{}: ignoring a PD instance: {r}", conn.source_name());
    }
    Ok(addrs)
}

// ---------------------------------------------------------------------------------------
// GC keeper: a PD service GC safepoint held at the snapshot
// ---------------------------------------------------------------------------------------

/// Default TTL of the service safepoint, as sync-diff-inspector's `Sync_diff_<ns>`
/// (dr-interfaces A5, sync-diff-inspector.md §2.1): 300 s, refreshed every 150 s.
pub const DEFAULT_GC_TTL_SECS: u64 = 300;

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

/// What the keeper has seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcStatus {
    /// Successful registrations (the one at start included).
    pub refreshes: u64,
    /// The minimum service safepoint PD reported with the last successful registration.
    pub min_safe_point: Tso,
    /// Failed refreshes (PD unreachable, errors in the answer).
    pub failures: u64,
    /// The error of the last refresh, while refreshes fail (`None` after a success).
    pub last_error: Option<String>,
    /// At some point no refresh had succeeded for a whole TTL: PD may have dropped the
    /// service safepoint, and GC may have passed the snapshot meanwhile.
    pub lapsed: bool,
    /// PD reported a minimum safepoint above the snapshot during the run: GC has passed it
    /// (reads fail with TiDB error 9006).
    pub passed_by: Option<Tso>,
}

/// Holds a PD *service GC safepoint* at a snapshot for as long as it runs, so TiKV's GC
/// keeps the snapshot's versions (sync-diff-inspector.md §2.1 "GC keeper", §8.3):
///
/// - [`GcKeeper::start`] finds the PD leader (`GetMembers`) and registers
///   `UpdateServiceGCSafePoint(service_id, TTL, safe_point = snapshot)`; PD answering a
///   minimum safepoint above the snapshot means GC has already passed it: start fails with
///   [`SnapshotError::AlreadyCollected`];
/// - a tokio task registers it again every `TTL / 2` (on failure it warns, retries every
///   `TTL / 8`, and finds the leader again — PD leaders change);
/// - [`GcKeeper::stop`] removes it (`TTL = 0`, PD's documented removal: see
///   [`super::pd`]). Dropping the keeper without `stop` asks the task to remove it in the
///   background; if the process ends first, PD drops it when its TTL expires.
///
/// The safe point is the snapshot TSO itself (sync-diff-inspector uses min(snapshot, current
/// TSO), which is the snapshot for any snapshot in the past).
pub struct GcKeeper {
    service_id: String,
    addr: String,
    cluster_id: u64,
    snapshot: Tso,
    ttl_secs: u64,
    status: watch::Receiver<GcStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::result::Result<(), String>>>,
}

impl std::fmt::Debug for GcKeeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcKeeper")
            .field("service_id", &self.service_id)
            .field("addr", &self.addr)
            .field("cluster_id", &self.cluster_id)
            .field("snapshot", &self.snapshot)
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

impl GcKeeper {
    /// Register `service_id` at `safepoint` on PD and keep it registered (see the type's
    /// docs). `pd_addr` is `host:port` or `http://host:port`, or several separated by commas:
    /// the first that answers `GetMembers` names the leader. `ttl_secs` ≥ 1.
    ///
    /// Errors: [`SnapshotError::Pd`] when the addresses are unusable or no PD answers (or
    /// answers with an error), [`SnapshotError::AlreadyCollected`] when PD's minimum
    /// safepoint is above `safepoint`.
    pub async fn start(
        pd_addr: &str,
        service_id: &str,
        safepoint: Tso,
        ttl_secs: u64,
    ) -> std::result::Result<GcKeeper, SnapshotError> {
        let pd_error = |addr: &str, message: String| SnapshotError::Pd {
            addr: addr.to_string(),
            message,
        };
        if ttl_secs == 0 || ttl_secs > i64::MAX as u64 {
            return Err(pd_error(
                pd_addr.trim(),
                "the service safepoint TTL must be at least 1 s".into(),
            ));
        }
        if service_id.is_empty() {
            return Err(pd_error(pd_addr.trim(), "the service ID is empty".into()));
        }
        let addrs = super::pd::parse_pd_addrs(pd_addr).map_err(|e| pd_error(pd_addr.trim(), e))?;
        let cannot_register = |e: String| {
            pd_error(
                &addrs.join(","),
                format!("cannot register service GC safepoint {service_id} at {safepoint}: {e}"),
            )
        };
        let mut leader = super::pd::PdLeader::connect(&addrs)
            .await
            .map_err(cannot_register)?;
        let answer = leader
            .update_service_gc_safe_point(service_id, ttl_secs as i64, safepoint.0)
            .await
            .map_err(cannot_register)?;
        if answer.min_safe_point > safepoint.0 {
            return Err(SnapshotError::AlreadyCollected {
                addr: leader.addr.clone(),
                snapshot: safepoint,
                gc_safe_point: Tso(answer.min_safe_point),
            });
        }
        tracing::info!(
            "{service_id}: service GC safepoint registered at {safepoint} on PD {} (cluster {}, \
             TTL {ttl_secs} s; minimum safepoint {} held by {})",
            leader.addr,
            leader.cluster_id,
            answer.min_safe_point,
            answer.min_service_id
        );
        let (status_tx, status_rx) = watch::channel(GcStatus {
            refreshes: 1,
            min_safe_point: Tso(answer.min_safe_point),
            failures: 0,
            last_error: None,
            lapsed: false,
            passed_by: None,
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let keeper = KeepLoop {
            addrs,
            leader: Some(leader.clone()),
            cluster_id: leader.cluster_id,
            service_id: service_id.to_string(),
            snapshot: safepoint,
            ttl_secs,
        };
        let task = tokio::spawn(keeper.run(status_tx, stop_rx));
        Ok(GcKeeper {
            service_id: service_id.to_string(),
            addr: leader.addr,
            cluster_id: leader.cluster_id,
            snapshot: safepoint,
            ttl_secs,
            status: status_rx,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// The service ID registered on PD.
    pub fn service_id(&self) -> &str {
        &self.service_id
    }

    /// The PD leader that accepted the registration at start.
    pub fn pd_addr(&self) -> &str {
        &self.addr
    }

    /// The PD cluster ID.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The snapshot being held.
    pub fn snapshot(&self) -> Tso {
        self.snapshot
    }

    /// The TTL of the service safepoint.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// The latest status.
    pub fn status(&self) -> GcStatus {
        self.status.borrow().clone()
    }

    /// One line for reports: `protected from GC by PD service safepoint <id> (PD <addr>,
    /// TTL <n> s)`.
    pub fn describe(&self) -> String {
        format!(
            "protected from GC by PD service safepoint {} (PD {}, TTL {} s)",
            self.service_id, self.addr, self.ttl_secs
        )
    }

    /// Report warnings from the run so far: failed refreshes, a possible lapse, GC passing
    /// the snapshot. Empty when every refresh succeeded.
    pub fn warnings(&self) -> Vec<String> {
        let s = self.status();
        let mut out = Vec::new();
        if let Some(gc) = s.passed_by {
            out.push(format!(
                "PD service safepoint {}: PD reported the minimum safepoint {gc} above the \
                 snapshot {} during the check: GC may have collected data the check read",
                self.service_id, self.snapshot
            ));
        }
        if s.failures > 0 {
            let last = s
                .last_error
                .as_deref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default();
            out.push(if s.lapsed {
                format!(
                    "PD service safepoint {}: {} refreshes failed and none succeeded for \
                     longer than its TTL ({} s): GC protection may have lapsed{last}",
                    self.service_id, s.failures, self.ttl_secs
                )
            } else {
                format!(
                    "PD service safepoint {}: {} refreshes failed, but it was renewed within \
                     its TTL ({} s){last}",
                    self.service_id, s.failures, self.ttl_secs
                )
            });
        }
        out
    }

    /// Stop refreshing and remove the service safepoint from PD (`TTL = 0`). An error means
    /// it could not be removed; PD then drops it when its TTL expires.
    pub async fn stop(mut self) -> std::result::Result<(), SnapshotError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        let outcome = match task.await {
            Ok(r) => r,
            Err(e) => Err(format!("the GC keeper task failed: {e}")),
        };
        outcome.map_err(|e| SnapshotError::Pd {
            addr: self.addr.clone(),
            message: format!(
                "cannot remove service GC safepoint {} ({e}); PD drops it when its TTL of \
                 {} s expires",
                self.service_id, self.ttl_secs
            ),
        })
    }
}

impl Drop for GcKeeper {
    fn drop(&mut self) {
        // Ends the refresh loop, which then removes the service safepoint in the background
        // (as long as the runtime lives).
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// How long removing the service safepoint at stop may take (finding the leader again
/// included).
const REMOVAL_TIMEOUT: Duration = Duration::from_secs(20);

/// The refresh task's state.
struct KeepLoop {
    addrs: Vec<String>,
    leader: Option<super::pd::PdLeader>,
    cluster_id: u64,
    service_id: String,
    snapshot: Tso,
    ttl_secs: u64,
}

impl KeepLoop {
    /// Refresh every `ttl / 2` (after a failure every `ttl / 8`) until stopped, then remove
    /// the service safepoint.
    async fn run(
        mut self,
        status: watch::Sender<GcStatus>,
        mut stop: oneshot::Receiver<()>,
    ) -> std::result::Result<(), String> {
        let ttl = Duration::from_secs(self.ttl_secs);
        let interval = ttl / 2;
        let retry = (ttl / 8).max(Duration::from_millis(50));
        let mut last_ok = tokio::time::Instant::now();
        let mut wait = interval;
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(wait) => {}
            }
            let refreshed = tokio::select! {
                _ = &mut stop => break,
                r = self.update(self.ttl_secs as i64) => r,
            };
            match refreshed {
                Ok(answer) => {
                    last_ok = tokio::time::Instant::now();
                    wait = interval;
                    let passed = (answer.min_safe_point > self.snapshot.0)
                        .then_some(Tso(answer.min_safe_point));
                    if let Some(gc) = passed {
                        tracing::error!(
                            "{}: PD's minimum safepoint {gc} is above the snapshot {}: GC has \
                             passed it; reads at it fail (TiDB error 9006)",
                            self.service_id,
                            self.snapshot
                        );
                    }
                    status.send_modify(|s| {
                        s.refreshes += 1;
                        s.min_safe_point = Tso(answer.min_safe_point);
                        s.last_error = None;
                        if s.passed_by.is_none() {
                            s.passed_by = passed;
                        }
                    });
                }
                Err(e) => {
                    wait = retry;
                    let lapsed = last_ok.elapsed() >= ttl;
                    tracing::warn!(
                        "{}: cannot refresh the PD service GC safepoint (retrying in {:?}){}: {e}",
                        self.service_id,
                        retry,
                        if lapsed {
                            "; it has not been renewed for a whole TTL, GC protection may have \
                             lapsed"
                        } else {
                            ""
                        }
                    );
                    status.send_modify(|s| {
                        s.failures += 1;
                        s.last_error = Some(e);
                        s.lapsed |= lapsed;
                    });
                }
            }
        }
        let removal = tokio::time::timeout(REMOVAL_TIMEOUT, self.update(0))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {}s", REMOVAL_TIMEOUT.as_secs())));
        match removal {
            Ok(_) => {
                tracing::info!("{}: service GC safepoint removed", self.service_id);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(
                    "{}: cannot remove the PD service GC safepoint (it expires within {} s): {e}",
                    self.service_id,
                    self.ttl_secs
                );
                Err(e)
            }
        }
    }

    /// One `UpdateServiceGCSafePoint` at the snapshot. A failure on the current leader
    /// connection is retried once through a fresh `GetMembers` (the leader may have
    /// changed); the cluster ID must stay the same.
    async fn update(
        &mut self,
        ttl: i64,
    ) -> std::result::Result<super::pd::SafePointAnswer, String> {
        let mut first_error = None;
        if let Some(leader) = self.leader.as_mut() {
            match leader
                .update_service_gc_safe_point(&self.service_id, ttl, self.snapshot.0)
                .await
            {
                Ok(a) => return Ok(a),
                Err(e) => {
                    self.leader = None;
                    first_error = Some(e);
                }
            }
        }
        let mut leader = super::pd::PdLeader::connect(&self.addrs)
            .await
            .map_err(|e| match &first_error {
                Some(first) => format!("{first}; then {e}"),
                None => e,
            })?;
        if leader.cluster_id != self.cluster_id {
            return Err(format!(
                "PD {} now serves cluster {}, not cluster {}",
                leader.addr, leader.cluster_id, self.cluster_id
            ));
        }
        let answer = leader
            .update_service_gc_safe_point(&self.service_id, ttl, self.snapshot.0)
            .await?;
        self.leader = Some(leader);
        Ok(answer)
    }
}
