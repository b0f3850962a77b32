//! The vendors' tools as subprocesses: `mariadb-dump`/`mysqldump` for backups, the
//! `mariadb`/`mysql` client for restores.
//!
//! Credentials never appear on a command line (other users can read it in `ps`): each run
//! gets a private defaults file (mode 0600) passed as `--defaults-file`, removed when the
//! run ends.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use super::DrError;
use crate::config::DataSource;
use crate::error::Result;

/// How much of a tool's stderr is kept for the error message.
const STDERR_TAIL: usize = 2000;

/// A client tool bound to one server.
pub struct ClientTool {
    pub program: String,
    defaults: tempfile::NamedTempFile,
}

impl std::fmt::Debug for ClientTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTool")
            .field("program", &self.program)
            .finish_non_exhaustive()
    }
}

impl ClientTool {
    /// The binlog reader (`mariadb-binlog`, else `mysqlbinlog`) for `ds`.
    pub fn binlog_reader(ds: &DataSource) -> Result<ClientTool> {
        ClientTool::new(&["mariadb-binlog", "mysqlbinlog"], "mariadb-client", ds)
    }

    /// The first of `candidates` that runs, with a defaults file for `ds`.
    pub fn new(candidates: &[&str], package: &str, ds: &DataSource) -> Result<ClientTool> {
        let program = find_program(candidates, package)?;
        let defaults = defaults_file(ds)?;
        Ok(ClientTool { program, defaults })
    }

    /// `--defaults-file=…`: must be the first argument.
    pub fn defaults_arg(&self) -> String {
        format!("--defaults-file={}", self.defaults.path().display())
    }

    /// The tool's version line (`mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, …`).
    pub async fn version(&self) -> String {
        match Command::new(&self.program).arg("--version").output().await {
            Ok(out) => String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            Err(_) => String::new(),
        }
    }

    /// Start the tool with `args` after the defaults file; stdin/stdout as given, stderr
    /// read all along (a tool that writes many warnings must never block on a full pipe)
    /// and handed to [`finish`].
    pub fn spawn(&self, args: &[String], stdin: Stdio, stdout: Stdio) -> Result<Running> {
        let mut cmd = Command::new(&self.program);
        cmd.arg(self.defaults_arg())
            .args(args)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| DrError::ToolMissing {
            tool: self.program.clone(),
            package: "mariadb-client".into(),
            cause: e.to_string(),
        })?;
        let err = child.stderr.take();
        let stderr = tokio::spawn(async move {
            let mut buf = Vec::new();
            if let Some(mut err) = err {
                let _ = err.read_to_end(&mut buf).await;
            }
            String::from_utf8_lossy(&buf).into_owned()
        });
        Ok(Running {
            tool: self.program.clone(),
            child,
            stderr,
        })
    }
}

/// A started tool.
pub struct Running {
    pub tool: String,
    pub child: Child,
    stderr: tokio::task::JoinHandle<String>,
}

/// Wait for the tool and turn a failure into an error carrying the end of its stderr.
pub async fn finish(running: Running) -> Result<()> {
    let Running {
        tool,
        mut child,
        stderr,
    } = running;
    let status = child.wait().await?;
    let stderr = stderr.await.unwrap_or_default();
    if status.success() {
        if !stderr.trim().is_empty() {
            tracing::info!("{tool}: {}", stderr.trim());
        }
        return Ok(());
    }
    Err(DrError::Tool {
        tool: tool.to_string(),
        status: status.to_string(),
        stderr: tail(&stderr),
    }
    .into())
}

/// The last [`STDERR_TAIL`] bytes of `text`, on one line.
fn tail(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut start = one_line.len().saturating_sub(STDERR_TAIL);
    while !one_line.is_char_boundary(start) {
        start += 1;
    }
    one_line[start..].to_string()
}

/// The first candidate program found on PATH.
fn find_program(candidates: &[&str], package: &str) -> Result<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in candidates {
        if std::env::split_paths(&path).any(|dir| is_executable(&dir.join(name))) {
            return Ok((*name).to_string());
        }
    }
    Err(DrError::ToolMissing {
        tool: candidates.join(" or "),
        package: package.to_string(),
        cause: "not found on PATH".into(),
    }
    .into())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A private option file with the connection settings of `ds`.
fn defaults_file(ds: &DataSource) -> Result<tempfile::NamedTempFile> {
    let mut file = tempfile::Builder::new()
        .prefix("syncgate-client-")
        .suffix(".cnf")
        .tempfile()?; // created 0600
    let mut text = String::from("[client]\n");
    text.push_str(&format!("host={}\n", option_value(&ds.host)));
    text.push_str(&format!("port={}\n", ds.port));
    text.push_str(&format!("user={}\n", option_value(&ds.user)));
    text.push_str(&format!("password={}\n", option_value(&ds.password)));
    text.push_str("protocol=TCP\n");
    if let Some(sec) = &ds.security {
        if let Some(ca) = &sec.ca_path {
            text.push_str(&format!("ssl-ca={}\n", option_value(ca)));
        }
        if let Some(cert) = &sec.cert_path {
            text.push_str(&format!("ssl-cert={}\n", option_value(cert)));
        }
        if let Some(key) = &sec.key_path {
            text.push_str(&format!("ssl-key={}\n", option_value(key)));
        }
        text.push_str("ssl=1\n");
    }
    file.write_all(text.as_bytes())?;
    file.flush()?;
    Ok(file)
}

/// An option-file value: quoted, with the escapes the option-file parser understands.
fn option_value(v: &str) -> String {
    let escaped = v
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values_are_quoted_and_escaped() {
        assert_eq!(option_value("p#w\"d\\"), "\"p#w\\\"d\\\\\"");
    }

    #[test]
    fn stderr_tail_is_one_line_and_bounded() {
        let long = "x\n".repeat(5000);
        let t = tail(&long);
        assert!(!t.contains('\n'));
        assert!(t.len() <= STDERR_TAIL);
    }
}
