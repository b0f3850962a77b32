//! Opening both sides for the data phase at the configured read points: consistent
//! snapshots, the primary/replica GTID fence, TiDB `auto` syncpoints, and the PD service
//! GC safepoints that hold TiDB snapshots (ARCHITECTURE.md, "Snapshots").

use crate::db::{Conn, Flavour, Source};
use crate::error::Result;
use crate::interrupt::Interrupt;
use crate::snapshot::{ReadPoint, Snapshot};

/// The worker connections of one side, and the point they read at.
pub(super) struct SideConns {
    pub conns: Vec<Conn>,
    /// Whether the connections hold a snapshot that a new connection could not rejoin.
    pub pinned: bool,
    pub point: ReadPoint,
}

pub(super) fn wants_consistent(s: &Source) -> bool {
    s.spec().snapshot == Snapshot::Consistent
}

pub(super) fn wants_auto(s: &Source) -> bool {
    s.spec().snapshot == Snapshot::Auto
}

/// TiDB `snapshot = "auto"`: read the newest TiCDC syncpoint on the downstream and pin the
/// upstream at its `primary_ts`, the downstream at its `secondary_ts`.
pub(super) async fn resolve_tidb_auto(
    up: Source,
    down: Source,
    changefeed: Option<&str>,
) -> Result<(Source, Source)> {
    if !(wants_auto(&up) && wants_auto(&down) && down.flavour() == Flavour::TiDb) {
        return Ok((up, down));
    }
    let mut conn = down.connect().await?;
    let point = crate::snapshot::tidb::query_syncpoint(&mut conn, changefeed).await?;
    conn.close().await;
    tracing::info!(
        upstream = %point.upstream,
        downstream = %point.downstream,
        "snapshot auto: using the newest syncpoint"
    );
    Ok((
        up.with_snapshot(Snapshot::Tso(point.upstream)),
        down.with_snapshot(Snapshot::Tso(point.downstream)),
    ))
}

/// PD service GC safepoints held for the TiDB sides read at a snapshot (index 0 upstream,
/// 1 downstream), from before the first read at the snapshot to after the last.
#[derive(Default)]
pub(super) struct GcGuards {
    keepers: [Option<crate::snapshot::tidb::GcKeeper>; 2],
}

impl GcGuards {
    /// Remove the service safepoints; returns, per side, the report's note on its GC
    /// protection. Problems during the run or at removal become report warnings.
    pub async fn stop(&mut self, warnings: &mut Vec<String>) -> [Option<String>; 2] {
        let mut notes = [None, None];
        for (slot, note) in self.keepers.iter_mut().zip(notes.iter_mut()) {
            let Some(keeper) = slot.take() else { continue };
            *note = Some(keeper.describe());
            warnings.extend(keeper.warnings());
            if let Err(e) = keeper.stop().await {
                tracing::warn!("{e}");
                warnings.push(e.to_string());
            }
        }
        notes
    }
}

/// For each TiDB side read at a TSO or datetime, find PD through the side's
/// `information_schema.cluster_info` and hold a PD service GC safepoint at its TSO
/// (sync-diff-inspector.md §2.1 "GC keeper"). No PD found, or none reachable: a report
/// warning, the run goes on (it then relies on `tidb_gc_life_time`). A snapshot GC has
/// already passed ends the run with a clear error.
pub(super) async fn start_gc_keepers(
    up: &Source,
    down: &Source,
    warnings: &mut Vec<String>,
) -> Result<GcGuards> {
    let mut guards = GcGuards::default();
    let base = crate::snapshot::tidb::default_service_id();
    for (i, (s, role)) in [(up, "upstream"), (down, "downstream")]
        .into_iter()
        .enumerate()
    {
        if !s.pins_tidb_snapshot() {
            continue;
        }
        let service_id = format!("{base}_{role}");
        match protect_snapshot(s, &service_id, warnings).await {
            Ok(keeper) => guards.keepers[i] = keeper,
            Err(e) => {
                guards.stop(&mut Vec::new()).await;
                return Err(e);
            }
        }
    }
    Ok(guards)
}

/// [`start_gc_keepers`] for one side.
async fn protect_snapshot(
    s: &Source,
    service_id: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<crate::snapshot::tidb::GcKeeper>> {
    use crate::snapshot::tidb::{self as tidb, SnapshotError};
    let unprotected = |why: String| {
        format!(
            "{}: {why}: the snapshot is not protected from GC; make sure tidb_gc_life_time \
             covers the check",
            s.name()
        )
    };
    // Connecting sets tidb_snapshot: a snapshot below the GC safe point fails here with
    // TiDB's error 8055, explained (source.rs).
    let mut conn = s.connect().await?;
    conn.exec(tidb::clear_snapshot_sql()).await?;
    let tso = match &s.spec().snapshot {
        Snapshot::Tso(t) => *t,
        Snapshot::Datetime(d) => tidb::resolve_datetime(&mut conn, d).await?,
        Snapshot::Live | Snapshot::Auto | Snapshot::Consistent => return Ok(None),
    };
    let found = tidb::discover_pd(&mut conn).await;
    conn.close().await;
    let addrs = match found {
        Ok(addrs) if addrs.is_empty() => {
            warnings.push(unprotected(format!(
                "no PD address found ({} returned none)",
                tidb::pd_discovery_sql()
            )));
            return Ok(None);
        }
        Ok(addrs) => addrs,
        Err(e) => {
            warnings.push(unprotected(format!("no PD address found ({e})")));
            return Ok(None);
        }
    };
    match tidb::GcKeeper::start(&addrs.join(","), service_id, tso, tidb::DEFAULT_GC_TTL_SECS).await
    {
        Ok(keeper) => Ok(Some(keeper)),
        Err(e @ SnapshotError::AlreadyCollected { .. }) => Err(e.into()),
        Err(e) => {
            warnings.push(unprotected(e.to_string()));
            Ok(None)
        }
    }
}

/// Worker connections for both sides: `n` downstream, `up_n` (a multiple of `n`: shard
/// merge reads several tables of the upstream at once) upstream. `auto` on two
/// MySQL/MariaDB sources fences the primary/replica pair at one GTID; otherwise each side
/// is opened on its own.
///
/// An interrupt stops the opening; a replica stopped by the fence is restarted first.
pub(super) async fn open_sides(
    up: &Source,
    down: &Source,
    (n, up_n): (usize, usize),
    interrupt: &Interrupt,
) -> Result<(SideConns, SideConns)> {
    if wants_auto(up) && wants_auto(down) && up.flavour() != Flavour::TiDb {
        if up_n != n {
            return Err(crate::error::Error::Config(
                "snapshot \"auto\" fences one primary/replica pair: it cannot read a target \
                 merged from several tables of the upstream; use \"consistent\" on both sides"
                    .into(),
            ));
        }
        let pair = crate::snapshot::mysql::pin_replica_pair(
            up,
            down,
            n,
            crate::snapshot::mysql::LOCK_WAIT_TIMEOUT_SECS,
            crate::snapshot::mysql::REPLICA_WAIT_SECS,
            interrupt,
        )
        .await?;
        let side = |conns, point: &crate::snapshot::mysql::PinnedPoint, role| SideConns {
            conns,
            pinned: true,
            point: ReadPoint::Fenced {
                point: point.clone(),
                gtid: pair.gtid.clone(),
                role,
            },
        };
        return Ok((
            side(pair.primary, &pair.primary_point, "primary"),
            side(pair.replica, &pair.replica_point, "replica"),
        ));
    }
    let both = async { tokio::try_join!(open_side(up, up_n), open_side(down, n)) };
    // Dropping half-opened sides closes their connections, which releases commit locks.
    interrupt.interruptible(both).await?
}

/// Open `n` worker connections to a side: pinned to one consistent snapshot when the source
/// asks for it, else plain (TiDB snapshots are set per connection and survive reconnects).
pub(super) async fn open_side(s: &Source, n: usize) -> Result<SideConns> {
    if wants_consistent(s) {
        let (conns, point) = crate::snapshot::mysql::pin_consistent(
            s,
            n,
            crate::snapshot::mysql::LOCK_WAIT_TIMEOUT_SECS,
        )
        .await?;
        return Ok(SideConns {
            conns,
            pinned: true,
            point: ReadPoint::Consistent(point),
        });
    }
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(s.connect().await?);
    }
    Ok(SideConns {
        conns,
        pinned: false,
        point: snapshot_point(s),
    })
}

/// The point a side is read at when nothing is pinned by the data phase itself.
pub(super) fn snapshot_point(s: &Source) -> ReadPoint {
    if s.pins_tidb_snapshot() {
        ReadPoint::Tidb(s.spec().snapshot.clone())
    } else {
        ReadPoint::Live
    }
}

/// Whether the configuration reads this side at a pinned point.
pub(super) fn configured_pinned(s: &Source) -> bool {
    s.pins_tidb_snapshot() || wants_consistent(s) || wants_auto(s)
}
