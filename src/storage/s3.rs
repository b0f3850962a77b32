//! [`S3Store`]: a bucket and prefix on S3 or an S3-compatible server (aws-sdk-s3, HTTPS
//! through rustls with ring).
//!
//! - Credentials: `access-key`/`secret-access-key`/`session-token` from the URI, else the
//!   default AWS chain (environment, profile, web identity, container, instance metadata;
//!   SSO profiles are not supported).
//! - Region: `region`, else `us-east-1` when an `endpoint` is given, else the AWS chain,
//!   else `us-east-1`. A bucket in another region is named in the error.
//! - With an `endpoint`, path-style addressing is the default (`force-path-style`, as BR)
//!   and checksums are sent and checked only where an operation requires them: many
//!   S3-compatible servers reject the SDK's default trailing checksums.
//! - Small bodies (below one part) are one `PutObject`; larger ones a multipart upload of
//!   8 MiB parts, the next part read while the previous one is sent.

use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ObjectCannedAcl, ServerSideEncryption, StorageClass,
};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use tokio::io::AsyncReadExt;

use super::uri::{Backend, S3Params};
use super::{check_key, dir_prefix, ObjectInfo, ObjectStore, Reader, StorageError, StorageUri};

/// Part size of multipart uploads.
pub const PART_SIZE: usize = 8 << 20;
/// S3's limit on the parts of one upload.
const MAX_PARTS: i32 = 10_000;
/// Region used when none is configured anywhere.
const DEFAULT_REGION: &str = "us-east-1";
/// How often a conditional put is retried when S3 reports a concurrent conditional write
/// (409 `ConditionalRequestConflict`).
const CONFLICT_RETRIES: u32 = 5;

/// Error codes meaning the credentials themselves were rejected.
const CREDENTIAL_CODES: [&str; 6] = [
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidClientTokenId",
];

/// A bucket and prefix on S3. `Debug` shows the redacted location only.
pub struct S3Store {
    client: Client,
    bucket: String,
    /// `""` or `"prefix/"`.
    prefix: String,
    /// The redacted URI.
    location: String,
    /// The endpoint requests go to, for messages.
    endpoint: String,
    region: String,
    writes: WriteOptions,
}

/// Settings applied to every `PutObject` and `CreateMultipartUpload`.
#[derive(Clone, Default)]
struct WriteOptions {
    storage_class: Option<StorageClass>,
    sse: Option<ServerSideEncryption>,
    sse_kms_key_id: Option<String>,
    acl: Option<ObjectCannedAcl>,
}

impl WriteOptions {
    fn from_params(p: &S3Params) -> WriteOptions {
        WriteOptions {
            storage_class: p.storage_class.as_deref().map(StorageClass::from),
            sse: p.sse.as_deref().map(ServerSideEncryption::from),
            sse_kms_key_id: p.sse_kms_key_id.clone(),
            acl: p.acl.as_deref().map(ObjectCannedAcl::from),
        }
    }
}

/// Applies [`WriteOptions`] to a `PutObject` or `CreateMultipartUpload` builder.
macro_rules! with_write_options {
    ($builder:expr, $o:expr) => {
        $builder
            .set_storage_class($o.storage_class.clone())
            .set_server_side_encryption($o.sse.clone())
            .set_ssekms_key_id($o.sse_kms_key_id.clone())
            .set_acl($o.acl.clone())
    };
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// Builds the client for an `s3://` URI and lists at most one key under its prefix, so
    /// an unreachable endpoint, rejected credentials and a missing bucket fail here.
    pub async fn open(uri: &StorageUri) -> Result<S3Store, StorageError> {
        let Backend::S3(s3) = &uri.backend else {
            return Err(StorageError::InvalidUri {
                uri: uri.redacted(),
                reason: "not an s3:// URI".into(),
            });
        };
        let (client, region) = client(&s3.params).await;
        let endpoint = match &s3.params.endpoint {
            Some(e) => e.clone(),
            None => format!("https://s3.{region}.amazonaws.com"),
        };
        let store = S3Store {
            client,
            bucket: s3.bucket.clone(),
            prefix: if s3.prefix.is_empty() {
                String::new()
            } else {
                format!("{}/", s3.prefix)
            },
            location: uri.redacted(),
            endpoint,
            region,
            writes: WriteOptions::from_params(&s3.params),
        };
        store.probe().await?;
        Ok(store)
    }

    /// One `ListObjectsV2` of at most one key: checks endpoint, credentials and bucket.
    async fn probe(&self) -> Result<(), StorageError> {
        self.client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// The full object key of `key`.
    fn full(&self, key: &str) -> Result<String, StorageError> {
        check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    /// Maps an SDK error onto a one-line [`StorageError`].
    fn error<E>(&self, err: SdkError<E, HttpResponse>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        if matches!(
            err,
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)
        ) {
            if has_source::<aws_credential_types::provider::error::CredentialsError>(&err) {
                return StorageError::NoCredentials {
                    location: self.location.clone(),
                };
            }
            return StorageError::Unreachable {
                endpoint: self.endpoint.clone(),
                cause: root_cause(&err),
            };
        }
        let status = err.raw_response().map(|r| r.status().as_u16());
        let bucket_region = err
            .raw_response()
            .and_then(|r| r.headers().get("x-amz-bucket-region"))
            .filter(|r| *r != self.region);
        if let (Some(region), Some(301 | 400)) = (bucket_region, status) {
            return StorageError::WrongRegion {
                bucket: self.bucket.clone(),
                region: region.to_string(),
                configured: self.region.clone(),
            };
        }
        match err.code() {
            Some(code) if CREDENTIAL_CODES.contains(&code) => StorageError::Credentials {
                location: self.location.clone(),
            },
            Some("NoSuchBucket") => StorageError::NoBucket {
                bucket: self.bucket.clone(),
            },
            code => StorageError::Service {
                location: self.location.clone(),
                code: match (code, status) {
                    (Some(c), _) => c.to_string(),
                    (None, Some(s)) => format!("HTTP {s}"),
                    (None, None) => "request failed".to_string(),
                },
                message: match (err.message(), &err) {
                    (Some(m), _) => m.to_string(),
                    (None, SdkError::ServiceError(_)) => "no message".to_string(),
                    (None, _) => root_cause(&err),
                },
            },
        }
    }

    /// Sends one part; its ETag.
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        data: Vec<u8>,
    ) -> Result<CompletedPart, StorageError> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| self.error(e))?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag)
            .build())
    }

    /// Sends `first` and the rest of `body` as parts; the parts and the bytes sent.
    async fn send_parts(
        &self,
        key: &str,
        upload_id: &str,
        first: Vec<u8>,
        body: &mut Reader,
        shown_key: &str,
    ) -> Result<(Vec<CompletedPart>, u64), StorageError> {
        let mut parts = Vec::new();
        let mut total = 0u64;
        let mut current = first;
        loop {
            let number = parts.len() as i32 + 1;
            let len = current.len() as u64;
            let (sent, next) = tokio::join!(
                self.upload_part(key, upload_id, number, current),
                read_part(body, shown_key)
            );
            parts.push(sent?);
            total += len;
            current = next?;
            if current.is_empty() {
                return Ok((parts, total));
            }
            if number >= MAX_PARTS {
                return Err(StorageError::Service {
                    location: self.location.clone(),
                    code: "TooManyParts".into(),
                    message: format!(
                        "{shown_key}: more than {MAX_PARTS} parts of {PART_SIZE} bytes"
                    ),
                });
            }
        }
    }

    /// A multipart upload of `first` and the rest of `body`; aborted on error, and on drop
    /// in the background.
    async fn multipart(
        &self,
        key: &str,
        first: Vec<u8>,
        mut body: Reader,
        shown_key: &str,
    ) -> Result<u64, StorageError> {
        let created = with_write_options!(self.client.create_multipart_upload(), self.writes)
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        let upload_id = created.upload_id.unwrap_or_default();
        let guard = AbortOnDrop {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            upload_id: Some(upload_id.clone()),
        };
        let sent = self
            .send_parts(key, &upload_id, first, &mut body, shown_key)
            .await;
        let result = match sent {
            Ok((parts, total)) => self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(|_| total)
                .map_err(|e| self.error(e)),
            Err(e) => Err(e),
        };
        if result.is_err() {
            guard.abort().await;
        } else {
            guard.disarm();
        }
        result
    }

    /// A `PutObject` of `body`, with `If-None-Match: *` when `if_absent`.
    async fn put_object(
        &self,
        key: &str,
        body: Vec<u8>,
        if_absent: bool,
    ) -> Result<(), SdkError<aws_sdk_s3::operation::put_object::PutObjectError, HttpResponse>> {
        with_write_options!(self.client.put_object(), self.writes)
            .bucket(&self.bucket)
            .key(key)
            .set_if_none_match(if_absent.then(|| "*".to_string()))
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
    }
}

/// Aborts a multipart upload that was neither completed nor aborted (the upload future was
/// dropped), in the background; uncompleted parts are invisible but cost storage.
struct AbortOnDrop {
    client: Client,
    bucket: String,
    key: String,
    upload_id: Option<String>,
}

impl AbortOnDrop {
    fn disarm(mut self) {
        self.upload_id = None;
    }

    async fn abort(mut self) {
        if let Some(id) = self.upload_id.take() {
            abort_upload(&self.client, &self.bucket, &self.key, &id).await;
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(id) = self.upload_id.take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, bucket, key) = (self.client.clone(), self.bucket.clone(), self.key.clone());
        rt.spawn(async move { abort_upload(&client, &bucket, &key, &id).await });
    }
}

async fn abort_upload(client: &Client, bucket: &str, key: &str, upload_id: &str) {
    let aborted = client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await;
    if let Err(e) = aborted {
        tracing::warn!(
            bucket,
            key,
            upload_id,
            error = %DisplayErrorContext(&e),
            "cannot abort a multipart upload; its parts stay until a lifecycle rule removes them"
        );
    }
}

/// Reads up to one part from `body` (fewer bytes only at its end; empty at the end).
async fn read_part(body: &mut Reader, shown_key: &str) -> Result<Vec<u8>, StorageError> {
    let mut buf = vec![0u8; PART_SIZE];
    let mut filled = 0;
    while filled < PART_SIZE {
        let n = body
            .read(&mut buf[filled..])
            .await
            .map_err(StorageError::io("read the body of", shown_key))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Builds the client; also returns the region it uses.
async fn client(p: &S3Params) -> (Client, String) {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .build(),
        );
    let region = p
        .region
        .clone()
        .or_else(|| p.endpoint.as_ref().map(|_| DEFAULT_REGION.to_string()));
    if let Some(r) = &region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let (Some(ak), Some(sk)) = (&p.access_key, &p.secret_access_key) {
        let creds = Credentials::new(ak, sk, p.session_token.clone(), None, "storage URI");
        loader = loader.credentials_provider(creds);
    }
    let sdk = loader.load().await;
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| DEFAULT_REGION.to_string());
    let mut conf = aws_sdk_s3::config::Builder::from(&sdk).region(Region::new(region.clone()));
    if let Some(e) = &p.endpoint {
        conf = conf
            .endpoint_url(e)
            .force_path_style(p.force_path_style.unwrap_or(true))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    } else {
        conf = conf.force_path_style(p.force_path_style.unwrap_or(false));
    }
    (Client::from_conf(conf.build()), region)
}

/// Whether `T` is in `err`'s source chain.
fn has_source<T: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<T>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The innermost message of `err`'s source chain (e.g. "Connection refused (os error
/// 111)"), which is what a reader needs; the layers above say "dispatch failure".
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Whether `err` is a 404 for the object (not for the bucket).
fn is_missing_object<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    err.raw_response().map(|r| r.status().as_u16()) == Some(404)
        && err.code() != Some("NoSuchBucket")
}

fn body_error(key: &str) -> impl FnOnce(aws_sdk_s3::primitives::ByteStreamError) -> StorageError {
    let key = key.to_string();
    move |e| StorageError::Io {
        action: "read object",
        path: key,
        cause: std::io::Error::other(e),
    }
}

#[async_trait::async_trait]
impl ObjectStore for S3Store {
    fn location(&self) -> String {
        self.location.clone()
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StorageError> {
        let full = self.full(key)?;
        self.put_object(&full, body, false)
            .await
            .map_err(|e| self.error(e))
    }

    /// `PutObject` with `If-None-Match: *`: S3 (since 2024), MinIO and the local test
    /// server answer 412 when the key exists. A server that ignores the header would let
    /// every caller win; those are not supported for locks.
    async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> Result<bool, StorageError> {
        let full = self.full(key)?;
        let mut attempt = 0;
        loop {
            let err = match self.put_object(&full, body.clone(), true).await {
                Ok(()) => return Ok(true),
                Err(e) => e,
            };
            let status = err.raw_response().map(|r| r.status().as_u16());
            match status {
                Some(412) => return Ok(false),
                Some(409) if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
                _ => return Err(self.error(err)),
            }
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let full = self.full(key)?;
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_missing_object(&e) => return Ok(None),
            Err(e) => return Err(self.error(e)),
        };
        let data = out.body.collect().await.map_err(body_error(key))?;
        Ok(Some(data.into_bytes().to_vec()))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let full = self.full(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectInfo {
                key: key.to_string(),
                size: out.content_length.unwrap_or(0).max(0) as u64,
            })),
            Err(e) if is_missing_object(&e) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn upload(&self, key: &str, mut body: Reader) -> Result<u64, StorageError> {
        let full = self.full(key)?;
        let first = read_part(&mut body, key).await?;
        if first.len() < PART_SIZE {
            let len = first.len() as u64;
            self.put_object(&full, first, false)
                .await
                .map_err(|e| self.error(e))?;
            return Ok(len);
        }
        self.multipart(&full, first, body, key).await
    }

    async fn download(&self, key: &str) -> Result<Reader, StorageError> {
        let full = self.full(key)?;
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(out) => Ok(Box::pin(out.body.into_async_read())),
            Err(e) if is_missing_object(&e) => Err(StorageError::NotFound {
                key: key.to_string(),
            }),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let under = format!("{}{}", self.prefix, dir_prefix(prefix)?);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&under)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error(e))?;
            for obj in page.contents() {
                let Some(key) = obj.key().and_then(|k| k.strip_prefix(&self.prefix)) else {
                    continue;
                };
                // Folder markers made by consoles are not objects here.
                if key.ends_with('/') {
                    continue;
                }
                out.push(ObjectInfo {
                    key: key.to_string(),
                    size: obj.size().unwrap_or(0).max(0) as u64,
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let full = self.full(key)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing_object(&e) => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }
}
