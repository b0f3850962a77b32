//! Local MariaDB servers (`mariadbd`): throwaway and detached servers for the playground, the
//! integration tests (`tests/it/support/mariadb.rs`), the benches and (later) DR steps; and a
//! local S3 server ([`LocalS3`]) for the storage tests and the playground.
//!
//! - [`server`]: [`LocalServer`] (start, shutdown, kill, restart), [`DetachedServer`],
//!   [`ServerOptions`] and the `mariadbd` command line.
//! - [`template`]: the cached template data dir every server is copied from.
//! - `process`: finding the binaries, spawning and waiting for `mariadbd`, `/proc` probes,
//!   signals and the watchdog.
//! - [`s3`]: [`LocalS3`], an S3-compatible server over a directory, in-process.
//! - `detached_s3`: [`DetachedS3`], that server as a detached process of its own (the
//!   playground), and its key pair [`S3Credentials`].
//!
//! Everything here fails with [`LocalError`] (which converts into [`crate::Error`]).
//!
//! # How a server is made
//!
//! 1. A *template* data dir is initialised once with `mariadb-install-db` (falling back to
//!    `mysql_install_db`) and cached under the cargo target dir as
//!    `syncgate-mariadb-template-<version>` (see [`template::template_cache_dir`]). Parallel
//!    processes initialise into private temporary dirs and publish with an atomic `rename`, so
//!    the first finisher wins and the others discard their copy. The template is made with a
//!    4 MiB redo log, which keeps it at about 20 MB; every server resizes the log at start-up.
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

mod detached_s3;
mod error;
mod process;
pub mod s3;
pub mod server;
pub mod template;

pub use detached_s3::{write_private, DetachedS3, S3Credentials};
pub use error::{LocalError, Result, StartFailure};
pub use process::mariadbd_available;
pub(crate) use process::{process_alive, read_cmdline, signal};
pub use s3::LocalS3;
pub use server::{DetachedServer, LocalServer, ServerOptions};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use mysql_async::{Conn, Opts, OptsBuilder};

/// Connection options for root (empty password) on `127.0.0.1:port`, over TCP only (no
/// switch to the unix socket).
pub fn conn_opts(port: u16) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("root"))
        .prefer_socket(false)
        .into()
}

/// A new root connection to the local server on `port`.
pub async fn connect(port: u16) -> Result<Conn> {
    connect_to(&conn_opts(port)).await
}

/// A new connection with `opts`; a failure names the address and keeps the MySQL error.
pub async fn connect_to(opts: &Opts) -> Result<Conn> {
    Conn::new(opts.clone())
        .await
        .map_err(|error| LocalError::Connect {
            addr: addr(opts),
            error,
        })
}

/// `host:port` of `opts`, for messages.
pub fn addr(opts: &Opts) -> String {
    format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port())
}

/// `p` made absolute against the current directory.
pub(crate) fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(LocalError::io("resolve", p))?;
    Ok(cwd.join(p))
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

/// Poll interval for readiness and exit.
const POLL: Duration = Duration::from_millis(100);

/// Nanoseconds since the epoch (for unique names).
fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Lock `m`, ignoring poisoning (the guarded values stay valid after a panic).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh scratch directory for a unit test of this module.
#[cfg(test)]
pub(crate) fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "syncgate-unit-{name}-{}-{}",
        std::process::id(),
        nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() {
        let p = free_port().unwrap();
        assert!(p > 0);
        assert!(port_is_free(p));
        let l = TcpListener::bind(("127.0.0.1", p)).unwrap();
        assert!(!port_is_free(p));
        drop(l);
    }
}
