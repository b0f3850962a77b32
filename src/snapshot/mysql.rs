//! One consistent snapshot shared by every worker connection of a MySQL or MariaDB source.
//!
//! Each worker reads inside its own `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY`.
//! To make all of them see the *same* point, the snapshots are opened while commits are
//! briefly blocked on the server:
//!
//! - MariaDB: `BACKUP STAGE START; BACKUP STAGE BLOCK_COMMIT` (blocks commits only; readers
//!   and uncommitted writers go on), released with `BACKUP STAGE END`;
//! - MySQL: `FLUSH TABLES WITH READ LOCK`, released with `UNLOCK TABLES`.
//!
//! The lock is taken with a short `lock_wait_timeout` (a clear error rather than a stalled
//! server when it cannot be had) and held only while the workers open their transactions and
//! the position is read: milliseconds, measured and reported.
//!
//! Verification: on MariaDB every worker reads `Binlog_snapshot_file/position` — the binlog
//! position its own snapshot corresponds to — and all must be equal, or the pin fails. On
//! MySQL (no such status) the workers read `SHOW MASTER STATUS` while the lock is still held;
//! that proves no commit happened while they opened their snapshots.

use crate::db::{cell_str, cell_u64, Conn, Flavour, Source};
use crate::error::{Error, Result};
use crate::interrupt::Interrupt;
use std::time::{Duration, Instant};

/// How long taking the commit lock may wait before the pin fails.
pub const LOCK_WAIT_TIMEOUT_SECS: u32 = 10;

/// Where a pinned snapshot stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedPoint {
    /// `@@gtid_binlog_pos` (MariaDB) or `@@gtid_executed` (MySQL) at the snapshot.
    pub gtid: Option<String>,
    /// Binlog file and position at the snapshot (when the binlog is on).
    pub binlog: Option<(String, u64)>,
    /// How long commits were blocked.
    pub lock_held: Duration,
    /// Number of connections sharing the snapshot.
    pub connections: usize,
}

impl PinnedPoint {
    /// The line reports use for this point.
    pub fn describe(&self) -> String {
        let mut s = "consistent snapshot".to_string();
        match (&self.gtid, &self.binlog) {
            (Some(g), Some((f, p))) if !g.is_empty() => {
                s.push_str(&format!(" at GTID {g} ({f}:{p})"))
            }
            (_, Some((f, p))) => s.push_str(&format!(" at {f}:{p}")),
            (Some(g), None) if !g.is_empty() => s.push_str(&format!(" at GTID {g}")),
            _ => s.push_str(" (binlog off: no position)"),
        }
        s.push_str(&format!(
            ", {} connections, commits blocked {:.1} ms",
            self.connections,
            self.lock_held.as_secs_f64() * 1000.0
        ));
        s
    }
}

fn snapshot_error(source: &Source, message: String) -> Error {
    Error::Connect {
        source_name: source.name().to_string(),
        addr: source.spec().address(),
        message,
        server: None,
    }
}

/// Open `n` connections to `source` that all read one consistent snapshot; taking the commit
/// lock may wait `lock_wait_secs` at most.
pub async fn pin_consistent(
    source: &Source,
    n: usize,
    lock_wait_secs: u32,
) -> Result<(Vec<Conn>, PinnedPoint)> {
    if source.flavour() == Flavour::TiDb {
        return Err(snapshot_error(
            source,
            "snapshot = \"consistent\" is for MySQL/MariaDB; give TiDB a TSO, a datetime or \"auto\""
                .into(),
        ));
    }
    let mut control = source.connect().await?;
    let mut workers = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = source.connect().await?;
        c.exec("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await?;
        workers.push(c);
    }
    control
        .exec(&format!("SET SESSION lock_wait_timeout = {lock_wait_secs}"))
        .await?;
    let mariadb = source.flavour() == Flavour::MariaDb;
    let (lock, unlock): (&[&str], &str) = if mariadb {
        (
            &["BACKUP STAGE START", "BACKUP STAGE BLOCK_COMMIT"],
            "BACKUP STAGE END",
        )
    } else {
        (&["FLUSH TABLES WITH READ LOCK"], "UNLOCK TABLES")
    };

    let started = Instant::now();
    for stmt in lock {
        if let Err(e) = control.exec(stmt).await {
            let _ = control.exec(unlock).await;
            return Err(snapshot_error(
                source,
                format!(
                    "cannot block commits to pin a consistent snapshot ({stmt}): {e}; \
                     the user needs the RELOAD privilege, and no other backup may hold the lock \
                     (waited up to {lock_wait_secs}s)"
                ),
            ));
        }
    }
    let pinned = open_snapshots(&mut control, &mut workers, mariadb).await;
    let released = control.exec(unlock).await;
    let lock_held = started.elapsed();
    let (gtid, binlog, under_lock_positions) = pinned?;
    released?;
    control.close().await;

    // Every worker must report the same snapshot position.
    let positions = if mariadb {
        let mut v = Vec::with_capacity(workers.len());
        for w in &mut workers {
            let rows = w.rows("SHOW STATUS LIKE 'Binlog_snapshot_%'").await?;
            let get = |name: &str| {
                rows.iter()
                    .find(|r| cell_str(r, 0).as_deref() == Some(name))
                    .and_then(|r| cell_str(r, 1))
                    .unwrap_or_default()
            };
            v.push((get("Binlog_snapshot_file"), get("Binlog_snapshot_position")));
        }
        v
    } else {
        under_lock_positions
    };
    if positions.windows(2).any(|w| w[0] != w[1]) {
        return Err(snapshot_error(
            source,
            format!("worker snapshots do not share one point: {positions:?}"),
        ));
    }
    let point = PinnedPoint {
        gtid,
        binlog,
        lock_held,
        connections: workers.len(),
    };
    tracing::info!(source = source.name(), point = %point.describe(), "snapshot pinned");
    Ok((workers, point))
}

/// `ER_SPECIFIC_ACCESS_DENIED_ERROR`: "you need (at least one of) the … privilege(s)".
const ER_SPECIFIC_ACCESS_DENIED: u16 = 1227;

type Opened = (Option<String>, Option<(String, u64)>, Vec<(String, String)>);

/// With commits blocked: open every worker's snapshot and read the position.
async fn open_snapshots(control: &mut Conn, workers: &mut [Conn], mariadb: bool) -> Result<Opened> {
    // All at once: the lock is held for one round trip, not one per worker.
    futures_util::future::try_join_all(
        workers
            .iter_mut()
            .map(|w| w.exec("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")),
    )
    .await?;
    let gtid_sql = if mariadb {
        "SELECT @@GLOBAL.gtid_binlog_pos"
    } else {
        "SELECT @@GLOBAL.gtid_executed"
    };
    let gtid = control
        .first(gtid_sql)
        .await?
        .and_then(|r| cell_str(&r, 0))
        .map(|g| g.replace('\n', ""));
    // The file and offset only describe the point: on MariaDB the GTID position identifies
    // it, so a user without BINLOG MONITOR (error 1227) still gets a consistent snapshot.
    let status = match control.first("SHOW MASTER STATUS").await {
        Err(e) if mariadb && e.server_code() == Some(ER_SPECIFIC_ACCESS_DENIED) => {
            tracing::debug!("binlog file and offset not read: {e}");
            None
        }
        other => other?,
    };
    let binlog = status
        .as_ref()
        .and_then(|r| Some((cell_str(r, 0)?, cell_u64(r, 1)?)));
    let mut under_lock = Vec::new();
    if !mariadb {
        let rows = futures_util::future::try_join_all(
            workers.iter_mut().map(|w| w.first("SHOW MASTER STATUS")),
        )
        .await?;
        for r in rows {
            under_lock.push((
                r.as_ref().and_then(|r| cell_str(r, 0)).unwrap_or_default(),
                r.as_ref().and_then(|r| cell_str(r, 1)).unwrap_or_default(),
            ));
        }
    }
    Ok((gtid, binlog, under_lock))
}

/// How long the replica may take to reach the primary's pinned GTID position.
pub const REPLICA_WAIT_SECS: u32 = 300;

/// A primary and its replica read at one GTID position.
pub struct FencedPair {
    pub primary: Vec<Conn>,
    pub primary_point: PinnedPoint,
    pub replica: Vec<Conn>,
    pub replica_point: PinnedPoint,
    /// The GTID position both sides were read at.
    pub gtid: String,
}

fn fence_error(replica: &Source, message: String) -> Error {
    snapshot_error(replica, message)
}

/// Check that `replica` replicates from `primary`: its replication status names the
/// primary's server id.
async fn verify_replica(primary: &Source, replica: &Source, rc: &mut Conn) -> Result<()> {
    let mariadb = replica.flavour() == Flavour::MariaDb;
    let status_sql = if mariadb {
        "SHOW SLAVE STATUS"
    } else {
        "SHOW REPLICA STATUS"
    };
    let Some(status) = rc.first_named(status_sql).await? else {
        return Err(fence_error(
            replica,
            format!(
                "snapshot = \"auto\" on MySQL/MariaDB fences a primary/replica pair, but '{}' is \
                 not a replica ({status_sql} is empty)",
                replica.name()
            ),
        ));
    };
    let get = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| status.get(*n).cloned().flatten())
            .unwrap_or_default()
    };
    let master_id = get(&["Master_Server_Id", "Source_Server_Id"]);
    let mut pc = primary.connect().await?;
    let primary_id = pc
        .first("SELECT @@server_id")
        .await?
        .and_then(|r| cell_str(&r, 0))
        .unwrap_or_default();
    pc.close().await;
    if master_id != primary_id {
        return Err(fence_error(
            replica,
            format!(
                "'{}' replicates from server id {master_id} ({}:{}), not from '{}' (server id \
                 {primary_id}); snapshot = \"auto\" needs the target to be a replica of the source",
                replica.name(),
                get(&["Master_Host", "Source_Host"]),
                get(&["Master_Port", "Source_Port"]),
                primary.name()
            ),
        ));
    }
    if mariadb && get(&["Using_Gtid"]).eq_ignore_ascii_case("no") {
        return Err(fence_error(
            replica,
            format!(
                "'{}' replicates without GTIDs (Using_Gtid = No); set MASTER_USE_GTID = slave_pos \
                 so it can be stopped at the primary's GTID position",
                replica.name()
            ),
        ));
    }
    Ok(())
}

/// Pin `primary` and its replica at one GTID position: stop the replica, pin the primary's
/// snapshot at GTID G, let the replica apply exactly up to G, pin its snapshot there, and
/// restart its replication. The replica is only held while it catches up to G; replication
/// is restarted on every path, errors and interrupts included.
pub async fn pin_replica_pair(
    primary: &Source,
    replica: &Source,
    n: usize,
    lock_wait_secs: u32,
    wait_secs: u32,
    interrupt: &Interrupt,
) -> Result<FencedPair> {
    let mut rc = replica.connect().await?;
    verify_replica(primary, replica, &mut rc).await?;
    let mariadb = replica.flavour() == Flavour::MariaDb;
    let (stop, start) = if mariadb {
        ("STOP SLAVE", "START SLAVE")
    } else {
        ("STOP REPLICA", "START REPLICA")
    };
    rc.exec(stop).await?;
    let rc_id = rc.inner().id();
    let fence = fence_stopped(primary, replica, &mut rc, n, lock_wait_secs, wait_secs);
    // An interrupt drops the fence half-way (its connections close, releasing the
    // primary's commit lock); the replica is restarted below all the same.
    let fenced = interrupt
        .interruptible(fence)
        .await
        .map_err(Error::from)
        .and_then(|r| r);
    // Replication resumes whatever happened; the replica snapshots are already open. A
    // fence that failed or was dropped may have left `START SLAVE UNTIL` in force, so the
    // threads are stopped and started plainly. A dropped fence may also have left a
    // statement (the GTID wait) running on `rc`: then a new connection ends it and restarts.
    let restarted = if matches!(fenced, Err(Error::Interrupted { .. })) {
        drop(rc);
        restart_after_interrupt(replica, rc_id, (stop, start)).await
    } else {
        let r = restart(&mut rc, (stop, start)).await;
        rc.close().await;
        r
    };
    let pair = fenced?;
    restarted?;
    Ok(pair)
}

/// Stop and start the replica's threads: no `UNTIL` condition survives.
async fn restart(rc: &mut Conn, (stop, start): (&str, &str)) -> Result<()> {
    rc.exec(stop).await?;
    rc.exec(start).await
}

/// After an interrupted fence: end the statement the fence left running on connection
/// `rc_id` (its wait would otherwise hold a server thread for minutes) and restart
/// replication on a new connection.
async fn restart_after_interrupt(
    replica: &Source,
    rc_id: u32,
    statements: (&str, &str),
) -> Result<()> {
    let mut c = replica.connect().await?;
    if let Err(e) = c.exec(&format!("KILL QUERY {rc_id}")).await {
        tracing::debug!("ending the fence's wait on the replica: {e}");
    }
    let r = restart(&mut c, statements).await;
    c.close().await;
    if r.is_ok() {
        tracing::info!(
            "{}: replication restarted after the interrupt",
            replica.name()
        );
    }
    r
}

async fn fence_stopped(
    primary: &Source,
    replica: &Source,
    rc: &mut Conn,
    n: usize,
    lock_wait_secs: u32,
    wait_secs: u32,
) -> Result<FencedPair> {
    let mariadb = replica.flavour() == Flavour::MariaDb;
    let (primary_conns, primary_point) = pin_consistent(primary, n, lock_wait_secs).await?;
    let gtid = primary_point.gtid.clone().unwrap_or_default();
    if gtid.is_empty() {
        return Err(fence_error(
            primary,
            "the primary has no GTID position (binlog off?); a replica cannot be fenced".into(),
        ));
    }
    let gtid_lit = crate::sql::quote_str(&gtid);
    let (until, wait) = if mariadb {
        (
            format!("START SLAVE UNTIL master_gtid_pos = {gtid_lit}"),
            format!("SELECT MASTER_GTID_WAIT({gtid_lit}, {wait_secs})"),
        )
    } else {
        (
            format!("START REPLICA SQL_THREAD UNTIL SQL_AFTER_GTIDS = {gtid_lit}"),
            format!("SELECT WAIT_FOR_EXECUTED_GTID_SET({gtid_lit}, {wait_secs})"),
        )
    };
    rc.exec(&until).await?;
    let waited = rc.first(&wait).await?.and_then(|r| cell_str(&r, 0));
    if waited.as_deref() != Some("0") {
        return Err(fence_error(
            replica,
            format!(
                "'{}' did not reach the primary's GTID position {gtid} within {wait_secs}s \
                 (replication lag or a stopped replication thread)",
                replica.name()
            ),
        ));
    }
    // The SQL thread stops at G by itself; pin the replica's snapshot there.
    let (replica_conns, mut replica_point) = pin_consistent(replica, n, lock_wait_secs).await?;
    let applied_sql = if mariadb {
        "SELECT @@GLOBAL.gtid_slave_pos"
    } else {
        "SELECT @@GLOBAL.gtid_executed"
    };
    let applied = rc
        .first(applied_sql)
        .await?
        .and_then(|r| cell_str(&r, 0))
        .map(|g| g.replace('\n', ""))
        .unwrap_or_default();
    if mariadb && !same_gtid_set(&applied, &gtid) {
        return Err(fence_error(
            replica,
            format!(
                "'{}' stopped at GTID {applied}, not at the primary's {gtid}; the pair cannot be \
                 compared at one point",
                replica.name()
            ),
        ));
    }
    replica_point.gtid = Some(applied);
    Ok(FencedPair {
        primary: primary_conns,
        primary_point,
        replica: replica_conns,
        replica_point,
        gtid,
    })
}

/// Compare two MariaDB GTID lists (`domain-server-seq,…`) regardless of order.
fn same_gtid_set(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let mut v: Vec<String> = s
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect();
        v.sort();
        v
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_lists_compare_as_sets() {
        assert!(same_gtid_set("0-1-5,1-2-3", "1-2-3, 0-1-5"));
        assert!(!same_gtid_set("0-1-5", "0-1-6"));
        assert!(!same_gtid_set("0-1-5", ""));
    }

    #[test]
    fn point_description_names_gtid_and_binlog() {
        let p = PinnedPoint {
            gtid: Some("0-1-13".into()),
            binlog: Some(("binlog.000001".into(), 42)),
            lock_held: Duration::from_micros(3500),
            connections: 4,
        };
        assert_eq!(
            p.describe(),
            "consistent snapshot at GTID 0-1-13 (binlog.000001:42), 4 connections, commits blocked 3.5 ms"
        );
    }
}
