//! What the playground gives the DR flow: a local S3 server ([`DetachedS3`] in `DIR/s3`,
//! bucket `backup` made up front, a random key pair per playground) and a ready DR config
//! (`playground-dr.toml` next to `playground.toml`): the upstream as `primary`, the
//! downstream as `secondary`, backups in `s3://backup/playground` on that server, or in
//! `local:///DIR/backups` without it.

use std::path::{Path, PathBuf};

use crate::local::{port_is_free, write_private, DetachedS3, LocalError, Result, S3Credentials};
use crate::storage::{encode_query_value as enc, StorageUri};

use super::DATABASE;

/// The seed runbook's MinIO port, the S3 server's default.
pub const DEFAULT_S3_PORT: u16 = 6060;
/// The bucket made up front.
pub const BUCKET: &str = "backup";
/// The prefix of the DR flow's objects in [`BUCKET`].
pub const PREFIX: &str = "playground";
/// The hidden subcommand of the syncgate binary that serves S3 (see
/// [`crate::local::DetachedS3::start`] for the arguments that follow it).
pub const S3_SERVER_SUBCOMMAND: [&str; 2] = ["playground", "s3-server"];

/// How [`super::up`] starts the S3 server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Options {
    /// The executable that serves S3 when given [`S3_SERVER_SUBCOMMAND`]: the syncgate
    /// binary (`std::env::current_exe()`).
    pub program: PathBuf,
    /// A fixed port (fails if taken). `None`: [`DEFAULT_S3_PORT`], or a free port when that
    /// one is taken.
    pub port: Option<u16>,
}

/// The S3 server's dir in the playground `dir`.
pub(super) fn s3_dir(dir: &Path) -> PathBuf {
    dir.join("s3")
}

/// Where backups go without the S3 server.
pub(super) fn local_backups(dir: &Path) -> PathBuf {
    dir.join("backups")
}

/// The DR config next to the check config: `NAME-dr.toml` for `NAME.toml`.
pub fn dr_config_path(config_path: &Path) -> PathBuf {
    let stem = config_path
        .file_stem()
        .map_or("playground".into(), |s| s.to_string_lossy());
    config_path.with_file_name(format!("{stem}-dr.toml"))
}

/// The port to ask for: the fixed one, else the default while it is free.
fn wanted_port(opts: &S3Options) -> Option<u16> {
    match opts.port {
        Some(port) => Some(port),
        None if port_is_free(DEFAULT_S3_PORT) => Some(DEFAULT_S3_PORT),
        None => {
            tracing::info!("port {DEFAULT_S3_PORT} is taken; the S3 server takes a free port");
            None
        }
    }
}

/// Whether the S3 server could not start because its fixed port is taken (checked before
/// anything starts).
pub(super) fn fixed_port_taken(opts: &S3Options) -> Option<u16> {
    opts.port.filter(|p| !port_is_free(*p))
}

/// The S3 server of the playground in `dir`: the running one, else a new one with bucket
/// [`BUCKET`]. Either way it is checked to answer with its key pair (a server started here
/// that does not is stopped again). Returns it and its key pair.
pub(super) async fn ensure_s3(dir: &Path, opts: &S3Options) -> Result<(DetachedS3, S3Credentials)> {
    let s3_dir = s3_dir(dir);
    let (server, started) = match DetachedS3::find(&s3_dir)? {
        Some(server) => {
            tracing::info!("S3 server already running on port {}", server.port);
            (server, false)
        }
        None => {
            crate::local::s3::create_bucket(&DetachedS3::root(&s3_dir), BUCKET)?;
            let port = wanted_port(opts);
            tracing::info!("starting the S3 server on port {}", port.unwrap_or(0));
            let program = &opts.program;
            let server = DetachedS3::start(program, &S3_SERVER_SUBCOMMAND, &s3_dir, port).await?;
            (server, true)
        }
    };
    let checked = async {
        let creds = S3Credentials::read(&DetachedS3::credentials_path(&s3_dir))?;
        check_answers(&server, &creds).await?;
        Ok::<_, LocalError>(creds)
    };
    match checked.await {
        Ok(creds) => Ok((server, creds)),
        Err(e) => {
            if started {
                let _ = DetachedS3::stop(&s3_dir).await;
            }
            Err(e)
        }
    }
}

/// Open the backup location as `dr` will: the server answers, accepts the key pair and has
/// the bucket.
async fn check_answers(server: &DetachedS3, creds: &S3Credentials) -> Result<()> {
    let uri = StorageUri::parse(&s3_uri(server.port, creds)).map_err(|e| s3_error(server, e))?;
    crate::storage::open(&uri)
        .await
        .map(drop)
        .map_err(|e| s3_error(server, e))
}

fn s3_error(server: &DetachedS3, e: crate::storage::StorageError) -> LocalError {
    LocalError::S3Server {
        root: DetachedS3::root(&server.dir),
        message: format!("port {} does not serve the playground: {e}", server.port),
    }
}

/// `s3://backup/playground?…` on the server on `port`, with the key pair.
pub fn s3_uri(port: u16, creds: &S3Credentials) -> String {
    format!(
        "s3://{BUCKET}/{PREFIX}?access-key={}&secret-access-key={}\
         &endpoint=http://127.0.0.1:{port}&force-path-style=true",
        enc(&creds.access_key),
        enc(&creds.secret_key),
    )
}

/// `local:///DIR/backups`.
pub fn local_uri(dir: &Path) -> String {
    StorageUri::local(&local_backups(dir)).expose_secret()
}

/// The `[data-sources.spare]` section `up --dr` appends to the DR config: the empty node
/// `dr reseed --new-primary spare` rebuilds.
pub fn spare_source(port: u16) -> String {
    format!(
        "\n# The spare node of `playground up --dr`, for `dr reseed --new-primary spare`.\n\
         [data-sources.spare]\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"root\"\n\
         password = \"\"\n"
    )
}

/// The DR config for a playground on these ports with backups in `backup_storage`.
pub fn render_dr_config(upstream_port: u16, downstream_port: u16, backup_storage: &str) -> String {
    let storage = toml::Value::String(backup_storage.to_string());
    // The binlog archive (`dr archive`, `dr replicate --with-archive`) beside the backups.
    let redo = match StorageUri::parse(backup_storage) {
        Ok(uri) => format!(
            "redo-storage = {}\n",
            toml::Value::String(uri.join("redo").expose_secret())
        ),
        Err(_) => String::new(),
    };
    format!(
        r#"# Generated by `syncgate playground up`: the DR flow from the playground's upstream
# (primary) to its downstream (secondary). Holds the storage credentials: keep it private.
check-thread-count = 4

[data-sources.primary]
host = "127.0.0.1"
port = {upstream_port}
user = "root"
password = ""

[data-sources.secondary]
host = "127.0.0.1"
port = {downstream_port}
user = "root"
password = ""

[dr]
primary = "primary"
secondary = "secondary"
backup-storage = {storage}
{redo}
[task]
output-dir = "./dr-output"
target-check-tables = ["{DATABASE}.*"]
"#
    )
}

/// Write the DR config to `path`, readable by the owner only (it holds the key pair).
pub(super) fn write_dr_config(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(LocalError::io("create", parent))?;
    }
    write_private(path, text)
}
