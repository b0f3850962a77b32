//! The manifest beside every backup: what it holds, at which point, and the checksum of
//! every object. It is written last, so a backup without a manifest is incomplete (its
//! writer died) and is never listed or restored.

use serde::{Deserialize, Serialize};

use super::flow::Point;
use super::DrError;
use crate::error::Result;
use crate::storage::ObjectStore;

/// Where backups live in backup-storage.
pub const BACKUPS: &str = "backups";
/// The manifest's name inside a backup's directory.
pub const MANIFEST: &str = "manifest.json";

/// One stored object of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    /// Key relative to the backup's directory.
    pub key: String,
    pub size: u64,
    /// SHA-256 of the stored bytes (hex).
    pub sha256: String,
}

/// One backed-up table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntry {
    pub schema: String,
    pub table: String,
    /// Exact row count at the backup point (counted in the backup's snapshot; TiDB: not
    /// counted, `None`).
    pub rows: Option<u64>,
    /// The table's row fingerprint object, when one was taken (MariaDB/MySQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// The tool that wrote the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
    /// Its arguments (no credentials: they go through a defaults file).
    pub args: Vec<String>,
}

/// A backup's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format of this document.
    pub format: u32,
    pub id: String,
    /// `mariadb`, `mysql` or `tidb`.
    pub flavour: String,
    pub server_version: String,
    /// Data-source name of the server backed up.
    pub source: String,
    /// The backup point: data committed at or before it is in the backup, nothing after.
    pub point: Point,
    pub schemas: Vec<String>,
    pub tables: Vec<TableEntry>,
    pub tool: ToolInfo,
    pub objects: Vec<ObjectEntry>,
    /// Version of the row hash used by the fingerprints ([`crate::checksum::CHECKSUM_VERSION`]).
    pub checksum_version: String,
    /// RFC 3339 UTC.
    pub started: String,
    pub finished: String,
}

impl Manifest {
    pub const FORMAT: u32 = 1;

    /// The object entry named `key`.
    pub fn object(&self, key: &str) -> Option<&ObjectEntry> {
        self.objects.iter().find(|o| o.key == key)
    }

    /// Total stored bytes.
    pub fn stored_bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }

    /// Why this backup's fingerprints cannot be compared by this build, if they cannot:
    /// their row hash is another version's, so every row would look changed.
    pub fn fingerprints_unusable(&self) -> Option<String> {
        let ours = crate::checksum::CHECKSUM_VERSION;
        let fingerprinted = self.tables.iter().any(|t| t.fingerprint.is_some());
        (fingerprinted && self.checksum_version != ours).then(|| {
            format!(
                "backup {} holds fingerprints of row hash '{}' and this syncgate computes \
                 '{ours}': gate it with the syncgate version that took it, or take a new \
                 backup",
                self.id, self.checksum_version
            )
        })
    }
}

/// The directory of backup `id`, relative to backup-storage.
pub fn backup_dir(id: &str) -> String {
    format!("{BACKUPS}/{id}")
}

/// A new backup id: the UTC time (sortable: the newest is the greatest) and a random tail
/// (two backups in one second stay distinct).
pub fn new_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_else(|_| now.unix_timestamp().to_string());
    let tail = std::process::id() ^ now.nanosecond();
    format!("{stamp}-{:05x}", tail & 0xfffff)
}

/// Store the manifest: the last write of a backup.
pub async fn write(store: &dyn ObjectStore, manifest: &Manifest) -> Result<()> {
    let body = serde_json::to_vec_pretty(manifest)
        .map_err(|e| crate::error::Error::Internal(format!("manifest: {e}")))?;
    store
        .put(&format!("{}/{MANIFEST}", backup_dir(&manifest.id)), body)
        .await?;
    Ok(())
}

/// The manifest of backup `id`; an error when the backup is incomplete or absent.
pub async fn read(store: &dyn ObjectStore, id: &str) -> Result<Manifest> {
    let key = format!("{}/{MANIFEST}", backup_dir(id));
    let bytes = store.get(&key).await?.ok_or_else(|| {
        DrError::Precondition(format!(
            "backup {id} has no manifest in {}: it does not exist or never completed",
            store.location()
        ))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        DrError::Precondition(format!("the manifest of backup {id} is damaged: {e}")).into()
    })
}

/// Ids of complete backups (with a manifest), oldest first, and of incomplete ones.
pub async fn list(store: &dyn ObjectStore) -> Result<(Vec<String>, Vec<String>)> {
    let mut complete = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for obj in store.list(&format!("{BACKUPS}/")).await? {
        let rest = obj.key.strip_prefix(&format!("{BACKUPS}/")).unwrap_or("");
        let Some((id, file)) = rest.split_once('/') else {
            continue;
        };
        seen.insert(id.to_string());
        if file == MANIFEST {
            complete.push(id.to_string());
        }
    }
    complete.sort();
    let incomplete = seen
        .into_iter()
        .filter(|id| !complete.contains(id))
        .collect();
    Ok((complete, incomplete))
}

/// The newest complete backup's manifest.
pub async fn newest(store: &dyn ObjectStore) -> Result<Manifest> {
    let (complete, _) = list(store).await?;
    let id = complete.last().ok_or_else(|| {
        DrError::Precondition(format!(
            "no complete backup in {}; run `syncgate dr backup` first",
            store.location()
        ))
    })?;
    read(store, id).await
}

/// Remove the objects of an incomplete backup (one whose writer died).
pub async fn remove_incomplete(store: &dyn ObjectStore, id: &str) -> Result<u64> {
    let mut removed = 0;
    for obj in store.list(&format!("{}/", backup_dir(id))).await? {
        store.delete(&obj.key).await?;
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(version: &str, fingerprint: Option<&str>) -> Manifest {
        serde_json::from_value(serde_json::json!({
            "format": 1, "id": "20260105T101500Z-0a1b2", "flavour": "mariadb",
            "server_version": "10.11.19-MariaDB", "source": "primary",
            "point": {"kind": "gtid", "gtid": "0-1-5", "binlog_file": "b.000001",
                "binlog_pos": 4},
            "schemas": ["shop"],
            "tables": [{"schema": "shop", "table": "t", "rows": 3,
                "fingerprint": fingerprint}],
            "tool": {"name": "mariadb-dump", "version": "10.11", "args": []},
            "objects": [], "checksum_version": version,
            "started": "2026-01-05T10:15:00Z", "finished": "2026-01-05T10:16:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn fingerprints_of_another_row_hash_are_refused() {
        let ours = crate::checksum::CHECKSUM_VERSION;
        assert_eq!(
            manifest(ours, Some("fp/t.zst")).fingerprints_unusable(),
            None
        );
        let why = manifest("sg2", Some("fp/t.zst"))
            .fingerprints_unusable()
            .unwrap();
        assert!(why.contains("'sg2'") && why.contains(ours), "{why}");
        // Without fingerprints (TiDB's backups) the version does not matter.
        assert_eq!(manifest("sg2", None).fingerprints_unusable(), None);
    }
}
