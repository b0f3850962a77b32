//! Archive lag bench: how long after a commit on the primary its transaction is durable in
//! the archive (`dr archive`), and how many bytes the archive takes against the primary's
//! binlog.
//!
//! Run: `cargo bench --bench archive_lag -- --bench [--tps 100,1000] [--seconds 30]
//! [--flush-interval 1] [--connections 8]`.
//!
//! Starts a primary `mariadbd` (binlog on, ROW), seeds `sbtest.sbtest1..4` (10,000 rows
//! each), then for each rate: `syncgate dr archive` (the release or debug binary cargo built
//! for this bench) into a local redo-storage directory, the paced sysbench-shaped write
//! load (`testdata::load`) at that rate, and a probe that commits one marked row every
//! 20 ms on a connection of its own and reads its GTID (`@@last_gtid`). A watcher lists the
//! archive's index every 2 ms; a segment is durable when its index entry is there (the
//! archiver writes the entry after the segment, each fsynced and renamed). The lag of a
//! probe is the time from its COMMIT returning to the first index entry whose last GTID
//! is at or after the probe's. Percentiles are over the probes.
//!
//! Bytes: the segments' sizes against the binlog files the primary wrote over the same
//! span (FLUSH BINARY LOGS before, `SHOW BINARY LOGS` sizes after).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use syncgate::dr::archive::IndexEntry;
use syncgate::dr::binlog::GtidPos;
use syncgate::local::{LocalServer, ServerOptions};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const TABLES: u32 = 4;
const ROWS: u64 = 10_000;
const PROBE_EVERY: Duration = Duration::from_millis(20);
const WATCH_EVERY: Duration = Duration::from_millis(2);

struct Opts {
    tps: Vec<u32>,
    seconds: u64,
    flush_interval: f64,
    /// Writer connections of the load (more reach a higher rate on a slow disk: their
    /// commits share the binlog's group commit).
    connections: usize,
}

fn parse(args: &[String]) -> Res<Opts> {
    let mut o = Opts {
        tps: vec![100, 1000],
        seconds: 30,
        flush_interval: 1.0,
        connections: 8,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--tps" => {
                o.tps = val()?
                    .split(',')
                    .map(|t| t.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "--seconds" => o.seconds = val()?.parse()?,
            "--flush-interval" => o.flush_interval = val()?.parse()?,
            "--connections" => o.connections = val()?.parse()?,
            "--bench" => {}
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(o)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "archive_lag: run with `cargo bench --bench archive_lag -- [--tps 100,1000] \
             [--seconds 30] [--flush-interval 1] [--connections 8]`"
        );
        return;
    }
    if let Err(e) = real_main(&args).await {
        eprintln!("archive_lag bench: error: {e}");
        std::process::exit(2);
    }
}

/// What one rate measured.
struct Outcome {
    tps: u32,
    achieved_tps: f64,
    probes: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    segments: usize,
    archive_bytes: u64,
    binlog_bytes: u64,
}

async fn real_main(args: &[String]) -> Res<()> {
    let o = parse(args)?;
    eprintln!("== starting the primary");
    let primary = LocalServer::start(ServerOptions {
        server_id: Some(1),
        log_bin: true,
        extra_args: vec![
            "--innodb-buffer-pool-size=256M".into(),
            "--innodb-flush-log-at-trx-commit=2".into(),
            "--sync-binlog=0".into(),
        ],
        ..ServerOptions::default()
    })
    .await?;
    eprintln!("== seeding {TABLES} x {ROWS} rows");
    let mut c = primary.conn().await?;
    c.query_drop(
        "CREATE DATABASE sbtest; \
         CREATE TABLE sbtest.probe (id BIGINT PRIMARY KEY, at BIGINT NOT NULL)",
    )
    .await?;
    drop(c);
    let db: mysql_async::Opts = mysql_async::OptsBuilder::from_opts(primary.opts())
        .db_name(Some("sbtest"))
        .into();
    let loads = (1..=TABLES).map(|t| syncgate::testdata::seq::seed_table(db.clone(), t, ROWS));
    futures_util::future::try_join_all(loads).await?;

    let mut results = Vec::new();
    let mut probe_id = 0u64;
    for &tps in &o.tps {
        eprintln!(
            "== {tps} TPS for {} s, flush-interval {} s",
            o.seconds, o.flush_interval
        );
        results.push(measure(&primary, tps, &o, &mut probe_id).await?);
    }
    print_results(&results, &o);
    Ok(())
}

fn write_config(dir: &Path, primary: &LocalServer, flush: f64) -> Res<(PathBuf, PathBuf)> {
    let storage = dir.join("storage");
    let redo = dir.join("redo");
    std::fs::create_dir_all(&storage)?;
    std::fs::create_dir_all(&redo)?;
    let path = dir.join("dr.toml");
    std::fs::write(
        &path,
        format!(
            "[data-sources.primary]\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"root\"\n\
             [data-sources.secondary]\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"root\"\n\
             [dr]\nprimary = \"primary\"\nsecondary = \"secondary\"\n\
             backup-storage = \"local://{storage}\"\nredo-storage = \"local://{redo}\"\n\
             flush-interval = {flush}\n\
             [task]\noutput-dir = \"{out}\"\nsource-instances = [\"primary\"]\n\
             target-instance = \"secondary\"\ntarget-check-tables = [\"sbtest.*\"]\n",
            port = primary.port(),
            storage = storage.display(),
            redo = redo.display(),
            out = dir.join("out").display()
        ),
    )?;
    Ok((path, redo))
}

/// Index entries as they appear: (when seen, last sequence number of domain 0).
type Seen = Arc<Mutex<Vec<(Instant, u64)>>>;

async fn measure(primary: &LocalServer, tps: u32, o: &Opts, probe_id: &mut u64) -> Res<Outcome> {
    let dir = tempfile::tempdir()?;
    let (config, redo) = write_config(dir.path(), primary, o.flush_interval)?;
    let mut c = primary.conn().await?;
    c.query_drop("FLUSH BINARY LOGS").await?;
    let first_file: String = c
        .query_first::<mysql_async::Row, _>("SHOW MASTER STATUS")
        .await?
        .and_then(|r| r.get(0))
        .ok_or("binlog off")?;
    let start: String = c
        .query_first("SELECT @@gtid_binlog_pos")
        .await?
        .unwrap_or_default();

    let mut archiver = Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args(["dr", "archive", "-C"])
        .arg(&config)
        .args(["--start-gtid", &start])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;

    let seen: Seen = Arc::default();
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = std::thread::spawn({
        let seen = seen.clone();
        let watching = watching.clone();
        let index_dir = redo.join("binlog/server-1");
        move || watch(&index_dir, &seen, &watching)
    });

    let load = syncgate::testdata::spawn_load(
        primary.opts(),
        syncgate::testdata::LoadOptions {
            tps,
            duration: None,
            tables: (1..=TABLES)
                .map(|t| syncgate::schema::TableRef::new("sbtest", format!("sbtest{t}")))
                .collect(),
            connections: o.connections,
            seed: 11 + tps as u64,
        },
    );
    // Probes: one marked commit every PROBE_EVERY, its GTID read on the same connection.
    let mut probes: Vec<(Instant, u64)> = Vec::new();
    let began = Instant::now();
    let mut next = Instant::now();
    while began.elapsed() < Duration::from_secs(o.seconds) {
        *probe_id += 1;
        c.query_drop(format!(
            "INSERT INTO sbtest.probe VALUES ({}, {})",
            probe_id,
            began.elapsed().as_micros()
        ))
        .await?;
        let committed = Instant::now();
        let gtid: String = c
            .query_first("SELECT @@last_gtid")
            .await?
            .unwrap_or_default();
        let seq = GtidPos::parse(&gtid)?
            .0
            .get(&0)
            .map(|g| g.seq)
            .ok_or("no GTID")?;
        probes.push((committed, seq));
        if let Some(status) = archiver.try_wait()? {
            return Err(format!("dr archive ended early ({status})").into());
        }
        next += PROBE_EVERY;
        tokio::time::sleep_until(next.into()).await;
    }
    let stats = load.stop().await?;
    let end: String = c
        .query_first("SELECT @@gtid_binlog_pos")
        .await?
        .unwrap_or_default();
    let end_seq = GtidPos::parse(&end)?.0.get(&0).map(|g| g.seq).unwrap_or(0);
    // Let the archive catch up, then stop it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen
        .lock()
        .unwrap()
        .last()
        .is_none_or(|(_, s)| *s < end_seq)
    {
        if Instant::now() > deadline {
            return Err(format!("the archive never reached {end}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &archiver.id().to_string()])
        .status();
    let status = archiver.wait()?;
    if !status.success() {
        return Err(format!("dr archive exited with {status}").into());
    }
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    watcher.join().map_err(|_| "watcher panicked")?;

    let rows: Vec<mysql_async::Row> = c.query("SHOW BINARY LOGS").await?;
    let binlog_bytes: u64 = rows
        .iter()
        .filter_map(|r| Some((r.get::<String, _>(0)?, r.get::<u64, _>(1)?)))
        .filter(|(name, _)| *name >= first_file)
        .map(|(_, size)| size)
        .sum();
    drop(c);

    let seen = seen.lock().unwrap().clone();
    let mut lags: Vec<Duration> = probes
        .iter()
        .map(|(at, seq)| {
            let (durable, _) = seen
                .iter()
                .find(|(_, last)| last >= seq)
                .expect("the archive reached the end");
            durable.saturating_duration_since(*at)
        })
        .collect();
    lags.sort();
    let pct = |p: f64| lags[((lags.len() as f64 * p).ceil() as usize).clamp(1, lags.len()) - 1];
    let (segments, archive_bytes) = segment_bytes(&redo.join("binlog/server-1"))?;
    Ok(Outcome {
        tps,
        achieved_tps: stats.transactions as f64 / stats.elapsed.as_secs_f64(),
        probes: lags.len(),
        p50: pct(0.50),
        p99: pct(0.99),
        max: *lags.last().unwrap(),
        segments,
        archive_bytes,
        binlog_bytes,
    })
}

/// List the index directory every WATCH_EVERY and note when each entry appears.
fn watch(dir: &Path, seen: &Seen, watching: &std::sync::atomic::AtomicBool) {
    let mut known = BTreeSet::new();
    while watching.load(std::sync::atomic::Ordering::Relaxed) {
        let now = Instant::now();
        let mut new: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json") && !known.contains(p))
            .collect();
        new.sort();
        for path in new {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let Ok(entry) = serde_json::from_slice::<IndexEntry>(&bytes) else {
                continue;
            };
            let last = GtidPos::parse(&entry.last)
                .ok()
                .and_then(|p| p.0.get(&0).map(|g| g.seq))
                .unwrap_or(0);
            seen.lock().unwrap().push((now, last));
            known.insert(path);
        }
        std::thread::sleep(WATCH_EVERY);
    }
}

fn segment_bytes(dir: &Path) -> Res<(usize, u64)> {
    let mut n = 0;
    let mut bytes = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.path().extension().is_some_and(|x| x == "bin") {
            n += 1;
            bytes += e.metadata()?.len();
        }
    }
    Ok((n, bytes))
}

fn print_results(results: &[Outcome], o: &Opts) {
    println!(
        "\narchive lag: commit on the primary -> segment durable in redo-storage (local \
         directory), flush-interval {} s, {} s per rate, {} writer connections, a probe \
         every {} ms",
        o.flush_interval,
        o.seconds,
        o.connections,
        PROBE_EVERY.as_millis()
    );
    println!(
        "{:>8} {:>10} {:>7} {:>9} {:>9} {:>9} {:>9} {:>13} {:>13} {:>7}",
        "tps",
        "achieved",
        "probes",
        "p50 ms",
        "p99 ms",
        "max ms",
        "segments",
        "archive B",
        "binlog B",
        "ratio"
    );
    for r in results {
        println!(
            "{:>8} {:>10.0} {:>7} {:>9.0} {:>9.0} {:>9.0} {:>9} {:>13} {:>13} {:>7.3}",
            r.tps,
            r.achieved_tps,
            r.probes,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.max.as_secs_f64() * 1e3,
            r.segments,
            r.archive_bytes,
            r.binlog_bytes,
            r.archive_bytes as f64 / r.binlog_bytes.max(1) as f64
        );
    }
}
