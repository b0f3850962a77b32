//! `dr reseed` and `dr switchover` on TiDB (dr-interfaces A10 step 9, and the role change
//! after it). The shape of the MariaDB steps, with TiDB's interfaces where MariaDB has
//! replication:
//!
//! **Reseed** (roles turned round as on MariaDB: primary = the acting primary, secondary =
//! the rebuilt node):
//! 1. a BR backup of the acting primary under a PD GC hold ([`tidb_steps::run_backup`]);
//! 2. BR restore onto the rebuilt node ([`tidb_steps::restore`]);
//! 3. gate 4 at a fence: the acting primary read at BackupTS, the node at a fresh TSO,
//!    before any change reaches the node (writes go on at the acting primary meanwhile);
//! 4. only when it is equal, a changefeed acting primary → node from BackupTS with
//!    syncpoints and a redo log ([`tidb_steps::start_changefeed`]), which ends the GC hold.
//!    From then on `dr verify` compares at its newest syncpoint pair.
//!
//! **Switchover**:
//! 1. refusals first, nothing frozen: a finished reseed with its changefeed; both nodes
//!    TiDB; the new node's cluster has a TiCDC (`cdc-addr`) for the reverse changefeed; the
//!    reseed's changefeed reaches a TSO taken on the acting primary now, within
//!    `--catch-up-timeout`;
//! 2. freeze: `SET GLOBAL tidb_super_read_only = ON` on the acting primary, then a fresh
//!    TSO T there: the frozen point. TiDB spreads the flag to its servers eventually; a
//!    write that still commits after T reaches the new node and makes the gate differ;
//! 3. the changefeed's checkpoint reaches T (timeout: writes thawed, nothing switched);
//! 4. the gate: the old primary at T against the new node at a fresh TSO S, every selected
//!    row (TiDB gives no list of the rows written since an earlier gate); not equal: thawed,
//!    nothing switched, exit 1;
//! 5. the old changefeed paused, a reverse changefeed new → old created from S (syncpoints,
//!    its own redo prefix) and `normal`; if it is not, it is removed, the old one resumed
//!    and writes thawed. Then the old changefeed is removed: everything up to T is applied
//!    and compared, its redo is not needed, and left running it would send the reverse
//!    changefeed's writes back;
//! 6. `tidb_super_read_only = OFF` on the new primary: the freeze ends. The old primary
//!    stays read-only; TiDB lets the reverse changefeed write into it only as a user with
//!    `RESTRICTED_REPLICA_WRITER_ADMIN` (the old primary's data-source user is its sink).

use std::time::{Duration, Instant};

use super::flow::{Flow, Point, RoleChange, StepName, StepRecord};
use super::manifest;
use super::reseed::{ReseedOutcome, RESEED_DIR};
use super::switchover::{Frozen, SwitchoverOptions, SwitchoverReport, SWITCHOVER_DIR};
use super::ticdc::CdcClient;
use super::tidb::fresh_tso;
use super::tidb_steps::{self, ReplicateOptions};
use super::{DrContext, DrError};
use crate::db::{Conn, Source};
use crate::error::{Error, Result};
use crate::report::RunReport;

/// How often the changefeed's checkpoint is read while writes are frozen.
const CHECKPOINT_POLL: Duration = Duration::from_millis(100);

/// Steps 1 to 4 of the reseed on TiDB, under the flow's lock; `record` gets the backup as
/// soon as it exists and the changefeed once it runs.
pub(super) async fn reseed(
    rctx: &DrContext,
    flow: &mut Flow,
    acting: &Source,
    node: &Source,
    record: &mut StepRecord,
) -> Result<ReseedOutcome> {
    let started = Instant::now();
    let store = flow.store().clone();
    let id = manifest::new_id();
    let manifest = tidb_steps::run_backup(rctx, store.as_ref(), acting, &id, flow).await?;
    let Point::Tso { tso: backup_ts } = manifest.point else {
        return Err(Error::Internal("a TiDB backup without a TSO".into()));
    };
    tracing::info!(backup = %manifest.id, backup_ts, "dr reseed: BR backup taken");
    record.backup_id = Some(manifest.id.clone());
    record.point = Some(manifest.point.clone());
    flow.set(StepName::Reseed, record.clone()).await?;

    let loading = Instant::now();
    tidb_steps::restore(rctx, &manifest).await?;
    let restore_time = loading.elapsed();
    tracing::info!(
        secs = restore_time.as_secs_f64(),
        "dr reseed: restored onto '{}'",
        node.name()
    );

    let (gate, _) = tidb_steps::compare_at(rctx, backup_ts, &rctx.step_dir(RESEED_DIR)).await?;
    let feed_id = tidb_steps::default_changefeed_id(&manifest.id);
    let source = if gate.exit_code() == crate::exit::EQUAL {
        let opts = ReplicateOptions::default();
        let out = tidb_steps::start_changefeed(rctx, flow, &feed_id, backup_ts, &opts).await?;
        let cdc = tidb_steps::primary_cdc(rctx)?;
        record.changefeed = Some(out.changefeed_id.clone());
        let source = format!("changefeed {} on TiCDC {cdc}", out.changefeed_id);
        record.source = Some(cdc);
        source
    } else {
        // The GC hold stays (its TTL ends it; `--again` releases it with a new backup).
        "nowhere: gate 4 differs, so no changefeed was created".to_string()
    };
    Ok(ReseedOutcome {
        acting: acting.name().to_string(),
        node: node.name().to_string(),
        manifest,
        restore_time,
        source,
        gate,
        elapsed: started.elapsed(),
    })
}

/// An earlier reseed's changefeed into the node must be gone: it would write into the
/// restored node (MariaDB's counterpart: the node replicates from nowhere).
pub(super) async fn refuse_earlier_feed(
    rctx: &DrContext,
    state: &super::flow::FlowState,
) -> Result<()> {
    let Some(id) = state
        .step(StepName::Reseed)
        .and_then(|r| r.changefeed.clone())
    else {
        return Ok(());
    };
    let client = CdcClient::new(&tidb_steps::primary_cdc(rctx)?)?;
    match client.get(&id).await? {
        Some(info)
            if !matches!(
                info.state,
                super::ticdc::FeedState::Removed | super::ticdc::FeedState::Finished
            ) =>
        {
            Err(DrError::Precondition(format!(
                "changefeed {id} of the earlier reseed is {} on TiCDC {} and writes into '{}'; \
                 remove it (cdc cli changefeed remove) and empty the node before reseeding \
                 again; nothing was changed",
                info.state,
                client.addr(),
                rctx.dr.secondary
            ))
            .into())
        }
        _ => Ok(()),
    }
}

/// What `dr reseed --dry-run` prints on TiDB.
pub(super) fn reseed_plan(rctx: &DrContext, acting: &Source, node: &Source) -> Vec<String> {
    let cdc = tidb_steps::primary_cdc(rctx).unwrap_or_else(|e| format!("(refused: {e})"));
    vec![
        format!(
            "would back up the acting primary '{}' with BR (BACKUP DATABASE … under a PD GC \
             hold) into {}",
            acting.name(),
            rctx.backup_uri
        ),
        format!(
            "would restore it onto the new node '{}' (RESTORE DATABASE …, empty now)",
            node.name()
        ),
        format!(
            "then gate 4: '{}' at a fresh TSO against '{}' at BackupTS, before any change \
             reaches it; report in {}",
            node.name(),
            acting.name(),
            rctx.step_dir(RESEED_DIR).display()
        ),
        format!(
            "when equal, would create a changefeed '{}' → '{}' from BackupTS on TiCDC {cdc} \
             (syncpoints, redo), then release the GC hold",
            acting.name(),
            node.name()
        ),
    ]
}

/// The switchover's setup, checked before anything is frozen.
struct Switch {
    /// The reseed's changefeed (old → new) and the TiCDC it runs on.
    feed: String,
    old_cdc: CdcClient,
    /// The reverse changefeed (new → old): its roles, ID and TiCDC.
    reverse_ctx: DrContext,
    reverse: tidb_steps::FeedSetup,
}

impl Switch {
    fn new(ctx: &DrContext, rctx: &DrContext, state: &super::flow::FlowState) -> Result<Switch> {
        let refuse = |m: String| Error::from(DrError::Precondition(m));
        let feed = state
            .step(StepName::Reseed)
            .and_then(|r| r.changefeed.clone())
            .ok_or_else(|| {
                refuse(
                    "the flow's reseed records no changefeed: on TiDB `dr reseed` ends with one \
                     from the acting primary to the new node"
                        .into(),
                )
            })?;
        let old_cdc = CdcClient::new(&tidb_steps::primary_cdc(rctx)?)?;
        let reverse_ctx = ctx.with_roles(&rctx.dr.secondary, &rctx.dr.primary)?;
        let reverse_id = tidb_steps::default_changefeed_id(&manifest::new_id());
        let reverse = tidb_steps::feed_setup(&reverse_ctx, &reverse_id)?;
        Ok(Switch {
            feed,
            old_cdc,
            reverse_ctx,
            reverse,
        })
    }
}

/// What `dr switchover --dry-run` prints on TiDB: refusals checked, nothing changed.
pub(super) async fn switchover_plan(
    ctx: &DrContext,
    rctx: &DrContext,
    state: &super::flow::FlowState,
    opts: &SwitchoverOptions,
) -> Result<Vec<String>> {
    let s = Switch::new(ctx, rctx, state)?;
    let (old, new) = (&rctx.dr.primary, &rctx.dr.secondary);
    Ok(vec![
        format!(
            "would check that changefeed {} (on TiCDC {}) reaches a TSO taken on '{old}' now \
             within {} s",
            s.feed,
            s.old_cdc.addr(),
            opts.catch_up_timeout.as_secs()
        ),
        format!(
            "would freeze writes on the acting primary '{old}': SET GLOBAL \
             tidb_super_read_only = ON, then a fresh TSO T there"
        ),
        format!(
            "would wait up to {} s for the changefeed's checkpoint to reach T, then gate \
             '{old}' at T against '{new}' at a fresh TSO (every selected row); not equal → \
             writes unfrozen, nothing switched",
            opts.catch_up_timeout.as_secs()
        ),
        format!(
            "would pause {}, create changefeed {} '{new}' → '{old}' on TiCDC {} from that \
             TSO, then remove {}",
            s.feed, s.reverse.id, s.reverse.cdc_addr, s.feed
        ),
        format!(
            "would make '{new}' the primary (tidb_super_read_only = OFF); '{old}' stays \
             read-only and takes the reverse changefeed's writes (its user needs \
             RESTRICTED_REPLICA_WRITER_ADMIN)"
        ),
    ])
}

async fn super_read_only(conn: &mut Conn) -> Result<bool> {
    super::switchover::global_flag(conn, "tidb_super_read_only").await
}

/// Wait until changefeed `id`'s checkpoint reaches `target`; `Ok(false)` on timeout. A
/// changefeed that is gone or has stopped is an error.
async fn reach(client: &CdcClient, id: &str, target: u64, timeout: Duration) -> Result<bool> {
    let started = Instant::now();
    loop {
        let info = client
            .get(id)
            .await?
            .ok_or_else(|| DrError::Precondition(format!("changefeed {id} does not exist")))?;
        if info.state.is_terminal() {
            return Err(DrError::Precondition(format!(
                "changefeed {id} is {}: it does not replicate",
                info.state
            ))
            .into());
        }
        if info.checkpoint_ts >= target {
            return Ok(true);
        }
        if started.elapsed() >= timeout {
            return Ok(false);
        }
        tokio::time::sleep(CHECKPOINT_POLL).await;
    }
}

/// Run the switchover on TiDB; the caller holds the flow's lock and has recorded the step
/// as running.
pub(super) async fn switchover(
    ctx: &DrContext,
    rctx: &DrContext,
    flow: &mut Flow,
    old: &Source,
    new: &Source,
    opts: &SwitchoverOptions,
    record: &mut StepRecord,
) -> Result<(SwitchoverReport, Option<RunReport>)> {
    let s = Switch::new(ctx, rctx, &flow.state)?;
    let mut oc = old.connect().await?;
    let now = fresh_tso(oc.inner()).await?;
    let kept_up = rctx
        .interrupt
        .interruptible(reach(&s.old_cdc, &s.feed, now, opts.catch_up_timeout))
        .await
        .map_err(|signal| Error::Interrupted { signal })??;
    if !kept_up {
        return Err(DrError::Precondition(format!(
            "changefeed {} did not reach the acting primary's TSO {now} within {} s \
             (replication lag, or a stopped changefeed); nothing was frozen or switched",
            s.feed,
            opts.catch_up_timeout.as_secs()
        ))
        .into());
    }
    let frozen = Frozen::freeze(old, oc, "tidb_super_read_only").await?;
    let moved = |flow: &mut Flow, record: &mut StepRecord, t: u64| {
        flow.state.acting_primary = Some(RoleChange {
            node: new.name().to_string(),
            from: old.name().to_string(),
            since: Point::Tso { tso: t },
            by: StepName::Switchover,
        });
        record.changefeed = Some(s.reverse.id.clone());
        record.source = Some(s.reverse.cdc_addr.clone());
        record.point = Some(Point::Tso { tso: t });
    };
    match frozen_part(rctx, &s, old, new, frozen, opts).await {
        Ok((report, gate, t)) => {
            if report.switched {
                moved(flow, record, t);
            }
            record.point = Some(Point::Tso { tso: t });
            record.freeze_ms = Some(report.freeze_ms);
            Ok((report, gate))
        }
        Err((e, Some(t))) => {
            moved(flow, record, t);
            Err(e)
        }
        Err((e, None)) => Err(e),
    }
}

/// Steps 2 to 6 with the old primary frozen; every way out before the switch thaws it.
async fn frozen_part(
    rctx: &DrContext,
    s: &Switch,
    old: &Source,
    new: &Source,
    mut frozen: Frozen,
    opts: &SwitchoverOptions,
) -> std::result::Result<(SwitchoverReport, Option<RunReport>, u64), (Error, Option<u64>)> {
    let t = match fresh_tso(frozen.conn.inner()).await {
        Ok(t) => t,
        Err(e) => {
            frozen.thaw().await;
            return Err((e, None));
        }
    };
    let mut report = SwitchoverReport {
        old_primary: old.name().to_string(),
        new_primary: new.name().to_string(),
        frozen_at: format!("TSO {t}"),
        gate: "error".into(),
        compared_rows: 0,
        differing_rows: 0,
        switched: false,
        freeze_ms: 0,
        catch_up_ms: 0,
        gate_ms: 0,
        gate_before: None,
        gate_before_ms: None,
        gate_scope: "every selected row (TiDB gives no list of the rows written since an \
                     earlier gate)"
            .into(),
        notes: Vec::new(),
    };
    let caught = Instant::now();
    let waited = rctx
        .interrupt
        .interruptible(reach(&s.old_cdc, &s.feed, t, opts.catch_up_timeout))
        .await
        .map_err(|signal| Error::Interrupted { signal });
    report.catch_up_ms = caught.elapsed().as_millis() as u64;
    match waited {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            frozen.thaw().await;
            let e = DrError::Precondition(format!(
                "changefeed {} did not reach the frozen TSO {t} within {} s; writes are \
                 unfrozen, nothing was switched",
                s.feed,
                opts.catch_up_timeout.as_secs()
            ));
            return Err((e.into(), None));
        }
        Ok(Err(e)) | Err(e) => {
            frozen.thaw().await;
            return Err((e, None));
        }
    }
    let gating = Instant::now();
    let gate = match tidb_steps::compare_at(rctx, t, &rctx.step_dir(SWITCHOVER_DIR)).await {
        Ok((gate, _)) => gate,
        Err(e) => {
            frozen.thaw().await;
            return Err((e, None));
        }
    };
    report.gate_ms = gating.elapsed().as_millis() as u64;
    report.gate = gate.result.as_str().to_string();
    report.compared_rows = gate.tables.iter().map(|t| t.rows_upstream).sum();
    report.differing_rows = gate.differing_rows();
    if gate.exit_code() != crate::exit::EQUAL {
        report.freeze_ms = frozen.since.elapsed().as_millis() as u64;
        report.notes.push(format!(
            "the gate at the frozen point found {} differing row(s) (report and fix SQL in \
             {}); writes are unfrozen, nothing was switched",
            report.differing_rows,
            rctx.step_dir(SWITCHOVER_DIR).display()
        ));
        frozen.thaw().await;
        return Ok((report, Some(gate), t));
    }
    let reversed = async {
        let mut nc = new.connect().await?;
        reverse(s, &mut nc, opts.catch_up_timeout, &mut report).await?;
        Ok::<_, Error>(nc)
    };
    let mut nc = match reversed.await {
        Ok(nc) => nc,
        Err(e) => {
            frozen.thaw().await;
            return Err((e, None));
        }
    };
    // Switched: from here an error leaves the new primary read-only, never the old one
    // writable.
    let writable = async {
        if super_read_only(&mut nc).await? {
            nc.exec("SET GLOBAL tidb_super_read_only = OFF").await?;
        }
        Ok::<_, Error>(())
    };
    if let Err(e) = writable.await {
        let e = DrError::Precondition(format!(
            "the roles are switched but '{}' is still read-only ({e}); run SET GLOBAL \
             tidb_super_read_only = OFF on it",
            new.name()
        ));
        return Err((e.into(), Some(t)));
    }
    nc.close().await;
    report.switched = true;
    report.freeze_ms = frozen.since.elapsed().as_millis() as u64;
    frozen.conn.close().await;
    tracing::info!(
        freeze_ms = report.freeze_ms,
        "dr switchover: '{}' is the primary",
        new.name()
    );
    Ok((report, Some(gate), t))
}

/// Step 5: the reverse changefeed in place of the old one. On an error the old changefeed
/// runs again and the reverse one is gone.
async fn reverse(
    s: &Switch,
    nc: &mut Conn,
    wait: Duration,
    report: &mut SwitchoverReport,
) -> Result<()> {
    // Everything the new node holds at this TSO equals the old primary at the frozen point.
    let start = fresh_tso(nc.inner()).await?;
    s.old_cdc.pause(&s.feed).await?;
    let opts = ReplicateOptions::default();
    let config = tidb_steps::changefeed_config(
        &s.reverse_ctx,
        &s.reverse.id,
        start,
        &s.reverse.redo,
        &opts,
    )?;
    let client = CdcClient::new(&s.reverse.cdc_addr)?.masking(config.secrets());
    let created = async {
        client.create(&config).await?;
        client
            .wait_normal(&s.reverse.id, wait, CHECKPOINT_POLL)
            .await
    };
    if let Err(e) = created.await {
        if let Err(e2) = client.remove_after_redo_applied(&s.reverse.id).await {
            tracing::warn!(
                "could not remove the reverse changefeed {}: {e2}",
                s.reverse.id
            );
        }
        if let Err(e2) = s.old_cdc.resume(&s.feed).await {
            tracing::error!(
                "could not resume changefeed {} ({e2}); resume it on TiCDC {}",
                s.feed,
                s.old_cdc.addr()
            );
        }
        return Err(e.into());
    }
    if let Err(e) = s.old_cdc.remove_after_redo_applied(&s.feed).await {
        // Paused, it sends nothing back; it must go before anyone resumes it.
        report.notes.push(format!(
            "the old changefeed {} is paused but could not be removed ({e}); remove it on \
             TiCDC {} (resumed, it would send the reverse changefeed's writes back)",
            s.feed,
            s.old_cdc.addr()
        ));
    }
    report.notes.push(format!(
        "changefeed {} now replicates '{}' → '{}' from TSO {start}; '{}' stays read-only \
         (tidb_super_read_only = ON)",
        s.reverse.id, report.new_primary, report.old_primary, report.old_primary
    ));
    Ok(())
}
