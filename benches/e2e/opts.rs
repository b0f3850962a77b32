//! Command-line options and their environment variables (`--help`: [`USAGE`]).

use crate::scenario::{parse_count, parse_scenario, DataSpec, Drift, Scenario};
use crate::{BoxError, Res};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const DEFAULT_SCENARIOS: &str = "4x1M-15rows,1x1M-1pct";

const USAGE: &str = "\
cargo bench --bench e2e -- [options]

Scenarios (comma-separated names, run in order):
  4x1M-15rows   4 tables x 1M rows, 15 rows drifted in total
  1x1M-1pct     1 table x 1M rows, 1 % of the rows drifted
  1x10M-equal   1 table x 10M rows, equal
  linear        1x1M-equal and 1x10M-equal: growth of the time from 1M to 10M rows
  TxR-DRIFT     any other: T tables x R rows (k/M suffixes), DRIFT = equal | Nrows | Xpct
  default: 4x1M-15rows,1x1M-1pct

Options (environment variable in brackets):
  --scenario LIST      scenarios to run [SG_E2E_SCENARIOS]
  --quick              divide every row count by 10 (smoke run; default set becomes
                       4x100k-15rows,1x100k-1pct) [SG_E2E_QUICK=1]
  --tables N --rows R --drift D
                       one custom scenario TxR-D (D: equal, a row count such as 15, a
                       fraction such as 0.01 or 1%) [SG_E2E_TABLES, SG_E2E_ROWS, SG_E2E_DRIFT]
  --runs N             interleaved runs of raw limit and syncgate, medians reported
                       (default 3) [SG_E2E_RUNS]
  --threads N          syncgate check-thread-count (default: the config default, 4)
                       [SG_E2E_THREADS]
  --chunk-size N       syncgate chunk-size (default: automatic) [SG_E2E_CHUNK_SIZE]
  --buffer-pool SIZE   innodb-buffer-pool-size of each server (default: 400 bytes per row,
                       at least 512M) [SG_E2E_BUFFER_POOL]
  --charset NAME       character-set-server of both servers, so the sysbench tables are
                       created in it (default: the servers' default, utf8mb4); e.g. latin1,
                       MySQL 5.7's and unconfigured MariaDB's default [SG_E2E_CHARSET]
  --key SHAPE          the chunk key: int (sysbench's id, default), char (CHAR(32)), varchar
                       (VARCHAR(64)): the same ids as text, or composite ((grp VARCHAR(16),
                       id INT)) [SG_E2E_KEY]
  --in-process         run the check through the library in this process (no peak RSS)
                       [SG_E2E_IN_PROCESS=1]
  --keep-data          keep each data set's two server dirs under target/e2e-bench/<data set>/
                       and reuse them, already seeded and drifted, on the next invocation
                       [SG_E2E_KEEP_DATA=1]
  --rss METHOD         auto | time | poll: how the child's peak RSS is read
                       (default auto: /usr/bin/time when it is GNU time) [SG_E2E_RSS]
  --reladiff PATH      reladiff executable, or `off` (default: found on PATH, installed
                       by benches/install-peers.sh when missing)
                       [SG_E2E_RELADIFF]
  --pt-table-checksum PATH
                       pt-table-checksum executable, or `off` (default: found on PATH,
                       installed by benches/install-peers.sh when missing)
                       [SG_E2E_PT_TABLE_CHECKSUM]
  --output FILE        also write the results (markdown) to FILE [SG_E2E_OUTPUT]
  SG_E2E_SYNCGATE=PATH run this syncgate binary instead of the one built with the bench
                       (before/after comparisons of two builds on the same data)
  -h, --help           this text
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RssMethod {
    Time,
    Poll,
}

#[derive(Debug)]
pub(crate) struct Opts {
    pub(crate) scenarios: Vec<(String, Scenario)>,
    pub(crate) quick: bool,
    pub(crate) runs: usize,
    pub(crate) threads: Option<usize>,
    pub(crate) chunk_size: Option<u64>,
    pub(crate) buffer_pool: Option<String>,
    /// `character-set-server` of both servers (`--charset`).
    pub(crate) charset: Option<String>,
    /// The chunk key's shape (`--key`).
    pub(crate) key: crate::seed::KeyShape,
    pub(crate) in_process: bool,
    pub(crate) keep_data: bool,
    pub(crate) rss: RssMethod,
    pub(crate) reladiff: Option<PathBuf>,
    pub(crate) pt_table_checksum: Option<PathBuf>,
    pub(crate) output: Option<PathBuf>,
}

/// The options that take a value, with their environment variables.
const VALUE_OPTIONS: [(&str, &str); 14] = [
    ("scenario", "SG_E2E_SCENARIOS"),
    ("tables", "SG_E2E_TABLES"),
    ("rows", "SG_E2E_ROWS"),
    ("drift", "SG_E2E_DRIFT"),
    ("runs", "SG_E2E_RUNS"),
    ("threads", "SG_E2E_THREADS"),
    ("chunk-size", "SG_E2E_CHUNK_SIZE"),
    ("buffer-pool", "SG_E2E_BUFFER_POOL"),
    ("charset", "SG_E2E_CHARSET"),
    ("key", "SG_E2E_KEY"),
    ("rss", "SG_E2E_RSS"),
    ("reladiff", "SG_E2E_RELADIFF"),
    ("pt-table-checksum", "SG_E2E_PT_TABLE_CHECKSUM"),
    ("output", "SG_E2E_OUTPUT"),
];

fn env_opt(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_flag(name: &str) -> bool {
    env_opt(name).is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// The options as given, before interpretation: the environment, overridden by the command
/// line.
struct RawOpts {
    vals: HashMap<&'static str, String>,
    quick: bool,
    in_process: bool,
    keep_data: bool,
}

impl RawOpts {
    fn from_env() -> RawOpts {
        let mut vals = HashMap::new();
        for (key, var) in VALUE_OPTIONS {
            if let Some(v) = env_opt(var) {
                vals.insert(key, v);
            }
        }
        RawOpts {
            vals,
            quick: env_flag("SG_E2E_QUICK"),
            in_process: env_flag("SG_E2E_IN_PROCESS"),
            keep_data: env_flag("SG_E2E_KEEP_DATA"),
        }
    }

    /// Apply the command line; `false` when `--help` was printed and there is nothing to run.
    fn apply_args(&mut self, args: &[String]) -> Res<bool> {
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (arg.as_str(), None),
            };
            match name {
                // Passed by `cargo bench`.
                "--bench" => {}
                "-h" | "--help" => {
                    print!("{USAGE}");
                    return Ok(false);
                }
                "--quick" => self.quick = true,
                "--in-process" => self.in_process = true,
                "--keep-data" => self.keep_data = true,
                _ => {
                    let Some(key) = value_option(name) else {
                        return Err(format!("unknown option '{arg}' (see --help)").into());
                    };
                    let value = match inline {
                        Some(v) => v,
                        None => it
                            .next()
                            .cloned()
                            .ok_or_else(|| format!("{name} needs a value"))?,
                    };
                    self.vals.insert(key, value);
                }
            }
        }
        Ok(true)
    }

    fn get(&self, key: &str) -> Option<&String> {
        self.vals.get(key)
    }

    /// A positive count (`k`/`M` suffixes allowed).
    fn num(&self, k: &str) -> Res<Option<u64>> {
        self.get(k)
            .map(|v| {
                parse_count(v)
                    .filter(|n| *n > 0)
                    .ok_or_else(|| BoxError::from(format!("--{k}: '{v}' is not a positive number")))
            })
            .transpose()
    }

    /// `--tables/--rows/--drift` as one custom scenario, then the `--scenario` list (the
    /// default list when neither is given).
    fn scenarios(&self) -> Res<Vec<(String, Scenario)>> {
        let mut scenarios = Vec::new();
        let custom = ["tables", "rows", "drift"]
            .iter()
            .any(|k| self.vals.contains_key(k));
        if custom {
            let drift = match self.get("drift") {
                Some(d) => Drift::parse(d).ok_or_else(|| format!("--drift: cannot read '{d}'"))?,
                None => Drift::Equal,
            };
            let d = DataSpec {
                tables: self.num("tables")?.unwrap_or(1) as u32,
                rows: self.num("rows")?.unwrap_or(1_000_000),
                drift,
            };
            let name = d.label();
            scenarios.push((name.clone(), parse_scenario(&name, self.quick)?));
        }
        if self.vals.contains_key("scenario") || !custom {
            let list = self
                .get("scenario")
                .cloned()
                .unwrap_or_else(|| DEFAULT_SCENARIOS.to_string());
            for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                scenarios.push((name.to_string(), parse_scenario(name, self.quick)?));
            }
        }
        Ok(scenarios)
    }

    fn rss(&self) -> Res<RssMethod> {
        Ok(
            match self.get("rss").map(|s| s.as_str()).unwrap_or("auto") {
                "auto" => {
                    if gnu_time_available() {
                        RssMethod::Time
                    } else {
                        RssMethod::Poll
                    }
                }
                "time" => RssMethod::Time,
                "poll" => RssMethod::Poll,
                other => return Err(format!("--rss: '{other}' is not auto, time or poll").into()),
            },
        )
    }

    /// A third-party tool: the given path, none for `off`, else found on `PATH`.
    /// A peer tool: `off`, a given path, or found on PATH after `benches/install-peers.sh`
    /// installed it if missing (a failed install leaves it "not installed").
    fn tool(&self, key: &str, exe: &str) -> Option<PathBuf> {
        match self.get(key) {
            Some(v) if v == "off" => None,
            Some(v) => Some(PathBuf::from(v)),
            None => {
                install_peer(exe);
                find_on_path(exe)
            }
        }
    }
}

/// The key of a `--name` option that takes a value (`--scenarios` is `--scenario`).
fn value_option(name: &str) -> Option<&'static str> {
    let key = name.trim_start_matches('-');
    if !name.starts_with("--") {
        return None;
    }
    if key == "scenarios" {
        return Some("scenario");
    }
    VALUE_OPTIONS.iter().map(|(k, _)| *k).find(|k| *k == key)
}

/// The options from the environment and `args`; `None` after `--help`.
pub(crate) fn parse_opts(args: &[String]) -> Res<Option<Opts>> {
    let mut raw = RawOpts::from_env();
    if !raw.apply_args(args)? {
        return Ok(None);
    }
    let scenarios = raw.scenarios()?;
    let rss = raw.rss()?;
    let reladiff = raw.tool("reladiff", "reladiff");
    let pt_table_checksum = raw.tool("pt-table-checksum", "pt-table-checksum");
    Ok(Some(Opts {
        scenarios,
        quick: raw.quick,
        runs: raw.num("runs")?.unwrap_or(3) as usize,
        threads: raw.num("threads")?.map(|n| n as usize),
        chunk_size: raw.num("chunk-size")?,
        buffer_pool: raw.get("buffer-pool").cloned(),
        charset: raw.get("charset").cloned(),
        key: match raw.get("key") {
            None => crate::seed::KeyShape::Int,
            Some(k) => crate::seed::KeyShape::parse(k)
                .ok_or_else(|| format!("--key {k}: int, char, varchar or composite"))?,
        },
        in_process: raw.in_process,
        keep_data: raw.keep_data,
        rss,
        reladiff,
        pt_table_checksum,
        output: raw.get("output").map(PathBuf::from),
    }))
}

/// Run `benches/install-peers.sh` for `exe`; a failure is reported, not fatal.
fn install_peer(exe: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/install-peers.sh");
    match Command::new("bash").arg(&script).arg(exe).status() {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("   could not install {exe} ({s}); its column says not installed"),
        Err(e) => eprintln!("   could not run {}: {e}", script.display()),
    }
}

fn find_on_path(exe: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(exe))
        .find(|p| p.is_file())
}

fn gnu_time_available() -> bool {
    Command::new("/usr/bin/time")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| {
            let text = String::from_utf8_lossy(&o.stdout) + String::from_utf8_lossy(&o.stderr);
            text.contains("GNU")
        })
}
