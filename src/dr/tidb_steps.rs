//! The DR steps on TiDB: BR through SQL ([`super::tidb`]) with a PD service GC safepoint
//! held from before the backup until replication starts, and gate 1 by the checker itself:
//! the primary at `tidb_snapshot = BackupTS` (GC is held), the secondary at a fresh TSO
//! taken after `RESTORE` returned (dr-interfaces A1.3, A10); then replication through a
//! TiCDC changefeed from BackupTS ([`replicate`], A6-A8), which ends the GC hold.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::flow::{Flow, FlowState, Point, StepName, StepStatus};
use super::gate::GateReport;
use super::manifest::{self, Manifest, TableEntry, ToolInfo};
use super::ticdc::{
    mysql_sink_uri, CdcClient, ChangefeedConfig, ChangefeedInfo, ConsistentConfig, ReplicaConfig,
    SecretUri,
};
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
    let (report, down_ts) = compare_at(ctx, tso, dir).await?;
    Ok(super::gate::from_check(
        &report,
        manifest,
        format!("primary TSO {tso}, secondary TSO {down_ts}"),
        started.elapsed(),
    ))
}

/// The checker with the primary read at `tso` and the secondary at a fresh TSO taken now
/// (every change it should hold is applied by then); the report and summary go to `dir`.
/// Returns the report and the secondary's TSO.
pub(super) async fn compare_at(
    ctx: &DrContext,
    tso: u64,
    dir: &Path,
) -> Result<(crate::report::RunReport, u64)> {
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
    Ok((report, down_ts))
}

/// The changefeed `id` when `[dr] changefeed-id` is unset: one per backup, so a reseed's
/// changefeed never collides with the one it replaces.
pub fn default_changefeed_id(backup_id: &str) -> String {
    format!("syncgate-dr-{}", backup_id.to_ascii_lowercase())
}

/// TiCDC's rule for changefeed IDs (A6.2).
fn valid_changefeed_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .split('-')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// How `replicate` sets up and waits for its changefeed.
#[derive(Debug, Clone)]
pub struct ReplicateOptions {
    /// How long the changefeed may take to become `normal`.
    pub wait_normal: Duration,
    /// How often its state is read meanwhile.
    pub poll: Duration,
    /// `sync_point_interval` (TiCDC's minimum is 30 s): how stale gate 2's newest pair may be.
    pub sync_point_interval: Duration,
    /// Redo `flush_interval` in ms: bounds what a disaster loses beyond the redo log (A9).
    pub redo_flush_interval_ms: u64,
}

impl Default for ReplicateOptions {
    fn default() -> Self {
        ReplicateOptions {
            wait_normal: Duration::from_secs(300),
            poll: Duration::from_secs(2),
            sync_point_interval: Duration::from_secs(60),
            redo_flush_interval_ms: 1000,
        }
    }
}

/// What `replicate` did, for the flow state (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicateOutcome {
    pub changefeed_id: String,
    /// The backup's BackupTS.
    pub start_ts: u64,
    /// The changefeed's state when `replicate` returned (`normal`).
    pub state: String,
    /// An existing changefeed of this flow (same start-ts, same sink) was taken over.
    pub adopted: bool,
    /// Where its redo log goes, redacted.
    pub redo_storage: String,
    /// The flow's GC hold was released (the changefeed holds GC itself from now on). False
    /// when PD could not be reached: the hold stays recorded and a rerun releases it.
    pub gc_hold_released: bool,
}

/// Replication on TiDB (A10 step 5): a TiCDC changefeed from BackupTS to the secondary with
/// syncpoints and a redo log, then the release of the flow's GC hold, and only once the
/// changefeed is `normal` (until then nothing else keeps BackupTS from GC). Every failure
/// before that keeps the hold. A changefeed of the same ID is adopted when it is this flow's
/// (same start-ts, same sink), refused otherwise. Nothing here removes a changefeed: removing
/// one deletes its redo log (A8.2).
pub async fn replicate(
    ctx: &DrContext,
    flow: &mut Flow,
    opts: &ReplicateOptions,
) -> Result<ReplicateOutcome> {
    let refuse = |m: String| crate::error::Error::from(DrError::Precondition(m));
    let backup = flow
        .state
        .step(StepName::Backup)
        .filter(|r| r.status == StepStatus::Done)
        .ok_or_else(|| refuse("no completed backup in the flow: run `dr backup` first".into()))?;
    let (Some(Point::Tso { tso: start_ts }), Some(backup_id)) =
        (backup.point.clone(), backup.backup_id.clone())
    else {
        return Err(refuse(
            "the flow's backup has no TSO: replication through TiCDC needs a TiDB backup".into(),
        ));
    };
    if flow
        .state
        .step(StepName::Restore)
        .is_none_or(|r| r.status != StepStatus::Done)
    {
        return Err(refuse(
            "the secondary is not restored with a passed gate: run `dr restore` first".into(),
        ));
    }
    let id = flow_feed_id(ctx, &backup_id);
    start_changefeed(ctx, flow, &id, start_ts, opts).await
}

/// The changefeed `id` from BackupTS `start_ts` (primary → secondary as `ctx` names them)
/// under the flow's GC hold: adopted when it exists and is this flow's, else created; once
/// it is `normal` the hold is released. Shared by `dr replicate` and `dr reseed`.
pub(super) async fn start_changefeed(
    ctx: &DrContext,
    flow: &mut Flow,
    id: &str,
    start_ts: u64,
    opts: &ReplicateOptions,
) -> Result<ReplicateOutcome> {
    let refuse = |m: String| crate::error::Error::from(DrError::Precondition(m));
    let hold = flow.state.gc_hold.clone().ok_or_else(|| {
        refuse(format!(
            "the flow holds no GC safepoint: data at BackupTS {start_ts} may be collected \
             already, and a changefeed from there could miss changes; take a new backup"
        ))
    })?;
    if hold.safe_point > start_ts {
        return Err(refuse(format!(
            "the flow's GC hold {} is at {}, after BackupTS {start_ts}: it does not protect the \
             backup point; take a new backup",
            hold.service_id, hold.safe_point
        )));
    }
    let FeedSetup { cdc_addr, id, redo } = feed_setup(ctx, id)?;
    let config = changefeed_config(ctx, &id, start_ts, &redo, opts)?;
    let client = CdcClient::new(&cdc_addr)?.masking(config.secrets());

    // The hold must still be in force: setting it again at its point is refused when GC
    // has passed it (its TTL ran out and GC moved on), and extends it while we wait.
    br::hold_gc(
        &hold.pd,
        &hold.service_id,
        hold.safe_point,
        ctx.dr.gc_hold_ttl as i64,
    )
    .await?;

    let adopted = match client.get(&id).await? {
        Some(found) => {
            adopt(&found, &config, client.addr())?;
            tracing::info!("changefeed {id} from BackupTS {start_ts} exists: adopting it");
            true
        }
        None => {
            tracing::info!(
                "creating changefeed {id} on TiCDC {} from BackupTS {start_ts} to {}",
                client.addr(),
                config.sink_uri
            );
            client.create(&config).await?;
            false
        }
    };
    let wait = client.wait_normal(&id, opts.wait_normal, opts.poll);
    let info = ctx.interrupt.interruptible(wait).await??;

    let released = match br::release_gc(&hold.pd, &hold.service_id).await {
        Ok(()) => {
            flow.state.gc_hold = None;
            flow.save().await?;
            true
        }
        Err(e) => {
            tracing::warn!(
                "changefeed {id} is normal but the GC hold {} could not be released ({e}); it \
                 expires with its TTL, or run the step again",
                hold.service_id
            );
            false
        }
    };
    Ok(ReplicateOutcome {
        changefeed_id: id,
        start_ts,
        state: info.state.to_string(),
        adopted,
        redo_storage: redo.redacted(),
        gc_hold_released: released,
    })
}

/// Where the changefeed goes: TiCDC's address, the changefeed ID, its redo prefix.
pub(super) struct FeedSetup {
    pub(super) cdc_addr: String,
    pub(super) id: String,
    pub(super) redo: crate::storage::StorageUri,
}

/// The flow's changefeed: `[dr] changefeed-id`, else one named after the backup.
fn flow_feed_id(ctx: &DrContext, backup_id: &str) -> String {
    ctx.dr
        .changefeed_id
        .clone()
        .unwrap_or_else(|| default_changefeed_id(backup_id))
}

/// The TiCDC server of the primary's cluster (`[data-sources.<primary>] cdc-addr`), or why
/// there is none.
pub(super) fn primary_cdc(ctx: &DrContext) -> Result<String> {
    ctx.primary_cdc_addr().ok_or_else(|| {
        DrError::Precondition(format!(
            "[data-sources.{}] has no cdc-addr: the TiCDC server of the primary's cluster \
             (host:8300)",
            ctx.dr.primary
        ))
        .into()
    })
}

/// From the config (`[data-sources.<primary>] cdc-addr`, `[dr] redo-storage`) and the
/// changefeed's ID.
pub(super) fn feed_setup(ctx: &DrContext, id: &str) -> Result<FeedSetup> {
    let refuse = |m: String| crate::error::Error::from(DrError::Precondition(m));
    let cdc_addr = primary_cdc(ctx)?;
    let redo_root = ctx.dr.redo_storage.as_deref().ok_or_else(|| {
        refuse("[dr] has no redo-storage: TiCDC's redo log must go somewhere".into())
    })?;
    let id = id.to_string();
    if !valid_changefeed_id(&id) {
        return Err(refuse(format!(
            "[dr] changefeed-id {id:?}: TiCDC takes letters and digits in groups joined by \
             single '-', at most 128 characters"
        )));
    }
    // One redo prefix per changefeed: `cdc redo apply` reads every meta file under it (A8.4).
    let redo = crate::storage::StorageUri::parse(redo_root)?.join(&id);
    Ok(FeedSetup { cdc_addr, id, redo })
}

/// What [`replicate`] would do, read-only: nothing is sent to TiCDC or PD (the lines `dr
/// replicate` prints first, and all of `--dry-run`). Secrets are redacted.
pub fn plan(ctx: &DrContext, state: &FlowState, opts: &ReplicateOptions) -> Vec<String> {
    let backup = state
        .step(StepName::Backup)
        .filter(|r| r.status == StepStatus::Done);
    let Some((Point::Tso { tso }, backup_id)) =
        backup.and_then(|b| Some((b.point.clone()?, b.backup_id.clone()?)))
    else {
        return vec![
            "would create a TiCDC changefeed from the backup's BackupTS: refused, the flow has \
             no completed TiDB backup"
                .into(),
        ];
    };
    let mut lines = Vec::new();
    let setup = feed_setup(ctx, &flow_feed_id(ctx, &backup_id)).and_then(|f| {
        let config = changefeed_config(ctx, &f.id, tso, &f.redo, opts)?;
        Ok((f, config))
    });
    match setup {
        Ok((f, config)) => {
            lines.push(format!(
                "would create changefeed {} on TiCDC {} (or adopt this flow's own) from \
                 BackupTS {tso}:",
                f.id, f.cdc_addr
            ));
            lines.push(format!("  sink {}", config.sink_uri));
            lines.push(format!(
                "  syncpoints every {} s; redo (eventual, flushed every {} ms) in {}",
                opts.sync_point_interval.as_secs(),
                opts.redo_flush_interval_ms,
                f.redo.redacted()
            ));
        }
        Err(e) => lines.push(format!("refused: {e}")),
    }
    match &state.gc_hold {
        Some(h) => lines.push(format!(
            "then, once it is normal, release the flow's GC hold {} at {}",
            h.service_id, h.safe_point
        )),
        None => lines.push(
            "refused: the flow holds no GC safepoint for BackupTS (take a new backup)".into(),
        ),
    }
    lines
}

/// The secondary as TiCDC's MySQL sink (`mysql://user:password@host:port/`, TLS as file
/// paths): the changefeed's sink, and `cdc redo apply`'s. Holds the password.
pub(super) fn secondary_sink(ctx: &DrContext) -> Result<SecretUri> {
    let ds = ctx
        .config
        .data_sources
        .get(&ctx.dr.secondary)
        .ok_or_else(|| {
            DrError::Precondition(format!(
                "[dr] secondary '{}' is not defined",
                ctx.dr.secondary
            ))
        })?;
    let mut tls: Vec<(&str, &str)> = Vec::new();
    if let Some(sec) = &ds.security {
        if sec.ca_bytes.is_some() || sec.cert_bytes.is_some() || sec.key_bytes.is_some() {
            return Err(DrError::Precondition(format!(
                "[data-sources.{}.security] gives PEM text; TiCDC's sink takes file paths \
                 (ca-path, cert-path, key-path) readable on the TiCDC server",
                ctx.dr.secondary
            ))
            .into());
        }
        for (k, v) in [
            ("ssl-ca", &sec.ca_path),
            ("ssl-cert", &sec.cert_path),
            ("ssl-key", &sec.key_path),
        ] {
            if let Some(v) = v {
                tls.push((k, v));
            }
        }
    }
    Ok(mysql_sink_uri(
        &ds.host,
        ds.port,
        &ds.user,
        &ds.password,
        &tls,
    ))
}

/// The changefeed's body: BackupTS, the secondary as a MySQL sink, syncpoints, redo.
pub(super) fn changefeed_config(
    ctx: &DrContext,
    id: &str,
    start_ts: u64,
    redo: &crate::storage::StorageUri,
    opts: &ReplicateOptions,
) -> Result<ChangefeedConfig> {
    let sink_uri = secondary_sink(ctx)?;
    Ok(ChangefeedConfig {
        namespace: "default".into(),
        changefeed_id: id.to_string(),
        start_ts,
        sink_uri,
        replica_config: ReplicaConfig {
            enable_sync_point: true,
            sync_point_interval: Some(opts.sync_point_interval),
            consistent: Some(ConsistentConfig {
                level: "eventual".into(),
                storage: SecretUri::new(redo.expose_secret()),
                flush_interval: opts.redo_flush_interval_ms,
                meta_flush_interval: 200,
            }),
        },
    })
}

/// An existing changefeed is this flow's when it starts at BackupTS and writes to the
/// secondary; anything else is someone else's and is left alone.
fn adopt(found: &ChangefeedInfo, wanted: &ChangefeedConfig, addr: &str) -> Result<()> {
    if found.start_ts == wanted.start_ts && found.sink_uri.same_target(&wanted.sink_uri) {
        return Ok(());
    }
    Err(DrError::Precondition(format!(
        "changefeed {} already exists on TiCDC {addr} (start-ts {}, sink {}, state {}) and is \
         not this flow's (start-ts {}, sink {}); set [dr] changefeed-id to another name, or \
         remove that changefeed if nothing needs it",
        found.id, found.start_ts, found.sink_uri, found.state, wanted.start_ts, wanted.sink_uri
    ))
    .into())
}
