//! `syncgate dr drill`: the seed's whole DR flow rehearsed on local servers under a steady
//! write load, with a simulated disaster — backup → restore (gate 1) → replicate with the
//! binlog archive (gate 2, several times) → the primary killed with SIGKILL → failover
//! (gate 3) → reseed onto a spare node (gate 4) → switchover (its gate) → a final gate at a
//! GTID fence between the new primary and its replica.
//!
//! Each step is the operator's own command (`syncgate dr …` run as a subprocess on the
//! drill's config), so the drill exercises what an operator runs. The writer appends a
//! ledger (1, 2, 3, …) through a user without SUPER, so `read_only` freezes it as it would
//! an application; the ledger after the failover tells the data lost, and at the end it
//! must be gap-free. The timeline, the recovery point, the time to a writable secondary and
//! the switchover's write freeze go to `drill.txt` and `drill.json` (docs/dr.md).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use mysql_async::prelude::Queryable;
use serde::Serialize;
use syncgate::local::{LocalS3, LocalServer, ServerOptions};
use syncgate::testdata::LedgerWriter;

/// `dr drill` options.
#[derive(Args, Clone)]
pub struct DrillArgs {
    /// Directory for the drill's config, storage, logs and reports; replaced by each drill.
    #[arg(long, default_value = ".drill")]
    dir: PathBuf,
    /// Write transactions per second (each one ledger row).
    #[arg(long, default_value_t = 100)]
    tps: u64,
    /// sbtest tables on the primary.
    #[arg(long, default_value_t = 4)]
    tables: u32,
    /// Rows per sbtest table.
    #[arg(long, default_value_t = 10_000)]
    rows: u64,
    /// Gate 2 runs while replication and the archive run.
    #[arg(long, default_value_t = 3)]
    gate2_runs: u32,
    /// Leave the servers up after the drill (until Ctrl-C), to look around.
    #[arg(long)]
    keep: bool,
}

/// Marks a directory as a drill's, so a rerun may replace it.
const MARKER: &str = ".syncgate-drill";
const LEDGER: &str = "sbtest.ledger";

/// One line of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub step: String,
    /// Milliseconds from the drill's start.
    pub started_ms: u64,
    pub duration_ms: u64,
    /// The command's exit code (none for what the drill does itself).
    pub exit: Option<i32>,
    /// `equal`, `different` or `error` for steps with a gate.
    pub gate: Option<String>,
    /// The point the step produced or was read at.
    pub point: Option<String>,
    pub note: String,
}

/// `drill.json`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct DrillReport {
    /// `passed` when every step succeeded, every gate was equal and the ledger is gap-free.
    pub result: String,
    pub tps: u64,
    pub tables: u32,
    pub rows: u64,
    pub timeline: Vec<Entry>,
    /// Ledger rows whose COMMIT the primary acknowledged before it was killed.
    pub acknowledged_before_kill: u64,
    /// The write rate the primary sustained until then (transactions per second).
    pub achieved_tps: f64,
    /// Ledger rows on the secondary after the failover (a gap-free prefix 1..=n).
    pub recovered: u64,
    /// Acknowledged transactions not recovered (the data lost).
    pub data_lost_transactions: u64,
    /// Commit time of the last recovered transaction.
    pub recovery_point: Option<String>,
    /// From the failover's start to a writable secondary.
    pub writable_after_ms: Option<u64>,
    /// The switchover's write freeze, as `dr switchover` timed it.
    pub switchover_freeze_ms: Option<u64>,
    /// The longest time the writer waited between two commits during the switchover.
    pub writer_longest_wait_ms: Option<u64>,
    /// Ledger rows on the final primary, and whether they are exactly 1..=n.
    pub ledger_rows: u64,
    pub ledger_gap_free: bool,
    /// The binlog archive from the backup point: its transactions (no gap, none twice),
    /// how many servers' binlogs they came from (it follows the writes through the
    /// failover and the switchover), and whether it ends at the final primary's position.
    pub archive_transactions: u64,
    pub archive_sources: u64,
    pub archive_complete: bool,
    /// Why the drill did not pass.
    pub failure: Option<String>,
}

/// Run the drill; the exit code: 0 passed, 1 a gate found differences or the ledger has a
/// gap, 2 a step failed.
pub async fn run(args: DrillArgs) -> anyhow::Result<i32> {
    let dir = prepare_dir(&args.dir)?;
    println!("drill in {}", dir.display());
    let mut d = Drill::start(&args, &dir).await?;
    let outcome = d.rehearse().await;
    let code = d.finish(outcome)?;
    if args.keep {
        println!("servers kept up (Ctrl-C to stop them):");
        for (name, s) in d.servers() {
            println!("  {name}: {}", s.url());
        }
        println!("  S3: {}", d.s3.endpoint());
        tokio::signal::ctrl_c().await?;
    }
    d.s3.stop().await;
    Ok(code)
}

/// A fresh drill directory: created, or an earlier drill's emptied.
fn prepare_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        let is_drill = dir.join(MARKER).exists();
        let empty = std::fs::read_dir(dir)?.next().is_none();
        anyhow::ensure!(
            is_drill || empty,
            "{} exists and is not a drill's directory; pass another --dir",
            dir.display()
        );
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join("logs"))?;
    std::fs::write(dir.join(MARKER), "syncgate dr drill\n")?;
    Ok(std::fs::canonicalize(dir)?)
}

/// The drill's servers, storage, config and what it has recorded so far.
struct Drill {
    args: DrillArgs,
    dir: PathBuf,
    config: PathBuf,
    primary: LocalServer,
    secondary: LocalServer,
    spare: LocalServer,
    s3: LocalS3,
    started: Instant,
    report: DrillReport,
}

impl Drill {
    async fn start(args: &DrillArgs, dir: &Path) -> anyhow::Result<Drill> {
        let s3 = LocalS3::start(&dir.join("s3"), "drill", "drill-secret-key").await?;
        s3.create_bucket("backup")?;
        s3.create_bucket("redo")?;
        let server = |id: u32| ServerOptions {
            server_id: Some(id),
            log_bin: true,
            extra_args: vec!["--gtid-strict-mode=ON".into()],
            ..Default::default()
        };
        let (primary, secondary, spare) = tokio::try_join!(
            LocalServer::start(server(1)),
            LocalServer::start(server(2)),
            LocalServer::start(server(3)),
        )?;
        println!(
            "servers: primary {}, secondary {}, spare {}; S3 {}",
            primary.port(),
            secondary.port(),
            spare.port(),
            s3.endpoint()
        );
        syncgate::testdata::sbtest::seed_sbtest(&[primary.opts()], args.tables, args.rows, 7)
            .await?;
        exec(
            &primary,
            &format!(
                "CREATE TABLE {LEDGER} (seq BIGINT PRIMARY KEY, \
                 at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"
            ),
        )
        .await?;
        for s in [&primary, &secondary, &spare] {
            // Not SUPER: read_only stops it as it stops an application.
            exec(
                s,
                "SET sql_log_bin = 0; CREATE USER 'app'@'%' IDENTIFIED BY 'app'; \
                 GRANT ALL ON sbtest.* TO 'app'@'%'",
            )
            .await?;
        }
        let config = dir.join("dr.toml");
        std::fs::write(&config, dr_config(dir, [&primary, &secondary, &spare], &s3))?;
        Ok(Drill {
            args: args.clone(),
            dir: dir.to_path_buf(),
            config,
            primary,
            secondary,
            spare,
            s3,
            started: Instant::now(),
            report: DrillReport {
                tps: args.tps,
                tables: args.tables,
                rows: args.rows,
                ..Default::default()
            },
        })
    }

    fn servers(&self) -> [(&str, &LocalServer); 3] {
        [
            ("primary (killed)", &self.primary),
            ("secondary", &self.secondary),
            ("spare (the primary after the switchover)", &self.spare),
        ]
    }

    /// The flow, step by step; stops at the first step that fails or gate that differs.
    async fn rehearse(&mut self) -> anyhow::Result<()> {
        let writer = LedgerWriter::start(vec![app(&self.primary)], LEDGER, self.args.tps);
        let writing = Instant::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.step("backup", &["dr", "backup"], false).await?;
        self.step("restore, gate 1", &["dr", "restore"], true)
            .await?;
        self.step("replicate, gate 2", &["dr", "replicate"], true)
            .await?;
        let archiver = self.spawn("archive", &["dr", "archive", "-L", "info"])?;
        self.note(
            "archive started",
            "dr archive runs as a child, into redo-storage",
        );
        for i in 1..=self.args.gate2_runs {
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.step(&format!("gate 2 ({i})"), &["dr", "verify"], true)
                .await?;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;

        // The disaster.
        let t = self.now();
        self.primary.kill();
        let acknowledged = writer.stop().await.committed;
        self.report.acknowledged_before_kill = acknowledged;
        self.report.achieved_tps = acknowledged as f64 / writing.elapsed().as_secs_f64();
        self.push(Entry {
            step: "primary killed".into(),
            started_ms: t,
            duration_ms: 0,
            exit: None,
            gate: None,
            point: None,
            note: format!("SIGKILL under load; {acknowledged} ledger rows acknowledged"),
        });
        let t = self.now();
        let end = settle_archive(&self.config, archiver).await?;
        self.push(Entry {
            step: "archive settled".into(),
            started_ms: t,
            duration_ms: self.now() - t,
            exit: Some(0),
            gate: None,
            point: Some(end),
            note: "no new segment for 1.5 s; dr archive stopped with SIGTERM".into(),
        });

        let failover = self
            .step("failover, gate 3", &["dr", "failover", "--json"], true)
            .await?;
        let f: serde_json::Value = serde_json::from_str(&failover)
            .with_context(|| format!("dr failover --json printed no report: {failover}"))?;
        self.report.recovery_point = f["recovery_point"].as_str().map(str::to_string);
        self.report.writable_after_ms = f["writable_after_ms"].as_u64();
        let recovered = ledger(&self.secondary).await?;
        let n = recovered.len() as u64;
        anyhow::ensure!(
            is_prefix(&recovered),
            "the failed-over secondary's ledger is not 1..={n}: a transaction was applied \
             twice or skipped"
        );
        self.report.recovered = n;
        self.report.data_lost_transactions = acknowledged.saturating_sub(n);

        // The archiver follows the writes: the failed-over secondary, then the new primary.
        let archiver = self.spawn("archive (follows)", &["dr", "archive", "-L", "info"])?;
        self.note(
            "archive started again",
            "dr archive follows the writes to the acting primary, and through the switchover",
        );

        // The application follows the writable node from here on.
        let writer = LedgerWriter::start_from(
            vec![app(&self.secondary), app(&self.spare)],
            LEDGER,
            self.args.tps,
            n + 1,
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.step(
            "reseed onto spare, gate 4",
            &["dr", "reseed", "--new-primary", "spare"],
            true,
        )
        .await?;
        writer.reset_gap();
        let sw = self
            .step("switchover", &["dr", "switchover", "--json"], true)
            .await?;
        let s: serde_json::Value = serde_json::from_str(&sw)
            .with_context(|| format!("dr switchover --json printed no report: {sw}"))?;
        self.report.switchover_freeze_ms = s["freeze_ms"].as_u64();
        self.report.writer_longest_wait_ms = Some(writer.stats().longest_gap.as_millis() as u64);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let final_cfg = self.dir.join("final-gate.toml");
        std::fs::write(
            &final_cfg,
            final_gate_config(&self.dir, &self.spare, &self.secondary),
        )?;
        let cfg = final_cfg.to_string_lossy().into_owned();
        self.step_with("final gate", &["check", "-C", &cfg], true, false)
            .await?;
        writer.stop().await;
        let rows = ledger(&self.spare).await?;
        self.report.ledger_rows = rows.len() as u64;
        self.report.ledger_gap_free = is_prefix(&rows);
        anyhow::ensure!(
            self.report.ledger_gap_free,
            "the final primary's ledger is not 1..={}",
            rows.len()
        );

        let t = self.now();
        settle_archive(&self.config, archiver).await?;
        let followed = archive_from_backup(&self.config).await?;
        let last = gtid_binlog_pos(&self.spare).await?;
        self.report.archive_transactions = followed.transactions;
        self.report.archive_sources = followed.sources;
        self.report.archive_complete = followed.end == last;
        self.push(Entry {
            step: "archive followed".into(),
            started_ms: t,
            duration_ms: self.now() - t,
            exit: Some(0),
            gate: None,
            point: Some(followed.end.clone()),
            note: format!(
                "{} transactions from the backup point, no gap, from the binlogs of {} \
                 servers; the final primary is at {last}",
                followed.transactions, followed.sources
            ),
        });
        anyhow::ensure!(
            self.report.archive_complete,
            "the archive ends at {} but the final primary is at {last}: it did not follow \
             the writes",
            followed.end
        );
        Ok(())
    }

    /// Run `syncgate ARGS -C dr.toml`; its stdout. A gate step's exit 1 is a difference.
    async fn step(&mut self, name: &str, args: &[&str], gate: bool) -> anyhow::Result<String> {
        self.step_with(name, args, gate, true).await
    }

    async fn step_with(
        &mut self,
        name: &str,
        args: &[&str],
        gate: bool,
        with_config: bool,
    ) -> anyhow::Result<String> {
        let t = self.now();
        let log = self.log_path(name);
        let mut cmd = self.command(args, with_config)?;
        let out = cmd
            .stderr(std::fs::File::create(&log)?)
            .stdout(Stdio::piped())
            .output()
            .await
            .with_context(|| format!("cannot run step {name}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        std::fs::write(log.with_extension("out"), &stdout)?;
        let code = out.status.code();
        let gate_result = gate.then(|| {
            match code {
                Some(0) => "equal",
                Some(1) => "different",
                _ => "error",
            }
            .to_string()
        });
        let point = self.point_of(name);
        let note = summary_line(&stdout);
        println!(
            "{:>7.1} s  {name}: exit {}{}",
            t as f64 / 1000.0,
            code.map_or("?".into(), |c| c.to_string()),
            gate_result
                .as_deref()
                .map(|g| format!(", gate {g}"))
                .unwrap_or_default()
        );
        self.push(Entry {
            step: name.to_string(),
            started_ms: t,
            duration_ms: self.now() - t,
            exit: code,
            gate: gate_result,
            point,
            note,
        });
        match code {
            Some(0) => Ok(stdout),
            Some(1) if gate => Err(anyhow::anyhow!(
                "{name}: the gate found differences (see {})",
                log.with_extension("out").display()
            )),
            _ => Err(anyhow::anyhow!(
                "{name} failed (exit {code:?}); its log: {}",
                log.display()
            )),
        }
    }

    fn command(&self, args: &[&str], with_config: bool) -> anyhow::Result<tokio::process::Command> {
        let exe = std::env::current_exe().context("cannot find the syncgate binary")?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(args).env_remove("RUST_LOG").stdin(Stdio::null());
        if with_config {
            cmd.arg("-C").arg(&self.config);
        }
        Ok(cmd)
    }

    fn spawn(&self, name: &str, args: &[&str]) -> anyhow::Result<tokio::process::Child> {
        let mut cmd = self.command(args, true)?;
        cmd.stdout(std::fs::File::create(
            self.log_path(name).with_extension("out"),
        )?)
        .stderr(std::fs::File::create(self.log_path(name))?)
        // A drill that fails before it stops the child must not leave it running.
        .kill_on_drop(true);
        cmd.spawn().with_context(|| format!("cannot start {name}"))
    }

    fn log_path(&self, name: &str) -> PathBuf {
        let n = self.report.timeline.len();
        let slug: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        self.dir.join("logs").join(format!("{n:02}-{slug}.log"))
    }

    /// The point the flow state records for the step just run.
    fn point_of(&self, name: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.join("out").join("flow.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let step = [
            "backup",
            "restore",
            "replicate",
            "failover",
            "reseed",
            "switchover",
        ]
        .into_iter()
        .find(|s| name.starts_with(s))?;
        let p = &v["steps"][step]["point"];
        p["gtid"].as_str().or(p["tso"].as_str()).map(str::to_string)
    }

    fn note(&mut self, step: &str, note: &str) {
        let t = self.now();
        self.push(Entry {
            step: step.into(),
            started_ms: t,
            duration_ms: 0,
            exit: None,
            gate: None,
            point: None,
            note: note.into(),
        });
    }

    fn push(&mut self, e: Entry) {
        self.report.timeline.push(e);
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Write drill.json and drill.txt, print the timeline; the exit code.
    fn finish(&mut self, outcome: anyhow::Result<()>) -> anyhow::Result<i32> {
        let code = match &outcome {
            Ok(()) => 0,
            Err(_)
                if self
                    .report
                    .timeline
                    .iter()
                    .any(|e| e.gate.as_deref() == Some("different")) =>
            {
                1
            }
            Err(_) if !self.report.ledger_gap_free && self.report.ledger_rows > 0 => 1,
            Err(_) => 2,
        };
        self.report.result = if code == 0 { "passed" } else { "failed" }.into();
        self.report.failure = outcome.err().map(|e| format!("{e:#}"));
        let text = render_text(&self.report);
        std::fs::write(self.dir.join("drill.txt"), &text)?;
        std::fs::write(
            self.dir.join("drill.json"),
            serde_json::to_string_pretty(&self.report)?,
        )?;
        print!("\n{text}");
        println!("reports: {}", self.dir.join("drill.txt").display());
        Ok(code)
    }
}

/// The drill's DR config: three data sources, backups and redo in the local S3 server.
fn dr_config(dir: &Path, [p, s, spare]: [&LocalServer; 3], s3: &LocalS3) -> String {
    let source = |name: &str, server: &LocalServer| {
        format!(
            "[data-sources.{name}]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"root\"\n\n",
            server.port()
        )
    };
    format!(
        "# Written by `syncgate dr drill`.\ncheck-thread-count = 2\n\n{}{}{}\
         [dr]\nprimary = \"primary\"\nsecondary = \"secondary\"\n\
         backup-storage = \"{}\"\nredo-storage = \"{}\"\nflush-interval = 0.2\n\n\
         [task]\noutput-dir = \"{}\"\ntarget-check-tables = [\"sbtest.*\"]\n",
        source("primary", p),
        source("secondary", s),
        source("spare", spare),
        s3.uri("backup"),
        s3.uri("redo"),
        dir.join("out").display()
    )
}

/// The final gate: the new primary and its replica at one GTID fence.
fn final_gate_config(dir: &Path, primary: &LocalServer, replica: &LocalServer) -> String {
    format!(
        "check-thread-count = 2\n\
         [data-sources.spare]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"root\"\nsnapshot = \"auto\"\n\
         [data-sources.secondary]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"root\"\nsnapshot = \"auto\"\n\
         [task]\noutput-dir = \"{}\"\nsource-instances = [\"spare\"]\ntarget-instance = \"secondary\"\n\
         target-check-tables = [\"sbtest.*\"]\n",
        primary.port(),
        replica.port(),
        dir.join("final-gate").display()
    )
}

/// Wait until the archive's position has not moved for 1.5 s, then stop the archiver
/// with SIGTERM; the archive's end.
async fn settle_archive(
    config: &Path,
    mut archiver: tokio::process::Child,
) -> anyhow::Result<String> {
    use syncgate::dr::archive;
    let cfg = syncgate::config::Config::from_file(config)?;
    let ctx = syncgate::dr::DrContext::new(&cfg, None, syncgate::interrupt::Interrupt::never())?;
    let store = archive::redo_store(&ctx).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = None;
    let mut since = Instant::now();
    loop {
        let index = archive::load_index(store.as_ref()).await?;
        let pos = archive::archived_position(&index)?.to_string();
        if last.as_ref() != Some(&pos) {
            last = Some(pos);
            since = Instant::now();
        } else if since.elapsed() > Duration::from_millis(1500) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the archive never settled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Some(pid) = archiver.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let status = archiver.wait().await?;
    anyhow::ensure!(
        status.success(),
        "dr archive did not stop cleanly ({status})"
    );
    Ok(last.unwrap_or_default())
}

/// The archive from the flow's backup point on.
struct Followed {
    /// Transactions in it (gap-free and each once, or `archive::plan` refuses).
    transactions: u64,
    /// Servers whose binlogs it was read from.
    sources: u64,
    end: String,
}

async fn archive_from_backup(config: &Path) -> anyhow::Result<Followed> {
    use syncgate::dr::{archive, binlog, flow::Flow, flow::Point};
    let cfg = syncgate::config::Config::from_file(config)?;
    let ctx = syncgate::dr::DrContext::new(&cfg, None, syncgate::interrupt::Interrupt::never())?;
    let (state, _) = Flow::peek(ctx.store().await?.as_ref()).await?;
    let Some(Point::Gtid { gtid, .. }) = state
        .step(syncgate::dr::flow::StepName::Backup)
        .and_then(|b| b.point.clone())
    else {
        anyhow::bail!("the flow has no backup point");
    };
    let from = binlog::GtidPos::parse(&gtid).map_err(anyhow::Error::msg)?;
    let store = archive::redo_store(&ctx).await?;
    let index = archive::load_index(store.as_ref()).await?;
    let plan = archive::plan(&index, &from)?;
    let sources: std::collections::BTreeSet<&str> =
        plan.iter().map(|e| e.source.as_str()).collect();
    Ok(Followed {
        transactions: plan.iter().map(|e| e.transactions).sum(),
        sources: sources.len() as u64,
        end: archive::archived_position(&index)?.to_string(),
    })
}

async fn gtid_binlog_pos(server: &LocalServer) -> anyhow::Result<String> {
    let mut c = server.conn().await?;
    let v: Option<String> = c.query_first("SELECT @@gtid_binlog_pos").await?;
    c.disconnect().await?;
    Ok(v.unwrap_or_default())
}

fn app(server: &LocalServer) -> mysql_async::Opts {
    mysql_async::OptsBuilder::from_opts(server.opts())
        .user(Some("app"))
        .pass(Some("app"))
        .into()
}

async fn exec(server: &LocalServer, sql: &str) -> anyhow::Result<()> {
    let mut c = server.conn().await?;
    c.query_drop(sql).await.with_context(|| sql.to_string())?;
    c.disconnect().await?;
    Ok(())
}

async fn ledger(server: &LocalServer) -> anyhow::Result<Vec<u64>> {
    let mut c = server.conn().await?;
    let rows: Vec<u64> = c
        .query(format!("SELECT seq FROM {LEDGER} ORDER BY seq"))
        .await?;
    c.disconnect().await?;
    Ok(rows)
}

/// Whether `seqs` (sorted) are exactly 1..=n.
fn is_prefix(seqs: &[u64]) -> bool {
    seqs.iter().enumerate().all(|(i, &s)| s == i as u64 + 1)
}

/// The last non-empty line of a step's output, as the timeline's note.
fn summary_line(stdout: &str) -> String {
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    if line.trim_start().starts_with('{') || line.trim_start().starts_with('}') {
        return String::new();
    }
    line.chars().take(160).collect()
}

/// `drill.txt`: the timeline and the figures.
pub fn render_text(r: &DrillReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "DR drill: {} ({} TPS asked, {:.0} achieved; {} x {} rows)",
        r.result.to_uppercase(),
        r.tps,
        r.achieved_tps,
        r.tables,
        r.rows
    );
    let mut b = tabled::builder::Builder::default();
    b.push_record(["at", "step", "took", "exit", "gate", "point"]);
    for e in &r.timeline {
        b.push_record([
            format!("{:.1} s", e.started_ms as f64 / 1000.0),
            e.step.clone(),
            format!("{:.1} s", e.duration_ms as f64 / 1000.0),
            e.exit.map(|c| c.to_string()).unwrap_or_default(),
            e.gate.clone().unwrap_or_default(),
            e.point.clone().unwrap_or_default(),
        ]);
    }
    let mut table = b.build();
    table.with(tabled::settings::Style::rounded());
    let _ = writeln!(out, "{table}");
    let ms = |v: Option<u64>| v.map_or("-".into(), |v| format!("{v} ms"));
    let _ = writeln!(
        out,
        "recovery point: {} ({} of {} acknowledged transactions recovered, {} lost)",
        r.recovery_point.as_deref().unwrap_or("-"),
        r.recovered,
        r.acknowledged_before_kill,
        r.data_lost_transactions
    );
    let _ = writeln!(
        out,
        "time to a writable secondary: {}",
        ms(r.writable_after_ms)
    );
    let _ = writeln!(
        out,
        "switchover write freeze: {} (the writer's longest wait: {})",
        ms(r.switchover_freeze_ms),
        ms(r.writer_longest_wait_ms)
    );
    let _ = writeln!(
        out,
        "ledger on the final primary: {} rows, {}",
        r.ledger_rows,
        if r.ledger_gap_free {
            "gap-free"
        } else {
            "NOT gap-free"
        }
    );
    let _ = writeln!(
        out,
        "binlog archive: {} transactions from the backup point, from {} servers' binlogs, {}",
        r.archive_transactions,
        r.archive_sources,
        if r.archive_complete {
            "up to the final primary's position"
        } else {
            "NOT up to the final primary's position"
        }
    );
    if let Some(f) = &r.failure {
        let _ = writeln!(out, "failed: {f}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_means_one_to_n_without_gaps() {
        assert!(is_prefix(&[]));
        assert!(is_prefix(&[1, 2, 3]));
        assert!(!is_prefix(&[1, 3]));
        assert!(!is_prefix(&[2, 3]));
        assert!(!is_prefix(&[1, 1, 2]));
    }

    #[test]
    fn text_names_every_step_and_the_figures() {
        let r = DrillReport {
            result: "passed".into(),
            tps: 100,
            tables: 2,
            rows: 10,
            timeline: vec![Entry {
                step: "backup".into(),
                started_ms: 1500,
                duration_ms: 200,
                exit: Some(0),
                gate: None,
                point: Some("0-1-42".into()),
                note: String::new(),
            }],
            acknowledged_before_kill: 10,
            achieved_tps: 99.5,
            recovered: 9,
            data_lost_transactions: 1,
            recovery_point: Some("2026-11-27T09:00:00Z".into()),
            writable_after_ms: Some(1234),
            switchover_freeze_ms: Some(321),
            writer_longest_wait_ms: Some(400),
            ledger_rows: 20,
            ledger_gap_free: true,
            archive_transactions: 30,
            archive_sources: 3,
            archive_complete: true,
            failure: None,
        };
        let text = render_text(&r);
        for want in [
            "PASSED",
            "backup",
            "0-1-42",
            "9 of 10 acknowledged transactions recovered, 1 lost",
            "1234 ms",
            "321 ms",
            "20 rows, gap-free",
            "30 transactions from the backup point, from 3 servers' binlogs, up to",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
    }
}
