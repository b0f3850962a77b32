//! The flow state: one small JSON document that carries the positions from step to step.
//!
//! It lives in backup-storage (`flow.json`), so any machine with the config can continue
//! the flow, with a copy in the output directory for the operator. A lock object
//! (`flow.lock`, created with put-if-absent) keeps two runs from advancing the same flow.
//! A lock left by a process that died (kill -9) is taken over when its owner is provably
//! gone: same host and the pid no longer runs, or its lease expired.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::DrError;
use crate::error::Result;
use crate::storage::{Lease, LeaseError, ObjectStore};

/// Key of the flow state in backup-storage.
pub const FLOW_KEY: &str = "flow.json";
/// Key of the lock object (a [`Lease`]) in backup-storage.
pub const LOCK_KEY: &str = "flow.lock";

/// The steps of the flow, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepName {
    Backup,
    Restore,
    Replicate,
    Failover,
    Reseed,
    Switchover,
}

impl StepName {
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::Backup => "backup",
            StepName::Restore => "restore",
            StepName::Replicate => "replicate",
            StepName::Failover => "failover",
            StepName::Reseed => "reseed",
            StepName::Switchover => "switchover",
        }
    }
}

impl std::fmt::Display for StepName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// Started and not ended (or its process died: the lock tells which).
    Running,
    /// Ended and its gate (if any) found the sides equal.
    Done,
    /// Ended with an error; may be retried.
    Failed,
    /// Ended, but its gate found differences: the flow stops here until fixed.
    GateFailed,
    /// Stopped by SIGINT/SIGTERM; may be retried.
    Interrupted,
}

/// A position in a server's history: what every step hands to the next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Point {
    /// TiDB: a TSO.
    Tso { tso: u64 },
    /// MariaDB/MySQL: a GTID position and the binlog coordinates it corresponds to.
    Gtid {
        gtid: String,
        binlog_file: String,
        binlog_pos: u64,
    },
}

impl std::fmt::Display for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Point::Tso { tso } => write!(f, "TSO {tso}"),
            Point::Gtid {
                gtid,
                binlog_file,
                binlog_pos,
            } => write!(f, "GTID {gtid} ({binlog_file}:{binlog_pos})"),
        }
    }
}

/// A gate's verdict, as recorded for the step it follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateRecord {
    /// `equal` or `different`.
    pub result: String,
    /// Rows found missing, extra or changed on the secondary.
    pub differing_rows: u64,
    /// The gate's report, relative to the output directory.
    pub report: String,
}

/// One step's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub status: StepStatus,
    /// RFC 3339 UTC.
    pub started: String,
    pub ended: Option<String>,
    /// The backup the step produced or consumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// The point the step produced (backup) or brought the secondary to (restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<Point>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateRecord>,
    /// Why the step failed, when it did (one line, no secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Replication: the `host:port` the secondary replicates from (TiDB: the TiCDC
    /// server's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Replication on TiDB: the TiCDC changefeed's ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changefeed: Option<String>,
    /// Reseed and switchover: the data source rebuilt from the acting primary (the new
    /// primary of the switchover), so the switchover needs no name repeated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Switchover: how long writes were frozen, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_ms: Option<u64>,
}

impl StepRecord {
    pub fn started_now() -> StepRecord {
        StepRecord {
            status: StepStatus::Running,
            started: now_rfc3339(),
            ended: None,
            backup_id: None,
            point: None,
            gate: None,
            error: None,
            source: None,
            changefeed: None,
            node: None,
            freeze_ms: None,
        }
    }

    /// Close the record with `status`.
    pub fn end(&mut self, status: StepStatus) {
        self.status = status;
        self.ended = Some(now_rfc3339());
    }

    /// Close the record for a step that stopped with `e`: interrupted by a signal, or
    /// failed (either may be retried).
    pub fn end_with_error(&mut self, e: &crate::error::Error) {
        self.error = Some(e.to_string());
        self.end(match e {
            crate::error::Error::Interrupted { .. } => StepStatus::Interrupted,
            _ => StepStatus::Failed,
        });
    }
}

/// The flow state document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowState {
    /// Format version of this document.
    pub version: u32,
    /// Flavour of the primary (`mariadb`, `mysql`, `tidb`) when the flow started.
    #[serde(default)]
    pub flavour: String,
    #[serde(default)]
    pub steps: BTreeMap<StepName, StepRecord>,
    /// TiDB: the PD service GC safepoint held from before the backup until replication
    /// starts (released by the step that no longer needs it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc_hold: Option<GcHold>,
    /// Gate 2 runs (`dr verify`), oldest first, the last [`GATE_HISTORY_CAP`] kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gate_history: Vec<GateRun>,
    /// The node that takes the writes once a failover or a switchover moved them off
    /// `[dr] primary` (None: `[dr] primary` still does). `dr archive` follows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acting_primary: Option<RoleChange>,
}

/// A move of the writes to another node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleChange {
    /// The data source that takes the writes.
    pub node: String,
    /// The data source that took them before.
    pub from: String,
    /// Everything up to this point came from the node before it (MariaDB/MySQL: a GTID
    /// position; TiDB: a TSO).
    pub since: Point,
    /// The step that moved the writes.
    pub by: StepName,
}

/// How many gate 2 runs the flow state keeps (a scheduler runs `dr verify` forever).
pub const GATE_HISTORY_CAP: usize = 100;

/// One `dr verify` run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateRun {
    /// RFC 3339 UTC, when it ended.
    pub time: String,
    /// `equal`, `different`, `error` or `interrupted`.
    pub result: String,
    /// The GTID both sides were read at (None when the run ended before the fence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<String>,
    pub compared_rows: u64,
    pub differing_rows: u64,
    /// The report, relative to the output directory.
    pub report: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A PD service GC safepoint the flow holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcHold {
    pub service_id: String,
    pub safe_point: u64,
    /// PD endpoints it was set on.
    pub pd: Vec<String>,
}

impl FlowState {
    pub const VERSION: u32 = 1;

    pub fn step(&self, name: StepName) -> Option<&StepRecord> {
        self.steps.get(&name)
    }

    /// Append a gate 2 run, dropping the oldest beyond the cap.
    pub fn push_gate_run(&mut self, run: GateRun) {
        self.gate_history.push(run);
        let over = self.gate_history.len().saturating_sub(GATE_HISTORY_CAP);
        self.gate_history.drain(..over);
    }

    /// Parse a stored document; a damaged one is an error that says where it is, never a
    /// silent fresh start (that would forget the positions).
    pub fn parse(bytes: &[u8], location: &str) -> Result<FlowState> {
        let state: FlowState = serde_json::from_slice(bytes).map_err(|e| {
            DrError::Precondition(format!(
                "the flow state {location}/{FLOW_KEY} is damaged ({e}); restore it from the \
                 copy in the output directory or remove it to start the flow over"
            ))
        })?;
        if state.version > Self::VERSION {
            return Err(DrError::Precondition(format!(
                "the flow state {location}/{FLOW_KEY} has version {}, newer than this \
                 syncgate understands ({})",
                state.version,
                Self::VERSION
            ))
            .into());
        }
        Ok(state)
    }
}

/// Current time as RFC 3339 UTC (seconds).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// Who holds the flow lock.
pub type LockOwner = crate::storage::LeaseOwner;

/// The flow's state in storage, held under its lock for the lifetime of this value.
#[derive(Debug)]
pub struct Flow {
    store: Arc<dyn ObjectStore>,
    output_dir: std::path::PathBuf,
    pub state: FlowState,
    /// A note for the user when a stale lock was taken over.
    pub took_over: Option<LockOwner>,
    /// The lock, renewed while the step runs (a step longer than the lease must not look
    /// abandoned to a run on another machine).
    lease: Lease,
}

impl Flow {
    /// Take the lock and read the state (empty when the flow has not started).
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        output_dir: &Path,
        command: &str,
    ) -> Result<Flow> {
        let lease = Lease::acquire(store.clone(), LOCK_KEY, command)
            .await
            .map_err(|e| match e {
                LeaseError::Storage(e) => crate::error::Error::from(e),
                LeaseError::Held { owner, location } => DrError::Locked {
                    owner: owner.describe(),
                    location,
                }
                .into(),
                LeaseError::Raced { location } => DrError::Locked {
                    owner: "another run (it took the lock while this one took over a stale \
                            lock)"
                        .into(),
                    location,
                }
                .into(),
            })?;
        let took_over = lease.took_over().cloned();
        let state = match store.get(FLOW_KEY).await {
            Ok(Some(bytes)) => FlowState::parse(&bytes, &store.location()),
            Ok(None) => Ok(FlowState {
                version: FlowState::VERSION,
                ..FlowState::default()
            }),
            Err(e) => Err(e.into()),
        };
        let state = match state {
            Ok(s) => s,
            Err(e) => {
                let _ = lease.release().await;
                return Err(e);
            }
        };
        Ok(Flow {
            store,
            output_dir: output_dir.to_path_buf(),
            state,
            took_over,
            lease,
        })
    }

    /// Run `work` on the flow under its lock, and release the lock whatever `work` returned
    /// (the work's error wins over a failure to release).
    pub async fn with_lock<T>(
        store: Arc<dyn ObjectStore>,
        output_dir: &Path,
        command: &str,
        work: impl AsyncFnOnce(&mut Flow) -> Result<T>,
    ) -> Result<T> {
        let mut flow = Flow::open(store, output_dir, command).await?;
        let outcome = work(&mut flow).await;
        let released = flow.release().await;
        let outcome = outcome?;
        released?;
        Ok(outcome)
    }

    /// Read the state without taking the lock (`dr status`, `--dry-run`).
    pub async fn peek(store: &dyn ObjectStore) -> Result<(FlowState, Option<LockOwner>)> {
        let state = match store.get(FLOW_KEY).await? {
            Some(bytes) => FlowState::parse(&bytes, &store.location())?,
            None => FlowState::default(),
        };
        let lock = store
            .get(LOCK_KEY)
            .await?
            .and_then(|b| serde_json::from_slice::<LockOwner>(&b).ok());
        Ok((state, lock))
    }

    /// Write the state to storage and its copy to the output directory.
    pub async fn save(&self) -> Result<()> {
        let text = serde_json::to_vec_pretty(&self.state).map_err(|e| {
            crate::error::Error::Internal(format!("flow state does not serialise: {e}"))
        })?;
        self.store.put(FLOW_KEY, text.clone()).await?;
        let dir = self.output_dir.clone();
        tokio::task::spawn_blocking(move || write_copy(&dir, &text))
            .await
            .map_err(|e| crate::error::Error::Internal(e.to_string()))??;
        Ok(())
    }

    /// Record `record` for `step` and save.
    pub async fn set(&mut self, step: StepName, record: StepRecord) -> Result<()> {
        self.state.steps.insert(step, record);
        self.save().await
    }

    /// Release the lock. Dropping a `Flow` without calling this leaves the lock for the
    /// next run to take over (it is then provably stale).
    pub async fn release(self) -> Result<()> {
        self.lease.release().await?;
        Ok(())
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }
}

fn write_copy(dir: &Path, text: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| crate::error::Error::Output {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let path = dir.join(FLOW_KEY);
    let tmp = dir.join(format!(".{FLOW_KEY}.tmp"));
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| crate::error::Error::Output { path, source: e })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(dir: &Path) -> Arc<dyn ObjectStore> {
        Arc::new(crate::storage::LocalStore::open(dir).await.unwrap())
    }

    #[tokio::test]
    async fn a_held_lock_is_refused_naming_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let s = store(&dir.path().join("storage")).await;
        let flow = Flow::open(s.clone(), &out, "dr backup").await.unwrap();
        let err = Flow::open(s.clone(), &out, "dr restore").await.unwrap_err();
        assert!(
            err.to_string().contains("is locked by `dr backup`"),
            "{err}"
        );
        flow.release().await.unwrap();
        assert!(s.get(LOCK_KEY).await.unwrap().is_none(), "released");
        Flow::open(s, &out, "dr restore").await.unwrap();
    }

    #[test]
    fn the_gate_history_keeps_the_newest_runs() {
        let mut s = FlowState::default();
        for i in 0..GATE_HISTORY_CAP + 7 {
            s.push_gate_run(GateRun {
                time: i.to_string(),
                result: "equal".into(),
                fence: None,
                compared_rows: 0,
                differing_rows: 0,
                report: String::new(),
                error: None,
            });
        }
        assert_eq!(s.gate_history.len(), GATE_HISTORY_CAP);
        assert_eq!(s.gate_history[0].time, "7");
        assert_eq!(
            s.gate_history.last().unwrap().time,
            (GATE_HISTORY_CAP + 6).to_string()
        );
    }

    #[test]
    fn a_damaged_state_is_an_error_not_a_fresh_start() {
        let e = FlowState::parse(b"{not json", "s3://b/p").unwrap_err();
        assert!(e.to_string().contains("is damaged"), "{e}");
        let ok = FlowState::parse(br#"{"version":1,"steps":{}}"#, "x").unwrap();
        assert!(ok.steps.is_empty());
    }
}
