//! [`DetachedS3`]: the local S3 server ([`super::s3::serve_forever`]) as a process of its own
//! that outlives the process that started it (the playground), found again and stopped by
//! its directory, like [`super::DetachedServer`]. Its key pair is [`S3Credentials`].
//!
//! ```text
//! DIR/data/              the directory served (bucket `b` is `DIR/data/b/`)
//! DIR/credentials.json   the key pair (mode 0600)
//! DIR/pid                the server's pid
//! DIR/server.log         its stdout and stderr
//! ```
//!
//! The process is `PROGRAM SUBCOMMAND… --root=DIR/data --port=P
//! --credentials=DIR/credentials.json`; the program must serve `--root` on `--port` with the
//! key pair of `--credentials` (the syncgate binary: `syncgate playground s3-server`). The
//! secret is passed in a private file, never on the command line, which every user can read
//! in `/proc`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::error::{LocalError, Result, StartFailure};
use super::process::LOG_TAIL_LINES;
use super::process::{port_from_args, process_alive, read_cmdline, signal, tail_lines};
use super::{free_port, port_is_free, POLL};

/// How long the server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long it may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many free ports are tried when the server cannot bind one.
const PORT_ATTEMPTS: usize = 5;

/// The key pair a local S3 server accepts. `Debug` leaves out the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Credentials {
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

impl S3Credentials {
    /// A new random key pair (from the kernel's random source): an access key of 20 and a
    /// secret of 40 hex digits.
    pub fn generate() -> Result<S3Credentials> {
        let random = Path::new("/dev/urandom");
        let mut bytes = [0u8; 30];
        fs::File::open(random)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
            .map_err(LocalError::io("read", random))?;
        Ok(S3Credentials {
            access_key: hex::encode_upper(&bytes[..10]),
            secret_key: hex::encode(&bytes[10..]),
        })
    }

    /// Read the file written by [`S3Credentials::write_private`].
    pub fn read(path: &Path) -> Result<S3Credentials> {
        let text = fs::read_to_string(path).map_err(LocalError::io("read", path))?;
        serde_json::from_str(&text).map_err(|error| LocalError::S3Credentials {
            path: path.to_path_buf(),
            error,
        })
    }

    /// Write them to `path`, readable by the owner only (mode 0600, also when the file
    /// existed with another mode).
    pub fn write_private(&self, path: &Path) -> Result<()> {
        let text =
            serde_json::to_string_pretty(self).map_err(|error| LocalError::S3Credentials {
                path: path.to_path_buf(),
                error,
            })?;
        write_private(path, &(text + "\n"))
    }

    /// The pair in `path`, or a new one written there.
    pub fn load_or_create(path: &Path) -> Result<S3Credentials> {
        if path.exists() {
            return S3Credentials::read(path);
        }
        let creds = S3Credentials::generate()?;
        creds.write_private(path)?;
        Ok(creds)
    }
}

/// Write `text` to `path` with mode 0600 (set before anything is written, also when the file
/// existed with another mode).
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(LocalError::io("create", path))?;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(LocalError::io("set the mode of", path))?;
    file.write_all(text.as_bytes())
        .map_err(LocalError::io("write", path))
}

/// A local S3 server process found by its dir (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachedS3 {
    pub dir: PathBuf,
    pub pid: u32,
    pub port: u16,
}

impl DetachedS3 {
    /// The directory served by the server in `dir`.
    pub fn root(dir: &Path) -> PathBuf {
        dir.join("data")
    }

    /// The key pair file of the server in `dir`.
    pub fn credentials_path(dir: &Path) -> PathBuf {
        dir.join("credentials.json")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Whether the process still runs.
    pub fn is_running(&self) -> bool {
        is_s3_process(self.pid, &self.dir)
    }

    /// Start `program subcommand… --root=… --port=… --credentials=…` in its own process
    /// group, detached (see the module docs), and wait until it accepts connections. The key
    /// pair is `DIR/credentials.json`, made if missing. `port`: that port (fails if taken),
    /// else a free one. Fails if a server already runs in `dir`.
    pub async fn start(
        program: &Path,
        subcommand: &[&str],
        dir: &Path,
        port: Option<u16>,
    ) -> Result<DetachedS3> {
        if let Some(running) = DetachedS3::find(dir)? {
            return Err(LocalError::AlreadyRunning {
                dir: dir.to_path_buf(),
                pid: running.pid,
                port: running.port,
            });
        }
        let root = DetachedS3::root(dir);
        fs::create_dir_all(&root).map_err(LocalError::io("create", &root))?;
        S3Credentials::load_or_create(&DetachedS3::credentials_path(dir))?;
        let attempts = if port.is_some() { 1 } else { PORT_ATTEMPTS };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = match port {
                Some(p) if !port_is_free(p) => return Err(LocalError::PortInUse { port: p }),
                Some(p) => p,
                None => free_port()?,
            };
            match spawn_once(program, subcommand, dir, port).await {
                Err(LocalError::S3Start {
                    failure: StartFailure::PortTaken(_),
                    ..
                }) if attempt < attempts => {
                    tracing::debug!("port {port} taken, retrying the local S3 server");
                }
                done => return done,
            }
        }
    }

    /// The running server in `dir`, if any (a stale pid file, or a pid now used by another
    /// process, is ignored).
    pub fn find(dir: &Path) -> Result<Option<DetachedS3>> {
        let pid_path = dir.join("pid");
        let text = match fs::read_to_string(&pid_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LocalError::io("read", &pid_path)(e)),
        };
        let Ok(pid) = text.trim().parse::<u32>() else {
            return Ok(None);
        };
        if !is_s3_process(pid, dir) {
            return Ok(None);
        }
        let port = read_cmdline(pid)
            .and_then(|args| port_from_args(&args))
            .ok_or_else(|| LocalError::UnknownPort {
                dir: dir.to_path_buf(),
                pid,
            })?;
        Ok(Some(DetachedS3 {
            dir: dir.to_path_buf(),
            pid,
            port,
        }))
    }

    /// Stop the server running in `dir` (SIGTERM; SIGKILL after 10 s) and wait for it to
    /// exit. Returns whether one was running.
    pub async fn stop(dir: &Path) -> Result<bool> {
        let Some(server) = DetachedS3::find(dir)? else {
            return Ok(false);
        };
        signal(server.pid, "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while server.is_running() {
            if Instant::now() >= deadline {
                signal(server.pid, "KILL");
                tracing::warn!(
                    pid = server.pid,
                    "local S3 server ignored SIGTERM; killed it"
                );
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        let _ = fs::remove_file(dir.join("pid"));
        Ok(true)
    }
}

/// A live process serving `DIR/data` (its command line names that root).
fn is_s3_process(pid: u32, dir: &Path) -> bool {
    if !process_alive(pid) {
        return false;
    }
    let want = format!("--root={}", DetachedS3::root(dir).display());
    read_cmdline(pid).is_some_and(|args| args.contains(&want))
}

/// The command line of a server in `dir` on `port`, after `program subcommand…`.
fn server_args(dir: &Path, port: u16) -> Vec<String> {
    vec![
        format!("--root={}", DetachedS3::root(dir).display()),
        format!("--port={port}"),
        format!(
            "--credentials={}",
            DetachedS3::credentials_path(dir).display()
        ),
    ]
}

/// Spawn the server once on `port` and wait until it accepts connections (or exits, or
/// times out).
async fn spawn_once(
    program: &Path,
    subcommand: &[&str],
    dir: &Path,
    port: u16,
) -> Result<DetachedS3> {
    let log = dir.join("server.log");
    let offset = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(LocalError::io("open", &log))?;
    let out2 = out
        .try_clone()
        .map_err(LocalError::io("duplicate the descriptor of", &log))?;
    let mut child = Command::new(program)
        .args(subcommand)
        .args(server_args(dir, port))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(out2))
        .process_group(0)
        .spawn()
        .map_err(LocalError::io("spawn", program))?;
    let pid = child.id();
    let pid_path = dir.join("pid");
    if let Err(e) = fs::write(&pid_path, format!("{pid}\n")) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(LocalError::io("write", &pid_path)(e));
    }
    let failed = |failure| {
        let text = fs::read(&log)
            .map(|b| String::from_utf8_lossy(&b[(offset as usize).min(b.len())..]).into_owned())
            .unwrap_or_default();
        let failure = match failure {
            StartFailure::Exited(status) if text.contains("already in use") => {
                StartFailure::PortTaken(status)
            }
            other => other,
        };
        LocalError::S3Start {
            port,
            failure,
            log: log.clone(),
            log_tail: tail_lines(&text, LOG_TAIL_LINES),
        }
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Err(failed(StartFailure::Exited(status))),
            Ok(None) => {}
            Err(e) => return Err(LocalError::io("wait for", program)(e)),
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(StartFailure::NotReady(READY_TIMEOUT)));
        }
        tokio::time::sleep(POLL).await;
    }
    reap_in_background(child);
    tracing::debug!(port, pid, dir = %dir.display(), "local S3 server ready");
    Ok(DetachedS3 {
        dir: dir.to_path_buf(),
        pid,
        port,
    })
}

/// Reap the child if it exits while this process lives (no zombie); it keeps running when
/// this process exits.
fn reap_in_background(mut child: Child) {
    let _ = std::thread::Builder::new()
        .name("s3-reaper".into())
        .spawn(move || {
            let _ = child.wait();
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::scratch;

    #[test]
    fn credentials_are_random_private_and_redacted() {
        let root = scratch("s3-creds");
        let path = root.join("credentials.json");
        let a = S3Credentials::load_or_create(&path).unwrap();
        assert_eq!((a.access_key.len(), a.secret_key.len()), (20, 40));
        assert_eq!(S3Credentials::load_or_create(&path).unwrap(), a, "kept");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_ne!(S3Credentials::generate().unwrap(), a);
        assert!(!format!("{a:?}").contains(&a.secret_key));

        // An existing file with a wider mode is narrowed.
        let other = root.join("x.toml");
        fs::write(&other, "old").unwrap();
        fs::set_permissions(&other, fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&other, "new").unwrap();
        assert_eq!(fs::read_to_string(&other).unwrap(), "new");
        let mode = fs::metadata(&other).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn find_ignores_missing_stale_and_foreign_pids() {
        let root = scratch("s3-find");
        assert_eq!(DetachedS3::find(&root).unwrap(), None);
        // Our own pid is alive but does not serve this dir.
        fs::write(root.join("pid"), format!("{}\n", std::process::id())).unwrap();
        assert_eq!(DetachedS3::find(&root).unwrap(), None);
        fs::write(root.join("pid"), "junk").unwrap();
        assert_eq!(DetachedS3::find(&root).unwrap(), None);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn args_name_root_port_and_credentials_file() {
        let a = server_args(Path::new("/p/s3"), 6060);
        assert_eq!(
            a,
            [
                "--root=/p/s3/data",
                "--port=6060",
                "--credentials=/p/s3/credentials.json"
            ]
        );
        assert_eq!(port_from_args(&a), Some(6060));
    }
}
