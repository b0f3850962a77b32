//! A lease: an exclusive lock object in a store, so that two runs — on one machine or on
//! several sharing the store — never do the same work at once.
//!
//! The lock object is created with put-if-absent and names its owner (host, pid, command)
//! and when it last renewed the lease; a task rewrites it every [`RENEW`] while the lease is
//! held. A lock whose owner is provably gone — on this host with its pid no longer running,
//! or not renewed for [`EXPIRY`] — is taken over, so a kill -9 never blocks the next run
//! for long.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ObjectStore, StorageError};

/// A lease not renewed for this long is stale (its owner is gone).
pub const EXPIRY: Duration = Duration::from_secs(120);
/// How often a held lease is renewed.
pub const RENEW: Duration = Duration::from_secs(30);

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseOwner {
    pub host: String,
    pub pid: u32,
    pub command: String,
    /// Unix seconds of the last renewal.
    pub renewed: i64,
}

impl LeaseOwner {
    fn me(command: &str) -> LeaseOwner {
        LeaseOwner {
            host: host_name(),
            pid: std::process::id(),
            command: command.to_string(),
            renewed: now(),
        }
    }

    /// Whether the owner is provably gone: on this host and its pid no longer runs, or it
    /// has not renewed the lease.
    pub fn is_stale(&self) -> bool {
        if now() - self.renewed > EXPIRY.as_secs() as i64 {
            return true;
        }
        self.host == host_name() && !pid_alive(self.pid)
    }

    /// `` `command` (pid P on HOST, renewed N s ago) `` for messages.
    pub fn describe(&self) -> String {
        format!(
            "`{}` (pid {} on {}, renewed {} s ago)",
            self.command,
            self.pid,
            self.host,
            now() - self.renewed
        )
    }
}

/// Why a lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another live run holds it.
    #[error("{location} is locked by {}", owner.describe())]
    Held { owner: LeaseOwner, location: String },
    /// Another run took it between our removal of a stale lock and our retry.
    #[error("{location} is locked by another run (it took the lock while this one took over a stale lock)")]
    Raced { location: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A held lease; renewed until [`Lease::release`]. Dropping it without releasing (a crash
/// in effect) stops the renewal and leaves the lock object for the next run to take over.
#[derive(Debug)]
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    key: String,
    /// The previous owner, when a stale lock was taken over (for a note to the user).
    took_over: Option<LeaseOwner>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
    }
}

impl Lease {
    /// Take the lease on `key`, or take over a stale one.
    pub async fn acquire(
        store: Arc<dyn ObjectStore>,
        key: &str,
        command: &str,
    ) -> Result<Lease, LeaseError> {
        let me = LeaseOwner::me(command);
        let body = serde_json::to_vec(&me).unwrap_or_default();
        let mut took_over = None;
        let mut acquired = store.put_if_absent(key, body.clone()).await?;
        if !acquired {
            let owner = peek(store.as_ref(), key).await?;
            match owner {
                Some(o) if !o.is_stale() => {
                    return Err(LeaseError::Held {
                        owner: o,
                        location: store.location(),
                    });
                }
                stale => {
                    tracing::warn!(
                        "taking over the lock {key} of a process that is gone: {stale:?}"
                    );
                    store.delete(key).await?;
                    acquired = store.put_if_absent(key, body).await?;
                    took_over = stale;
                }
            }
        }
        if !acquired {
            return Err(LeaseError::Raced {
                location: store.location(),
            });
        }
        let renewer = Some(spawn_renewer(store.clone(), key.to_string(), me));
        Ok(Lease {
            store,
            key: key.to_string(),
            took_over,
            renewer,
        })
    }

    /// The previous owner, when a stale lock was taken over.
    pub fn took_over(&self) -> Option<&LeaseOwner> {
        self.took_over.as_ref()
    }

    /// Stop renewing and remove the lock object.
    pub async fn release(mut self) -> Result<(), StorageError> {
        // Stop renewing first: a renewal after the delete would recreate the lock.
        if let Some(r) = self.renewer.take() {
            r.abort();
            let _ = r.await;
        }
        self.store.delete(&self.key).await
    }
}

/// The owner named by the lock object at `key`, if there is one (unreadable: `None`).
pub async fn peek(store: &dyn ObjectStore, key: &str) -> Result<Option<LeaseOwner>, StorageError> {
    Ok(store
        .get(key)
        .await?
        .and_then(|b| serde_json::from_slice::<LeaseOwner>(&b).ok()))
}

/// Rewrite the lock with a fresh renewal time every [`RENEW`].
fn spawn_renewer(
    store: Arc<dyn ObjectStore>,
    key: String,
    mut owner: LeaseOwner,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RENEW).await;
            owner.renewed = now();
            let body = serde_json::to_vec(&owner).unwrap_or_default();
            if let Err(e) = store.put(&key, body).await {
                tracing::warn!("cannot renew the lock {key}: {e}");
            }
        }
    })
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_string())
}

fn pid_alive(pid: u32) -> bool {
    // /proc/<pid> exists while the process (or its zombie) exists; a zombie of ours is not
    // a lock owner because owners are other syncgate processes.
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "x.lock";

    async fn store(dir: &Path) -> Arc<dyn ObjectStore> {
        Arc::new(crate::storage::LocalStore::open(dir).await.unwrap())
    }

    async fn plant(store: &dyn ObjectStore, host: String, pid: u32, age_secs: i64) {
        let owner = LeaseOwner {
            host,
            pid,
            command: "dr backup".into(),
            renewed: now() - age_secs,
        };
        store
            .put(KEY, serde_json::to_vec(&owner).unwrap())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_live_owner_keeps_the_lease_and_a_gone_one_loses_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path()).await;
        // Alive: this very process, on this host, renewed just now.
        plant(s.as_ref(), host_name(), std::process::id(), 0).await;
        let err = Lease::acquire(s.clone(), KEY, "check").await.unwrap_err();
        assert!(
            err.to_string().contains("is locked by `dr backup`"),
            "{err}"
        );
        // Same host, pid gone (pids never reach u32::MAX - 1).
        plant(s.as_ref(), host_name(), u32::MAX - 1, 0).await;
        let lease = Lease::acquire(s.clone(), KEY, "check").await.unwrap();
        assert_eq!(lease.took_over().map(|o| o.pid), Some(u32::MAX - 1));
        lease.release().await.unwrap();
        assert!(s.get(KEY).await.unwrap().is_none(), "released");
        // Another host whose lease ran out.
        plant(
            s.as_ref(),
            "elsewhere".into(),
            1,
            EXPIRY.as_secs() as i64 + 5,
        )
        .await;
        let lease = Lease::acquire(s.clone(), KEY, "check").await.unwrap();
        assert!(lease.took_over().is_some());
        drop(lease);
        // Dropped without release (a crash): the lock stays, naming this process.
        let left = peek(s.as_ref(), KEY).await.unwrap().unwrap();
        assert_eq!(
            (left.pid, left.command.as_str()),
            (std::process::id(), "check")
        );
        // Another host, lease fresh: refused.
        plant(s.as_ref(), "elsewhere".into(), 1, 0).await;
        assert!(matches!(
            Lease::acquire(s.clone(), KEY, "check").await,
            Err(LeaseError::Held { .. })
        ));
    }
}
