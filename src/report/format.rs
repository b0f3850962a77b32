//! Small text helpers shared by summary.txt, the terminal table and progress lines.

use super::{RunReport, TableReport, TableResult};

/// Human duration: `0.4s`, `12.3s`, `2m 03s`, `1h 02m 03s`.
pub(crate) fn duration_ms(ms: u64) -> String {
    if ms < 60_000 {
        return format!("{:.1}s", ms as f64 / 1000.0);
    }
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else {
        format!("{m}m {s:02}s")
    }
}

/// A row count, or `-` when the data was not compared (so a 0 is never a guess).
pub(crate) fn count(t: &TableReport, n: u64) -> String {
    if t.data_checked {
        n.to_string()
    } else {
        "-".to_string()
    }
}

/// `equal` / `different`, or `-` for a skipped or failed table that has no structure
/// verdict (not equal and no difference recorded means it was never compared).
pub(crate) fn structure(t: &TableReport) -> &'static str {
    let unknown = matches!(t.result, TableResult::Skipped | TableResult::Error)
        && !t.structure_equal
        && t.structure_diffs.is_empty();
    if unknown {
        "-"
    } else if t.structure_equal {
        "equal"
    } else {
        "different"
    }
}

/// Re-check outcome of a table whose fix SQL was applied.
pub(crate) fn recheck(t: &TableReport) -> &'static str {
    match t.recheck_equal {
        Some(true) => "equal on re-check",
        Some(false) => "still different on re-check",
        None => "not re-checked",
    }
}

/// `Fix SQL applied to N tables: ...`, or `None` when nothing was applied.
pub(crate) fn applied_line(r: &RunReport) -> Option<String> {
    let applied: Vec<&TableReport> = r.tables.iter().filter(|t| t.fix_applied).collect();
    if applied.is_empty() {
        return None;
    }
    let n = |v: Option<bool>| applied.iter().filter(|t| t.recheck_equal == v).count();
    let mut parts = vec![
        format!("{} equal on re-check", n(Some(true))),
        format!("{} still different", n(Some(false))),
    ];
    if n(None) > 0 {
        parts.push(format!("{} not re-checked", n(None)));
    }
    Some(format!(
        "Fix SQL applied to {} {}: {}",
        applied.len(),
        if applied.len() == 1 {
            "table"
        } else {
            "tables"
        },
        parts.join(", ")
    ))
}
