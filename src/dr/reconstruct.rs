//! Gate 3 (b) on MariaDB: what the promoted secondary must hold, built independently of it —
//! a scratch local `mariadbd`, the flow's backup restored into it, the archive replayed onto
//! it from the backup's GTID to the archive's last complete transaction (the same end the
//! failover applied to) — and compared with the secondary by the checker. The secondary got
//! its data by replication and the failover's replay; the reconstruction by the backup and
//! one replay of the whole archive: an equal result means neither path lost or doubled a
//! transaction.

use std::path::Path;

use super::archive::{self, ReplayOptions};
use super::binlog::GtidPos;
use super::manifest::{self, Manifest};
use super::{DrContext, DrError};
use crate::error::{Error, Result};
use crate::local::{LocalServer, ServerOptions};
use crate::report::RunReport;

/// The data source name the reconstruction has in the gate's report.
pub const SOURCE_NAME: &str = "reconstruction";

/// What the gate compared, and its report.
#[derive(Debug)]
pub struct Reconstruction {
    pub backup_id: String,
    /// The reconstruction's position after the replay.
    pub position: GtidPos,
    pub transactions: u64,
    pub report: RunReport,
}

/// Before the failover changes anything: the reconstruction can be built (a complete
/// backup, a local `mariadbd`), or the failover is refused with what to do. Returns the
/// backup's manifest (the flow's backup `backup_id`, else the newest).
pub async fn preflight(ctx: &DrContext, backup_id: Option<&str>) -> Result<Manifest> {
    let refuse = |why: String| -> Error {
        DrError::Precondition(format!(
            "gate 3 (b) cannot run: {why}; nothing was changed. Pass --no-data-gate to fail \
             over without comparing the data with a reconstruction"
        ))
        .into()
    };
    if !crate::local::mariadbd_available() {
        return Err(refuse(
            "it restores the backup into a scratch local server and no mariadbd is installed \
             here"
                .into(),
        ));
    }
    let store = ctx.store().await?;
    let found = match backup_id {
        Some(id) => manifest::read(store.as_ref(), id).await,
        None => manifest::newest(store.as_ref()).await,
    };
    found.map_err(|e| refuse(e.to_string()))
}

/// Build the reconstruction from the backup of `manifest` ([`preflight`]'s) and compare it
/// with the secondary; the report goes to `dir`.
pub async fn compare(ctx: &DrContext, manifest: &Manifest, dir: &Path) -> Result<Reconstruction> {
    let store = ctx.store().await?;
    let super::flow::Point::Gtid { gtid, .. } = &manifest.point else {
        return Err(DrError::Precondition(format!(
            "backup {} has no GTID point: it cannot start a reconstruction",
            manifest.id
        ))
        .into());
    };
    let from = GtidPos::parse(gtid).map_err(DrError::Precondition)?;
    tracing::info!(
        backup = %manifest.id,
        "gate 3 (b): restoring the backup into a scratch server"
    );
    let scratch = LocalServer::start(ServerOptions::default())
        .await
        .map_err(|e| Error::Internal(format!("gate 3 (b): cannot start a scratch server: {e}")))?;
    let (spec, ds) = scratch_source(&scratch)?;
    super::restore::load_dump(&ds, store.as_ref(), manifest).await?;
    let redo = archive::redo_store(ctx).await?;
    let opts = ReplayOptions {
        from: Some(from),
        allow_truncated_last: true,
    };
    let outcome = archive::replay_with(redo.as_ref(), &spec, &ds, &opts).await?;
    tracing::info!(
        transactions = outcome.transactions,
        "gate 3 (b): archive replayed onto the reconstruction; comparing"
    );
    let report = check(ctx, &ds, dir).await?;
    Ok(Reconstruction {
        backup_id: manifest.id.clone(),
        position: outcome.position,
        transactions: outcome.transactions,
        report,
    })
}

/// The scratch server as a source (root, no password, on 127.0.0.1).
fn scratch_source(
    server: &LocalServer,
) -> Result<(crate::db::SourceSpec, crate::config::DataSource)> {
    let ds = crate::config::DataSource {
        port: server.port(),
        ..crate::config::DataSource::default()
    };
    let spec = crate::job::spec(SOURCE_NAME, &ds)?;
    Ok((spec, ds))
}

/// The checker: the reconstruction as upstream, the secondary as downstream (both still:
/// the secondary is read-only until the gate passes), report and fix SQL in `dir`.
async fn check(ctx: &DrContext, ds: &crate::config::DataSource, dir: &Path) -> Result<RunReport> {
    let mut gate_ctx = ctx.clone();
    gate_ctx
        .config
        .data_sources
        .insert(SOURCE_NAME.to_string(), ds.clone());
    gate_ctx.dr.primary = SOURCE_NAME.to_string();
    let step = dir
        .strip_prefix(&ctx.output_dir)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| dir.to_string_lossy().into_owned());
    let job = gate_ctx.gate_job(&step)?;
    let report = crate::check::run_check(job, crate::report::progress::Progress::hidden()).await?;
    let (written, to) = (report.clone(), dir.to_path_buf());
    tokio::task::spawn_blocking(move || crate::report::write_summary(&written, &to))
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    Ok(report)
}
