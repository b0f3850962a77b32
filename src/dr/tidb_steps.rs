//! The DR steps on TiDB: BR through SQL ([`super::tidb`]) with a PD service GC safepoint
//! held from before the backup until replication starts, and gate 1 by the checker itself:
//! the primary at `tidb_snapshot = BackupTS` (GC is held), the secondary at a fresh TSO
//! taken after `RESTORE` returned (dr-interfaces A1.3, A10).

use std::collections::BTreeSet;
use std::path::Path;

use super::flow::{Flow, Point};
use super::gate::GateReport;
use super::manifest::{self, Manifest, TableEntry, ToolInfo};
use super::tidb::{self as br, BrOptions};
use super::{DrContext, DrError};
use crate::db::Source;
use crate::error::Result;
use crate::snapshot::tidb::Tso;
use crate::snapshot::Snapshot;
use crate::storage::ObjectStore;

/// The PD service id of the GC hold of backup `id`.
pub fn gc_service_id(id: &str) -> String {
    format!("syncgate-dr-{id}")
}

/// Where BR writes backup `id`: a directory of its own beside the manifest.
fn br_uri(ctx: &DrContext, id: &str) -> crate::storage::StorageUri {
    ctx.backup_uri
        .join(&format!("{}/br", manifest::backup_dir(id)))
}

/// `BACKUP DATABASE … TO` the backup's directory, under a PD GC hold taken first.
pub async fn run_backup(
    ctx: &DrContext,
    store: &dyn ObjectStore,
    primary: &Source,
    id: &str,
    flow: &mut Flow,
) -> Result<Manifest> {
    let started = super::flow::now_rfc3339();
    let mut conn = primary.connect().await?;
    let tables = super::backup::selected_tables(ctx, &mut conn).await?;
    let schemas: BTreeSet<String> = tables.iter().map(|t| t.schema.clone()).collect();
    let pd = crate::snapshot::tidb::discover_pd(&mut conn).await?;
    let hold_at = br::fresh_tso(conn.inner()).await?;
    conn.close().await;
    if let Some(old) = flow.state.gc_hold.take() {
        // The flow starts over: the previous backup's hold protects nothing now.
        if let Err(e) = br::release_gc(&old.pd, &old.service_id).await {
            tracing::warn!(
                "cannot release the previous GC hold {}: {e}",
                old.service_id
            );
        }
    }
    let service = gc_service_id(id);
    br::hold_gc(&pd, &service, hold_at, ctx.dr.gc_hold_ttl as i64).await?;
    flow.state.gc_hold = Some(super::flow::GcHold {
        service_id: service.clone(),
        safe_point: hold_at,
        pd: pd.clone(),
    });
    flow.save().await?;
    let schemas: Vec<String> = schemas.into_iter().collect();
    let uri = br_uri(ctx, id);
    let opts = BrOptions {
        concurrency: None,
        rate_limit_mb: None,
        checksum: true,
    };
    let result = br::backup(
        &ctx.primary.opts(),
        &schemas,
        &uri.expose_secret(),
        &opts,
        &ctx.interrupt,
    )
    .await;
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            // A failed backup needs no hold.
            let _ = br::release_gc(&pd, &service).await;
            flow.state.gc_hold = None;
            return Err(e);
        }
    };
    let manifest = Manifest {
        format: Manifest::FORMAT,
        id: id.to_string(),
        flavour: primary.flavour().to_string(),
        server_version: primary.version().to_string(),
        source: ctx.dr.primary.clone(),
        point: Point::Tso {
            tso: result.backup_ts,
        },
        schemas: schemas.clone(),
        tables: tables
            .iter()
            .map(|t| TableEntry {
                schema: t.schema.clone(),
                table: t.table.clone(),
                rows: None,
                fingerprint: None,
            })
            .collect(),
        tool: ToolInfo {
            name: "BACKUP DATABASE (TiDB BR through SQL)".into(),
            version: primary.version().to_string(),
            args: vec![br::backup_sql(&schemas, &uri.redacted(), &opts)],
        },
        // BR's own files (and its own checksums) are written by the TiKV nodes.
        objects: Vec::new(),
        checksum_version: crate::checksum::CHECKSUM_VERSION.to_string(),
        started,
        finished: super::flow::now_rfc3339(),
    };
    manifest::write(store, &manifest).await?;
    Ok(manifest)
}

/// `RESTORE DATABASE … FROM` the backup's directory.
pub async fn restore(ctx: &DrContext, manifest: &Manifest) -> Result<()> {
    let uri = br_uri(ctx, &manifest.id);
    let opts = BrOptions {
        concurrency: None,
        rate_limit_mb: None,
        checksum: true,
    };
    let result = br::restore(
        &ctx.secondary.opts(),
        &manifest.schemas,
        &uri.expose_secret(),
        &opts,
        &ctx.interrupt,
    )
    .await?;
    if let (Point::Tso { tso }, Some(_)) = (&manifest.point, result.cluster_ts) {
        // Current TiDB reports the archive's BackupTS next to the restore TS.
        if result.backup_ts != *tso {
            return Err(DrError::Precondition(format!(
                "RESTORE reports BackupTS {} but backup {} was taken at {tso}",
                result.backup_ts, manifest.id
            ))
            .into());
        }
    }
    Ok(())
}

/// Gate 1 on TiDB: the checker, primary at BackupTS, secondary at a fresh TSO.
pub async fn gate1(
    ctx: &DrContext,
    manifest: &Manifest,
    tso: u64,
    dir: &Path,
) -> Result<GateReport> {
    let started = std::time::Instant::now();
    let secondary = Source::open(ctx.secondary.clone()).await?;
    let mut conn = secondary.connect().await?;
    let down_ts = br::fresh_tso(conn.inner()).await?;
    conn.close().await;
    let mut job = ctx.gate_job("restore")?;
    job.output_dir = dir.to_path_buf();
    job.upstream.snapshot = Snapshot::Tso(Tso(tso));
    job.downstream.snapshot = Snapshot::Tso(Tso(down_ts));
    let report = crate::check::run_check(job, crate::report::progress::Progress::hidden()).await?;
    crate::report::write_summary(&report, dir)?;
    Ok(super::gate::from_check(
        &report,
        manifest,
        format!("primary TSO {tso}, secondary TSO {down_ts}"),
        started.elapsed(),
    ))
}
