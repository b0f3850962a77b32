//! [`LocalError`]: what can go wrong with local `mariadbd` processes and the playground.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

/// Result alias of [`crate::local`] and [`crate::testdata`].
pub type Result<T, E = LocalError> = std::result::Result<T, E>;

/// SQL longer than this is cut in messages (multi-row INSERTs are megabytes).
const MAX_SQL_SHOWN: usize = 200;

/// Errors of [`crate::local`] and of [`crate::testdata`] (whose servers are usually local).
/// Converts into the crate's [`crate::Error`] (`Error::Local`).
///
/// Every message is complete on its own: it includes the text of the underlying error (the
/// MySQL error with its server code, the OS error), so it reads well after `error: ` and in
/// test panics. The underlying errors are kept typed in the `error` fields (see
/// [`LocalError::mysql_error`], [`LocalError::server_code`]); they are deliberately not
/// reported as [`std::error::Error::source`], so chain printers (`anyhow`'s `{:#}` in `main`)
/// do not repeat them.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// `mariadbd` or `mariadb-install-db` is not installed.
    #[error(
        "mariadbd / mariadb-install-db not found on PATH or in /usr/sbin, /usr/bin \
         (install the `mariadb-server` package)"
    )]
    MissingBinaries,
    /// `mariadbd` did not come up; quotes the end of its error log.
    #[error("{}; last lines of {}:\n{log_tail}", failure.describe("mariadbd", *port), log.display())]
    Start {
        port: u16,
        failure: StartFailure,
        /// The server's error log.
        log: PathBuf,
        /// Its last non-empty lines written during this start.
        log_tail: String,
    },
    /// `mariadb-install-db` failed while building the data-dir template.
    #[error("{} failed ({status}):\n{output_tail}", program.display())]
    InstallDb {
        program: PathBuf,
        status: ExitStatus,
        output_tail: String,
    },
    /// The output of `mariadbd --version` holds no version.
    #[error("cannot parse the version from `{} --version`: {output}", program.display())]
    Version { program: PathBuf, output: String },
    /// A fixed port cannot be bound.
    #[error(
        "port {port} is already in use on 127.0.0.1; stop what uses it or choose another port"
    )]
    PortInUse { port: u16 },
    /// No free port could be found (binding port 0 failed).
    #[error("bind 127.0.0.1:0: {error}")]
    NoFreePort { error: std::io::Error },
    /// A server already runs in the dir a new one should use.
    #[error("a server already runs in {} (pid {pid}, port {port})", dir.display())]
    AlreadyRunning { dir: PathBuf, pid: u32, port: u16 },
    /// A server runs in `dir` but neither its command line nor `DIR/port` tells its port.
    #[error("mariadbd pid {pid} in {} runs but its port is unknown", dir.display())]
    UnknownPort { dir: PathBuf, pid: u32 },
    /// A clean shutdown took too long; the server was killed.
    #[error("mariadbd (pid {pid}) did not stop within {timeout:?} after SHUTDOWN; killed it")]
    StopTimeout { pid: u32, timeout: Duration },
    /// [`crate::local::LocalServer::start_detached`] without a data dir.
    #[error("a detached server needs a persistent data dir")]
    DetachedWithoutDir,
    /// Connecting to a server failed.
    #[error("connect to {addr}: {error}")]
    Connect {
        addr: String,
        error: mysql_async::Error,
    },
    /// A statement failed (`sql` is cut to 200 characters).
    #[error("{addr}: {sql}: {error}")]
    Query {
        addr: String,
        sql: String,
        error: mysql_async::Error,
    },
    /// A file system or process operation on `path` failed (`action`: "create", "read", …).
    #[error("{action} {}: {error}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    /// Copying the template data dir into a server dir failed.
    #[error("copy template {} to {}: {error}", template.display(), to.display())]
    CopyTemplate {
        template: PathBuf,
        to: PathBuf,
        error: std::io::Error,
    },
    /// A blocking or spawned task panicked or was cancelled.
    #[error("{what} task: {error}")]
    Task {
        what: &'static str,
        error: tokio::task::JoinError,
    },
    /// The playground's `state.json` cannot be read or written.
    #[error("invalid {}: {error}", path.display())]
    State {
        path: PathBuf,
        error: serde_json::Error,
    },
    /// Playground options that cannot work (same ports, no tables).
    #[error("{0}")]
    Options(String),
    /// A playground server that must run does not.
    #[error(
        "playground {role} in {} is not running (run `syncgate playground up`)",
        dir.display()
    )]
    NotRunning { role: &'static str, dir: PathBuf },
    /// The local S3 server process ([`crate::local::DetachedS3`]) did not come up; quotes the
    /// end of its log.
    #[error(
        "{}; last lines of {}:\n{log_tail}",
        failure.describe("the local S3 server", *port),
        log.display()
    )]
    S3Start {
        port: u16,
        failure: StartFailure,
        /// The server's log (its stdout and stderr).
        log: PathBuf,
        /// Its last non-empty lines written during this start.
        log_tail: String,
    },
    /// The credentials file of a local S3 server cannot be read.
    #[error("invalid {}: {error}", path.display())]
    S3Credentials {
        path: PathBuf,
        error: serde_json::Error,
    },
    /// The local S3 server cannot serve its directory.
    #[error("local S3 server on {}: {message}", root.display())]
    S3Server { root: PathBuf, message: String },
    /// An error of one playground server (`upstream`, `downstream`).
    #[error("{role}: {error}")]
    Role {
        role: &'static str,
        error: Box<LocalError>,
    },
}

/// Why [`LocalError::Start`] happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFailure {
    /// `mariadbd` exited during start-up.
    Exited(ExitStatus),
    /// `mariadbd` exited because another process holds the port.
    PortTaken(ExitStatus),
    /// `mariadbd` did not accept connections in time (it was killed).
    NotReady(Duration),
}

impl StartFailure {
    /// The failure of `program` (as named in messages) starting on `port`.
    fn describe(&self, program: &str, port: u16) -> String {
        match self {
            StartFailure::Exited(status) => {
                format!("{program} exited during start-up ({status}) on port {port}")
            }
            StartFailure::PortTaken(status) => format!(
                "port {port} is already in use on 127.0.0.1: {program} exited during start-up \
                 ({status})"
            ),
            StartFailure::NotReady(timeout) => {
                format!("{program} did not accept connections on port {port} within {timeout:?}")
            }
        }
    }
}

impl LocalError {
    /// `map_err` adapter for [`LocalError::Io`].
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |error| LocalError::Io {
            action,
            path,
            error,
        }
    }

    /// `map_err` adapter for [`LocalError::Query`] (cuts long SQL).
    pub(crate) fn query(addr: &str, sql: &str) -> impl FnOnce(mysql_async::Error) -> Self {
        let sql = if sql.len() > MAX_SQL_SHOWN {
            let mut end = MAX_SQL_SHOWN;
            while !sql.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &sql[..end])
        } else {
            sql.to_string()
        };
        let addr = addr.to_string();
        move |error| LocalError::Query { addr, sql, error }
    }

    /// `map_err` adapter for [`LocalError::Task`].
    pub(crate) fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> Self {
        move |error| LocalError::Task { what, error }
    }

    /// `map_err` adapter for [`LocalError::Role`].
    pub(crate) fn role(role: &'static str) -> impl FnOnce(LocalError) -> Self {
        move |error| LocalError::Role {
            role,
            error: Box::new(error),
        }
    }

    /// The MySQL error of a failed connection or statement.
    pub fn mysql_error(&self) -> Option<&mysql_async::Error> {
        match self {
            LocalError::Connect { error, .. } | LocalError::Query { error, .. } => Some(error),
            LocalError::Role { error, .. } => error.mysql_error(),
            _ => None,
        }
    }

    /// The server's error code (e.g. 1045), when a server answered with an error.
    pub fn server_code(&self) -> Option<u16> {
        match self.mysql_error()? {
            mysql_async::Error::Server(e) => Some(e.code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_sql_is_cut_on_a_char_boundary() {
        let sql = format!("SELECT '{}'", "é".repeat(300));
        let e = LocalError::query("127.0.0.1:1", &sql)(mysql_async::Error::Other("x".into()));
        let LocalError::Query { sql: shown, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(shown.len() <= MAX_SQL_SHOWN + '…'.len_utf8(), "{shown}");
        assert!(shown.ends_with('…'));
        assert!(e.to_string().starts_with("127.0.0.1:1: SELECT '"), "{e}");
        assert_eq!(e.server_code(), None);
    }

    #[test]
    fn role_wraps_and_keeps_the_server_code() {
        let server = mysql_async::ServerError {
            code: 1045,
            message: "Access denied".into(),
            state: "28000".into(),
        };
        let e = LocalError::Connect {
            addr: "127.0.0.1:3307".into(),
            error: mysql_async::Error::Server(server),
        };
        let e = LocalError::role("upstream")(e);
        assert!(
            e.to_string()
                .starts_with("upstream: connect to 127.0.0.1:3307: "),
            "{e}"
        );
        assert!(e.to_string().contains("Access denied"), "{e}");
        assert_eq!(e.server_code(), Some(1045));
        assert!(std::error::Error::source(&e).is_none());
    }

    #[test]
    fn start_failures_read_well() {
        let e = LocalError::Start {
            port: 4000,
            failure: StartFailure::NotReady(Duration::from_secs(30)),
            log: "/x/err.log".into(),
            log_tail: "a\nb".into(),
        };
        assert_eq!(
            e.to_string(),
            "mariadbd did not accept connections on port 4000 within 30s; last lines of \
             /x/err.log:\na\nb"
        );
    }
}
