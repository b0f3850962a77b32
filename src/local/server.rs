//! Throwaway local MariaDB servers (`mariadbd`) for the playground, the integration tests and
//! the benches.
//!
//! # How a server is made
//!
//! 1. A *template* data dir is initialised once with `mariadb-install-db` (falling back to
//!    `mysql_install_db`) and cached under the cargo target dir as
//!    `syncgate-mariadb-template-<version>` (see [`template_cache_dir`]). Parallel processes
//!    initialise into private temporary dirs and publish with an atomic `rename`, so the first
//!    finisher wins and the others discard their copy. The template is made with a 4 MiB redo
//!    log, which keeps it at about 20 MB; every server resizes the log at start-up.
//! 2. Each server gets a recursive copy of the template (about 15 ms) in its own dir:
//!
//!    ```text
//!    DIR/data/            the MariaDB datadir
//!    DIR/binlog.*         binary logs (with `log_bin`)
//!    DIR/sock DIR/pid     unix socket, pid file
//!    DIR/err.log          error log; DIR/stderr.log catches anything printed before it opens
//!    ```
//!
//!    `DIR` is [`ServerOptions::data_dir`] (persistent, reused on the next start) or a fresh
//!    temporary dir under `std::env::temp_dir()` removed when the [`LocalServer`] is dropped.
//! 3. `mariadbd` starts on a free port (bind `127.0.0.1:0`, read, drop, retry with another
//!    port when the server cannot bind) or a fixed one, and is ready when a real connection
//!    succeeds and reports our pid file (so a port race with another server is detected).
//!
//! # Not leaking servers
//!
//! A [`LocalServer`] kills its process (SIGKILL) and removes its temporary dir on drop. Servers
//! held in `static`s (the integration tests share one per test binary) are never dropped, so
//! every attached server also gets a *watchdog*: a tiny `sh` process whose stdin is a pipe held
//! only by the owning process. When the owner exits for any reason (including SIGKILL) the
//! kernel closes the pipe, `read` returns, and the watchdog SIGKILLs the server and removes its
//! temporary dir. The watchdog ignores SIGINT/SIGTERM/SIGHUP so a Ctrl-C that kills the owner
//! still lets it clean up. (`prctl(PR_SET_PDEATHSIG)` would need `libc`, which is not a
//! dependency.) As a second net, the first server start in a process sweeps temporary server
//! dirs whose owning process is gone (killing a server still running there).
//!
//! # Detached servers
//!
//! [`LocalServer::start_detached`] starts a server in its own process group with null stdio,
//! without a watchdog; dropping the handle leaves it running after the process exits (the
//! playground). [`DetachedServer::find`] and [`DetachedServer::stop`] find and stop such a
//! server by its dir, using the pid file and the process command line.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use mysql_async::prelude::Queryable;

use super::error::{LocalError, Result, StartFailure};
use super::{absolute, conn_opts, connect};

/// How long a server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a clean shutdown may take before the process is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);
/// Poll interval for readiness and exit.
const POLL: Duration = Duration::from_millis(100);
/// How many free ports are tried when the server cannot bind.
const PORT_ATTEMPTS: usize = 5;
/// Lines of the error log quoted in start-up errors.
const LOG_TAIL_LINES: usize = 25;
/// Prefix of temporary server dirs (followed by the owner pid).
const TEMP_PREFIX: &str = "syncgate-srv-";
/// Unix socket paths must fit in `sun_path` (108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 100;

/// Options for [`LocalServer::start`].
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// `--server-id` (required by MariaDB for binlogs; defaults to 1 when `log_bin` is set).
    pub server_id: Option<u32>,
    /// Enable the binary log: `--log-bin=DIR/binlog --binlog-format=ROW --log-slave-updates`.
    pub log_bin: bool,
    /// Extra `mariadbd` arguments, appended last (so they override the defaults).
    pub extra_args: Vec<String>,
    /// Fixed port; default a free one.
    pub port: Option<u16>,
    /// Persistent server dir (kept on drop, reused by the next start); default a temporary
    /// dir removed on drop.
    pub data_dir: Option<PathBuf>,
}

/// A running local `mariadbd`.
#[derive(Debug)]
pub struct LocalServer {
    port: u16,
    pid: u32,
    dir: PathBuf,
    /// Remove `dir` on drop (temporary dirs only).
    owns_dir: bool,
    detached: bool,
    opts: ServerOptions,
    child: Mutex<Option<Child>>,
    watchdog: Mutex<Option<Child>>,
}

impl LocalServer {
    /// Start a server that lives as long as this handle (and at most as long as this process).
    pub async fn start(opts: ServerOptions) -> Result<LocalServer> {
        start_impl(opts, false).await
    }

    /// Start a server that keeps running after this process exits. Requires
    /// [`ServerOptions::data_dir`]; fails if a server already runs in that dir. Dropping the
    /// handle does not stop the server; use [`LocalServer::shutdown`] or
    /// [`DetachedServer::stop`].
    pub async fn start_detached(opts: ServerOptions) -> Result<LocalServer> {
        if opts.data_dir.is_none() {
            return Err(LocalError::DetachedWithoutDir);
        }
        start_impl(opts, true).await
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Process id of `mariadbd`.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `mysql://root@127.0.0.1:PORT` (root has an empty password).
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// Connection options equivalent to [`LocalServer::url`] (TCP only, no socket switch).
    pub fn opts(&self) -> mysql_async::Opts {
        conn_opts(self.port)
    }

    /// A new connection as root.
    pub async fn conn(&self) -> Result<mysql_async::Conn> {
        connect(self.port).await
    }

    /// The server dir (holds `data/`, binlogs, `pid`, `sock`, `err.log`).
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The server's error log.
    pub fn error_log(&self) -> PathBuf {
        self.dir.join("err.log")
    }

    /// Whether this handle was started with [`LocalServer::start_detached`].
    pub fn is_detached(&self) -> bool {
        self.detached
    }

    /// Whether the process is still running (false after [`LocalServer::kill`]).
    pub fn is_running(&self) -> bool {
        let mut guard = lock(&self.child);
        match guard.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Clean stop: `SHUTDOWN` over a connection (SIGTERM if that fails), then wait for the
    /// process to exit (SIGKILL after 60 s). A temporary dir is removed afterwards.
    pub async fn shutdown(self) -> Result<()> {
        self.stop_watchdog();
        if !self.is_running() {
            return Ok(());
        }
        if !send_shutdown(self.port).await {
            signal(self.pid, "TERM");
        }
        let exited = self.wait_exit(SHUTDOWN_TIMEOUT).await;
        if !exited {
            self.kill_child();
            return Err(LocalError::StopTimeout {
                pid: self.pid,
                timeout: SHUTDOWN_TIMEOUT,
            });
        }
        Ok(())
        // Drop removes a temporary dir.
    }

    /// Simulate a crash: SIGKILL the server and wait for it. The dir is kept until drop, so
    /// [`LocalServer::restart`] can recover from it.
    pub fn kill(&mut self) {
        self.stop_watchdog();
        self.kill_child();
    }

    /// Start the server again on the same dir, port and options (after [`LocalServer::kill`]
    /// or to restart a running one, which is killed first). InnoDB crash recovery runs.
    pub async fn restart(&mut self) -> Result<()> {
        if self.is_running() {
            self.kill();
        }
        let mut opts = self.opts.clone();
        opts.port = Some(self.port);
        let (child, pid) = spawn_until_ready(&opts, &self.dir, self.detached, true).await?;
        *lock(&self.child) = Some(child);
        self.pid = pid;
        if !self.detached {
            *lock(&self.watchdog) = spawn_watchdog(pid, self.owns_dir.then_some(&*self.dir)).ok();
        }
        Ok(())
    }

    async fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_running() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn kill_child(&self) {
        if let Some(mut child) = lock(&self.child).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kill the watchdog *before* the server is reaped, so it can never SIGKILL a reused pid.
    fn stop_watchdog(&self) {
        if let Some(mut w) = lock(&self.watchdog).take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if self.detached {
            // Keep it running; reap it in the background if it exits while we live.
            if let Some(mut child) = lock(&self.child).take() {
                let _ = std::thread::Builder::new()
                    .name("mariadbd-reaper".into())
                    .spawn(move || {
                        let _ = child.wait();
                    });
            }
            return;
        }
        self.stop_watchdog();
        self.kill_child();
        if self.owns_dir {
            let _ = fs::remove_dir_all(&self.dir);
            let _ = fs::remove_file(socket_path(&self.dir));
        }
    }
}

/// A server found by its dir (typically one started detached by an earlier process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachedServer {
    pub dir: PathBuf,
    pub pid: u32,
    pub port: u16,
}

impl DetachedServer {
    /// The running server whose pid file is in `dir`, if any (stale pid files are ignored).
    pub fn find(dir: &Path) -> Result<Option<DetachedServer>> {
        let pid_path = dir.join("pid");
        let text = match fs::read_to_string(&pid_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LocalError::io("read", &pid_path)(e)),
        };
        let Ok(pid) = text.trim().parse::<u32>() else {
            return Ok(None);
        };
        if !is_server_process(pid) {
            return Ok(None);
        }
        let port = read_cmdline(pid)
            .and_then(|args| port_from_args(&args))
            .or_else(|| {
                fs::read_to_string(dir.join("port"))
                    .ok()
                    .and_then(|p| p.trim().parse().ok())
            });
        let Some(port) = port else {
            return Err(LocalError::UnknownPort {
                dir: dir.to_path_buf(),
                pid,
            });
        };
        Ok(Some(DetachedServer {
            dir: dir.to_path_buf(),
            pid,
            port,
        }))
    }

    /// Stop the server running in `dir` (SHUTDOWN, else SIGTERM; SIGKILL after 60 s) and wait
    /// for it to exit. Returns whether a server was running.
    pub async fn stop(dir: &Path) -> Result<bool> {
        match DetachedServer::find(dir)? {
            None => Ok(false),
            Some(server) => {
                server.shutdown().await?;
                Ok(true)
            }
        }
    }

    /// `mysql://root@127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// A new connection as root.
    pub async fn conn(&self) -> Result<mysql_async::Conn> {
        connect(self.port).await
    }

    /// Whether the process still runs.
    pub fn is_running(&self) -> bool {
        is_server_process(self.pid)
    }

    /// Clean stop and wait (see [`DetachedServer::stop`]).
    pub async fn shutdown(&self) -> Result<()> {
        if !send_shutdown(self.port).await {
            signal(self.pid, "TERM");
        }
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while self.is_running() {
            if Instant::now() >= deadline {
                signal(self.pid, "KILL");
                return Err(LocalError::StopTimeout {
                    pid: self.pid,
                    timeout: SHUTDOWN_TIMEOUT,
                });
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }
}

/// The running server whose pid file is in `dir` (see [`DetachedServer::find`]).
pub fn find_detached(dir: &Path) -> Result<Option<DetachedServer>> {
    DetachedServer::find(dir)
}

/// Stop the server running in `dir`; returns whether one was running (see
/// [`DetachedServer::stop`]).
pub async fn stop_detached(dir: &Path) -> Result<bool> {
    DetachedServer::stop(dir).await
}

/// Whether `mariadbd` (or `mysqld`) and an install-db script can be found.
pub fn mariadbd_available() -> bool {
    find_server_binary().is_some() && find_install_db().is_some()
}

/// Where the template data dir is cached: `$SYNCGATE_MARIADB_CACHE`, else `$CARGO_TARGET_DIR`,
/// else the nearest ancestor of the running executable that holds cargo's `CACHEDIR.TAG`
/// (`target/`), else the system temp dir.
pub fn template_cache_dir() -> PathBuf {
    for var in ["SYNCGATE_MARIADB_CACHE", "CARGO_TARGET_DIR"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return PathBuf::from(v);
        }
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe
            .ancestors()
            .skip(1)
            .find(|d| d.join("CACHEDIR.TAG").is_file())
        {
            return dir.to_path_buf();
        }
    }
    std::env::temp_dir()
}

/// The template data dir, initialising it if needed (blocking; call from a blocking
/// context). Safe to call concurrently from threads and processes.
pub fn ensure_template() -> Result<PathBuf> {
    static TEMPLATE: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut cached = lock(&TEMPLATE);
    if let Some(p) = cached.as_ref() {
        return Ok(p.clone());
    }
    let server = find_server_binary().ok_or(LocalError::MissingBinaries)?;
    let version = server_version(&server)?;
    let cache = template_cache_dir();
    let name = format!("syncgate-mariadb-template-{}", sanitize(&version));
    let path = init_template(&cache, &name)?;
    *cached = Some(path.clone());
    Ok(path)
}

const TEMPLATE_MARKER: &str = ".syncgate-template-complete";

fn init_template(cache: &Path, name: &str) -> Result<PathBuf> {
    let target = cache.join(name);
    if target.join(TEMPLATE_MARKER).is_file() {
        return Ok(target);
    }
    fs::create_dir_all(cache).map_err(LocalError::io("create", cache))?;
    // One process builds the template while the others wait on this lock and reuse it: several
    // bootstraps at once on a small machine made mariadb-install-db fail now and then.
    let lock_path = cache.join(format!(".{name}.lock"));
    let lock_file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(LocalError::io("open", &lock_path))?;
    lock_file
        .lock()
        .map_err(LocalError::io("lock", &lock_path))?;
    if target.join(TEMPLATE_MARKER).is_file() {
        return Ok(target);
    }
    match build_template(cache, name, &target) {
        Ok(p) => Ok(p),
        Err(first) => {
            tracing::warn!("building the MariaDB template failed, retrying once: {first}");
            build_template(cache, name, &target)
        }
    }
}

/// Run `mariadb-install-db` into a temporary dir and publish it at `target`.
fn build_template(cache: &Path, name: &str, target: &Path) -> Result<PathBuf> {
    let target = target.to_path_buf();
    sweep_stale_template_tmp(cache, name);
    let tmp = cache.join(format!(".{name}.tmp-{}-{}", std::process::id(), nanos()));
    let _ = fs::remove_dir_all(&tmp);
    let install = find_install_db().ok_or(LocalError::MissingBinaries)?;
    let started = Instant::now();
    let mut cmd = Command::new(&install);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", tmp.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg(format!(
            "--user={}",
            if is_root() {
                "root".to_string()
            } else {
                current_user()
            }
        ))
        .arg("--skip-test-db")
        .arg("--innodb-log-file-size=4M")
        .stdin(Stdio::null());
    let out = cmd.output().map_err(LocalError::io("run", &install))?;
    if !out.status.success() {
        let _ = fs::remove_dir_all(&tmp);
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        return Err(LocalError::InstallDb {
            program: install,
            status: out.status,
            output_tail: tail_lines(&text, LOG_TAIL_LINES),
        });
    }
    let marker = tmp.join(TEMPLATE_MARKER);
    fs::write(&marker, b"").map_err(LocalError::io("write", &marker))?;
    match fs::rename(&tmp, &target) {
        Ok(()) => {
            tracing::info!(
                "initialised MariaDB template {} in {:.2?}",
                target.display(),
                started.elapsed()
            );
            Ok(target)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            if target.join(TEMPLATE_MARKER).is_file() {
                // Another process won the race.
                Ok(target)
            } else {
                Err(LocalError::io("publish template", &target)(e))
            }
        }
    }
}

/// Remove template build dirs of crashed processes (older than 10 minutes).
fn sweep_stale_template_tmp(cache: &Path, name: &str) {
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let fname = entry.file_name();
        let Some(fname) = fname.to_str() else {
            continue;
        };
        if !fname.starts_with(&prefix) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(600));
        if old {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

async fn start_impl(opts: ServerOptions, detached: bool) -> Result<LocalServer> {
    if find_server_binary().is_none() || find_install_db().is_none() {
        return Err(LocalError::MissingBinaries);
    }
    let template = tokio::task::spawn_blocking(|| {
        sweep_leftover_temp_dirs();
        ensure_template()
    })
    .await
    .map_err(LocalError::task("template"))??;

    let (dir, owns_dir) = match &opts.data_dir {
        Some(d) => {
            let d = absolute(d)?;
            if let Some(running) = DetachedServer::find(&d)? {
                return Err(LocalError::AlreadyRunning {
                    dir: d,
                    pid: running.pid,
                    port: running.port,
                });
            }
            (d, false)
        }
        None => (new_temp_dir()?, true),
    };
    // From here on a failure must clean a temporary dir.
    let cleanup = DirGuard {
        dir: owns_dir.then(|| dir.clone()),
    };

    let data = dir.join("data");
    if !data.join("mysql").is_dir() {
        let (data2, dir2) = (data.clone(), dir.clone());
        tokio::task::spawn_blocking(move || -> Result<()> {
            fs::create_dir_all(&dir2).map_err(LocalError::io("create", &dir2))?;
            let staging = dir2.join("data.copying");
            let _ = fs::remove_dir_all(&staging);
            let _ = fs::remove_dir_all(&data2);
            copy_dir_all(&template, &staging)
                .and_then(|()| fs::remove_file(staging.join(TEMPLATE_MARKER)))
                .and_then(|()| fs::rename(&staging, &data2))
                .map_err(|error| LocalError::CopyTemplate {
                    template,
                    to: data2,
                    error,
                })
        })
        .await
        .map_err(LocalError::task("copy"))??;
    }

    let (child, pid) = spawn_until_ready(&opts, &dir, detached, opts.port.is_some()).await?;
    let port = read_cmdline(pid)
        .and_then(|a| port_from_args(&a))
        .or_else(|| {
            fs::read_to_string(dir.join("port"))
                .ok()?
                .trim()
                .parse()
                .ok()
        })
        .ok_or_else(|| LocalError::UnknownPort {
            dir: dir.clone(),
            pid,
        })?;
    let watchdog = if detached {
        None
    } else {
        Some(spawn_watchdog(pid, owns_dir.then_some(&*dir))?)
    };
    std::mem::forget(cleanup);
    tracing::debug!(port, pid, dir = %dir.display(), detached, "mariadbd ready");
    Ok(LocalServer {
        port,
        pid,
        dir,
        owns_dir,
        detached,
        opts,
        child: Mutex::new(Some(child)),
        watchdog: Mutex::new(watchdog),
    })
}

struct DirGuard {
    dir: Option<PathBuf>,
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            let _ = fs::remove_dir_all(d);
        }
    }
}

/// Spawn `mariadbd` on `opts.port` (or free ports) until one becomes ready.
/// `fixed_port`: do not retry with another port.
async fn spawn_until_ready(
    opts: &ServerOptions,
    dir: &Path,
    detached: bool,
    fixed_port: bool,
) -> Result<(Child, u32)> {
    let server = find_server_binary().ok_or(LocalError::MissingBinaries)?;
    let attempts = if fixed_port { 1 } else { PORT_ATTEMPTS };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = match opts.port.filter(|_| fixed_port) {
            Some(port) if !port_is_free(port) => return Err(LocalError::PortInUse { port }),
            Some(port) => port,
            None => free_port()?,
        };
        let _ = fs::write(dir.join("port"), format!("{port}\n"));
        let args = server_args(opts, dir, port);
        match spawn_once(&server, &args, dir, port, detached).await {
            Err(e) if attempt < attempts && port_taken(&e) => {
                tracing::debug!("port {port} taken, retrying: {e}");
            }
            done => return done,
        }
    }
}

/// Whether a start failed because another process holds the port.
fn port_taken(e: &LocalError) -> bool {
    matches!(
        e,
        LocalError::Start {
            failure: StartFailure::PortTaken(_),
            ..
        }
    )
}

/// Start `mariadbd` once and wait until it accepts connections (or exits, or times out).
async fn spawn_once(
    server: &Path,
    args: &[String],
    dir: &Path,
    port: u16,
    detached: bool,
) -> Result<(Child, u32)> {
    let err_log = dir.join("err.log");
    let out_log = dir.join("stderr.log");
    let offsets = (file_len(&err_log), file_len(&out_log));
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out_log)
        .map_err(LocalError::io("open", &out_log))?;
    let out2 = out
        .try_clone()
        .map_err(LocalError::io("duplicate the descriptor of", &out_log))?;
    let mut cmd = Command::new(server);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(out2));
    if detached {
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().map_err(LocalError::io("spawn", server))?;
    let pid = child.id();
    // What this start wrote to the logs.
    let logs = || {
        let mut s = read_from(&err_log, offsets.0);
        s.push_str(&read_from(&out_log, offsets.1));
        s
    };
    let failed = |failure, log: &str| LocalError::Start {
        port,
        failure,
        log: err_log.clone(),
        log_tail: tail_lines(log, LOG_TAIL_LINES),
    };

    let expected_pid_file = dir.join("pid");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let log = logs();
                let taken =
                    log.contains("Address already in use") || log.contains("Bind on TCP/IP port");
                let failure = if taken {
                    StartFailure::PortTaken(status)
                } else {
                    StartFailure::Exited(status)
                };
                return Err(failed(failure, &log));
            }
            Ok(None) => {}
            Err(e) => return Err(LocalError::io("wait for", server)(e)),
        }
        if answers_with_pid_file(port, &expected_pid_file).await {
            return Ok((child, pid));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(StartFailure::NotReady(READY_TIMEOUT), &logs()));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether the server on `port` accepts a connection and reports `pid_file` (not another
/// server that answered on the port; ours will then fail to bind).
async fn answers_with_pid_file(port: u16, pid_file: &Path) -> bool {
    let Ok(Ok(mut conn)) = tokio::time::timeout(
        Duration::from_secs(2),
        mysql_async::Conn::new(conn_opts(port)),
    )
    .await
    else {
        return false;
    };
    let reported: Option<String> = conn.query_first("SELECT @@pid_file").await.ok().flatten();
    let _ = conn.disconnect().await;
    reported.as_deref().map(Path::new) == Some(pid_file)
}

/// The `mariadbd` command line (without the binary).
fn server_args(opts: &ServerOptions, dir: &Path, port: u16) -> Vec<String> {
    let d = |p: &str| dir.join(p).display().to_string();
    let mut args = vec![
        "--no-defaults".to_string(),
        format!("--datadir={}", d("data")),
        format!("--port={port}"),
        "--bind-address=127.0.0.1".into(),
        format!("--socket={}", socket_path(dir).display()),
        format!("--pid-file={}", d("pid")),
        format!(
            "--user={}",
            if is_root() {
                "root".to_string()
            } else {
                current_user()
            }
        ),
        format!("--log-error={}", d("err.log")),
        "--skip-name-resolve".into(),
        "--character-set-server=utf8mb4".into(),
        "--collation-server=utf8mb4_general_ci".into(),
        "--innodb-flush-log-at-trx-commit=2".into(),
        "--innodb-buffer-pool-size=256M".into(),
        "--innodb-log-file-size=64M".into(),
        "--skip-innodb-doublewrite".into(),
        // Keep the default Aria page cache: information_schema temporary tables are Aria
        // tables, and with a 16M cache concurrent I_S queries made 10.11 fail to create them
        // and crash (SIGSEGV in Create_tmp_table::cleanup_on_failure).
        "--max-allowed-packet=64M".into(),
        "--max-connections=300".into(),
        // A private tmpdir: internal temporary (Aria) tables of concurrently running servers
        // never share a directory.
        format!("--tmpdir={}", d("data")),
    ];
    if opts.log_bin || opts.server_id.is_some() {
        args.push(format!("--server-id={}", opts.server_id.unwrap_or(1)));
    }
    if opts.log_bin {
        args.push(format!("--log-bin={}", d("binlog")));
        args.push("--binlog-format=ROW".into());
        args.push("--log-slave-updates".into());
    }
    args.extend(opts.extra_args.iter().cloned());
    args
}

/// `DIR/sock`, or a short path in the temp dir when that would not fit in `sun_path`.
fn socket_path(dir: &Path) -> PathBuf {
    let p = dir.join("sock");
    if p.as_os_str().len() <= MAX_SOCKET_PATH {
        return p;
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut h);
    std::env::temp_dir().join(format!("syncgate-{:016x}.sock", h.finish()))
}

/// The watchdog: SIGKILL `pid` (and remove `dir`) once our end of its stdin closes.
fn spawn_watchdog(pid: u32, dir: Option<&Path>) -> Result<Child> {
    let script = r#"trap '' INT TERM HUP
read _ignored
kill -9 "$1" 2>/dev/null
if [ -n "$2" ]; then sleep 0.3; rm -rf -- "$2"; fi"#;
    let dir_arg = dir.map(|d| d.as_os_str().to_owned()).unwrap_or_default();
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("syncgate-watchdog")
        .arg(pid.to_string())
        .arg(&dir_arg)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(LocalError::io("spawn the watchdog", Path::new("sh")))
}

/// Remove temporary server dirs left by processes that no longer exist (once per process).
fn sweep_leftover_temp_dirs() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::SeqCst) {
        return;
    }
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name
            .to_str()
            .and_then(|n| n.strip_prefix(TEMP_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if owner == std::process::id() || process_alive(owner) {
            continue;
        }
        let path = entry.path();
        if let Some(pid) = fs::read_to_string(path.join("pid"))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        {
            if is_server_process(pid) {
                signal(pid, "KILL");
            }
        }
        let _ = fs::remove_dir_all(&path);
    }
}

fn new_temp_dir() -> Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "{TEMP_PREFIX}{}-{n}-{}",
        std::process::id(),
        nanos() % 1_000_000_000
    ));
    fs::create_dir_all(&dir).map_err(LocalError::io("create", &dir))?;
    Ok(dir)
}

/// Send `SHUTDOWN`; returns whether the statement could be sent.
async fn send_shutdown(port: u16) -> bool {
    let Ok(Ok(mut conn)) = tokio::time::timeout(Duration::from_secs(5), connect(port)).await else {
        return false;
    };
    // The server may close the connection before or after answering.
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.query_drop("SHUTDOWN")).await;
    drop(conn);
    true
}

/// Send a signal with the `kill` utility (no libc dependency).
fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg("-s")
        .arg(sig)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A free TCP port on 127.0.0.1 (bind to port 0, read it, release it).
pub fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|error| LocalError::NoFreePort { error })
}

/// Whether `port` can be bound on 127.0.0.1 right now.
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// `/proc/PID` exists and is not a zombie.
fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // "pid (comm) S ..." — comm may contain spaces and parentheses.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

/// A live `mariadbd`/`mysqld` process.
fn is_server_process(pid: u32) -> bool {
    if !process_alive(pid) {
        return false;
    }
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    matches!(comm.trim(), "mariadbd" | "mysqld")
}

fn read_cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// The last `--port=N` of a command line.
fn port_from_args(args: &[String]) -> Option<u16> {
    args.iter()
        .rev()
        .find_map(|a| a.strip_prefix("--port=").and_then(|p| p.parse().ok()))
}

fn is_root() -> bool {
    // Effective uid is the second field of the Uid: line.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|rest| rest.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn current_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "mysql".into())
}

fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("SYNCGATE_MARIADB_BINDIR") {
        dirs.push(PathBuf::from(d));
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.extend(
        [
            "/usr/sbin",
            "/usr/bin",
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/libexec",
        ]
        .iter()
        .map(PathBuf::from),
    );
    for name in names {
        for d in &dirs {
            let p = d.join(name);
            if is_executable(&p) {
                return Some(p);
            }
        }
    }
    None
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn find_server_binary() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| find_binary(&["mariadbd", "mysqld"]))
        .clone()
}

fn find_install_db() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| find_binary(&["mariadb-install-db", "mysql_install_db"]))
        .clone()
}

/// The version token of `mariadbd --version` (e.g. `10.11.19-MariaDB-0+deb12u1`).
fn server_version(server: &Path) -> Result<String> {
    let out = Command::new(server)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(LocalError::io("run", server))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_version(&text).ok_or_else(|| LocalError::Version {
        program: server.to_path_buf(),
        output: text.into_owned(),
    })
}

fn parse_version(text: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == "Ver")?;
    words.next().map(str::to_string)
}

/// Keep `[A-Za-z0-9._-]`, map the rest to `_`.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Recursive copy preserving permissions and symlinks (`cp -a` without ownership/times).
fn copy_dir_all(src: &Path, dst: &Path) -> std::io::Result<()> {
    fs::create_dir(dst)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let to = dst.join(entry.file_name());
        if ft.is_dir() {
            copy_dir_all(&entry.path(), &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &to)?;
        } else {
            fs::copy(entry.path(), &to)?;
        }
    }
    fs::set_permissions(dst, fs::metadata(src)?.permissions())?;
    Ok(())
}

fn file_len(p: &Path) -> u64 {
    fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// The contents of `p` from byte `offset` (lossy UTF-8; empty if unreadable).
fn read_from(p: &Path, offset: u64) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = fs::File::open(p) {
        if f.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = f.read_to_end(&mut buf);
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The last `n` non-empty lines of `text`.
fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "syncgate-unit-{name}-{}-{}",
            std::process::id(),
            nanos()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn free_port_is_bindable() {
        let p = free_port().unwrap();
        assert!(p > 0);
        assert!(port_is_free(p));
        let l = TcpListener::bind(("127.0.0.1", p)).unwrap();
        assert!(!port_is_free(p));
        drop(l);
    }

    #[test]
    fn version_parsing_and_sanitizing() {
        let v = parse_version(
            "mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)\n",
        )
        .unwrap();
        assert_eq!(v, "10.11.19-MariaDB-0+deb12u1");
        assert_eq!(sanitize(&v), "10.11.19-MariaDB-0_deb12u1");
        assert_eq!(parse_version("garbage"), None);
        assert_eq!(sanitize("a/b c"), "a_b_c");
    }

    #[test]
    fn args_have_required_flags() {
        let dir = Path::new("/x/srv");
        let a = server_args(&ServerOptions::default(), dir, 1234);
        for want in [
            "--no-defaults",
            "--datadir=/x/srv/data",
            "--port=1234",
            "--bind-address=127.0.0.1",
            "--socket=/x/srv/sock",
            "--pid-file=/x/srv/pid",
            "--log-error=/x/srv/err.log",
            "--skip-name-resolve",
            "--innodb-flush-log-at-trx-commit=2",
            "--innodb-buffer-pool-size=256M",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
        ] {
            assert!(a.iter().any(|x| x == want), "missing {want} in {a:?}");
        }
        assert_eq!(a[0], "--no-defaults", "--no-defaults must come first");
        assert!(!a.iter().any(|x| x.starts_with("--log-bin")));

        let opts = ServerOptions {
            server_id: Some(7),
            log_bin: true,
            extra_args: vec!["--gtid-strict-mode=ON".into()],
            ..Default::default()
        };
        let a = server_args(&opts, dir, 1);
        for want in [
            "--server-id=7",
            "--log-bin=/x/srv/binlog",
            "--binlog-format=ROW",
            "--log-slave-updates",
        ] {
            assert!(a.iter().any(|x| x == want), "missing {want}");
        }
        assert_eq!(a.last().unwrap(), "--gtid-strict-mode=ON");
        assert_eq!(port_from_args(&a), Some(1));
    }

    #[test]
    fn long_socket_paths_are_shortened() {
        let long = PathBuf::from(format!("/tmp/{}", "d".repeat(120)));
        let s = socket_path(&long);
        assert!(s.as_os_str().len() <= MAX_SOCKET_PATH + 40);
        assert_ne!(s, long.join("sock"));
        assert_eq!(socket_path(Path::new("/a")), PathBuf::from("/a/sock"));
        assert_eq!(socket_path(&long), s, "deterministic");
    }

    #[test]
    fn copy_dir_all_copies_tree_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let root = scratch("copy");
        let src = root.join("src");
        fs::create_dir_all(src.join("a/b")).unwrap();
        fs::write(src.join("f"), b"top").unwrap();
        fs::write(src.join("a/b/g"), b"deep").unwrap();
        fs::set_permissions(src.join("f"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::set_permissions(src.join("a"), fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("f", src.join("link")).unwrap();
        let dst = root.join("dst");
        copy_dir_all(&src, &dst).unwrap();
        assert_eq!(fs::read(dst.join("f")).unwrap(), b"top");
        assert_eq!(fs::read(dst.join("a/b/g")).unwrap(), b"deep");
        assert_eq!(fs::read_link(dst.join("link")).unwrap(), PathBuf::from("f"));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dst.join("f")), 0o640);
        assert_eq!(mode(&dst.join("a")), 0o700);
        assert!(
            copy_dir_all(&src, &dst).is_err(),
            "destination must not exist"
        );
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn tail_and_read_from() {
        let text = "a\n\nb\nc\nd\n";
        assert_eq!(tail_lines(text, 2), "c\nd");
        assert_eq!(tail_lines(text, 10), "a\nb\nc\nd");
        let root = scratch("tail");
        let f = root.join("log");
        fs::write(&f, "0123456789").unwrap();
        assert_eq!(read_from(&f, 4), "456789");
        assert_eq!(read_from(&f, 40), "");
        assert_eq!(read_from(&root.join("nope"), 0), "");
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn process_probes() {
        let me = std::process::id();
        assert!(process_alive(me));
        assert!(!is_server_process(me));
        assert!(!process_alive(u32::MAX - 1));
        let args = read_cmdline(me).unwrap();
        assert!(!args.is_empty());
        assert_eq!(
            port_from_args(&["--port=1".into(), "--port=2".into()]),
            Some(2)
        );
        assert_eq!(port_from_args(&["--port=x".into()]), None);
    }

    #[test]
    fn find_detached_ignores_missing_and_stale_pid_files() {
        let root = scratch("detached");
        assert_eq!(DetachedServer::find(&root).unwrap(), None);
        // Our own pid is alive but not a server.
        fs::write(root.join("pid"), format!("{}\n", std::process::id())).unwrap();
        assert_eq!(DetachedServer::find(&root).unwrap(), None);
        fs::write(root.join("pid"), "not a pid").unwrap();
        assert_eq!(DetachedServer::find(&root).unwrap(), None);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn template_publish_is_idempotent() {
        // Without running install-db: a published template is returned as is.
        let root = scratch("tpl");
        let t = root.join("tpl-x");
        fs::create_dir_all(&t).unwrap();
        fs::write(t.join(TEMPLATE_MARKER), b"").unwrap();
        assert_eq!(init_template(&root, "tpl-x").unwrap(), t);
        fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn detached_requires_a_dir() {
        let err = LocalServer::start_detached(ServerOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("persistent data dir"), "{err}");
    }

    #[test]
    fn watchdog_kills_when_pipe_closes() {
        // Use a sleep process as the "server".
        let mut victim = Command::new("sleep").arg("30").spawn().unwrap();
        let mut dog = spawn_watchdog(victim.id(), None).unwrap();
        drop(dog.stdin.take()); // as if the owner exited
        let status = victim.wait().unwrap();
        assert!(!status.success(), "victim should be killed");
        let _ = dog.wait();
    }
}
