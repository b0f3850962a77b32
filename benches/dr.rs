//! DR bench: `syncgate dr backup` and `dr restore` against the bare vendor tools, same
//! servers, same data, same run.
//!
//! Run: `cargo bench --bench dr -- --bench [--tables 4] [--rows 1000000] [--runs 1]`.
//!
//! Starts a primary (binlog on) and a secondary `mariadbd`, buffer pools sized to hold the
//! data (production servers keep hot data in memory), seeds `sbtest.sbtest1..T` on the
//! primary, then measures, `--runs` times interleaved (medians):
//!
//! - **bare dump**: `mariadb-dump` (syncgate's arguments) into a file;
//! - **bare load**: `mariadb < file` into the emptied secondary;
//! - **bare pipe**: `mariadb-dump | mariadb` (backup and restore by hand, concurrently);
//! - **syncgate backup**: `dr backup --again` (dump → zstd → SHA-256 → storage, plus the
//!   fingerprints read in the dump's snapshot), storage a local directory;
//! - **syncgate restore**: `dr restore --again` into the emptied secondary: fetch + verify,
//!   load, gate 1; the load and the gate are timed apart (from its output).
//!
//! `DR_BENCH_WRAP="perf record -g -o /tmp/sg.perf"` runs the syncgate commands under a
//! profiler (or `/usr/bin/time -v`).
//!
//! MB/s are of the uncompressed dump; rows/s of all rows. Overheads compare syncgate's
//! backup with the bare dump and syncgate's load with the bare load.
//!
//! **Switchover mode**: `cargo bench --bench dr -- --bench --switchover [--tables 4]
//! [--rows 10000] [--tps 100]` measures the write freeze of `dr switchover`. It runs the
//! flow through the syncgate binary — backup, restore, replicate, `dr archive`, the primary
//! killed (SIGKILL), `dr failover`, a third server reseeded (`dr reseed`) — then, with a
//! ledger writer (`testdata::LedgerWriter`, a user without SUPER, following the writable
//! primary) at `--tps`, `dr switchover`: the freeze syncgate reports (read_only = 1 on the
//! acting primary → read_only = 0 on the new one, with the catch-up and the gate inside it)
//! and the longest gap between two of the writer's commits (what the application saw).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use syncgate::local::{LocalServer, ServerOptions};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Opts {
    tables: u32,
    rows: Option<u64>,
    runs: usize,
    switchover: bool,
    /// `dr switchover --full-gate`: the whole compare inside the freeze.
    full_gate: bool,
    tps: u64,
}

fn parse(args: &[String]) -> Res<Opts> {
    let mut o = Opts {
        tables: 4,
        rows: None,
        runs: 1,
        switchover: false,
        full_gate: false,
        tps: 100,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--tables" => o.tables = val()?.parse()?,
            "--rows" => o.rows = Some(val()?.parse()?),
            "--switchover" => o.switchover = true,
            "--full-gate" => o.full_gate = true,
            "--tps" => o.tps = val()?.parse()?,
            "--runs" => o.runs = val()?.parse()?,
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
        println!("dr: run with `cargo bench --bench dr -- [--tables T] [--rows R] [--runs N]`");
        return;
    }
    if let Err(e) = real_main(&args).await {
        eprintln!("dr bench: error: {e}");
        std::process::exit(2);
    }
}

fn server_opts(server_id: u32, pool_mib: u64) -> ServerOptions {
    ServerOptions {
        server_id: Some(server_id),
        log_bin: true,
        extra_args: vec![
            format!("--innodb-buffer-pool-size={pool_mib}M"),
            "--innodb-log-file-size=1G".into(),
            "--innodb-flush-log-at-trx-commit=2".into(),
            "--sync-binlog=0".into(),
        ],
        ..ServerOptions::default()
    }
}

async fn real_main(args: &[String]) -> Res<()> {
    let o = parse(args)?;
    if o.switchover {
        return switchover_bench(o.tables, o.rows.unwrap_or(10_000), o.tps, o.full_gate).await;
    }
    let o = Opts {
        rows: Some(o.rows.unwrap_or(1_000_000)),
        ..o
    };
    let rows = o.rows.unwrap_or_default();
    // sbtest rows take about 250 bytes in InnoDB; twice that holds data and indexes.
    let pool = (o.tables as u64 * rows * 500 / (1 << 20)).max(256);
    eprintln!("== starting primary and secondary (buffer pool {pool} MiB each)");
    let (primary, secondary) = tokio::try_join!(
        LocalServer::start(server_opts(1, pool)),
        LocalServer::start(server_opts(2, pool))
    )?;
    eprintln!("== seeding {} x {rows} rows on the primary", o.tables);
    let mut c = primary.conn().await?;
    c.query_drop("CREATE DATABASE sbtest").await?;
    drop(c);
    let db: mysql_async::Opts = mysql_async::OptsBuilder::from_opts(primary.opts())
        .db_name(Some("sbtest"))
        .into();
    let loads = (1..=o.tables).map(|t| syncgate::testdata::seq::seed_table(db.clone(), t, rows));
    futures_util::future::try_join_all(loads).await?;
    warm(&primary, o.tables).await?;

    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path(), &primary, &secondary)?;
    let total_rows = o.tables as u64 * rows;
    let mut runs = Vec::new();
    for run in 1..=o.runs {
        eprintln!("== run {run}/{}", o.runs);
        runs.push(measure_once(&primary, &secondary, dir.path(), &config).await?);
    }
    print_results(&runs, total_rows);
    Ok(())
}

/// Read every table once so the first measurement does not pay for cold pages.
async fn warm(server: &LocalServer, tables: u32) -> Res<()> {
    let mut c = server.conn().await?;
    for t in 1..=tables {
        let _: Option<u64> = c
            .query_first(format!(
                "SELECT COUNT(*) FROM sbtest.sbtest{t} USE INDEX (PRIMARY)"
            ))
            .await?;
    }
    Ok(())
}

fn write_config(
    dir: &Path,
    primary: &LocalServer,
    secondary: &LocalServer,
) -> Res<std::path::PathBuf> {
    let storage = dir.join("storage");
    std::fs::create_dir_all(&storage)?;
    let path = dir.join("dr.toml");
    std::fs::write(
        &path,
        format!(
            "check-thread-count = 2\n\
             [data-sources.primary]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"root\"\n\
             [data-sources.secondary]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"root\"\n\
             [dr]\nprimary = \"primary\"\nsecondary = \"secondary\"\n\
             backup-storage = \"local://{}\"\n\
             [task]\noutput-dir = \"{}\"\ntarget-check-tables = [\"sbtest.*\"]\n",
            primary.port(),
            secondary.port(),
            storage.display(),
            dir.join("out").display()
        ),
    )?;
    Ok(path)
}

#[derive(Debug, Clone, Copy, Default)]
struct Run {
    dump_bytes: u64,
    bare_dump: Duration,
    bare_load: Duration,
    bare_pipe: Duration,
    sg_backup: Duration,
    sg_restore: Duration,
    sg_load: Duration,
    sg_gate: Duration,
    stored_bytes: u64,
}

fn client_args(server: &LocalServer) -> Vec<String> {
    vec![
        "--no-defaults".into(),
        "--protocol=TCP".into(),
        "-h127.0.0.1".into(),
        format!("-P{}", server.port()),
        "-uroot".into(),
    ]
}

/// The loading client's arguments, as the documented manual procedure has them (no local
/// binlog events on the secondary; dr-interfaces B2.1) and as `dr restore` runs it.
fn load_args(server: &LocalServer) -> Vec<String> {
    let mut a = client_args(server);
    a.push("--init-command=SET SESSION sql_log_bin = 0".into());
    a
}

/// The dump arguments syncgate uses (`dr backup`), for the bare tool.
fn dump_args() -> Vec<&'static str> {
    vec![
        "--single-transaction",
        "--routines",
        "--events",
        "--triggers",
        "--hex-blob",
        "--default-character-set=utf8mb4",
        "--master-data=2",
        "--gtid",
        "--databases",
        "sbtest",
    ]
}

async fn empty_secondary(secondary: &LocalServer) -> Res<()> {
    let mut c = secondary.conn().await?;
    c.query_drop("DROP DATABASE IF EXISTS sbtest").await?;
    Ok(())
}

fn timed(cmd: &mut Command) -> Res<Duration> {
    let t = Instant::now();
    let out = cmd.stderr(Stdio::piped()).output()?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed: {}{}",
            cmd,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        )
        .into());
    }
    Ok(t.elapsed())
}

async fn measure_once(
    primary: &LocalServer,
    secondary: &LocalServer,
    dir: &Path,
    config: &Path,
) -> Res<Run> {
    let mut r = Run::default();
    let file = dir.join("bare.sql");
    // bare dump into a file
    let out = std::fs::File::create(&file)?;
    r.bare_dump = timed(
        Command::new("mariadb-dump")
            .args(client_args(primary))
            .args(dump_args())
            .stdout(out),
    )?;
    r.dump_bytes = std::fs::metadata(&file)?.len();
    eprintln!("   bare dump {:.1} s", r.bare_dump.as_secs_f64());
    // bare load from the file
    empty_secondary(secondary).await?;
    r.bare_load = timed(
        Command::new("mariadb")
            .args(load_args(secondary))
            .stdin(std::fs::File::open(&file)?),
    )?;
    std::fs::remove_file(&file)?;
    eprintln!("   bare load {:.1} s", r.bare_load.as_secs_f64());
    // bare pipe
    empty_secondary(secondary).await?;
    let script = format!(
        "set -o pipefail; mariadb-dump {} {} | mariadb {}",
        client_args(primary).join(" "),
        dump_args().join(" "),
        load_args(secondary)
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    r.bare_pipe = timed(Command::new("bash").args(["-c", &script]))?;
    eprintln!("   bare pipe {:.1} s", r.bare_pipe.as_secs_f64());
    // syncgate
    // DR_BENCH_WRAP="perf record -g -o /tmp/sg.perf" (say) runs syncgate under a profiler.
    let wrap: Vec<String> = std::env::var("DR_BENCH_WRAP")
        .map(|w| w.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let sg = |args: &[&str]| {
        let mut c = match wrap.split_first() {
            Some((prog, rest)) => {
                let mut c = Command::new(prog);
                c.args(rest).arg(env!("CARGO_BIN_EXE_syncgate"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_syncgate")),
        };
        c.args(["dr"]).args(args).arg("-C").arg(config);
        c
    };
    let t = Instant::now();
    let out = sg(&["backup", "--again"]).output()?;
    r.sg_backup = t.elapsed();
    check(&out)?;
    r.stored_bytes = dir_size(&dir.join("storage"));
    if let Ok(log) = std::fs::read_to_string(dir.join("out/dr.log")) {
        for l in log.lines().filter(|l| l.contains("phase:")).rev().take(2) {
            eprintln!("   {}", l.split("phase: ").nth(1).unwrap_or(l));
        }
    }
    eprintln!("   syncgate backup {:.1} s", r.sg_backup.as_secs_f64());
    empty_secondary(secondary).await?;
    let t = Instant::now();
    let out = sg(&["restore", "--again"]).output()?;
    r.sg_restore = t.elapsed();
    check(&out)?;
    let text = String::from_utf8_lossy(&out.stdout);
    r.sg_load = secs_after(&text, "in ").unwrap_or_default();
    r.sg_gate = secs_after(&text, "at the backup point, ").unwrap_or_default();
    eprintln!(
        "   syncgate restore {:.1} s (load {:.1} s, gate {:.1} s)",
        r.sg_restore.as_secs_f64(),
        r.sg_load.as_secs_f64(),
        r.sg_gate.as_secs_f64()
    );
    Ok(r)
}

fn check(out: &std::process::Output) -> Res<()> {
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "syncgate failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .into())
}

/// The number of seconds after `marker` in `text` (`… in 12.3 s …`).
fn secs_after(text: &str, marker: &str) -> Option<Duration> {
    let i = text.find(marker)? + marker.len();
    let num: String = text[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    num.parse().ok().map(Duration::from_secs_f64)
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                dir_size(&path)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn print_results(runs: &[Run], rows: u64) {
    let pick = |f: fn(&Run) -> Duration| median(runs.iter().map(f).collect());
    let mb = runs[0].dump_bytes as f64 / 1e6;
    let line = |name: &str, d: Duration| {
        let s = d.as_secs_f64();
        println!(
            "| {name} | {s:.2} s | {:.1} MB/s | {:.0} rows/s |",
            mb / s,
            rows as f64 / s
        );
    };
    println!(
        "\n{} rows, dump {:.0} MB uncompressed, {:.0} MB stored by syncgate (zstd + fingerprints)\n",
        rows,
        mb,
        runs[runs.len() - 1].stored_bytes as f64 / 1e6
    );
    println!("| step | time | MB/s | rows/s |\n|---|---|---|---|");
    let (bd, bl, bp) = (
        pick(|r| r.bare_dump),
        pick(|r| r.bare_load),
        pick(|r| r.bare_pipe),
    );
    let (sb, sl, sg, sr) = (
        pick(|r| r.sg_backup),
        pick(|r| r.sg_load),
        pick(|r| r.sg_gate),
        pick(|r| r.sg_restore),
    );
    line("bare mariadb-dump > file", bd);
    line("bare mariadb < file", bl);
    line("bare mariadb-dump | mariadb", bp);
    line("syncgate dr backup", sb);
    line("syncgate dr restore: load", sl);
    line("syncgate dr restore: gate 1", sg);
    line("syncgate dr restore: total", sr);
    let pct = |a: Duration, b: Duration| (a.as_secs_f64() / b.as_secs_f64() - 1.0) * 100.0;
    println!(
        "\noverhead: backup {:+.1} % vs bare dump; load {:+.1} % vs bare load; \
         backup + load {:+.1} % vs bare dump + load; backup + restore with gate {:+.1} % vs the \
         bare pipe",
        pct(sb, bd),
        pct(sl, bl),
        pct(sb + sl, bd + bl),
        pct(sb + sr, bp)
    );
}

/// `syncgate dr <args> -C config`, its output checked.
fn sg_run(config: &Path, args: &[&str]) -> Res<std::process::Output> {
    let out = Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .arg("dr")
        .args(args)
        .arg("-C")
        .arg(config)
        .output()?;
    check(&out)?;
    Ok(out)
}

async fn exec(server: &LocalServer, sql: &str) -> Res<()> {
    let mut c = server.conn().await?;
    c.query_drop(sql).await?;
    c.disconnect().await?;
    Ok(())
}

fn has_file_ending(dir: &Path, suffix: &str) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let p = e.path();
            if p.is_dir() {
                has_file_ending(&p, suffix)
            } else {
                p.to_string_lossy().ends_with(suffix)
            }
        })
}

/// The switchover mode (module docs): the flow to a reseeded node, then the timed switch.
async fn switchover_bench(tables: u32, rows: u64, tps: u64, full_gate: bool) -> Res<()> {
    let pool = (tables as u64 * rows * 500 / (1 << 20)).max(256);
    eprintln!("== starting primary, secondary and the node to reseed");
    let (mut primary, secondary, node) = tokio::try_join!(
        LocalServer::start(server_opts(1, pool)),
        LocalServer::start(server_opts(2, pool)),
        LocalServer::start(server_opts(3, pool))
    )?;
    eprintln!("== seeding {tables} x {rows} rows on the primary");
    exec(&primary, "CREATE DATABASE sbtest").await?;
    let db: mysql_async::Opts = mysql_async::OptsBuilder::from_opts(primary.opts())
        .db_name(Some("sbtest"))
        .into();
    let loads = (1..=tables).map(|t| syncgate::testdata::seq::seed_table(db.clone(), t, rows));
    futures_util::future::try_join_all(loads).await?;
    exec(
        &primary,
        "CREATE TABLE sbtest.ledger (seq BIGINT PRIMARY KEY)",
    )
    .await?;

    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path(), &primary, &secondary)?;
    let redo = dir.path().join("redo");
    std::fs::create_dir_all(&redo)?;
    let text = std::fs::read_to_string(&config)?.replace(
        "[dr]\n",
        &format!(
            "[data-sources.rebuilt]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"root\"\n\
             [dr]\nredo-storage = \"local://{}\"\nflush-interval = 0.2\n",
            node.port(),
            redo.display()
        ),
    );
    std::fs::write(&config, text)?;
    for step in ["backup", "restore", "replicate"] {
        let t = Instant::now();
        sg_run(&config, &[step])?;
        eprintln!("   dr {step} {:.1} s", t.elapsed().as_secs_f64());
    }
    eprintln!("== dr archive, writes, the primary killed, dr failover");
    let mut archiver = Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args(["dr", "archive", "-C"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let root = syncgate::testdata::LedgerWriter::start(vec![primary.opts()], "sbtest.ledger", tps);
    // The failover needs redo: wait for the first archived segment (the archiver takes a
    // while to start on a loaded machine), then a little more.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !has_file_ending(&redo, ".bin") {
        if Instant::now() > deadline {
            return Err("dr archive wrote no segment within 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    primary.kill();
    root.stop().await;
    // The archive is flushed every 0.2 s; SIGTERM makes it write what is complete.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Command::new("kill")
        .args(["-TERM", &archiver.id().to_string()])
        .status()?;
    archiver.wait()?;
    sg_run(&config, &["failover"])?;

    eprintln!("== dr reseed --new-primary rebuilt under {tps} TPS");
    let user = "SET sql_log_bin = 0; CREATE USER 'app'@'%' IDENTIFIED BY 'app'; \
                GRANT ALL ON sbtest.* TO 'app'@'%'";
    exec(&secondary, user).await?;
    exec(&node, user).await?;
    exec(
        &secondary,
        "CREATE TABLE sbtest.ledger_app (seq BIGINT PRIMARY KEY)",
    )
    .await?;
    let app = |s: &LocalServer| -> mysql_async::Opts {
        mysql_async::OptsBuilder::from_opts(s.opts())
            .user(Some("app"))
            .pass(Some("app"))
            .into()
    };
    let writer = syncgate::testdata::LedgerWriter::start(
        vec![app(&secondary), app(&node)],
        "sbtest.ledger_app",
        tps,
    );
    let t = Instant::now();
    sg_run(&config, &["reseed", "--new-primary", "rebuilt"])?;
    eprintln!("   dr reseed {:.1} s", t.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(2)).await;

    eprintln!("== dr switchover");
    writer.reset_gap();
    let t = Instant::now();
    let mut args = vec!["switchover", "--json"];
    if full_gate {
        args.push("--full-gate");
    }
    let out = sg_run(&config, &args)?;
    let total = t.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = writer.stop().await;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let ms = |k: &str| doc[k].as_u64().unwrap_or(0);
    println!(
        "\nswitchover at {tps} TPS, {tables} x {rows} rows (+ ledger): write freeze {} ms \
         reported (catch-up {} ms, gate {} ms, {} rows compared: {}; gate before the freeze \
         {} ms); the writer's longest gap between commits {} ms; the command took {:.2} s; {} \
         transactions committed, {} attempts refused and retried",
        ms("freeze_ms"),
        ms("catch_up_ms"),
        ms("gate_ms"),
        ms("compared_rows"),
        doc["gate_scope"].as_str().unwrap_or("?"),
        ms("gate_before_ms"),
        stats.longest_gap.as_millis(),
        total.as_secs_f64(),
        stats.committed,
        stats.refused
    );
    Ok(())
}
