//! TSOs: the `(physical_ms << 18) + logical` layout, parsing and display, and turning a
//! datetime into a TSO through the server's `UNIX_TIMESTAMP`. Pure.

use super::SnapshotError;
use std::fmt;

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
