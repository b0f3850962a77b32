//! The GC keeper: a PD service GC safepoint held at the snapshot, refreshed by a tokio task
//! and removed at stop (see the module docs of [`crate::snapshot::tidb`]).

use super::{SnapshotError, Tso};
use crate::snapshot::pd::{PdLeader, SafePointAnswer};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// Default TTL of the service safepoint, as sync-diff-inspector's `Sync_diff_<ns>`
/// (dr-interfaces A5, sync-diff-inspector.md §2.1): 300 s, refreshed every 150 s.
pub const DEFAULT_GC_TTL_SECS: u64 = 300;

/// A service ID for this run: `syncgate_<unix ms>` (after sync-diff-inspector's
/// `Sync_diff_<timestamp>`).
pub fn default_service_id() -> String {
    format!("syncgate_{}", unix_ms_now())
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What the keeper has seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcStatus {
    /// Successful registrations (the one at start included).
    pub refreshes: u64,
    /// The minimum service safepoint PD reported with the last successful registration.
    pub min_safe_point: Tso,
    /// Failed refreshes (PD unreachable, errors in the answer).
    pub failures: u64,
    /// The error of the last refresh, while refreshes fail (`None` after a success).
    pub last_error: Option<String>,
    /// At some point no refresh had succeeded for a whole TTL: PD may have dropped the
    /// service safepoint, and GC may have passed the snapshot meanwhile.
    pub lapsed: bool,
    /// PD reported a minimum safepoint above the snapshot during the run: GC has passed it
    /// (reads fail with TiDB error 9006).
    pub passed_by: Option<Tso>,
}

/// Holds a PD *service GC safepoint* at a snapshot for as long as it runs, so TiKV's GC
/// keeps the snapshot's versions (sync-diff-inspector.md §2.1 "GC keeper", §8.3):
///
/// - [`GcKeeper::start`] finds the PD leader (`GetMembers`) and registers
///   `UpdateServiceGCSafePoint(service_id, TTL, safe_point = snapshot)`; PD answering a
///   minimum safepoint above the snapshot means GC has already passed it: start fails with
///   [`SnapshotError::AlreadyCollected`];
/// - a tokio task registers it again every `TTL / 2` (on failure it warns, retries every
///   `TTL / 8`, and finds the leader again — PD leaders change);
/// - [`GcKeeper::stop`] removes it (`TTL = 0`, PD's documented removal: see
///   [`super::pd`]). Dropping the keeper without `stop` asks the task to remove it in the
///   background; if the process ends first, PD drops it when its TTL expires.
///
/// The safe point is the snapshot TSO itself (sync-diff-inspector uses min(snapshot, current
/// TSO), which is the snapshot for any snapshot in the past).
///
/// [`super::pd`]: crate::snapshot::pd
pub struct GcKeeper {
    service_id: String,
    addr: String,
    cluster_id: u64,
    snapshot: Tso,
    ttl_secs: u64,
    status: watch::Receiver<GcStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::result::Result<(), String>>>,
}

impl std::fmt::Debug for GcKeeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcKeeper")
            .field("service_id", &self.service_id)
            .field("addr", &self.addr)
            .field("cluster_id", &self.cluster_id)
            .field("snapshot", &self.snapshot)
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

impl GcKeeper {
    /// Register `service_id` at `safepoint` on PD and keep it registered (see the type's
    /// docs). `pd_addr` is `host:port` or `http://host:port`, or several separated by commas:
    /// the first that answers `GetMembers` names the leader. `ttl_secs` ≥ 1.
    ///
    /// Errors: [`SnapshotError::Pd`] when the addresses are unusable or no PD answers (or
    /// answers with an error), [`SnapshotError::AlreadyCollected`] when PD's minimum
    /// safepoint is above `safepoint`.
    pub async fn start(
        pd_addr: &str,
        service_id: &str,
        safepoint: Tso,
        ttl_secs: u64,
    ) -> std::result::Result<GcKeeper, SnapshotError> {
        let pd_error = |addr: &str, message: String| SnapshotError::Pd {
            addr: addr.to_string(),
            message,
        };
        if ttl_secs == 0 || ttl_secs > i64::MAX as u64 {
            return Err(pd_error(
                pd_addr.trim(),
                "the service safepoint TTL must be at least 1 s".into(),
            ));
        }
        if service_id.is_empty() {
            return Err(pd_error(pd_addr.trim(), "the service ID is empty".into()));
        }
        let addrs = crate::snapshot::pd::parse_pd_addrs(pd_addr)
            .map_err(|e| pd_error(pd_addr.trim(), e))?;
        let cannot_register = |e: String| {
            pd_error(
                &addrs.join(","),
                format!("cannot register service GC safepoint {service_id} at {safepoint}: {e}"),
            )
        };
        let mut leader = PdLeader::connect(&addrs).await.map_err(cannot_register)?;
        let answer = leader
            .update_service_gc_safe_point(service_id, ttl_secs as i64, safepoint.0)
            .await
            .map_err(cannot_register)?;
        if answer.min_safe_point > safepoint.0 {
            return Err(SnapshotError::AlreadyCollected {
                addr: leader.addr.clone(),
                snapshot: safepoint,
                gc_safe_point: Tso(answer.min_safe_point),
            });
        }
        tracing::info!(
            "{service_id}: service GC safepoint registered at {safepoint} on PD {} (cluster {}, \
             TTL {ttl_secs} s; minimum safepoint {} held by {})",
            leader.addr,
            leader.cluster_id,
            answer.min_safe_point,
            answer.min_service_id
        );
        let (status_tx, status_rx) = watch::channel(GcStatus {
            refreshes: 1,
            min_safe_point: Tso(answer.min_safe_point),
            failures: 0,
            last_error: None,
            lapsed: false,
            passed_by: None,
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let keeper = KeepLoop {
            addrs,
            leader: Some(leader.clone()),
            cluster_id: leader.cluster_id,
            service_id: service_id.to_string(),
            snapshot: safepoint,
            ttl_secs,
        };
        let task = tokio::spawn(keeper.run(status_tx, stop_rx));
        Ok(GcKeeper {
            service_id: service_id.to_string(),
            addr: leader.addr,
            cluster_id: leader.cluster_id,
            snapshot: safepoint,
            ttl_secs,
            status: status_rx,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// The service ID registered on PD.
    pub fn service_id(&self) -> &str {
        &self.service_id
    }

    /// The PD leader that accepted the registration at start.
    pub fn pd_addr(&self) -> &str {
        &self.addr
    }

    /// The PD cluster ID.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The snapshot being held.
    pub fn snapshot(&self) -> Tso {
        self.snapshot
    }

    /// The TTL of the service safepoint.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// The latest status.
    pub fn status(&self) -> GcStatus {
        self.status.borrow().clone()
    }

    /// One line for reports: `protected from GC by PD service safepoint <id> (PD <addr>,
    /// TTL <n> s)`.
    pub fn describe(&self) -> String {
        format!(
            "protected from GC by PD service safepoint {} (PD {}, TTL {} s)",
            self.service_id, self.addr, self.ttl_secs
        )
    }

    /// Report warnings from the run so far: failed refreshes, a possible lapse, GC passing
    /// the snapshot. Empty when every refresh succeeded.
    pub fn warnings(&self) -> Vec<String> {
        let s = self.status();
        let mut out = Vec::new();
        if let Some(gc) = s.passed_by {
            out.push(format!(
                "PD service safepoint {}: PD reported the minimum safepoint {gc} above the \
                 snapshot {} during the check: GC may have collected data the check read",
                self.service_id, self.snapshot
            ));
        }
        if s.failures > 0 {
            let last = s
                .last_error
                .as_deref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default();
            out.push(if s.lapsed {
                format!(
                    "PD service safepoint {}: {} refreshes failed and none succeeded for \
                     longer than its TTL ({} s): GC protection may have lapsed{last}",
                    self.service_id, s.failures, self.ttl_secs
                )
            } else {
                format!(
                    "PD service safepoint {}: {} refreshes failed, but it was renewed within \
                     its TTL ({} s){last}",
                    self.service_id, s.failures, self.ttl_secs
                )
            });
        }
        out
    }

    /// Stop refreshing and remove the service safepoint from PD (`TTL = 0`). An error means
    /// it could not be removed; PD then drops it when its TTL expires.
    pub async fn stop(mut self) -> std::result::Result<(), SnapshotError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        let outcome = match task.await {
            Ok(r) => r,
            Err(e) => Err(format!("the GC keeper task failed: {e}")),
        };
        outcome.map_err(|e| SnapshotError::Pd {
            addr: self.addr.clone(),
            message: format!(
                "cannot remove service GC safepoint {} ({e}); PD drops it when its TTL of \
                 {} s expires",
                self.service_id, self.ttl_secs
            ),
        })
    }
}

impl Drop for GcKeeper {
    fn drop(&mut self) {
        // Ends the refresh loop, which then removes the service safepoint in the background
        // (as long as the runtime lives).
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// How long removing the service safepoint at stop may take (finding the leader again
/// included).
const REMOVAL_TIMEOUT: Duration = Duration::from_secs(20);

/// The refresh task's state.
struct KeepLoop {
    addrs: Vec<String>,
    leader: Option<PdLeader>,
    cluster_id: u64,
    service_id: String,
    snapshot: Tso,
    ttl_secs: u64,
}

impl KeepLoop {
    /// Refresh every `ttl / 2` (after a failure every `ttl / 8`) until stopped, then remove
    /// the service safepoint.
    async fn run(
        mut self,
        status: watch::Sender<GcStatus>,
        mut stop: oneshot::Receiver<()>,
    ) -> std::result::Result<(), String> {
        let ttl = Duration::from_secs(self.ttl_secs);
        let interval = ttl / 2;
        let retry = (ttl / 8).max(Duration::from_millis(50));
        let mut last_ok = tokio::time::Instant::now();
        let mut wait = interval;
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(wait) => {}
            }
            let refreshed = tokio::select! {
                _ = &mut stop => break,
                r = self.update(self.ttl_secs as i64) => r,
            };
            match refreshed {
                Ok(answer) => {
                    last_ok = tokio::time::Instant::now();
                    wait = interval;
                    let passed = (answer.min_safe_point > self.snapshot.0)
                        .then_some(Tso(answer.min_safe_point));
                    if let Some(gc) = passed {
                        tracing::error!(
                            "{}: PD's minimum safepoint {gc} is above the snapshot {}: GC has \
                             passed it; reads at it fail (TiDB error 9006)",
                            self.service_id,
                            self.snapshot
                        );
                    }
                    status.send_modify(|s| {
                        s.refreshes += 1;
                        s.min_safe_point = Tso(answer.min_safe_point);
                        s.last_error = None;
                        if s.passed_by.is_none() {
                            s.passed_by = passed;
                        }
                    });
                }
                Err(e) => {
                    wait = retry;
                    let lapsed = last_ok.elapsed() >= ttl;
                    tracing::warn!(
                        "{}: cannot refresh the PD service GC safepoint (retrying in {:?}){}: {e}",
                        self.service_id,
                        retry,
                        if lapsed {
                            "; it has not been renewed for a whole TTL, GC protection may have \
                             lapsed"
                        } else {
                            ""
                        }
                    );
                    status.send_modify(|s| {
                        s.failures += 1;
                        s.last_error = Some(e);
                        s.lapsed |= lapsed;
                    });
                }
            }
        }
        let removal = tokio::time::timeout(REMOVAL_TIMEOUT, self.update(0))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {}s", REMOVAL_TIMEOUT.as_secs())));
        match removal {
            Ok(_) => {
                tracing::info!("{}: service GC safepoint removed", self.service_id);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(
                    "{}: cannot remove the PD service GC safepoint (it expires within {} s): {e}",
                    self.service_id,
                    self.ttl_secs
                );
                Err(e)
            }
        }
    }

    /// One `UpdateServiceGCSafePoint` at the snapshot. A failure on the current leader
    /// connection is retried once through a fresh `GetMembers` (the leader may have
    /// changed); the cluster ID must stay the same.
    async fn update(&mut self, ttl: i64) -> std::result::Result<SafePointAnswer, String> {
        let mut first_error = None;
        if let Some(leader) = self.leader.as_mut() {
            match leader
                .update_service_gc_safe_point(&self.service_id, ttl, self.snapshot.0)
                .await
            {
                Ok(a) => return Ok(a),
                Err(e) => {
                    self.leader = None;
                    first_error = Some(e);
                }
            }
        }
        let mut leader = PdLeader::connect(&self.addrs)
            .await
            .map_err(|e| match &first_error {
                Some(first) => format!("{first}; then {e}"),
                None => e,
            })?;
        if leader.cluster_id != self.cluster_id {
            return Err(format!(
                "PD {} now serves cluster {}, not cluster {}",
                leader.addr, leader.cluster_id, self.cluster_id
            ));
        }
        let answer = leader
            .update_service_gc_safe_point(&self.service_id, ttl, self.snapshot.0)
            .await?;
        self.leader = Some(leader);
        Ok(answer)
    }
}
