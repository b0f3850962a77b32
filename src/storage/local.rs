//! [`LocalStore`]: a directory as an object store. A key is a relative path under the
//! directory. Writes go to a temporary file next to the object (`.<name>.sg-tmp-<pid>-<n>`,
//! never listed), which is fsynced, then renamed (or hard-linked, for `put_if_absent`), then
//! the directory is fsynced: an object is visible only complete and survives a crash once
//! the call returned.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{check_key, dir_prefix, ObjectInfo, ObjectStore, Reader, StorageError, TEMP_MARK};

/// Read buffer of [`LocalStore::upload`].
const COPY_BUF: usize = 1 << 20;

/// A directory holding objects.
#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// The store at `root`, created if missing.
    pub async fn open(root: &Path) -> Result<LocalStore, StorageError> {
        let shown = root.display().to_string();
        tokio::fs::create_dir_all(root)
            .await
            .map_err(StorageError::io("create", &shown))?;
        let meta = tokio::fs::metadata(root)
            .await
            .map_err(StorageError::io("open", &shown))?;
        if !meta.is_dir() {
            return Err(StorageError::Io {
                action: "open",
                path: shown,
                cause: io::Error::other("not a directory"),
            });
        }
        Ok(LocalStore {
            root: root.to_path_buf(),
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(StorageError::task("local storage"))?
}

/// Whether `e` means "no object there" (missing, or a directory or file in the way).
fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::IsADirectory | io::ErrorKind::NotADirectory
    )
}

/// A temporary file next to its target, removed on drop unless [`TempFile::keep`] was
/// called (after the rename).
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    fn next_to(target: &Path) -> TempFile {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        let path = target.with_file_name(format!(".{name}{TEMP_MARK}{}-{n}", std::process::id()));
        TempFile { path, armed: true }
    }

    fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let path = std::mem::take(&mut self.path);
        // An unlink is quick, but the async threads must not wait for the disk.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(move || std::fs::remove_file(path))),
            Err(_) => drop(std::fs::remove_file(path)),
        }
    }
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

/// Creates `path`'s parent directories.
fn make_parent(path: &Path) -> Result<PathBuf, StorageError> {
    let parent = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(StorageError::io("create", shown(&parent)))?;
    Ok(parent)
}

/// Writes `body` to a new temporary file next to `path` and fsyncs it.
fn write_temp(path: &Path, body: &[u8]) -> Result<TempFile, StorageError> {
    let tmp = TempFile::next_to(path);
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp.path)?;
        f.write_all(body)?;
        f.sync_all()
    };
    write().map_err(StorageError::io("write", shown(&tmp.path)))?;
    Ok(tmp)
}

fn fsync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StorageError::io("fsync", shown(dir)))
}

/// Renames the finished temporary file over `path` and makes the rename durable.
fn publish(tmp: TempFile, path: &Path, parent: &Path) -> Result<(), StorageError> {
    std::fs::rename(&tmp.path, path).map_err(StorageError::io("rename to", shown(path)))?;
    tmp.keep();
    fsync_dir(parent)
}

/// Creates `path` with `body` unless it exists: the complete temporary file is hard-linked
/// to the name (which fails if the name exists), so no reader sees a partial object. Where
/// the filesystem has no hard links, `create_new` and a write.
fn create_exclusive(path: &Path, body: &[u8]) -> Result<bool, StorageError> {
    let parent = make_parent(path)?;
    let tmp = write_temp(path, body)?;
    match std::fs::hard_link(&tmp.path, path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
            ) =>
        {
            drop(tmp);
            return create_new(path, body, &parent);
        }
        Err(e) => return Err(StorageError::io("link", shown(path))(e)),
    }
    drop(tmp);
    fsync_dir(&parent)?;
    Ok(true)
}

fn create_new(path: &Path, body: &[u8], parent: &Path) -> Result<bool, StorageError> {
    let mut f = match File::options().write(true).create_new(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(StorageError::io("create", shown(path))(e)),
    };
    f.write_all(body)
        .and_then(|()| f.sync_all())
        .map_err(StorageError::io("write", shown(path)))?;
    fsync_dir(parent)?;
    Ok(true)
}

/// Every object file under `dir` (whose key prefix is `rel`), recursively; temporary files
/// and names that are not UTF-8 are skipped.
fn walk(dir: &Path, rel: &str, out: &mut Vec<ObjectInfo>) -> Result<(), StorageError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if is_absent(&e) => return Ok(()),
        Err(e) => return Err(StorageError::io("list", shown(dir))(e)),
    };
    for entry in entries {
        let entry = entry.map_err(StorageError::io("list", shown(dir)))?;
        let Ok(name) = entry.file_name().into_string() else {
            tracing::warn!(path = %entry.path().display(), "skipping a file name that is not UTF-8");
            continue;
        };
        if name.contains(TEMP_MARK) {
            continue;
        }
        let key = format!("{rel}{name}");
        let kind = entry
            .file_type()
            .map_err(StorageError::io("list", shown(&entry.path())))?;
        if kind.is_dir() {
            walk(&entry.path(), &format!("{key}/"), out)?;
            continue;
        }
        // Follows symlinks to files; a symlinked directory is not entered (no loops).
        match std::fs::metadata(entry.path()) {
            Ok(m) if m.is_file() => out.push(ObjectInfo { key, size: m.len() }),
            Ok(_) => {}
            Err(e) if is_absent(&e) => {}
            Err(e) => return Err(StorageError::io("stat", shown(&entry.path()))(e)),
        }
    }
    Ok(())
}

/// Copies `body` into a new file at `path` and fsyncs it; the bytes copied.
async fn copy_to(mut body: Reader, path: &Path, key: &str) -> Result<u64, StorageError> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(StorageError::io("create", shown(path)))?;
    let mut buf = vec![0u8; COPY_BUF];
    let mut written = 0u64;
    loop {
        let n = body
            .read(&mut buf)
            .await
            .map_err(StorageError::io("read the body of", key))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])
            .await
            .map_err(StorageError::io("write", shown(path)))?;
        written += n as u64;
    }
    file.flush()
        .await
        .map_err(StorageError::io("write", shown(path)))?;
    file.sync_all()
        .await
        .map_err(StorageError::io("fsync", shown(path)))?;
    Ok(written)
}

#[async_trait::async_trait]
impl ObjectStore for LocalStore {
    fn location(&self) -> String {
        format!("local://{}", self.root.display())
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StorageError> {
        let path = self.path(key)?;
        blocking(move || {
            let parent = make_parent(&path)?;
            let tmp = write_temp(&path, &body)?;
            publish(tmp, &path, &parent)
        })
        .await
    }

    async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> Result<bool, StorageError> {
        let path = self.path(key)?;
        blocking(move || create_exclusive(&path, &body)).await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(Some(data)),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(StorageError::io("read", shown(&path))(e)),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let path = self.path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(ObjectInfo {
                key: key.to_string(),
                size: m.len(),
            })),
            Ok(_) => Ok(None),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(StorageError::io("stat", shown(&path))(e)),
        }
    }

    async fn upload(&self, key: &str, body: Reader) -> Result<u64, StorageError> {
        let path = self.path(key)?;
        let parent = {
            let path = path.clone();
            blocking(move || make_parent(&path)).await?
        };
        let tmp = TempFile::next_to(&path);
        let written = match copy_to(body, &tmp.path, key).await {
            Ok(n) => n,
            Err(e) => {
                // Removed before returning, so a caller never sees the temporary file.
                let _ = tokio::fs::remove_file(&tmp.path).await;
                tmp.keep();
                return Err(e);
            }
        };
        blocking(move || publish(tmp, &path, &parent)).await?;
        Ok(written)
    }

    async fn download(&self, key: &str) -> Result<Reader, StorageError> {
        let path = self.path(key)?;
        let absent = || StorageError::NotFound {
            key: key.to_string(),
        };
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(absent()),
            Err(e) if is_absent(&e) => return Err(absent()),
            Err(e) => return Err(StorageError::io("stat", shown(&path))(e)),
        }
        match tokio::fs::File::open(&path).await {
            Ok(f) => Ok(Box::pin(f)),
            Err(e) if is_absent(&e) => Err(absent()),
            Err(e) => Err(StorageError::io("open", shown(&path))(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let rel = dir_prefix(prefix)?;
        let dir = self.root.join(&rel);
        blocking(move || {
            let mut out = Vec::new();
            walk(&dir, &rel, &mut out)?;
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if is_absent(&e) => Ok(()),
            Err(e) => Err(StorageError::io("delete", shown(&path))(e)),
        }
    }
}
