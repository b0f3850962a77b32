//! `syncgate dr switchover`: the planned role change after a reseed. The node the reseed
//! rebuilt becomes the primary, the acting primary its replica, with one short write
//! freeze:
//!
//! 1. refusals first: the flow has a finished reseed (gate 4 equal); its node replicates
//!    from the acting primary;
//! 2. freeze: `SET GLOBAL read_only = ON` on the acting primary, its `gtid_binlog_pos` G read
//!    (connections with SUPER or READ ONLY ADMIN are not stopped by `read_only`: G is read
//!    again before the switch, and a moved G refuses);
//! 3. the new node applies everything up to G (`MASTER_GTID_WAIT`, with a timeout: then
//!    writes are unfrozen, nothing switched, exit 2);
//! 4. the gate at exactly G ([`verify::fenced_check`]: the fence is G since nothing
//!    commits); not equal → writes unfrozen, nothing switched, exit 1;
//! 5. the new node stops replicating (`STOP SLAVE`, `RESET SLAVE ALL`) and is made
//!    writable (`read_only = 0`): the freeze ends here and is reported;
//! 6. the old acting primary, still `read_only`, replicates from the new primary after G
//!    (`gtid_slave_pos` = G, `CHANGE MASTER … MASTER_USE_GTID = slave_pos`,
//!    [`replicate::start`]).
//!
//! The switch is recorded in the flow state ([`RoleChange`]): `dr archive` follows it to
//! the new primary's binlog once it has archived everything up to G. On TiDB the freeze is
//! `tidb_super_read_only` and the direction is reversed with changefeeds
//! ([`super::tidb_roles`]).

use std::time::{Duration, Instant};

use serde::Serialize;

use super::delta_gate::{self, BinlogStart};
use super::flow::{Flow, Point, RoleChange, StepName, StepRecord, StepStatus};
use super::replicate::{self, ReplicaStatus, ReplicationSource};
use super::reseed::{gate_record, status_after};
use super::{verify, DrContext, DrError};
use crate::db::{cell_str, Conn, Flavour, Source};
use crate::error::{Error, Result};
use crate::exit::EQUAL;
use crate::report::RunReport;

/// The step directory of the switchover's gate.
pub const SWITCHOVER_DIR: &str = "switchover";
/// The step directory of the gate before the freeze.
pub const BEFORE_FREEZE_DIR: &str = "switchover-before-freeze";

/// Options of `dr switchover`.
#[derive(Debug, Clone)]
pub struct SwitchoverOptions {
    /// How long the new node may take to apply everything up to the frozen point.
    pub catch_up_timeout: Duration,
    /// Run although the flow records a finished switchover.
    pub again: bool,
    /// Compare everything inside the freeze, with no gate before it (the freeze then
    /// grows with the data).
    pub full_gate: bool,
}

impl Default for SwitchoverOptions {
    fn default() -> Self {
        SwitchoverOptions {
            catch_up_timeout: Duration::from_secs(30),
            again: false,
            full_gate: false,
        }
    }
}

/// What `dr switchover` did.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchoverReport {
    /// The acting primary before, a replica of the new primary after (when switched).
    pub old_primary: String,
    pub new_primary: String,
    /// The frozen point: the old primary's `gtid_binlog_pos` under `read_only`.
    pub frozen_at: String,
    /// `equal`, `different` or `error`.
    pub gate: String,
    pub compared_rows: u64,
    pub differing_rows: u64,
    /// The roles were changed.
    pub switched: bool,
    /// Milliseconds writes were frozen: from `read_only = 1` on the old primary to
    /// `read_only = 0` on the new one (or back on the old one when nothing switched).
    pub freeze_ms: u64,
    /// Of which: the new node applying up to the frozen point, and the gate.
    pub catch_up_ms: u64,
    pub gate_ms: u64,
    /// The gate before the freeze (every selected row, writes going on): its result and
    /// milliseconds; None with `--full-gate`.
    pub gate_before: Option<String>,
    pub gate_before_ms: Option<u64>,
    /// What the gate inside the freeze compared.
    pub gate_scope: String,
    pub notes: Vec<String>,
}

impl SwitchoverReport {
    pub fn exit_code(&self) -> i32 {
        match self.gate.as_str() {
            "equal" if self.switched => crate::exit::EQUAL,
            "different" => crate::exit::DIFFERENT,
            _ => crate::exit::ERROR,
        }
    }
}

/// The roles after the flow's reseed: (acting primary, new node).
fn roles(ctx: &DrContext, state: &super::flow::FlowState) -> Result<DrContext> {
    let acting = super::reseed::acting_primary(ctx, state)?;
    let node = match state.step(StepName::Reseed) {
        Some(r) if r.status == StepStatus::Done => r.node.clone().unwrap_or_default(),
        Some(r) => {
            return Err(DrError::Precondition(format!(
                "the flow's reseed is not done (it is {:?}); `dr reseed` must end with gate 4 \
                 equal before a switchover",
                r.status
            ))
            .into())
        }
        None => {
            return Err(DrError::Precondition(
                "no reseed in this flow: `dr reseed --new-primary NAME` first builds the node \
                 that becomes the primary"
                    .into(),
            )
            .into())
        }
    };
    ctx.with_roles(&acting, &node)
}

async fn gtid_binlog_pos(conn: &mut Conn) -> Result<String> {
    Ok(conn
        .first("SELECT @@GLOBAL.gtid_binlog_pos")
        .await?
        .and_then(|r| cell_str(&r, 0))
        .unwrap_or_default())
}

/// Both nodes open (MariaDB or TiDB, one flavour); on MariaDB the new node must replicate.
async fn open(rctx: &DrContext) -> Result<(Source, Source, Option<ReplicaStatus>)> {
    let (old, new) = super::reseed::open_pair(rctx, "dr switchover").await?;
    if new.flavour() == Flavour::TiDb {
        return Ok((old, new, None));
    }
    let mut c = new.connect().await?;
    let status = ReplicaStatus::read(&mut c, Flavour::MariaDb).await?;
    c.close().await;
    let status = status.filter(|s| s.running()).ok_or_else(|| {
        DrError::Precondition(format!(
            "the new node '{}' does not replicate from the acting primary (SHOW SLAVE STATUS: \
             both threads must run); run `dr reseed --again` or start its replication",
            new.name()
        ))
    })?;
    Ok((old, new, Some(status)))
}

/// The replication source a replica of the new primary connects to: its data source's
/// address; `replication-user`/`-password` when set, else its data source's own.
fn new_primary_source(rctx: &DrContext) -> ReplicationSource {
    ReplicationSource {
        host: rctx.secondary.host.clone(),
        port: rctx.secondary.port,
        user: rctx
            .dr
            .replication_user
            .clone()
            .unwrap_or_else(|| rctx.secondary.user.clone()),
        password: rctx
            .dr
            .replication_password
            .clone()
            .unwrap_or_else(|| rctx.secondary.password.clone()),
    }
}

/// What `dr switchover --dry-run` prints: refusals checked, nothing changed.
pub async fn plan(ctx: &DrContext, opts: &SwitchoverOptions) -> Result<Vec<String>> {
    let store = ctx.store().await?;
    let (state, _) = Flow::peek(store.as_ref()).await?;
    let rctx = roles(ctx, &state)?;
    let (old, new, status) = open(&rctx).await?;
    let Some(status) = status else {
        return super::tidb_roles::switchover_plan(ctx, &rctx, &state, opts).await;
    };
    let src = new_primary_source(&rctx);
    Ok(vec![
        format!(
            "would freeze writes on the acting primary '{}': SET GLOBAL read_only = 1 \
             (connections with SUPER or READ ONLY ADMIN are not stopped by it)",
            old.name()
        ),
        format!(
            "would wait up to {} s for '{}' (replicating from {} now) to apply everything, then \
             run the gate at that frozen point; not equal → writes unfrozen, nothing switched",
            opts.catch_up_timeout.as_secs(),
            new.name(),
            status.source
        ),
        format!(
            "would make '{}' the primary: STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0",
            new.name()
        ),
        format!(
            "would make '{}' its replica (read_only stays 1): gtid_slave_pos = the frozen point, \
             CHANGE MASTER TO {} as '{}', MASTER_USE_GTID = slave_pos",
            old.name(),
            src.address(),
            src.user
        ),
    ])
}

/// Run `dr switchover` under the flow's lock. A gate that finds differences is a report
/// (exit 1, nothing switched), not an error.
pub async fn run(ctx: &DrContext, opts: &SwitchoverOptions) -> Result<SwitchoverReport> {
    let store = ctx.store().await?;
    Flow::with_lock(
        store,
        &ctx.output_dir,
        "dr switchover",
        async |flow: &mut Flow| {
            if let Some(done) = flow.state.step(StepName::Switchover) {
                if done.status == StepStatus::Done && !opts.again {
                    return Err(DrError::Precondition(format!(
                        "the switchover to '{}' already ran ({}); pass --again to run it again",
                        done.node.as_deref().unwrap_or("?"),
                        done.ended.as_deref().unwrap_or("?")
                    ))
                    .into());
                }
            }
            let rctx = roles(ctx, &flow.state)?;
            let (old, new, _) = open(&rctx).await?;
            let mut record = StepRecord::started_now();
            record.node = Some(new.name().to_string());
            flow.set(StepName::Switchover, record.clone()).await?;
            if new.flavour() == Flavour::TiDb {
                let switched =
                    super::tidb_roles::switchover(ctx, &rctx, flow, &old, &new, opts, &mut record)
                        .await;
                return record_end(flow, record, switched).await;
            }
            let mut oc = old.connect().await?;
            let before = match opts.full_gate {
                true => None,
                false => Some(Before::run(&rctx, &mut oc, &new, opts).await?),
            };
            if let Some(b) = before.as_ref().filter(|b| b.report.exit_code() != EQUAL) {
                let report = refused_before_freeze(&rctx, &old, &new, b);
                record.gate = Some(gate_record(&b.report, BEFORE_FREEZE_DIR));
                record.end(status_after(&b.report));
                flow.set(StepName::Switchover, record).await?;
                return Ok(report);
            }
            let frozen = Frozen::freeze(&old, oc, "read_only").await?;
            // Not dropped on a signal: dropping it after the switch could leave both nodes
            // writable. The catch-up wait and the gate answer SIGINT/SIGTERM themselves (an
            // error that thaws).
            let result = match switch(&rctx, &old, &new, frozen, opts, before.as_ref()).await {
                Ok(out) => Ok(out),
                Err((e, Stopped::Frozen(frozen))) => {
                    // Thawed only while nothing is switched.
                    frozen.thaw().await;
                    Err(e)
                }
                Err((e, Stopped::Switched(g))) => {
                    // Only the old primary's replication failed: the writes moved.
                    flow.state.acting_primary = Some(moved(&old, &new, &g));
                    Err(e)
                }
            };
            let result = match result {
                Ok((report, gate, frozen)) => {
                    if report.switched {
                        flow.state.acting_primary = Some(moved(&old, &new, &report.frozen_at));
                    } else {
                        frozen.thaw().await;
                    }
                    record.point = Some(frozen_point(&report.frozen_at));
                    record.freeze_ms = Some(report.freeze_ms);
                    record.source = Some(new_primary_source(&rctx).address());
                    Ok((report, gate))
                }
                Err(e) => Err(e),
            };
            record_end(flow, record, result).await
        },
    )
    .await
}

/// Record how the switchover ended (its gate, status or error) and pass the result on.
async fn record_end(
    flow: &mut Flow,
    mut record: StepRecord,
    result: Result<(SwitchoverReport, Option<RunReport>)>,
) -> Result<SwitchoverReport> {
    match result {
        Ok((report, gate)) => {
            if let Some(g) = &gate {
                record.gate = Some(gate_record(g, SWITCHOVER_DIR));
            }
            record.end(end_status(&report, gate.as_ref()));
            flow.set(StepName::Switchover, record).await?;
            Ok(report)
        }
        Err(e) => {
            record.end_with_error(&e);
            flow.set(StepName::Switchover, record).await?;
            Err(e)
        }
    }
}

/// The step's status: its gate's, but never done when nothing was switched.
fn end_status(report: &SwitchoverReport, gate: Option<&RunReport>) -> StepStatus {
    match gate {
        Some(g) if report.switched => status_after(g),
        Some(g) => match status_after(g) {
            StepStatus::Done => StepStatus::Failed,
            s => s,
        },
        None => StepStatus::Failed,
    }
}

/// The gate before the freeze: every selected row at a GTID fence while writes go on,
/// and the old primary's binlog position read before it (where the gate inside the freeze
/// starts listing what was written since).
struct Before {
    start: Option<BinlogStart>,
    report: RunReport,
    ms: u64,
}

impl Before {
    /// The new node must keep up first: the gate's fence waits for it, and a node that
    /// cannot apply the acting primary's writes now would not catch up in the freeze
    /// either.
    async fn run(
        rctx: &DrContext,
        old: &mut Conn,
        new: &Source,
        opts: &SwitchoverOptions,
    ) -> Result<Before> {
        let start = BinlogStart::read(old).await?;
        let now = gtid_binlog_pos(old).await?;
        let mut nc = new.connect().await?;
        let wait = gtid_wait_sql(&now, opts.catch_up_timeout);
        let waited = rctx
            .interrupt
            .interruptible(nc.first(&wait))
            .await
            .map_err(|signal| Error::Interrupted { signal })??
            .and_then(|r| cell_str(&r, 0));
        nc.close().await;
        if waited.as_deref() != Some("0") {
            return Err(DrError::Precondition(format!(
                "'{}' did not apply everything up to the acting primary's position {now} \
                 within {} s (replication lag or stopped replication); nothing was frozen or \
                 switched",
                new.name(),
                opts.catch_up_timeout.as_secs()
            ))
            .into());
        }
        let t = Instant::now();
        let report = verify::fenced_check(rctx, BEFORE_FREEZE_DIR).await?;
        Ok(Before {
            start,
            report,
            ms: t.elapsed().as_millis() as u64,
        })
    }
}

/// The report of a switchover whose gate before the freeze found differences: nothing
/// frozen, nothing switched.
fn refused_before_freeze(
    rctx: &DrContext,
    old: &Source,
    new: &Source,
    b: &Before,
) -> SwitchoverReport {
    let differing = b.report.differing_rows();
    SwitchoverReport {
        old_primary: old.name().to_string(),
        new_primary: new.name().to_string(),
        frozen_at: String::new(),
        gate: b.report.result.as_str().to_string(),
        compared_rows: b.report.tables.iter().map(|t| t.rows_upstream).sum(),
        differing_rows: differing,
        switched: false,
        freeze_ms: 0,
        catch_up_ms: 0,
        gate_ms: 0,
        gate_before: Some(b.report.result.as_str().to_string()),
        gate_before_ms: Some(b.ms),
        gate_scope: "not run".into(),
        notes: vec![format!(
            "the gate before the freeze found {differing} differing row(s) (report and fix SQL \
             in {}); nothing was frozen or switched",
            rctx.step_dir(BEFORE_FREEZE_DIR).display()
        )],
    }
}

/// The writes moved from `old` to `new` at the frozen point `g`.
fn moved(old: &Source, new: &Source, g: &str) -> RoleChange {
    RoleChange {
        node: new.name().to_string(),
        from: old.name().to_string(),
        since: frozen_point(g),
        by: StepName::Switchover,
    }
}

/// Wait on a replica until it has applied GTID position `g`; the answer is 0 when it has,
/// -1 on timeout.
fn gtid_wait_sql(g: &str, timeout: Duration) -> String {
    format!(
        "SELECT MASTER_GTID_WAIT({}, {})",
        crate::sql::quote_str(g),
        timeout.as_secs_f64()
    )
}

/// The frozen point G as a flow point (no binlog coordinates: G names it).
fn frozen_point(g: &str) -> Point {
    Point::Gtid {
        gtid: g.to_string(),
        binlog_file: String::new(),
        binlog_pos: 0,
    }
}

/// A boolean global variable (`1`/`ON`) of the server.
pub(super) async fn global_flag(conn: &mut Conn, name: &str) -> Result<bool> {
    Ok(conn
        .first(&format!("SELECT @@GLOBAL.{name}"))
        .await?
        .and_then(|r| cell_str(&r, 0))
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("on")))
}

/// The old primary under a read-only flag (`read_only`; TiDB: `tidb_super_read_only`), and
/// since when.
pub(super) struct Frozen {
    pub(super) conn: Conn,
    pub(super) since: Instant,
    old: String,
    flag: &'static str,
    /// The flag was on before the freeze: thawing leaves it on.
    was_on: bool,
}

impl Frozen {
    pub(super) async fn freeze(old: &Source, mut conn: Conn, flag: &'static str) -> Result<Frozen> {
        let was_on = global_flag(&mut conn, flag).await?;
        conn.exec(&format!("SET GLOBAL {flag} = ON")).await?;
        tracing::info!("dr switchover: writes frozen on '{}'", old.name());
        Ok(Frozen {
            conn,
            since: Instant::now(),
            old: old.name().to_string(),
            flag,
            was_on,
        })
    }

    /// Give the old primary its writes back (its flag as it was before).
    pub(super) async fn thaw(mut self) {
        if self.was_on {
            return;
        }
        let flag = self.flag;
        match self.conn.exec(&format!("SET GLOBAL {flag} = OFF")).await {
            Ok(()) => tracing::info!(
                "dr switchover: writes unfrozen on '{}' after {} ms; nothing switched",
                self.old,
                self.since.elapsed().as_millis()
            ),
            Err(e) => tracing::error!(
                "dr switchover: could not unfreeze '{}' ({e}); run SET GLOBAL {flag} = OFF on it",
                self.old
            ),
        }
        self.conn.close().await;
    }
}

type SwitchError = (Error, Stopped);

/// Where a switchover that ended in an error stopped.
enum Stopped {
    /// Before the switch: writes are still frozen (to thaw).
    Frozen(Frozen),
    /// After it: the new node is the primary since this frozen point.
    Switched(String),
}

/// Steps 2 to 6 with the old primary frozen. Errors come back with the freeze (to thaw)
/// while nothing is switched; after the switch an error is only the old primary's
/// replication, and the freeze is over.
async fn switch(
    rctx: &DrContext,
    old: &Source,
    new: &Source,
    mut frozen: Frozen,
    opts: &SwitchoverOptions,
    before: Option<&Before>,
) -> std::result::Result<(SwitchoverReport, Option<RunReport>, Frozen), SwitchError> {
    macro_rules! try_frozen {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => return Err((Error::from(e), Stopped::Frozen(frozen))),
            }
        };
    }
    let g = try_frozen!(gtid_binlog_pos(&mut frozen.conn).await);
    let mut notes = Vec::new();
    let mut nc = try_frozen!(new.connect().await);
    let wait = gtid_wait_sql(&g, opts.catch_up_timeout);
    // Ctrl-C / SIGTERM while writes are frozen thaws at once, not after the timeout.
    let waited = tokio::select! {
        r = nc.first(&wait) => try_frozen!(r).and_then(|r| cell_str(&r, 0)),
        signal = rctx.interrupt.wait() => {
            return Err((Error::Interrupted { signal }, Stopped::Frozen(frozen)));
        }
    };
    let catch_up = frozen.since.elapsed();
    if waited.as_deref() != Some("0") {
        return Err((
            DrError::Precondition(format!(
                "'{}' did not apply everything up to the frozen point {g} within {} s \
                 (replication lag or stopped replication); writes are unfrozen on '{}', \
                 nothing was switched",
                new.name(),
                opts.catch_up_timeout.as_secs(),
                old.name()
            ))
            .into(),
            Stopped::Frozen(frozen),
        ));
    }
    let gate_started = Instant::now();
    let (gate, scope, nothing_written) = match before {
        Some(Before {
            start: Some(start),
            report,
            ..
        }) => {
            let (gate, scope) =
                try_frozen!(delta_gate::gate(rctx, start, Some(report), SWITCHOVER_DIR).await);
            // Nothing written since: the gate before the freeze is the verdict, and
            // nothing was compared inside it.
            let nothing = scope.whole.is_none() && scope.tables == 0;
            (gate, scope.describe(), nothing)
        }
        _ => (
            try_frozen!(verify::fenced_check(rctx, SWITCHOVER_DIR).await),
            "every selected row".to_string(),
            false,
        ),
    };
    let gate_time = gate_started.elapsed();
    // read_only does not stop SUPER / READ ONLY ADMIN connections: a moved point means the
    // gate did not see what the new primary would start from.
    let g_now = try_frozen!(gtid_binlog_pos(&mut frozen.conn).await);
    if g_now != g {
        return Err((
            DrError::Precondition(format!(
                "writes went on during the freeze on '{}' ({g} → {g_now}): a connection with \
                 SUPER or READ ONLY ADMIN is not stopped by read_only; nothing was switched, \
                 writes are unfrozen. Stop those writers and run the switchover again",
                old.name()
            ))
            .into(),
            Stopped::Frozen(frozen),
        ));
    }
    let differing = gate.differing_rows();
    let mut report = SwitchoverReport {
        old_primary: old.name().to_string(),
        new_primary: new.name().to_string(),
        frozen_at: g.clone(),
        gate: gate.result.as_str().to_string(),
        compared_rows: match nothing_written {
            true => 0,
            false => gate.tables.iter().map(|t| t.rows_upstream).sum(),
        },
        differing_rows: differing,
        switched: false,
        freeze_ms: 0,
        catch_up_ms: catch_up.as_millis() as u64,
        gate_ms: gate_time.as_millis() as u64,
        gate_before: before.map(|b| b.report.result.as_str().to_string()),
        gate_before_ms: before.map(|b| b.ms),
        gate_scope: scope,
        notes: Vec::new(),
    };
    if gate.exit_code() != EQUAL {
        report.freeze_ms = frozen.since.elapsed().as_millis() as u64;
        report.notes.push(format!(
            "the gate found {differing} differing row(s) (report and fix SQL in {}); nothing was \
             switched and writes are unfrozen on '{}'",
            rctx.step_dir(SWITCHOVER_DIR).display(),
            old.name()
        ));
        nc.close().await;
        return Ok((report, Some(gate), frozen));
    }

    // The switch: from here on the new node is the primary.
    for sql in ["STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only = 0"] {
        try_frozen!(nc.exec(sql).await);
    }
    report.switched = true;
    report.freeze_ms = frozen.since.elapsed().as_millis() as u64;
    tracing::info!(
        ms = report.freeze_ms,
        "dr switchover: '{}' is the primary and writable",
        new.name()
    );
    nc.close().await;

    let src = new_primary_source(rctx);
    if let Err(e) = replicate::start(&mut frozen.conn, Flavour::MariaDb, &src, &g).await {
        notes.push(format!(
            "'{}' is the primary; '{}' could not be made its replica ({e}): it stays read-only; \
             fix the cause and start its replication from GTID {g}",
            new.name(),
            old.name()
        ));
        report.notes.extend(notes);
        // Switched: the old primary must not take writes again.
        return Err((
            DrError::Replication {
                errno: 0,
                message: report.notes.join("; "),
            }
            .into(),
            Stopped::Switched(g),
        ));
    }
    notes.push(format!(
        "'{}' replicates from '{}' ({}) after {g} and stays read_only",
        old.name(),
        new.name(),
        src.address()
    ));
    notes.push(format!(
        "the config's [dr] roles are now: primary = \"{}\", secondary = \"{}\" (edit [dr] \
         before the next cycle); a running `dr archive` goes on with the new primary's \
         binlog once it holds everything up to {g}",
        new.name(),
        old.name()
    ));
    report.notes.extend(notes);
    Ok((report, Some(gate), frozen))
}

/// The report as the command prints it.
pub fn render_text(r: &SwitchoverReport) -> String {
    let mut s = String::new();
    if r.switched {
        s.push_str(&format!(
            "switchover: '{}' is the primary, '{}' its replica, at {}\n",
            r.new_primary, r.old_primary, r.frozen_at
        ));
    } else {
        s.push_str(&format!(
            "switchover: nothing switched; '{}' stays the primary\n",
            r.old_primary
        ));
    }
    if let (Some(result), Some(ms)) = (&r.gate_before, r.gate_before_ms) {
        s.push_str(&format!(
            "gate before the freeze (every selected row, writes going on): {result} ({ms} ms)\n"
        ));
    }
    if r.frozen_at.is_empty() {
        s.push_str(&format!(
            "{} rows compared, {} differing; writes were not frozen\n",
            r.compared_rows, r.differing_rows
        ));
    } else {
        s.push_str(&format!(
            "gate at the frozen point {}: {} ({} rows compared, {} differing: {})\n",
            r.frozen_at, r.gate, r.compared_rows, r.differing_rows, r.gate_scope
        ));
        s.push_str(&format!(
            "write freeze: {} ms (catch-up {} ms, gate {} ms)\n",
            r.freeze_ms, r.catch_up_ms, r.gate_ms
        ));
    }
    for n in &r.notes {
        s.push_str(&format!("note: {n}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(gate: &str, switched: bool) -> SwitchoverReport {
        SwitchoverReport {
            old_primary: "secondary".into(),
            new_primary: "rebuilt".into(),
            frozen_at: "0-2-40".into(),
            gate: gate.into(),
            compared_rows: 10,
            differing_rows: u64::from(gate == "different"),
            switched,
            freeze_ms: 240,
            catch_up_ms: 3,
            gate_ms: 200,
            gate_before: Some("equal".into()),
            gate_before_ms: Some(4000),
            gate_scope: "the 12 row(s) written to 2 table(s) since the gate before the freeze"
                .into(),
            notes: vec![],
        }
    }

    #[test]
    fn exit_codes_follow_the_gate_and_the_switch() {
        assert_eq!(report("equal", true).exit_code(), crate::exit::EQUAL);
        assert_eq!(
            report("different", false).exit_code(),
            crate::exit::DIFFERENT
        );
        assert_eq!(report("error", false).exit_code(), crate::exit::ERROR);
        // Equal but not switched is no success.
        assert_eq!(report("equal", false).exit_code(), crate::exit::ERROR);
    }

    #[test]
    fn the_text_names_the_roles_and_the_freeze() {
        let t = render_text(&report("equal", true));
        assert!(
            t.contains("'rebuilt' is the primary, 'secondary' its replica"),
            "{t}"
        );
        assert!(
            t.contains("write freeze: 240 ms (catch-up 3 ms, gate 200 ms)"),
            "{t}"
        );
        assert!(t.contains("gate before the freeze"), "{t}");
        assert!(
            t.contains("1 differing") || t.contains("0 differing: the 12 row(s)"),
            "{t}"
        );
        let t = render_text(&report("different", false));
        assert!(
            t.contains("nothing switched; 'secondary' stays the primary"),
            "{t}"
        );
    }
}
