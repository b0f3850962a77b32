//! Gate 1: the secondary after a restore, compared with the primary *at the backup point*.
//!
//! MariaDB/MySQL cannot read the past, so the primary's side is the backup's fingerprints
//! (every row's key and hash, read in the dump's own snapshot; [`super::fingerprint`]).
//! The secondary is read in one consistent snapshot per connection. The gate proves that
//! every selected table on the secondary holds exactly the rows the primary held at the
//! backup's GTID: no row lost, added or changed, none of the selected tables missing or
//! extra. It names differing rows by key. TiDB reads the primary at `tidb_snapshot =
//! BackupTS` instead and runs the full checker ([`super::tidb_steps`]).

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::fingerprint::{self, TableVerdict};
use super::manifest::{self, Manifest, TableEntry};
use super::stream::Hashing;
use super::{DrContext, DrError};
use crate::db::{Conn, Source};
use crate::error::{Error, Result};
use crate::schema::TableRef;
use crate::storage::ObjectStore;

/// A gate's result, written as `gate.json` (and `gate.txt`) in the step's directory.
#[derive(Debug, Clone, Serialize)]
pub struct GateReport {
    pub gate: String,
    /// `equal` or `different`.
    pub result: String,
    pub backup_id: String,
    /// The point both sides were compared at.
    pub point: String,
    pub tables: Vec<TableVerdict>,
    /// Selected tables on the secondary that the backup does not hold.
    pub extra_tables: Vec<String>,
    /// Backed-up tables the secondary does not have.
    pub missing_tables: Vec<String>,
    pub differing_rows: u64,
    pub compared_rows: u64,
    pub elapsed_secs: f64,
}

impl GateReport {
    pub fn equal(&self) -> bool {
        self.result == "equal"
    }
}

/// Compare the secondary with the backup's fingerprints and write the report into `dir`.
pub async fn fingerprints(
    ctx: &DrContext,
    store: &dyn ObjectStore,
    manifest: &Manifest,
    secondary: &Source,
    dir: &Path,
) -> Result<GateReport> {
    let started = std::time::Instant::now();
    if let Some(why) = manifest.fingerprints_unusable() {
        return Err(DrError::Precondition(why).into());
    }
    let scratch = tempfile::Builder::new()
        .prefix("syncgate-gate-")
        .tempdir()?;
    let mut meta = secondary.connect().await?;
    let present = secondary_tables(ctx, &mut meta, manifest).await?;
    meta.close().await;
    let backed_up: BTreeSet<TableRef> = manifest
        .tables
        .iter()
        .map(|t| TableRef::new(t.schema.clone(), t.table.clone()))
        .collect();
    let mut report = GateReport {
        gate: "gate 1 (restore vs the primary at the backup point)".into(),
        result: String::new(),
        backup_id: manifest.id.clone(),
        point: manifest.point.to_string(),
        tables: Vec::new(),
        extra_tables: present
            .difference(&backed_up)
            .map(|t| t.to_string())
            .collect(),
        missing_tables: backed_up
            .difference(&present)
            .map(|t| t.to_string())
            .collect(),
        differing_rows: 0,
        compared_rows: 0,
        elapsed_secs: 0.0,
    };
    let todo: VecDeque<TableEntry> = manifest
        .tables
        .iter()
        .filter(|t| present.contains(&TableRef::new(t.schema.clone(), t.table.clone())))
        .cloned()
        .collect();
    report.tables = compare_tables(ctx, store, manifest, secondary, todo, scratch.path()).await?;
    for entry in &manifest.tables {
        if report
            .missing_tables
            .contains(&format!("{}.{}", entry.schema, entry.table))
        {
            report.differing_rows += entry.rows.unwrap_or(0);
        }
    }
    report.differing_rows += report.tables.iter().map(|t| t.differing()).sum::<u64>();
    report.compared_rows = report.tables.iter().map(|t| t.primary_rows).sum();
    let differs = report.differing_rows > 0
        || !report.extra_tables.is_empty()
        || !report.missing_tables.is_empty();
    report.result = if differs { "different" } else { "equal" }.into();
    report.elapsed_secs = started.elapsed().as_secs_f64();
    write_report(dir, &report).await?;
    Ok(report)
}

/// A gate run by the checker (`check::run_check`), as a gate report. Rows are named in the
/// check's own report and fix SQL beside it.
pub fn from_check(
    report: &crate::report::RunReport,
    manifest: &Manifest,
    point: String,
    elapsed: std::time::Duration,
) -> GateReport {
    let tables: Vec<TableVerdict> = report
        .tables
        .iter()
        .map(|t| TableVerdict {
            table: format!("{}.{}", t.schema, t.table),
            primary_rows: t.rows_upstream,
            secondary_rows: t.rows_downstream,
            missing: t.rows_missing,
            extra: t.rows_extra,
            changed: t.rows_changed,
            ..TableVerdict::default()
        })
        .collect();
    let differing_rows = tables.iter().map(|t| t.differing()).sum();
    GateReport {
        gate: "gate 1 (restore vs the primary at the backup point)".into(),
        result: report.result.as_str().to_string(),
        backup_id: manifest.id.clone(),
        point,
        compared_rows: tables.iter().map(|t| t.primary_rows).sum(),
        tables,
        extra_tables: Vec::new(),
        missing_tables: Vec::new(),
        differing_rows,
        elapsed_secs: elapsed.as_secs_f64(),
    }
}

/// Selected tables present on the secondary in the backup's schemas.
async fn secondary_tables(
    ctx: &DrContext,
    conn: &mut Conn,
    manifest: &Manifest,
) -> Result<BTreeSet<TableRef>> {
    let filter = ctx.config.check_filter()?;
    Ok(crate::schema::list_tables(conn)
        .await?
        .into_iter()
        .filter(|t| manifest.schemas.contains(&t.schema) && filter.matches(&t.schema, &t.table))
        .collect())
}

/// Compare each table over `threads` connections, each in a consistent snapshot.
async fn compare_tables(
    ctx: &DrContext,
    store: &dyn ObjectStore,
    manifest: &Manifest,
    secondary: &Source,
    todo: VecDeque<TableEntry>,
    scratch: &Path,
) -> Result<Vec<TableVerdict>> {
    let count = ctx.threads.min(todo.len()).max(1);
    let order: Vec<String> = todo
        .iter()
        .map(|t| format!("{}.{}", t.schema, t.table))
        .collect();
    let queue = Arc::new(Mutex::new(todo));
    let mut workers = Vec::new();
    for _ in 0..count {
        let mut conn = secondary.connect().await?;
        conn.exec("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            .await?;
        let queue = queue.clone();
        workers.push(async move {
            let mut out = Vec::new();
            loop {
                let next = queue.lock().unwrap().pop_front();
                let Some(entry) = next else { break };
                let table = TableRef::new(entry.schema.clone(), entry.table.clone());
                let Some(key) = &entry.fingerprint else {
                    continue;
                };
                let path = scratch.join(key.replace('/', "_"));
                fetch_verified(store, manifest, key, &path).await?;
                let plan = super::backup::plan_for(&mut conn, &table).await?;
                let verdict = fingerprint::compare(&mut conn, &plan, path.clone()).await?;
                let _ = tokio::fs::remove_file(&path).await;
                out.push(verdict);
            }
            let _ = conn.exec("COMMIT").await;
            conn.close().await;
            Ok::<_, Error>(out)
        });
    }
    let mut all: Vec<TableVerdict> = futures_util::future::try_join_all(workers)
        .await?
        .into_iter()
        .flatten()
        .collect();
    all.sort_by_key(|v| order.iter().position(|o| *o == v.table));
    Ok(all)
}

/// Download backup object `key` to `path`, checking it against the manifest's checksum.
pub async fn fetch_verified(
    store: &dyn ObjectStore,
    manifest: &Manifest,
    key: &str,
    path: &Path,
) -> Result<()> {
    let entry = manifest.object(key).ok_or_else(|| {
        DrError::Precondition(format!(
            "backup {} lists no object {key} in its manifest",
            manifest.id
        ))
    })?;
    let full = format!("{}/{key}", manifest::backup_dir(&manifest.id));
    let body = store.download(&full).await?;
    let (hashing, _, digest) = Hashing::new(body);
    let mut reader = tokio::io::BufReader::with_capacity(1 << 20, hashing);
    let mut file = tokio::fs::File::create(path).await?;
    tokio::io::copy_buf(&mut reader, &mut file).await?;
    file.flush().await?;
    let got = digest.lock().unwrap().take().unwrap_or_default();
    if got.sha256 != entry.sha256 || got.size != entry.size {
        let _ = tokio::fs::remove_file(path).await;
        return Err(DrError::Damaged {
            key: full,
            expected: format!("{} ({} bytes)", entry.sha256, entry.size),
            actual: format!("{} ({} bytes)", got.sha256, got.size),
        }
        .into());
    }
    Ok(())
}

/// `gate.json` and `gate.txt` in `dir`.
async fn write_report(dir: &Path, report: &GateReport) -> Result<()> {
    let dir: PathBuf = dir.to_path_buf();
    let json = serde_json::to_vec_pretty(report)
        .map_err(|e| Error::Internal(format!("gate report: {e}")))?;
    let text = render_text(report);
    tokio::task::spawn_blocking(move || -> Result<()> {
        let out = |p: &Path, e| Error::Output {
            path: p.to_path_buf(),
            source: e,
        };
        std::fs::create_dir_all(&dir).map_err(|e| out(&dir, e))?;
        let json_path = dir.join("gate.json");
        std::fs::write(&json_path, json).map_err(|e| out(&json_path, e))?;
        let txt_path = dir.join("gate.txt");
        std::fs::write(&txt_path, text).map_err(|e| out(&txt_path, e))?;
        Ok(())
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?
}

/// The human-readable report: the verdict, then each differing table with its rows.
pub fn render_text(r: &GateReport) -> String {
    let mut s = format!(
        "{}\nbackup {} at {}\nresult: {} ({} rows compared, {} differing)\n",
        r.gate, r.backup_id, r.point, r.result, r.compared_rows, r.differing_rows
    );
    for t in &r.missing_tables {
        s.push_str(&format!("table {t}: missing on the secondary\n"));
    }
    for t in &r.extra_tables {
        s.push_str(&format!(
            "table {t}: on the secondary only (not in the backup)\n"
        ));
    }
    for t in r.tables.iter().filter(|t| t.differing() > 0) {
        s.push_str(&format!(
            "table {}: {} missing, {} extra, {} changed (primary {} rows, secondary {})\n",
            t.table, t.missing, t.extra, t.changed, t.primary_rows, t.secondary_rows
        ));
        for (kind, keys) in [
            ("missing", &t.missing_keys),
            ("extra", &t.extra_keys),
            ("changed", &t.changed_keys),
        ] {
            for k in keys {
                s.push_str(&format!("  {kind}: {k}\n"));
            }
        }
    }
    s
}
