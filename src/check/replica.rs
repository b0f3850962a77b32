//! Is the downstream a replica? Fix SQL applied there is a local transaction: with GTIDs,
//! an errant GTID on MySQL (a later failover to it breaks) or a local GTID in another
//! server's domain on MariaDB. The run says so, and `[task] fix-sql-binlog` chooses.

use super::CheckJob;
use crate::config::FixSqlBinlog;
use crate::db::{Flavour, Source};
use crate::error::{Error, Result};

/// What the downstream replicates from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Replica {
    /// Name of the downstream data source.
    pub name: String,
    /// `host:port` of the server it replicates from (first channel/connection).
    pub source: String,
}

/// The downstream's replication, if it is a replica (a non-empty replica status). A server
/// that does not let the user read it (no privilege) is taken as not a replica, with a log
/// line.
pub(super) async fn detect(down: &Source) -> Result<Option<Replica>> {
    let queries: &[&str] = match down.flavour() {
        Flavour::TiDb => return Ok(None),
        Flavour::MariaDb => &["SHOW ALL SLAVES STATUS"],
        Flavour::MySql => &["SHOW REPLICA STATUS", "SHOW SLAVE STATUS"],
    };
    let mut conn = down.connect().await?;
    let mut found = None;
    for q in queries {
        match conn.first_named(q).await {
            Ok(row) => {
                found = row.map(|r| {
                    let get = |names: &[&str]| {
                        names
                            .iter()
                            .find_map(|n| r.get(*n).cloned().flatten())
                            .unwrap_or_else(|| "?".into())
                    };
                    Replica {
                        name: down.name().to_string(),
                        source: format!(
                            "{}:{}",
                            get(&["Master_Host", "Source_Host"]),
                            get(&["Master_Port", "Source_Port"])
                        ),
                    }
                });
                break;
            }
            Err(e) => {
                tracing::debug!("{q}: {e}");
                if *q == queries[queries.len() - 1] {
                    tracing::warn!(
                        "cannot tell whether downstream '{}' is a replica ({e}); if it is, \
                         apply fix SQL on its primary",
                        down.name()
                    );
                }
            }
        }
    }
    conn.close().await;
    Ok(found)
}

/// The report's (and each fix file's) warning about a replica downstream.
pub(super) fn warning(r: &Replica, choice: Option<FixSqlBinlog>) -> String {
    let head = format!(
        "downstream '{}' is a replica of {}: fix/undo SQL applied on it are local \
         transactions (errant GTIDs on MySQL that break a later failover; on MariaDB a local \
         GTID in another server's domain)",
        r.name, r.source
    );
    match choice {
        None => format!(
            "{head}; apply them on the primary so they replicate, or set [task] \
             fix-sql-binlog = \"skip\" (unlogged) or \"keep\" (logged) to choose"
        ),
        Some(FixSqlBinlog::Keep) => format!(
            "{head}; fix-sql-binlog = \"keep\": applying them here writes the replica's binary \
             log; applying them on the primary instead lets them replicate"
        ),
        Some(FixSqlBinlog::Skip) => format!(
            "{head}; fix-sql-binlog = \"skip\": the files and --apply-fix run with \
             sql_log_bin = 0, so the replica's binary log and GTID position are untouched"
        ),
    }
}

/// `--apply-fix` on a replica needs an explicit `fix-sql-binlog`.
pub(super) fn refuse_apply(job: &CheckJob, r: &Replica) -> Result<()> {
    if job.apply_fix && job.fix_sql_binlog.is_none() {
        return Err(Error::Config(format!(
            "--apply-fix refused: downstream '{}' is a replica of {} and the fix would be \
             written to its binary log as local (errant) GTIDs; set [task] fix-sql-binlog = \
             \"skip\" to apply it unlogged or \"keep\" to apply it logged",
            r.name, r.source
        )));
    }
    Ok(())
}
