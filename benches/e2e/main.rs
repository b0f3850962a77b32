//! End-to-end bench: syncgate's full check against the raw limit of the servers, on two local
//! MariaDB servers holding sysbench-shaped tables with a known drift.
//!
//! Run: `cargo bench --bench e2e -- [options]` (`--help` lists them; every option also has an
//! environment variable). For each scenario it
//!
//! 1. starts two `mariadbd` ([`LocalServer`], buffer pool sized to the data), creates
//!    `sbtest.sbtest1..T` (`id, k, c CHAR(120), pad CHAR(60)`, `KEY k_1 (k)`) and fills them on
//!    both servers with the same deterministic `INSERT … SELECT … FROM seq_1_to_R` (MariaDB's
//!    sequence engine; `RAND(seed)` with a per-row seed), all tables and both sides at once;
//! 2. drifts the downstream with plain SQL: deletes, inserts (ids above the upstream's) and
//!    changes (`c`) a chosen number of rows; that is the ground truth;
//! 3. measures, interleaved `--runs` times (medians reported):
//!    - the **raw limit**: `SELECT COUNT(*), BIT_XOR(CRC32(CONCAT_WS(',', id, k, c, pad)))` on
//!      every table of both sides at once, one connection each (wall time until the last
//!      answers) — what any checksum-based checker must at least spend;
//!    - **syncgate**: a full `syncgate check` (fix SQL export on) of the built binary
//!      (`CARGO_BIN_EXE_syncgate`, built by cargo together with this bench, so never stale) in
//!      a child process: wall time, and peak RSS of that process only (`/usr/bin/time -f %M`,
//!      i.e. the kernel's `ru_maxrss` from `wait4`; without GNU time, `VmHWM` polled from
//!      `/proc/<pid>/status` every 2 ms). `--in-process` instead calls the library
//!      (`Config::from_toml_str` → `job_from_config` → `run_check`), without RSS;
//! 4. asserts that syncgate reported exactly the injected drift (per table: missing, extra,
//!    changed, row counts of both sides, and the `REPLACE`/`DELETE` statements of its fix
//!    SQL), and marks the scenario WRONG otherwise (the bench then exits with 1);
//! 5. runs `reladiff` and `pt-table-checksum` (upstream only) once on the same data when they
//!    are installed.
//!
//! At the end it prints a markdown table, the performance targets and whether they are met.
//!
//! Modules: `opts` (options, `--help`), `scenario` (data sets and drift plans), `seed`
//! (seeding and drift), `raw` (the raw limit), `run` (one syncgate check and its peak RSS),
//! `verify` (its report against the drift), `tools` (reladiff, pt-table-checksum), `measure`
//! (one data set, start to end), `report` (the results and targets).

mod measure;
mod opts;
mod raw;
mod report;
mod run;
mod scenario;
mod seed;
mod tools;
mod verify;

use measure::{measure, Measurement};
use opts::{parse_opts, Opts};
use scenario::{DataSpec, Scenario};
use std::collections::HashMap;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

const DATABASE: &str = "sbtest";

/// A scenario as named on the command line, and the measurement of each of its data sets.
type ScenarioResult = (String, Scenario, Vec<Measurement>);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --benches` runs bench targets without `--bench`: nothing to do there.
    if !args
        .iter()
        .any(|a| a == "--bench" || a == "-h" || a == "--help")
    {
        println!("e2e: run with `cargo bench --bench e2e -- [options]` (--help lists them)");
        return;
    }
    match real_main(&args).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("e2e: error: {e}");
            std::process::exit(2);
        }
    }
}

async fn real_main(args: &[String]) -> Res<i32> {
    let Some(opts) = parse_opts(args)? else {
        return Ok(0);
    };
    if !syncgate::local::mariadbd_available() {
        return Err(
            "mariadbd and mariadb-install-db are needed (apt-get install mariadb-server)".into(),
        );
    }
    let header = report::header(&opts);
    eprint!("{header}");
    let results = measure_scenarios(&opts).await?;
    let (out, all_correct) = report::render(header, &results, &opts);
    println!("\n{out}");
    if let Some(path) = &opts.output {
        std::fs::write(path, &out)?;
    }
    Ok(if all_correct { 0 } else { 1 })
}

/// Every scenario in order; a data set shared between scenarios is measured once.
async fn measure_scenarios(opts: &Opts) -> Res<Vec<ScenarioResult>> {
    let mut cache: HashMap<DataSpec, Measurement> = HashMap::new();
    let mut results = Vec::new();
    for (name, sc) in &opts.scenarios {
        let specs = match sc {
            Scenario::Single(d) => vec![*d],
            Scenario::Linear { small, large } => vec![*small, *large],
        };
        let mut ms = Vec::new();
        for d in specs {
            let m = match cache.get(&d) {
                Some(m) => m.clone(),
                None => {
                    let m = measure(d, opts).await?;
                    cache.insert(d, m.clone());
                    m
                }
            };
            ms.push(m);
        }
        results.push((name.clone(), sc.clone(), ms));
    }
    Ok(results)
}
