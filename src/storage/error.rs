//! [`StorageError`]: what can go wrong with a storage location. Every message is one line,
//! names the location or key, and never contains a secret (URIs appear only redacted).

/// Errors of [`crate::storage`]. Converts into [`crate::Error`] (`Error::Storage`).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage URI cannot be parsed or uses something unsupported. `uri` is the part
    /// before the query (the query may hold secrets).
    #[error("invalid storage URI '{uri}': {reason}")]
    InvalidUri { uri: String, reason: String },
    /// A key is not a relative '/'-separated path (empty, absolute, `.` or `..` segments).
    #[error("invalid object key '{key}': {reason}")]
    InvalidKey { key: String, reason: String },
    /// The endpoint did not answer (refused, timed out, DNS, TLS).
    #[error("cannot reach {endpoint}: {cause}")]
    Unreachable { endpoint: String, cause: String },
    /// The server rejected the credentials (unknown access key, wrong secret, bad token).
    #[error(
        "{location}: the credentials were rejected (check access-key, secret-access-key and \
         session-token)"
    )]
    Credentials { location: String },
    /// No credentials in the URI and none in the environment or AWS profile.
    #[error(
        "{location}: no credentials (set access-key and secret-access-key in the URI, or \
         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an AWS profile)"
    )]
    NoCredentials { location: String },
    /// The bucket does not exist.
    #[error("bucket '{bucket}' does not exist")]
    NoBucket { bucket: String },
    /// The bucket lives in another region than the one configured.
    #[error("bucket '{bucket}' is in region {region}, not {configured} (add region={region})")]
    WrongRegion {
        bucket: String,
        region: String,
        configured: String,
    },
    /// An object that must exist does not.
    #[error("object '{key}' not found")]
    NotFound { key: String },
    /// A local file operation, or reading the body handed to an upload, failed.
    #[error("{action} {path}: {cause}")]
    Io {
        action: &'static str,
        path: String,
        cause: std::io::Error,
    },
    /// The object store answered with an error not covered above.
    #[error("{location}: {code}: {message}")]
    Service {
        location: String,
        code: String,
        message: String,
    },
    /// A background task panicked or was cancelled.
    #[error("{what} task: {cause}")]
    Task {
        what: &'static str,
        cause: tokio::task::JoinError,
    },
}

impl StorageError {
    /// `map_err` adapter for [`StorageError::Io`].
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<String>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |cause| StorageError::Io {
            action,
            path,
            cause,
        }
    }

    /// `map_err` adapter for [`StorageError::Task`].
    pub(crate) fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> Self {
        move |cause| StorageError::Task { what, cause }
    }
}
