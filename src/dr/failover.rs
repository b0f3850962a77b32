//! `syncgate dr failover`: the primary is lost; the secondary is brought to the end of the
//! redo (the binlog archive of `dr archive`) and made the acting primary, then gate 3.
//!
//! Order, each step only after the one before succeeded:
//!
//! 1. checks that change nothing: the secondary answers; the archive has segments; the
//!    segments after the secondary's GTID position form a contiguous run in every domain
//!    ([`archive::plan`]) and every one of them is stored at its indexed size
//!    ([`archive::check_stored`]; only the last may be shorter: truncated);
//! 2. replication on the secondary is stopped (`STOP SLAVE`) and its position read again;
//! 3. the segments after that position are streamed from storage, in order, into
//!    `mariadb-binlog --start-position=<position> -` and the `mariadb` client
//!    ([`archive::replay_with`], the one replay); a truncated last segment is applied up to
//!    its last complete transaction;
//! 4. the GTID state is set so the node can serve as a source (`gtid_slave_pos` = the
//!    position replayed to, dr-interfaces B3.3), the replica configuration is removed
//!    (`RESET SLAVE ALL`) and the node made writable (`read_only = 0`);
//! 5. gate 3 (a): the position the server reports (`gtid_binlog_pos` joined with where
//!    replication stopped) must equal the archive's last complete transaction.
//!
//! The report gives the recovery point (commit time of the last recovered transaction),
//! the data lost when the old primary still answers, and the time from the start to a
//! writable secondary. Gate 3 (b) (`dr::reconstruct`, skipped with `--no-data-gate`)
//! compares the data with an independent reconstruction before the node is made writable:
//! a difference leaves it read-only (exit 1).

use std::time::{Duration, Instant};

use serde::Serialize;

use super::archive::{self, IndexEntry, ReplayOptions, Truncation};
use super::binlog::{Gtid, GtidPos};
use super::flow::{
    now_rfc3339, Flow, GateRecord, Point, RoleChange, StepName, StepRecord, StepStatus,
};
use super::{DrContext, DrError};
use crate::db::{cell_str, cell_u64, Conn, Flavour, Source};
use crate::error::{Error, Result};

/// The step directory of `dr failover` (its report).
pub const FAILOVER_DIR: &str = "failover";

/// How long the old primary is given to answer for the data-lost figure.
const PRIMARY_PROBE: Duration = Duration::from_secs(3);

/// Options of `dr failover`.
#[derive(Debug, Clone, Default)]
pub struct FailoverOptions {
    /// Run although the flow records a finished failover.
    pub again: bool,
    /// Skip gate 3 (b), the compare with a reconstruction from the backup and the archive
    /// (it runs before the node is made writable, so it adds to the time to writable).
    pub no_data_gate: bool,
}

/// Gate 3 (a): where the secondary is against where the redo ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PositionGate {
    /// `equal` or `different`.
    pub result: String,
    /// The archive's last complete transaction per domain (joined with the secondary's
    /// position where the secondary was already further).
    pub expected: String,
    /// The secondary's position as the server reports it after the apply.
    pub actual: String,
}

/// What `dr failover` did and found.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    pub secondary: String,
    /// RFC 3339 UTC.
    pub started: String,
    /// The secondary's position when replication was stopped.
    pub start_position: String,
    /// The archive's end: its last complete transaction per domain.
    pub archive_end: String,
    pub applied_segments: usize,
    pub applied_transactions: u64,
    /// The secondary's GTID position after the apply (its `gtid_slave_pos`).
    pub position: String,
    /// The last recovered transaction, and its commit time (the recovery point).
    pub last_recovered: Option<String>,
    pub recovery_point: Option<String>,
    pub recovery_point_unix: Option<u64>,
    /// The old primary's last position, when it still answered.
    pub primary_position: Option<String>,
    /// Transactions the old primary has and the secondary does not (None: unknown).
    pub lost_transactions: Option<u64>,
    /// Milliseconds from the start of the failover to `read_only = 0`; `None` when gate 3
    /// (b) found differences and the node was left read-only.
    pub writable_after_ms: Option<u64>,
    /// Where a replica of the new acting primary starts (its binlog, when it has one).
    pub source_binlog: Option<String>,
    pub truncated: Option<Truncation>,
    pub gate_position: PositionGate,
    /// Gate 3 (b): the data against an independent reconstruction, in words.
    pub gate_data: String,
    /// Gate 3 (b)'s result: `equal`, `different`, or `None` when it did not run.
    pub gate_data_result: Option<String>,
    /// The AUTO_INCREMENT counters checked before the node was made writable, and any raised
    /// past their table's largest id.
    pub gate_counters: String,
    pub notes: Vec<String>,
}

impl FailoverReport {
    pub fn equal(&self) -> bool {
        self.gate_position.result == "equal"
            && self.gate_data_result.as_deref() != Some("different")
    }
}

/// What the checks found (nothing changed yet).
#[derive(Debug)]
struct Checked {
    position: GtidPos,
    index: Vec<IndexEntry>,
    todo: Vec<IndexEntry>,
    truncated_last: Option<u64>,
}

async fn gtid_var(conn: &mut Conn, var: &str) -> Result<GtidPos> {
    let s = conn
        .first(&format!("SELECT @@GLOBAL.{var}"))
        .await?
        .and_then(|r| cell_str(&r, 0))
        .unwrap_or_default();
    Ok(GtidPos::parse(&s).map_err(DrError::Precondition)?)
}

/// `a` joined with `b`: per domain the later GTID.
fn join(a: &GtidPos, b: &GtidPos) -> GtidPos {
    let mut out = a.clone();
    for g in b.0.values() {
        out.advance(*g);
    }
    out
}

/// The checks of step 1, against the secondary's position now.
async fn check(ctx: &DrContext, conn: &mut Conn) -> Result<Checked> {
    let redo = archive::redo_store(ctx).await?;
    let index = archive::load_index(redo.as_ref()).await?;
    if index.is_empty() {
        return Err(DrError::Precondition(
            "the archive in redo-storage is empty: there is no redo to apply (was dr archive \
             running?); failover refused"
                .into(),
        )
        .into());
    }
    let position = gtid_var(conn, "gtid_slave_pos").await?;
    let todo = archive::plan(&index, &position)?;
    let truncated_last = archive::check_stored(redo.as_ref(), &todo, true).await?;
    Ok(Checked {
        position,
        index,
        todo,
        truncated_last,
    })
}

/// What `dr failover --dry-run` prints: the checks run, nothing changed.
pub async fn plan(ctx: &DrContext) -> Result<Vec<String>> {
    let (source, mut conn) = match open_secondary(ctx).await? {
        Ok(mariadb) => mariadb,
        Err(_tidb) => return super::tidb_failover::plan(ctx).await,
    };
    let c = check(ctx, &mut conn).await?;
    conn.close().await;
    let end = archive::archived_position(&c.index)?;
    let mut lines = vec![format!(
        "would stop replication on '{}' (at {} now) and apply {} archive segment(s) after it, \
         up to {end}",
        source.name(),
        c.position,
        c.todo.len()
    )];
    if let (Some(stored), Some(last)) = (c.truncated_last, c.todo.last()) {
        lines.push(format!(
            "the last segment {} is truncated ({stored} of {} bytes): it would be applied up to \
             its last complete transaction",
            last.segment, last.size
        ));
    }
    lines.push(
        "then check gate 3 (a) (position against the archive's end), set gtid_slave_pos to \
         the position replayed to, RESET SLAVE ALL, raise AUTO_INCREMENT counters at or below \
         their largest id, run gate 3 (b) (the data against the flow's backup restored into a \
         scratch server plus the archive replayed; skipped with --no-data-gate) and, when it \
         is equal, SET GLOBAL read_only = 0"
            .into(),
    );
    Ok(lines)
}

/// The secondary, with a connection when it is MariaDB; a TiDB one goes to
/// `dr::tidb_failover` as it is.
async fn open_secondary(ctx: &DrContext) -> Result<std::result::Result<(Source, Conn), Source>> {
    let source = Source::open(ctx.secondary.clone()).await?;
    match source.flavour() {
        Flavour::MariaDb => {}
        Flavour::TiDb => return Ok(Err(source)),
        Flavour::MySql => {
            return Err(DrError::NotBuilt {
                step: "dr failover",
                flavour: "MySQL",
            }
            .into())
        }
    }
    let conn = source.connect().await?;
    Ok(Ok((source, conn)))
}

/// Run `dr failover` under the flow's lock.
pub async fn run(ctx: &DrContext, opts: &FailoverOptions) -> Result<FailoverReport> {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let (source, mut conn) = match open_secondary(ctx).await? {
        Ok(mariadb) => mariadb,
        Err(tidb) => return super::tidb_failover::run(ctx, tidb, opts).await,
    };
    let store = ctx.store().await?;
    Flow::with_lock(
        store,
        &ctx.output_dir,
        "dr failover",
        async |flow: &mut Flow| {
            refuse_done(flow, opts)?;
            // Step 1: nothing is changed when a check fails.
            check(ctx, &mut conn).await?;
            let backup_id = flow
                .state
                .step(StepName::Backup)
                .filter(|b| b.status == StepStatus::Done)
                .and_then(|b| b.backup_id.clone());
            let backup = match opts.no_data_gate {
                true => None,
                false => Some(super::reconstruct::preflight(ctx, backup_id.as_deref()).await?),
            };
            let work = promote(
                ctx,
                (&source, &mut conn),
                backup.as_ref(),
                started,
                started_at.clone(),
            );
            record_step(ctx, flow, StepRecord::started_now(), work).await
        },
    )
    .await
}

/// A finished failover is not run again by accident.
pub(super) fn refuse_done(flow: &Flow, opts: &FailoverOptions) -> Result<()> {
    match flow.state.step(StepName::Failover) {
        Some(done) if done.status == StepStatus::Done && !opts.again => {
            Err(DrError::Precondition(format!(
                "the failover already ran ({}); the secondary is the acting primary. Pass \
                 --again to run it again",
                done.ended.as_deref().unwrap_or("?")
            ))
            .into())
        }
        _ => Ok(()),
    }
}

/// The failover step around `work` (interruptible, after the checks): recorded as running,
/// then done, gate-failed or failed, with its point, gate and report.
pub(super) async fn record_step(
    ctx: &DrContext,
    flow: &mut Flow,
    mut record: StepRecord,
    work: impl std::future::Future<Output = Result<(FailoverReport, Point)>>,
) -> Result<FailoverReport> {
    flow.set(StepName::Failover, record.clone()).await?;
    let result = ctx
        .interrupt
        .interruptible(work)
        .await
        .unwrap_or_else(|signal| Err(signal.into()));
    match result {
        Ok((report, point)) => {
            if report.writable_after_ms.is_some() {
                flow.state.acting_primary = Some(RoleChange {
                    node: ctx.dr.secondary.clone(),
                    from: ctx.dr.primary.clone(),
                    since: point.clone(),
                    by: StepName::Failover,
                });
            }
            record.point = Some(point);
            record.gate = Some(GateRecord {
                result: if report.equal() { "equal" } else { "different" }.into(),
                differing_rows: 0,
                report: format!("{FAILOVER_DIR}/report.json"),
            });
            record.end(if report.equal() {
                StepStatus::Done
            } else {
                StepStatus::GateFailed
            });
            flow.set(StepName::Failover, record).await?;
            write_report(ctx, &report).await?;
            Ok(report)
        }
        Err(e) => {
            record.end_with_error(&e);
            flow.set(StepName::Failover, record).await?;
            Err(e)
        }
    }
}

/// Steps 2 to 5.
async fn promote(
    ctx: &DrContext,
    (source, conn): (&Source, &mut Conn),
    // Gate 3 (b)'s backup; `None`: `--no-data-gate`.
    data_gate: Option<&super::manifest::Manifest>,
    started: Instant,
    started_at: String,
) -> Result<(FailoverReport, Point)> {
    let mut notes = Vec::new();
    // No client write may land between the archive's transactions and the gates: the node
    // stays read-only until they pass (a no-op on a secondary kept read-only already).
    conn.exec("SET GLOBAL read_only = 1").await?;
    let replica = super::replicate::ReplicaStatus::read(conn, Flavour::MariaDb).await?;
    if let Some(r) = &replica {
        conn.exec("STOP SLAVE").await?;
        tracing::info!(
            "dr failover: replication from {} stopped on '{}'",
            r.source,
            source.name()
        );
    } else {
        notes.push("the secondary was not configured as a replica".into());
    }
    // Checked again at the stopped position; a refusal here has applied nothing either.
    let c = match check(ctx, conn).await {
        Ok(c) => c,
        Err(e) => {
            if replica.as_ref().is_some_and(|r| r.active()) {
                let _ = conn.exec("START SLAVE").await;
            }
            return Err(e);
        }
    };
    let start = c.position.clone();
    let redo = archive::redo_store(ctx).await?;
    let ds = &ctx.config.data_sources[&ctx.dr.secondary];
    let replay_opts = ReplayOptions {
        from: Some(start.clone()),
        allow_truncated_last: true,
    };
    let outcome = archive::replay_with(redo.as_ref(), &ctx.secondary, ds, &replay_opts).await?;
    tracing::info!(
        transactions = outcome.transactions,
        segments = outcome.segments,
        "dr failover: archive applied"
    );

    // The archive's end, independent of what the replay computed: every entry's last
    // transaction, the truncated one's replaced by its last complete transaction.
    let mut end = GtidPos::default();
    for e in &c.index {
        let truncated_here = outcome
            .truncated
            .as_ref()
            .is_some_and(|t| t.segment == e.segment);
        if truncated_here {
            continue;
        }
        let last: Gtid = e.last.parse().map_err(DrError::Precondition)?;
        end.advance(last);
    }
    if let Some(t) = &outcome.truncated {
        if let Some(g) = &t.complete_to {
            end.advance(g.parse().map_err(DrError::Precondition)?);
        }
        notes.push(format!(
            "the last archive segment {} is truncated ({} of {} bytes): applied up to its last \
             complete transaction {}; the index named {} as its last",
            t.segment,
            t.stored_bytes,
            t.indexed_bytes,
            t.complete_to.as_deref().unwrap_or("(none)"),
            t.indexed_last
        ));
    }
    let expected = join(&start, &end);
    if !end.covers(&start) {
        notes.push(format!(
            "the secondary was already past the archive's end in some domain (secondary {start}, \
             archive {end}): the archive is behind; nothing of it was needed there"
        ));
    }

    // Gate 3 (a): the server's own account of what it holds.
    let binlog_pos = gtid_var(conn, "gtid_binlog_pos").await?;
    let log_bin = conn
        .first("SELECT @@GLOBAL.log_bin")
        .await?
        .and_then(|r| cell_u64(&r, 0))
        .unwrap_or(0)
        == 1;
    let actual = join(&start, &binlog_pos);
    if !log_bin {
        notes.push(
            "the secondary has no binlog (log_bin is off): it cannot serve as a source, and \
             gate 3 (a) can only read the position the replay set"
                .into(),
        );
    }
    let actual = if log_bin {
        actual
    } else {
        outcome.position.clone()
    };
    // Only the domains the archive or the secondary know are compared (the secondary's own
    // local writes in other domains are not the redo's business).
    let actual_cmp = GtidPos(
        actual
            .0
            .iter()
            .filter(|(d, _)| expected.0.contains_key(d))
            .map(|(d, g)| (*d, *g))
            .collect(),
    );
    let equal = actual_cmp
        .0
        .iter()
        .all(|(d, g)| expected.0.get(d).is_some_and(|e| e.seq == g.seq))
        && expected.0.keys().all(|d| actual_cmp.0.contains_key(d));

    // Step 4: a node that can serve as a source, writable.
    conn.exec(&format!("SET GLOBAL gtid_slave_pos = '{actual_cmp}'"))
        .await?;
    if replica.is_some() {
        conn.exec("RESET SLAVE ALL").await?;
    }
    // Before it takes writes: no AUTO_INCREMENT counter may hand out an id a row holds.
    let (counters, raised) = crate::check::raise_own_counters(conn).await?;
    let gate_counters = counters_line(counters, &raised);
    // Gate 3 (b) before the node takes writes: a difference leaves it read-only.
    let (gate_data, gate_data_result) = match data_gate {
        None => (
            "skipped (--no-data-gate): the data was not compared with a reconstruction".into(),
            None,
        ),
        Some(backup) => {
            let dir = ctx.step_dir(FAILOVER_DIR).join(DATA_GATE_DIR);
            let r = super::reconstruct::compare(ctx, backup, &dir)
                .await
                .map_err(|e| {
                    DrError::Precondition(format!(
                        "gate 3 (b) failed after the archive was applied: {e}. The secondary \
                         holds the archive, its replication is reset and it is still \
                         read-only; `syncgate dr failover --again --no-data-gate` makes it \
                         writable without the gate"
                    ))
                })?;
            let line = data_gate_line(&r);
            (
                line,
                Some(r.report.result.as_str().replace("repaired", "equal")),
            )
        }
    };
    let writable_after = if gate_data_result.as_deref() == Some("different")
        || gate_data_result.as_deref() == Some("error")
    {
        notes.push(format!(
            "NOT made writable: gate 3 (b) found the secondary different from the \
             reconstruction (report: {FAILOVER_DIR}/{DATA_GATE_DIR}/summary.txt); after \
             looking, promote it with SET GLOBAL read_only = 0"
        ));
        None
    } else {
        conn.exec("SET GLOBAL read_only = 0").await?;
        let after = started.elapsed();
        tracing::info!(
            ms = after.as_millis() as u64,
            "dr failover: the secondary is writable"
        );
        Some(after.as_millis() as u64)
    };
    let position = gtid_var(conn, "gtid_slave_pos").await?;
    let (binlog_file, binlog_offset) = if log_bin {
        conn.first("SHOW MASTER STATUS")
            .await?
            .map(|r| {
                (
                    cell_str(&r, 0).unwrap_or_default(),
                    cell_u64(&r, 1).unwrap_or(0),
                )
            })
            .unwrap_or_default()
    } else {
        (String::new(), 0)
    };

    // The recovery point: the last recovered transaction's commit time.
    let last = match outcome.last_applied {
        Some(t) => Some((t.gtid, u64::from(t.commit_ts))),
        None => c
            .index
            .iter()
            .find(|e| {
                e.last
                    .parse::<Gtid>()
                    .is_ok_and(|g| start.0.get(&g.domain) == Some(&g))
            })
            .and_then(|e| e.last.parse::<Gtid>().ok().map(|g| (g, e.last_commit))),
    };
    if last.is_none() {
        notes.push(
            "the recovery point is unknown: nothing was applied and the secondary's position \
             is not the end of an archive segment"
                .into(),
        );
    }
    let (primary_position, lost) = probe_primary(ctx, &position).await;
    if primary_position.is_none() {
        notes.push("data lost: unknown (the old primary does not answer)".into());
    }
    let report = FailoverReport {
        secondary: source.name().to_string(),
        started: started_at,
        start_position: start.to_string(),
        archive_end: end.to_string(),
        applied_segments: outcome.segments,
        applied_transactions: outcome.transactions,
        position: position.to_string(),
        last_recovered: last.map(|(g, _)| g.to_string()),
        recovery_point: last.map(|(_, ts)| unix_rfc3339(ts)),
        recovery_point_unix: last.map(|(_, ts)| ts),
        primary_position: primary_position.map(|p| p.to_string()),
        lost_transactions: lost,
        writable_after_ms: writable_after,
        source_binlog: log_bin.then(|| format!("{binlog_file}:{binlog_offset}")),
        truncated: outcome.truncated.clone(),
        gate_position: PositionGate {
            result: if equal { "equal" } else { "different" }.into(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        },
        gate_counters,
        gate_data,
        gate_data_result,
        notes,
    };
    let point = Point::Gtid {
        gtid: report.position.clone(),
        binlog_file,
        binlog_pos: binlog_offset,
    };
    Ok((report, point))
}

/// Gate 3 (b)'s report directory, under the failover's.
pub const DATA_GATE_DIR: &str = "data";

/// Gate 3 (b) in words.
fn data_gate_line(r: &super::reconstruct::Reconstruction) -> String {
    let rep = &r.report;
    let rows: u64 = rep.tables.iter().map(|t| t.rows_upstream).sum();
    let differing: u64 = rep.differing_rows();
    format!(
        "{}: the secondary against a reconstruction (backup {} restored into a scratch \
         server, {} archived transaction(s) replayed to {}): {} table(s), {rows} row(s), \
         {differing} differing, {} counter/sequence difference(s)",
        rep.result.as_str().replace("repaired", "equal"),
        r.backup_id,
        r.transactions,
        r.position,
        rep.tables.len(),
        rep.metadata.len()
    )
}

/// The report line of the counters check: how many, and each one raised.
fn counters_line(checked: usize, raised: &[crate::report::MetadataDiff]) -> String {
    if raised.is_empty() {
        return format!(
            "{checked} AUTO_INCREMENT counter(s) checked, all above their tables' largest ids"
        );
    }
    let moved: Vec<String> = raised
        .iter()
        .map(|d| {
            let fix = d.fix.join("; ");
            let state = if d.fixed { "raised" } else { "NOT raised" };
            format!(
                "`{}`.`{}`: {} — {state} ({fix})",
                d.schema, d.name, d.detail
            )
        })
        .collect();
    format!(
        "{checked} AUTO_INCREMENT counter(s) checked; {} at or below their largest id: {}",
        raised.len(),
        moved.join("; ")
    )
}

/// The old primary's position and how many transactions the secondary lacks, when it
/// answers within [`PRIMARY_PROBE`].
async fn probe_primary(ctx: &DrContext, position: &GtidPos) -> (Option<GtidPos>, Option<u64>) {
    let probe = async {
        let source = Source::open(ctx.primary.clone()).await?;
        let mut conn = source.connect().await?;
        let pos = gtid_var(&mut conn, "gtid_binlog_pos").await;
        conn.close().await;
        pos
    };
    match tokio::time::timeout(PRIMARY_PROBE, probe).await {
        Ok(Ok(p)) => {
            let lost =
                p.0.values()
                    .map(|g| {
                        g.seq
                            .saturating_sub(position.0.get(&g.domain).map_or(0, |s| s.seq))
                    })
                    .sum();
            (Some(p), Some(lost))
        }
        _ => (None, None),
    }
}

pub(super) fn unix_rfc3339(ts: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ts.to_string())
}

pub(super) async fn write_report(ctx: &DrContext, report: &FailoverReport) -> Result<()> {
    let dir = ctx.step_dir(FAILOVER_DIR);
    let json = serde_json::to_vec_pretty(report)
        .map_err(|e| Error::Internal(format!("failover report does not serialise: {e}")))?;
    let text = render_text(report);
    tokio::task::spawn_blocking(move || -> Result<()> {
        let out = |path: std::path::PathBuf, e| Error::Output { path, source: e };
        std::fs::create_dir_all(&dir).map_err(|e| out(dir.clone(), e))?;
        let p = dir.join("report.json");
        std::fs::write(&p, json).map_err(|e| out(p, e))?;
        let p = dir.join("report.txt");
        std::fs::write(&p, text).map_err(|e| out(p, e))?;
        Ok(())
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?
}

/// The report as the command prints it.
pub fn render_text(r: &FailoverReport) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "failover: '{}' stopped replicating at {}; applied {} transaction(s) from {} archive \
         segment(s); it is now at {}\n",
        r.secondary,
        if r.start_position.is_empty() {
            "(empty)"
        } else {
            &r.start_position
        },
        r.applied_transactions,
        r.applied_segments,
        r.position
    ));
    for n in &r.notes {
        s.push_str(&format!("note: {n}\n"));
    }
    match r.writable_after_ms {
        Some(ms) => s.push_str(&format!(
            "writable: read_only = 0 {ms} ms after the failover started{}\n",
            r.source_binlog
                .as_ref()
                .map(|b| format!("; replicas of it start at binlog {b}"))
                .unwrap_or_default()
        )),
        None => s.push_str("writable: NO, left read-only (gate 3 (b) found differences)\n"),
    }
    match (&r.recovery_point, &r.last_recovered) {
        (Some(t), Some(g)) => s.push_str(&format!(
            "recovery point: {t} (commit time of {g}, the last recovered transaction)\n"
        )),
        _ => s.push_str("recovery point: unknown\n"),
    }
    match (&r.primary_position, r.lost_transactions) {
        (Some(p), Some(n)) => s.push_str(&format!(
            "data lost: {n} transaction(s) (the old primary answered at {p})\n"
        )),
        _ => s.push_str("data lost: unknown (the old primary does not answer)\n"),
    }
    s.push_str(&format!(
        "gate 3 (a) position: {} — the secondary is at {}, the archive's end is {}\n",
        r.gate_position.result, r.gate_position.actual, r.gate_position.expected
    ));
    s.push_str(&format!("gate 3 (b) data: {}\n", r.gate_data));
    s.push_str(&format!("counters: {}\n", r.gate_counters));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_join_per_domain() {
        let a = GtidPos::parse("0-1-5,1-2-9").unwrap();
        let b = GtidPos::parse("0-1-7,2-3-1").unwrap();
        assert_eq!(join(&a, &b).to_string(), "0-1-7,1-2-9,2-3-1");
        assert_eq!(unix_rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
