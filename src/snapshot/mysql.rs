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

use crate::error::{Error, Result};
use crate::source::{cell_str, cell_u64, Conn, Flavour, Source};
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
    let status = control.first("SHOW MASTER STATUS").await?;
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
