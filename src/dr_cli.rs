//! `syncgate dr …`: the DR flow's commands (argument parsing and printing only; the steps
//! live in `syncgate::dr`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use syncgate::config::Config;
use syncgate::dr::archive;
use syncgate::dr::backup::{self, BackupOptions};
use syncgate::dr::failover::{self, FailoverOptions};
use syncgate::dr::replicate::{self, ReplicateOptions};
use syncgate::dr::restore::{self, RestoreOptions};
use syncgate::dr::verify;
use syncgate::dr::DrContext;
use syncgate::exit::{DIFFERENT, EQUAL};

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
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
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
        DrAction::Replicate { common, again } => replicate_cmd(&common, again).await,
        DrAction::Verify { common, json } => {
            let ctx = context(&common)?;
            verify_cmd(&ctx, json).await
        }
        DrAction::Archive {
            common,
            flush_interval,
            start_gtid,
        } => archive_cmd(&common, flush_interval, start_gtid).await,
        DrAction::Status { common, json } => status_cmd(&common, json).await,
        DrAction::Failover {
            common,
            again,
            json,
        } => failover_cmd(&common, again, json).await,
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

async fn backup_cmd(common: &Common, again: bool) -> anyhow::Result<i32> {
    let ctx = context(common)?;
    if ctx.dry_run {
        for line in backup::plan(&ctx).await? {
            println!("{line}");
        }
        return Ok(EQUAL);
    }
    tracing::info!(config = ?ctx.config, "dr backup");
    let out = backup::run(&ctx, &BackupOptions { again }).await?;
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
    let ctx = context(common)?;
    if ctx.dry_run {
        for line in restore::plan(&ctx, opts).await? {
            println!("{line}");
        }
        return Ok(EQUAL);
    }
    tracing::info!(config = ?ctx.config, "dr restore");
    let out = restore::run(&ctx, opts).await?;
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
) -> anyhow::Result<i32> {
    let ctx = context(common)?;
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
        syncgate::interrupt::Signal::Terminate => EQUAL,
        s => s.exit_code(),
    })
}

async fn replicate_cmd(common: &Common, again: bool) -> anyhow::Result<i32> {
    let ctx = context(common)?;
    let plan = replicate::plan(&ctx).await?;
    for line in &plan {
        println!("{line}");
    }
    if ctx.dry_run {
        return Ok(EQUAL);
    }
    tracing::info!(config = ?ctx.config, "dr replicate");
    let out = replicate::run(&ctx, &ReplicateOptions { again }).await?;
    println!(
        "replication runs: '{}' replicates from {} starting after GTID {} ({:.1} s)",
        ctx.dr.secondary,
        out.source,
        out.gtid,
        out.elapsed.as_secs_f64()
    );
    verify_cmd(&ctx, false).await
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

async fn failover_cmd(common: &Common, again: bool, json: bool) -> anyhow::Result<i32> {
    let ctx = context(common)?;
    if ctx.dry_run {
        for line in failover::plan(&ctx).await? {
            println!("{line}");
        }
        return Ok(EQUAL);
    }
    tracing::info!(config = ?ctx.config, "dr failover");
    let report = failover::run(&ctx, &FailoverOptions { again }).await?;
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

async fn status_cmd(common: &Common, json: bool) -> anyhow::Result<i32> {
    let ctx = context(common)?;
    let report = syncgate::dr::status::gather(&ctx).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", syncgate::dr::status::render_text(&report));
    }
    if ctx.dr.redo_storage.is_some() && !json {
        let redo = archive::redo_store(&ctx).await?;
        for line in archive::status_lines(redo.as_ref()).await? {
            println!("{line}");
        }
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
