//! The third-party tools, run once on the same data when installed: reladiff and
//! pt-table-checksum.

use crate::run::tail;
use crate::scenario::Expected;
use crate::{Res, DATABASE};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A third-party tool's single run.
#[derive(Debug, Clone)]
pub(crate) enum ToolResult {
    NotInstalled,
    Ran {
        wall: Duration,
        note: Option<String>,
    },
    Failed(String),
}

fn run_tool(cmds: Vec<Command>) -> Res<(Duration, Vec<std::process::Output>)> {
    let start = Instant::now();
    let children = cmds
        .into_iter()
        .map(|mut c| {
            c.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = children
        .into_iter()
        .map(|c| c.wait_with_output())
        .collect::<Result<Vec<_>, _>>()?;
    Ok((start.elapsed(), outputs))
}

/// reladiff, one process per table, all at once; the diff lines are counted against the
/// drift (a changed row is one `-` and one `+` line).
pub(crate) async fn run_reladiff(exe: &Path, ports: (u16, u16), plan: &[Expected]) -> ToolResult {
    let cmds = (1..=plan.len())
        .map(|t| {
            let mut c = Command::new(exe);
            c.arg(format!("mysql://root@127.0.0.1:{}/{DATABASE}", ports.0))
                .arg(format!("sbtest{t}"))
                .arg(format!("mysql://root@127.0.0.1:{}/{DATABASE}", ports.1))
                .arg(format!("sbtest{t}"))
                .args(["-k", "id", "-c", "k", "-c", "c", "-c", "pad"]);
            c
        })
        .collect();
    let res = tokio::task::spawn_blocking(move || run_tool(cmds)).await;
    let (wall, outputs) = match res {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return ToolResult::Failed(e.to_string()),
        Err(e) => return ToolResult::Failed(e.to_string()),
    };
    let mut lines = 0u64;
    for o in &outputs {
        let err = String::from_utf8_lossy(&o.stderr);
        // reladiff exits 0 after logging some failures (a missing database driver).
        if !o.status.success() || err.contains("ERROR") {
            return ToolResult::Failed(format!("exit {:?}: {}", o.status.code(), tail(&err, 3)));
        }
        lines += String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with("+ ") || l.starts_with("- "))
            .count() as u64;
    }
    let want: u64 = plan
        .iter()
        .map(|e| e.missing + e.extra + 2 * e.changed)
        .sum();
    ToolResult::Ran {
        wall,
        note: (lines != want).then(|| format!("{lines} diff lines, expected {want}")),
    }
}

/// pt-table-checksum on the upstream only (no replicas: `--recursion-method none`); the
/// ROWS column of its report must add up to the upstream's rows.
pub(crate) async fn run_pt_table_checksum(exe: &Path, port: u16, rows: u64) -> ToolResult {
    let mut c = Command::new(exe);
    c.arg(format!("h=127.0.0.1,P={port},u=root")).args([
        "--databases",
        DATABASE,
        "--recursion-method",
        "none",
        "--no-check-binlog-format",
        "--no-check-replication-filters",
        "--no-version-check",
        "--replicate",
        "percona.checksums",
        "--create-replicate-table",
    ]);
    let res = tokio::task::spawn_blocking(move || run_tool(vec![c])).await;
    match res {
        Ok(Ok((wall, outputs))) => {
            let o = &outputs[0];
            // Exit flags: 2 = warnings/differences on replicas (none here), 1 = error.
            // TS ERRORS DIFFS ROWS DIFF_ROWS CHUNKS SKIPPED TIME TABLE
            let (mut checked, mut errors) = (0u64, 0u64);
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() >= 9 && f[8].starts_with(&format!("{DATABASE}.")) {
                    errors += f[1].parse::<u64>().unwrap_or(1);
                    checked += f[3].parse::<u64>().unwrap_or(0);
                }
            }
            let mut notes = Vec::new();
            if checked != rows {
                notes.push(format!("{checked} rows checksummed, upstream has {rows}"));
            }
            if errors > 0 {
                notes.push(format!("{errors} errors"));
            }
            match o.status.code() {
                Some(code) if code & 1 == 0 && code < 64 => {
                    if code != 0 {
                        notes.push(format!("exit {code}"));
                    }
                    ToolResult::Ran {
                        wall,
                        note: (!notes.is_empty()).then(|| notes.join(", ")),
                    }
                }
                code => ToolResult::Failed(format!(
                    "exit {code:?}: {}",
                    tail(&String::from_utf8_lossy(&o.stderr), 3)
                )),
            }
        }
        Ok(Err(e)) => ToolResult::Failed(e.to_string()),
        Err(e) => ToolResult::Failed(e.to_string()),
    }
}
