//! `syncgate playground up|down|status|drift`: a local upstream/downstream pair of MariaDB
//! servers holding identical sysbench-shaped data, and a local S3 server, for trying syncgate
//! and its DR flow out and for demos.
//!
//! - [`up`] starts two detached servers (`DIR/upstream`, server id 1, port 3307 and
//!   `DIR/downstream`, server id 2, port 3308) with binlogs and `--gtid-strict-mode=ON`, loads
//!   `sbtest.sbtest1..N` with the same deterministic rows on both sides
//!   ([`crate::testdata`]), starts the S3 server (`DIR/s3`, port 6060; see [`S3Options`]),
//!   and writes a sync-diff-inspector style config, the DR config next to it ([`dr`]) and
//!   `DIR/state.json`.
//! - [`down`] stops them (SHUTDOWN; the S3 server SIGTERM) and optionally removes their data.
//! - [`status`] reports each server: running, port, pid, `@@gtid_binlog_pos`, row counts; and
//!   the S3 server.
//! - [`inject_drift`] makes the downstream differ in a known way (with `sql_log_bin = 0`) and
//!   returns the ground truth.
//! - [`load_target`] names the upstream and its tables for a write load
//!   ([`crate::testdata::load`]).
//!
//! The servers outlive the process that started them; they are found again through their
//! pid files (see [`crate::local::DetachedServer`], [`crate::local::DetachedS3`]). No
//! command-line parsing happens here.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};

use crate::local::{absolute, conn_opts, connect, mariadbd_available, port_is_free};
use crate::local::{DetachedS3, DetachedServer, LocalError, LocalServer, Result, ServerOptions};
use crate::schema::TableRef;
use crate::testdata::{self, sbtest_tables, seed_sbtest};
// The database the playground creates on both servers, and the types of `inject_drift`.
pub use crate::testdata::{DriftReport, DriftSpec, TableDrift, DATABASE};
pub use dr::{dr_config_path, render_dr_config, S3Options, DEFAULT_S3_PORT, S3_SERVER_SUBCOMMAND};

pub mod dr;

/// The two servers, in order.
pub const ROLES: [&str; 2] = ["upstream", "downstream"];
/// The third server of `up --dr`: empty, for `dr reseed --new-primary spare`.
pub const SPARE: &str = "spare";

/// Options for [`up`].
#[derive(Debug, Clone)]
pub struct PlaygroundOptions {
    /// Where the servers and `state.json` live (default `./.playground`).
    pub dir: PathBuf,
    /// Number of `sbtestN` tables (default 4).
    pub tables: u32,
    /// Rows per table (default 100 000).
    pub rows: u64,
    /// Seed of the row generator.
    pub seed: u64,
    /// Where the generated config goes (default `configs/playground.toml`).
    pub config_path: PathBuf,
    /// Upstream port (default 3307).
    pub upstream_port: u16,
    /// Downstream port (default 3308).
    pub downstream_port: u16,
    /// The S3 server to start; `None`: none, and the DR config keeps backups in
    /// `DIR/backups`.
    pub s3: Option<S3Options>,
    /// `up --dr`: also an empty spare server on this port, the node `dr reseed` rebuilds
    /// (`[data-sources.spare]` in the DR config).
    pub spare_port: Option<u16>,
}

impl Default for PlaygroundOptions {
    fn default() -> Self {
        PlaygroundOptions {
            dir: PathBuf::from(".playground"),
            tables: 4,
            rows: 100_000,
            seed: 0,
            config_path: PathBuf::from("configs/playground.toml"),
            upstream_port: 3307,
            downstream_port: 3308,
            s3: None,
            spare_port: None,
        }
    }
}

/// What [`up`] did.
#[derive(Debug, Clone)]
pub struct UpReport {
    /// Both servers were already running; nothing was done.
    pub already_running: bool,
    /// Data was loaded (false when restarting servers whose data dirs already hold `sbtest`).
    pub seeded: bool,
    /// Time spent starting servers.
    pub start_elapsed: Duration,
    /// Time spent loading data.
    pub load_elapsed: Duration,
    /// Total time.
    pub elapsed: Duration,
    /// The config written (None when already running).
    pub config_path: Option<PathBuf>,
    /// The DR config written (None when already running).
    pub dr_config_path: Option<PathBuf>,
    pub status: PlaygroundStatus,
    /// The `(tables, rows per table)` asked for; only a new playground is seeded with them.
    pub requested: (u32, u64),
}

impl UpReport {
    /// When data was kept and it is not the shape asked for: a line saying the request was
    /// not applied and how to reseed, instead of ignoring it silently.
    pub fn unapplied_note(&self) -> Option<String> {
        if self.seeded {
            return None;
        }
        let held = &self.status.servers.first()?.tables;
        let (tables, rows) = self.requested;
        let near = |n: u64| n.abs_diff(rows) <= rows / 10 + 10;
        if held.len() == tables as usize && held.iter().all(|(_, n)| near(*n)) {
            return None;
        }
        let first = held.first().map(|(_, n)| *n).unwrap_or(0);
        Some(format!(
            "note: the playground keeps its existing data ({} table(s), {first} rows in the \
             first), not the {tables} x {rows} asked for; to reseed, run `syncgate playground \
             down --purge` and then `up` again",
            held.len()
        ))
    }
}

impl fmt::Display for UpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.already_running {
            writeln!(f, "playground is already up")?;
            if let Some(note) = self.unapplied_note() {
                writeln!(f, "{note}")?;
            }
        } else {
            write!(
                f,
                "playground up in {:.1?} (servers {:.1?}",
                self.elapsed, self.start_elapsed
            )?;
            if self.seeded {
                write!(f, ", data {:.1?}", self.load_elapsed)?;
            } else {
                write!(f, ", existing data kept")?;
            }
            writeln!(f, ")")?;
            if let Some(note) = self.unapplied_note() {
                writeln!(f, "{note}")?;
            }
            if let Some(p) = &self.config_path {
                writeln!(f, "config: {}", p.display())?;
            }
            if let Some(p) = &self.dr_config_path {
                writeln!(f, "DR config: {}", p.display())?;
            }
        }
        write!(f, "{}", self.status)
    }
}

/// Contents of `DIR/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlaygroundState {
    pub upstream: ServerState,
    pub downstream: ServerState,
    pub database: String,
    pub tables: u32,
    pub rows: u64,
    pub seed: u64,
    pub config_path: PathBuf,
    /// The S3 server (`dir` is its `DIR/s3`), if one was started.
    #[serde(default)]
    pub s3: Option<ServerState>,
    /// The DR config.
    #[serde(default)]
    pub dr_config_path: Option<PathBuf>,
    /// The spare server of `up --dr`.
    #[serde(default)]
    pub spare: Option<ServerState>,
}

/// One server in [`PlaygroundState`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerState {
    pub port: u16,
    pub pid: u32,
    pub dir: PathBuf,
}

impl PlaygroundState {
    fn server(&self, role: &str) -> Option<&ServerState> {
        match role {
            "upstream" => Some(&self.upstream),
            "downstream" => Some(&self.downstream),
            _ => self.spare.as_ref(),
        }
    }
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// Read `DIR/state.json` (None if absent).
pub fn read_state(dir: &Path) -> Result<Option<PlaygroundState>> {
    let path = state_path(dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|error| LocalError::State { path, error }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LocalError::io("read", &path)(e)),
    }
}

fn write_state(dir: &Path, state: &PlaygroundState) -> Result<()> {
    let path = state_path(dir);
    let text = serde_json::to_string_pretty(state).map_err(|error| LocalError::State {
        path: path.clone(),
        error,
    })?;
    std::fs::write(&path, text + "\n").map_err(LocalError::io("write", &path))
}

/// The sync-diff-inspector style config for a playground on these ports.
pub fn render_config(upstream_port: u16, downstream_port: u16) -> String {
    format!(
        r#"# Generated by `syncgate playground up`.
check-thread-count = 4
export-fix-sql = true
check-struct-only = false

[data-sources.upstream]
host = "127.0.0.1"
port = {upstream_port}
user = "root"
password = ""

[data-sources.downstream]
host = "127.0.0.1"
port = {downstream_port}
user = "root"
password = ""

[task]
output-dir = "./output"
source-instances = ["upstream"]
target-instance = "downstream"
target-check-tables = ["{DATABASE}.*"]
"#
    )
}

fn server_options(role: &str, dir: &Path, port: u16) -> ServerOptions {
    let server_id = match role {
        "upstream" => 1,
        "downstream" => 2,
        _ => 3,
    };
    ServerOptions {
        server_id: Some(server_id),
        log_bin: true,
        extra_args: vec!["--gtid-strict-mode=ON".into()],
        port: Some(port),
        data_dir: Some(dir.join(role)),
    }
}

/// What runs before [`up`] starts anything.
struct Running {
    servers: [Option<DetachedServer>; 2],
    s3: Option<DetachedS3>,
}

/// Start the playground (see the module docs). Does nothing if both servers and the S3
/// server (unless `opts.s3` is `None`) already run; otherwise starts what does not run.
pub async fn up(opts: &PlaygroundOptions) -> Result<UpReport> {
    let t0 = Instant::now();
    let dir = absolute(&opts.dir)?;
    let running = Running {
        servers: [
            DetachedServer::find(&dir.join(ROLES[0]))?,
            DetachedServer::find(&dir.join(ROLES[1]))?,
        ],
        s3: DetachedS3::find(&dr::s3_dir(&dir))?,
    };
    let spare_running = DetachedServer::find(&dir.join(SPARE))?;
    if running.servers.iter().all(Option::is_some)
        && (opts.s3.is_none() || running.s3.is_some())
        && (opts.spare_port.is_none() || spare_running.is_some())
    {
        tracing::info!("playground in {} is already up", dir.display());
        return Ok(UpReport {
            already_running: true,
            seeded: false,
            start_elapsed: Duration::ZERO,
            load_elapsed: Duration::ZERO,
            elapsed: t0.elapsed(),
            config_path: None,
            dr_config_path: None,
            status: status(&dir).await?,
            requested: (opts.tables, opts.rows),
        });
    }
    check_can_start(opts, &running)?;
    std::fs::create_dir_all(&dir).map_err(LocalError::io("create", &dir))?;

    let servers = start_servers(&dir, opts, &running.servers).await?;
    let s3 = match &opts.s3 {
        None => None,
        Some(s3_opts) => match dr::ensure_s3(&dir, s3_opts).await {
            Ok(s3) => Some(s3),
            Err(e) => {
                stop_started(&dir, &running.servers, false).await;
                return Err(e);
            }
        },
    };
    let spare = match (opts.spare_port, spare_running) {
        (None, _) => None,
        (Some(_), Some(s)) => Some((s.port, s.pid)),
        (Some(port), None) => {
            tracing::info!("starting {SPARE} on port {port}");
            match LocalServer::start_detached(server_options(SPARE, &dir, port)).await {
                Ok(server) => Some((server.port(), server.pid())),
                Err(e) => {
                    stop_started(&dir, &running.servers, running.s3.is_none()).await;
                    return Err(LocalError::role(SPARE)(e));
                }
            }
        }
    };
    let start_elapsed = t0.elapsed();
    tracing::info!("servers ready in {start_elapsed:.2?}");

    let t_load = Instant::now();
    let seeded = match seed_unless_present(opts, [servers[0].0, servers[1].0]).await {
        Ok(seeded) => seeded,
        Err(e) => {
            stop_started(&dir, &running.servers, running.s3.is_none()).await;
            return Err(e);
        }
    };
    let load_elapsed = t_load.elapsed();

    let (config_path, dr_config_path) = write_config_and_state(&dir, opts, servers, s3, spare)?;
    Ok(UpReport {
        already_running: false,
        seeded,
        start_elapsed,
        load_elapsed,
        elapsed: t0.elapsed(),
        config_path: Some(config_path),
        dr_config_path: Some(dr_config_path),
        status: status(&dir).await?,
        requested: (opts.tables, opts.rows),
    })
}

/// Refuse options that cannot work, and ports (of servers to start) that are taken, before
/// anything starts.
fn check_can_start(opts: &PlaygroundOptions, running: &Running) -> Result<()> {
    if opts.upstream_port == opts.downstream_port {
        return Err(LocalError::Options(format!(
            "upstream and downstream need different ports (both are {})",
            opts.upstream_port
        )));
    }
    if opts.tables == 0 {
        return Err(LocalError::Options(
            "the playground needs at least one table".into(),
        ));
    }
    if !mariadbd_available() {
        return Err(LocalError::MissingBinaries);
    }
    let ports = [opts.upstream_port, opts.downstream_port];
    for (i, role) in ROLES.into_iter().enumerate() {
        if running.servers[i].is_none() && !port_is_free(ports[i]) {
            let port = ports[i];
            return Err(LocalError::role(role)(LocalError::PortInUse { port }));
        }
    }
    let s3_taken = opts.s3.as_ref().and_then(dr::fixed_port_taken);
    if let (None, Some(port)) = (&running.s3, s3_taken) {
        return Err(LocalError::role("s3")(LocalError::PortInUse { port }));
    }
    Ok(())
}

/// Start the servers that are not `running` (concurrently); `(port, pid)` of both. On failure
/// the servers started here are stopped again: no half playground is left behind.
async fn start_servers(
    dir: &Path,
    opts: &PlaygroundOptions,
    running: &[Option<DetachedServer>; 2],
) -> Result<[(u16, u32); 2]> {
    let ports = [opts.upstream_port, opts.downstream_port];
    let start_role = |i: usize| {
        let role = ROLES[i];
        let already = running[i].clone();
        let opts = server_options(role, dir, ports[i]);
        async move {
            if let Some(s) = already {
                tracing::info!("{role} already running on port {} (pid {})", s.port, s.pid);
                return Ok::<_, LocalError>((s.port, s.pid));
            }
            tracing::info!("starting {role} on port {}", ports[i]);
            let server = LocalServer::start_detached(opts)
                .await
                .map_err(LocalError::role(role))?;
            Ok((server.port(), server.pid()))
            // Dropping a detached handle leaves the server running.
        }
    };
    match tokio::join!(start_role(0), start_role(1)) {
        (Ok(a), Ok(b)) => Ok([a, b]),
        (a, b) => {
            stop_started(dir, running, false).await;
            Err(a.err().or(b.err()).expect("one side failed"))
        }
    }
}

/// Stop the servers that were not `running` before [`up`] (no-op for those that are not up),
/// and the S3 server with `s3`.
async fn stop_started(dir: &Path, running: &[Option<DetachedServer>; 2], s3: bool) {
    for (i, role) in ROLES.into_iter().enumerate() {
        if running[i].is_none() {
            let _ = DetachedServer::stop(&dir.join(role)).await;
        }
    }
    if s3 {
        let _ = DetachedS3::stop(&dr::s3_dir(dir)).await;
    }
}

/// Load the data unless both servers already hold the database (restart of a stopped
/// playground). Returns whether data was loaded.
async fn seed_unless_present(opts: &PlaygroundOptions, ports: [u16; 2]) -> Result<bool> {
    let mut have_db = true;
    for port in ports {
        let mut conn = connect(port).await?;
        let n: Option<String> = conn
            .exec_first(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name = ?",
                (DATABASE,),
            )
            .await
            .map_err(|e| query_err(port, "list databases", e))?;
        have_db &= n.is_some();
        let _ = conn.disconnect().await;
    }
    if have_db {
        tracing::info!("{DATABASE} already exists on both servers; keeping the data");
        return Ok(false);
    }
    tracing::info!(
        "loading {} tables x {} rows into {DATABASE} on both servers",
        opts.tables,
        opts.rows
    );
    let t_load = Instant::now();
    let targets = ports.map(conn_opts);
    seed_sbtest(&targets, opts.tables, opts.rows, opts.seed).await?;
    tracing::info!("data loaded in {:.2?}", t_load.elapsed());
    Ok(true)
}

/// Write the generated configs and `DIR/state.json` for `servers` (`(port, pid)` of upstream
/// and downstream) and the S3 server; returns the paths of the config and the DR config.
fn write_config_and_state(
    dir: &Path,
    opts: &PlaygroundOptions,
    servers: [(u16, u32); 2],
    s3: Option<(DetachedS3, crate::local::S3Credentials)>,
    spare: Option<(u16, u32)>,
) -> Result<(PathBuf, PathBuf)> {
    let [(up_port, up_pid), (down_port, down_pid)] = servers;
    let config_path = opts.config_path.clone();
    if let Some(parent) = config_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(LocalError::io("create", parent))?;
    }
    std::fs::write(&config_path, render_config(up_port, down_port))
        .map_err(LocalError::io("write", &config_path))?;
    let backup_storage = match &s3 {
        Some((server, creds)) => dr::s3_uri(server.port, creds),
        None => dr::local_uri(dir),
    };
    let dr_config_path = dr_config_path(&config_path);
    let dr_config = render_dr_config(up_port, down_port, &backup_storage)
        + &spare
            .map(|(port, _)| dr::spare_source(port))
            .unwrap_or_default();
    dr::write_dr_config(&dr_config_path, &dr_config)?;
    let state = PlaygroundState {
        upstream: ServerState {
            port: up_port,
            pid: up_pid,
            dir: dir.join("upstream"),
        },
        downstream: ServerState {
            port: down_port,
            pid: down_pid,
            dir: dir.join("downstream"),
        },
        database: DATABASE.into(),
        tables: opts.tables,
        rows: opts.rows,
        seed: opts.seed,
        config_path: absolute(&config_path)?,
        s3: s3.map(|(server, _)| ServerState {
            port: server.port,
            pid: server.pid,
            dir: server.dir,
        }),
        dr_config_path: Some(absolute(&dr_config_path)?),
        spare: spare.map(|(port, pid)| ServerState {
            port,
            pid,
            dir: dir.join(SPARE),
        }),
    };
    write_state(dir, &state)?;
    tracing::info!(
        "wrote {}, {} and {}",
        config_path.display(),
        dr_config_path.display(),
        state_path(dir).display()
    );
    Ok((config_path, dr_config_path))
}

/// What [`down`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownReport {
    /// Roles that were running and were stopped.
    pub stopped: Vec<String>,
    /// Whether the data was removed.
    pub purged: bool,
}

impl fmt::Display for DownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.stopped.is_empty() {
            write!(f, "playground was not running")?;
        } else {
            write!(f, "stopped {}", self.stopped.join(", "))?;
        }
        if self.purged {
            write!(f, "; data removed")?;
        }
        Ok(())
    }
}

/// Stop both servers (SHUTDOWN, waiting for exit) and the S3 server (SIGTERM). With `purge`,
/// remove their data dirs (the S3 server's with its key pair), the local backups of a
/// playground without S3 and `state.json` (and `dir` itself if that leaves it empty);
/// nothing else in `dir` is touched. The generated configs are kept.
pub async fn down(dir: &Path, purge: bool) -> Result<DownReport> {
    let dir = absolute(dir)?;
    let stop = |role: &'static str| {
        let d = dir.join(role);
        async move {
            let was = DetachedServer::stop(&d)
                .await
                .map_err(LocalError::role(role))?;
            if was {
                tracing::info!("stopped {role}");
            }
            Ok::<_, LocalError>(was.then(|| role.to_string()))
        }
    };
    let s3_dir = dr::s3_dir(&dir);
    let stop_s3 = async {
        let was = DetachedS3::stop(&s3_dir)
            .await
            .map_err(LocalError::role("s3"))?;
        if was {
            tracing::info!("stopped the S3 server");
        }
        Ok::<_, LocalError>(was.then(|| "s3".to_string()))
    };
    // An archiver of the playground's flow first: it reads the primary's binlog.
    let dr_config = read_state(&dir)?.and_then(|s| s.dr_config_path);
    let archivers = match &dr_config {
        Some(cfg) => stop_archivers(cfg).await,
        None => 0,
    };
    let (a, b, c) = tokio::join!(stop(ROLES[0]), stop(ROLES[1]), stop_s3);
    let spare = stop(SPARE).await;
    let mut stopped: Vec<String> = [a?, b?, c?, spare?].into_iter().flatten().collect();
    if archivers > 0 {
        stopped.push(format!("dr archive ({archivers})"));
    }
    if purge {
        let data = [
            dir.join(ROLES[0]),
            dir.join(ROLES[1]),
            dir.join(SPARE),
            s3_dir,
            dr::local_backups(&dir),
        ];
        for d in &data {
            if d.exists() {
                std::fs::remove_dir_all(d).map_err(LocalError::io("remove", d))?;
            }
        }
        let _ = std::fs::remove_file(state_path(&dir));
        let _ = std::fs::remove_dir(&dir); // only if empty
        tracing::info!("removed playground data in {}", dir.display());
    }
    Ok(DownReport {
        stopped,
        purged: purge,
    })
}

/// SIGTERM every `syncgate dr archive` started on the DR config `config` (found by its
/// command line), and wait up to 30 s for each to write what is complete and exit;
/// returns how many there were.
async fn stop_archivers(config: &Path) -> usize {
    let Ok(config) = std::fs::canonicalize(config) else {
        return 0;
    };
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Some(args) = crate::local::read_cmdline(pid) else {
            continue;
        };
        let archive = args.windows(2).any(|w| w[0] == "dr" && w[1] == "archive");
        // `-C PATH` / `--config PATH`, relative to the process's own working directory.
        let cwd = std::fs::read_link(entry.path().join("cwd")).unwrap_or_default();
        let ours = args.windows(2).any(|w| {
            (w[0] == "-C" || w[0] == "--config")
                && std::fs::canonicalize(cwd.join(&w[1])).is_ok_and(|p| p == config)
        });
        if archive && ours && pid != std::process::id() {
            pids.push(pid);
        }
    }
    for &pid in &pids {
        tracing::info!("stopping dr archive (pid {pid})");
        crate::local::signal(pid, "TERM");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    // Until gone, or zombies their parents have not reaped yet.
    while pids.iter().any(|&p| crate::local::process_alive(p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pids.len()
}

/// One server in [`PlaygroundStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    pub role: String,
    pub running: bool,
    pub port: Option<u16>,
    pub pid: Option<u32>,
    pub gtid_binlog_pos: Option<String>,
    /// `(table, rows)` of `sbtest`, in table-number order.
    pub tables: Vec<(String, u64)>,
    /// Why the server could not be queried, if it runs but did not answer.
    pub error: Option<String>,
}

/// What [`status`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaygroundStatus {
    pub dir: PathBuf,
    pub servers: Vec<ServerStatus>,
    /// The S3 server, when one runs or the state records one.
    pub s3: Option<S3Status>,
}

/// The S3 server in [`PlaygroundStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Status {
    pub running: bool,
    pub port: Option<u16>,
    pub pid: Option<u32>,
    /// The directory it serves.
    pub root: PathBuf,
}

impl fmt::Display for S3Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = self.port.map_or("-".to_string(), |p| p.to_string());
        match self.pid.filter(|_| self.running) {
            Some(pid) => write!(
                f,
                "  {:<10}  running  port {port}  pid {pid}  s3://{}/{}, data in {}",
                "s3",
                dr::BUCKET,
                dr::PREFIX,
                self.root.display()
            ),
            None => write!(f, "  {:<10}  stopped  port {port}", "s3"),
        }
    }
}

impl PlaygroundStatus {
    /// Both servers run.
    pub fn is_up(&self) -> bool {
        !self.servers.is_empty() && self.servers.iter().all(|s| s.running)
    }

    pub fn server(&self, role: &str) -> Option<&ServerStatus> {
        self.servers.iter().find(|s| s.role == role)
    }
}

impl fmt::Display for PlaygroundStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "playground {}", self.dir.display())?;
        for s in &self.servers {
            let port = s.port.map_or("-".to_string(), |p| p.to_string());
            if s.running {
                writeln!(
                    f,
                    "  {:<10}  running  port {port}  pid {}  gtid {}",
                    s.role,
                    s.pid.map_or("-".to_string(), |p| p.to_string()),
                    s.gtid_binlog_pos
                        .as_deref()
                        .map(|g| if g.is_empty() { "(empty)" } else { g })
                        .unwrap_or("?"),
                )?;
            } else {
                writeln!(f, "  {:<10}  stopped  port {port}", s.role)?;
            }
            if let Some(e) = &s.error {
                writeln!(f, "    error: {e}")?;
            }
            for (t, n) in &s.tables {
                writeln!(f, "    {DATABASE}.{t:<12} {n:>10} rows")?;
            }
        }
        if let Some(s3) = &self.s3 {
            writeln!(f, "{s3}")?;
        }
        Ok(())
    }
}

/// Describe both servers of the playground in `dir`.
pub async fn status(dir: &Path) -> Result<PlaygroundStatus> {
    let dir = absolute(dir)?;
    let state = read_state(&dir)?;
    let mut servers = Vec::new();
    let spare = dir.join(SPARE).exists().then_some(SPARE);
    for role in ROLES.into_iter().chain(spare) {
        let found = DetachedServer::find(&dir.join(role))?;
        let mut st = ServerStatus {
            role: role.to_string(),
            running: found.is_some(),
            port: found
                .as_ref()
                .map(|s| s.port)
                .or_else(|| state.as_ref().and_then(|s| s.server(role)).map(|s| s.port)),
            pid: found.as_ref().map(|s| s.pid),
            gtid_binlog_pos: None,
            tables: Vec::new(),
            error: None,
        };
        if let Some(s) = found {
            match describe(s.port).await {
                Ok((gtid, tables)) => {
                    st.gtid_binlog_pos = Some(gtid);
                    st.tables = tables;
                }
                Err(e) => st.error = Some(e.to_string()),
            }
        }
        servers.push(st);
    }
    let s3 = s3_status(&dir, state.as_ref())?;
    Ok(PlaygroundStatus { dir, servers, s3 })
}

/// The S3 server of the playground in `dir`: the running one, else the one `state` records.
fn s3_status(dir: &Path, state: Option<&PlaygroundState>) -> Result<Option<S3Status>> {
    let s3_dir = dr::s3_dir(dir);
    let found = DetachedS3::find(&s3_dir)?;
    let recorded = state.and_then(|s| s.s3.as_ref());
    if found.is_none() && recorded.is_none() {
        return Ok(None);
    }
    Ok(Some(S3Status {
        running: found.is_some(),
        port: found.as_ref().map(|s| s.port).or(recorded.map(|s| s.port)),
        pid: found.as_ref().map(|s| s.pid),
        root: DetachedS3::root(&s3_dir),
    }))
}

async fn describe(port: u16) -> Result<(String, Vec<(String, u64)>)> {
    let mut conn = connect(port).await?;
    let gtid: String = conn
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .map_err(|e| query_err(port, "SELECT @@gtid_binlog_pos", e))?
        .unwrap_or_default();
    let mut tables = Vec::new();
    for t in sbtest_tables(&mut conn, &format!("127.0.0.1:{port}")).await? {
        let sql = format!("SELECT COUNT(*) FROM `{DATABASE}`.`{t}`");
        let n: u64 = conn
            .query_first(&sql)
            .await
            .map_err(|e| query_err(port, &sql, e))?
            .unwrap_or(0);
        tables.push((t, n));
    }
    let _ = conn.disconnect().await;
    Ok((gtid, tables))
}

fn query_err(port: u16, sql: &str, e: mysql_async::Error) -> LocalError {
    LocalError::query(&format!("127.0.0.1:{port}"), sql)(e)
}

/// Where `syncgate playground load` writes: the upstream of the playground in `dir` and its
/// `sbtest` tables.
pub async fn load_target(dir: &Path) -> Result<(mysql_async::Opts, Vec<TableRef>)> {
    let dir = absolute(dir)?;
    let role = ROLES[0];
    let (Some(state), Some(server)) = (read_state(&dir)?, DetachedServer::find(&dir.join(role))?)
    else {
        return Err(LocalError::NotRunning { role, dir });
    };
    let opts = conn_opts(server.port);
    let mut conn = connect(server.port).await?;
    let tables = sbtest_tables(&mut conn, &crate::local::addr(&opts)).await?;
    let _ = conn.disconnect().await;
    if tables.is_empty() {
        return Err(LocalError::Options(format!(
            "the playground upstream has no tables in {}",
            state.database
        )));
    }
    let tables = tables
        .into_iter()
        .map(|t| TableRef::new(&state.database, t))
        .collect();
    Ok((opts, tables))
}

/// Make the downstream of the playground in `dir` differ from the upstream, with
/// [`testdata::inject_drift`] (deterministic, nothing reaches the binlog), and return the
/// ground truth.
pub async fn inject_drift(dir: &Path, spec: &DriftSpec) -> Result<DriftReport> {
    let dir = absolute(dir)?;
    let mut sides = Vec::new();
    for role in ROLES {
        match DetachedServer::find(&dir.join(role))? {
            Some(s) => sides.push(conn_opts(s.port)),
            None => return Err(LocalError::NotRunning { role, dir }),
        }
    }
    testdata::inject_drift(&sides[0], &sides[1], spec).await
}

#[cfg(test)]
mod tests;
