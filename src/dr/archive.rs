//! `dr archive`: the primary's binlog copied into redo-storage as transaction-complete
//! segments, and their replay onto a server.
//!
//! `mariadb-binlog --read-from-remote-server --raw --stop-never` reads the binlog into a
//! private spool directory; [`binlog::Segmenter`] cuts what arrives into whole
//! transactions; every `flush-interval` the complete ones become one segment object (a
//! valid binlog file: magic, Format_description, whole transactions) and then its index
//! entry. An index entry is written only after its segment, so the index never names a
//! segment that is not there. Layout under redo-storage:
//!
//! ```text
//! binlog/server-<server_id>/<number>.bin    segment
//! binlog/server-<server_id>/<number>.json   index entry (first/last GTID, commit time, size, sha256)
//! ```

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::binlog::{self, Gtid, GtidPos, Segmenter};
use super::flow::{Flow, Point, StepName};
use super::tool::{self, ClientTool};
use super::{DrContext, DrError};
use crate::config::DataSource;
use crate::db::{cell_str, cell_u64, Source, SourceSpec};
use crate::error::{Error, Result};
use crate::interrupt::Signal;
use crate::storage::{ObjectStore, StorageUri};

/// Prefix of the archive in redo-storage.
const PREFIX: &str = "binlog/";
/// A segment is cut at this size even before the flush interval.
const MAX_SEGMENT: usize = 64 << 20;
/// How often the spool is read.
const POLL: Duration = Duration::from_millis(20);
/// How often the flow state is read for a move of the writes to another node.
const FOLLOW: Duration = Duration::from_secs(1);
/// Longest wait between reconnects.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// One segment's index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Key of the segment object.
    pub segment: String,
    pub source: String,
    pub number: u64,
    pub first: String,
    pub last: String,
    /// Commit time of the last transaction, Unix seconds.
    pub last_commit: u64,
    pub transactions: u64,
    pub size: u64,
    pub sha256: String,
}

impl IndexEntry {
    fn gtids(&self) -> Result<(Gtid, Gtid)> {
        let parse = |s: &str| {
            s.parse::<Gtid>()
                .map_err(|e| Error::from(DrError::Precondition(format!("archive index: {e}"))))
        };
        Ok((parse(&self.first)?, parse(&self.last)?))
    }
}

/// Options of `dr archive`.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// The open segment is written at least this often.
    pub flush_interval: Duration,
    /// Start here instead of the flow's backup point (ignored when the archive holds
    /// transactions: it resumes after them).
    pub start: Option<GtidPos>,
}

/// Open redo-storage.
pub async fn redo_store(ctx: &DrContext) -> Result<Arc<dyn ObjectStore>> {
    let uri = ctx.dr.redo_storage.as_deref().ok_or_else(|| {
        DrError::Precondition("[dr] redo-storage is not set; dr archive writes there".into())
    })?;
    Ok(crate::storage::open(&StorageUri::parse(uri)?).await?)
}

/// Every index entry in the archive, all sources.
pub async fn load_index(store: &dyn ObjectStore) -> Result<Vec<IndexEntry>> {
    let mut out = Vec::new();
    for o in store.list(PREFIX).await? {
        if !o.key.ends_with(".json") {
            continue;
        }
        let Some(bytes) = store.get(&o.key).await? else {
            continue;
        };
        let e: IndexEntry = serde_json::from_slice(&bytes).map_err(|e| {
            DrError::Precondition(format!("archive index entry {} is unreadable: {e}", o.key))
        })?;
        out.push(e);
    }
    Ok(out)
}

/// The last archived GTID per domain.
pub fn archived_position(index: &[IndexEntry]) -> Result<GtidPos> {
    let mut pos = GtidPos::default();
    for e in index {
        let (first, last) = e.gtids()?;
        pos.advance(first);
        pos.advance(last);
    }
    Ok(pos)
}

/// Run the archiver until SIGINT/SIGTERM. Connection loss and primary restarts are
/// retried with backoff; failures that a retry cannot cure ([`permanent`]: purged binlogs,
/// refused credentials, a missing privilege, the binary log off) end it with an error.
pub async fn run(ctx: &DrContext, opts: &ArchiveOptions) -> Result<Signal> {
    let store = redo_store(ctx).await?;
    let index = load_index(store.as_ref()).await?;
    let mut pos = if index.is_empty() {
        match &opts.start {
            Some(p) => p.clone(),
            None => backup_point(ctx).await?,
        }
    } else {
        archived_position(&index)?
    };
    tracing::info!(from = %pos, "dr archive: starting after");
    let follow = Follow {
        flow: ctx.store().await?,
        config_primary: ctx.dr.primary.clone(),
    };
    let mut backoff = Duration::from_millis(250);
    loop {
        if let Some(s) = ctx.interrupt.fired() {
            return Ok(s);
        }
        let attempt = async {
            let node = follow.node_for(&pos).await?;
            let sctx = match node == ctx.dr.primary {
                true => ctx.clone(),
                false => ctx.with_roles(&node, &ctx.dr.secondary)?,
            };
            session(&sctx, store.as_ref(), &follow, &index, &mut pos, opts).await
        };
        match attempt.await {
            Ok(Some(signal)) => return Ok(signal),
            Ok(None) => backoff = Duration::from_millis(250),
            Err(e) if permanent(&e) => return Err(e),
            Err(e) => {
                tracing::warn!("dr archive: {e}; reconnecting in {backoff:?} from {pos}");
                if let Err(s) = ctx
                    .interrupt
                    .interruptible(tokio::time::sleep(backoff))
                    .await
                {
                    return Ok(s);
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Whether the archiver must stop on `e` instead of reconnecting: its own refusals, and
/// the server errors that mean the same on every retry (1044/1045/1130/1698 access denied,
/// 1227 missing privilege, 1381 binary log off). A lost connection, a refused connection
/// (primary down or restarting) and a server shutting down are retried.
pub fn permanent(e: &Error) -> bool {
    match e {
        Error::Dr(
            DrError::Precondition(_) | DrError::Archive { .. } | DrError::ToolMissing { .. },
        ) => true,
        Error::ConnectionLost { .. } => false,
        _ => matches!(
            e.server_code(),
            Some(1044 | 1045 | 1130 | 1227 | 1381 | 1698)
        ),
    }
}

/// How a failed `mariadb-binlog` ended, read from its stderr. The tool prints the
/// server's message without its number (`ERROR: Got error reading packet from server:
/// <message>`, `ERROR: Failed on connect: <message>`), so the messages are matched: they
/// are the server's own texts (MariaDB `sql_repl.cc` for 1236, `ER_ACCESS_DENIED_ERROR`,
/// `ER_SPECIFIC_ACCESS_DENIED_ERROR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderFailure {
    /// 1236: the binlog file (or the GTID) asked for is no longer on the primary.
    Purged,
    /// 1236: the primary's binary log is off.
    BinlogOff,
    /// 1045: the primary refused the user or password.
    Credentials,
    /// 1227: the user lacks REPLICATION SLAVE.
    Privilege,
    /// Anything else (connection lost or refused, primary shutting down): retried.
    Transient,
}

impl ReaderFailure {
    /// The server's error number (0 for [`ReaderFailure::Transient`]).
    pub fn errno(self) -> u32 {
        match self {
            ReaderFailure::Purged | ReaderFailure::BinlogOff => 1236,
            ReaderFailure::Credentials => 1045,
            ReaderFailure::Privilege => 1227,
            ReaderFailure::Transient => 0,
        }
    }

    /// Classify the tool's stderr.
    pub fn from_stderr(stderr: &str) -> ReaderFailure {
        let has = |needle: &str| stderr.contains(needle);
        if has("Could not find first log file name in binary log index file")
            || has("Could not find GTID state requested by slave")
            || has("which is not in the master's binlog")
            || has("required binlog files have been purged")
        {
            ReaderFailure::Purged
        } else if has("Binary log is not open") {
            ReaderFailure::BinlogOff
        } else if has("REPLICATION SLAVE privilege") {
            ReaderFailure::Privilege
        } else if has("Access denied for user") {
            ReaderFailure::Credentials
        } else {
            ReaderFailure::Transient
        }
    }
}

/// The server's message in the tool's stderr: the text after its last `ERROR: ` and the
/// tool's own prefix.
fn server_message(stderr: &str) -> &str {
    let last = stderr.rsplit("ERROR: ").next().unwrap_or(stderr);
    let last = last
        .trim_start_matches("Got error reading packet from server: ")
        .trim_start_matches("Failed on connect: ");
    last.trim()
}

/// What the archiver says when `mariadb-binlog` failed for good; None for a transient
/// failure. `file` is the binlog it was started on, `pos` the archived position.
pub fn reader_error(
    stderr: &str,
    primary: &str,
    source_name: &str,
    file: &str,
    pos: &GtidPos,
) -> Option<DrError> {
    let kind = ReaderFailure::from_stderr(stderr);
    let errno = kind.errno();
    let text = server_message(stderr);
    let message = match kind {
        ReaderFailure::Transient => return None,
        ReaderFailure::Purged => format!(
            "the primary {primary} no longer has binlog {file}, which holds the transactions \
             after GTID {pos} (server error {errno}: {text}); they were purged, so the archive \
             cannot continue without a gap: take a new backup (dr backup --again) and archive \
             from its point"
        ),
        ReaderFailure::BinlogOff => format!(
            "the primary {primary} has no binary log to read (server error {errno}: {text}); \
             dr archive needs log_bin on and binlog_format = ROW"
        ),
        ReaderFailure::Credentials => format!(
            "the primary {primary} refused the archiver's login (server error {errno}: \
             {text}); fix user/password of [data-sources.{source_name}]"
        ),
        ReaderFailure::Privilege => format!(
            "the primary {primary} refused the binlog dump (server error {errno}: {text}); \
             grant REPLICATION SLAVE to the user of [data-sources.{source_name}]"
        ),
    };
    Some(DrError::Archive { errno, message })
}

/// The archive follows the writes: after a failover or a switchover it reads the node
/// that took them over (the flow's [`RoleChange`](super::flow::RoleChange)), once it holds
/// everything up to the point where they moved.
struct Follow {
    /// Backup-storage, where the flow state is.
    flow: Arc<dyn ObjectStore>,
    /// `[dr] primary`: where the writes go while no role change is recorded.
    config_primary: String,
}

impl Follow {
    /// The node to read with the archive at `pos`: where the writes go, or, while the
    /// archive lacks transactions from before they moved there, the node they came from
    /// (its binlog has them; the new node's may start later).
    async fn node_for(&self, pos: &GtidPos) -> Result<String> {
        let (state, _) = Flow::peek(self.flow.as_ref()).await?;
        Ok(match &state.acting_primary {
            Some(c) => match &c.since {
                Point::Gtid { gtid, .. }
                    if GtidPos::parse(gtid).is_ok_and(|since| !pos.covers(&since)) =>
                {
                    c.from.clone()
                }
                _ => c.node.clone(),
            },
            None => self.config_primary.clone(),
        })
    }

    /// The node a session reading `reading`, with the archive (and what waits to be
    /// written) at `taken`, must move to, if another. A failure to read the flow state
    /// keeps the session (it is read again at the next look).
    async fn moved_off(&self, reading: &str, taken: &GtidPos) -> Option<String> {
        match self.node_for(taken).await {
            Ok(node) => (node != reading).then_some(node),
            Err(e) => {
                tracing::warn!("dr archive: could not read the flow state ({e}); reading on");
                None
            }
        }
    }
}

/// The flow's backup point (where the archive starts when it is empty).
async fn backup_point(ctx: &DrContext) -> Result<GtidPos> {
    let (state, _) = Flow::peek(ctx.store().await?.as_ref()).await?;
    match state.step(StepName::Backup).and_then(|s| s.point.clone()) {
        Some(Point::Gtid { gtid, .. }) => Ok(GtidPos::parse(&gtid).map_err(DrError::Precondition)?),
        _ => Err(DrError::Precondition(
            "the archive is empty and the flow has no MariaDB backup point: run dr backup \
             first, or pass --start-gtid"
                .into(),
        )
        .into()),
    }
}

/// The binlog file to start reading from: the newest whose starting GTID state is at or
/// before `pos`. None of them: the transactions after `pos` are purged (the server would
/// answer 1236), which is [`DrError::Archive`].
async fn start_file(conn: &mut crate::db::Conn, pos: &GtidPos, primary: &str) -> Result<String> {
    let files: Vec<String> = conn
        .rows("SHOW BINARY LOGS")
        .await?
        .iter()
        .filter_map(|r| cell_str(r, 0))
        .collect();
    let mut chosen = None;
    let mut oldest_start = None;
    for f in &files {
        let sql = format!("SELECT BINLOG_GTID_POS('{}', 4)", f.replace('\'', "''"));
        let start = conn
            .first(&sql)
            .await?
            .and_then(|r| cell_str(&r, 0))
            .unwrap_or_default();
        let start = GtidPos::parse(&start).map_err(DrError::Precondition)?;
        if pos.covers(&start) {
            chosen = Some(f.clone());
        } else {
            oldest_start.get_or_insert(start);
            break;
        }
    }
    chosen.ok_or_else(|| {
        DrError::Archive {
            errno: 1236,
            message: format!(
                "the primary {primary} no longer has the binlogs with the transactions after \
                 GTID {pos} (server error 1236 when asked: its oldest binlog {} starts after \
                 {}); they were purged, so the archive cannot continue without a gap: take a \
                 new backup (dr backup --again) and archive from its point",
                files.first().map(String::as_str).unwrap_or("(none)"),
                oldest_start
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "?".into()),
            ),
        }
        .into()
    })
}

/// One connection's worth of archiving. `Ok(Some)`: interrupted; `Err`: the connection or
/// the tool failed (retry); `pos` is the archived position either way.
async fn session(
    ctx: &DrContext,
    store: &dyn ObjectStore,
    follow: &Follow,
    index: &[IndexEntry],
    pos: &mut GtidPos,
    opts: &ArchiveOptions,
) -> Result<Option<Signal>> {
    let ds = &ctx.config.data_sources[&ctx.dr.primary];
    let tool = ClientTool::binlog_reader(ds)?;
    let source = Source::open(ctx.primary.clone()).await?;
    let mut conn = source.connect().await?;
    let server_id = conn
        .first("SELECT @@server_id")
        .await?
        .and_then(|r| cell_u64(&r, 0))
        .unwrap_or(0);
    let primary = ctx.primary.address();
    let file = start_file(&mut conn, pos, &primary).await?;
    conn.close().await;
    let source_name = format!("server-{server_id}");
    let mut number = index
        .iter()
        .filter(|e| e.source == source_name)
        .map(|e| e.number + 1)
        .max()
        .unwrap_or(1);
    // Numbers written by this process in earlier sessions.
    if let Ok(listed) = store.list(&format!("{PREFIX}{source_name}/")).await {
        for o in listed.iter().filter(|o| o.key.ends_with(".json")) {
            if let Some(n) = o
                .key
                .rsplit('/')
                .next()
                .and_then(|n| n.trim_end_matches(".json").parse::<u64>().ok())
            {
                number = number.max(n + 1);
            }
        }
    }
    let spool = tempfile::tempdir()?;
    let args = vec![
        "--read-from-remote-server".to_string(),
        "--raw".into(),
        "--stop-never".into(),
        format!("--result-file={}/", spool.path().display()),
        file.clone(),
    ];
    tracing::info!(
        %file,
        node = %ctx.dr.primary,
        source = %source_name,
        "dr archive: reading the binlog"
    );
    let mut running = tool.spawn(&args, Stdio::null(), Stdio::null())?;
    let mut reader = Spool::new(spool.path().to_path_buf());
    let mut seg = Segmenter::continuing(pos.clone());
    let mut last_flush = Instant::now();
    let mut last_look = Instant::now();
    loop {
        tokio::time::sleep(POLL).await;
        let exited = running.child.try_wait()?.is_some();
        reader.drain(&mut seg).await.map_err(|e| match e {
            Error::Dr(DrError::Precondition(m)) => DrError::Archive {
                errno: 0,
                message: format!(
                    "reading the binlog of '{}' ({primary}): {m}; the archive stops at {pos} \
                     rather than hold a broken history",
                    ctx.dr.primary
                ),
            }
            .into(),
            e => e,
        })?;
        let signal = ctx.interrupt.fired();
        let moved = match last_look.elapsed() >= FOLLOW {
            true => {
                last_look = Instant::now();
                follow.moved_off(&ctx.dr.primary, seg.position()).await
            }
            false => None,
        };
        if exited
            || signal.is_some()
            || moved.is_some()
            || last_flush.elapsed() >= opts.flush_interval
            || seg.pending_bytes() >= MAX_SEGMENT
        {
            if let Some(s) = seg.take_segment() {
                write_segment(store, &source_name, number, &s).await?;
                number += 1;
            }
            *pos = seg.position().clone();
            last_flush = Instant::now();
        }
        if let Some(s) = signal {
            let _ = running.child.start_kill();
            return Ok(Some(s));
        }
        if let Some(node) = moved {
            tracing::info!(
                "dr archive: the writes moved to '{node}'; its binlog is read after {pos}"
            );
            let _ = running.child.start_kill();
            return Ok(None);
        }
        if exited {
            return match tool::finish(running).await {
                Ok(()) => Ok(None),
                Err(Error::Dr(DrError::Tool {
                    tool,
                    status,
                    stderr,
                })) => Err(
                    match reader_error(&stderr, &primary, &ctx.dr.primary, &file, pos) {
                        Some(permanent) => permanent,
                        None => DrError::Tool {
                            tool,
                            status,
                            stderr,
                        },
                    }
                    .into(),
                ),
                Err(e) => Err(e),
            };
        }
    }
}

/// Write a segment, then its index entry.
async fn write_segment(
    store: &dyn ObjectStore,
    source: &str,
    number: u64,
    s: &binlog::Segment,
) -> Result<IndexEntry> {
    let key = format!("{PREFIX}{source}/{number:010}.bin");
    let entry = IndexEntry {
        segment: key.clone(),
        source: source.to_string(),
        number,
        first: s.first.to_string(),
        last: s.last.to_string(),
        last_commit: u64::from(s.last_commit_ts),
        transactions: s.transactions,
        size: s.bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&s.bytes)),
    };
    store.put(&key, s.bytes.clone()).await?;
    let json = serde_json::to_vec_pretty(&entry).expect("index entry serializes");
    store
        .put(&format!("{PREFIX}{source}/{number:010}.json"), json)
        .await?;
    tracing::debug!(first = %s.first, last = %s.last, "dr archive: segment {key}");
    Ok(entry)
}

/// The binlog files `mariadb-binlog --raw` writes, read as they grow.
struct Spool {
    dir: PathBuf,
    current: Option<String>,
    offset: u64,
    carry: Vec<u8>,
}

impl Spool {
    fn new(dir: PathBuf) -> Spool {
        Spool {
            dir,
            current: None,
            offset: 0,
            carry: Vec::new(),
        }
    }

    fn files(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Feed every whole event written since the last call.
    async fn drain(&mut self, seg: &mut Segmenter) -> Result<()> {
        loop {
            let files = self.files()?;
            if self.current.is_none() {
                let Some(first) = files.first() else {
                    return Ok(());
                };
                self.current = Some(first.clone());
                self.offset = 0;
                self.carry.clear();
            }
            let cur = self.current.clone().expect("current file");
            let grew = self.read_more(&self.dir.join(&cur)).await?;
            if self.offset >= 4 || self.carry.len() >= 4 {
                if self.offset == self.carry.len() as u64 && self.carry.len() >= 4 {
                    if self.carry[..4] != binlog::MAGIC {
                        return Err(DrError::Precondition(format!(
                            "spooled binlog {cur} does not start with the binlog magic"
                        ))
                        .into());
                    }
                    self.carry.drain(..4);
                }
                let (events, used) = binlog::split_events(&self.carry)
                    .map_err(|e| DrError::Precondition(e.to_string()))?;
                for e in events {
                    seg.feed(e)
                        .map_err(|e| DrError::Precondition(e.to_string()))?;
                }
                self.carry.drain(..used);
            }
            let next = files.iter().find(|f| **f > cur).cloned();
            match next {
                Some(next) if !grew => {
                    if !self.carry.is_empty() {
                        tracing::warn!("{cur} ended inside an event; the next file is read");
                    }
                    seg.drop_open();
                    self.current = Some(next);
                    self.offset = 0;
                    self.carry.clear();
                }
                _ => return Ok(()),
            }
        }
    }

    /// Append what `path` gained since `offset` to `carry`; whether it grew.
    async fn read_more(&mut self, path: &Path) -> Result<bool> {
        let mut f = tokio::fs::File::open(path).await?;
        f.seek(std::io::SeekFrom::Start(self.offset)).await?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).await?;
        self.offset += buf.len() as u64;
        self.carry.extend_from_slice(&buf);
        Ok(!buf.is_empty())
    }
}

/// What a replay applied.
#[derive(Debug, Clone)]
pub struct ReplayOutcome {
    pub segments: usize,
    /// Transactions applied (those of the segments after the starting position).
    pub transactions: u64,
    /// The target's position after the replay (also set as its `gtid_slave_pos`).
    pub position: GtidPos,
    /// The last transaction applied and its commit time (Unix seconds), if any.
    pub last_applied: Option<binlog::TxnInfo>,
    /// The last segment was shorter than its index entry and was applied up to its last
    /// complete transaction.
    pub truncated: Option<Truncation>,
}

/// A last segment found shorter than its index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Truncation {
    pub segment: String,
    pub stored_bytes: u64,
    pub indexed_bytes: u64,
    /// The last transaction the index names for it (lost).
    pub indexed_last: String,
    /// The last complete transaction in what is stored (applied), if any.
    pub complete_to: Option<String>,
}

/// How [`replay_with`] runs.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Start after this position (default: the target's `@@gtid_slave_pos`).
    pub from: Option<GtidPos>,
    /// A last segment shorter than its index entry is applied up to its last complete
    /// transaction instead of refused.
    pub allow_truncated_last: bool,
}

/// The segments to apply after `from`, in order; refuses a gap or an overlap in any domain.
pub fn plan(index: &[IndexEntry], from: &GtidPos) -> Result<Vec<IndexEntry>> {
    let mut entries: Vec<(Gtid, Gtid, IndexEntry)> = Vec::new();
    for e in index {
        let (first, last) = e.gtids()?;
        entries.push((first, last, e.clone()));
    }
    entries.sort_by_key(|(first, _, e)| (first.domain, first.seq, e.number));
    let mut at = from.clone();
    let mut out = Vec::new();
    // Domains with a segment taken: a later one starting before `at` overlaps it.
    let mut started = std::collections::BTreeSet::new();
    for (first, last, e) in entries {
        if at.contains(&last) {
            continue; // already on the target
        }
        let expected = at.0.get(&first.domain).map_or(1, |g| g.seq + 1);
        if first.seq > expected {
            return Err(DrError::Precondition(format!(
                "the archive has a gap in domain {}: the next transaction needed is seq {expected}, \
                 segment {} starts at {first}; replay refused",
                first.domain, e.segment
            ))
            .into());
        }
        if first.seq < expected && started.contains(&first.domain) {
            return Err(DrError::Precondition(format!(
                "the archive overlaps in domain {}: segment {} starts at {first}, after {} was already covered; replay refused",
                first.domain, e.segment, at
            ))
            .into());
        }
        at.advance(last);
        started.insert(first.domain);
        out.push(e);
    }
    Ok(out)
}

/// Apply the archive after `from` (default: the target's `@@gtid_slave_pos`) to `target`,
/// then set its `gtid_slave_pos` to the position replayed to.
pub async fn replay(
    store: &dyn ObjectStore,
    target: &SourceSpec,
    target_ds: &DataSource,
    from: Option<GtidPos>,
) -> Result<ReplayOutcome> {
    let opts = ReplayOptions {
        from,
        ..ReplayOptions::default()
    };
    replay_with(store, target, target_ds, &opts).await
}

/// The segments [`plan`] chose, each checked to be stored at its indexed size before
/// anything is applied: a missing one is a gap, a shorter one is refused unless it is the
/// last and `allow_truncated_last` (then its stored size is returned with it).
pub async fn check_stored(
    store: &dyn ObjectStore,
    todo: &[IndexEntry],
    allow_truncated_last: bool,
) -> Result<Option<u64>> {
    let mut truncated = None;
    for (i, e) in todo.iter().enumerate() {
        let info = store.head(&e.segment).await?;
        let Some(info) = info else {
            return Err(DrError::Precondition(format!(
                "the archive has a gap: segment {} (transactions {} to {}) is missing from \
                 redo-storage although its index entry is there; nothing was applied",
                e.segment, e.first, e.last
            ))
            .into());
        };
        if info.size == e.size {
            continue;
        }
        if info.size < e.size && i + 1 == todo.len() && allow_truncated_last {
            truncated = Some(info.size);
            continue;
        }
        return Err(DrError::Precondition(format!(
            "archive segment {} holds {} bytes, its index entry says {} ({}); nothing was \
             applied",
            e.segment,
            info.size,
            e.size,
            if info.size < e.size {
                "truncated, and not the last segment"
            } else {
                "damaged"
            }
        ))
        .into());
    }
    Ok(truncated)
}

/// [`replay`] with options. The segments are checked to be there first (a gap is refused
/// before anything is applied), then fetched one at a time, in order, each checked against
/// its sha256, and streamed into one `mariadb-binlog --start-position=<from> -` piped into
/// the `mariadb` client: the start position is exclusive and GTID strict mode is on, so a
/// transaction at or before `from` is never applied again.
pub async fn replay_with(
    store: &dyn ObjectStore,
    target: &SourceSpec,
    target_ds: &DataSource,
    opts: &ReplayOptions,
) -> Result<ReplayOutcome> {
    let source = Source::open(target.clone()).await?;
    let mut conn = source.connect().await?;
    let from = match &opts.from {
        Some(p) => p.clone(),
        None => {
            let s = conn
                .first("SELECT @@GLOBAL.gtid_slave_pos")
                .await?
                .and_then(|r| cell_str(&r, 0))
                .unwrap_or_default();
            GtidPos::parse(&s).map_err(DrError::Precondition)?
        }
    };
    let index = load_index(store).await?;
    let todo = plan(&index, &from)?;
    let stored_last = check_stored(store, &todo, opts.allow_truncated_last).await?;
    let mut outcome = ReplayOutcome {
        segments: todo.len(),
        transactions: 0,
        position: from.clone(),
        last_applied: None,
        truncated: None,
    };
    if todo.is_empty() {
        conn.close().await;
        return Ok(outcome);
    }
    let binlog_tool = ClientTool::new(
        &["mariadb-binlog", "mysqlbinlog"],
        "mariadb-client",
        target_ds,
    )?;
    let client = ClientTool::new(&["mariadb", "mysql"], "mariadb-client", target_ds)?;
    let mut args = Vec::new();
    if !from.0.is_empty() {
        args.push(format!("--start-position={from}"));
    }
    args.push("-".into());
    let mut reader = binlog_tool.spawn(&args, Stdio::piped(), Stdio::piped())?;
    let out: Stdio = reader
        .child
        .stdout
        .take()
        .expect("piped stdout")
        .try_into()?;
    let mut stdin = reader.child.stdin.take().expect("piped stdin");
    let applier = client.spawn(&[], out, Stdio::null())?;
    let fed = feed(store, &todo, stored_last, &from, &mut stdin, &mut outcome).await;
    drop(stdin);
    let (a, b) = tokio::join!(tool::finish(reader), tool::finish(applier));
    // A damaged segment stops the feed at the previous segment's end; what was fed is
    // applied and recorded before the error is returned, so a retry continues from there.
    if let Err(e) = fed {
        if a.is_ok() && b.is_ok() && outcome.transactions > 0 {
            conn.exec(&format!(
                "SET GLOBAL gtid_slave_pos = '{}'",
                outcome.position
            ))
            .await?;
        }
        return Err(e);
    }
    a?;
    b?;
    conn.exec(&format!(
        "SET GLOBAL gtid_slave_pos = '{}'",
        outcome.position
    ))
    .await?;
    conn.close().await;
    Ok(outcome)
}

/// Fetch the segments in order and write them to the binlog reader's stdin as one binlog
/// stream (the magic once; each segment's Format_description stays).
async fn feed(
    store: &dyn ObjectStore,
    todo: &[IndexEntry],
    stored_last: Option<u64>,
    from: &GtidPos,
    stdin: &mut tokio::process::ChildStdin,
    outcome: &mut ReplayOutcome,
) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    for (i, e) in todo.iter().enumerate() {
        let mut bytes = store.get(&e.segment).await?.ok_or_else(|| {
            DrError::Precondition(format!("archive segment {} is missing", e.segment))
        })?;
        let last = i + 1 == todo.len();
        if last && stored_last.is_some() {
            let cut = complete_prefix(&bytes);
            outcome.truncated = Some(Truncation {
                segment: e.segment.clone(),
                stored_bytes: bytes.len() as u64,
                indexed_bytes: e.size,
                indexed_last: e.last.clone(),
                complete_to: cut.as_ref().map(|s| s.last.to_string()),
            });
            tracing::warn!(
                segment = %e.segment,
                stored = bytes.len(),
                indexed = e.size,
                "archive segment truncated; applying its complete transactions only"
            );
            match cut {
                Some(s) => bytes = s.bytes,
                None => break,
            }
        } else {
            let actual = hex::encode(Sha256::digest(&bytes));
            if actual != e.sha256 {
                return Err(DrError::Damaged {
                    key: e.segment.clone(),
                    expected: e.sha256.clone(),
                    actual,
                }
                .into());
            }
        }
        let mut seg = Segmenter::new(from.clone());
        let body = bytes.strip_prefix(&binlog::MAGIC).ok_or_else(|| {
            DrError::Precondition(format!("archive segment {} is not a binlog", e.segment))
        })?;
        let (events, _) =
            binlog::split_events(body).map_err(|e| DrError::Precondition(e.to_string()))?;
        for ev in events {
            seg.feed(ev)
                .map_err(|e| DrError::Precondition(e.to_string()))?;
        }
        let taken = seg.take_segment();
        let chunk = if i == 0 { &bytes[..] } else { body };
        stdin.write_all(chunk).await?;
        if let Some(s) = taken {
            outcome.transactions += s.transactions;
            outcome.last_applied = Some(binlog::TxnInfo {
                gtid: s.last,
                commit_ts: s.last_commit_ts,
            });
            outcome.position.advance(s.last);
        }
    }
    stdin.flush().await?;
    Ok(())
}

/// The complete transactions of a truncated segment, as a binlog file of their own.
fn complete_prefix(bytes: &[u8]) -> Option<binlog::Segment> {
    let body = bytes.strip_prefix(&binlog::MAGIC)?;
    let (events, _) = binlog::split_events(body).ok()?;
    let mut seg = Segmenter::new(GtidPos::default());
    for ev in events {
        seg.feed(ev).ok()?;
    }
    seg.take_segment()
}

/// The archive as `dr status` reports it (`archive` in `--json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ArchiveStatus {
    /// Index entries (one per segment) in redo-storage, all sources.
    pub segments: usize,
    pub transactions: u64,
    /// Bytes of the segments.
    pub bytes: u64,
    /// The GTID of the newest archived transaction (the newest segment's last); None
    /// when the archive is empty.
    pub last_gtid: Option<String>,
    /// When that transaction committed on the primary, RFC 3339 UTC.
    pub last_commit: Option<String>,
    /// Seconds since then: the data at risk if the primary died now, while it takes
    /// writes (an idle primary risks nothing; see `lag_transactions`).
    pub age_seconds: Option<u64>,
    /// The archived position: the last GTID per domain.
    pub position: String,
    /// Transactions the primary committed that are not archived yet, per GTID domain (its
    /// `gtid_binlog_pos` against `position`); empty when the primary could not be read.
    pub lag_transactions: std::collections::BTreeMap<u32, u64>,
}

impl ArchiveStatus {
    /// Summarise `index` as of `now` (Unix seconds).
    pub fn from_index(index: &[IndexEntry], now: u64) -> Result<ArchiveStatus> {
        let last = index.iter().max_by_key(|e| (e.last_commit, e.number));
        Ok(ArchiveStatus {
            segments: index.len(),
            transactions: index.iter().map(|e| e.transactions).sum(),
            bytes: index.iter().map(|e| e.size).sum(),
            last_gtid: last.map(|e| e.last.clone()),
            last_commit: last.map(|e| rfc3339(e.last_commit)),
            age_seconds: last.map(|e| now.saturating_sub(e.last_commit)),
            position: archived_position(index)?.to_string(),
            lag_transactions: Default::default(),
        })
    }

    /// The `dr status` text line.
    pub fn render(&self) -> String {
        let Some(last) = &self.last_gtid else {
            return "archive: empty".into();
        };
        let mut s = format!(
            "archive: {} segments, {} transactions, {} bytes; last transaction {last} \
             committed {} s ago ({}), position {}",
            self.segments,
            self.transactions,
            self.bytes,
            self.age_seconds.unwrap_or(0),
            self.last_commit.as_deref().unwrap_or("?"),
            self.position
        );
        for (domain, n) in &self.lag_transactions {
            s.push_str(&format!(
                ", domain {domain}: {n} transaction(s) not archived"
            ));
        }
        s
    }
}

fn rfc3339(unix: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// The archive's state now (read-only).
pub async fn status(store: &dyn ObjectStore) -> Result<ArchiveStatus> {
    let index = load_index(store).await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    ArchiveStatus::from_index(&index, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(number: u64, first: &str, last: &str) -> IndexEntry {
        IndexEntry {
            segment: format!("binlog/server-1/{number:010}.bin"),
            source: "server-1".into(),
            number,
            first: first.into(),
            last: last.into(),
            last_commit: 0,
            transactions: 1,
            size: 1,
            sha256: String::new(),
        }
    }

    #[test]
    fn plan_takes_the_segments_after_the_position_in_order() {
        let index = vec![
            entry(2, "0-1-6", "0-1-9"),
            entry(1, "0-1-1", "0-1-5"),
            entry(3, "0-2-10", "0-2-12"),
        ];
        let p = plan(&index, &GtidPos::parse("0-1-5").unwrap()).unwrap();
        assert_eq!(p.iter().map(|e| e.number).collect::<Vec<_>>(), vec![2, 3]);
        // Mid-segment start: the segment is applied, mariadb-binlog skips what is before.
        let p = plan(&index, &GtidPos::parse("0-1-7").unwrap()).unwrap();
        assert_eq!(p.len(), 2);
        assert!(plan(&index, &GtidPos::parse("0-1-12").unwrap())
            .unwrap()
            .is_empty());
    }

    /// The stderr lines of mariadb-binlog 10.11 as seen against a real server.
    #[test]
    fn reader_failures_are_classified_from_the_tools_stderr() {
        let cases = [
            (
                "ERROR: Got error reading packet from server: Could not find first log file \
                 name in binary log index file",
                ReaderFailure::Purged,
            ),
            (
                "ERROR: Failed on connect: Access denied for user 'root'@'localhost' (using \
                 password: YES)",
                ReaderFailure::Credentials,
            ),
            (
                "ERROR: Got error reading packet from server: Access denied; you need (at \
                 least one of) the REPLICATION SLAVE privilege(s) for this operation",
                ReaderFailure::Privilege,
            ),
            (
                "ERROR: Got error reading packet from server: Lost connection to server \
                 during query",
                ReaderFailure::Transient,
            ),
            (
                "ERROR: Failed on connect: Can't connect to server on '127.0.0.1' (115)",
                ReaderFailure::Transient,
            ),
            ("", ReaderFailure::Transient),
        ];
        for (stderr, want) in cases {
            assert_eq!(ReaderFailure::from_stderr(stderr), want, "{stderr}");
        }
        let pos = GtidPos::parse("0-3-1").unwrap();
        let e = reader_error(cases[0].0, "db:3306", "primary", "bin.000001", &pos).unwrap();
        let text = e.to_string();
        assert!(matches!(e, DrError::Archive { errno: 1236, .. }), "{text}");
        for part in [
            "db:3306",
            "bin.000001",
            "0-3-1",
            "server error 1236: Could not find first log file",
            "purged",
            "take a new backup",
        ] {
            assert!(text.contains(part), "{part} in: {text}");
        }
        assert_eq!(text.lines().count(), 1);
        assert!(reader_error(cases[3].0, "db:3306", "primary", "f", &pos).is_none());
        let e = reader_error(cases[2].0, "db:3306", "primary", "f", &pos).unwrap();
        assert!(e.to_string().contains("grant REPLICATION SLAVE"), "{e}");
    }

    #[test]
    fn status_summarises_the_index() {
        let mut a = entry(1, "0-1-1", "0-1-5");
        a.last_commit = 1_700_000_000;
        a.size = 100;
        let mut b = entry(2, "0-1-6", "0-1-9");
        b.last_commit = 1_700_000_010;
        b.size = 50;
        b.transactions = 4;
        let st = ArchiveStatus::from_index(&[a, b], 1_700_000_013).unwrap();
        assert_eq!(st.segments, 2);
        assert_eq!(st.transactions, 5);
        assert_eq!(st.bytes, 150);
        assert_eq!(st.last_gtid.as_deref(), Some("0-1-9"));
        assert_eq!(st.last_commit.as_deref(), Some("2023-11-14T22:13:30Z"));
        assert_eq!(st.age_seconds, Some(3));
        assert_eq!(st.position, "0-1-9");
        assert!(st
            .render()
            .contains("last transaction 0-1-9 committed 3 s ago"));
        let empty = ArchiveStatus::from_index(&[], 5).unwrap();
        assert_eq!(empty.last_gtid, None);
        assert_eq!(empty.render(), "archive: empty");
    }

    #[test]
    fn plan_refuses_gaps_and_overlaps() {
        let gap = vec![entry(1, "0-1-1", "0-1-5"), entry(2, "0-1-7", "0-1-9")];
        let e = plan(&gap, &GtidPos::parse("0-1-2").unwrap()).unwrap_err();
        assert!(e.to_string().contains("gap"), "{e}");
        let e = plan(&gap[1..], &GtidPos::parse("0-1-3").unwrap()).unwrap_err();
        assert!(e.to_string().contains("gap"), "{e}");
        let overlap = vec![entry(1, "0-1-1", "0-1-5"), entry(2, "0-1-4", "0-1-9")];
        let e = plan(&overlap, &GtidPos::default()).unwrap_err();
        assert!(e.to_string().contains("overlap"), "{e}");
    }
}
