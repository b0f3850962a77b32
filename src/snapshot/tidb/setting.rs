//! The `snapshot` value of a TiDB data source: empty (live), a TSO, a datetime or `"auto"`.
//! Pure.

use super::{SnapshotError, Tso};

/// A data source's `snapshot` setting, read for a TiDB server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotSetting {
    /// Empty: read current data.
    Live,
    /// A decimal TSO.
    Tso(Tso),
    /// A datetime `YYYY-MM-DD hh:mm:ss[.ffffff]`, turned into a TSO on the server with
    /// [`datetime_to_tso_sql`].
    ///
    /// [`datetime_to_tso_sql`]: super::datetime_to_tso_sql
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
