//! [`LocalServer`]: start, stop, kill and restart one local `mariadbd`; [`DetachedServer`]:
//! find and stop a server that outlived its starter. See [`crate::local`] for how a server
//! is made and cleaned up.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use super::error::{LocalError, Result};
use super::process::{
    current_user, is_root, is_server_process, mariadbd_available, process_alive, server_port,
    signal, spawn_until_ready, spawn_watchdog,
};
use super::template::{copy_template, ensure_template};
use super::{absolute, conn_opts, connect, lock, nanos, POLL};

/// How long a clean shutdown may take before the process is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);
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
        let Some(port) = server_port(pid, dir) else {
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

async fn start_impl(opts: ServerOptions, detached: bool) -> Result<LocalServer> {
    if !mariadbd_available() {
        return Err(LocalError::MissingBinaries);
    }
    let template = tokio::task::spawn_blocking(|| {
        sweep_leftover_temp_dirs();
        ensure_template()
    })
    .await
    .map_err(LocalError::task("template"))??;

    let (dir, owns_dir) = server_dir(&opts)?;
    // From here on a failure must clean a temporary dir.
    let cleanup = DirGuard {
        dir: owns_dir.then(|| dir.clone()),
    };
    if !dir.join("data/mysql").is_dir() {
        copy_template(template, &dir).await?;
    }

    let (child, pid) = spawn_until_ready(&opts, &dir, detached, opts.port.is_some()).await?;
    let port = server_port(pid, &dir).ok_or_else(|| LocalError::UnknownPort {
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

/// The server dir for `opts` and whether it is a temporary one (ours to remove). A persistent
/// dir must not hold a running server.
fn server_dir(opts: &ServerOptions) -> Result<(PathBuf, bool)> {
    let Some(d) = &opts.data_dir else {
        return Ok((new_temp_dir()?, true));
    };
    let d = absolute(d)?;
    if let Some(running) = DetachedServer::find(&d)? {
        return Err(LocalError::AlreadyRunning {
            dir: d,
            pid: running.pid,
            port: running.port,
        });
    }
    Ok((d, false))
}

/// Removes a temporary server dir when a start fails.
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

/// The `mariadbd` command line (without the binary).
pub(super) fn server_args(opts: &ServerOptions, dir: &Path, port: u16) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::super::process::port_from_args;
    use super::*;
    use crate::local::scratch;

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

    #[tokio::test]
    async fn detached_requires_a_dir() {
        let err = LocalServer::start_detached(ServerOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("persistent data dir"), "{err}");
    }
}
