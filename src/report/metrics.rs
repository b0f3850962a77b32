//! The Prometheus textfile of a check (`check --metrics-file`, for node_exporter's textfile
//! collector): tables by result, rows missing/extra/changed, duration, the exit code, and
//! the times of the last run and of the last passing run. Pure text; the caller writes it.

use super::{RunReport, TableResult};
use std::fmt::Write;

/// The metric carried from one run's file to the next: a failed run keeps the time of the
/// last run that passed.
const LAST_SUCCESS: &str = "syncgate_check_last_success_timestamp_seconds";

/// The textfile for one run. `report` is `None` when the run ended without one (an error
/// before any table, or a stopped run); `previous` is the last file's text, if any.
pub fn render(report: Option<&RunReport>, exit_code: i32, now_secs: i64, previous: &str) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    gauge(
        "syncgate_check_exit_code",
        "Exit code of the last check: 0 equal or repaired, 1 different, 2 error, 3 incomplete (--max-runtime), 130/143 stopped.",
        &[("", exit_code as f64)],
    );
    gauge(
        "syncgate_check_last_run_timestamp_seconds",
        "When the last check ended (Unix seconds).",
        &[("", now_secs as f64)],
    );
    let passed = exit_code == crate::exit::EQUAL;
    let last_success = if passed {
        Some(now_secs as f64)
    } else {
        previous_value(previous, LAST_SUCCESS)
    };
    if let Some(t) = last_success {
        gauge(
            LAST_SUCCESS,
            "When a check last ended equal or repaired (Unix seconds).",
            &[("", t)],
        );
    }
    let Some(r) = report else {
        return out;
    };
    let count = |res: TableResult| r.tables.iter().filter(|t| t.result == res).count() as f64;
    gauge(
        "syncgate_check_tables",
        "Tables of the last check by result.",
        &[
            ("{result=\"equal\"}", count(TableResult::Equal)),
            ("{result=\"different\"}", count(TableResult::Different)),
            ("{result=\"skipped\"}", count(TableResult::Skipped)),
            ("{result=\"error\"}", count(TableResult::Error)),
        ],
    );
    let sum = |f: fn(&super::TableReport) -> u64| r.tables.iter().map(f).sum::<u64>() as f64;
    gauge(
        "syncgate_check_rows",
        "Rows the last check found different, by kind.",
        &[
            ("{kind=\"missing\"}", sum(|t| t.rows_missing)),
            ("{kind=\"extra\"}", sum(|t| t.rows_extra)),
            ("{kind=\"changed\"}", sum(|t| t.rows_changed)),
        ],
    );
    gauge(
        "syncgate_check_duration_seconds",
        "Duration of the last check.",
        &[("", r.duration_ms as f64 / 1000.0)],
    );
    out
}

/// The value of the unlabelled sample `name` in a textfile.
fn previous_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of docs/summary-json.md.
    fn report() -> RunReport {
        let doc = include_str!("../../docs/summary-json.md");
        let start = doc.find("```json\n").unwrap() + "```json\n".len();
        let end = start + doc[start..].find("```").unwrap();
        serde_json::from_str(&doc[start..end]).unwrap()
    }

    #[test]
    fn a_run_with_differences_keeps_the_last_success_of_an_earlier_run() {
        let r = report();
        let first = render(Some(&r), 0, 1_000, "");
        assert!(first.contains("syncgate_check_last_success_timestamp_seconds 1000\n"));
        let second = render(Some(&r), 1, 2_000, &first);
        assert!(second.contains("syncgate_check_exit_code 1\n"), "{second}");
        assert!(second.contains("syncgate_check_last_run_timestamp_seconds 2000\n"));
        assert!(second.contains("syncgate_check_last_success_timestamp_seconds 1000\n"));
        let missing: u64 = r.tables.iter().map(|t| t.rows_missing).sum();
        assert!(second.contains(&format!(
            "syncgate_check_rows{{kind=\"missing\"}} {missing}\n"
        )));
        assert!(second.contains("# TYPE syncgate_check_tables gauge\n"));
        // No report (an error before any table): exit code and times only.
        let third = render(None, 2, 3_000, &second);
        assert!(third.contains("syncgate_check_last_success_timestamp_seconds 1000\n"));
        assert!(!third.contains("syncgate_check_tables"));
        // Never passed: no last-success sample at all.
        assert!(!render(None, 2, 1, "").contains("last_success"));
    }
}
