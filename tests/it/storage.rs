//! Object storage: one conformance suite run against `LocalStore` (a temporary directory) and
//! `S3Store` talking HTTP to a real `LocalS3` server; then the one-line errors of `open`.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use syncgate::local::LocalS3;
use syncgate::storage::{self, ObjectInfo, ObjectStore, StorageError, StorageUri, PART_SIZE};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

const ACCESS_KEY: &str = "syncgate-test";
/// Needs percent-encoding in a URI ('+', '/', '='), so the encoding is exercised too.
const SECRET: &str = "Sg+s3cr3t/Value=42";
/// How far the body reader may run ahead of what storage holds: two parts in memory.
const MAX_AHEAD: u64 = 2 * PART_SIZE as u64 + (1 << 20);

/// Bytes that the storage under test holds but has not published yet (temporary files,
/// multipart parts): the suite's view of what is not buffered in memory.
type Probe = Arc<dyn Fn() -> u64 + Send + Sync>;

async fn s3_server(dir: &Path) -> LocalS3 {
    let server = LocalS3::start(dir, ACCESS_KEY, SECRET)
        .await
        .expect("local S3");
    server.create_bucket("bucket").expect("bucket");
    server
}

fn uri(raw: &str) -> StorageUri {
    StorageUri::parse(raw).expect("uri")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = storage::open(&uri(&format!("local://{}", root.display())))
        .await
        .expect("open");
    let temp_root = root.clone();
    conformance(store, Arc::new(move || sum_files(&temp_root, ".sg-tmp-"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let server = s3_server(dir.path()).await;
    let store = storage::open(&uri(&server.uri("bucket")).join("dr/flow"))
        .await
        .expect("open");
    // Keys live under the prefix, as files of the server's bucket directory.
    store.put("probe", b"x".to_vec()).await.unwrap();
    assert!(dir.path().join("bucket/dr/flow/probe").is_file());
    store.delete("probe").await.unwrap();
    let root = dir.path().to_path_buf();
    conformance(
        store,
        Arc::new(move || sum_files(&root, ".upload_id-") + sum_files(&root, ".tmp.")),
    )
    .await;
}

/// The contract of `ObjectStore`, for any backend.
async fn conformance(store: Arc<dyn ObjectStore>, probe: Probe) {
    basic_operations(&*store).await;
    put_if_absent_has_one_winner(&store).await;
    large_upload_streams(&*store, &probe).await;
    failed_upload_leaves_nothing(&*store, &probe).await;
}

fn keys(list: &[ObjectInfo]) -> Vec<&str> {
    list.iter().map(|o| o.key.as_str()).collect()
}

async fn basic_operations(store: &dyn ObjectStore) {
    assert_eq!(store.list("").await.unwrap(), vec![]);
    store.put("a.txt", b"hello".to_vec()).await.unwrap();
    assert_eq!(
        store.get("a.txt").await.unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    let info = ObjectInfo {
        key: "a.txt".into(),
        size: 5,
    };
    assert_eq!(store.head("a.txt").await.unwrap(), Some(info));
    assert_eq!(store.get("missing").await.unwrap(), None);
    assert_eq!(store.head("missing").await.unwrap(), None);
    store.put("a.txt", b"hello again".to_vec()).await.unwrap();
    assert_eq!(store.get("a.txt").await.unwrap().unwrap(), b"hello again");
    store.put("empty", vec![]).await.unwrap();
    assert_eq!(store.get("empty").await.unwrap(), Some(vec![]));
    assert_eq!(store.head("empty").await.unwrap().unwrap().size, 0);

    for (key, body) in [
        ("dir/x", "1"),
        ("dir/sub/y", "22"),
        ("dir2/z", "333"),
        ("dira", "4"),
    ] {
        store.put(key, body.into()).await.unwrap();
    }
    let all = store.list("").await.unwrap();
    assert_eq!(
        keys(&all),
        ["a.txt", "dir/sub/y", "dir/x", "dir2/z", "dira", "empty"]
    );
    let dir = store.list("dir").await.unwrap();
    assert_eq!(
        dir,
        vec![
            ObjectInfo {
                key: "dir/sub/y".into(),
                size: 2
            },
            ObjectInfo {
                key: "dir/x".into(),
                size: 1
            },
        ]
    );
    assert_eq!(store.list("dir/").await.unwrap(), dir);
    assert_eq!(keys(&store.list("dir/sub").await.unwrap()), ["dir/sub/y"]);
    assert_eq!(store.list("nothing").await.unwrap(), vec![]);
    // A key is not a directory.
    assert_eq!(store.list("dira").await.unwrap(), vec![]);
    assert_eq!(store.get("dir").await.unwrap(), None);

    store.delete("dir/x").await.unwrap();
    store.delete("dir/x").await.unwrap();
    assert_eq!(store.get("dir/x").await.unwrap(), None);
    assert_eq!(keys(&store.list("dir").await.unwrap()), ["dir/sub/y"]);

    let bad = store.put("../escape", b"x".to_vec()).await.unwrap_err();
    assert!(matches!(bad, StorageError::InvalidKey { .. }), "{bad}");
    assert!(store.get("/abs").await.is_err());

    for o in store.list("").await.unwrap() {
        store.delete(&o.key).await.unwrap();
    }
    assert_eq!(store.list("").await.unwrap(), vec![]);
}

async fn put_if_absent_has_one_winner(store: &Arc<dyn ObjectStore>) {
    assert!(store
        .put_if_absent("locks/a", b"one".to_vec())
        .await
        .unwrap());
    assert!(!store
        .put_if_absent("locks/a", b"two".to_vec())
        .await
        .unwrap());
    assert_eq!(store.get("locks/a").await.unwrap().unwrap(), b"one");

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16u8 {
        let store = store.clone();
        tasks.spawn(async move {
            let won = store
                .put_if_absent("locks/race", vec![i; 1000])
                .await
                .unwrap();
            (i, won)
        });
    }
    let mut winners = vec![];
    while let Some(r) = tasks.join_next().await {
        let (i, won) = r.unwrap();
        if won {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let body = store.get("locks/race").await.unwrap().unwrap();
    assert_eq!(body, vec![winners[0]; 1000]);

    store.delete("locks/a").await.unwrap();
    assert!(store
        .put_if_absent("locks/a", b"three".to_vec())
        .await
        .unwrap());
    store.delete("locks/a").await.unwrap();
    store.delete("locks/race").await.unwrap();
}

async fn large_upload_streams(store: &dyn ObjectStore, probe: &Probe) {
    let len = 3 * PART_SIZE as u64 + 12_345;
    let ahead = Arc::new(AtomicU64::new(0));
    let body = Generated::new(len, None).watched(probe.clone(), ahead.clone());
    let written = store.upload("big/blob.bin", Box::pin(body)).await.unwrap();
    assert_eq!(written, len);
    let max_ahead = ahead.load(Ordering::Relaxed);
    assert!(
        max_ahead <= MAX_AHEAD,
        "the reader ran {max_ahead} bytes ahead of storage (limit {MAX_AHEAD})"
    );
    assert_eq!(store.head("big/blob.bin").await.unwrap().unwrap().size, len);
    assert_eq!(probe(), 0, "temporary files or parts left behind");

    let mut reader = store.download("big/blob.bin").await.unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut pos = 0u64;
    loop {
        let n = reader.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        for (i, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, byte_at(pos + i as u64), "byte {}", pos + i as u64);
        }
        pos += n as u64;
    }
    assert_eq!(pos, len);

    let missing = store
        .download("big/missing.bin")
        .await
        .err()
        .expect("NotFound");
    assert!(
        matches!(missing, StorageError::NotFound { .. }),
        "{missing}"
    );
    assert_eq!(missing.to_string(), "object 'big/missing.bin' not found");
    store.delete("big/blob.bin").await.unwrap();
}

async fn failed_upload_leaves_nothing(store: &dyn ObjectStore, probe: &Probe) {
    // Fails within the first part, and after two parts were sent.
    for fail_at in [1000, 2 * PART_SIZE as u64 + 5] {
        let body = Generated::new(4 * PART_SIZE as u64, Some(fail_at));
        let err = store
            .upload("broken.bin", Box::pin(body))
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("generator failed"), "{err}");
        assert_eq!(store.head("broken.bin").await.unwrap(), None);
        assert_eq!(store.list("").await.unwrap(), vec![]);
        assert_eq!(probe(), 0, "temporary files or parts left behind");
    }
}

/// A deterministic pseudo-random byte of a generated body.
fn byte_at(pos: u64) -> u8 {
    let mut x = (pos / 8).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    x.to_le_bytes()[(pos % 8) as usize]
}

/// A body made on the fly (never held in memory), optionally failing at `fail_at`; when
/// watched, records how far it ran ahead of the bytes storage holds.
struct Generated {
    len: u64,
    pos: u64,
    fail_at: Option<u64>,
    watch: Option<(Probe, Arc<AtomicU64>)>,
    next_check: u64,
}

impl Generated {
    fn new(len: u64, fail_at: Option<u64>) -> Generated {
        Generated {
            len,
            pos: 0,
            fail_at,
            watch: None,
            next_check: 0,
        }
    }

    fn watched(mut self, probe: Probe, ahead: Arc<AtomicU64>) -> Generated {
        self.watch = Some((probe, ahead));
        self
    }
}

impl AsyncRead for Generated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.fail_at.is_some_and(|f| this.pos >= f) {
            return Poll::Ready(Err(io::Error::other("generator failed")));
        }
        if let Some((probe, ahead)) = &this.watch {
            if this.pos >= this.next_check {
                let stored = probe();
                ahead.fetch_max(this.pos.saturating_sub(stored), Ordering::Relaxed);
                this.next_check = this.pos + (256 << 10);
            }
        }
        let end = this.fail_at.unwrap_or(u64::MAX).min(this.len);
        let n = (end - this.pos).min(buf.remaining() as u64).min(64 << 10) as usize;
        let bytes: Vec<u8> = (0..n as u64).map(|i| byte_at(this.pos + i)).collect();
        buf.put_slice(&bytes);
        this.pos += n as u64;
        Poll::Ready(Ok(()))
    }
}

/// Total size of the files under `dir` (recursively) whose name contains `mark`.
fn sum_files(dir: &Path, mark: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for e in entries.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            total += sum_files(&e.path(), mark);
        } else if e.file_name().to_string_lossy().contains(mark) {
            total += meta.len();
        }
    }
    total
}

/// `open`'s error for `raw`, checked to be one line that shows no secret.
async fn open_error(raw: &str) -> StorageError {
    let err = storage::open(&uri(raw)).await.expect_err("open must fail");
    let (line, debug) = (err.to_string(), format!("{err:?}"));
    assert!(!line.contains('\n'), "{line}");
    for secret in [SECRET, "Sg%2Bs3cr3t", "s3cr3t"] {
        assert!(
            !line.contains(secret) && !debug.contains(secret),
            "{line} / {debug}"
        );
    }
    let as_crate_error = syncgate::Error::from(err);
    assert_eq!(as_crate_error.to_string(), line);
    assert_eq!(as_crate_error.exit_code(), 2);
    match as_crate_error {
        syncgate::Error::Storage(e) => e,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_names_wrong_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let server = s3_server(dir.path()).await;
    let ep = server.endpoint();
    let shown = format!("s3://bucket?endpoint={ep}&force-path-style=true");
    for raw in [
        format!(
            "s3://bucket?access-key={ACCESS_KEY}&secret-access-key=Sg%2Bs3cr3t-wrong&endpoint={ep}"
        ),
        format!("s3://bucket?access-key=nobody&secret-access-key=Sg%2Bs3cr3t&endpoint={ep}"),
    ] {
        let err = open_error(&format!("{raw}&force-path-style=true")).await;
        assert!(matches!(err, StorageError::Credentials { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "{shown}: the credentials were rejected (check access-key, secret-access-key \
                 and session-token)"
            )
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_names_an_unreachable_endpoint() {
    let port = syncgate::local::free_port().unwrap();
    let raw = format!(
        "s3://bucket/p?access-key={ACCESS_KEY}&secret-access-key=Sg%2Bs3cr3t%2FValue%3D42\
         &endpoint=http://127.0.0.1:{port}"
    );
    let err = open_error(&raw).await;
    assert!(matches!(err, StorageError::Unreachable { .. }), "{err:?}");
    let line = err.to_string();
    let prefix = format!("cannot reach http://127.0.0.1:{port}: ");
    assert!(line.starts_with(&prefix), "{line}");
    assert!(line.to_lowercase().contains("refused"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_names_a_missing_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let server = s3_server(dir.path()).await;
    let err = open_error(&server.uri("no-such-bucket")).await;
    assert!(matches!(err, StorageError::NoBucket { .. }), "{err:?}");
    assert_eq!(err.to_string(), "bucket 'no-such-bucket' does not exist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_and_uris_never_show_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let server = s3_server(dir.path()).await;
    let u = uri(&server.uri("bucket"));
    assert!(
        u.expose_secret().contains("Sg%2Bs3cr3t"),
        "the exposed URI carries the secret"
    );
    let store = storage::open(&u).await.unwrap();
    let shown = [
        u.to_string(),
        format!("{u:?}"),
        u.redacted(),
        store.location(),
        format!("{store:?}"),
        format!("{server:?}"),
    ];
    for s in shown {
        assert!(!s.contains("s3cr3t"), "{s}");
    }
    assert_eq!(
        store.location(),
        format!(
            "s3://bucket?endpoint={}&force-path-style=true",
            server.endpoint()
        )
    );
    server.stop().await;
}

/// Without keys in the URI the AWS chain is asked; with nothing in the environment, the
/// error says where credentials can come from. (A machine with ambient AWS credentials
/// signs with them and gets them rejected by the local server instead.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_without_any_credentials_says_where_to_put_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = s3_server(dir.path()).await;
    let raw = format!("s3://bucket?endpoint={}", server.endpoint());
    let err = open_error(&raw).await;
    if matches!(err, StorageError::Credentials { .. }) {
        eprintln!("ambient AWS credentials found: the no-credentials case is not reachable");
        return;
    }
    assert!(matches!(err, StorageError::NoCredentials { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{raw}: no credentials (set access-key and secret-access-key in the URI, or \
             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an AWS profile)"
        )
    );
}
