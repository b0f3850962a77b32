//! Snapshot errors: invalid settings, missing syncpoints, PD failures, and TiDB's two GC
//! errors (8055, 9006) turned into messages that say what to do. Pure.

use super::Tso;
use crate::error::Error;

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
pub(super) const ER_NO_SUCH_TABLE: u16 = 1146;

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

/// `err` with TiDB's GC errors (8055, 9006) inside a connect or query error turned into their
/// explained [`SnapshotError`] (naming the source); other errors unchanged. The check
/// applies it where it reports errors, so `db` stays unaware of TiDB.
pub fn explain(err: Error) -> Error {
    let source = match &err {
        Error::Connect { source_name, .. }
        | Error::Query { source_name, .. }
        | Error::ConnectionLost { source_name, .. } => source_name.clone(),
        _ => return err,
    };
    match err
        .server_error()
        .and_then(|s| classify_tidb_error(s.code, &s.message))
    {
        Some(explained) => Error::Snapshot(explained.with_context(&source, None)),
        None => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ServerError;

    fn query_error(code: u16, message: &str) -> Error {
        Error::Query {
            source_name: "up".into(),
            sql: "SELECT 1".into(),
            message: format!("{message} (server error {code})"),
            server: Some(Box::new(ServerError {
                code,
                state: "HY000".into(),
                message: message.into(),
            })),
        }
    }

    #[test]
    fn explain_turns_gc_codes_into_snapshot_errors_and_leaves_the_rest() {
        let e = explain(query_error(ER_GC_TOO_EARLY, "GC life time is shorter"));
        assert!(
            matches!(&e, Error::Snapshot(SnapshotError::GcTooEarly { source_name: Some(s), .. }) if s == "up"),
            "{e:?}"
        );
        let e = explain(query_error(ER_SNAPSHOT_TOO_OLD, "snapshot is older"));
        assert!(matches!(&e, Error::Snapshot(_)), "{e:?}");
        // Matched by code, not by text.
        let e = explain(query_error(1146, "snapshot is older than GC safe point"));
        assert_eq!(e.server_code(), Some(1146));
        assert!(matches!(
            explain(Error::Internal("x".into())),
            Error::Internal(_)
        ));
    }
}
