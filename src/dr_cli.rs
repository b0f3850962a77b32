//! `syncgate dr …`: the DR flow's commands (argument parsing and printing only; the steps
//! live in `syncgate::dr`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use syncgate::config::Config;
use syncgate::dr::archive;
use syncgate::dr::backup::{self, BackupOptions};
use syncgate::dr::failover::{self, FailoverOptions};
use syncgate::dr::flow::{Flow, StepName, StepStatus};
use syncgate::dr::replicate::{self, ReplicateOptions, Started};
use syncgate::dr::reseed::{self, ReseedOptions};
use syncgate::dr::restore::{self, RestoreOptions};
use syncgate::dr::switchover::{self, SwitchoverOptions};
use syncgate::dr::verify;
use syncgate::dr::DrContext;
use syncgate::exit::{DIFFERENT, EQUAL};
use syncgate::interrupt::Signal;

#[derive(Args, Clone)]
pub struct Common {
    /// Configuration file (sync-diff-inspector TOML with a [dr] section).
    #[arg(short = 'C', long = "config")]
    config: PathBuf,
    /// Log level on stderr (error, warn, info, debug, trace).
    #[arg(short = 'L', long = "log-level", default_value = "warn")]
    log_level: String,
    /// Overrides `task.output-dir` (the flow state's copy, one directory per step).
    #[arg(long)]
    output_dir: Option<PathBuf>,
    /// Print what would be done; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Subcommand)]
pub enum DrAction {
    /// Full backup of the primary into backup-storage; records the backup point.
    Backup {
        #[command(flatten)]
        common: Common,
        /// Take a new backup although the flow has one (the flow starts over).
        #[arg(long)]
        again: bool,
    },
    /// Restore a backup onto the secondary, then gate 1 (the secondary against the
    /// primary at the backup point).
    Restore {
        #[command(flatten)]
        common: Common,
        /// Backup id (default: the flow's backup, else the newest complete one).
        #[arg(long)]
        backup: Option<String>,
        /// Replace tables on the secondary that hold data.
        #[arg(long)]
        overwrite: bool,
        /// Only run gate 1 again (after fixing what it found).
        #[arg(long)]
        gate_only: bool,
        /// Restore again although the flow says it was done.
        #[arg(long)]
        again: bool,
    },
    /// Replicate the restored secondary from the primary, starting at the backup's GTID;
    /// then gate 2 once.
    Replicate {
        #[command(flatten)]
        common: Common,
        /// Set replication up again although the flow says it was done.
        #[arg(long)]
        again: bool,
        /// MariaDB: then run `dr archive` as a child process and wait; SIGTERM (or SIGINT)
        /// to this process stops the archiver (it writes what is complete) and then this
        /// process. The archiver also stops when this process ends any other way.
        #[arg(long)]
        with_archive: bool,
    },
    /// Gate 2: the replicating secondary against the primary at one GTID fence, while
    /// writes go on (exit 0 equal, 1 different, 2 error).
    Verify {
        #[command(flatten)]
        common: Common,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Archive the primary's binlog into redo-storage as transaction-complete segments,
    /// until SIGTERM (exit 0) or SIGINT (130); resumes after the last archived transaction.
    Archive {
        #[command(flatten)]
        common: Common,
        /// Seconds between writes of the open segment (bounds the data at risk).
        #[arg(long)]
        flush_interval: Option<f64>,
        /// Start after this GTID position when the archive is empty (default: the flow's
        /// backup point).
        #[arg(long)]
        start_gtid: Option<String>,
        /// Stop (as on SIGTERM) when stdin closes: `dr replicate --with-archive` holds the
        /// other end, so the archiver ends with it however it ends.
        #[arg(long, hide = true)]
        stop_with_parent: bool,
    },
    /// The primary is lost: stop replication on the secondary, apply the archive after its
    /// position exactly once, make it writable; then gate 3 (exit 0 equal, 1 different, 2
    /// error or refused: a gap in the archive refuses before anything is applied).
    Failover {
        #[command(flatten)]
        common: Common,
        /// Run although the flow records a finished failover.
        #[arg(long)]
        again: bool,
        /// Skip gate 3 (b): the data is not compared with a reconstruction (the flow's
        /// backup restored into a scratch server plus the archive replayed), which runs
        /// before the secondary is made writable and adds its time to the recovery.
        #[arg(long)]
        no_data_gate: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// After a failover: fill the rebuilt node NAME from the acting primary (backup,
    /// restore), replicate it from there while writes go on; then gate 4 (exit 0 equal, 1
    /// different, 2 error or refused: no failover yet, NAME unknown or not empty).
    Reseed {
        #[command(flatten)]
        common: Common,
        /// The data source to rebuild ([data-sources.NAME]); it must be empty.
        #[arg(long, value_name = "NAME")]
        new_primary: String,
        /// Reseed again although the flow records a finished reseed.
        #[arg(long)]
        again: bool,
    },
    /// After a reseed: freeze writes on the acting primary (read_only), let the reseeded
    /// node catch up, gate at that frozen point, then make it the primary and the acting
    /// primary its replica; the freeze is timed (exit 0 switched, 1 gate different and
    /// nothing switched, 2 error: writes unfrozen, nothing switched).
    Switchover {
        #[command(flatten)]
        common: Common,
        /// Seconds the new node may take to apply everything up to the frozen point.
        #[arg(long, default_value_t = 30)]
        catch_up_timeout: u64,
        /// Run although the flow records a finished switchover.
        #[arg(long)]
        again: bool,
        /// Compare every selected row inside the freeze, with no gate before it. By
        /// default everything is compared before the freeze and, inside it, only the rows
        /// written since, so the freeze does not grow with the data.
        #[arg(long)]
        full_gate: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The preparatory half in one command: backup → restore (gate 1) → replicate (gate 2).
    /// Resumable from the flow state: a step the flow records done is skipped, one that
    /// did not finish (killed, interrupted, failed) is redone from a clean start (a restore
    /// replaces the tables its earlier attempt wrote; a replica its earlier attempt started
    /// from this primary is taken as is). Exit 0 when gates 1 and 2 are equal, 1 when one
    /// differs (the flow stops there), 2 on an error.
    Run {
        #[command(flatten)]
        common: Common,
    },
    /// Rehearse the whole flow on local servers under a steady write load: backup →
    /// restore (gate 1) → replicate with the archive (gate 2) → the primary killed → failover
    /// (gate 3) → reseed onto a spare (gate 4) → switchover → a final gate. Prints the
    /// timeline, the recovery point and data lost, the time to a writable secondary and the
    /// switchover's write freeze; writes drill.txt and drill.json (exit 0 when every gate
    /// held and the ledger is gap-free).
    Drill {
        #[command(flatten)]
        args: crate::drill::DrillArgs,
    },
    /// The flow's state: each step, its point and gate; replication; gate 2's last runs;
    /// the backups in storage.
    Status {
        #[command(flatten)]
        common: Common,
        /// Print the status as JSON (schema in docs/dr.md).
        #[arg(long)]
        json: bool,
    },
}

fn context(common: &Common) -> anyhow::Result<DrContext> {
    let config = Config::from_file(&common.config)?;
    let interrupt = syncgate::interrupt::Interrupt::on_signals()
        .context("cannot install the SIGINT/SIGTERM handlers")?;
    let mut ctx = DrContext::new(&config, common.output_dir.clone(), interrupt)?;
    ctx.dry_run = common.dry_run;
    std::fs::create_dir_all(&ctx.output_dir).with_context(|| {
        format!(
            "cannot create output directory {}",
            ctx.output_dir.display()
        )
    })?;
    crate::init_logging(
        &common.log_level,
        Some(&ctx.output_dir.join("dr.log")),
        true,
    )?;
    Ok(ctx)
}

pub async fn run(action: DrAction) -> anyhow::Result<i32> {
    let outcome = match action {
        DrAction::Backup { common, again } => backup_cmd(&common, again).await,
        DrAction::Restore {
            common,
            backup,
            overwrite,
            gate_only,
            again,
        } => {
            let opts = RestoreOptions {
                backup,
                overwrite,
                gate_only,
                again,
            };
            restore_cmd(&common, &opts).await
        }
        DrAction::Replicate {
            common,
            again,
            with_archive,
        } => replicate_cmd(&common, again, with_archive).await,
        DrAction::Verify { common, json } => {
            let ctx = context(&common)?;
            verify_cmd(&ctx, json).await
        }
        DrAction::Archive {
            common,
            flush_interval,
            start_gtid,
            stop_with_parent,
        } => archive_cmd(&common, flush_interval, start_gtid, stop_with_parent).await,
        DrAction::Status { common, json } => status_cmd(&common, json).await,
        DrAction::Run { common } => run_cmd(&common).await,
        DrAction::Drill { args } => crate::drill::run(args).await,
        DrAction::Failover {
            common,
            again,
            no_data_gate,
            json,
        } => {
            let opts = FailoverOptions {
                again,
                no_data_gate,
            };
            failover_cmd(&common, &opts, json).await
        }
        DrAction::Reseed {
            common,
            new_primary,
            again,
        } => reseed_cmd(&common, ReseedOptions { new_primary, again }).await,
        DrAction::Switchover {
            common,
            catch_up_timeout,
            again,
            full_gate,
            json,
        } => {
            let opts = SwitchoverOptions {
                catch_up_timeout: std::time::Duration::from_secs(catch_up_timeout),
                again,
                full_gate,
            };
            switchover_cmd(&common, &opts, json).await
        }
    };
    match outcome {
        Err(e) => match e.downcast_ref::<syncgate::Error>() {
            Some(syncgate::Error::Interrupted { signal }) => {
                eprintln!(
                    "syncgate: stopped by {signal}; the step is recorded as interrupted in the \
                     flow state, nothing incomplete is left looking complete, and the lock is \
                     released. Run the same command again to retry it."
                );
                Ok(signal.exit_code())
            }
            _ => Err(e),
        },
        ok => ok,
    }
}

/// `dr run`: the steps up to gate 2, each skipped when the flow records it done.
async fn run_cmd(common: &Common) -> anyhow::Result<i32> {
    let ctx = context(common)?;
    let (state, _) = Flow::peek(ctx.store().await?.as_ref()).await?;
    let status = |name: StepName| state.step(name).map(|r| r.status);
    // A step recorded but not done was started by an earlier run that did not finish it.
    let unfinished = |name: StepName| status(name).is_some_and(|s| s != StepStatus::Done);
    for name in [StepName::Restore, StepName::Replicate] {
        if status(name) == Some(StepStatus::GateFailed) {
            println!(
                "{}: its gate found differences earlier; the flow stops there until they are                  fixed (see `dr status`)",
                name.as_str()
            );
            return Ok(DIFFERENT);
        }
    }
    let done = |name: StepName| {
        let skip = status(name) == Some(StepStatus::Done);
        if skip {
            println!(
                "{}: done earlier (the flow state says so), skipped",
                name.as_str()
            );
        }
        skip
    };
    // --dry-run: each step's plan; a later step's may depend on an earlier one's result.
    let planned = |step: &str, r: anyhow::Result<i32>| -> anyhow::Result<i32> {
        match r {
            Err(e) if ctx.dry_run => {
                println!("{step}: planned once the steps before it have run ({e})");
                Ok(EQUAL)
            }
            other => other,
        }
    };
    if !done(StepName::Backup) {
        println!("== backup");
        let code = backup_step(&ctx, false).await?;
        if code != EQUAL {
            return Ok(code);
        }
    }
    if !done(StepName::Restore) {
        println!("== restore, gate 1");
        let opts = RestoreOptions {
            // The tables on the secondary are the earlier attempt's own.
            overwrite: unfinished(StepName::Restore),
            ..RestoreOptions::default()
        };
        let code = planned("restore", restore_step(&ctx, &opts).await)?;
        if code != EQUAL {
            return Ok(code);
        }
    }
    if done(StepName::Replicate) {
        println!("== gate 2");
        if ctx.dry_run {
            println!("gate 2: the secondary against the primary at a GTID fence");
            return Ok(EQUAL);
        }
        return verify_cmd(&ctx, false).await;
    }
    println!("== replicate, gate 2");
    let opts = ReplicateOptions {
        adopt: unfinished(StepName::Replicate),
        ..ReplicateOptions::default()
    };
    planned(
        "replicate",
        replicate_step(&ctx, common, &opts, false).await,
    )
}

async fn backup_cmd(common: &Common, again: bool) -> anyhow::Result<i32> {
    backup_step(&context(common)?, again).await
}

async fn backup_step(ctx: &DrContext, again: bool) -> anyhow::Result<i32> {
    if ctx.dry_run {
        for line in backup::plan(ctx).await? {
            println!("{line}");
        }
        return Ok(EQUAL);
    }
    tracing::info!(config = ?ctx.config, "dr backup");
    let out = backup::run(ctx, &BackupOptions { again }).await?;
    let m = &out.manifest;
    for id in &out.removed_incomplete {
        println!("removed incomplete backup {id} (its writer stopped before the manifest)");
    }
    let rows: u64 = m.tables.iter().filter_map(|t| t.rows).sum();
    println!(
        "backup {} of '{}' ({} {}) at {}: {} table(s), {} row(s), {} stored in {}; {:.1} s{}",
        m.id,
        m.source,
        m.flavour,
        m.server_version,
        m.point,
        m.tables.len(),
        rows,
        human_bytes(m.stored_bytes()),
        ctx.backup_uri,
        out.elapsed.as_secs_f64(),
        out.commit_hold
            .map(|d| format!("; commits held {} ms", d.as_millis()))
            .unwrap_or_default()
    );
    Ok(EQUAL)
}

async fn restore_cmd(common: &Common, opts: &RestoreOptions) -> anyhow::Result<i32> {
    restore_step(&context(common)?, opts).await
}

async fn restore_step(ctx: &DrContext, opts: &RestoreOptions) -> anyhow::Result<i32> {
    if ctx.dry_run {
        for line in restore::plan(ctx, opts).await? {
            println!("{line}");
        }
        return Ok(EQUAL);
    }
    tracing::info!(config = ?ctx.config, "dr restore");
    let out = restore::run(ctx, opts).await?;
    if let Some(t) = out.restore_time {
        println!(
            "restored backup {} onto '{}' in {:.1} s; the secondary is at {}",
            out.manifest.id,
            ctx.dr.secondary,
            t.as_secs_f64(),
            out.manifest.point
        );
    }
    let report = ctx.step_dir("restore").join("gate.txt");
    if out.gate.equal() {
        println!(
            "gate 1: equal ({} rows compared at the backup point, {:.1} s); report: {}",
            out.gate.compared_rows,
            out.gate.elapsed_secs,
            report.display()
        );
        Ok(EQUAL)
    } else {
        print!("{}", syncgate::dr::gate::render_text(&out.gate));
        println!(
            "gate 1: DIFFERENT — the flow stops here until the secondary is fixed (restore \
             again with --again --overwrite, then or after a fix run `dr restore --gate-only`); \
             report: {}",
            report.display()
        );
        Ok(DIFFERENT)
    }
}

async fn archive_cmd(
    common: &Common,
    flush_interval: Option<f64>,
    start_gtid: Option<String>,
    stop_with_parent: bool,
) -> anyhow::Result<i32> {
    let mut ctx = context(common)?;
    if stop_with_parent {
        ctx.interrupt = ctx.interrupt.or_when(
            stdin_closed(),
            Signal::Terminate,
            "dr archive: its parent `dr replicate --with-archive` ended",
        );
    }
    let secs = flush_interval.unwrap_or(ctx.dr.flush_interval);
    anyhow::ensure!(
        secs.is_finite() && secs > 0.0,
        "--flush-interval must be a positive number of seconds"
    );
    let start = start_gtid
        .map(|g| syncgate::dr::binlog::GtidPos::parse(&g))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let opts = archive::ArchiveOptions {
        flush_interval: std::time::Duration::from_secs_f64(secs),
        start,
    };
    let signal = archive::run(&ctx, &opts).await?;
    eprintln!(
        "syncgate: dr archive stopped by {}; complete transactions are archived",
        signal.name()
    );
    // SIGTERM is the normal way to stop the archiver: exit 0.
    Ok(match signal {
        Signal::Terminate => EQUAL,
        s => s.exit_code(),
    })
}

/// Completes when stdin reaches its end (or cannot be read). A thread of its own, not
/// tokio's blocking pool: a read that never returns must not keep the process from exiting.
fn stdin_closed() -> impl std::future::Future<Output = ()> + Send + 'static {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    async move {
        let _ = rx.await;
    }
}

/// `dr archive` as a child of `dr replicate --with-archive`: its stdin is a pipe from this
/// process, so it stops (as on SIGTERM: what is complete is written, exit 0) when this
/// process closes the pipe or ends in any way, `kill -9` included.
struct ArchiveChild {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    pid: u32,
}

impl ArchiveChild {
    fn spawn(common: &Common) -> anyhow::Result<ArchiveChild> {
        let exe = std::env::current_exe().context("cannot find the syncgate binary")?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(["dr", "archive", "-C"])
            .arg(&common.config)
            .args(["-L", &common.log_level, "--stop-with-parent"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::inherit())
            .stderr(std::process::Stdio::inherit());
        if let Some(dir) = &common.output_dir {
            cmd.arg("--output-dir").arg(dir);
        }
        let mut child = cmd.spawn().context("cannot start dr archive")?;
        let stdin = child.stdin.take();
        let pid = child.id().unwrap_or(0);
        Ok(ArchiveChild { child, stdin, pid })
    }

    /// Close its stdin and wait for it (SIGKILL after a minute).
    async fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        drop(self.stdin.take());
        let limit = std::time::Duration::from_secs(60);
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                tracing::warn!(
                    "dr archive (pid {}) did not stop within {limit:?}: killed",
                    self.pid
                );
                self.child.start_kill()?;
                Ok(self.child.wait().await?)
            }
        }
    }
}

/// After gate 2 (`gate`): wait for SIGTERM/SIGINT, then stop the archiver. An archiver that
/// ends on its own (purged binlogs, refused credentials) ends this process with exit 2.
async fn supervise_archive(
    ctx: &DrContext,
    mut archiver: ArchiveChild,
    gate: anyhow::Result<i32>,
) -> anyhow::Result<i32> {
    let code = match gate {
        Ok(code) => code,
        Err(e) => {
            let _ = archiver.stop().await;
            return Err(e);
        }
    };
    println!(
        "waiting: SIGTERM (or SIGINT) to this process (pid {}) stops dr archive (pid {}), which \
         writes what is complete; replication goes on either way",
        std::process::id(),
        archiver.pid
    );
    let pid = archiver.pid;
    tokio::select! {
        status = archiver.child.wait() => {
            let status = status?;
            anyhow::bail!(
                "dr archive (pid {pid}) ended on its own ({status}); its error is above. \
                 Replication goes on; start `dr archive` again once the cause is fixed"
            )
        }
        signal = ctx.interrupt.wait() => {
            let status = archiver.stop().await?;
            println!("dr archive (pid {pid}) stopped ({status}); replication goes on");
            match signal {
                Signal::Terminate if status.success() => Ok(code),
                Signal::Terminate => anyhow::bail!("dr archive (pid {pid}) failed while stopping ({status})"),
                s => Ok(s.exit_code()),
            }
        }
    }
}

async fn replicate_cmd(common: &Common, again: bool, with_archive: bool) -> anyhow::Result<i32> {
    let ctx = context(common)?;
    let opts = ReplicateOptions {
        again,
        ..ReplicateOptions::default()
    };
    replicate_step(&ctx, common, &opts, with_archive).await
}

async fn replicate_step(
    ctx: &DrContext,
    common: &Common,
    opts: &ReplicateOptions,
    with_archive: bool,
) -> anyhow::Result<i32> {
    if with_archive {
        anyhow::ensure!(
            ctx.dr.redo_storage.is_some(),
            "--with-archive needs [dr] redo-storage: dr archive writes there"
        );
        let (state, _) = syncgate::dr::flow::Flow::peek(ctx.store().await?.as_ref()).await?;
        anyhow::ensure!(
            state.flavour != syncgate::db::Flavour::TiDb.as_str(),
            "--with-archive is for MariaDB: on TiDB the changefeed's redo log (TiCDC) is the \
             archive"
        );
    }
    let plan = replicate::plan(ctx, opts).await?;
    for line in &plan {
        println!("{line}");
    }
    if with_archive {
        println!("then dr archive as a child process, until this process ends");
    }
    if ctx.dry_run {
        return Ok(EQUAL);
    }
    tracing::info!(config = ?ctx.config, "dr replicate");
    let out = replicate::run(ctx, opts).await?;
    match &out.started {
        Started::Gtid(gtid) => {
            println!(
                "replication runs: '{}' replicates from {} starting after GTID {gtid} ({:.1} s)",
                ctx.dr.secondary,
                out.source,
                out.elapsed.as_secs_f64()
            );
            if !with_archive {
                return verify_cmd(ctx, false).await;
            }
            let archiver = ArchiveChild::spawn(common)?;
            println!(
                "dr archive runs as pid {}, into {}",
                archiver.pid,
                ctx.dr
                    .redo_storage
                    .as_deref()
                    .map(syncgate::config::redact_uri)
                    .unwrap_or_default()
            );
            let gate = verify_cmd(ctx, false).await;
            supervise_archive(ctx, archiver, gate).await
        }
        Started::Changefeed(cf) => {
            println!(
                "replication runs: changefeed {} on TiCDC {} {} from BackupTS {} to '{}', state \
                 {}; redo in {} ({:.1} s)",
                cf.changefeed_id,
                out.source,
                if cf.adopted { "adopted" } else { "created" },
                cf.start_ts,
                ctx.dr.secondary,
                cf.state,
                cf.redo_storage,
                out.elapsed.as_secs_f64()
            );
            if cf.gc_hold_released {
                println!("the flow's GC hold is released (the changefeed holds GC from now on)");
            } else {
                println!(
                    "the flow's GC hold could not be released (PD unreachable); it expires with \
                     its TTL, or run `dr replicate --again`"
                );
            }
            // Gate 2 reads at a syncpoint pair; the first one is written one sync-point
            // interval after the changefeed starts.
            println!(
                "gate 2: run `dr verify` once TiCDC wrote its first syncpoint (within {} s)",
                opts.tidb.sync_point_interval.as_secs()
            );
            Ok(EQUAL)
        }
    }
}

async fn verify_cmd(ctx: &DrContext, json: bool) -> anyhow::Result<i32> {
    if ctx.dry_run {
        println!(
            "would run gate 2: '{}' against '{}' at one GTID fence (the replica is stopped \
             briefly and restarted); report in {}",
            ctx.dr.primary,
            ctx.dr.secondary,
            ctx.step_dir(verify::VERIFY_DIR).display()
        );
        return Ok(EQUAL);
    }
    let out = verify::run(ctx).await?;
    let code = out.report.exit_code();
    if json {
        let doc = serde_json::json!({
            "gate": "gate 2",
            "result": out.run.result,
            "exit_code": code,
            "fence": out.run.fence,
            "compared_rows": out.run.compared_rows,
            "differing_rows": out.run.differing_rows,
            "report_dir": out.dir,
            "time": out.run.time,
            "error": out.run.error,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(code);
    }
    if code != EQUAL {
        print!(
            "{}",
            std::fs::read_to_string(out.dir.join("summary.txt")).unwrap_or_default()
        );
    }
    println!(
        "gate 2: {} — {}; report and fix SQL: {}",
        out.run.result,
        syncgate::dr::status::render_gate_run(&out.run),
        out.dir.display()
    );
    Ok(code)
}

async fn failover_cmd(common: &Common, opts: &FailoverOptions, json: bool) -> anyhow::Result<i32> {
    let ctx = context(common)?;
    if ctx.dry_run {
        for line in failover::plan(&ctx).await? {
            println!("{line}");
        }
        return Ok(EQUAL);
    }
    tracing::info!(config = ?ctx.config, "dr failover");
    let report = failover::run(&ctx, opts).await?;
    let code = if report.equal() { EQUAL } else { DIFFERENT };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", failover::render_text(&report));
        println!(
            "report: {}",
            ctx.step_dir(failover::FAILOVER_DIR)
                .join("report.txt")
                .display()
        );
    }
    Ok(code)
}

async fn reseed_cmd(common: &Common, opts: ReseedOptions) -> anyhow::Result<i32> {
    let ctx = context(common)?;
    let plan = reseed::plan(&ctx, &opts).await?;
    if ctx.dry_run {
        for line in plan {
            println!("{line}");
        }
        return Ok(EQUAL);
    }
    tracing::info!(config = ?ctx.config, "dr reseed");
    let out = reseed::run(&ctx, &opts).await?;
    println!(
        "reseed: backup {} of the acting primary '{}' at {} restored onto '{}' in {:.1} s; '{}' \
         replicates from {} after that point",
        out.manifest.id,
        out.acting,
        out.manifest.point,
        out.node,
        out.restore_time.as_secs_f64(),
        out.node,
        out.source
    );
    let dir = ctx.step_dir(reseed::RESEED_DIR);
    let code = out.gate.exit_code();
    if code != EQUAL {
        print!(
            "{}",
            std::fs::read_to_string(dir.join("summary.txt")).unwrap_or_default()
        );
    }
    println!(
        "gate 4: {} ('{}' against '{}' at {}; {:.1} s in all); report and fix SQL: {}",
        out.gate.result.as_str(),
        out.node,
        out.acting,
        out.gate.downstream.snapshot,
        out.elapsed.as_secs_f64(),
        dir.display()
    );
    Ok(code)
}

async fn switchover_cmd(
    common: &Common,
    opts: &SwitchoverOptions,
    json: bool,
) -> anyhow::Result<i32> {
    let ctx = context(common)?;
    let plan = switchover::plan(&ctx, opts).await?;
    if ctx.dry_run {
        for line in plan {
            println!("{line}");
        }
        return Ok(EQUAL);
    }
    tracing::info!(config = ?ctx.config, "dr switchover");
    let report = switchover::run(&ctx, opts).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", switchover::render_text(&report));
    }
    Ok(report.exit_code())
}

async fn status_cmd(common: &Common, json: bool) -> anyhow::Result<i32> {
    let ctx = context(common)?;
    let report = syncgate::dr::status::gather(&ctx).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", syncgate::dr::status::render_text(&report));
    }
    Ok(EQUAL)
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
