//! Checks of a live MariaDB primary/replica pair while the primary takes writes: how many
//! runs report differences that are only replication lag, with and without the GTID fence,
//! and how long the fence blocks commits.
//!
//! Run: `cargo bench --bench online_check` (env `SG_ONLINE_RUNS`, default 10 per mode;
//! `SG_ONLINE_ROWS`, default 100000 rows in each of 2 tables). Starts its own two servers,
//! sets up GTID replication, runs a write load on the primary for the whole bench, then runs
//! `syncgate check` (in process) repeatedly with `snapshot = "auto"` on both sides (fenced)
//! and with no snapshot (live).

use mysql_async::prelude::Queryable;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use syncgate::config::Config;
use syncgate::job::{job_from_config, Overrides};
use syncgate::local::{LocalServer, ServerOptions};
use syncgate::report::progress::Progress;
use syncgate::report::{RunReport, RunResult};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn scalar(server: &LocalServer, sql: &str) -> String {
    let mut c = server.conn().await.expect("connect");
    let v: Option<String> = c.query_first(sql).await.expect(sql);
    let _ = c.disconnect().await;
    v.unwrap_or_default()
}

fn config(up: u16, down: u16, snapshot: &str, out: &std::path::Path) -> String {
    format!(
        r#"check-thread-count = 4
[data-sources.primary]
host = "127.0.0.1"
port = {up}
user = "root"
snapshot = "{snapshot}"

[data-sources.replica]
host = "127.0.0.1"
port = {down}
user = "root"
snapshot = "{snapshot}"

[task]
output-dir = "{}"
source-instances = ["primary"]
target-instance = "replica"
target-check-tables = ["sbtest.*"]
"#,
        out.display()
    )
}

/// "… commits blocked 3.5 ms" -> 3.5
fn lock_ms(point: &str) -> Option<f64> {
    let (_, rest) = point.split_once("commits blocked ")?;
    rest.split_whitespace().next()?.parse().ok()
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// A primary and a replica with GTID replication, both holding `sbtest.sbtest1..2` of `rows`
/// rows each (seeded on the primary, the replica caught up).
async fn start_pair(rows: u64) -> Res<(LocalServer, LocalServer)> {
    let opts = |id| ServerOptions {
        server_id: Some(id),
        log_bin: true,
        extra_args: vec!["--innodb-buffer-pool-size=512M".into()],
        ..ServerOptions::default()
    };
    let primary = LocalServer::start(opts(1)).await?;
    let replica = LocalServer::start(opts(2)).await?;
    let mut rc = replica.conn().await?;
    rc.query_drop(format!(
        "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {}, MASTER_USER = 'root', \
         MASTER_PASSWORD = '', MASTER_USE_GTID = slave_pos; START SLAVE",
        primary.port()
    ))
    .await?;
    let t = Instant::now();
    syncgate::testdata::seed_sbtest(&[primary.opts()], 2, rows, 7).await?;
    let pos = scalar(&primary, "SELECT @@gtid_binlog_pos").await;
    let caught_up = scalar(&replica, &format!("SELECT MASTER_GTID_WAIT('{pos}', 300)")).await;
    assert_eq!(caught_up, "0", "replica caught up");
    eprintln!(
        "seeded and replicated 2 x {rows} rows in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    Ok((primary, replica))
}

/// Write load on the primary: updates and inserts in both tables, one small transaction at a
/// time, until [`WriteLoad::stop`].
struct WriteLoad {
    stop: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
    writer: tokio::task::JoinHandle<()>,
}

impl WriteLoad {
    fn start(primary: &LocalServer, rows: u64) -> WriteLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let writer = {
            let (stop, writes, opts) = (stop.clone(), writes.clone(), primary.opts());
            tokio::spawn(async move {
                let mut c = mysql_async::Conn::new(opts).await.expect("writer connects");
                let mut i: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let table = 1 + i % 2;
                    let id = 1 + (i * 7919) % rows;
                    c.query_drop(format!(
                        "UPDATE sbtest.sbtest{table} SET k = k + 1 WHERE id = {id}; \
                         INSERT INTO sbtest.sbtest{table} (k, c, pad) VALUES ({i}, 'w', 'w')"
                    ))
                    .await
                    .expect("write");
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        WriteLoad {
            stop,
            writes,
            writer,
        }
    }

    /// Stop the writer; returns the transactions it committed.
    async fn stop(self) -> Res<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.writer.await?;
        Ok(self.writes.load(Ordering::Relaxed))
    }
}

/// What the runs of one mode saw.
#[derive(Default)]
struct ModeStats {
    different: u64,
    reported: u64,
    locks: Vec<f64>,
    times: Vec<f64>,
}

impl ModeStats {
    fn add(&mut self, report: &RunReport, secs: f64) {
        self.times.push(secs);
        assert_ne!(report.result, RunResult::Error, "{:?}", report.error);
        if report.result == RunResult::Different {
            self.different += 1;
        }
        self.reported += report
            .tables
            .iter()
            .map(|t| t.rows_missing + t.rows_extra + t.rows_changed)
            .sum::<u64>();
        for point in std::iter::once(&report.downstream.snapshot)
            .chain(report.upstream.iter().map(|s| &s.snapshot))
        {
            if let Some(ms) = lock_ms(point) {
                self.locks.push(ms);
            }
        }
    }

    /// The markdown table row of this mode.
    fn row(mut self, mode: &str, runs: u64) -> String {
        self.times.sort_by(f64::total_cmp);
        let lock = if self.locks.is_empty() {
            "—".to_string()
        } else {
            let min = self.locks.iter().copied().fold(f64::INFINITY, f64::min);
            let max = self.locks.iter().copied().fold(0.0, f64::max);
            format!("{min:.1}–{max:.1}")
        };
        format!(
            "| {mode} | {runs} | {} | {} | {lock} | {:.2} |",
            self.different,
            self.reported,
            self.times[self.times.len() / 2]
        )
    }
}

/// `runs` in-process checks of the pair with `snapshot` on both sides.
async fn run_mode(
    pair: &(LocalServer, LocalServer),
    dir: &std::path::Path,
    snapshot: &str,
    runs: u64,
) -> Res<ModeStats> {
    let mut stats = ModeStats::default();
    for run in 0..runs {
        let out = dir.join(format!("{snapshot}-{run}"));
        let text = config(pair.0.port(), pair.1.port(), snapshot, &out);
        let config = Config::from_toml_str(&text, "online.toml")?;
        let job = job_from_config(&config, &Overrides::default())?;
        let t = Instant::now();
        let report = syncgate::check::run_check(job, Progress::hidden()).await?;
        stats.add(&report, t.elapsed().as_secs_f64());
    }
    Ok(stats)
}

#[tokio::main]
async fn main() -> Res<()> {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return Ok(());
    }
    let runs = env_u64("SG_ONLINE_RUNS", 10);
    let rows = env_u64("SG_ONLINE_ROWS", 100_000);
    let pair = start_pair(rows).await?;
    let load = WriteLoad::start(&pair.0, rows);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let dir = tempfile::tempdir()?;
    println!("| mode | runs | runs reporting differences | rows reported (total) | lock held per side (ms, min–max) | wall time per run (s, median) |");
    println!("|---|---|---|---|---|---|");
    for (mode, snapshot) in [
        ("fenced (snapshot = \"auto\")", "auto"),
        ("live (no snapshot)", ""),
    ] {
        let stats = run_mode(&pair, dir.path(), snapshot, runs).await?;
        println!("{}", stats.row(mode, runs));
    }
    let writes = load.stop().await?;
    println!("\nwrite load: {writes} transactions on the primary during the bench");
    Ok(())
}
