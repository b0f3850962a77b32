//! The results: header, markdown table, per-run notes, targets and wrong results.

use crate::measure::Measurement;
use crate::opts::{Opts, RssMethod};
use crate::scenario::{count_label, DataSpec, Drift, Scenario};
use crate::seed::KeyShape;
use crate::tools::ToolResult;
use crate::ScenarioResult;
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The header of the results (also printed on stderr before measuring): versions, machine,
/// load average at start, the run settings.
pub(crate) fn header(opts: &Opts) -> String {
    let load_before = load_average();
    let mut header = String::new();
    let _ = writeln!(
        header,
        "syncgate e2e bench — syncgate {} ({}), {} CPUs, {}, load average at start \
         {load_before}",
        env!("CARGO_PKG_VERSION"),
        source_version(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        mariadbd_version(),
    );
    let _ = writeln!(
        header,
        "runs: {} (medians), key: {}, check-thread-count: {}, chunk-size: {}, mode: {}, \
         peak RSS: {}",
        opts.runs,
        opts.key.label(),
        opts.threads
            .map_or("config default (4)".to_string(), |t| t.to_string()),
        opts.chunk_size
            .map_or("automatic".to_string(), |c| c.to_string()),
        if opts.in_process {
            "in-process (library)"
        } else {
            "child process (syncgate binary)"
        },
        match (opts.in_process, opts.rss) {
            (true, _) => "n/a",
            (false, RssMethod::Time) => "/usr/bin/time %M (ru_maxrss)",
            (false, RssMethod::Poll) => "VmHWM polled every 2 ms",
        }
    );
    header
}

/// The whole results text after `header`; `true` when every count was correct.
pub(crate) fn render(header: String, results: &[ScenarioResult], opts: &Opts) -> (String, bool) {
    let mut out = header;
    let _ = writeln!(out, "load average at end: {}\n", load_average());
    out.push_str(
        "| scenario | raw limit | syncgate | ratio | rows/s | peak RSS | reladiff | pt-table-checksum |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let mut wrong = Vec::new();
    let mut notes = String::new();
    for (name, sc, ms) in results {
        for m in ms {
            let label = match sc {
                Scenario::Single(_) if *name == m.spec.label() => name.clone(),
                Scenario::Single(_) => format!("{name} ({})", m.spec.label()),
                Scenario::Linear { .. } => format!("{name}: {}", m.spec.label()),
            };
            out.push_str(&row(&label, m));
            out.push('\n');
            if !m.problems.is_empty() {
                wrong.push(format!("{label}: {}", m.problems.join("; ")));
            }
            notes.push_str(&run_notes(&label, m));
        }
        if let Scenario::Linear { small, large } = sc {
            notes.push_str(&linear_notes(name, small, large, ms));
        }
    }
    out.push_str(
        "\nratio = syncgate / raw limit (medians); rows/s = upstream rows / syncgate wall time; \
                  tool columns: one run, (× raw limit).\n\n",
    );
    out.push_str(&notes);
    out.push_str(&targets(results, opts));
    if !wrong.is_empty() {
        out.push_str("\nWRONG RESULTS (syncgate's counts differ from the injected drift):\n");
        for w in &wrong {
            let _ = writeln!(out, "- {w}");
        }
    }
    (out, wrong.is_empty())
}

/// Seeding time and every run's times of one data set.
fn run_notes(label: &str, m: &Measurement) -> String {
    let times = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.3}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "- {label}: seeding + drift {:.1} s; raw runs [{}]; syncgate runs [{}]\n",
        m.seed_time.as_secs_f64(),
        times(&m.raw_runs),
        times(&m.syncgate_runs),
    )
}

/// Time growth of a `linear` scenario from its small to its large data set.
fn linear_notes(name: &str, small: &DataSpec, large: &DataSpec, ms: &[Measurement]) -> String {
    let g = growth(&ms[0], &ms[1]);
    let raw_g = (ms[1].raw.as_secs_f64() / large.total_rows() as f64)
        / (ms[0].raw.as_secs_f64() / small.total_rows() as f64);
    format!(
        "- {name}: {}→{} rows: syncgate time ×{:.2} (linear: ×{:.0}), per-row ×{g:.2}; \
         raw limit per-row ×{raw_g:.2}\n",
        count_label(small.total_rows()),
        count_label(large.total_rows()),
        ms[1].syncgate.as_secs_f64() / ms[0].syncgate.as_secs_f64(),
        large.total_rows() as f64 / small.total_rows() as f64,
    )
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn rate(rows: u64, d: Duration) -> String {
    let r = rows as f64 / d.as_secs_f64();
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else {
        format!("{:.0} k/s", r / 1e3)
    }
}

fn tool_cell(t: &ToolResult, raw: Duration) -> String {
    match t {
        ToolResult::NotInstalled => "not installed".into(),
        ToolResult::Failed(e) => format!("failed: {}", e.replace(['\n', '|'], " ")),
        ToolResult::Ran { wall, note } => format!(
            "{} ({:.2}×){}",
            secs(*wall),
            wall.as_secs_f64() / raw.as_secs_f64(),
            note.as_deref()
                .map(|n| format!(" [{n}]"))
                .unwrap_or_default()
        ),
    }
}

fn row(name: &str, m: &Measurement) -> String {
    format!(
        "| {name} | {} | {}{} | {:.2}× | {} | {} | {} | {} |",
        secs(m.raw),
        secs(m.syncgate),
        if m.problems.is_empty() {
            ""
        } else {
            " **WRONG**"
        },
        m.syncgate.as_secs_f64() / m.raw.as_secs_f64(),
        rate(m.spec.total_rows(), m.syncgate),
        m.peak_rss_kib
            .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
            .unwrap_or_else(|| "n/a".into()),
        tool_cell(&m.reladiff, m.raw),
        tool_cell(&m.pt, m.raw),
    )
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The commit measured, `+dirty` when tracked files differ from it (read-only git calls:
/// `GIT_OPTIONAL_LOCKS=0` keeps `git status` from rewriting the index).
fn source_version() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .env("GIT_OPTIONAL_LOCKS", "0")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(s) if !s.is_empty() => format!("{head}+dirty"),
            _ => head,
        },
        None => "unknown".into(),
    }
}

fn mariadbd_version() -> String {
    ["mariadbd", "mysqld"]
        .iter()
        .find_map(|b| {
            let o = Command::new(b).arg("--version").output().ok()?;
            o.status
                .success()
                .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The performance targets, for the full-size scenarios: the "no cliffs" targets (per
/// charset and key shape) where they are stricter than the first ones.
fn targets(results: &[ScenarioResult], opts: &Opts) -> String {
    let mut s = String::from("\nTargets (full-size scenarios only):\n\n");
    let latin1 = opts.charset.as_deref() == Some("latin1");
    let int_key = matches!(opts.key, KeyShape::Int);
    if opts.quick {
        s.push_str("- quick run: the targets apply to the full sizes, not evaluated\n");
        return s;
    }
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let mut any = false;
    // `linear` measures the 1x10M-equal data set too: its target is evaluated from there
    // unless that scenario ran on its own.
    let mut singles: Vec<(DataSpec, &Measurement)> = Vec::new();
    for (_, sc, ms) in results {
        match sc {
            Scenario::Single(d) => singles.push((*d, &ms[0])),
            Scenario::Linear { large, .. } => {
                if !singles.iter().any(|(d, _)| d == large) {
                    singles.push((*large, &ms[1]));
                }
            }
        }
    }
    for (d, m) in singles {
        let ratio = m.syncgate.as_secs_f64() / m.raw.as_secs_f64();
        let rss_mib = m.peak_rss_kib.map(|k| k as f64 / 1024.0);
        let line = match (d.tables, d.rows, d.drift) {
            (4, 1_000_000, Drift::Rows(15)) if int_key => {
                let (cs, target) = if latin1 {
                    ("latin1", 1.5)
                } else {
                    ("utf8mb4", 1.3)
                };
                Some(format!(
                    "- 4x1M-15rows, {cs}: ≤ {target}× raw — {ratio:.2}×: {}",
                    verdict(ratio <= target)
                ))
            }
            (1, 1_000_000, Drift::Rows(15)) if !int_key => Some(format!(
                "- 1x1M-15rows, {:?} key: ≤ 1.5× raw — {ratio:.2}×: {}",
                opts.key,
                verdict(ratio <= 1.5)
            )),
            (1, 1_000_000, Drift::Ppm(10_000)) => Some(format!(
                "- 1x1M-1pct: ≤ 2.5× raw — {ratio:.2}×: {}",
                verdict(ratio <= 2.5)
            )),
            (1000, 1000, Drift::Rows(_)) => Some(format!(
                "- 1000 tables x 1,000 rows, a few drifted: ≤ 3× raw — {ratio:.2}×: {}",
                verdict(ratio <= 3.0)
            )),
            (10_000, 0, _) => Some(format!(
                "- 10,000 empty tables: completes, peak RSS ≤ 100 MiB — {}: {}",
                rss_mib
                    .map(|r| format!("{r:.1} MiB"))
                    .unwrap_or_else(|| "RSS n/a".into()),
                verdict(rss_mib.is_some_and(|r| r <= 100.0))
            )),
            (1, 10_000_000, Drift::Equal) => Some(format!(
                "- 1x10M-equal: ≤ 1.5× raw and peak RSS ≤ 100 MiB — {ratio:.2}×, {}: {}",
                rss_mib
                    .map(|r| format!("{r:.1} MiB"))
                    .unwrap_or_else(|| "RSS n/a".into()),
                verdict(ratio <= 1.5 && rss_mib.is_some_and(|r| r <= 100.0))
            )),
            _ => None,
        };
        if let Some(l) = line {
            any = true;
            s.push_str(&l);
            s.push('\n');
        }
    }
    for (_, sc, ms) in results {
        match sc {
            Scenario::Single(_) => {}
            Scenario::Linear { small, large } => {
                if small.rows == 1_000_000 && large.rows == 10_000_000 {
                    let g = growth(&ms[0], &ms[1]);
                    any = true;
                    let _ = writeln!(
                        s,
                        "- linear 1M→10M within ±20 % — per-row time ×{g:.2}: {}{}",
                        verdict((0.8..=1.2).contains(&g)),
                        if g < 0.8 {
                            " (sub-linear: a fixed cost weighs more at 1M)"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
    }
    if !any {
        s.push_str("- none of the target scenarios ran\n");
    }
    s
}

/// Per-row time growth from the small to the large data set (1.0 = linear).
fn growth(small: &Measurement, large: &Measurement) -> f64 {
    let per_row = |m: &Measurement| m.syncgate.as_secs_f64() / m.spec.total_rows() as f64;
    per_row(large) / per_row(small)
}
