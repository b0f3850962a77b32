//! `syncgate dr restore`: a backup onto the secondary, then gate 1.
//!
//! Order of work: refuse what would lose data (a secondary holding data in the backup's
//! schemas, without `--overwrite`; a running replica), fetch every object and check it
//! against the manifest *before* the secondary is touched, load the dump with the vendor
//! client (`sql_log_bin = 0`: the restore creates no local GTIDs), set `gtid_slave_pos` to
//! the backup's GTID (ready for `dr replicate`), and compare with the primary at the backup
//! point (gate 1).

use std::process::Stdio;
use std::time::{Duration, Instant};

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::backup::DUMP_OBJECT;
use super::flow::{Flow, GateRecord, Point, StepName, StepRecord, StepStatus};
use super::gate::{self, GateReport};
use super::manifest::{self, Manifest};
use super::tool::{self, ClientTool};
use super::{DrContext, DrError};
use crate::db::{cell_str, Conn, Flavour, Source};
use crate::error::{Error, Result};
use crate::storage::ObjectStore;
use futures_util::StreamExt;

/// Buffer size of the streams between storage, files and the client.
const COPY_BUF: usize = 1 << 20;

/// Options of `dr restore`.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Backup id; default: the flow's backup, else the newest complete one.
    pub backup: Option<String>,
    /// Restore even though the secondary holds data in the backup's schemas.
    pub overwrite: bool,
    /// Run gate 1 only (after fixing what it found), without restoring.
    pub gate_only: bool,
    /// Restore again although the flow says it was done.
    pub again: bool,
}

/// What `dr restore` did.
#[derive(Debug)]
pub struct RestoreOutcome {
    pub manifest: Manifest,
    /// Time spent loading (None with `--gate-only`).
    pub restore_time: Option<Duration>,
    pub gate: GateReport,
}

/// Run `dr restore` and gate 1.
pub async fn run(ctx: &DrContext, opts: &RestoreOptions) -> Result<RestoreOutcome> {
    let store = ctx.store().await?;
    let secondary = Source::open(ctx.secondary.clone()).await?;
    Flow::with_lock(
        store,
        &ctx.output_dir,
        "dr restore",
        async |flow: &mut Flow| run_locked(ctx, flow, &secondary, opts).await,
    )
    .await
}

async fn run_locked(
    ctx: &DrContext,
    flow: &mut Flow,
    secondary: &Source,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome> {
    let store = flow.store().clone();
    let manifest = choose_backup(flow, opts).await?;
    check_flavours(&manifest, secondary)?;
    let mut record = StepRecord::started_now();
    record.backup_id = Some(manifest.id.clone());
    record.point = Some(manifest.point.clone());
    flow.set(StepName::Restore, record.clone()).await?;
    let work = async {
        let restore_time = if opts.gate_only {
            None
        } else {
            let started = Instant::now();
            load(ctx, store.as_ref(), &manifest, secondary, opts.overwrite).await?;
            Some(started.elapsed())
        };
        let gate = run_gate(ctx, store.as_ref(), &manifest, secondary).await?;
        Ok::<_, Error>((restore_time, gate))
    };
    let result = match manifest.point {
        // TiDB's RESTORE and its gate answer the signal themselves (KILL TIDB QUERY; the
        // check stops its workers): dropping them midway would leave the job running.
        Point::Tso { .. } => work.await,
        Point::Gtid { .. } => ctx
            .interrupt
            .interruptible(work)
            .await
            .unwrap_or_else(|signal| Err(signal.into())),
    };
    match result {
        Ok((restore_time, gate)) => {
            record.gate = Some(GateRecord {
                result: gate.result.clone(),
                differing_rows: gate.differing_rows,
                report: format!("{}/gate.txt", StepName::Restore),
            });
            record.end(if gate.equal() {
                StepStatus::Done
            } else {
                StepStatus::GateFailed
            });
            flow.set(StepName::Restore, record).await?;
            Ok(RestoreOutcome {
                manifest,
                restore_time,
                gate,
            })
        }
        Err(e) => {
            record.end_with_error(&e);
            flow.set(StepName::Restore, record).await?;
            Err(e)
        }
    }
}

/// The backup to restore, after the flow's rules: a restore that passed its gate is not
/// run again by accident.
async fn choose_backup(flow: &Flow, opts: &RestoreOptions) -> Result<Manifest> {
    if let Some(done) = flow.state.step(StepName::Restore) {
        if done.status == StepStatus::Done && !opts.again && !opts.gate_only {
            return Err(DrError::Precondition(format!(
                "backup {} was already restored and passed gate 1 ({}); pass --again to \
                 restore again (with --overwrite), or --gate-only to re-run the gate",
                done.backup_id.as_deref().unwrap_or("?"),
                done.ended.as_deref().unwrap_or("?")
            ))
            .into());
        }
    }
    let store = flow.store().as_ref();
    let flow_backup = flow
        .state
        .step(StepName::Backup)
        .filter(|b| b.status == StepStatus::Done)
        .and_then(|b| b.backup_id.clone());
    match opts.backup.as_deref().map(str::to_string).or(flow_backup) {
        Some(id) => manifest::read(store, &id).await,
        None => manifest::newest(store).await,
    }
}

fn check_flavours(manifest: &Manifest, secondary: &Source) -> Result<()> {
    let tidb_backup = manifest.flavour == Flavour::TiDb.as_str();
    if tidb_backup != (secondary.flavour() == Flavour::TiDb) {
        return Err(DrError::Precondition(format!(
            "backup {} was taken from {} and cannot be restored onto {} ('{}')",
            manifest.id,
            manifest.flavour,
            secondary.flavour(),
            secondary.name()
        ))
        .into());
    }
    Ok(())
}

/// Gate 1 by flavour.
async fn run_gate(
    ctx: &DrContext,
    store: &dyn ObjectStore,
    manifest: &Manifest,
    secondary: &Source,
) -> Result<GateReport> {
    let dir = ctx.step_dir(StepName::Restore.as_str());
    match manifest.point {
        Point::Tso { tso } => super::tidb_steps::gate1(ctx, manifest, tso, &dir).await,
        Point::Gtid { .. } => gate::fingerprints(ctx, store, manifest, secondary, &dir).await,
    }
}

/// Restore the backup onto the secondary (all flavours).
pub(crate) async fn load(
    ctx: &DrContext,
    store: &dyn ObjectStore,
    manifest: &Manifest,
    secondary: &Source,
    overwrite: bool,
) -> Result<()> {
    let mut conn = secondary.connect().await?;
    refuse_replica(&mut conn, secondary).await?;
    let occupied = occupied_tables(&mut conn, manifest).await?;
    if !occupied.is_empty() {
        if !overwrite {
            return Err(DrError::NotEmpty {
                tables: occupied.join(", "),
            }
            .into());
        }
        tracing::warn!(
            "--overwrite: replacing {} table(s) on the secondary: {}",
            occupied.len(),
            occupied.join(", ")
        );
    }
    match &manifest.point {
        Point::Tso { .. } => super::tidb_steps::restore(ctx, manifest).await,
        Point::Gtid { gtid, .. } => {
            let ds = &ctx.config.data_sources[&ctx.dr.secondary];
            load_dump(ds, store, manifest).await?;
            set_gtid_position(&mut conn, secondary, gtid).await?;
            conn.close().await;
            Ok(())
        }
    }
}

/// A secondary whose replication threads run would apply changes under the restore.
async fn refuse_replica(conn: &mut Conn, secondary: &Source) -> Result<()> {
    if secondary.flavour() == Flavour::TiDb {
        return Ok(());
    }
    let status = conn.first_named("SHOW SLAVE STATUS").await?;
    let running = |name: &str| {
        status
            .as_ref()
            .and_then(|m| m.get(name).cloned().flatten())
            .is_some_and(|v| v.eq_ignore_ascii_case("yes"))
    };
    if running("Slave_IO_Running") || running("Slave_SQL_Running") {
        return Err(DrError::Precondition(format!(
            "the secondary '{}' is replicating (SHOW SLAVE STATUS: threads running); stop \
             replication before restoring onto it",
            secondary.name()
        ))
        .into());
    }
    Ok(())
}

/// Tables of the backup's schemas on the secondary that hold at least one row
/// (`db.t (~N rows)`).
pub(crate) async fn occupied_tables(conn: &mut Conn, manifest: &Manifest) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for schema in &manifest.schemas {
        let sql = format!(
            "SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES WHERE \
             TABLE_SCHEMA = {} AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') \
             ORDER BY TABLE_NAME",
            crate::sql::quote_str(schema)
        );
        for row in conn.rows(&sql).await? {
            let Some(table) = cell_str(&row, 0) else {
                continue;
            };
            let t = crate::schema::TableRef::new(schema.clone(), table);
            let probe = format!("SELECT 1 FROM {} LIMIT 1", t.quoted());
            if conn.first(&probe).await?.is_some() {
                let estimate = cell_str(&row, 1).unwrap_or_else(|| "?".into());
                out.push(format!("{t} (~{estimate} rows)"));
            }
        }
    }
    Ok(out)
}

/// Fetch the dump (checked against the manifest first), then stream it into the client
/// connected to `ds` (the secondary, or gate 3's scratch server).
pub(super) async fn load_dump(
    ds: &crate::config::DataSource,
    store: &dyn ObjectStore,
    manifest: &Manifest,
) -> Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix("syncgate-restore-")
        .tempdir()?;
    let path = scratch.path().join(DUMP_OBJECT);
    gate::fetch_verified(store, manifest, DUMP_OBJECT, &path).await?;
    // The fingerprints are fetched and checked too before anything is changed: a damaged
    // backup is refused whole.
    for t in &manifest.tables {
        if let Some(key) = &t.fingerprint {
            let fp = scratch.path().join("fp.check");
            gate::fetch_verified(store, manifest, key, &fp).await?;
        }
    }
    let client = ClientTool::new(&["mariadb", "mysql"], "mariadb-client", ds)?;
    // Cut the dump into its sections and table parts (`dr::parts`), on a blocking thread:
    // the table parts are then loaded by several clients at once.
    let dir = scratch.path().to_path_buf();
    let cut = tokio::task::spawn_blocking(move || cut_dump(&path, &dir))
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    let bytes = Arc::new(AtomicU64::new(0));
    let progress = super::progress::bytes("restore", bytes.clone());
    let head = Arc::new(cut.rest.head);
    // Head and schemas first (one client), then the table parts (`LOADERS` clients, each
    // running the head first), then the tail (views, routines, events; the trailer).
    let first = [head.as_ref().clone(), cut.rest.schema].concat();
    load_with(&client, Input::Bytes(first), None, &bytes).await?;
    let parts = cut.parts.into_iter().map(|p| {
        let (client, head, bytes) = (&client, head.clone(), bytes.clone());
        async move { load_with(client, Input::File(p), Some(head), &bytes).await }
    });
    let mut loads = futures_util::stream::iter(parts).buffer_unordered(loaders());
    while let Some(done) = loads.next().await {
        done?;
    }
    let last = [head.as_ref().clone(), cut.rest.tail].concat();
    load_with(&client, Input::Bytes(last), None, &bytes).await?;
    progress.finish_and_clear();
    Ok(())
}

/// Clients loading table parts at once: one per core, at least two, at most four (the
/// server's insert work is what they share).
fn loaders() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 4)
}

/// Table parts are cut at about this many uncompressed bytes (whole tables each).
const PART_BYTES: u64 = 64 << 20;

/// What [`cut_dump`] made: the small sections, and the table parts' files in dump order.
struct Cut {
    rest: crate::dr::parts::Rest,
    parts: Vec<std::path::PathBuf>,
}

/// Writes each table part to its own file in `dir`.
struct PartFiles {
    dir: std::path::PathBuf,
    current: Option<std::io::BufWriter<std::fs::File>>,
    done: Vec<std::path::PathBuf>,
}

impl PartFiles {
    fn path(&self, n: usize) -> std::path::PathBuf {
        self.dir.join(format!("part-{n:05}.sql"))
    }
}

impl crate::dr::parts::PartSink for PartFiles {
    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        if self.current.is_none() {
            let f = std::fs::File::create(self.path(self.done.len()))?;
            self.current = Some(std::io::BufWriter::with_capacity(COPY_BUF, f));
        }
        self.current.as_mut().expect("just opened").write_all(data)
    }

    fn end_part(&mut self, _part: crate::dr::parts::TablePart) -> std::io::Result<()> {
        if let Some(mut f) = self.current.take() {
            f.flush()?;
            self.done.push(self.path(self.done.len()));
        }
        Ok(())
    }
}

/// Decompress the dump at `path` and cut it into `dir` (blocking).
fn cut_dump(path: &std::path::Path, dir: &std::path::Path) -> Result<Cut> {
    let file = std::fs::File::open(path)?;
    let mut dec = zstd::Decoder::with_buffer(std::io::BufReader::with_capacity(COPY_BUF, file))?;
    let mut splitter = crate::dr::parts::Splitter::new(PART_BYTES);
    let mut sink = PartFiles {
        dir: dir.to_path_buf(),
        current: None,
        done: Vec::new(),
    };
    let mut buf = vec![0u8; COPY_BUF];
    loop {
        let n = match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        splitter.feed(&buf[..n], &mut sink)?;
    }
    let rest = splitter.finish(&mut sink)?;
    std::fs::remove_file(path)?;
    Ok(Cut {
        rest,
        parts: sink.done,
    })
}

/// What one client loads.
enum Input {
    Bytes(Vec<u8>),
    /// A table part's file, removed once loaded.
    File(std::path::PathBuf),
}

/// Run one `mariadb` client (binlog off for its session) on `head` then `source`.
async fn load_with(
    client: &ClientTool,
    source: Input,
    head: Option<Arc<Vec<u8>>>,
    bytes: &Arc<AtomicU64>,
) -> Result<()> {
    let args: Vec<String> = vec![
        "--init-command=SET SESSION sql_log_bin = 0".into(),
        "--default-character-set=utf8mb4".into(),
        "--binary-mode".into(),
        "--max-allowed-packet=1073741824".into(),
    ];
    let mut running = client.spawn(&args, Stdio::piped(), Stdio::null())?;
    let stdin = running.child.stdin.take().expect("stdin is piped");
    let stdin = std::fs::File::from(stdin.into_owned_fd()?);
    let bytes = bytes.clone();
    // The writes into the client run on a blocking thread, in large blocks.
    let feeding = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut out = stdin;
        if let Some(h) = head {
            out.write_all(&h)?;
        }
        match source {
            Input::Bytes(b) => {
                out.write_all(&b)?;
                bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
            }
            Input::File(p) => {
                copy_counting(&p, &mut out, &bytes)?;
                std::fs::remove_file(&p)?;
            }
        }
        out.flush()
    });
    let fed = feeding.await.map_err(|e| Error::Internal(e.to_string()))?;
    // The client's own error (a failed statement) says more than a broken pipe.
    tool::finish(running).await?;
    fed?;
    Ok(())
}

/// Copy the file at `path` into `out`, counting the bytes.
fn copy_counting(
    path: &std::path::Path,
    out: &mut std::fs::File,
    bytes: &AtomicU64,
) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; COPY_BUF];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Leave the secondary ready to replicate from the backup point (dr-interfaces B2.1).
async fn set_gtid_position(conn: &mut Conn, secondary: &Source, gtid: &str) -> Result<()> {
    let sql = match secondary.flavour() {
        Flavour::MySql => format!(
            "SET @@GLOBAL.gtid_purged = {}",
            crate::sql::quote_str(&format!("+{gtid}"))
        ),
        _ => format!(
            "SET GLOBAL gtid_slave_pos = {}",
            crate::sql::quote_str(gtid)
        ),
    };
    conn.exec(&sql).await
}

/// What `dr restore` would do (`--dry-run`): read-only queries, nothing changed.
pub async fn plan(ctx: &DrContext, opts: &RestoreOptions) -> Result<Vec<String>> {
    let store = ctx.store().await?;
    let secondary = Source::open(ctx.secondary.clone()).await?;
    let (state, _) = Flow::peek(store.as_ref()).await?;
    let flow_backup = state
        .step(StepName::Backup)
        .filter(|b| b.status == StepStatus::Done)
        .and_then(|b| b.backup_id.clone());
    let manifest = match opts.backup.clone().or(flow_backup) {
        Some(id) => manifest::read(store.as_ref(), &id).await?,
        None => manifest::newest(store.as_ref()).await?,
    };
    let mut lines = vec![format!(
        "would restore backup {} ({} tables, {} bytes stored, at {}) onto '{}' ({} {})",
        manifest.id,
        manifest.tables.len(),
        manifest.stored_bytes(),
        manifest.point,
        ctx.dr.secondary,
        secondary.flavour(),
        secondary.version()
    )];
    let mut conn = secondary.connect().await?;
    let occupied = occupied_tables(&mut conn, &manifest).await?;
    conn.close().await;
    if !occupied.is_empty() {
        lines.push(format!(
            "the secondary holds data that the restore would replace{}: {}",
            if opts.overwrite {
                ""
            } else {
                " (refused without --overwrite)"
            },
            occupied.join(", ")
        ));
    }
    if let Point::Gtid { gtid, .. } = &manifest.point {
        lines.push(format!("then: SET GLOBAL gtid_slave_pos = '{gtid}'"));
    }
    lines.push("then gate 1: the secondary against the primary at the backup point".into());
    Ok(lines)
}
