//! The checkpoint file: its contents, and reading, writing (atomically, with fsync) and
//! removing it.

use super::{Prefix, CHECKPOINT_DIR, CHECKPOINT_FILE, FORMAT_VERSION};
use crate::chunk::KeyRange;
use crate::error::{Error, Result};
use crate::report::TableReport;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The points a run read both sides at (as its report states them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadAt {
    pub upstream: String,
    pub downstream: String,
}

/// A table's saved state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EntryState {
    /// Checked to the end without an error: the report is reused as is. `fix_sql` in it is
    /// relative to the output directory.
    Finished {
        report: Box<TableReport>,
        /// Ranges with differences (for `--apply-fix`'s re-check only).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dirty: Vec<KeyRange>,
    },
    /// Partly checked: the finished prefix.
    InProgress { prefix: Prefix },
}

/// One table in the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableEntry {
    /// Downstream (target) schema and table.
    pub schema: String,
    pub table: String,
    #[serde(flatten)]
    pub state: EntryState,
    /// The points the saved part was read at (one per run that contributed).
    pub read_at: Vec<ReadAt>,
}

/// The whole checkpoint file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// [`Fingerprint::hash`] of the run's configuration.
    ///
    /// [`Fingerprint::hash`]: super::Fingerprint::hash
    pub fingerprint: String,
    /// [`Fingerprint::config`].
    ///
    /// [`Fingerprint::config`]: super::Fingerprint::config
    pub config: Value,
    /// When the file was written (RFC 3339, UTC).
    pub written_at: String,
    /// TiDB `snapshot = "auto"`: the TSOs the syncpoint gave (upstream, downstream); a
    /// resume reads at these, not at a newer syncpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tidb_auto: Option<ReadAt>,
    /// Tables finished or partly checked; tables not listed start from the beginning.
    pub tables: Vec<TableEntry>,
}

impl Checkpoint {
    /// The entry of target table `schema`.`table`.
    pub fn entry(&self, schema: &str, table: &str) -> Option<&TableEntry> {
        self.tables
            .iter()
            .find(|e| e.schema == schema && e.table == table)
    }
}

/// `output-dir/checkpoint`.
pub fn checkpoint_dir(output_dir: &Path) -> PathBuf {
    output_dir.join(CHECKPOINT_DIR)
}

/// Read the checkpoint in `output_dir`: `Ok(None)` when there is none, an error (one line)
/// when it cannot be read or has another format version.
pub fn load(output_dir: &Path) -> Result<Option<Checkpoint>> {
    let dir = checkpoint_dir(output_dir);
    let path = dir.join(CHECKPOINT_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(&dir, &e.to_string())),
    };
    let value: Value = serde_json::from_str(&text).map_err(|e| unreadable(&dir, &e.to_string()))?;
    let version = value.get("version").and_then(Value::as_u64);
    if version != Some(u64::from(FORMAT_VERSION)) {
        return Err(unreadable(
            &dir,
            &format!(
                "format version {} where {FORMAT_VERSION} is expected",
                version.map_or("none".to_string(), |v| v.to_string())
            ),
        ));
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| unreadable(&dir, &e.to_string()))
}

fn unreadable(dir: &Path, why: &str) -> Error {
    Error::Config(format!(
        "the checkpoint in {} cannot be resumed ({why}); remove it or use another output-dir",
        dir.display()
    ))
}

/// Write the checkpoint atomically: a temporary file in the same directory, fsync, rename,
/// then fsync of the directory (best effort) so the rename itself survives a power loss.
pub fn save(output_dir: &Path, ck: &Checkpoint) -> Result<()> {
    let dir = checkpoint_dir(output_dir);
    let path = dir.join(CHECKPOINT_FILE);
    let tmp = dir.join(format!(".{CHECKPOINT_FILE}.{}.tmp", std::process::id()));
    let res = (|| {
        fs::create_dir_all(&dir)?;
        // Streamed into the file: with thousands of finished tables the checkpoint is
        // megabytes, and a buffer of it would be the run's largest allocation.
        let mut w = std::io::BufWriter::with_capacity(64 * 1024, fs::File::create(&tmp)?);
        serde_json::to_writer_pretty(&mut w, ck).map_err(std::io::Error::from)?;
        w.write_all(b"\n")?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    res.map_err(|source: std::io::Error| {
        let _ = fs::remove_file(&tmp);
        Error::Output { path, source }
    })
}

/// Delete the checkpoint (and temporary files a killed writer left); the directory too when
/// nothing else is in it.
pub fn remove(output_dir: &Path) -> Result<()> {
    let dir = checkpoint_dir(output_dir);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(Error::Output { path: dir, source }),
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name == CHECKPOINT_FILE
            || (name.starts_with(&format!(".{CHECKPOINT_FILE}.")) && name.ends_with(".tmp"));
        if ours {
            fs::remove_file(e.path()).map_err(|source| Error::Output {
                path: e.path(),
                source,
            })?;
        }
    }
    let _ = fs::remove_dir(&dir);
    Ok(())
}
