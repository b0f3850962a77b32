//! `syncgate dr backup`: a full backup of the primary into backup-storage, its point, and
//! (MariaDB/MySQL) the row fingerprints that gate 1 compares the restore with.
//!
//! MariaDB/MySQL: `mariadb-dump --single-transaction` streams through syncgate (zstd, hashed)
//! into storage. To read the fingerprints in *the dump's own snapshot*, commits are held
//! for a moment (`BACKUP STAGE BLOCK_COMMIT`; MySQL `FLUSH TABLES WITH READ LOCK`) while
//! syncgate's connections and the dump each start a consistent snapshot; the lock ends as
//! soon as the dump's header states its binlog position, which must equal the
//! fingerprints' (dr-interfaces B5). Reads never wait; writes wait tens of milliseconds.
//! The manifest is written last: a backup without one is incomplete.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::flow::{Flow, Point, StepName, StepRecord, StepStatus};
use super::manifest::{self, Manifest, ObjectEntry, TableEntry, ToolInfo};
use super::stream::{compress_dump, Digested, DumpPosition, Hashing};
use super::tool::{self, ClientTool};
use super::{DrContext, DrError};
use crate::check::plan::TablePlan;
use crate::db::{cell_str, cell_u64, Conn, Flavour, Source};
use crate::error::{Error, Result};
use crate::schema::TableRef;
use crate::storage::ObjectStore;

/// Longest wait for the dump to take its snapshot while commits are held.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(60);
/// Name of the dump object inside a backup's directory.
pub const DUMP_OBJECT: &str = "dump.sql.zst";

/// Options of `dr backup`.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Take a new backup even though the flow already has one (the flow starts over).
    pub again: bool,
}

/// What `dr backup` did.
#[derive(Debug)]
pub struct BackupOutcome {
    pub manifest: Manifest,
    pub elapsed: Duration,
    /// Incomplete backups (their writer died) that were removed first.
    pub removed_incomplete: Vec<String>,
    /// How long commits were held on the primary.
    pub commit_hold: Option<Duration>,
}

/// Run `dr backup`.
pub async fn run(ctx: &DrContext, opts: &BackupOptions) -> Result<BackupOutcome> {
    let store = ctx.store().await?;
    let primary = Source::open(ctx.primary.clone()).await?;
    Flow::with_lock(
        store,
        &ctx.output_dir,
        "dr backup",
        async |flow: &mut Flow| run_locked(ctx, flow, &primary, opts).await,
    )
    .await
}

async fn run_locked(
    ctx: &DrContext,
    flow: &mut Flow,
    primary: &Source,
    opts: &BackupOptions,
) -> Result<BackupOutcome> {
    let removed_incomplete = check_flow(flow, opts).await?;
    let id = manifest::new_id();
    let mut record = StepRecord::started_now();
    record.backup_id = Some(id.clone());
    flow.state.flavour = primary.flavour().to_string();
    // A new backup starts the flow over: later steps refer to the old one.
    flow.state.steps.clear();
    flow.state.acting_primary = None;
    flow.set(StepName::Backup, record.clone()).await?;
    let started = Instant::now();
    let store = flow.store().clone();
    let result = match primary.flavour() {
        // TiDB's path answers the signal itself: dropping it midway would leave the BACKUP
        // job running and the GC hold set, so it sends KILL TIDB QUERY and releases the hold.
        Flavour::TiDb => super::tidb_steps::run_backup(ctx, store.as_ref(), primary, &id, flow)
            .await
            .map(|m| (m, None)),
        _ => ctx
            .interrupt
            .interruptible(backup_mysql(ctx, store.clone(), primary, &id))
            .await
            .unwrap_or_else(|signal| Err(signal.into())),
    };
    match result {
        Ok((manifest, commit_hold)) => {
            record.point = Some(manifest.point.clone());
            record.end(StepStatus::Done);
            flow.set(StepName::Backup, record).await?;
            Ok(BackupOutcome {
                manifest,
                elapsed: started.elapsed(),
                removed_incomplete,
                commit_hold,
            })
        }
        Err(e) => {
            record.end_with_error(&e);
            flow.set(StepName::Backup, record).await?;
            // Nothing of a failed backup is kept: it has no manifest and never will.
            let _ = manifest::remove_incomplete(store.as_ref(), &id).await;
            Err(e)
        }
    }
}

/// Refuse to start the flow over by accident; clear what a dead run left.
async fn check_flow(flow: &Flow, opts: &BackupOptions) -> Result<Vec<String>> {
    if let Some(done) = flow.state.step(StepName::Backup) {
        if done.status == StepStatus::Done && !opts.again {
            let restored = flow
                .state
                .step(StepName::Restore)
                .map(|r| format!(", restore: {:?}", r.status).to_lowercase())
                .unwrap_or_default();
            return Err(DrError::Precondition(format!(
                "the flow already has backup {} (at {}{restored}); pass --again to take a \
                 new backup and start the flow over",
                done.backup_id.as_deref().unwrap_or("?"),
                done.point
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
            ))
            .into());
        }
    }
    let (_, incomplete) = manifest::list(flow.store().as_ref()).await?;
    for id in &incomplete {
        tracing::warn!("removing incomplete backup {id} (its writer stopped before the manifest)");
        manifest::remove_incomplete(flow.store().as_ref(), id).await?;
    }
    Ok(incomplete)
}

/// The tables `target-check-tables` selects on the primary.
pub async fn selected_tables(ctx: &DrContext, conn: &mut Conn) -> Result<Vec<TableRef>> {
    let filter = ctx.config.check_filter()?;
    let tables: Vec<TableRef> = crate::schema::list_tables(conn)
        .await?
        .into_iter()
        .filter(|t| filter.matches(&t.schema, &t.table))
        .collect();
    if tables.is_empty() {
        return Err(DrError::Precondition(format!(
            "no table on the primary '{}' matches target-check-tables",
            ctx.primary.name
        ))
        .into());
    }
    Ok(tables)
}

/// The commit hold and the snapshots opened under it.
struct Snapshots {
    lock: Conn,
    conns: Vec<Conn>,
    position: DumpPosition,
    gtid: String,
    held_since: Instant,
}

async fn open_snapshots(primary: &Source, count: usize) -> Result<Snapshots> {
    let mut lock = primary.connect().await?;
    let log_bin = lock.first("SELECT @@log_bin").await?;
    if log_bin.as_ref().and_then(|r| cell_u64(r, 0)) != Some(1) {
        return Err(DrError::Precondition(format!(
            "the binary log is off on the primary '{}': a backup without a binlog position \
             cannot seed replication (start it with --log-bin)",
            primary.name()
        ))
        .into());
    }
    let mysql = primary.flavour() == Flavour::MySql;
    if mysql {
        lock.exec("FLUSH TABLES WITH READ LOCK").await?;
    } else {
        lock.exec("BACKUP STAGE START").await?;
        lock.exec("BACKUP STAGE BLOCK_COMMIT").await?;
    }
    let held_since = Instant::now();
    let mut conns = Vec::with_capacity(count);
    for _ in 0..count {
        let mut c = primary.connect().await?;
        c.exec("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await?;
        c.exec("START TRANSACTION WITH CONSISTENT SNAPSHOT").await?;
        conns.push(c);
    }
    let (position, gtid) = if mysql {
        mysql_position(&mut lock).await?
    } else {
        mariadb_position(&mut conns[0]).await?
    };
    Ok(Snapshots {
        lock,
        conns,
        position,
        gtid,
        held_since,
    })
}

/// The snapshot's binlog coordinates (`Binlog_snapshot_*`) and their GTID position.
async fn mariadb_position(conn: &mut Conn) -> Result<(DumpPosition, String)> {
    let rows = conn.rows("SHOW STATUS LIKE 'binlog_snapshot_%'").await?;
    let get = |name: &str| {
        rows.iter()
            .find(|r| cell_str(r, 0).is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .and_then(|r| cell_str(r, 1))
    };
    let file = get("Binlog_snapshot_file").unwrap_or_default();
    let pos = get("Binlog_snapshot_position")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    if file.is_empty() {
        return Err(DrError::Precondition(
            "the primary reports no Binlog_snapshot_file: is the binary log on?".into(),
        )
        .into());
    }
    let sql = format!(
        "SELECT BINLOG_GTID_POS({}, {pos})",
        crate::sql::quote_str(&file)
    );
    let gtid = conn
        .first(&sql)
        .await?
        .and_then(|r| cell_str(&r, 0))
        .unwrap_or_default();
    Ok((DumpPosition { file, pos }, gtid))
}

/// MySQL under `FLUSH TABLES WITH READ LOCK`: `SHOW MASTER STATUS` and `gtid_executed`.
async fn mysql_position(lock: &mut Conn) -> Result<(DumpPosition, String)> {
    let row = lock.first("SHOW MASTER STATUS").await?.ok_or_else(|| {
        DrError::Precondition("SHOW MASTER STATUS is empty: is the binary log on?".into())
    })?;
    let position = DumpPosition {
        file: cell_str(&row, 0).unwrap_or_default(),
        pos: cell_u64(&row, 1).unwrap_or(0),
    };
    let gtid = lock
        .first("SELECT @@GLOBAL.gtid_executed")
        .await?
        .and_then(|r| cell_str(&r, 0))
        .unwrap_or_default();
    Ok((position, gtid))
}

/// The dump tool's arguments (after the defaults file).
fn dump_args(flavour: Flavour, schemas: &BTreeSet<String>) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--single-transaction".into(),
        "--routines".into(),
        "--events".into(),
        "--triggers".into(),
        "--hex-blob".into(),
        "--default-character-set=utf8mb4".into(),
    ];
    if flavour == Flavour::MySql {
        args.push("--source-data=2".into());
        args.push("--set-gtid-purged=COMMENTED".into());
    } else {
        args.push("--master-data=2".into());
        args.push("--gtid".into());
    }
    args.push("--databases".into());
    args.extend(schemas.iter().cloned());
    args
}

/// The dump and the fingerprints of a MariaDB/MySQL primary. Returns the manifest and how
/// long commits were held.
pub(crate) async fn backup_mysql(
    ctx: &DrContext,
    store: Arc<dyn ObjectStore>,
    primary: &Source,
    id: &str,
) -> Result<(Manifest, Option<Duration>)> {
    let started = super::flow::now_rfc3339();
    let mut meta = primary.connect().await?;
    let tables = selected_tables(ctx, &mut meta).await?;
    meta.close().await;
    let schemas: BTreeSet<String> = tables.iter().map(|t| t.schema.clone()).collect();
    let ds = &ctx.config.data_sources[&ctx.dr.primary];
    let dump = ClientTool::new(&["mariadb-dump", "mysqldump"], "mariadb-client", ds)?;
    let args = dump_args(primary.flavour(), &schemas);
    let version = dump.version().await;

    let snaps = open_snapshots(primary, ctx.threads.min(tables.len()).max(1)).await?;
    let mut running = dump.spawn(&args, Stdio::null(), Stdio::piped())?;
    let stdout = running.child.stdout.take().expect("stdout is piped");
    let stdout = std::fs::File::from(stdout.into_owned_fd()?);
    let (compressed, seen, compressing) = compress_dump(stdout);
    let (hashing, bytes, digest) = Hashing::new(compressed);
    let dir = manifest::backup_dir(id);
    let dump_key = format!("{dir}/{DUMP_OBJECT}");
    let progress = super::progress::bytes("dump", bytes);

    let scratch = tempfile::Builder::new()
        .prefix("syncgate-fingerprints-")
        .tempdir()?;
    let t0 = Instant::now();
    // Its own task: the dump's bytes must keep flowing while this task reads fingerprints
    // (a stalled pipe stalls the dump).
    let uploading = {
        let (store, key) = (store.clone(), dump_key.clone());
        tokio::spawn(async move {
            store.upload(&key, Box::pin(hashing)).await?;
            tracing::info!(
                "backup phase: dump stored in {:.2} s",
                t0.elapsed().as_secs_f64()
            );
            Ok::<_, Error>(())
        })
    };
    let upload = async {
        // Dropping the handle would not stop the task: abort it if the other side fails.
        let mut guard = AbortOnDrop(uploading);
        match (&mut guard.0).await {
            Ok(r) => r,
            Err(e) => Err(Error::Internal(e.to_string())),
        }
    };
    let snapshot_side =
        fingerprint_in_dump_snapshot(snaps, seen, primary, &tables, scratch.path(), t0);
    let ((), (position, gtid, hold, captured)) = tokio::try_join!(upload, snapshot_side)?;
    // The dump's own error (a failed statement) says more than the compressor's.
    tool::finish(running).await?;
    compressing
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    progress.finish_and_clear();
    let dump_digest = take_digest(&digest, &dump_key)?;

    let dump_object = ObjectEntry {
        key: DUMP_OBJECT.into(),
        size: dump_digest.size,
        sha256: dump_digest.sha256,
    };
    let (objects, entries) =
        store_fingerprints(store.as_ref(), &dir, dump_object, captured).await?;
    let manifest = Manifest {
        format: Manifest::FORMAT,
        id: id.to_string(),
        flavour: primary.flavour().to_string(),
        server_version: primary.version().to_string(),
        source: ctx.dr.primary.clone(),
        point: Point::Gtid {
            gtid,
            binlog_file: position.file,
            binlog_pos: position.pos,
        },
        schemas: schemas.into_iter().collect(),
        tables: entries,
        tool: ToolInfo {
            name: dump.program.clone(),
            version,
            args,
        },
        objects,
        checksum_version: crate::checksum::CHECKSUM_VERSION.to_string(),
        started,
        finished: super::flow::now_rfc3339(),
    };
    manifest::write(store.as_ref(), &manifest).await?;
    Ok((manifest, Some(hold)))
}

/// Once the dump has its snapshot (its header states the position), release the commit
/// hold, check that the dump and the fingerprint connections share one snapshot, and read
/// the fingerprints. Returns the point, how long commits were held, and the files.
async fn fingerprint_in_dump_snapshot(
    snaps: Snapshots,
    seen: tokio::sync::oneshot::Receiver<Option<DumpPosition>>,
    primary: &Source,
    tables: &[TableRef],
    scratch: &Path,
    t0: Instant,
) -> Result<(
    DumpPosition,
    String,
    Duration,
    Vec<(TableRef, u64, PathBuf)>,
)> {
    let Snapshots {
        lock,
        conns,
        position,
        gtid,
        held_since,
    } = snaps;
    let dumped = tokio::time::timeout(SNAPSHOT_WAIT, seen).await;
    // The dump has its snapshot (or failed): commits resume either way.
    release_commits(lock, primary.flavour()).await;
    let hold = held_since.elapsed();
    let dumped = match dumped {
        Ok(Ok(Some(p))) => p,
        Ok(_) => {
            return Err(DrError::Precondition(
                "the dump's header has no binlog position (is the binary log on, and does \
                 the user have RELOAD / BINLOG MONITOR?)"
                    .into(),
            )
            .into())
        }
        Err(_) => {
            return Err(DrError::Precondition(format!(
                "the dump did not take its snapshot within {} s",
                SNAPSHOT_WAIT.as_secs()
            ))
            .into())
        }
    };
    if dumped != position {
        return Err(DrError::Precondition(format!(
            "the dump's snapshot is at {}:{} but the fingerprints' at {}:{}: commits were not \
             held (is another BACKUP STAGE running?)",
            dumped.file, dumped.pos, position.file, position.pos
        ))
        .into());
    }
    let captured = capture_all(conns, tables, scratch.to_path_buf()).await?;
    tracing::info!(
        "backup phase: fingerprints read in {:.2} s (commits held {} ms)",
        t0.elapsed().as_secs_f64(),
        hold.as_millis()
    );
    Ok((position, gtid, hold, captured))
}

/// Upload the fingerprint files; the manifest's object list (the dump first) and tables.
async fn store_fingerprints(
    store: &dyn ObjectStore,
    dir: &str,
    dump: ObjectEntry,
    captured: Vec<(TableRef, u64, PathBuf)>,
) -> Result<(Vec<ObjectEntry>, Vec<TableEntry>)> {
    let mut objects = vec![dump];
    let mut entries = Vec::new();
    for (i, (table, rows, path)) in captured.into_iter().enumerate() {
        let key = format!("fingerprint/{i:05}.fp.zst");
        let d = upload_file(store, &format!("{dir}/{key}"), &path).await?;
        objects.push(ObjectEntry {
            key: key.clone(),
            size: d.size,
            sha256: d.sha256,
        });
        entries.push(TableEntry {
            schema: table.schema,
            table: table.table,
            rows: Some(rows),
            fingerprint: Some(key),
        });
    }
    Ok((objects, entries))
}

/// Aborts the task when dropped (a `JoinHandle` alone would let it run on).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn release_commits(mut lock: Conn, flavour: Flavour) {
    let sql = if flavour == Flavour::MySql {
        "UNLOCK TABLES"
    } else {
        "BACKUP STAGE END"
    };
    if let Err(e) = lock.exec(sql).await {
        // Closing the connection ends the stage too.
        tracing::warn!("{sql}: {e}; closing the connection releases it");
    }
    lock.close().await;
}

fn take_digest(slot: &Arc<Mutex<Option<Digested>>>, key: &str) -> Result<Digested> {
    slot.lock()
        .unwrap()
        .take()
        .ok_or_else(|| Error::Internal(format!("the upload of {key} ended before its stream did")))
}

/// Upload a local file, hashing it on the way.
pub async fn upload_file(store: &dyn ObjectStore, key: &str, path: &Path) -> Result<Digested> {
    let file = tokio::fs::File::open(path).await?;
    let (hashing, _, digest) = Hashing::new(file);
    store.upload(key, Box::pin(hashing)).await?;
    take_digest(&digest, key)
}

/// Fingerprint every table over the snapshot connections, one table per connection at a
/// time, each connection on its own task. Returns `(table, rows, file)` in table order.
async fn capture_all(
    conns: Vec<Conn>,
    tables: &[TableRef],
    scratch: PathBuf,
) -> Result<Vec<(TableRef, u64, PathBuf)>> {
    let queue: Arc<Mutex<VecDeque<(usize, TableRef)>>> =
        Arc::new(Mutex::new(tables.iter().cloned().enumerate().collect()));
    let mut workers = tokio::task::JoinSet::new();
    for mut conn in conns {
        let queue = queue.clone();
        let scratch = scratch.clone();
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let next = queue.lock().unwrap().pop_front();
                let Some((i, table)) = next else { break };
                let plan = plan_for(&mut conn, &table).await?;
                let path = scratch.join(format!("{i:05}.fp.zst"));
                let rows = super::fingerprint::capture(&mut conn, &plan, path.clone()).await?;
                done.push((i, table, rows, path));
            }
            let _ = conn.exec("COMMIT").await;
            conn.close().await;
            Ok::<_, Error>(done)
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = workers.join_next().await {
        all.extend(joined.map_err(|e| Error::Internal(e.to_string()))??);
    }
    all.sort_by_key(|(i, ..)| *i);
    Ok(all.into_iter().map(|(_, t, r, p)| (t, r, p)).collect())
}

/// The fingerprint plan of `table` on one server (both sides of the plan are that server).
pub async fn plan_for(conn: &mut Conn, table: &TableRef) -> Result<TablePlan> {
    let schema = crate::schema::discover_table(conn, table)
        .await?
        .ok_or_else(|| Error::MissingTable {
            table: table.to_string(),
            side: conn.source_name().to_string(),
        })?;
    TablePlan::new(table.clone(), &schema, &schema, &[], &[], None, u64::MAX).map_err(|message| {
        Error::Table {
            table: table.to_string(),
            message,
        }
    })
}

/// What `dr backup` would do (`--dry-run`): read-only queries, nothing changed.
pub async fn plan(ctx: &DrContext) -> Result<Vec<String>> {
    let primary = Source::open(ctx.primary.clone()).await?;
    let mut conn = primary.connect().await?;
    let tables = selected_tables(ctx, &mut conn).await?;
    conn.close().await;
    let schemas: BTreeSet<String> = tables.iter().map(|t| t.schema.clone()).collect();
    let store = ctx.store().await?;
    let (state, lock) = Flow::peek(store.as_ref()).await?;
    let mut lines = vec![format!(
        "would back up {} table(s) in schema(s) {} of '{}' ({} {}) into {}/{}/<new id>",
        tables.len(),
        schemas.iter().cloned().collect::<Vec<_>>().join(", "),
        ctx.dr.primary,
        primary.flavour(),
        primary.version(),
        store.location(),
        manifest::BACKUPS
    )];
    if primary.flavour() == Flavour::TiDb {
        lines.push(
            "TiDB: a PD service GC safepoint at a fresh TSO, then BACKUP DATABASE … TO the \
             backup directory"
                .into(),
        );
    } else {
        lines.push(format!(
            "MariaDB/MySQL: commits held for the moment the dump and {} fingerprint \
             connection(s) take one snapshot; dump arguments: {}",
            ctx.threads.min(tables.len()).max(1),
            dump_args(primary.flavour(), &schemas).join(" ")
        ));
    }
    if let Some(b) = state.step(StepName::Backup) {
        lines.push(format!(
            "the flow already has backup {} ({:?}); a new one needs --again and starts the \
             flow over",
            b.backup_id.as_deref().unwrap_or("?"),
            b.status
        ));
    }
    if let Some(owner) = lock {
        lines.push(format!(
            "the flow is locked by `{}` (pid {} on {})",
            owner.command, owner.pid, owner.host
        ));
    }
    Ok(lines)
}
