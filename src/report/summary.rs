//! `summary.json` (the machine contract, see docs/summary-json.md) and `summary.txt` (for
//! people). Both are written atomically so a reader never sees half a file, even when a
//! run is interrupted while writing.

use super::format::{applied_line, count, duration_ms, recheck, structure};
use super::{RunReport, SourceReport, TableReport, TableResult};
use crate::error::{Error, Result};
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use tabled::builder::Builder;
use tabled::settings::object::Columns;
use tabled::settings::{Alignment, Style};

/// File name of the JSON summary inside the output directory.
pub const SUMMARY_JSON: &str = "summary.json";
/// File name of the text summary inside the output directory.
pub const SUMMARY_TXT: &str = "summary.txt";

/// Writes `summary.json` and `summary.txt` into `dir` (created if missing), each through a
/// temporary file in the same directory and a rename.
pub fn write_summary(report: &RunReport, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|source| Error::Output {
        path: dir.to_path_buf(),
        source,
    })?;
    // Serialised straight into the file: with thousands of tables summary.json is megabytes,
    // and a string of it (grown by doubling) would be the run's largest allocation.
    write_atomic_with(&dir.join(SUMMARY_JSON), |f| {
        let mut w = io::BufWriter::with_capacity(64 * 1024, f);
        serde_json::to_writer_pretty(&mut w, report).map_err(io::Error::from)?;
        w.write_all(b"\n")?;
        w.flush()
    })?;
    write_atomic(
        &dir.join(SUMMARY_TXT),
        render_summary_txt(report).as_bytes(),
    )
}

/// Write-then-rename; the temp name is unique per process and call so concurrent writers
/// (tests, repeated runs into one directory) never share a temp file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// [`write_atomic`] with the content written by `write` into the temp file.
fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut fs::File) -> io::Result<()>,
) -> Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let res = (|| {
        let mut f = fs::File::create(&tmp)?;
        write(&mut f)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    res.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        Error::Output {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// The text of `summary.txt`.
pub fn render_summary_txt(r: &RunReport) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = render_into(&mut out, r);
    out
}

fn render_into(out: &mut String, r: &RunReport) -> std::fmt::Result {
    writeln!(out, "syncgate {} summary", r.syncgate_version)?;
    writeln!(out)?;
    writeln!(out, "Started:    {}", r.started_at)?;
    writeln!(out, "Duration:   {}", duration_ms(r.duration_ms))?;
    writeln!(out, "Checksum:   {}", r.checksum)?;
    writeln!(out, "Output dir: {}", r.output_dir.display())?;
    writeln!(out, "Tables:     {}", r.counts())?;
    writeln!(out)?;

    for up in &r.upstream {
        source(out, "Upstream", up)?;
    }
    source(out, "Downstream", &r.downstream)?;

    equal_tables(out, r)?;
    unequal_tables(out, r)?;
    skipped_tables(out, r)?;
    errors(out, r)?;
    if let Some(line) = applied_line(r) {
        writeln!(out, "{line}")?;
        for t in r.tables.iter().filter(|t| t.fix_applied) {
            writeln!(out, "  {}: {}", t.display_name(), recheck(t))?;
        }
        writeln!(out)?;
    }
    structure_differences(out, r)?;
    overlapping_keys(out, r)?;
    if !r.metadata.is_empty() {
        writeln!(
            out,
            "Counters and sequences that differ ({})",
            r.metadata.len()
        )?;
        for m in &r.metadata {
            let fixed = if m.fixed { " [fixed]" } else { "" };
            writeln!(out, "  {m}{fixed}")?;
        }
        if let Some(p) = &r.metadata_fix_sql {
            writeln!(out, "  fix SQL: {}", p.display())?;
        }
        writeln!(out)?;
    }
    if !r.not_compared.is_empty() {
        writeln!(out, "Not compared ({})", r.not_compared.len())?;
        for o in &r.not_compared {
            writeln!(
                out,
                "  {} {}.{} ({})",
                o.kind,
                crate::sql::quote_ident(&o.schema),
                crate::sql::quote_ident(&o.name),
                o.on
            )?;
        }
        writeln!(out)?;
    }
    if !r.warnings.is_empty() {
        writeln!(out, "Warnings ({})", r.warnings.len())?;
        for w in &r.warnings {
            writeln!(out, "  - {w}")?;
        }
        writeln!(out)?;
    }

    writeln!(out, "Result: {}", r.result)
}

/// The equal tables with their row counts; always present (`none` when there are none), so
/// a reader sees at a glance what was found equal.
fn equal_tables(out: &mut String, r: &RunReport) -> std::fmt::Result {
    let equal: Vec<&TableReport> = r
        .tables
        .iter()
        .filter(|t| t.result == TableResult::Equal)
        .collect();
    writeln!(out, "Equal tables ({})", equal.len())?;
    if equal.is_empty() {
        writeln!(out, "  none")?;
    } else {
        let mut b = Builder::default();
        b.push_record(["Table", "Upstream rows", "Downstream rows"]);
        for t in &equal {
            b.push_record([
                t.display_name(),
                count(t, t.rows_upstream),
                count(t, t.rows_downstream),
            ]);
        }
        table(out, b, 1..3)?;
    }
    writeln!(out)
}

/// Tables that differ or failed: what differs (structure, row counts) and where the fix
/// SQL is; always present, like [`equal_tables`].
fn unequal_tables(out: &mut String, r: &RunReport) -> std::fmt::Result {
    let unequal: Vec<&TableReport> = r
        .tables
        .iter()
        .filter(|t| matches!(t.result, TableResult::Different | TableResult::Error))
        .collect();
    writeln!(out, "Tables that are not equal ({})", unequal.len())?;
    if unequal.is_empty() {
        writeln!(out, "  none")?;
    } else {
        let mut b = Builder::default();
        b.push_record([
            "Table",
            "Result",
            "Structure",
            "Missing",
            "Extra",
            "Changed",
            "Fix SQL",
        ]);
        for t in &unequal {
            b.push_record([
                t.display_name(),
                t.result.to_string(),
                structure(t).to_string(),
                count(t, t.rows_missing),
                count(t, t.rows_extra),
                count(t, t.rows_changed),
                t.fix_sql
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |p| p.display().to_string()),
            ]);
        }
        table(out, b, 3..6)?;
    }
    writeln!(out)
}

/// Skipped tables with the reason; only when there are some.
fn skipped_tables(out: &mut String, r: &RunReport) -> std::fmt::Result {
    let skipped: Vec<&TableReport> = r
        .tables
        .iter()
        .filter(|t| t.result == TableResult::Skipped)
        .collect();
    if !skipped.is_empty() {
        writeln!(out, "Skipped tables ({})", skipped.len())?;
        for t in skipped {
            let reason = t.skip_reason.as_deref().unwrap_or("no reason recorded");
            writeln!(out, "  {}: {reason}", t.display_name())?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// The run's error and each table's, in one section; only when there are some.
fn errors(out: &mut String, r: &RunReport) -> std::fmt::Result {
    let table_errors: Vec<(String, &str)> = r
        .tables
        .iter()
        .filter_map(|t| t.error.as_deref().map(|e| (t.display_name(), e)))
        .collect();
    if r.error.is_some() || !table_errors.is_empty() {
        let n = table_errors.len() + usize::from(r.error.is_some());
        writeln!(out, "Errors ({n})")?;
        if let Some(e) = &r.error {
            writeln!(out, "  run: {e}")?;
        }
        for (name, e) in table_errors {
            writeln!(out, "  {name}: {e}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// Shard merge: the keys held by more than one upstream table, per target; only when there
/// are some.
fn overlapping_keys(out: &mut String, r: &RunReport) -> std::fmt::Result {
    let with: Vec<&TableReport> = r.tables.iter().filter(|t| t.overlapping_keys > 0).collect();
    if with.is_empty() {
        return Ok(());
    }
    writeln!(out, "Keys held by several upstream tables (shard merge)")?;
    for t in with {
        writeln!(out, "  {}: {} key(s)", t.display_name(), t.overlapping_keys)?;
        for o in &t.overlaps {
            writeln!(out, "    - {o}")?;
        }
        let unlisted = t.overlapping_keys.saturating_sub(t.overlaps.len() as u64);
        if unlisted > 0 {
            writeln!(out, "    … and {unlisted} more")?;
        }
    }
    writeln!(out)
}

/// Every structure difference, per table; only when there are some.
fn structure_differences(out: &mut String, r: &RunReport) -> std::fmt::Result {
    let with_diffs: Vec<&TableReport> = r
        .tables
        .iter()
        .filter(|t| !t.structure_diffs.is_empty())
        .collect();
    if !with_diffs.is_empty() {
        writeln!(out, "Structure differences")?;
        for t in with_diffs {
            writeln!(out, "  {}", t.display_name())?;
            for d in &t.structure_diffs {
                writeln!(out, "    - {d}")?;
            }
        }
        writeln!(out)?;
    }
    Ok(())
}

fn source(out: &mut String, role: &str, s: &SourceReport) -> std::fmt::Result {
    writeln!(out, "{role} {}", s.name)?;
    writeln!(out, "  Address:  {}", s.address)?;
    writeln!(out, "  Server:   {} {}", s.flavour, s.version)?;
    match (s.encrypted, &s.tls_cipher) {
        (true, Some(cipher)) => writeln!(out, "  TLS:      encrypted, cipher {cipher}")?,
        (true, None) => writeln!(out, "  TLS:      encrypted (the server names no cipher)")?,
        (false, _) => writeln!(out, "  TLS:      none, the connection is not encrypted")?,
    }
    let snapshot = if s.snapshot.trim().is_empty() {
        "none"
    } else {
        &s.snapshot
    };
    writeln!(out, "  Snapshot: {snapshot}")?;
    if s.is_live() {
        writeln!(
            out,
            "  Warning:  read live, not at a pinned snapshot; rows written during the check \
             can show as differences"
        )?;
    }
    writeln!(out)
}

/// Markdown-style table (pastes cleanly into tickets), with the `numbers` columns
/// right-aligned.
fn table(out: &mut String, b: Builder, numbers: Range<usize>) -> std::fmt::Result {
    let mut t = b.build();
    t.with(Style::markdown());
    t.modify(Columns::new(numbers), Alignment::right());
    writeln!(out, "{t}")
}
