//! One data set measured: servers started, data seeded and drifted (or reused with
//! `--keep-data`), raw limit and syncgate timed interleaved, the third-party tools run once.

use crate::opts::Opts;
use crate::raw::{check_against_plan, RawConns};
use crate::run::{config_text, run_syncgate, SyncgateRun};
use crate::scenario::{DataSpec, Expected};
use crate::seed::seed_and_drift;
use crate::tools::{run_pt_table_checksum, run_reladiff, ToolResult};
use crate::verify::verify;
use crate::Res;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use syncgate::local::{LocalServer, ServerOptions};

/// Everything measured on one data set.
#[derive(Debug, Clone)]
pub(crate) struct Measurement {
    pub(crate) spec: DataSpec,
    pub(crate) seed_time: Duration,
    pub(crate) raw: Duration,
    pub(crate) syncgate: Duration,
    pub(crate) syncgate_runs: Vec<Duration>,
    pub(crate) raw_runs: Vec<Duration>,
    pub(crate) peak_rss_kib: Option<u64>,
    pub(crate) reladiff: ToolResult,
    pub(crate) pt: ToolResult,
    pub(crate) problems: Vec<String>,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn buffer_pool_for(spec: &DataSpec, opts: &Opts) -> String {
    if let Some(b) = &opts.buffer_pool {
        return b.clone();
    }
    let mib = (spec.total_rows() * 400).div_ceil(1 << 20).max(512);
    format!("{}M", mib.div_ceil(128) * 128)
}

fn work_dir(label: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("e2e-bench").join(label)
}

pub(crate) async fn measure(spec: DataSpec, opts: &Opts) -> Res<Measurement> {
    // Kept data sets of another charset live in their own dirs.
    let mut label = match &opts.charset {
        Some(cs) => format!("{}-{cs}", spec.label()),
        None => spec.label(),
    };
    if opts.key != crate::seed::KeyShape::Int {
        label = format!("{label}-key-{}", opts.key.label());
    }
    let work = work_dir(&label);
    std::fs::create_dir_all(&work)?;
    let reuse = reuse_kept_data(&work, &spec.label(), opts)?;
    let (up, down) = start_servers(&spec, &work, reuse, opts).await?;
    let servers = [&up, &down];
    let plan = spec.plan();
    let seed_time = prepare_data(&servers, &spec, &plan, &work, reuse, opts).await?;
    let runs = timed_runs(&servers, &spec, &plan, &work, opts).await?;
    let (reladiff, pt) = run_tools(&servers, &spec, &plan, opts).await;
    stop_servers(up, down, opts.keep_data).await?;
    Ok(Measurement {
        spec,
        seed_time,
        raw: median(runs.raw.clone()),
        syncgate: median(runs.syncgate.clone()),
        syncgate_runs: runs.syncgate,
        raw_runs: runs.raw,
        peak_rss_kib: runs.peak_rss_kib,
        reladiff,
        pt,
        problems: runs.problems,
    })
}

/// Written only after seeding and drift completed, so an interrupted seed is redone from
/// scratch.
fn seeded_marker(work: &Path) -> PathBuf {
    work.join("seeded")
}

/// With `--keep-data` the data set lives in persistent server dirs: whether they hold this
/// data set, seeded and drifted (otherwise they are removed).
fn reuse_kept_data(work: &Path, label: &str, opts: &Opts) -> Res<bool> {
    let reuse =
        opts.keep_data && std::fs::read_to_string(seeded_marker(work)).is_ok_and(|m| m == label);
    if opts.keep_data && !reuse {
        for side in ["server-up", "server-down"] {
            let dir = work.join(side);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
        }
    }
    Ok(reuse)
}

/// The upstream and downstream `mariadbd`, buffer pool sized to the data.
async fn start_servers(
    spec: &DataSpec,
    work: &Path,
    reuse: bool,
    opts: &Opts,
) -> Res<(LocalServer, LocalServer)> {
    let pool = buffer_pool_for(spec, opts);
    eprintln!(
        "== {}: starting two servers (buffer pool {pool} each{})",
        spec.label(),
        if reuse { ", kept data" } else { "" }
    );
    let mut args = vec![
        format!("--innodb-buffer-pool-size={pool}"),
        "--innodb-log-file-size=512M".into(),
    ];
    if let Some(cs) = &opts.charset {
        eprintln!("== character-set-server={cs}");
        // The servers' collation-server names a utf8mb4 collation: give the charset's own.
        let collation = match cs.as_str() {
            "latin1" => "latin1_swedish_ci".to_string(),
            other => format!("{other}_general_ci"),
        };
        args.push(format!("--character-set-server={cs}"));
        args.push(format!("--collation-server={collation}"));
    }
    let server_opts = |side: &str| ServerOptions {
        extra_args: args.clone(),
        data_dir: opts.keep_data.then(|| work.join(side)),
        ..ServerOptions::default()
    };
    Ok(tokio::try_join!(
        LocalServer::start(server_opts("server-up")),
        LocalServer::start(server_opts("server-down"))
    )?)
}

/// Seed and drift unless reused; returns the time it took.
async fn prepare_data(
    servers: &[&LocalServer; 2],
    spec: &DataSpec,
    plan: &[Expected],
    work: &Path,
    reuse: bool,
    opts: &Opts,
) -> Res<Duration> {
    let start = Instant::now();
    if !reuse {
        seed_and_drift(servers, spec, plan).await?;
        crate::seed::reshape_keys(servers, spec, opts.key).await?;
        if opts.keep_data {
            std::fs::write(seeded_marker(work), spec.label())?;
        }
    }
    let seed_time = start.elapsed();
    let injected = plan.iter().fold(Expected::default(), |a, e| Expected {
        missing: a.missing + e.missing,
        extra: a.extra + e.extra,
        changed: a.changed + e.changed,
    });
    eprintln!(
        "   {} {} rows per side and drifted {} missing / {} extra / {} changed in {:.1}s",
        if reuse { "reused" } else { "seeded" },
        spec.total_rows(),
        injected.missing,
        injected.extra,
        injected.changed,
        seed_time.as_secs_f64()
    );
    Ok(seed_time)
}

/// The interleaved raw limit and syncgate runs of one data set.
#[derive(Default)]
struct TimedRuns {
    raw: Vec<Duration>,
    syncgate: Vec<Duration>,
    peak_rss_kib: Option<u64>,
    /// The first run's problems (see [`verify`]).
    problems: Vec<String>,
}

impl TimedRuns {
    fn add_syncgate(&mut self, run: &SyncgateRun, problems: Vec<String>) {
        if self.problems.is_empty() {
            self.problems = problems;
        }
        self.syncgate.push(run.wall);
        if let Some(k) = run.peak_rss_kib {
            self.peak_rss_kib = Some(self.peak_rss_kib.map_or(k, |p| p.max(k)));
        }
    }
}

async fn timed_runs(
    servers: &[&LocalServer; 2],
    spec: &DataSpec,
    plan: &[Expected],
    work: &Path,
    opts: &Opts,
) -> Res<TimedRuns> {
    let mut raw = RawConns::open(servers, spec.tables, opts.threads.unwrap_or(4)).await?;
    // Warm-up (and a sanity check of the data: sides equal exactly where no drift was put).
    let (_, sums) = raw.run().await?;
    check_against_plan(&sums, plan)?;
    let out = work.join("out");
    let config = config_text(servers[0].port(), servers[1].port(), &out, opts);
    let mut runs = TimedRuns::default();
    for i in 0..opts.runs {
        let (t, _) = raw.run().await?;
        runs.raw.push(t);
        let run = run_syncgate(work, &config, opts).await?;
        let p = verify(&run, spec, plan, &out);
        log_run(i, t, &run, &p);
        runs.add_syncgate(&run, p);
    }
    raw.close().await;
    Ok(runs)
}

/// One run's progress line on stderr.
fn log_run(i: usize, raw: Duration, run: &SyncgateRun, problems: &[String]) {
    eprintln!(
        "   run {}: raw limit {:.3}s, syncgate {:.3}s{}{}",
        i + 1,
        raw.as_secs_f64(),
        run.wall.as_secs_f64(),
        run.peak_rss_kib
            .map(|k| format!(", peak RSS {:.1} MiB", k as f64 / 1024.0))
            .unwrap_or_default(),
        if problems.is_empty() {
            ", counts correct".to_string()
        } else {
            format!(", WRONG: {}", problems.join("; "))
        }
    );
}

/// reladiff and pt-table-checksum, once each, when installed.
async fn run_tools(
    servers: &[&LocalServer; 2],
    spec: &DataSpec,
    plan: &[Expected],
    opts: &Opts,
) -> (ToolResult, ToolResult) {
    let (up, down) = (servers[0].port(), servers[1].port());
    let reladiff = match &opts.reladiff {
        None => ToolResult::NotInstalled,
        Some(exe) => {
            eprintln!("   reladiff ({})", exe.display());
            run_reladiff(exe, (up, down), plan).await
        }
    };
    let pt = match &opts.pt_table_checksum {
        None => ToolResult::NotInstalled,
        Some(exe) => {
            eprintln!("   pt-table-checksum ({})", exe.display());
            run_pt_table_checksum(exe, up, spec.total_rows()).await
        }
    };
    (reladiff, pt)
}

async fn stop_servers(up: LocalServer, down: LocalServer, keep_data: bool) -> Res<()> {
    if keep_data {
        // A clean shutdown, so the next start needs no crash recovery.
        let (a, b) = tokio::join!(up.shutdown(), down.shutdown());
        a?;
        b?;
    } else {
        drop(up);
        drop(down);
    }
    Ok(())
}
