//! Where a side was actually read, as the report, fix SQL headers and checkpoint state it.

use crate::snapshot::mysql::PinnedPoint;
use crate::snapshot::Snapshot;

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
    use crate::snapshot::tidb::Tso;

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
