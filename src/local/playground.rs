//! `syncgate playground up|down|status|drift`: a local upstream/downstream pair of MariaDB
//! servers holding identical sysbench-shaped data, for trying syncgate out and for demos.
//!
//! - [`up`] starts two detached servers (`DIR/upstream`, server id 1, port 3307 and
//!   `DIR/downstream`, server id 2, port 3308) with binlogs and `--gtid-strict-mode=ON`, loads
//!   `sbtest.sbtest1..N` with the same deterministic rows on both sides, and writes a
//!   sync-diff-inspector style config plus `DIR/state.json`.
//! - [`down`] stops them (SHUTDOWN) and optionally removes their data.
//! - [`status`] reports each server: running, port, pid, `@@gtid_binlog_pos`, row counts.
//! - [`inject_drift`] makes the downstream differ in a known way (with `sql_log_bin = 0`) and
//!   returns the ground truth.
//!
//! The servers outlive the process that started them; they are found again through their
//! pid files (see [`crate::local::DetachedServer`]). No command-line parsing happens here.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde::{Deserialize, Serialize};

use super::error::{LocalError, Result};
use super::server::{self, DetachedServer, LocalServer, ServerOptions};
use super::{absolute, addr, conn_opts, connect, connect_to};

/// The database the playground creates on both servers.
pub const DATABASE: &str = "sbtest";
/// Rows per multi-row INSERT statement.
const BATCH_ROWS: u64 = 1000;
/// The two servers, in order.
pub const ROLES: [&str; 2] = ["upstream", "downstream"];

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
    pub status: PlaygroundStatus,
}

impl fmt::Display for UpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.already_running {
            writeln!(f, "playground is already up")?;
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
            if let Some(p) = &self.config_path {
                writeln!(f, "config: {}", p.display())?;
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
}

/// One server in [`PlaygroundState`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerState {
    pub port: u16,
    pub pid: u32,
    pub dir: PathBuf,
}

impl PlaygroundState {
    fn server(&self, role: &str) -> &ServerState {
        if role == "upstream" {
            &self.upstream
        } else {
            &self.downstream
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
    ServerOptions {
        server_id: Some(if role == "upstream" { 1 } else { 2 }),
        log_bin: true,
        extra_args: vec!["--gtid-strict-mode=ON".into()],
        port: Some(port),
        data_dir: Some(dir.join(role)),
    }
}

/// Start the playground (see the module docs). Does nothing if both servers already run.
pub async fn up(opts: &PlaygroundOptions) -> Result<UpReport> {
    let t0 = Instant::now();
    let dir = absolute(&opts.dir)?;
    let running = [
        DetachedServer::find(&dir.join(ROLES[0]))?,
        DetachedServer::find(&dir.join(ROLES[1]))?,
    ];
    if running.iter().all(Option::is_some) {
        tracing::info!("playground in {} is already up", dir.display());
        return Ok(UpReport {
            already_running: true,
            seeded: false,
            start_elapsed: Duration::ZERO,
            load_elapsed: Duration::ZERO,
            elapsed: t0.elapsed(),
            config_path: None,
            status: status(&dir).await?,
        });
    }
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
    if !server::mariadbd_available() {
        return Err(LocalError::MissingBinaries);
    }
    let ports = [opts.upstream_port, opts.downstream_port];
    // Check every port we are about to use before starting anything.
    for (i, role) in ROLES.into_iter().enumerate() {
        if running[i].is_none() && !server::port_is_free(ports[i]) {
            let port = ports[i];
            return Err(LocalError::role(role)(LocalError::PortInUse { port }));
        }
    }
    std::fs::create_dir_all(&dir).map_err(LocalError::io("create", &dir))?;

    // Start what is not running (concurrently).
    let start_role = |i: usize| {
        let role = ROLES[i];
        let already = running[i].clone();
        let opts = server_options(role, &dir, ports[i]);
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
    let (a, b) = tokio::join!(start_role(0), start_role(1));
    let (up_srv, down_srv) = match (a, b) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            // Do not leave half a playground behind.
            for (i, r) in [&a, &b].into_iter().enumerate() {
                if r.is_ok() && running[i].is_none() {
                    let _ = DetachedServer::stop(&dir.join(ROLES[i])).await;
                }
            }
            return Err(a.err().or(b.err()).expect("one side failed"));
        }
    };
    let start_elapsed = t0.elapsed();
    tracing::info!("servers ready in {start_elapsed:.2?}");

    // Seed unless both sides already hold the database (restart of a stopped playground).
    let targets = [up_srv.0, down_srv.0];
    let mut have_db = Vec::new();
    for port in targets {
        let mut conn = connect(port).await?;
        let n: Option<String> = conn
            .exec_first(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name = ?",
                (DATABASE,),
            )
            .await
            .map_err(|e| query_err(port, "list databases", e))?;
        have_db.push(n.is_some());
        let _ = conn.disconnect().await;
    }
    let t_load = Instant::now();
    let seeded = !have_db.iter().all(|x| *x);
    if seeded {
        tracing::info!(
            "loading {} tables x {} rows into {DATABASE} on both servers",
            opts.tables,
            opts.rows
        );
        let conn_opts: Vec<mysql_async::Opts> = targets.iter().map(|p| conn_opts(*p)).collect();
        if let Err(e) = seed_sbtest(&conn_opts, opts.tables, opts.rows, opts.seed).await {
            for (i, role) in ROLES.iter().enumerate() {
                if running[i].is_none() {
                    let _ = DetachedServer::stop(&dir.join(role)).await;
                }
            }
            return Err(e);
        }
        tracing::info!("data loaded in {:.2?}", t_load.elapsed());
    } else {
        tracing::info!("{DATABASE} already exists on both servers; keeping the data");
    }
    let load_elapsed = t_load.elapsed();

    // Config and state.
    let config_path = opts.config_path.clone();
    if let Some(parent) = config_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(LocalError::io("create", parent))?;
    }
    std::fs::write(&config_path, render_config(up_srv.0, down_srv.0))
        .map_err(LocalError::io("write", &config_path))?;
    let state = PlaygroundState {
        upstream: ServerState {
            port: up_srv.0,
            pid: up_srv.1,
            dir: dir.join("upstream"),
        },
        downstream: ServerState {
            port: down_srv.0,
            pid: down_srv.1,
            dir: dir.join("downstream"),
        },
        database: DATABASE.into(),
        tables: opts.tables,
        rows: opts.rows,
        seed: opts.seed,
        config_path: absolute(&config_path)?,
    };
    write_state(&dir, &state)?;
    tracing::info!(
        "wrote {} and {}",
        config_path.display(),
        state_path(&dir).display()
    );

    Ok(UpReport {
        already_running: false,
        seeded,
        start_elapsed,
        load_elapsed,
        elapsed: t0.elapsed(),
        config_path: Some(config_path),
        status: status(&dir).await?,
    })
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

/// Stop both servers (SHUTDOWN, waiting for exit). With `purge`, remove their data dirs and
/// `state.json` (and `dir` itself if that leaves it empty); nothing else in `dir` is touched.
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
    let (a, b) = tokio::join!(stop(ROLES[0]), stop(ROLES[1]));
    let stopped: Vec<String> = [a?, b?].into_iter().flatten().collect();
    if purge {
        for role in ROLES {
            let d = dir.join(role);
            if d.exists() {
                std::fs::remove_dir_all(&d).map_err(LocalError::io("remove", &d))?;
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
        Ok(())
    }
}

/// Describe both servers of the playground in `dir`.
pub async fn status(dir: &Path) -> Result<PlaygroundStatus> {
    let dir = absolute(dir)?;
    let state = read_state(&dir)?;
    let mut servers = Vec::new();
    for role in ROLES {
        let found = DetachedServer::find(&dir.join(role))?;
        let mut st = ServerStatus {
            role: role.to_string(),
            running: found.is_some(),
            port: found
                .as_ref()
                .map(|s| s.port)
                .or_else(|| state.as_ref().map(|s| s.server(role).port)),
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
    Ok(PlaygroundStatus { dir, servers })
}

async fn describe(port: u16) -> Result<(String, Vec<(String, u64)>)> {
    let mut conn = connect(port).await?;
    let gtid: String = conn
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .map_err(|e| query_err(port, "SELECT @@gtid_binlog_pos", e))?
        .unwrap_or_default();
    let mut tables = Vec::new();
    for t in list_tables(&mut conn, port).await? {
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

/// Base tables of `sbtest`, ordered by their numeric suffix (`sbtest2` before `sbtest10`).
async fn list_tables(conn: &mut Conn, port: u16) -> Result<Vec<String>> {
    let sql = "SELECT table_name FROM information_schema.tables \
               WHERE table_schema = ? AND table_type = 'BASE TABLE'";
    let mut names: Vec<String> = conn
        .exec(sql, (DATABASE,))
        .await
        .map_err(|e| query_err(port, sql, e))?;
    names.sort_by_key(|n| table_sort_key(n));
    Ok(names)
}

fn table_sort_key(name: &str) -> (String, u64, String) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, num) = name.split_at(name.len() - digits);
    (stem.to_string(), num.parse().unwrap_or(0), name.to_string())
}

// ---------------------------------------------------------------------------------------------
// Data generation and loading.

/// splitmix64: a tiny, fast, seedable PRNG (deterministic across platforms and versions).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)` (`n > 0`; the modulo bias is negligible for our ranges).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// The generator seed of one table (`table` is 1-based).
fn table_seed(seed: u64, table: u32) -> u64 {
    SplitMix64::new(seed ^ (u64::from(table)).wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

/// One sysbench row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbRow {
    pub id: i64,
    pub k: i64,
    pub c: String,
    pub pad: String,
}

/// `groups` groups of 11 random digits joined by '-' (sysbench's `c` has 10, `pad` 5).
fn digit_groups(rng: &mut SplitMix64, groups: usize, out: &mut String) {
    use std::fmt::Write;
    for g in 0..groups {
        if g > 0 {
            out.push('-');
        }
        let _ = write!(out, "{:011}", rng.below(100_000_000_000));
    }
}

/// Generate the next row (id `id`) of a table of `rows` rows.
fn next_row(rng: &mut SplitMix64, id: i64, rows: u64) -> SbRow {
    let k = 1 + rng.below(rows.max(1)) as i64;
    let mut c = String::with_capacity(119);
    digit_groups(rng, 10, &mut c);
    let mut pad = String::with_capacity(59);
    digit_groups(rng, 5, &mut pad);
    SbRow { id, k, c, pad }
}

/// The rows of table `sbtest<table>` (1-based) for `seed`: ids `1..=rows`, the same on every
/// call.
pub fn sbtest_rows(seed: u64, table: u32, rows: u64) -> impl Iterator<Item = SbRow> {
    let mut rng = SplitMix64::new(table_seed(seed, table));
    (1..=rows).map(move |id| next_row(&mut rng, id as i64, rows))
}

/// `CREATE TABLE` of `sbtest<n>` (with `KEY k_1`).
pub fn sbtest_ddl(table: u32) -> String {
    format!(
        "CREATE TABLE `sbtest{table}` (\n  \
         id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,\n  \
         k INT NOT NULL DEFAULT 0,\n  \
         c CHAR(120) NOT NULL DEFAULT '',\n  \
         pad CHAR(60) NOT NULL DEFAULT '',\n  \
         KEY k_1 (k)\n) ENGINE=InnoDB"
    )
}

/// Append `(id,k,'c','pad')` to a VALUES list. Generated strings are digits and dashes only.
fn push_values(sql: &mut String, row: &SbRow) {
    use std::fmt::Write;
    let _ = write!(sql, "({},{},'{}','{}')", row.id, row.k, row.c, row.pad);
}

/// Create `sbtest` (if needed) and (re)create `sbtest1..=tables` with `rows` identical rows on
/// every target. Tables and targets load concurrently, one connection each, with multi-row
/// INSERTs of 1000 rows in one transaction per table, `unique_checks` and `foreign_key_checks`
/// off. Binlogs stay on, so a replica of the server would receive the same rows.
pub async fn seed_sbtest(
    targets: &[mysql_async::Opts],
    tables: u32,
    rows: u64,
    seed: u64,
) -> Result<()> {
    for opts in targets {
        let mut conn = connect_to(opts).await?;
        let sql = format!(
            "CREATE DATABASE IF NOT EXISTS `{DATABASE}` \
             CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        );
        conn.query_drop(&sql)
            .await
            .map_err(LocalError::query(&addr(opts), &sql))?;
        let _ = conn.disconnect().await;
    }
    let mut set = tokio::task::JoinSet::new();
    for opts in targets {
        for table in 1..=tables {
            set.spawn(load_table(opts.clone(), table, rows, seed));
        }
    }
    let mut first_err = None;
    while let Some(res) = set.join_next().await {
        let res = res.map_err(LocalError::task("load")).and_then(|r| r);
        if let Err(e) = res {
            if first_err.is_none() {
                first_err = Some(e);
                set.abort_all();
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

async fn load_table(opts: mysql_async::Opts, table: u32, rows: u64, seed: u64) -> Result<()> {
    let where_ = addr(&opts);
    let mut conn = connect_to(&opts).await?;
    let name = format!("sbtest{table}");
    let run = |sql: &str| LocalError::query(&where_, sql);
    let ddl = sbtest_ddl(table);
    let setup = format!(
        "SET SESSION unique_checks = 0, foreign_key_checks = 0; \
         USE `{DATABASE}`; DROP TABLE IF EXISTS `{name}`; {ddl}"
    );
    conn.query_drop(&setup).await.map_err(run(&setup))?;
    conn.query_drop("START TRANSACTION")
        .await
        .map_err(run("START TRANSACTION"))?;
    let mut gen = sbtest_rows(seed, table, rows);
    let prefix = format!("INSERT INTO `{name}` (id, k, c, pad) VALUES ");
    let mut loaded = 0u64;
    while loaded < rows {
        let n = BATCH_ROWS.min(rows - loaded);
        let mut sql = String::with_capacity(prefix.len() + n as usize * 200);
        sql.push_str(&prefix);
        for i in 0..n {
            if i > 0 {
                sql.push(',');
            }
            push_values(&mut sql, &gen.next().expect("generator yields `rows` rows"));
        }
        conn.query_drop(&sql).await.map_err(run(&sql))?;
        loaded += n;
    }
    conn.query_drop("COMMIT").await.map_err(run("COMMIT"))?;
    let _ = conn.disconnect().await;
    tracing::debug!("{where_}: loaded {DATABASE}.{name} ({rows} rows)");
    Ok(())
}

fn query_err(port: u16, sql: &str, e: mysql_async::Error) -> LocalError {
    LocalError::query(&format!("127.0.0.1:{port}"), sql)(e)
}

// ---------------------------------------------------------------------------------------------
// Drift.

/// How much drift [`inject_drift`] applies to *each* table of the downstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftSpec {
    /// Rows deleted from the downstream (missing there).
    pub missing: u64,
    /// Rows inserted into the downstream only, with ids beyond both sides' maximum.
    pub extra: u64,
    /// Rows whose `c` is changed on the downstream.
    pub changed: u64,
    /// Seed choosing the rows and the new values.
    pub seed: u64,
}

impl Default for DriftSpec {
    fn default() -> Self {
        DriftSpec {
            missing: 5,
            extra: 5,
            changed: 5,
            seed: 1,
        }
    }
}

/// Ground truth for one table: the primary keys that now differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDrift {
    /// `sbtest.sbtestN`.
    pub table: String,
    /// Ids deleted from the downstream, ascending.
    pub missing: Vec<i64>,
    /// Ids inserted into the downstream only, ascending.
    pub extra: Vec<i64>,
    /// Ids whose `c` differs, ascending.
    pub changed: Vec<i64>,
}

impl TableDrift {
    /// Total differing rows.
    pub fn total(&self) -> usize {
        self.missing.len() + self.extra.len() + self.changed.len()
    }
}

/// What [`inject_drift`] changed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DriftReport {
    pub tables: Vec<TableDrift>,
}

impl DriftReport {
    pub fn missing(&self) -> usize {
        self.tables.iter().map(|t| t.missing.len()).sum()
    }
    pub fn extra(&self) -> usize {
        self.tables.iter().map(|t| t.extra.len()).sum()
    }
    pub fn changed(&self) -> usize {
        self.tables.iter().map(|t| t.changed.len()).sum()
    }
    pub fn table(&self, name: &str) -> Option<&TableDrift> {
        self.tables.iter().find(|t| t.table == name)
    }
}

impl fmt::Display for DriftReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<20} {:>8} {:>8} {:>8}",
            "table", "missing", "extra", "changed"
        )?;
        for t in &self.tables {
            writeln!(
                f,
                "{:<20} {:>8} {:>8} {:>8}",
                t.table,
                t.missing.len(),
                t.extra.len(),
                t.changed.len()
            )?;
        }
        write!(
            f,
            "{:<20} {:>8} {:>8} {:>8}",
            "total",
            self.missing(),
            self.extra(),
            self.changed()
        )
    }
}

/// Make the downstream of the playground in `dir` differ from the upstream: in every `sbtest`
/// table, delete `spec.missing` rows, insert `spec.extra` rows and change `c` in
/// `spec.changed` rows, with `sql_log_bin = 0` (nothing reaches the binlog). Deterministic
/// for a given spec and data. Deleted and changed rows are distinct and chosen among rows
/// present on the downstream with ids not above the upstream maximum, so the returned ground
/// truth is exact when the two sides were identical before the call.
pub async fn inject_drift(dir: &Path, spec: &DriftSpec) -> Result<DriftReport> {
    let dir = absolute(dir)?;
    let mut ports = Vec::new();
    for role in ROLES {
        match DetachedServer::find(&dir.join(role))? {
            Some(s) => ports.push(s.port),
            None => return Err(LocalError::NotRunning { role, dir }),
        }
    }
    let mut up = connect(ports[0]).await?;
    let mut down = connect(ports[1]).await?;
    down.query_drop("SET SESSION sql_log_bin = 0")
        .await
        .map_err(|e| query_err(ports[1], "SET SESSION sql_log_bin = 0", e))?;
    let tables = list_tables(&mut down, ports[1]).await?;
    let mut report = DriftReport::default();
    for (ti, name) in tables.iter().enumerate() {
        let qualified = format!("`{DATABASE}`.`{name}`");
        let max_sql = format!("SELECT COALESCE(MAX(id), 0) FROM {qualified}");
        let max_up: i64 = up
            .query_first(&max_sql)
            .await
            .map_err(|e| query_err(ports[0], &max_sql, e))?
            .unwrap_or(0);
        let ids_sql = format!("SELECT id FROM {qualified} ORDER BY id");
        let ids_down: Vec<i64> = down
            .query(&ids_sql)
            .await
            .map_err(|e| query_err(ports[1], &ids_sql, e))?;
        let max_down = ids_down.last().copied().unwrap_or(0);
        let mut candidates: Vec<i64> = ids_down.into_iter().filter(|id| *id <= max_up).collect();

        let mut rng = SplitMix64::new(table_seed(spec.seed ^ 0xA5A5_5A5A_DEAD_BEEF, ti as u32 + 1));
        let want = (spec.missing + spec.changed).min(candidates.len() as u64) as usize;
        // Partial Fisher-Yates: the first `want` candidates become a uniform sample.
        for i in 0..want {
            let j = i + rng.below((candidates.len() - i) as u64) as usize;
            candidates.swap(i, j);
        }
        let n_missing = (spec.missing as usize).min(want);
        let mut missing = candidates[..n_missing].to_vec();
        let mut changed = candidates[n_missing..want].to_vec();
        missing.sort_unstable();
        changed.sort_unstable();
        let first_extra = max_up.max(max_down) + 1;
        let extra: Vec<i64> = (0..spec.extra as i64).map(|i| first_extra + i).collect();

        let mut stmts = vec!["START TRANSACTION".to_string()];
        if !missing.is_empty() {
            stmts.push(format!(
                "DELETE FROM {qualified} WHERE id IN ({})",
                join_ids(&missing)
            ));
        }
        for id in &changed {
            let mut c = String::with_capacity(119);
            digit_groups(&mut rng, 10, &mut c);
            stmts.push(format!("UPDATE {qualified} SET c = '{c}' WHERE id = {id}"));
        }
        if !extra.is_empty() {
            let mut sql = format!("INSERT INTO {qualified} (id, k, c, pad) VALUES ");
            for (i, id) in extra.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                let row = next_row(&mut rng, *id, max_up.max(1) as u64);
                push_values(&mut sql, &row);
            }
            stmts.push(sql);
        }
        stmts.push("COMMIT".into());
        for sql in &stmts {
            down.query_drop(sql)
                .await
                .map_err(|e| query_err(ports[1], sql, e))?;
        }
        tracing::info!(
            "drift on {DATABASE}.{name}: {} missing, {} extra, {} changed",
            missing.len(),
            extra.len(),
            changed.len()
        );
        report.tables.push(TableDrift {
            table: format!("{DATABASE}.{name}"),
            missing,
            extra,
            changed,
        });
    }
    let _ = up.disconnect().await;
    let _ = down.disconnect().await;
    Ok(report)
}

fn join_ids(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_stable() {
        // Reference values of splitmix64 seeded with 0.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let mut r = SplitMix64::new(42);
        for _ in 0..1000 {
            assert!(r.below(7) < 7);
        }
    }

    #[test]
    fn rows_are_deterministic_and_sysbench_shaped() {
        let a: Vec<SbRow> = sbtest_rows(7, 1, 50).collect();
        let b: Vec<SbRow> = sbtest_rows(7, 1, 50).collect();
        assert_eq!(a, b);
        let other_table: Vec<SbRow> = sbtest_rows(7, 2, 50).collect();
        assert_ne!(a, other_table);
        let other_seed: Vec<SbRow> = sbtest_rows(8, 1, 50).collect();
        assert_ne!(a, other_seed);
        for (i, r) in a.iter().enumerate() {
            assert_eq!(r.id, i as i64 + 1);
            assert!((1..=50).contains(&r.k));
            assert_eq!(r.c.len(), 119);
            assert_eq!(r.pad.len(), 59);
            let groups: Vec<&str> = r.c.split('-').collect();
            assert_eq!(groups.len(), 10);
            assert!(groups
                .iter()
                .all(|g| g.len() == 11 && g.bytes().all(|b| b.is_ascii_digit())));
            assert_eq!(r.pad.split('-').count(), 5);
        }
    }

    #[test]
    fn values_are_rendered_as_sql() {
        let row = SbRow {
            id: 3,
            k: 9,
            c: "1-2".into(),
            pad: "3".into(),
        };
        let mut s = String::new();
        push_values(&mut s, &row);
        assert_eq!(s, "(3,9,'1-2','3')");
    }

    #[test]
    fn ddl_matches_sysbench() {
        let ddl = sbtest_ddl(3);
        assert!(ddl.starts_with("CREATE TABLE `sbtest3`"));
        for part in [
            "id INT NOT NULL AUTO_INCREMENT PRIMARY KEY",
            "k INT NOT NULL DEFAULT 0",
            "c CHAR(120) NOT NULL DEFAULT ''",
            "pad CHAR(60) NOT NULL DEFAULT ''",
            "KEY k_1 (k)",
        ] {
            assert!(ddl.contains(part), "{part}");
        }
    }

    #[test]
    fn config_is_the_documented_toml() {
        let text = render_config(4000, 4001);
        assert!(text.starts_with("# Generated by `syncgate playground up`.\n"));
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(v["check-thread-count"].as_integer(), Some(4));
        assert_eq!(v["export-fix-sql"].as_bool(), Some(true));
        assert_eq!(v["check-struct-only"].as_bool(), Some(false));
        let up = &v["data-sources"]["upstream"];
        assert_eq!(up["host"].as_str(), Some("127.0.0.1"));
        assert_eq!(up["port"].as_integer(), Some(4000));
        assert_eq!(up["user"].as_str(), Some("root"));
        assert_eq!(up["password"].as_str(), Some(""));
        assert_eq!(
            v["data-sources"]["downstream"]["port"].as_integer(),
            Some(4001)
        );
        let task = &v["task"];
        assert_eq!(task["output-dir"].as_str(), Some("./output"));
        assert_eq!(task["source-instances"].as_array().unwrap().len(), 1);
        assert_eq!(task["target-instance"].as_str(), Some("downstream"));
        assert_eq!(task["target-check-tables"][0].as_str(), Some("sbtest.*"));
        assert_eq!(render_config(3307, 3308), render_config(3307, 3308));
    }

    #[test]
    fn tables_sort_numerically() {
        let mut v = vec!["sbtest10", "sbtest2", "sbtest1", "other"];
        v.sort_by_key(|n| table_sort_key(n));
        assert_eq!(v, vec!["other", "sbtest1", "sbtest2", "sbtest10"]);
    }

    #[test]
    fn state_roundtrips() {
        let dir = std::env::temp_dir().join(format!("syncgate-unit-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(read_state(&dir).unwrap(), None);
        let s = PlaygroundState {
            upstream: ServerState {
                port: 1,
                pid: 2,
                dir: dir.join("upstream"),
            },
            downstream: ServerState {
                port: 3,
                pid: 4,
                dir: dir.join("downstream"),
            },
            database: DATABASE.into(),
            tables: 4,
            rows: 10,
            seed: 0,
            config_path: "x.toml".into(),
        };
        write_state(&dir, &s).unwrap();
        assert_eq!(read_state(&dir).unwrap(), Some(s));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn status_of_nothing_is_not_up() {
        let dir = std::env::temp_dir().join(format!("syncgate-unit-empty-{}", std::process::id()));
        let st = status(&dir).await.unwrap();
        assert!(!st.is_up());
        assert_eq!(st.servers.len(), 2);
        assert!(st.to_string().contains("upstream    stopped"), "{st}");
        let r = down(&dir, false).await.unwrap();
        assert!(r.stopped.is_empty());
        assert!(inject_drift(&dir, &DriftSpec::default()).await.is_err());
    }

    #[test]
    fn drift_report_totals() {
        let r = DriftReport {
            tables: vec![
                TableDrift {
                    table: "sbtest.sbtest1".into(),
                    missing: vec![1, 2],
                    extra: vec![100],
                    changed: vec![],
                },
                TableDrift {
                    table: "sbtest.sbtest2".into(),
                    missing: vec![],
                    extra: vec![],
                    changed: vec![5],
                },
            ],
        };
        assert_eq!((r.missing(), r.extra(), r.changed()), (2, 1, 1));
        assert_eq!(r.table("sbtest.sbtest1").unwrap().total(), 3);
        assert!(r.to_string().contains("total"));
    }
}
