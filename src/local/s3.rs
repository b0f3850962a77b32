//! [`LocalS3`]: an S3-compatible HTTP server on 127.0.0.1 over a directory, for the
//! integration tests and the playground. Built on `s3s` (protocol, SigV4 authentication) and
//! `s3s-fs` (objects as files: bucket `b`, key `k` is `ROOT/b/k`; metadata and multipart
//! parts are dot-files in `ROOT`).
//!
//! Requests must be signed with the one access key and secret key the server was started
//! with; a wrong secret is answered `SignatureDoesNotMatch`, an unknown key
//! `InvalidAccessKeyId` (as S3 does).
//!
//! Where s3s-fs differs from S3 in ways a client would notice, [`AsS3`] corrects it:
//! - conditional writes: s3s-fs honours `If-None-Match: *` on `PutObject` and
//!   `CompleteMultipartUpload`, but checks for the object before it writes it, so two
//!   concurrent conditional writes could both succeed; they run one at a time here, which
//!   makes the check and the write atomic;
//! - a key that names a directory (`a` when `a/b` exists) is `NoSuchKey` for `GetObject` and
//!   `HeadObject`, not an internal error or a directory's size.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use hyper_util::rt::TokioIo;
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};
use s3s_fs::FileSystem;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use super::error::{LocalError, Result};

/// A running local S3 server; serves until [`LocalS3::stop`] or drop.
pub struct LocalS3 {
    root: PathBuf,
    addr: SocketAddr,
    access_key: String,
    secret_key: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LocalS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalS3")
            .field("root", &self.root)
            .field("addr", &self.addr)
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

impl LocalS3 {
    /// Serves `root` (created if missing) on a free port of 127.0.0.1, in this process.
    pub async fn start(root: &Path, access_key: &str, secret_key: &str) -> Result<LocalS3> {
        let service = service(root, access_key, secret_key).await?;
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|error| LocalError::NoFreePort { error })?;
        let addr = listener
            .local_addr()
            .map_err(|error| LocalError::NoFreePort { error })?;
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, service, async {
            let _ = rx.await;
        }));
        tracing::debug!(%addr, root = %root.display(), "local S3 server started");
        Ok(LocalS3 {
            root: root.to_path_buf(),
            addr,
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The directory served.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates bucket `name` (a directory under the root) if it does not exist.
    pub fn create_bucket(&self, name: &str) -> Result<()> {
        create_bucket(&self.root, name)
    }

    /// A storage URI for `bucket` on this server, credentials included (path-style, as
    /// S3-compatible servers need).
    pub fn uri(&self, bucket: &str) -> String {
        use crate::storage::encode_query_value as enc;
        format!(
            "s3://{bucket}?access-key={}&secret-access-key={}&endpoint={}&force-path-style=true",
            enc(&self.access_key),
            enc(&self.secret_key),
            self.endpoint()
        )
    }

    /// Stops accepting, closes every connection and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LocalS3 {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Serves `root` on 127.0.0.1:`port` until the process ends (for a detached playground
/// process).
pub async fn serve_forever(
    root: &Path,
    port: u16,
    access_key: &str,
    secret_key: &str,
) -> Result<()> {
    let service = service(root, access_key, secret_key).await?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::AddrInUse => LocalError::PortInUse { port },
            _ => LocalError::Io {
                action: "bind",
                path: PathBuf::from(format!("127.0.0.1:{port}")),
                error,
            },
        })?;
    tracing::info!(port, root = %root.display(), "local S3 server running");
    serve(listener, service, std::future::pending()).await;
    Ok(())
}

/// Creates bucket `name` under `root`.
pub fn create_bucket(root: &Path, name: &str) -> Result<()> {
    if !s3s::path::check_bucket_name(name) {
        return Err(LocalError::Options(format!("invalid bucket name '{name}'")));
    }
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).map_err(LocalError::io("create", &dir))
}

/// The S3 service over `root` with SigV4 authentication by one key pair.
async fn service(root: &Path, access_key: &str, secret_key: &str) -> Result<S3Service> {
    tokio::fs::create_dir_all(root)
        .await
        .map_err(LocalError::io("create", root))?;
    let fs = FileSystem::new(root).map_err(|e| LocalError::S3Server {
        root: root.to_path_buf(),
        message: format!("{e:?}"),
    })?;
    let mut builder = S3ServiceBuilder::new(AsS3 {
        fs,
        root: root.to_path_buf(),
        conditional: tokio::sync::Mutex::new(()),
    });
    builder.set_auth(OneKey {
        access_key: access_key.to_string(),
        secret_key: SecretKey::from(secret_key),
    });
    Ok(builder.build())
}

/// Accepts HTTP/1.1 connections until `shutdown` completes; connections end with it.
async fn serve(listener: TcpListener, service: S3Service, shutdown: impl Future<Output = ()>) {
    let mut conns = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    let service = service.clone();
                    conns.spawn(async move {
                        let conn = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(socket), service);
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "local S3 connection ended");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, say: wait instead of spinning.
                    tracing::warn!(error = %e, "local S3 server: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

/// One key pair; an unknown access key is `InvalidAccessKeyId`, as on S3 (s3s's
/// `SimpleAuth` answers `NotSignedUp`).
struct OneKey {
    access_key: String,
    secret_key: SecretKey,
}

#[async_trait::async_trait]
impl S3Auth for OneKey {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if access_key == self.access_key {
            Ok(self.secret_key.clone())
        } else {
            Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            ))
        }
    }
}

/// s3s-fs corrected where it differs from S3 (see the module docs).
struct AsS3 {
    fs: FileSystem,
    root: PathBuf,
    conditional: tokio::sync::Mutex<()>,
}

impl AsS3 {
    /// `NoSuchKey` when `bucket`/`key` is a directory.
    async fn not_a_directory(&self, bucket: &str, key: &str) -> S3Result<()> {
        let path = self.root.join(bucket).join(key);
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_dir() => Err(s3_error!(NoSuchKey)),
            _ => Ok(()),
        }
    }
}

/// The future type `#[async_trait]` gives the methods of [`S3`].
type S3Future<'a, T> = Pin<Box<dyn Future<Output = S3Result<S3Response<T>>> + Send + 'a>>;

/// Forwards S3 operations to s3s-fs unchanged.
macro_rules! forward {
    ($($op:ident($input:ident) -> $output:ident;)*) => {$(
        fn $op<'life0, 'async_trait>(
            &'life0 self,
            req: S3Request<dto::$input>,
        ) -> S3Future<'async_trait, dto::$output>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            self.fs.$op(req)
        }
    )*};
}

#[async_trait::async_trait]
impl S3 for AsS3 {
    forward! {
        create_bucket(CreateBucketInput) -> CreateBucketOutput;
        delete_bucket(DeleteBucketInput) -> DeleteBucketOutput;
        head_bucket(HeadBucketInput) -> HeadBucketOutput;
        list_buckets(ListBucketsInput) -> ListBucketsOutput;
        get_bucket_location(GetBucketLocationInput) -> GetBucketLocationOutput;
        list_objects(ListObjectsInput) -> ListObjectsOutput;
        list_objects_v2(ListObjectsV2Input) -> ListObjectsV2Output;
        copy_object(CopyObjectInput) -> CopyObjectOutput;
        delete_object(DeleteObjectInput) -> DeleteObjectOutput;
        delete_objects(DeleteObjectsInput) -> DeleteObjectsOutput;
        create_multipart_upload(CreateMultipartUploadInput) -> CreateMultipartUploadOutput;
        upload_part(UploadPartInput) -> UploadPartOutput;
        upload_part_copy(UploadPartCopyInput) -> UploadPartCopyOutput;
        list_parts(ListPartsInput) -> ListPartsOutput;
        abort_multipart_upload(AbortMultipartUploadInput) -> AbortMultipartUploadOutput;
    }

    async fn get_object(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        self.not_a_directory(&req.input.bucket, &req.input.key)
            .await?;
        self.fs.get_object(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        self.not_a_directory(&req.input.bucket, &req.input.key)
            .await?;
        self.fs.head_object(req).await
    }

    async fn put_object(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let _one_at_a_time = match req.input.if_none_match {
            Some(_) => Some(self.conditional.lock().await),
            None => None,
        };
        self.fs.put_object(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        let _one_at_a_time = match req.input.if_none_match {
            Some(_) => Some(self.conditional.lock().await),
            None => None,
        };
        self.fs.complete_multipart_upload(req).await
    }
}
