//! OS-level helpers for local servers: finding the binaries, spawning `mariadbd` and waiting
//! until it accepts connections, `/proc` probes, signals (with the `kill` utility: no `libc`)
//! and the watchdog (see [`crate::local`]).

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use super::error::{LocalError, Result, StartFailure};
use super::server::{server_args, ServerOptions};
use super::{conn_opts, free_port, port_is_free, POLL};

/// How long a server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How many free ports are tried when the server cannot bind.
const PORT_ATTEMPTS: usize = 5;
/// Lines of a log quoted in errors.
pub(super) const LOG_TAIL_LINES: usize = 25;

/// The first of `names` found in `$SYNCGATE_MARIADB_BINDIR`, `PATH` or the usual system dirs.
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

pub(super) fn find_server_binary() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| find_binary(&["mariadbd", "mysqld"]))
        .clone()
}

pub(super) fn find_install_db() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| find_binary(&["mariadb-install-db", "mysql_install_db"]))
        .clone()
}

/// Whether `mariadbd` (or `mysqld`) and an install-db script can be found.
pub fn mariadbd_available() -> bool {
    find_server_binary().is_some() && find_install_db().is_some()
}

pub(super) fn is_root() -> bool {
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

pub(super) fn current_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "mysql".into())
}

/// `/proc/PID` exists and is not a zombie.
pub(crate) fn process_alive(pid: u32) -> bool {
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
pub(super) fn is_server_process(pid: u32) -> bool {
    if !process_alive(pid) {
        return false;
    }
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    matches!(comm.trim(), "mariadbd" | "mysqld")
}

pub(crate) fn read_cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// The port of server `pid` running in `dir`: the last `--port=` of its command line, else
/// `DIR/port`.
pub(super) fn server_port(pid: u32, dir: &Path) -> Option<u16> {
    read_cmdline(pid)
        .and_then(|args| port_from_args(&args))
        .or_else(|| {
            fs::read_to_string(dir.join("port"))
                .ok()
                .and_then(|p| p.trim().parse().ok())
        })
}

/// The last `--port=N` of a command line.
pub(super) fn port_from_args(args: &[String]) -> Option<u16> {
    args.iter()
        .rev()
        .find_map(|a| a.strip_prefix("--port=").and_then(|p| p.parse().ok()))
}

/// Send a signal with the `kill` utility (no libc dependency).
pub(crate) fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg("-s")
        .arg(sig)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The watchdog: SIGKILL `pid` (and remove `dir`) once our end of its stdin closes.
pub(super) fn spawn_watchdog(pid: u32, dir: Option<&Path>) -> Result<Child> {
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

/// Spawn `mariadbd` on `opts.port` (or free ports) until one becomes ready.
/// `fixed_port`: do not retry with another port.
pub(super) async fn spawn_until_ready(
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
pub(super) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::scratch;

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
