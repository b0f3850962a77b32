//! Scheduled checks: each run's report and fix SQL published to `[task] report-storage`
//! under `runs/<run id>/`, and the history read back (`syncgate report history`).
//!
//! A run id is the run's start time (UTC, to the second) and the process id, so ids sort by
//! time and two machines starting in the same second still differ.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::report::summary::{SUMMARY_JSON, SUMMARY_TXT};
use crate::report::RunReport;
use crate::storage::ObjectStore;

/// Key of the `check --lock` lease, in report-storage or the output directory.
pub const LOCK_KEY: &str = "syncgate.lock";
/// Prefix of the published runs.
pub const RUNS: &str = "runs";

/// `20261126T223300Z-1234` for a run that started at `2026-11-26T22:33:00Z` in process 1234.
pub fn run_id(report: &RunReport) -> String {
    let stamp: String = report
        .started_at
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    format!("{stamp}-{}", std::process::id())
}

/// Uploads `summary.json`, `summary.txt` and every file under the fix (and undo) SQL
/// directories of `output_dir` to `runs/<id>/`; returns that prefix. The summary goes last,
/// so a run listed by [`history`] has all its files.
pub async fn publish(
    store: &dyn ObjectStore,
    report: &RunReport,
    output_dir: &Path,
) -> Result<String> {
    let prefix = format!("{RUNS}/{}", run_id(report));
    let dir = output_dir.to_path_buf();
    let files = tokio::task::spawn_blocking(move || sql_files(&dir))
        .await
        .map_err(|e| Error::Internal(format!("listing the fix SQL files: {e}")))??;
    // The summaries last: a run that `history` lists has all its files.
    let summaries = [SUMMARY_TXT, SUMMARY_JSON].map(|n| (n.to_string(), output_dir.join(n)));
    for (rel, path) in files.into_iter().chain(summaries) {
        let body = tokio::fs::read(&path)
            .await
            .map_err(|source| Error::Output {
                path: path.clone(),
                source,
            })?;
        store.put(&format!("{prefix}/{rel}"), body).await?;
    }
    Ok(prefix)
}

/// `(relative key, path)` of the `.sql` files in `fix-on-*` and `undo-on-*` directories.
fn sql_files(output_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(output_dir) else {
        return Ok(out);
    };
    for dir in entries.flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        if !is_sql_dir(&name) || !dir.path().is_dir() {
            continue;
        }
        let files = std::fs::read_dir(dir.path()).map_err(|source| Error::Output {
            path: dir.path(),
            source,
        })?;
        for f in files.flatten() {
            let file = f.file_name().to_string_lossy().into_owned();
            if file.ends_with(".sql") && f.path().is_file() {
                out.push((format!("{name}/{file}"), f.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether an output-directory entry holds fix or undo SQL files.
fn is_sql_dir(name: &str) -> bool {
    name.starts_with("fix-on-") || name.starts_with("undo-on-")
}

/// One published run, as `report history` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunEntry {
    pub id: String,
    pub result: String,
    pub started_at: String,
    pub duration_ms: u64,
    pub tables: usize,
    pub tables_different: usize,
    pub rows_missing: u64,
    pub rows_extra: u64,
    pub rows_changed: u64,
    /// Where the run's files are (redacted location + prefix).
    pub location: String,
}

/// Every published run, oldest first. A run whose summary cannot be read is listed with
/// result `unreadable` rather than hidden.
pub async fn history(store: &dyn ObjectStore) -> Result<Vec<RunEntry>> {
    let mut out = Vec::new();
    for obj in store.list(RUNS).await? {
        let Some(id) = obj
            .key
            .strip_prefix(&format!("{RUNS}/"))
            .and_then(|k| k.strip_suffix(&format!("/{SUMMARY_JSON}")))
        else {
            continue;
        };
        if id.contains('/') {
            continue;
        }
        let location = format!("{}/{RUNS}/{id}/", store.location());
        let parsed = store
            .get(&obj.key)
            .await?
            .and_then(|b| serde_json::from_slice::<RunReport>(&b).ok());
        out.push(match parsed {
            Some(r) => {
                let counts = r.counts();
                let sum = |f: fn(&crate::report::TableReport) -> u64| r.tables.iter().map(f).sum();
                RunEntry {
                    id: id.to_string(),
                    result: r.result.to_string(),
                    started_at: r.started_at.clone(),
                    duration_ms: r.duration_ms,
                    tables: counts.total,
                    tables_different: counts.different,
                    rows_missing: sum(|t| t.rows_missing),
                    rows_extra: sum(|t| t.rows_extra),
                    rows_changed: sum(|t| t.rows_changed),
                    location,
                }
            }
            None => RunEntry {
                id: id.to_string(),
                result: "unreadable".into(),
                started_at: String::new(),
                duration_ms: 0,
                tables: 0,
                tables_different: 0,
                rows_missing: 0,
                rows_extra: 0,
                rows_changed: 0,
                location,
            },
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// The history as a table for people.
pub fn render_history(entries: &[RunEntry]) -> String {
    use tabled::settings::Style;
    #[derive(tabled::Tabled)]
    struct Row<'a> {
        run: &'a str,
        result: &'a str,
        started: &'a str,
        duration: String,
        tables: String,
        #[tabled(rename = "missing/extra/changed")]
        rows: String,
    }
    if entries.is_empty() {
        return "no runs published yet\n".into();
    }
    let rows: Vec<Row> = entries
        .iter()
        .map(|e| Row {
            run: &e.id,
            result: &e.result,
            started: &e.started_at,
            duration: format!("{:.1}s", e.duration_ms as f64 / 1000.0),
            tables: format!("{} ({} different)", e.tables, e.tables_different),
            rows: format!("{}/{}/{}", e.rows_missing, e.rows_extra, e.rows_changed),
        })
        .collect();
    let mut t = tabled::Table::new(rows);
    t.with(Style::sharp());
    format!("{t}\n")
}

/// Joins the reports of the shards of one check (`check --shard I/N`): tables of all
/// shards in name order, the earliest start, the longest duration, warnings and
/// not-compared objects without repeats, the first run-level error; the result recomputed.
pub fn merge_reports(mut reports: Vec<RunReport>) -> Option<RunReport> {
    let mut merged = reports.first()?.clone();
    merged.tables.clear();
    merged.warnings.clear();
    merged.not_compared.clear();
    merged.metadata.clear();
    merged.error = None;
    for r in reports.drain(..) {
        merged.started_at = merged.started_at.clone().min(r.started_at.clone());
        merged.duration_ms = merged.duration_ms.max(r.duration_ms);
        merged.tables.extend(r.tables);
        for w in r.warnings {
            if !merged.warnings.contains(&w) {
                merged.warnings.push(w);
            }
        }
        for o in r.not_compared {
            if !merged.not_compared.contains(&o) {
                merged.not_compared.push(o);
            }
        }
        for m in r.metadata {
            if !merged.metadata.contains(&m) {
                merged.metadata.push(m);
            }
        }
        if merged.error.is_none() {
            merged.error = r.error;
        }
    }
    merged
        .tables
        .sort_by(|a, b| (&a.schema, &a.table).cmp(&(&b.schema, &b.table)));
    merged.compute_result();
    Some(merged)
}

/// The merged counters' and sequences' fix file (the shards' differences joined), written
/// where a shard wrote its own; its path relative to `output_dir`.
fn write_merged_metadata(merged: &RunReport, output_dir: &Path) -> Result<Option<PathBuf>> {
    if merged.metadata.is_empty() {
        return Ok(None);
    }
    let source = |s: &crate::report::SourceReport| format!("{} ({})", s.name, s.address);
    let header = crate::fixsql::FixHeader {
        upstream: merged.upstream.first().map(source).unwrap_or_default(),
        downstream: source(&merged.downstream),
        upstream_point: merged
            .upstream
            .first()
            .map(|s| s.snapshot.clone())
            .unwrap_or_default(),
        downstream_point: merged.downstream.snapshot.clone(),
        ..Default::default()
    };
    let fix_dir = output_dir.join(format!("fix-on-{}", merged.downstream.name));
    let rel = crate::check::write_metadata_fix(&header, &merged.metadata, &fix_dir, output_dir)?;
    Ok(Some(rel))
}

/// [`merge_reports`] over the shards' output directories: reads each `summary.json`, copies
/// every fix (and undo) SQL file into `output_dir` (shards check disjoint tables, so no
/// file is written twice; a clash is an error), and writes the joined summary there.
pub fn merge_dirs(shards: &[PathBuf], output_dir: &Path) -> Result<RunReport> {
    // Fix SQL of an earlier merge must not look like part of this one.
    if let Ok(entries) = std::fs::read_dir(output_dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if is_sql_dir(&name) {
                crate::fixsql::supersede_previous(output_dir, &e.path())?;
            }
        }
    }
    let mut reports = Vec::new();
    let mut copied = std::collections::BTreeSet::new();
    for dir in shards {
        let path = dir.join(SUMMARY_JSON);
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Output {
            path: path.clone(),
            source,
        })?;
        let report: RunReport = serde_json::from_str(&text).map_err(|e| {
            Error::Config(format!("{} is not a syncgate summary: {e}", path.display()))
        })?;
        for (rel, file) in sql_files(dir)? {
            // Every shard writes its own counters' file: the merged one is written below.
            if Path::new(&rel).file_name()
                == Some(std::ffi::OsStr::new(crate::fixsql::METADATA_FILE))
            {
                continue;
            }
            if !copied.insert(rel.clone()) {
                return Err(Error::Config(format!(
                    "{rel} is in two shards' output: are these shards of one check?"
                )));
            }
            let to = output_dir.join(&rel);
            let parent = to.parent().unwrap_or(output_dir).to_path_buf();
            std::fs::create_dir_all(&parent)
                .and_then(|()| std::fs::copy(&file, &to).map(|_| ()))
                .map_err(|source| Error::Output { path: to, source })?;
        }
        reports.push(report);
    }
    let mut merged = merge_reports(reports)
        .ok_or_else(|| Error::Config("no shard output directories given".into()))?;
    merged.output_dir = output_dir.to_path_buf();
    merged.metadata_fix_sql = write_merged_metadata(&merged, output_dir)?;
    crate::report::write_summary(&merged, output_dir)?;
    Ok(merged)
}
