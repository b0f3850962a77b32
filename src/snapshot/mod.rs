//! Reading both sides at a fixed point in time.
//!
//! - [`tidb`]: TiDB snapshots. TSO arithmetic, the `snapshot` config value (TSO, datetime or
//!   `"auto"` from TiCDC syncpoints), the session statement that pins a connection
//!   (`tidb_snapshot`), classification of the GC errors a pinned read can hit (8055, 9006),
//!   PD discovery through `information_schema.cluster_info`, and a keeper of a PD service GC
//!   safepoint at the snapshot. Built against TiDB's documented contracts; its tests are
//!   contract tests (no live TiDB).
//! - [`pd`]: the minimal PD gRPC client the keeper uses (`GetMembers`,
//!   `UpdateServiceGCSafePoint`), with hand-written prost messages from `pdpb.proto`.
//! - [`mysql`]: one consistent snapshot shared by every worker connection of a MySQL or
//!   MariaDB source.

pub mod mysql;
pub mod pd;
pub mod tidb;

use crate::snapshot::mysql::PinnedPoint;
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
        Ok(match tidb::parse_snapshot(value)? {
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

/// Where a side was actually read.
#[derive(Debug, Clone)]
pub enum ReadPoint {
    /// Current data, nothing pinned: concurrent writes can show up as differences.
    Live,
    /// Every connection set `tidb_snapshot` to this TSO or datetime.
    Tidb(Snapshot),
    /// One consistent snapshot shared by the workers.
    Consistent(PinnedPoint),
    /// One side of a primary/replica pair fenced at one GTID.
    Fenced {
        point: PinnedPoint,
        gtid: String,
        /// `primary` or `replica`.
        role: &'static str,
    },
    /// Where an earlier, interrupted run read (from its checkpoint), when this run reads
    /// nothing more.
    Saved { text: String, pinned: bool },
}

impl ReadPoint {
    pub fn is_pinned(&self) -> bool {
        match self {
            ReadPoint::Live => false,
            ReadPoint::Saved { pinned, .. } => *pinned,
            _ => true,
        }
    }

    /// The line reports, fix SQL headers and the checkpoint use for this point.
    pub fn describe(&self) -> String {
        match self {
            ReadPoint::Live => crate::report::SNAPSHOT_LIVE.to_string(),
            ReadPoint::Tidb(Snapshot::Tso(t)) => format!("tidb_snapshot {t}"),
            ReadPoint::Tidb(s) => format!("tidb_snapshot '{s}'"),
            ReadPoint::Consistent(p) => p.describe(),
            ReadPoint::Fenced { point, gtid, role } => {
                format!("{} (pair fenced at GTID {gtid}, {role})", point.describe())
            }
            ReadPoint::Saved { text, .. } => text.clone(),
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

    #[test]
    fn read_points_say_whether_they_are_pinned() {
        assert!(!ReadPoint::Live.is_pinned());
        assert_eq!(ReadPoint::Live.describe(), "live, not pinned");
        let tso = ReadPoint::Tidb(Snapshot::Tso(Tso(431434047157698561)));
        assert!(tso.is_pinned());
        assert!(
            tso.describe().starts_with("tidb_snapshot "),
            "{}",
            tso.describe()
        );
    }
}
