//! Gate 2, `syncgate dr verify`: the replicating secondary against the primary while
//! writes go on. Both sides are read at one GTID fence (the checker's `snapshot = "auto"`
//! on a MySQL/MariaDB pair: the replica is stopped, the primary pinned at GTID G, the
//! replica applies up to G, is pinned there and restarted), so lag is no difference and a
//! real divergence is. The report and fix SQL go to `output-dir/verify/`; each run is
//! appended to the flow state's gate history. Made to be run by a scheduler: the flow lock
//! refuses a second run, or a run during another step.

use std::path::PathBuf;

use super::flow::{now_rfc3339, Flow, GateRun, StepName, StepStatus};
use super::{DrContext, DrError};
use crate::error::{Error, Result};
use crate::report::RunReport;
use crate::snapshot::Snapshot;

/// The step directory of gate 2.
pub const VERIFY_DIR: &str = "verify";

/// What one `dr verify` found.
#[derive(Debug)]
pub struct VerifyOutcome {
    pub report: RunReport,
    /// The run as recorded in the gate history.
    pub run: GateRun,
    /// Where its report and fix SQL are.
    pub dir: PathBuf,
}

/// Run gate 2 once under the flow's lock.
pub async fn run(ctx: &DrContext) -> Result<VerifyOutcome> {
    let store = ctx.store().await?;
    Flow::with_lock(
        store,
        &ctx.output_dir,
        "dr verify",
        async |flow: &mut Flow| {
            let replicating = flow
                .state
                .step(StepName::Replicate)
                .is_some_and(|r| r.status == StepStatus::Done);
            if !replicating {
                return Err(DrError::Precondition(
                    "replication is not set up in this flow: run `dr replicate` before `dr verify`"
                        .into(),
                )
                .into());
            }
            let dir = ctx.step_dir(VERIFY_DIR);
            let checked = fenced_check(ctx, VERIFY_DIR).await;
            let report_path = format!("{VERIFY_DIR}/summary.txt");
            let run = match &checked {
                Ok(report) => GateRun {
                    time: now_rfc3339(),
                    result: report.result.as_str().to_string(),
                    fence: Some(report.downstream.snapshot.clone()),
                    compared_rows: report.tables.iter().map(|t| t.rows_upstream).sum(),
                    differing_rows: report.differing_rows(),
                    report: report_path,
                    error: report.error.clone(),
                },
                Err(e) => GateRun {
                    time: now_rfc3339(),
                    result: match e {
                        Error::Interrupted { .. } => "interrupted",
                        _ => "error",
                    }
                    .into(),
                    fence: None,
                    compared_rows: 0,
                    differing_rows: 0,
                    report: report_path,
                    error: Some(e.to_string()),
                },
            };
            flow.state.push_gate_run(run.clone());
            flow.save().await?;
            let report = checked?;
            Ok(VerifyOutcome { report, run, dir })
        },
    )
    .await
}

/// The checker, both sides at the GTID fence: `ctx`'s primary against its secondary (a
/// replica of it), report and summary in the directory of `step`. Gate 2, and with the
/// roles of [`DrContext::with_roles`] gate 4 and the switchover's gate.
pub(crate) async fn fenced_check(ctx: &DrContext, step: &str) -> Result<RunReport> {
    let mut job = ctx.gate_job(step)?;
    job.upstream.snapshot = Snapshot::Auto;
    job.downstream.snapshot = Snapshot::Auto;
    let report = crate::check::run_check(job, crate::report::progress::Progress::hidden()).await?;
    let dir = ctx.step_dir(step);
    let written = report.clone();
    tokio::task::spawn_blocking(move || crate::report::write_summary(&written, &dir))
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    Ok(report)
}
