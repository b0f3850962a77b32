//! Scheduled checks: each run's report and fix SQL published to `[task] report-storage`
//! under `runs/<run id>/`, and the history read back (`syncgate report history`).
//!
//! A run id is the run's start time (UTC, to the second) and the process id, so ids sort by
//! time and two machines starting in the same second still differ; or the id given with
//! `check --run-id`. The shards of one check (`check --shard I/N --run-id ID`) each publish
//! a part under `runs/<ID>/shard-I-of-N/`; [`merge_run`] joins the parts into the run's own
//! report under `runs/<ID>/`. [`history`] lists a run once, whether it was one process or
//! several shards (merged or not yet).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::check::Shard;
use crate::error::{Error, Result};
use crate::report::summary::{SUMMARY_JSON, SUMMARY_TXT};
use crate::report::RunReport;
use crate::storage::ObjectStore;

/// Key of the `check --lock` lease, in report-storage or the output directory.
pub const LOCK_KEY: &str = "syncgate.lock";
/// Prefix of the published runs.
pub const RUNS: &str = "runs";

/// Prefix of a shard's part of a run: `shard-I-of-N`.
const SHARD_PART: &str = "shard-";

/// Why a run id or a run's shard parts cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    /// `--run-id` / `report merge --run` names no valid run.
    #[error("run id '{id}' {reason}")]
    InvalidRunId { id: String, reason: &'static str },
    /// No shard of the run has published its part.
    #[error("run '{run}' has no shard reports in {location} (published by `check --shard I/N --run-id {run}`)")]
    NoShards { run: String, location: String },
    /// Some shards of the run have not published their part (yet).
    #[error(
        "run '{run}': {} of {count} shards published no report to {location}: {}; \
         merge once every shard has finished",
        .missing.len(),
        list_shards(.missing, .count)
    )]
    MissingShards {
        run: String,
        count: u32,
        missing: Vec<u32>,
        location: String,
    },
    /// The parts were published by checks split into different numbers of shards.
    #[error(
        "run '{run}' has shard reports of checks split {}ways in {location}: one run id must \
         name one check",
        .counts.iter().map(|c| format!("{c} ")).collect::<Vec<_>>().join("and ")
    )]
    ShardCounts {
        run: String,
        counts: Vec<u32>,
        location: String,
    },
}

/// `shard 1/3, shard 2/3`.
fn list_shards(indexes: &[u32], count: &u32) -> String {
    indexes
        .iter()
        .map(|i| format!("shard {i}/{count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks a run id given on the command line: it becomes one segment of a storage key.
pub fn check_run_id(id: &str) -> std::result::Result<(), RunsError> {
    let invalid = |reason| {
        Err(RunsError::InvalidRunId {
            id: id.to_string(),
            reason,
        })
    };
    if id.is_empty() {
        return invalid("is empty");
    }
    if id.len() > 128 {
        return invalid("is longer than 128 characters");
    }
    if id.contains('/') || id.contains('\\') {
        return invalid("contains a '/' or '\\'");
    }
    if id.contains("..") {
        return invalid("contains '..'");
    }
    if id.starts_with('.') {
        return invalid("starts with '.'");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return invalid("may hold only letters, digits, '-', '_', '.' and ':'");
    }
    Ok(())
}

/// The key segment of a shard's part: `shard-0-of-3`.
pub fn shard_part(shard: Shard) -> String {
    format!("{SHARD_PART}{}-of-{}", shard.index, shard.count)
}

/// The shard of a part's key segment (`shard-0-of-3`).
fn parse_shard_part(segment: &str) -> Option<Shard> {
    let (i, n) = segment.strip_prefix(SHARD_PART)?.split_once("-of-")?;
    let shard = Shard::parse(&format!("{i}/{n}")).ok()?;
    // Only the canonical spelling (no spaces, signs or leading zeros).
    (shard_part(shard) == segment).then_some(shard)
}

/// Where a run publishes: `runs/<id>`, or `runs/<id>/shard-I-of-N` for one shard's part.
pub fn run_prefix(id: &str, shard: Option<Shard>) -> String {
    match shard {
        Some(s) => format!("{RUNS}/{id}/{}", shard_part(s)),
        None => format!("{RUNS}/{id}"),
    }
}

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
/// directories of `output_dir` to `runs/<id>/` (the id [`run_id`] of the report, or `run`
/// as given), or with `shard` to that run's part `runs/<id>/shard-I-of-N/`; returns that
/// prefix. The summary goes last, so a run listed by [`history`] has all its files.
pub async fn publish(
    store: &dyn ObjectStore,
    report: &RunReport,
    output_dir: &Path,
    run: Option<&str>,
    shard: Option<Shard>,
) -> Result<String> {
    let prefix = match run {
        Some(id) => {
            check_run_id(id)?;
            run_prefix(id, shard)
        }
        None => run_prefix(&run_id(report), None),
    };
    publish_dir(store, &prefix, output_dir).await?;
    Ok(prefix)
}

/// Uploads `output_dir`'s summaries and SQL files under `prefix`. What an earlier publish
/// left there (a retried shard, a merge done again) is replaced: its summary is deleted
/// first, then every file this publish does not write, except the shards' parts.
async fn publish_dir(store: &dyn ObjectStore, prefix: &str, output_dir: &Path) -> Result<()> {
    let dir = output_dir.to_path_buf();
    let files = tokio::task::spawn_blocking(move || sql_files(&dir))
        .await
        .map_err(|e| Error::Internal(format!("listing the fix SQL files: {e}")))??;
    let mut earlier = store.list(prefix).await?;
    if !earlier.is_empty() {
        let new: BTreeSet<String> = files
            .iter()
            .map(|(rel, _)| format!("{prefix}/{rel}"))
            .collect();
        let summary = format!("{prefix}/{SUMMARY_JSON}");
        earlier.sort_by_key(|o| o.key != summary);
        for old in earlier {
            let rel = old.key.strip_prefix(&format!("{prefix}/")).unwrap_or("");
            if rel.starts_with(SHARD_PART) || new.contains(&old.key) {
                continue;
            }
            store.delete(&old.key).await?;
        }
    }
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
    Ok(())
}

/// The shards' parts of run `id` published so far: for each shard count, the indexes.
async fn shard_parts(store: &dyn ObjectStore, id: &str) -> Result<BTreeMap<u32, BTreeSet<u32>>> {
    let prefix = run_prefix(id, None);
    let mut parts: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    for obj in store.list(&prefix).await? {
        let Some((part, SUMMARY_JSON)) = obj
            .key
            .strip_prefix(&format!("{prefix}/"))
            .and_then(|rel| rel.split_once('/'))
        else {
            continue;
        };
        if let Some(shard) = parse_shard_part(part) {
            parts.entry(shard.count).or_default().insert(shard.index);
        }
    }
    Ok(parts)
}

/// Downloads every shard's part of run `id` into `into/shard-I-of-N/`; returns those
/// directories in shard order. Refused, naming them, when some shards have published no
/// part, and when the parts disagree on the number of shards.
pub async fn download_shards(
    store: &dyn ObjectStore,
    id: &str,
    into: &Path,
) -> Result<Vec<PathBuf>> {
    check_run_id(id)?;
    let location = format!("{}/{}/", store.location(), run_prefix(id, None));
    let parts = shard_parts(store, id).await?;
    let (count, present) = match parts.len() {
        0 => {
            return Err(RunsError::NoShards {
                run: id.to_string(),
                location,
            }
            .into())
        }
        1 => parts.into_iter().next().expect("one entry"),
        _ => {
            return Err(RunsError::ShardCounts {
                run: id.to_string(),
                counts: parts.into_keys().collect(),
                location,
            }
            .into())
        }
    };
    let missing: Vec<u32> = (0..count).filter(|i| !present.contains(i)).collect();
    if !missing.is_empty() {
        return Err(RunsError::MissingShards {
            run: id.to_string(),
            count,
            missing,
            location,
        }
        .into());
    }
    let mut dirs = Vec::new();
    for index in 0..count {
        let part = run_prefix(id, Some(Shard { index, count }));
        let dir = into.join(shard_part(Shard { index, count }));
        for obj in store.list(&part).await? {
            let rel = obj
                .key
                .strip_prefix(&format!("{part}/"))
                .unwrap_or(&obj.key);
            let to = dir.join(rel);
            let write = |source| Error::Output {
                path: to.clone(),
                source,
            };
            tokio::fs::create_dir_all(to.parent().unwrap_or(&dir))
                .await
                .map_err(write)?;
            let mut body = store.download(&obj.key).await?;
            let mut file = tokio::fs::File::create(&to).await.map_err(write)?;
            tokio::io::copy(&mut body, &mut file).await.map_err(write)?;
        }
        dirs.push(dir);
    }
    Ok(dirs)
}

/// `report merge --run ID`: downloads the shards' parts of run `id` ([`download_shards`]),
/// joins them into `output_dir` ([`merge_dirs`]) and publishes the joined report as the
/// run's own, under `runs/<id>/`. Returns the joined report.
pub async fn merge_run(store: &dyn ObjectStore, id: &str, output_dir: &Path) -> Result<RunReport> {
    check_run_id(id)?;
    let write = |source| Error::Output {
        path: output_dir.to_path_buf(),
        source,
    };
    tokio::fs::create_dir_all(output_dir).await.map_err(write)?;
    // Inside the output directory: a container's root (and /tmp) may be read-only.
    let scratch = tempfile::Builder::new()
        .prefix(".syncgate-shards-")
        .tempdir_in(output_dir)
        .map_err(write)?;
    let dirs = download_shards(store, id, scratch.path()).await?;
    let out = output_dir.to_path_buf();
    let merged = tokio::task::spawn_blocking(move || merge_dirs(&dirs, &out))
        .await
        .map_err(|e| Error::Internal(format!("merging the shards: {e}")))??;
    drop(scratch);
    publish_dir(store, &run_prefix(id, None), output_dir).await?;
    Ok(merged)
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
    /// The run's result; `unmerged` for the shards of a run not joined yet
    /// (`report merge --run`), whose counts are then those of the parts published so far.
    pub result: String,
    pub started_at: String,
    pub duration_ms: u64,
    pub tables: usize,
    pub tables_different: usize,
    pub rows_missing: u64,
    pub rows_extra: u64,
    pub rows_changed: u64,
    /// For a check split into shards: how many published their part, of how many.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<ShardCount>,
    /// Where the run's files are (redacted location + prefix).
    pub location: String,
}

/// The shards of one run: `published` of `count` have published their part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShardCount {
    pub published: u32,
    pub count: u32,
}

/// Every published run, oldest first, each once: a run of one process, a merged run (its
/// shards' parts counted in [`RunEntry::shards`]), and a run whose shards are not merged yet
/// (result `unmerged`). A run whose summary cannot be read is listed with result
/// `unreadable` rather than hidden.
pub async fn history(store: &dyn ObjectStore) -> Result<Vec<RunEntry>> {
    /// A run's own summary's key and its shards' summaries' keys.
    #[derive(Default)]
    struct Keys {
        own: Option<String>,
        parts: Vec<(Shard, String)>,
    }
    let mut runs: BTreeMap<String, Keys> = BTreeMap::new();
    for obj in store.list(RUNS).await? {
        let Some(path) = obj
            .key
            .strip_prefix(&format!("{RUNS}/"))
            .and_then(|k| k.strip_suffix(&format!("/{SUMMARY_JSON}")))
        else {
            continue;
        };
        match path.split_once('/') {
            None => {
                let entry = runs.entry(path.to_string()).or_default();
                entry.own = Some(obj.key.clone());
            }
            Some((id, part)) => {
                if let Some(shard) = parse_shard_part(part) {
                    let entry = runs.entry(id.to_string()).or_default();
                    entry.parts.push((shard, obj.key.clone()));
                }
            }
        }
    }
    let read = |key: String| async move {
        Ok::<_, Error>(
            store
                .get(&key)
                .await?
                .and_then(|b| serde_json::from_slice::<RunReport>(&b).ok()),
        )
    };
    let mut out = Vec::new();
    for (id, Keys { own, parts }) in runs {
        let shards = (!parts.is_empty()).then(|| ShardCount {
            published: parts.len() as u32,
            count: parts.iter().map(|(s, _)| s.count).max().unwrap_or(0),
        });
        let (report, result) = match own {
            Some(key) => {
                let report = read(key).await?;
                let result = report.as_ref().map(|r| r.result.to_string());
                (report, result)
            }
            None => {
                let mut reports = Vec::new();
                for (_, key) in parts {
                    reports.extend(read(key).await?);
                }
                (merge_reports(reports), Some("unmerged".to_string()))
            }
        };
        let location = format!("{}/{RUNS}/{id}/", store.location());
        out.push(match (report, result) {
            (Some(r), Some(result)) => {
                let counts = r.counts();
                let sum = |f: fn(&crate::report::TableReport) -> u64| r.tables.iter().map(f).sum();
                RunEntry {
                    id,
                    result,
                    started_at: r.started_at.clone(),
                    duration_ms: r.duration_ms,
                    tables: counts.total,
                    tables_different: counts.different,
                    rows_missing: sum(|t| t.rows_missing),
                    rows_extra: sum(|t| t.rows_extra),
                    rows_changed: sum(|t| t.rows_changed),
                    shards,
                    location,
                }
            }
            _ => RunEntry {
                id,
                result: "unreadable".into(),
                started_at: String::new(),
                duration_ms: 0,
                tables: 0,
                tables_different: 0,
                rows_missing: 0,
                rows_extra: 0,
                rows_changed: 0,
                shards,
                location,
            },
        });
    }
    // Ids given with --run-id need not sort by time: oldest first by start, then id.
    out.sort_by(|a, b| (&a.started_at, &a.id).cmp(&(&b.started_at, &b.id)));
    Ok(out)
}

/// The history as a table for people.
pub fn render_history(entries: &[RunEntry]) -> String {
    use tabled::settings::Style;
    #[derive(tabled::Tabled)]
    struct Row<'a> {
        run: String,
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
            run: match e.shards {
                Some(s) => format!("{} ({}/{} shards)", e.id, s.published, s.count),
                None => e.id.clone(),
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_one_key_segment() {
        for ok in [
            "syncgate-check-29512345",
            "nightly_7",
            "20261126T223300Z-1234",
            "a.b:c",
        ] {
            assert!(check_run_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a/b",
            "..",
            "a..b",
            ".hidden",
            "a\\b",
            "a b",
            "ü",
            &"x".repeat(129),
        ] {
            let e = check_run_id(bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("run id '{bad}' ")), "{e}");
        }
    }

    #[test]
    fn shard_parts_round_trip_in_one_spelling() {
        let s = Shard { index: 2, count: 3 };
        assert_eq!(shard_part(s), "shard-2-of-3");
        assert_eq!(parse_shard_part("shard-2-of-3"), Some(s));
        assert_eq!(run_prefix("r", Some(s)), "runs/r/shard-2-of-3");
        assert_eq!(run_prefix("r", None), "runs/r");
        for other in [
            "shard-3-of-3",
            "shard-02-of-3",
            "shard- 2-of-3",
            "shard-2of3",
            "fix-on-x",
        ] {
            assert_eq!(parse_shard_part(other), None, "{other}");
        }
    }

    #[test]
    fn missing_shards_are_named() {
        let e = RunsError::MissingShards {
            run: "r".into(),
            count: 4,
            missing: vec![1, 3],
            location: "s3://b/p/runs/r/".into(),
        };
        assert_eq!(
            e.to_string(),
            "run 'r': 2 of 4 shards published no report to s3://b/p/runs/r/: shard 1/4, \
             shard 3/4; merge once every shard has finished"
        );
        let e = RunsError::ShardCounts {
            run: "r".into(),
            counts: vec![3, 4],
            location: "l".into(),
        };
        assert!(e.to_string().contains("split 3 and 4 ways"), "{e}");
    }
}
