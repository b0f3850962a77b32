//! Fix SQL part files: one per chunk under `fix-on-<target>/.parts/<file stem>/`, joined in
//! key order into the table's file when it finishes.

use super::PARTS_DIR;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// `fix_dir/.parts/<stem>`: the part files of the table whose fix file is `<stem>.sql`.
pub fn parts_dir(fix_dir: &Path, file_name: &str) -> PathBuf {
    let stem = file_name.strip_suffix(".sql").unwrap_or(file_name);
    fix_dir.join(PARTS_DIR).join(stem)
}

/// The part file of chunk `seq` (zero-padded, so names sort in chunk order).
pub fn part_path(parts_dir: &Path, seq: u64) -> PathBuf {
    parts_dir.join(format!("{seq:010}.sql"))
}

/// The part files in `parts_dir`, in chunk order.
pub fn list_parts(parts_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = match fs::read_dir(parts_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Output {
                path: parts_dir.to_path_buf(),
                source,
            })
        }
    };
    let mut out: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let seq = name.strip_suffix(".sql")?.parse().ok()?;
            Some((seq, e.path()))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Remove the part files a run will write again: under `fix_dir/.parts`, a table directory
/// named in `keep` keeps its parts with a sequence number below the given count; every
/// other part and directory is removed.
pub fn prune_parts(fix_dir: &Path, keep: &BTreeMap<String, u64>) -> Result<()> {
    let root = fix_dir.join(PARTS_DIR);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Output { path, source }
    };
    let dirs = match fs::read_dir(&root) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(&root)(e)),
    };
    for d in dirs.flatten() {
        let name = d.file_name().to_string_lossy().into_owned();
        let path = d.path();
        match keep.get(&name) {
            Some(&n) if n > 0 && path.is_dir() => {
                for entry in fs::read_dir(&path).map_err(io(&path))?.flatten() {
                    let file = entry.file_name().to_string_lossy().into_owned();
                    let seq: Option<u64> = file.strip_suffix(".sql").and_then(|s| s.parse().ok());
                    if seq.is_none_or(|s| s >= n) {
                        fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
                    }
                }
            }
            _ if path.is_dir() => fs::remove_dir_all(&path).map_err(io(&path))?,
            _ => fs::remove_file(&path).map_err(io(&path))?,
        }
    }
    if keep.is_empty() {
        let _ = fs::remove_dir(&root);
    }
    Ok(())
}
