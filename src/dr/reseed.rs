//! `syncgate dr reseed --new-primary NAME`: after a failover the config's secondary is the
//! acting primary; a rebuilt node (data source NAME) is filled from it and made its replica,
//! then gate 4 (dr-interfaces B4).
//!
//! Nothing here is a copy of another step: the existing steps run with the roles turned
//! round ([`DrContext::with_roles`]: primary = the acting primary, secondary = NAME):
//!
//! 1. refusals first, nothing changed: the flow has a finished failover; NAME is a data
//!    source and not the acting primary; NAME replicates from nowhere and holds no rows in
//!    the selected tables;
//! 2. a full backup of the acting primary ([`backup::backup_mysql`], its GTID point in a
//!    manifest of its own; the flow's first backup record is kept);
//! 3. NAME set `read_only = 1` (a replica takes no writes but its replication's), then
//!    that backup restored onto it ([`restore::load`]: checked objects, `sql_log_bin = 0`,
//!    `gtid_slave_pos` = the backup's GTID);
//! 4. replication acting primary → NAME from the backup's GTID ([`replicate::start`]) while
//!    writes go on;
//! 5. gate 4: NAME against the acting primary at one GTID fence ([`verify::fenced_check`]).
//!
//! Recorded as the flow's `reseed` step, with NAME, so `dr switchover` knows its new primary.
//! On TiDB the same steps run with BR and a TiCDC changefeed ([`super::tidb_roles`]).

use std::time::{Duration, Instant};

use super::flow::{Flow, GateRecord, StepName, StepRecord, StepStatus};
use super::manifest::{self, Manifest};
use super::replicate::{self, ReplicaStatus, ReplicationSource};
use super::{backup, restore, verify, DrContext, DrError};
use crate::db::{Conn, Flavour, Source};
use crate::error::{Error, Result};
use crate::report::RunReport;

/// The step directory of gate 4.
pub const RESEED_DIR: &str = "reseed";

/// Options of `dr reseed`.
#[derive(Debug, Clone, Default)]
pub struct ReseedOptions {
    /// The data source to rebuild (the config's `[data-sources.NAME]`).
    pub new_primary: String,
    /// Reseed again although the flow records a finished reseed.
    pub again: bool,
}

/// What `dr reseed` did.
#[derive(Debug)]
pub struct ReseedOutcome {
    /// The acting primary the node was filled from.
    pub acting: String,
    pub node: String,
    /// The backup of the acting primary (its point is where replication started).
    pub manifest: Manifest,
    pub restore_time: Duration,
    /// `host:port` the node replicates from.
    pub source: String,
    /// Gate 4.
    pub gate: RunReport,
    pub elapsed: Duration,
}

/// A gate's verdict as a step records it; the check's summary is in `step`'s directory.
pub(crate) fn gate_record(report: &RunReport, step: &str) -> GateRecord {
    GateRecord {
        result: report.result.as_str().to_string(),
        differing_rows: report.differing_rows(),
        report: format!("{step}/summary.txt"),
    }
}

/// The step's status after its gate: equal → done, different → gate-failed, an error in
/// the check → failed.
pub(crate) fn status_after(report: &RunReport) -> StepStatus {
    match report.exit_code() {
        crate::exit::EQUAL => StepStatus::Done,
        crate::exit::DIFFERENT => StepStatus::GateFailed,
        _ => StepStatus::Failed,
    }
}

/// The acting primary after a finished failover, or why there is none.
pub(crate) fn acting_primary(ctx: &DrContext, state: &super::flow::FlowState) -> Result<String> {
    match state.step(StepName::Failover) {
        Some(f) if f.status == StepStatus::Done => Ok(ctx.dr.secondary.clone()),
        Some(f) => Err(DrError::Precondition(format!(
            "the flow's failover is not done (it is {:?}): the secondary '{}' is not the acting \
             primary yet; finish `dr failover` (gate 3 equal) first",
            f.status, ctx.dr.secondary
        ))
        .into()),
        None => Err(DrError::Precondition(format!(
            "the failover has not happened in this flow: the primary '{}' is still the primary \
             and there is no acting primary to reseed from; run `dr failover` first",
            ctx.dr.primary
        ))
        .into()),
    }
}

/// The roles of the reseed: primary = the acting primary, secondary = NAME.
fn roles(ctx: &DrContext, state: &super::flow::FlowState, name: &str) -> Result<DrContext> {
    if !ctx.config.data_sources.contains_key(name) {
        return Err(DrError::Precondition(format!(
            "--new-primary '{name}' is not a data source of the config; add \
             [data-sources.{name}] with the rebuilt node's address"
        ))
        .into());
    }
    let acting = acting_primary(ctx, state)?;
    if name == acting {
        return Err(DrError::Precondition(format!(
            "--new-primary '{name}' is the acting primary itself; name the rebuilt node"
        ))
        .into());
    }
    ctx.with_roles(&acting, name)
}

/// Both nodes open: MariaDB, or TiDB ([`tidb_roles`]); both of one flavour.
pub(super) async fn open_pair(rctx: &DrContext, step: &'static str) -> Result<(Source, Source)> {
    let acting = Source::open(rctx.primary.clone()).await?;
    let node = Source::open(rctx.secondary.clone()).await?;
    if acting.flavour() != node.flavour() {
        return Err(DrError::Precondition(format!(
            "'{}' is {} and '{}' is {}: {step} moves data between nodes of one flavour",
            acting.name(),
            acting.flavour(),
            node.name(),
            node.flavour()
        ))
        .into());
    }
    if acting.flavour() == Flavour::MySql {
        return Err(DrError::NotBuilt {
            step,
            flavour: "MySQL",
        }
        .into());
    }
    Ok((acting, node))
}

/// The node must be empty and (MariaDB) replicate from nowhere: a reseed replaces, it
/// never merges.
async fn refuse_occupied(rctx: &DrContext, conn: &mut Conn, flavour: Flavour) -> Result<()> {
    let name = &rctx.dr.secondary;
    let replicating = match flavour {
        Flavour::MariaDb => ReplicaStatus::read(conn, flavour).await?,
        _ => None,
    };
    if let Some(s) = replicating.filter(|s| s.active()) {
        return Err(DrError::Precondition(format!(
            "the new node '{name}' already replicates from {}; stop it (STOP SLAVE; RESET SLAVE \
             ALL) and empty it before `dr reseed`",
            s.source
        ))
        .into());
    }
    let filter = rctx.config.check_filter()?;
    let mut held = Vec::new();
    for t in crate::schema::list_tables(conn).await? {
        if !filter.matches(&t.schema, &t.table) {
            continue;
        }
        let probe = format!("SELECT 1 FROM {} LIMIT 1", t.quoted());
        if conn.first(&probe).await?.is_some() {
            held.push(t.to_string());
        }
    }
    if !held.is_empty() {
        return Err(DrError::Precondition(format!(
            "the new node '{name}' is not empty: {} hold rows; a reseed fills an empty node \
             (drop these tables or rebuild the node first); nothing was changed",
            held.join(", ")
        ))
        .into());
    }
    Ok(())
}

/// What `dr reseed --dry-run` prints: the refusals are checked, nothing is changed.
pub async fn plan(ctx: &DrContext, opts: &ReseedOptions) -> Result<Vec<String>> {
    let store = ctx.store().await?;
    let (state, _) = Flow::peek(store.as_ref()).await?;
    let rctx = roles(ctx, &state, &opts.new_primary)?;
    let (acting, node) = open_pair(&rctx, "dr reseed").await?;
    if node.flavour() == Flavour::TiDb {
        super::tidb_roles::refuse_earlier_feed(&rctx, &state).await?;
    }
    let mut conn = node.connect().await?;
    refuse_occupied(&rctx, &mut conn, node.flavour()).await?;
    conn.close().await;
    if node.flavour() == Flavour::TiDb {
        return Ok(super::tidb_roles::reseed_plan(&rctx, &acting, &node));
    }
    let src = ReplicationSource::from_context(&rctx)?;
    Ok(vec![
        format!(
            "would take a full backup of the acting primary '{}' ({}:{}) into {} (a backup of \
             its own; the flow's first backup stays recorded)",
            acting.name(),
            rctx.primary.host,
            rctx.primary.port,
            rctx.backup_uri
        ),
        format!(
            "would restore it onto the new node '{}' ({}:{}, empty now), set gtid_slave_pos to \
             the backup's GTID and read_only = 1",
            node.name(),
            rctx.secondary.host,
            rctx.secondary.port
        ),
        format!(
            "would start replication on '{}' from {} as '{}' after the backup's GTID \
             (MASTER_USE_GTID = slave_pos) while writes go on",
            node.name(),
            src.address(),
            src.user
        ),
        format!(
            "then gate 4: '{}' against '{}' at one GTID fence; report in {}",
            node.name(),
            acting.name(),
            ctx.step_dir(RESEED_DIR).display()
        ),
    ])
}

/// Run `dr reseed` under the flow's lock.
pub async fn run(ctx: &DrContext, opts: &ReseedOptions) -> Result<ReseedOutcome> {
    let store = ctx.store().await?;
    Flow::with_lock(
        store,
        &ctx.output_dir,
        "dr reseed",
        async |flow: &mut Flow| {
            let rctx = roles(ctx, &flow.state, &opts.new_primary)?;
            if let Some(done) = flow.state.step(StepName::Reseed) {
                if done.status == StepStatus::Done && !opts.again {
                    return Err(DrError::Precondition(format!(
                        "the reseed of '{}' already ran ({}); pass --again to reseed again",
                        done.node.as_deref().unwrap_or("?"),
                        done.ended.as_deref().unwrap_or("?")
                    ))
                    .into());
                }
            }
            let (acting, node) = open_pair(&rctx, "dr reseed").await?;
            if node.flavour() == Flavour::TiDb {
                super::tidb_roles::refuse_earlier_feed(&rctx, &flow.state).await?;
            }
            let mut conn = node.connect().await?;
            refuse_occupied(&rctx, &mut conn, node.flavour()).await?;
            let src = match node.flavour() {
                Flavour::TiDb => None,
                _ => Some(ReplicationSource::from_context(&rctx)?),
            };
            let mut record = StepRecord::started_now();
            record.node = Some(node.name().to_string());
            record.source = src.as_ref().map(|s| s.address());
            flow.set(StepName::Reseed, record.clone()).await?;
            let work = async {
                match &src {
                    Some(src) => {
                        reseed(&rctx, flow, &acting, &node, &mut conn, src, &mut record).await
                    }
                    None => {
                        super::tidb_roles::reseed(&rctx, flow, &acting, &node, &mut record).await
                    }
                }
            };
            let result = ctx
                .interrupt
                .interruptible(work)
                .await
                .unwrap_or_else(|signal| Err(signal.into()));
            conn.close().await;
            match result {
                Ok(outcome) => {
                    record.gate = Some(gate_record(&outcome.gate, RESEED_DIR));
                    record.end(status_after(&outcome.gate));
                    flow.set(StepName::Reseed, record).await?;
                    Ok(outcome)
                }
                Err(e) => {
                    record.end_with_error(&e);
                    flow.set(StepName::Reseed, record).await?;
                    Err(e)
                }
            }
        },
    )
    .await
}

/// Steps 2 to 5; `record` gets the backup as soon as it exists.
async fn reseed(
    rctx: &DrContext,
    flow: &mut Flow,
    acting: &Source,
    node: &Source,
    conn: &mut Conn,
    src: &ReplicationSource,
    record: &mut StepRecord,
) -> Result<ReseedOutcome> {
    let started = Instant::now();
    let store = flow.store().clone();
    let id = manifest::new_id();
    let manifest = match backup::backup_mysql(rctx, store.clone(), acting, &id).await {
        Ok((m, _)) => m,
        Err(e) => {
            // Nothing of a failed backup is kept: it has no manifest and never will.
            let _ = manifest::remove_incomplete(store.as_ref(), &id).await;
            return Err(e);
        }
    };
    tracing::info!(backup = %manifest.id, point = %manifest.point, "dr reseed: backup taken");
    record.backup_id = Some(manifest.id.clone());
    record.point = Some(manifest.point.clone());
    flow.set(StepName::Reseed, record.clone()).await?;
    let super::flow::Point::Gtid { gtid, .. } = &manifest.point else {
        return Err(Error::Internal(
            "a MariaDB backup without a GTID point".into(),
        ));
    };

    let loading = Instant::now();
    // Read-only before its tables exist: an application that finds the node must not
    // write there (the load connects with the privilege that set it, which bypasses it).
    conn.exec("SET GLOBAL read_only = 1").await?;
    restore::load(rctx, store.as_ref(), &manifest, node, false).await?;
    let restore_time = loading.elapsed();
    tracing::info!(
        secs = restore_time.as_secs_f64(),
        "dr reseed: restored onto '{}'",
        node.name()
    );

    if let Err(e) = replicate::start(conn, Flavour::MariaDb, src, gtid).await {
        // A half-started replica would make the retry refuse it as "already replicating".
        let _ = conn.exec("STOP SLAVE").await;
        return Err(e);
    }
    tracing::info!(
        "dr reseed: '{}' replicates from {}",
        node.name(),
        src.address()
    );

    let gate = verify::fenced_check(rctx, RESEED_DIR).await?;
    Ok(ReseedOutcome {
        acting: acting.name().to_string(),
        node: node.name().to_string(),
        manifest,
        restore_time,
        source: src.address(),
        gate,
        elapsed: started.elapsed(),
    })
}
