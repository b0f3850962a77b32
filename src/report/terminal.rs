//! The end-of-run table printed to stdout: one row per table, the totals line, and where
//! the fix SQL and summary.txt went.

use super::format::{applied_line, count, structure};
use super::summary::SUMMARY_TXT;
use super::{RunReport, TableResult};
use std::fmt::Write as _;
use tabled::builder::Builder;
use tabled::settings::object::Columns;
use tabled::settings::{Alignment, Style};

/// Renders the compact terminal summary (ends with a newline).
///
/// Skipped and failed tables get a reason line under the table, because skipped tables do
/// not change the exit code and would otherwise be easy to miss.
pub fn render_terminal(r: &RunReport) -> String {
    let mut out = String::new();
    if r.tables.is_empty() {
        out.push_str("No tables were compared.\n");
    } else {
        let mut b = Builder::default();
        b.push_record([
            "Table",
            "Result",
            "Structure",
            "Rows up/down",
            "Missing",
            "Extra",
            "Changed",
        ]);
        for t in &r.tables {
            let rows = if t.data_checked {
                format!("{}/{}", t.rows_upstream, t.rows_downstream)
            } else {
                "-".to_string()
            };
            b.push_record([
                t.name(),
                t.result.to_string(),
                structure(t).to_string(),
                rows,
                count(t, t.rows_missing),
                count(t, t.rows_extra),
                count(t, t.rows_changed),
            ]);
        }
        let mut table = b.build();
        table.with(Style::rounded());
        table.modify(Columns::new(3..7), Alignment::right());
        let _ = writeln!(out, "{table}");
    }

    for t in &r.tables {
        match t.result {
            TableResult::Skipped => {
                let reason = t.skip_reason.as_deref().unwrap_or("no reason recorded");
                let _ = writeln!(out, "skipped {}: {reason}", t.name());
            }
            TableResult::Error => {
                let msg = t.error.as_deref().unwrap_or("no message recorded");
                let _ = writeln!(out, "error   {}: {msg}", t.name());
            }
            TableResult::Equal | TableResult::Different => {}
        }
        if t.overlapping_keys > 0 {
            let _ = writeln!(
                out,
                "overlap {}: {} key(s) held by several upstream tables, e.g. {}",
                t.name(),
                t.overlapping_keys,
                t.overlaps.first().map_or("", String::as_str)
            );
        }
    }
    if let Some(e) = &r.error {
        let _ = writeln!(out, "run error: {e}");
    }

    // Counters and sequences change the exit code too: never leave them to summary.txt.
    for m in &r.metadata {
        let fixed = if m.fixed { " [fixed]" } else { "" };
        let _ = writeln!(out, "{m}{fixed}");
    }
    let _ = writeln!(out, "{}", r.counts());
    if let Some(p) = &r.metadata_fix_sql {
        let _ = writeln!(
            out,
            "Counters and sequences: {} difference(s), fix SQL {}",
            r.metadata.len(),
            r.output_dir.join(p).display()
        );
    }
    if let Some(line) = applied_line(r) {
        let _ = writeln!(out, "{line}");
    }
    if let Some(dir) = r.fix_sql_dir() {
        let _ = writeln!(out, "Fix SQL: {}", r.output_dir.join(dir).display());
    }
    let _ = writeln!(out, "Summary: {}", r.output_dir.join(SUMMARY_TXT).display());
    out
}
