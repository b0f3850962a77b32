//! The `snapshot` setting of a data source, typed. A leaf: `db` sets TiDB snapshots from it
//! when it opens a connection, and it depends on nothing that connects.

use crate::snapshot::tidb::{SnapshotError, SnapshotSetting, Tso};
use std::fmt;

/// A data source's `snapshot` setting, parsed once when the job is built: nothing
/// downstream of the config compares its text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Snapshot {
    /// Empty: read current data.
    #[default]
    Live,
    /// `"consistent"`: one consistent snapshot shared by every worker (MySQL/MariaDB).
    Consistent,
    /// `"auto"`: TiDB from the newest TiCDC syncpoint; MySQL/MariaDB a primary/replica pair
    /// fenced at one GTID.
    Auto,
    /// A TiDB TSO.
    Tso(Tso),
    /// A TiDB datetime `YYYY-MM-DD hh:mm:ss[.ffffff]`.
    Datetime(String),
}

impl Snapshot {
    /// Read a `snapshot` value: empty, `consistent`, `auto` (any case), a TSO or a datetime.
    pub fn parse(value: &str) -> Result<Snapshot, SnapshotError> {
        if value.trim().eq_ignore_ascii_case("consistent") {
            return Ok(Snapshot::Consistent);
        }
        Ok(match crate::snapshot::tidb::parse_snapshot(value)? {
            SnapshotSetting::Live => Snapshot::Live,
            SnapshotSetting::Auto => Snapshot::Auto,
            SnapshotSetting::Tso(t) => Snapshot::Tso(t),
            SnapshotSetting::Datetime(d) => Snapshot::Datetime(d),
        })
    }

    /// A TiDB point in time (a TSO or a datetime), set per connection with `tidb_snapshot`.
    pub fn is_tidb_point(&self) -> bool {
        matches!(self, Snapshot::Tso(_) | Snapshot::Datetime(_))
    }
}

/// The configuration's text for the setting (empty for live).
impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Snapshot::Live => Ok(()),
            Snapshot::Consistent => f.write_str("consistent"),
            Snapshot::Auto => f.write_str("auto"),
            Snapshot::Tso(t) => write!(f, "{}", t.0),
            Snapshot::Datetime(d) => f.write_str(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_once_and_render_back() {
        for (text, want) in [
            ("", Snapshot::Live),
            ("Consistent", Snapshot::Consistent),
            (" AUTO ", Snapshot::Auto),
            ("431434047157698561", Snapshot::Tso(Tso(431434047157698561))),
            (
                "2022-02-25 11:57:59",
                Snapshot::Datetime("2022-02-25 11:57:59".into()),
            ),
        ] {
            let got = Snapshot::parse(text).unwrap();
            assert_eq!(got, want, "{text:?}");
            assert_eq!(Snapshot::parse(&got.to_string()).unwrap(), want);
        }
        assert!(Snapshot::parse("yesterday").is_err());
        assert!(Snapshot::Tso(Tso(1)).is_tidb_point());
        assert!(!Snapshot::Auto.is_tidb_point() && !Snapshot::Consistent.is_tidb_point());
    }
}
