//! `syncgate dr status`: what the flow state, backup-storage and the servers say, read
//! without the lock (a status never waits for or blocks a step). One serialisable
//! [`StatusReport`] is printed as text or `--json` (schema in docs/dr.md); each source of
//! facts is one optional section, so a new one is one more field.

use std::collections::BTreeMap;

use serde::Serialize;

use super::archive::ArchiveStatus;
use super::flow::{Flow, FlowState, GateRun, LockOwner};
use super::replicate::{lag_by_domain, ReplicaStatus};
use super::DrContext;
use crate::db::{cell_str, Flavour, Source};
use crate::error::Result;

/// How many gate 2 runs status shows.
pub const HISTORY_SHOWN: usize = 5;

/// Everything `dr status` reports.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// Where the flow state lives (secrets redacted).
    pub location: String,
    #[serde(flatten)]
    pub state: FlowState,
    pub lock: Option<LockOwner>,
    pub backups: Vec<String>,
    pub incomplete_backups: Vec<String>,
    /// The secondary's replication (MariaDB/MySQL); None on TiDB.
    pub replication: Option<ReplicationReport>,
    /// The binlog archive (`dr archive`) in redo-storage (MariaDB); None when
    /// redo-storage is not set, and on TiDB (whose redo log is TiCDC's).
    pub archive: Option<ArchiveReport>,
}

/// The binlog archive as seen now.
#[derive(Debug, Serialize)]
pub struct ArchiveReport {
    /// Where it lives (redo-storage, secrets redacted).
    pub location: String,
    /// Its state; absent when it could not be read (see `error`).
    #[serde(flatten)]
    pub status: Option<ArchiveStatus>,
    /// Why redo-storage could not be read.
    pub error: Option<String>,
}

/// The secondary's replication as seen now.
#[derive(Debug, Serialize)]
pub struct ReplicationReport {
    /// None when the secondary is not a replica.
    pub status: Option<ReplicaStatus>,
    /// Transactions behind, per GTID domain (MariaDB).
    pub lag_transactions: BTreeMap<u32, u64>,
    pub primary_gtid: Option<String>,
    pub secondary_gtid: Option<String>,
    /// Why the servers could not be read (the rest of the status is still shown).
    pub error: Option<String>,
}

/// Gather the status (read-only).
pub async fn gather(ctx: &DrContext) -> Result<StatusReport> {
    let store = ctx.store().await?;
    let (mut state, lock) = Flow::peek(store.as_ref()).await?;
    let (backups, incomplete) = super::manifest::list(store.as_ref()).await?;
    let keep = state.gate_history.len().saturating_sub(HISTORY_SHOWN);
    state.gate_history.drain(..keep);
    let replication = if state.flavour == Flavour::TiDb.as_str() {
        None
    } else {
        Some(
            replication(ctx)
                .await
                .unwrap_or_else(|e| ReplicationReport {
                    status: None,
                    lag_transactions: BTreeMap::new(),
                    primary_gtid: None,
                    secondary_gtid: None,
                    error: Some(e.to_string()),
                }),
        )
    };
    let archive = match &ctx.dr.redo_storage {
        Some(uri) if state.flavour != Flavour::TiDb.as_str() => {
            let primary_gtid = replication.as_ref().and_then(|r| r.primary_gtid.as_deref());
            Some(archive(uri, primary_gtid).await)
        }
        _ => None,
    };
    Ok(StatusReport {
        location: store.location(),
        state,
        lock,
        backups,
        incomplete_backups: incomplete,
        replication,
        archive,
    })
}

/// The archive's index summarised; the primary's `gtid_binlog_pos` (when read) gives the
/// transactions not archived yet.
async fn archive(uri: &str, primary_gtid: Option<&str>) -> ArchiveReport {
    let parsed = crate::storage::StorageUri::parse(uri);
    let location = parsed
        .as_ref()
        .map(|u| u.redacted())
        .unwrap_or_else(|_| "[dr] redo-storage".into());
    let read = async move {
        let store = crate::storage::open(&parsed?).await?;
        super::archive::status(store.as_ref()).await
    };
    match read.await {
        Ok(mut status) => {
            if let Some(p) = primary_gtid {
                status.lag_transactions = lag_by_domain(p, &status.position);
            }
            ArchiveReport {
                location,
                status: Some(status),
                error: None,
            }
        }
        Err(e) => ArchiveReport {
            location,
            status: None,
            error: Some(e.to_string()),
        },
    }
}

async fn replication(ctx: &DrContext) -> Result<ReplicationReport> {
    let secondary = Source::open(ctx.secondary.clone()).await?;
    let mut sc = secondary.connect().await?;
    let status = ReplicaStatus::read(&mut sc, secondary.flavour()).await?;
    let scalar = async |c: &mut crate::db::Conn, sql: &str| -> Result<Option<String>> {
        Ok(c.first(sql).await?.and_then(|r| cell_str(&r, 0)))
    };
    let mariadb = secondary.flavour() == Flavour::MariaDb;
    let secondary_gtid = if mariadb {
        scalar(&mut sc, "SELECT @@gtid_slave_pos").await?
    } else {
        scalar(&mut sc, "SELECT @@gtid_executed").await?
    };
    sc.close().await;
    let primary = Source::open(ctx.primary.clone()).await?;
    let mut pc = primary.connect().await?;
    let primary_gtid = if mariadb {
        scalar(&mut pc, "SELECT @@gtid_binlog_pos").await?
    } else {
        scalar(&mut pc, "SELECT @@gtid_executed").await?
    };
    pc.close().await;
    let lag_transactions = match (&primary_gtid, &secondary_gtid, mariadb) {
        (Some(p), Some(s), true) => lag_by_domain(p, s),
        _ => BTreeMap::new(),
    };
    Ok(ReplicationReport {
        status,
        lag_transactions,
        primary_gtid,
        secondary_gtid,
        error: None,
    })
}

/// The text form.
pub fn render_text(r: &StatusReport) -> String {
    let mut s = format!("flow in {} ({})\n", r.location, r.state.flavour);
    if r.state.steps.is_empty() {
        s.push_str("  no step has run yet\n");
    }
    for (name, st) in &r.state.steps {
        s.push_str(&format!(
            "  {name}: {:?}{}{}{}{}{}{}{}\n",
            st.status,
            st.node
                .as_ref()
                .map(|n| format!(", node {n}"))
                .unwrap_or_default(),
            st.freeze_ms
                .map(|ms| format!(", writes frozen {ms} ms"))
                .unwrap_or_default(),
            st.backup_id
                .as_ref()
                .map(|b| format!(", backup {b}"))
                .unwrap_or_default(),
            st.point
                .as_ref()
                .map(|p| format!(", at {p}"))
                .unwrap_or_default(),
            st.source
                .as_ref()
                .map(|p| format!(", from {p}"))
                .unwrap_or_default(),
            st.gate
                .as_ref()
                .map(|g| format!(", gate {} ({} differing rows)", g.result, g.differing_rows))
                .unwrap_or_default(),
            st.error
                .as_ref()
                .map(|e| format!(", error: {e}"))
                .unwrap_or_default(),
        ));
    }
    if let Some(c) = &r.state.acting_primary {
        s.push_str(&format!(
            "  writes go to '{}' since {} (moved from '{}' by the {})\n",
            c.node, c.since, c.from, c.by
        ));
    }
    if let Some(o) = &r.lock {
        s.push_str(&format!(
            "  locked by `{}` (pid {} on {})\n",
            o.command, o.pid, o.host
        ));
    }
    if let Some(rep) = &r.replication {
        s.push_str(&render_replication(rep));
    }
    if let Some(a) = &r.archive {
        match (&a.status, &a.error) {
            (Some(st), _) => s.push_str(&format!("{}\n", st.render())),
            (None, e) => s.push_str(&format!(
                "archive: cannot read {}: {}\n",
                a.location,
                e.as_deref().unwrap_or("?")
            )),
        }
    }
    if !r.state.gate_history.is_empty() {
        s.push_str("gate 2 (dr verify), last runs:\n");
        for g in &r.state.gate_history {
            s.push_str(&format!("  {}\n", render_gate_run(g)));
        }
    }
    s.push_str(&format!(
        "backups: {} complete{}\n",
        r.backups.len(),
        if r.incomplete_backups.is_empty() {
            String::new()
        } else {
            format!(", {} incomplete", r.incomplete_backups.len())
        }
    ));
    for id in &r.backups {
        s.push_str(&format!("  {id}\n"));
    }
    s
}

fn render_replication(rep: &ReplicationReport) -> String {
    if let Some(e) = &rep.error {
        return format!("replication: cannot read the servers: {e}\n");
    }
    let Some(st) = &rep.status else {
        return "replication: the secondary is not a replica\n".into();
    };
    let mut s = format!(
        "replication from {}: IO thread {}, SQL thread {}, {} s behind",
        st.source,
        st.io_running,
        st.sql_running,
        st.seconds_behind
            .map(|n| n.to_string())
            .unwrap_or_else(|| "?".into())
    );
    for (domain, n) in &rep.lag_transactions {
        s.push_str(&format!(", domain {domain}: {n} transaction(s) behind"));
    }
    s.push('\n');
    if st.last_io_errno != 0 {
        s.push_str(&format!(
            "  IO error {}: {}\n",
            st.last_io_errno, st.last_io_error
        ));
    }
    if st.last_sql_errno != 0 {
        s.push_str(&format!(
            "  SQL error {}: {}\n",
            st.last_sql_errno, st.last_sql_error
        ));
    }
    s
}

/// One line per gate 2 run.
pub fn render_gate_run(g: &GateRun) -> String {
    format!(
        "{} {}{} ({} rows compared, {} differing){}",
        g.time,
        g.result,
        g.fence
            .as_ref()
            .map(|f| format!(" at {f}"))
            .unwrap_or_default(),
        g.compared_rows,
        g.differing_rows,
        g.error
            .as_ref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    )
}
