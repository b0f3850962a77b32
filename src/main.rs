//! The `syncgate` binary: argument parsing, logging, the runtime, and mapping outcomes to
//! exit codes (0 equal, 1 differences, 2 error). All real work lives in the library.

mod dr_cli;
mod drill;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use syncgate::config::Config;
use syncgate::exit::{DIFFERENT as EXIT_DIFFERENT, EQUAL as EXIT_EQUAL, ERROR as EXIT_ERROR};
use syncgate::job::{job_from_config, Overrides};
use syncgate::playground::{self, PlaygroundOptions};
use syncgate::report::progress::Progress;
use syncgate::report::{render_terminal, write_summary, RunReport};
use syncgate::storage;
use syncgate::testdata::{run_load_with, LoadCounters, LoadOptions};

#[derive(Parser)]
#[command(
    name = "syncgate",
    version,
    about = "Verify that two MySQL-protocol databases hold the same data, and repair the downstream",
    after_help = "Exit codes: 0 all equal, 1 differences found, 2 error, 130/143 stopped by \
                  SIGINT/SIGTERM (checkpoint written; continue with --resume)."
)]
struct Cli {
    /// Check the command line and load the config it names (secrets resolved), then exit 0
    /// without connecting anywhere: for validating deployment manifests.
    #[arg(long)]
    validate_only: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compare upstream and downstream as described by a sync-diff-inspector style config.
    Check(CheckArgs),
    /// Local upstream/downstream MariaDB servers to try syncgate on.
    Playground {
        #[command(subcommand)]
        action: PlaygroundAction,
    },
    /// One-command tour: start the playground, drift the downstream, check, show fix SQL.
    Demo(DemoArgs),
    /// The DR flow: backup, restore and the gates after each step (config with [dr]).
    Dr {
        #[command(subcommand)]
        action: dr_cli::DrAction,
    },
    /// Reports of scheduled checks kept in `[task] report-storage`.
    Report {
        #[command(subcommand)]
        action: ReportAction,
    },
}

#[derive(Args)]
struct CheckArgs {
    /// Configuration file (sync-diff-inspector TOML).
    #[arg(short = 'C', long = "config")]
    config: PathBuf,
    /// Log level on stderr (error, warn, info, debug, trace).
    #[arg(short = 'L', long = "log-level", default_value = "warn")]
    log_level: String,
    /// Overrides `check-thread-count`.
    #[arg(long)]
    check_thread_count: Option<usize>,
    /// Overrides `export-fix-sql`.
    #[arg(long)]
    export_fix_sql: Option<bool>,
    /// Compare structure only.
    #[arg(long)]
    check_struct_only: bool,
    /// Skip the structure comparison.
    #[arg(long)]
    check_data_only: bool,
    /// Report tables missing on one side as skipped instead of failing.
    #[arg(long)]
    skip_non_existing_table: bool,
    /// Overrides `task.output-dir`.
    #[arg(long)]
    output_dir: Option<PathBuf>,
    /// Execute the fix SQL on the downstream (in transactions) and re-check the fixed ranges.
    #[arg(long)]
    apply_fix: bool,
    /// Continue an interrupted run from the checkpoint in the output directory (same
    /// configuration required). Without it an existing checkpoint is discarded.
    #[arg(long)]
    resume: bool,
    /// Refuse to start while another run holds the lock (a lease in `[task] report-storage`,
    /// or in the output directory): exit 4.
    #[arg(long)]
    lock: bool,
    /// Stop at the next chunk boundary after this long (e.g. `30m`, `2h`), with the
    /// checkpoint written: exit 3, continue with `--resume`.
    #[arg(long, value_parser = humantime::parse_duration)]
    max_runtime: Option<std::time::Duration>,
    /// Write Prometheus metrics of the run to this file (node_exporter's textfile
    /// collector), replaced atomically at the end of every run.
    #[arg(long)]
    metrics_file: Option<PathBuf>,
    /// Check only this process's share of the tables: `I/N` (0-based), or `N` with `I` from
    /// `JOB_COMPLETION_INDEX` (a Kubernetes Indexed Job). `report merge` joins the shares.
    #[arg(long)]
    shard: Option<String>,
    /// Publish to `[task] report-storage` as run ID (e.g. a Kubernetes Job's name) instead
    /// of `<start time>-<pid>`; with `--shard I/N`, as the part `runs/ID/shard-I-of-N/` of
    /// that run, for `report merge --run ID`.
    #[arg(long, env = "SYNCGATE_RUN_ID", value_name = "ID")]
    run_id: Option<String>,
    /// With `--shard` and `--run-id`: after publishing its part, the shard that finds every
    /// part published joins them into the run's report (as `report merge --run ID` does).
    #[arg(long, requires_all = ["shard", "run_id"])]
    merge: bool,
}

#[derive(Subcommand)]
enum ReportAction {
    /// The runs published to `[task] report-storage`, oldest first.
    History {
        /// Configuration file naming `[task] report-storage`.
        #[arg(short = 'C', long = "config")]
        config: PathBuf,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Join the shards of one check (`check --shard I/N`) into one report and one set of
    /// fix SQL files, as a single run would have written them: from the shards' output
    /// directories, or with `--run ID` from report-storage (then published as that run).
    #[command(
        after_help = "Exit codes: the joined report's: 0 all equal, 1 differences \
                            found, 2 error (also: a shard's report is missing)."
    )]
    Merge {
        /// Where the joined summary and fix SQL go.
        #[arg(long)]
        output_dir: PathBuf,
        /// The run whose shards published their parts (`check --shard I/N --run-id ID`).
        #[arg(long, value_name = "ID", requires = "config")]
        run: Option<String>,
        /// Configuration file naming `[task] report-storage` (with `--run`).
        #[arg(short = 'C', long = "config", requires = "run")]
        config: Option<PathBuf>,
        /// The shards' output directories.
        #[arg(required_unless_present = "run", conflicts_with = "run")]
        shards: Vec<PathBuf>,
    },
}

#[derive(Args, Clone)]
struct PlaygroundArgs {
    /// Directory holding the servers' data.
    #[arg(long, default_value = ".playground")]
    dir: PathBuf,
    /// Number of sysbench-shaped tables.
    #[arg(long, default_value_t = 4)]
    tables: u32,
    /// Rows per table.
    #[arg(long, default_value_t = 100_000)]
    rows: u64,
    /// Where to write the ready-made config (the DR config goes next to it, as
    /// NAME-dr.toml).
    #[arg(long, default_value = "configs/playground.toml")]
    config_path: PathBuf,
    /// Port of the local S3 server [default: 6060, or a free port when 6060 is taken]; a port
    /// given here must be free.
    #[arg(long, conflicts_with = "no_s3")]
    s3_port: Option<u16>,
    /// Start no S3 server; the DR config keeps backups in DIR/backups.
    #[arg(long)]
    no_s3: bool,
    /// The DR topology: also an empty spare server (`[data-sources.spare]` in the DR
    /// config) for `dr reseed --new-primary spare`.
    #[arg(long)]
    dr: bool,
    /// Port of the spare server (with --dr).
    #[arg(long, default_value_t = 3309, requires = "dr")]
    spare_port: u16,
}

#[derive(Subcommand)]
enum PlaygroundAction {
    /// Start both servers and seed identical data; start a local S3 server; write a config
    /// and a DR config.
    Up(PlaygroundArgs),
    /// Stop the servers (the spare of `up --dr` too), the S3 server, and a `dr archive`
    /// running on the playground's DR config.
    Down {
        #[arg(long, default_value = ".playground")]
        dir: PathBuf,
        /// Also delete the data directory.
        #[arg(long)]
        purge: bool,
    },
    /// Show whether the servers run, their GTID positions and row counts; the S3 server.
    Status {
        #[arg(long, default_value = ".playground")]
        dir: PathBuf,
    },
    /// Change a few rows on the downstream only (without binlogging) and print the truth.
    Drift {
        #[arg(long, default_value = ".playground")]
        dir: PathBuf,
        /// Rows deleted, inserted and changed per kind.
        #[arg(long, default_value_t = 5)]
        rows: u64,
    },
    /// Write to the upstream's sbtest tables like sysbench oltp_write_only, at a fixed rate.
    #[command(
        after_help = "Runs for --seconds, or until SIGINT/SIGTERM. Either way it ends with a \
                      one-line summary and exit code 0: stopping the load is how it is meant \
                      to end. Exit code 2 if the load failed."
    )]
    Load(LoadArgs),
    /// The playground's S3 server (started detached by `playground up`).
    #[command(hide = true)]
    S3Server {
        /// The directory served.
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        port: u16,
        /// JSON file holding the key pair.
        #[arg(long)]
        credentials: PathBuf,
    },
}

#[derive(Args)]
struct LoadArgs {
    #[arg(long, default_value = ".playground")]
    dir: PathBuf,
    /// Transactions per second, in total (0: as fast as the connections go).
    #[arg(long)]
    tps: u32,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    seconds: Option<u64>,
    /// Connections sharing the load.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    connections: u16,
}

#[derive(Args)]
struct DemoArgs {
    #[command(flatten)]
    playground: PlaygroundArgs,
    /// Rows deleted, inserted and changed downstream.
    #[arg(long, default_value_t = 5)]
    drift: u64,
    /// Stop a playground that is up and delete its data before the tour, without asking
    /// (on a terminal the demo asks; elsewhere it refuses without this flag).
    #[arg(long)]
    reset: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR as u8);
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<syncgate::Error>() {
                Some(e) => e.exit_code(),
                None => EXIT_ERROR,
            }
        }
    };
    ExitCode::from(code as u8)
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    if cli.validate_only {
        validate_only(&cli.command)?;
        return Ok(EXIT_EQUAL);
    }
    match cli.command {
        Command::Check(args) => check(args).await,
        Command::Playground { action } => playground_cmd(action).await,
        Command::Demo(args) => demo(args).await,
        Command::Dr { action } => dr_cli::run(action).await,
        Command::Report { action } => report_cmd(action).await,
    }
}

/// stderr gets `level`; the log file in the output directory gets `info` and up (appended to
/// when `append`, so a resumed run keeps the interrupted run's log).
fn init_logging(level: &str, log_file: Option<&Path>, append: bool) -> anyhow::Result<()> {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{fmt, EnvFilter};
    let stderr_filter =
        EnvFilter::try_new(level).with_context(|| format!("invalid log level '{level}'"))?;
    let stderr_layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(stderr_filter);
    let file_layer = match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(append)
                .truncate(!append)
                .open(path)
                .with_context(|| format!("cannot create log file {}", path.display()))?;
            Some(
                fmt::layer()
                    .with_writer(std::sync::Mutex::new(file))
                    .with_ansi(false)
                    .with_filter(EnvFilter::new("info")),
            )
        }
        None => None,
    };
    let _ = tracing_subscriber::registry()
        .with(stderr_layer)
        .with(file_layer)
        .try_init();
    Ok(())
}

/// `--validate-only`: what a command checks before it connects anywhere.
fn validate_only(command: &Command) -> anyhow::Result<()> {
    match command {
        Command::Check(args) => {
            let config = Config::from_file(&args.config)?;
            let overrides = check_overrides(args)?;
            check_run_args(args, &config)?;
            job_from_config(&config, &overrides)?;
        }
        Command::Report {
            action: ReportAction::History { config, .. },
        } => {
            report_storage_uri(&Config::from_file(config)?)?;
        }
        Command::Report {
            action: ReportAction::Merge { run, config, .. },
        } => {
            if let Some(run) = run {
                syncgate::runs::check_run_id(run)?;
            }
            if let Some(config) = config {
                report_storage_uri(&Config::from_file(config)?)?;
            }
        }
        Command::Dr { .. } | Command::Playground { .. } | Command::Demo(_) => {}
    }
    Ok(())
}

/// The command-line overrides of `check`.
fn check_overrides(args: &CheckArgs) -> anyhow::Result<Overrides> {
    Ok(Overrides {
        check_thread_count: args.check_thread_count,
        export_fix_sql: args.export_fix_sql,
        check_struct_only: args.check_struct_only,
        check_data_only: args.check_data_only,
        skip_non_existing_table: args.skip_non_existing_table,
        output_dir: args.output_dir.clone(),
        apply_fix: args.apply_fix,
        resume: args.resume,
        shard: args.shard.as_deref().map(parse_shard).transpose()?,
    })
}

/// `--run-id` and `--merge` name a run in report-storage: the config must set one.
fn check_run_args(args: &CheckArgs, config: &Config) -> anyhow::Result<()> {
    if let Some(id) = &args.run_id {
        syncgate::runs::check_run_id(id).context("--run-id")?;
        report_storage_uri(config).context("--run-id names a run in report-storage")?;
    }
    Ok(())
}

/// The config's `[task] report-storage`, parsed.
fn report_storage_uri(config: &Config) -> anyhow::Result<storage::StorageUri> {
    let Some(uri) = config.task.report_storage.as_ref().and_then(|u| u.get()) else {
        anyhow::bail!("the config sets no [task] report-storage");
    };
    Ok(storage::StorageUri::parse(uri)?)
}

async fn check(args: CheckArgs) -> anyhow::Result<i32> {
    let config = Config::from_file(&args.config)?;
    let overrides = check_overrides(&args)?;
    check_run_args(&args, &config)?;
    let output_dir = args
        .output_dir
        .clone()
        .unwrap_or_else(|| config.task.output_dir.clone());
    let report_store = match config.task.report_storage.as_ref().and_then(|u| u.get()) {
        Some(uri) => Some(storage::open(&storage::StorageUri::parse(uri)?).await?),
        None => None,
    };
    let lease = match args.lock {
        false => None,
        true => match take_check_lock(&args, report_store.clone(), &output_dir).await? {
            Ok(lease) => Some(lease),
            Err(held) => {
                eprintln!("error: {held}; this run did not start");
                return Ok(syncgate::exit::LOCKED);
            }
        },
    };
    let outcome = run_config_report(&config, &overrides, &args.log_level, args.max_runtime).await;
    let code = match &outcome {
        Ok(report) => report.exit_code(),
        Err(e) => match e.downcast_ref::<syncgate::Error>() {
            Some(e) => e.exit_code(),
            None => EXIT_ERROR,
        },
    };
    let report = outcome.as_ref().ok();
    if let (Some(store), Some(report)) = (&report_store, report) {
        let published = syncgate::runs::publish(
            store.as_ref(),
            report,
            &output_dir,
            args.run_id.as_deref(),
            overrides.shard,
        )
        .await;
        match published {
            Ok(prefix) => {
                tracing::info!("report published to {}/{prefix}/", store.location());
                if let (true, Some(id)) = (args.merge, &args.run_id) {
                    merge_if_last(store.as_ref(), id, &output_dir.join("merged")).await;
                }
            }
            Err(e) => {
                eprintln!("error: the run's report could not be published: {e}");
                tracing::error!("the run's report could not be published: {e}");
            }
        }
    }
    if let Some(path) = &args.metrics_file {
        write_metrics(path, report, code)?;
    }
    if let Some(lease) = lease {
        if let Err(e) = lease.release().await {
            tracing::warn!("cannot release the run's lock: {e}");
        }
    }
    match outcome {
        Ok(report) => Ok(report.exit_code()),
        Err(e) => match e.downcast_ref::<syncgate::Error>() {
            // Not a failure: the run was stopped at a safe point, and it can go on.
            Some(syncgate::Error::Interrupted { signal }) => {
                eprintln!(
                    "syncgate: stopped by {signal}; the checkpoint keeps the finished chunks \
                     and nothing is held on the servers. Continue with:\n  {}",
                    resume_command(&args)
                );
                Ok(signal.exit_code())
            }
            _ => Err(e),
        },
    }
}

/// `check --merge`: join the run's shards when every part is published (this shard was the
/// last); otherwise leave it to the shard that will be. This shard's exit code stands.
async fn merge_if_last(store: &dyn storage::ObjectStore, id: &str, output_dir: &Path) {
    match syncgate::runs::merge_run(store, id, output_dir).await {
        Ok(merged) => {
            println!(
                "merged the shards of run {id}: {} (report in {}/{}/)",
                merged.result,
                store.location(),
                syncgate::runs::run_prefix(id, None)
            );
            tracing::info!("merged the shards of run {id}: {}", merged.result);
        }
        Err(syncgate::Error::Runs(syncgate::runs::RunsError::MissingShards {
            missing, ..
        })) => {
            tracing::info!(
                "{} shards of run {id} have not published yet; the last one merges",
                missing.len()
            );
        }
        Err(e) => {
            eprintln!("error: the shards of run {id} could not be merged: {e}");
            tracing::error!("the shards of run {id} could not be merged: {e}");
        }
    }
}

/// `check --lock`: a lease in report-storage (shared by schedulers on several machines), or
/// in the output directory. `Ok(Err(message))` when another live run holds it.
async fn take_check_lock(
    args: &CheckArgs,
    report_store: Option<std::sync::Arc<dyn storage::ObjectStore>>,
    output_dir: &Path,
) -> anyhow::Result<Result<storage::Lease, String>> {
    let store = match report_store {
        Some(s) => s,
        None => std::sync::Arc::new(storage::LocalStore::open(output_dir).await?),
    };
    let command = format!("check -C {}", args.config.display());
    // The shards of one check run at once: each holds its own lock.
    let key = match &args.shard {
        Some(shard) => format!(
            "syncgate.shard-{}.lock",
            parse_shard(shard)?.to_string().replace('/', "-of-")
        ),
        None => syncgate::runs::LOCK_KEY.to_string(),
    };
    match storage::Lease::acquire(store, &key, &command).await {
        Ok(lease) => {
            if let Some(old) = lease.took_over() {
                eprintln!(
                    "note: took over the lock of a run that is gone: {}",
                    old.describe()
                );
            }
            Ok(Ok(lease))
        }
        Err(e @ (storage::LeaseError::Held { .. } | storage::LeaseError::Raced { .. })) => {
            Ok(Err(e.to_string()))
        }
        Err(storage::LeaseError::Storage(e)) => Err(e.into()),
    }
}

/// Replace the metrics textfile atomically (a collector never reads half a file).
fn write_metrics(path: &Path, report: Option<&RunReport>, code: i32) -> anyhow::Result<()> {
    let previous = std::fs::read_to_string(path).unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let text = syncgate::report::metrics::render(report, code, now, &previous);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write the metrics file {}", path.display()))
}

/// `I/N`, or `N` with the index from `JOB_COMPLETION_INDEX`.
fn parse_shard(text: &str) -> anyhow::Result<syncgate::check::Shard> {
    let spec = if text.contains('/') {
        text.to_string()
    } else {
        let index = std::env::var("JOB_COMPLETION_INDEX").map_err(|_| {
            anyhow::anyhow!(
                "--shard {text} takes the index from JOB_COMPLETION_INDEX, which is not set; \
                 give it as --shard INDEX/{text}"
            )
        })?;
        format!("{index}/{text}")
    };
    syncgate::check::Shard::parse(&spec).map_err(|e| anyhow::anyhow!("--shard: {e}"))
}

async fn report_cmd(action: ReportAction) -> anyhow::Result<i32> {
    let (config, json) = match action {
        ReportAction::History { config, json } => (config, json),
        ReportAction::Merge {
            output_dir,
            run: Some(run),
            config: Some(config),
            ..
        } => {
            syncgate::runs::check_run_id(&run).context("--run")?;
            let config = Config::from_file(&config)?;
            let store = storage::open(&report_storage_uri(&config)?).await?;
            let report = syncgate::runs::merge_run(store.as_ref(), &run, &output_dir).await?;
            print!("{}", render_terminal(&report));
            println!(
                "merged report published to {}/{}/",
                store.location(),
                syncgate::runs::run_prefix(&run, None)
            );
            return Ok(report.exit_code());
        }
        ReportAction::Merge {
            output_dir, shards, ..
        } => {
            let report = syncgate::runs::merge_dirs(&shards, &output_dir)?;
            print!("{}", render_terminal(&report));
            return Ok(report.exit_code());
        }
    };
    let config = Config::from_file(&config)?;
    let uri = report_storage_uri(&config).context("no runs are published")?;
    let store = storage::open(&uri).await?;
    let entries = syncgate::runs::history(store.as_ref()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else {
        print!("{}", syncgate::runs::render_history(&entries));
    }
    Ok(EXIT_EQUAL)
}

/// The command line that continues an interrupted check: this one with `--resume`.
fn resume_command(args: &CheckArgs) -> String {
    let mut words: Vec<String> = std::env::args().collect();
    if words.is_empty() {
        words = vec!["syncgate".into(), "check".into(), "-C".into()];
        words.push(args.config.display().to_string());
    }
    if !words.iter().any(|w| w == "--resume") {
        words.push("--resume".into());
    }
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quote a word for a POSIX shell when it needs it.
fn shell_quote(w: &str) -> String {
    let plain = !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// Run a check for `config` and print/write its results; returns the exit code.
async fn run_config(
    config: &Config,
    overrides: &Overrides,
    log_level: &str,
) -> anyhow::Result<i32> {
    Ok(run_config_report(config, overrides, log_level, None)
        .await?
        .exit_code())
}

/// Run a check for `config` (stopped at a safe point after `max_runtime`), write its
/// summary and print it; returns the report.
async fn run_config_report(
    config: &Config,
    overrides: &Overrides,
    log_level: &str,
    max_runtime: Option<std::time::Duration>,
) -> anyhow::Result<RunReport> {
    let job = job_from_config(config, overrides)?;
    let output_dir = job.output_dir.clone();
    std::fs::create_dir_all(&output_dir)
        .with_context(|| format!("cannot create output directory {}", output_dir.display()))?;
    init_logging(
        log_level,
        Some(&output_dir.join("syncgate.log")),
        overrides.resume,
    )?;
    let mut job = job;
    job.interrupt = syncgate::interrupt::Interrupt::on_signals()
        .context("cannot install the SIGINT/SIGTERM handlers")?;
    if let Some(limit) = max_runtime {
        job.interrupt = job.interrupt.with_deadline(limit);
    }
    tracing::info!(config = ?config, "starting check");
    let progress = Progress::new(0, std::io::stderr().is_terminal());
    let report = syncgate::check::run_check(job, progress).await?;
    finish_report(&report, &output_dir)?;
    Ok(report)
}

fn finish_report(report: &RunReport, output_dir: &Path) -> anyhow::Result<i32> {
    write_summary(report, output_dir)?;
    print!("{}", render_terminal(report));
    let code = report.exit_code();
    match code {
        EXIT_EQUAL => tracing::info!("check passed: all tables equal"),
        EXIT_DIFFERENT => tracing::warn!("check failed: differences found"),
        _ => tracing::error!("check failed with errors"),
    }
    Ok(code)
}

fn playground_options(a: &PlaygroundArgs) -> anyhow::Result<PlaygroundOptions> {
    let s3 = if a.no_s3 {
        None
    } else {
        let program = std::env::current_exe()
            .context("cannot find the syncgate executable to start the S3 server")?;
        Some(playground::S3Options {
            program,
            port: a.s3_port,
        })
    };
    Ok(PlaygroundOptions {
        dir: a.dir.clone(),
        tables: a.tables,
        rows: a.rows,
        config_path: a.config_path.clone(),
        s3,
        spare_port: a.dr.then_some(a.spare_port),
        ..PlaygroundOptions::default()
    })
}

async fn playground_cmd(action: PlaygroundAction) -> anyhow::Result<i32> {
    if let PlaygroundAction::Load(a) = action {
        return playground_load(a).await;
    }
    init_logging("info", None, false)?;
    match action {
        PlaygroundAction::Up(a) => {
            let up = playground::up(&playground_options(&a)?).await?;
            println!("{up}");
        }
        PlaygroundAction::Down { dir, purge } => {
            let down = playground::down(&dir, purge).await?;
            println!("playground stopped ({down})");
        }
        PlaygroundAction::S3Server {
            root,
            port,
            credentials,
        } => {
            let creds = syncgate::local::S3Credentials::read(&credentials)?;
            syncgate::local::s3::serve_forever(&root, port, &creds.access_key, &creds.secret_key)
                .await?;
        }
        PlaygroundAction::Status { dir } => {
            println!("{}", playground::status(&dir).await?);
        }
        PlaygroundAction::Drift { dir, rows } => {
            let truth = playground::inject_drift(
                &dir,
                &playground::DriftSpec {
                    missing: rows,
                    extra: rows,
                    changed: rows,
                    ..Default::default()
                },
            )
            .await?;
            println!("{truth}");
        }
        PlaygroundAction::Load(_) => unreachable!("handled above"),
    }
    Ok(EXIT_EQUAL)
}

/// `playground load`: progress as a spinner on a TTY (the library's progress lines, at info
/// level, otherwise), then one summary line on stdout.
async fn playground_load(a: LoadArgs) -> anyhow::Result<i32> {
    let tty = std::io::stderr().is_terminal();
    init_logging(if tty { "warn" } else { "info" }, None, false)?;
    let (opts, tables) = playground::load_target(&a.dir).await?;
    let load = LoadOptions {
        tps: a.tps,
        duration: a.seconds.map(std::time::Duration::from_secs),
        tables,
        connections: usize::from(a.connections),
        seed: 0,
    };
    let interrupt = syncgate::interrupt::Interrupt::on_signals()
        .context("cannot install the SIGINT/SIGTERM handlers")?;
    let counters = LoadCounters::default();
    let spinner = tty.then(|| tokio::spawn(load_spinner(counters.clone())));
    let result = run_load_with(&opts, &load, &interrupt, &counters).await;
    if let Some(spinner) = spinner {
        spinner.abort();
        let _ = spinner.await;
    }
    let stats = result?;
    let stopped = interrupt
        .fired()
        .map_or(String::new(), |s| format!(" (stopped by {s})"));
    println!(
        "load: {} transactions in {:.1}s, {:.1} TPS (target {}), {} errors, {} retried{stopped}",
        stats.transactions,
        stats.elapsed.as_secs_f64(),
        stats.achieved_tps(),
        a.tps,
        stats.errors,
        stats.retried
    );
    Ok(EXIT_EQUAL)
}

/// A spinner showing the total and the rate over the last second, until aborted (which
/// clears it).
async fn load_spinner(counters: LoadCounters) {
    let bar = indicatif::ProgressBar::new_spinner();
    struct Clear(indicatif::ProgressBar);
    impl Drop for Clear {
        fn drop(&mut self) {
            self.0.finish_and_clear();
        }
    }
    let bar = Clear(bar);
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut last = counters.stats();
    loop {
        every.tick().await;
        let now = counters.stats();
        let secs = now.elapsed.saturating_sub(last.elapsed).as_secs_f64();
        let tps = (now.transactions - last.transactions) as f64 / secs.max(1e-3);
        bar.0.set_message(format!(
            "load: {} transactions, {tps:.0} TPS now, {} errors, {} retried",
            now.transactions, now.errors, now.retried
        ));
        bar.0.tick();
        last = now;
    }
}

/// Asks `question` on stderr; true only for an answer starting with `y`.
fn confirm(question: &str) -> bool {
    use std::io::Write;
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok()
        && answer.trim_start().to_ascii_lowercase().starts_with('y')
}

async fn demo(args: DemoArgs) -> anyhow::Result<i32> {
    let opts = playground_options(&args.playground)?;
    // A tour starts from identical data: drift from an earlier run would add up. Resetting
    // deletes data, so it is asked for, never assumed.
    if playground::status(&opts.dir).await.is_ok_and(|s| s.is_up()) {
        let question = format!(
            "The playground in {} is up; the demo stops it and deletes its data. Continue? [y/N] ",
            opts.dir.display()
        );
        let reset = args.reset
            || (std::io::stdin().is_terminal()
                && tokio::task::spawn_blocking(move || confirm(&question)).await?);
        if !reset {
            anyhow::bail!(
                "the playground in {} is up and holds data; pass --reset to delete it and start \
                 the demo over, or stop it with `syncgate playground down --purge`",
                opts.dir.display()
            );
        }
        println!("== resetting the playground in {} ==", opts.dir.display());
        playground::down(&opts.dir, true).await?;
    }
    println!("== starting the playground (two local MariaDB servers) ==");
    let up = playground::up(&opts).await?;
    println!("{up}");
    println!("== drifting the downstream (deletes, inserts, updates without binlog) ==");
    let truth = playground::inject_drift(
        &opts.dir,
        &playground::DriftSpec {
            missing: args.drift,
            extra: args.drift,
            changed: args.drift,
            ..Default::default()
        },
    )
    .await?;
    println!("{truth}");
    println!("== syncgate check -C {} ==", opts.config_path.display());
    let config = Config::from_file(&opts.config_path)?;
    let code = run_config(&config, &Overrides::default(), "warn").await?;
    let fix_dir = config
        .task
        .output_dir
        .join(format!("fix-on-{}", config.task.target_instance));
    if let Ok(entries) = std::fs::read_dir(&fix_dir) {
        let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        if let Some(first) = files.first() {
            println!(
                "== fix SQL (first of {} files: {}) ==",
                files.len(),
                first.display()
            );
            let text = std::fs::read_to_string(first).unwrap_or_default();
            for line in text.lines().take(40) {
                println!("{line}");
            }
        }
    }
    println!(
        "Apply the fixes with `syncgate check -C {} --apply-fix`; stop the servers with \
         `syncgate playground down`.",
        opts.config_path.display()
    );
    Ok(code)
}
