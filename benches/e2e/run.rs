//! One `syncgate check` of the data set: its config, the child process (or the library call
//! with `--in-process`) and its peak RSS.

use crate::opts::{Opts, RssMethod};
use crate::{Res, DATABASE};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use syncgate::report::RunReport;

/// One syncgate run.
pub(crate) struct SyncgateRun {
    pub(crate) wall: Duration,
    pub(crate) peak_rss_kib: Option<u64>,
    pub(crate) report: RunReport,
}

pub(crate) fn config_text(up: u16, down: u16, out: &Path, opts: &Opts) -> String {
    let mut s = String::new();
    if let Some(t) = opts.threads {
        let _ = writeln!(s, "check-thread-count = {t}");
    }
    s.push_str("export-fix-sql = true\ncheck-struct-only = false\n");
    for (name, port) in [("upstream", up), ("downstream", down)] {
        let _ = write!(
            s,
            "\n[data-sources.{name}]\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"root\"\npassword = \"\"\n"
        );
    }
    if let Some(cs) = opts.chunk_size {
        let _ = write!(
            s,
            "\n[table-configs.all]\ntarget-tables = [\"{DATABASE}.*\"]\nchunk-size = {cs}\n"
        );
    }
    let _ = write!(
        s,
        "\n[task]\noutput-dir = {:?}\nsource-instances = [\"upstream\"]\n\
         target-instance = \"downstream\"\ntarget-check-tables = [\"{DATABASE}.*\"]\n",
        out.display().to_string()
    );
    if opts.chunk_size.is_some() {
        s.push_str("target-configs = [\"all\"]\n");
    }
    s
}

pub(crate) async fn run_syncgate(work: &Path, config: &str, opts: &Opts) -> Res<SyncgateRun> {
    let out = work.join("out");
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    let config_path = work.join("config.toml");
    std::fs::write(&config_path, config)?;
    // Through the library in any case: the config must be valid before anything is timed.
    let parsed = syncgate::config::Config::from_toml_str(config, "e2e config")?;
    let job = syncgate::job::job_from_config(&parsed, &Default::default())?;
    if opts.in_process {
        let start = Instant::now();
        let report =
            syncgate::check::run_check(job, syncgate::report::progress::Progress::hidden()).await?;
        syncgate::report::write_summary(&report, &out)?;
        return Ok(SyncgateRun {
            wall: start.elapsed(),
            peak_rss_kib: None,
            report,
        });
    }
    drop(job);
    let (wall, peak_rss_kib) = run_child(work, &config_path, &out, opts.rss).await?;
    let summary = std::fs::read_to_string(out.join(syncgate::report::SUMMARY_JSON))?;
    let report: RunReport = serde_json::from_str(&summary)?;
    Ok(SyncgateRun {
        wall,
        peak_rss_kib,
        report,
    })
}

/// `syncgate check` of the built binary as a child process (stdout and stderr into `work`):
/// its wall time and peak RSS in KiB.
async fn run_child(
    work: &Path,
    config_path: &Path,
    out: &Path,
    method: RssMethod,
) -> Res<(Duration, Option<u64>)> {
    let rss_file = work.join("rss.txt");
    // Another build (say, the commit before a change) when SG_E2E_SYNCGATE names one.
    let bin = std::env::var_os("SG_E2E_SYNCGATE").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_syncgate")),
        PathBuf::from,
    );
    let mut cmd = match method {
        RssMethod::Time => {
            let mut c = Command::new("/usr/bin/time");
            c.arg("-f").arg("%M").arg("-o").arg(&rss_file).arg(&bin);
            c
        }
        RssMethod::Poll => Command::new(&bin),
    };
    cmd.arg("check")
        .arg("-C")
        .arg(config_path)
        .arg("--output-dir")
        .arg(out)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(work.join("stdout.txt"))?)
        .stderr(std::fs::File::create(work.join("stderr.txt"))?);
    let (wall, status, polled) =
        tokio::task::spawn_blocking(move || wait_polling(cmd, method)).await??;
    let code = status.code().unwrap_or(-1);
    if code != 0 && code != 1 {
        let err = std::fs::read_to_string(work.join("stderr.txt")).unwrap_or_default();
        return Err(format!("syncgate check exited with {code}:\n{}", tail(&err, 20)).into());
    }
    let peak_rss_kib = match method {
        RssMethod::Time => std::fs::read_to_string(&rss_file)?
            .lines()
            .filter_map(|l| l.trim().parse::<u64>().ok())
            .next_back(),
        RssMethod::Poll => polled,
    };
    Ok((wall, peak_rss_kib))
}

/// Run `cmd` to its end: wall time, exit status, and with [`RssMethod::Poll`] the largest
/// `VmHWM` seen while it ran.
fn wait_polling(
    mut cmd: Command,
    method: RssMethod,
) -> Res<(Duration, std::process::ExitStatus, Option<u64>)> {
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let mut peak = None;
    let status = match method {
        // GNU time reports the peak itself (from wait4).
        RssMethod::Time => child.wait()?,
        // VmHWM only grows, but it is gone once the process has exited: keep the last
        // value read while it ran (a peak in the last 2 ms can be missed).
        RssMethod::Poll => loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            if let Some(v) = vm_hwm_kib(child.id()) {
                peak = Some(peak.map_or(v, |p: u64| p.max(v)));
            }
            std::thread::sleep(Duration::from_millis(2));
        },
    };
    Ok((start.elapsed(), status, peak))
}

/// `VmHWM` of a live process, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
