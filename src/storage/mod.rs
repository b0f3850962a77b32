//! Object storage for the DR flow: backups, flow state and redo logs live in an S3 bucket
//! (or an S3-compatible server) or a local directory, behind one trait, [`ObjectStore`].
//!
//! - [`StorageUri`] (`uri`): BR/TiCDC storage URIs — `s3://bucket/prefix?access-key=…&
//!   secret-access-key=…&session-token=…&endpoint=…&force-path-style=…&region=…` (plus
//!   `storage-class`, `sse`, `sse-kms-key-id`, `acl`, applied to every write) and
//!   `local:///abs/path` or `file:///abs/path`. Secrets appear only in
//!   [`StorageUri::expose_secret`]; `Display`, `Debug` and every error show the redacted form.
//! - [`open`]: URI → `Arc<dyn ObjectStore>`; an S3 store makes one cheap request first, so
//!   an unreachable endpoint, rejected credentials and a missing bucket fail there, each
//!   with its own one-line [`StorageError`].
//! - [`S3Store`] (`s3`): aws-sdk-s3; credentials from the URI, else the usual AWS chain
//!   (environment, profile, web identity, container, instance metadata).
//! - [`LocalStore`] (`local`): a directory; every write goes to a temporary file that is
//!   fsynced and renamed, so an object is visible only complete.
//!
//! # Contract (both backends, checked by one conformance suite in `tests/it/storage.rs`)
//!
//! - Keys are relative to the store's location, '/'-separated, without empty, `.` or `..`
//!   segments; objects are flat (no directories), and `list(p)` lists everything under the
//!   "directory" `p` (`p` and `p/` alike; never `p2/…`), recursively, sorted by key.
//! - An object becomes visible only complete: `put` and `upload` never expose a partial
//!   object, and an upload whose body fails leaves nothing visible (S3: the multipart upload
//!   is aborted; local: the temporary file is removed).
//! - `put_if_absent` is atomic: of concurrent callers for one key exactly one gets `true`
//!   (S3: `If-None-Match: *`; local: a hard link, which fails if the name exists).
//! - Memory is bounded: `upload` holds at most two 8 MiB parts, `download` streams.
//! - `get`/`head` answer `None` for a missing object, `download` [`StorageError::NotFound`],
//!   `delete` succeeds.

mod error;
pub mod lease;
mod local;
mod s3;
mod uri;

pub use error::StorageError;
pub use lease::{Lease, LeaseError, LeaseOwner};
pub use local::LocalStore;
pub use s3::{S3Store, PART_SIZE};
pub use uri::{encode_value as encode_query_value, StorageUri};

use std::sync::Arc;

use uri::Backend;

/// A streamed object body.
pub type Reader = std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>;

/// An object's key (relative to the store's location) and size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

/// One bucket+prefix (or directory). Keys are relative to the location's prefix,
/// '/'-separated.
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Where this store points, without secrets (for messages and reports).
    fn location(&self) -> String;
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StorageError>;
    /// Creates the object only if no object has that key; Ok(false) if one exists (used for
    /// locks).
    async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> Result<bool, StorageError>;
    /// Ok(None) when the object does not exist.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError>;
    /// Streams `body` into the object (S3: multipart, parts of 8 MiB, bounded memory whatever
    /// the size; local: a temp file renamed at the end). The object becomes visible only
    /// complete; on error or drop nothing visible is left (S3: abort the multipart upload on
    /// error). Returns the bytes written.
    async fn upload(&self, key: &str, body: Reader) -> Result<u64, StorageError>;
    /// A streamed read of the whole object; [`StorageError::NotFound`] when absent.
    async fn download(&self, key: &str) -> Result<Reader, StorageError>;
    /// Every object under `prefix` (recursive), keys relative to the store's prefix, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError>;
    /// Ok when absent too.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
}

/// Opens the store. S3: builds the client and lists at most one key under the prefix, so
/// an unreachable endpoint, wrong credentials and a missing bucket fail here. Local: creates
/// the directory if needed.
pub async fn open(uri: &StorageUri) -> Result<Arc<dyn ObjectStore>, StorageError> {
    Ok(match &uri.backend {
        Backend::S3(_) => Arc::new(S3Store::open(uri).await?),
        Backend::Local { path, .. } => Arc::new(LocalStore::open(path).await?),
    })
}

/// Marks the temporary files of [`LocalStore`]; no key segment may contain it.
const TEMP_MARK: &str = ".sg-tmp-";

/// Checks that `key` names an object: relative, '/'-separated, no empty, `.` or `..`
/// segments.
pub(crate) fn check_key(key: &str) -> Result<(), StorageError> {
    let invalid = |reason: &str| {
        Err(StorageError::InvalidKey {
            key: key.to_string(),
            reason: reason.to_string(),
        })
    };
    if key.is_empty() {
        return invalid("empty");
    }
    if key.contains('\0') {
        return invalid("contains NUL");
    }
    for seg in key.split('/') {
        match seg {
            "" => return invalid("empty segment (leading, trailing or double '/')"),
            "." | ".." => return invalid("'.' and '..' segments are not allowed"),
            s if s.contains(TEMP_MARK) => return invalid("reserved for temporary files"),
            _ => {}
        }
    }
    Ok(())
}

/// `prefix` as a directory: `""` for everything, else `"p/"` (`p` and `p/` alike).
pub(crate) fn dir_prefix(prefix: &str) -> Result<String, StorageError> {
    let p = prefix.strip_suffix('/').unwrap_or(prefix);
    if p.is_empty() {
        return Ok(String::new());
    }
    check_key(p)?;
    Ok(format!("{p}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_relative_paths() {
        for ok in ["a", "a/b", "a.b/c-d_e", "backups/2024/x.json"] {
            check_key(ok).unwrap();
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "./a",
            "a/../b",
            "a/.sg-tmp-1",
            "a\0b",
        ] {
            let e = check_key(bad).unwrap_err();
            assert!(matches!(e, StorageError::InvalidKey { .. }), "{bad:?}: {e}");
        }
    }

    #[test]
    fn prefixes_are_directories() {
        assert_eq!(dir_prefix("").unwrap(), "");
        assert_eq!(dir_prefix("/").unwrap(), "");
        assert_eq!(dir_prefix("a").unwrap(), "a/");
        assert_eq!(dir_prefix("a/b/").unwrap(), "a/b/");
        assert!(dir_prefix("../a").is_err());
    }
}
