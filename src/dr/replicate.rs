//! `syncgate dr replicate`: the restored secondary replicates from the primary, starting
//! at the backup's GTID (dr-interfaces B2.1; MySQL: `SOURCE_AUTO_POSITION`).
//!
//! The statements are rendered by pure functions ([`setup_statements`]) so the MySQL form is
//! tested as text; [`ReplicaStatus`] reads `SHOW SLAVE STATUS` / `SHOW REPLICA STATUS` for
//! this step, `dr status` and the error lines (1236 purged binlogs, 1045 credentials,
//! 2003/2005 unreachable).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::flow::{Flow, Point, StepName, StepRecord, StepStatus};
use super::{tidb_steps, DrContext, DrError};
use crate::db::{Conn, Flavour, Source};
use crate::error::{Error, Result};
use crate::sql::quote_str;

/// How long replication may take to have both threads running and connected.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of `dr replicate`.
#[derive(Debug, Clone, Default)]
pub struct ReplicateOptions {
    /// Set replication up again although the flow says it was done.
    pub again: bool,
    /// `dr run` resuming after its own replicate step died midway: a secondary that already
    /// replicates from this primary (the step's `START SLAVE` went through) is taken as is
    /// and the step recorded done, instead of refused. Only when the flow records an
    /// unfinished replicate step.
    pub adopt: bool,
    /// TiDB: how the changefeed is set up and waited for.
    pub tidb: tidb_steps::ReplicateOptions,
}

/// Where and as whom the secondary connects to the primary. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ReplicationSource {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for ReplicationSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationSource")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &crate::config::REDACTED)
            .finish()
    }
}

impl ReplicationSource {
    /// From `[dr]`: `primary-host-for-replica`, `replication-user`/`-password`, else the
    /// primary data source's own.
    pub fn from_context(ctx: &DrContext) -> Result<ReplicationSource> {
        let (host, port) = match &ctx.dr.primary_host_for_replica {
            Some(hp) => parse_host_port(hp)?,
            None => (ctx.primary.host.clone(), ctx.primary.port),
        };
        Ok(ReplicationSource {
            host,
            port,
            user: ctx
                .dr
                .replication_user
                .clone()
                .unwrap_or_else(|| ctx.primary.user.clone()),
            password: ctx
                .dr
                .replication_password
                .clone()
                .unwrap_or_else(|| ctx.primary.password.clone()),
        })
    }

    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// `host:port` (`[::1]:3306` for IPv6).
pub fn parse_host_port(s: &str) -> Result<(String, u16)> {
    let bad = || {
        Error::from(DrError::Precondition(format!(
            "[dr] primary-host-for-replica = {s:?} is not host:port"
        )))
    };
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// The statements that start replication on the secondary at `gtid`, in order. With
/// `redact`, the password is replaced (for printing).
pub fn setup_statements(
    flavour: Flavour,
    src: &ReplicationSource,
    gtid: &str,
    redact: bool,
) -> Vec<String> {
    let password = if redact {
        quote_str(crate::config::REDACTED)
    } else {
        quote_str(&src.password)
    };
    match flavour {
        // MySQL: the restore set gtid_purged; auto-position starts after it.
        Flavour::MySql => vec![
            "STOP REPLICA".into(),
            format!(
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST = {}, SOURCE_PORT = {}, SOURCE_USER = \
                 {}, SOURCE_PASSWORD = {password}, SOURCE_AUTO_POSITION = 1",
                quote_str(&src.host),
                src.port,
                quote_str(&src.user)
            ),
            "START REPLICA".into(),
        ],
        _ => vec![
            "STOP SLAVE".into(),
            format!("SET GLOBAL gtid_slave_pos = {}", quote_str(gtid)),
            format!(
                "CHANGE MASTER TO MASTER_HOST = {}, MASTER_PORT = {}, MASTER_USER = {}, \
                 MASTER_PASSWORD = {password}, MASTER_USE_GTID = slave_pos",
                quote_str(&src.host),
                src.port,
                quote_str(&src.user)
            ),
            "START SLAVE".into(),
        ],
    }
}

/// The secondary's replication state (`SHOW SLAVE STATUS`, MySQL's `SHOW REPLICA STATUS`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplicaStatus {
    /// `host:port` it replicates from.
    pub source: String,
    /// `Yes`, `No` or `Connecting`.
    pub io_running: String,
    pub sql_running: String,
    pub last_io_errno: u32,
    pub last_io_error: String,
    pub last_sql_errno: u32,
    pub last_sql_error: String,
    /// `Seconds_Behind_Master`; None while a thread is stopped.
    pub seconds_behind: Option<u64>,
}

impl ReplicaStatus {
    /// Read it; None when the server is not configured as a replica.
    pub async fn read(conn: &mut Conn, flavour: Flavour) -> Result<Option<ReplicaStatus>> {
        let sql = if flavour == Flavour::MySql {
            "SHOW REPLICA STATUS"
        } else {
            "SHOW SLAVE STATUS"
        };
        let Some(m) = conn.first_named(sql).await? else {
            return Ok(None);
        };
        let get = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| m.get(*n).cloned().flatten())
                .unwrap_or_default()
        };
        let num = |names: &[&str]| get(names).parse::<u32>().unwrap_or(0);
        let host = get(&["Master_Host", "Source_Host"]);
        if host.is_empty() {
            return Ok(None);
        }
        Ok(Some(ReplicaStatus {
            source: format!("{host}:{}", get(&["Master_Port", "Source_Port"])),
            io_running: get(&["Slave_IO_Running", "Replica_IO_Running"]),
            sql_running: get(&["Slave_SQL_Running", "Replica_SQL_Running"]),
            last_io_errno: num(&["Last_IO_Errno"]),
            last_io_error: get(&["Last_IO_Error"]),
            last_sql_errno: num(&["Last_SQL_Errno"]),
            last_sql_error: get(&["Last_SQL_Error"]),
            seconds_behind: get(&["Seconds_Behind_Master", "Seconds_Behind_Source"])
                .parse()
                .ok(),
        }))
    }

    /// Either thread runs (or tries to connect).
    pub fn active(&self) -> bool {
        let on = |s: &str| !s.is_empty() && !s.eq_ignore_ascii_case("no");
        on(&self.io_running) || on(&self.sql_running)
    }

    /// Both threads run and the IO thread is connected.
    pub fn running(&self) -> bool {
        self.io_running.eq_ignore_ascii_case("yes") && self.sql_running.eq_ignore_ascii_case("yes")
    }

    /// The error that stops replication from working, as one clear line.
    pub fn failure(&self, src: &str) -> Option<DrError> {
        let line = |errno, message| Some(DrError::Replication { errno, message });
        // MariaDB reports a refused login with the client error in the text (`message:
        // Access denied …`), not always as 1045 in Last_IO_Errno.
        let errno = if self.last_io_error.contains("Access denied") {
            1045
        } else {
            self.last_io_errno
        };
        match errno {
            0 => {}
            1236 => {
                return line(
                    1236,
                    format!(
                        "the primary {src} no longer has the binlogs from the backup's GTID \
                         (error 1236: {}); they were purged: take a new backup (dr backup \
                         --again) and restore it",
                        self.last_io_error
                    ),
                )
            }
            1045 => {
                return line(
                    1045,
                    format!(
                        "the primary {src} refused the replication user's credentials (error \
                         1045); set [dr] replication-user / replication-password (a user with \
                         REPLICATION SLAVE)"
                    ),
                )
            }
            2003 | 2005 | 2013 => {
                return line(
                    errno,
                    format!(
                        "the secondary cannot reach the primary at {src} (error {errno}); set \
                         [dr] primary-host-for-replica to the address the secondary can reach"
                    ),
                )
            }
            n if !self.io_running.eq_ignore_ascii_case("connecting") => {
                return line(
                    n,
                    format!(
                        "replication from {src} failed: error {n}: {}",
                        self.last_io_error
                    ),
                )
            }
            _ => {}
        }
        if self.last_sql_errno != 0 {
            return line(
                self.last_sql_errno,
                format!(
                    "replication from {src} stopped applying: error {}: {}",
                    self.last_sql_errno, self.last_sql_error
                ),
            );
        }
        None
    }
}

/// Transactions the replica is behind, per GTID domain: the primary's `gtid_binlog_pos`
/// sequence number minus the replica's `gtid_slave_pos` one (MariaDB GTID lists
/// `domain-server-seq,…`). Domains the replica has not seen count from 0.
pub fn lag_by_domain(primary: &str, replica: &str) -> BTreeMap<u32, u64> {
    let parse = |s: &str| -> BTreeMap<u32, u64> {
        s.split(',')
            .filter_map(|g| {
                let mut it = g.trim().splitn(3, '-');
                let domain = it.next()?.parse().ok()?;
                let _server = it.next()?;
                let seq = it.next()?.parse().ok()?;
                Some((domain, seq))
            })
            .collect()
    };
    let r = parse(replica);
    parse(primary)
        .into_iter()
        .map(|(d, seq)| (d, seq.saturating_sub(r.get(&d).copied().unwrap_or(0))))
        .collect()
}

/// What `dr replicate` did.
#[derive(Debug)]
pub struct ReplicateOutcome {
    /// Where the secondary replicates from: the primary's `host:port`, or on TiDB the
    /// TiCDC server's address.
    pub source: String,
    pub started: Started,
    pub elapsed: Duration,
}

/// How replication was started.
#[derive(Debug)]
pub enum Started {
    /// MariaDB/MySQL: replication after this GTID (the backup's).
    Gtid(String),
    /// TiDB: a TiCDC changefeed from the backup's BackupTS.
    Changefeed(tidb_steps::ReplicateOutcome),
}

/// The flow's restore, done: what replication starts from.
fn restored(flow: &Flow) -> Result<&StepRecord> {
    flow.state
        .step(StepName::Restore)
        .filter(|r| r.status == StepStatus::Done && r.point.is_some())
        .ok_or_else(|| {
            DrError::Precondition(
                "no restored backup in the flow: run `dr backup` and `dr restore` (gate 1 must \
                 be equal) before `dr replicate`"
                    .into(),
            )
            .into()
        })
}

/// The GTID the restored secondary starts from.
fn start_point(flow: &Flow) -> Result<String> {
    match restored(flow)?.point.clone() {
        Some(Point::Gtid { gtid, .. }) => Ok(gtid),
        _ => Err(DrError::Precondition(
            "the flow's backup is a TiDB one (a TSO) but the secondary is MariaDB/MySQL: the \
             flow belongs to other servers"
                .into(),
        )
        .into()),
    }
}

/// Refuse to set replication up twice by accident.
fn refuse_done(flow: &Flow, opts: &ReplicateOptions) -> Result<()> {
    if let Some(done) = flow.state.step(StepName::Replicate) {
        if done.status == StepStatus::Done && !opts.again {
            return Err(DrError::Precondition(format!(
                "replication was already set up ({}, from {}); pass --again to set it up again",
                done.ended.as_deref().unwrap_or("?"),
                done.source.as_deref().unwrap_or("?")
            ))
            .into());
        }
    }
    Ok(())
}

/// Refuse a secondary that already replicates: from anywhere else, or from here.
fn refuse_active(status: &Option<ReplicaStatus>, secondary: &str) -> Result<()> {
    if let Some(s) = status.as_ref().filter(|s| s.active()) {
        return Err(DrError::Precondition(format!(
            "the secondary '{secondary}' already replicates from {} (IO thread {}, SQL thread \
             {}); stop it (STOP SLAVE; RESET SLAVE ALL) before `dr replicate`",
            s.source, s.io_running, s.sql_running
        ))
        .into());
    }
    Ok(())
}

/// Run `dr replicate` (without its closing gate; the command runs `dr verify` after it on
/// MariaDB/MySQL).
pub async fn run(ctx: &DrContext, opts: &ReplicateOptions) -> Result<ReplicateOutcome> {
    let secondary = Source::open(ctx.secondary.clone()).await?;
    if secondary.flavour() == Flavour::TiDb {
        return run_tidb(ctx, opts).await;
    }
    let src = ReplicationSource::from_context(ctx)?;
    let store = ctx.store().await?;
    Flow::with_lock(
        store,
        &ctx.output_dir,
        "dr replicate",
        async |flow: &mut Flow| {
            refuse_done(flow, opts)?;
            let gtid = start_point(flow)?;
            let mut conn = secondary.connect().await?;
            let status = ReplicaStatus::read(&mut conn, secondary.flavour()).await?;
            let mut record = StepRecord::started_now();
            let restore = restored(flow)?;
            record.backup_id = restore.backup_id.clone();
            record.point = restore.point.clone();
            record.source = Some(src.address());
            let unfinished = flow
                .state
                .step(StepName::Replicate)
                .is_some_and(|r| r.status != StepStatus::Done);
            let ours = status
                .as_ref()
                .is_some_and(|s| s.active() && s.source == src.address());
            if opts.adopt && unfinished && ours {
                // The earlier attempt's START SLAVE went through, from gtid_slave_pos as the
                // restore set it: what runs is what this step would have started.
                tracing::info!(
                    "the secondary already replicates from {}: adopted",
                    src.address()
                );
                record.end(StepStatus::Done);
                flow.set(StepName::Replicate, record).await?;
                conn.close().await;
                return Ok(ReplicateOutcome {
                    source: src.address(),
                    started: Started::Gtid(gtid),
                    elapsed: std::time::Duration::ZERO,
                });
            }
            refuse_active(&status, secondary.name())?;
            flow.set(StepName::Replicate, record.clone()).await?;
            let started = Instant::now();
            let work = start(&mut conn, secondary.flavour(), &src, &gtid);
            let result = ctx
                .interrupt
                .interruptible(work)
                .await
                .unwrap_or_else(|signal| Err(signal.into()));
            if result.is_err() {
                // A half-started replica would make the retry refuse it as "already replicating".
                let stop = if secondary.flavour() == Flavour::MySql {
                    "STOP REPLICA"
                } else {
                    "STOP SLAVE"
                };
                if let Ok(mut c) = secondary.connect().await {
                    let _ = c.exec(stop).await;
                    c.close().await;
                }
            }
            match result {
                Ok(()) => {
                    record.end(StepStatus::Done);
                    flow.set(StepName::Replicate, record).await?;
                    conn.close().await;
                    Ok(ReplicateOutcome {
                        source: src.address(),
                        started: Started::Gtid(gtid),
                        elapsed: started.elapsed(),
                    })
                }
                Err(e) => {
                    record.end_with_error(&e);
                    flow.set(StepName::Replicate, record).await?;
                    Err(e)
                }
            }
        },
    )
    .await
}

/// `dr replicate` on TiDB: [`tidb_steps::replicate`] (the changefeed from BackupTS through
/// TiCDC's OpenAPI, then the release of the GC hold) recorded as the flow's step.
async fn run_tidb(ctx: &DrContext, opts: &ReplicateOptions) -> Result<ReplicateOutcome> {
    let store = ctx.store().await?;
    Flow::with_lock(
        store,
        &ctx.output_dir,
        "dr replicate",
        async |flow: &mut Flow| {
            refuse_done(flow, opts)?;
            let restore = restored(flow)?;
            if !matches!(restore.point, Some(Point::Tso { .. })) {
                return Err(DrError::Precondition(
                    "the flow's backup is a MariaDB/MySQL one (a GTID) but the secondary is \
                     TiDB: the flow belongs to other servers"
                        .into(),
                )
                .into());
            }
            let mut record = StepRecord::started_now();
            record.backup_id = restore.backup_id.clone();
            record.point = restore.point.clone();
            record.source = ctx.primary_cdc_addr();
            flow.set(StepName::Replicate, record.clone()).await?;
            let started = Instant::now();
            let result = tidb_steps::replicate(ctx, flow, &opts.tidb).await;
            match result {
                Ok(out) => {
                    record.changefeed = Some(out.changefeed_id.clone());
                    record.end(StepStatus::Done);
                    flow.set(StepName::Replicate, record).await?;
                    Ok(ReplicateOutcome {
                        source: ctx.primary_cdc_addr().unwrap_or_default(),
                        started: Started::Changefeed(out),
                        elapsed: started.elapsed(),
                    })
                }
                Err(e) => {
                    record.end_with_error(&e);
                    flow.set(StepName::Replicate, record).await?;
                    Err(e)
                }
            }
        },
    )
    .await
}

/// Issue the statements, then wait for both threads to run connected.
pub(crate) async fn start(
    conn: &mut Conn,
    flavour: Flavour,
    src: &ReplicationSource,
    gtid: &str,
) -> Result<()> {
    for sql in setup_statements(flavour, src, gtid, false) {
        conn.exec(&sql).await?;
    }
    let deadline = Instant::now() + START_TIMEOUT;
    // Running is only trusted once it held for a moment: a wrong password shows
    // `Connecting` first and the error a little later.
    let mut running_since: Option<Instant> = None;
    loop {
        let status = ReplicaStatus::read(conn, flavour)
            .await?
            .unwrap_or_default();
        if let Some(e) = status.failure(&src.address()) {
            return Err(e.into());
        }
        if status.running() {
            let since = *running_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(1) {
                return Ok(());
            }
        } else {
            running_since = None;
        }
        if Instant::now() >= deadline {
            return Err(DrError::Replication {
                errno: status.last_io_errno,
                message: format!(
                    "replication from {} did not start within {} s (IO thread {}, SQL thread \
                     {}{}); is the primary reachable from the secondary at that address?",
                    src.address(),
                    START_TIMEOUT.as_secs(),
                    status.io_running,
                    status.sql_running,
                    if status.last_io_error.is_empty() {
                        String::new()
                    } else {
                        format!(", last error: {}", status.last_io_error)
                    }
                ),
            }
            .into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What `dr replicate` would do (`--dry-run`): read-only.
pub async fn plan(ctx: &DrContext, opts: &ReplicateOptions) -> Result<Vec<String>> {
    let secondary = Source::open(ctx.secondary.clone()).await?;
    let store = ctx.store().await?;
    let (state, _) = Flow::peek(store.as_ref()).await?;
    if secondary.flavour() == Flavour::TiDb {
        let mut lines = tidb_steps::plan(ctx, &state, &opts.tidb);
        lines.push(format!(
            "then gate 2 (dr verify) at the newest syncpoint pair, once TiCDC wrote the first \
             (within {} s)",
            opts.tidb.sync_point_interval.as_secs()
        ));
        return Ok(lines);
    }
    let src = ReplicationSource::from_context(ctx)?;
    let gtid = match state
        .step(StepName::Restore)
        .filter(|r| r.status == StepStatus::Done)
        .and_then(|r| r.point.clone())
    {
        Some(Point::Gtid { gtid, .. }) => gtid,
        _ => "<no restored backup in the flow: refused>".into(),
    };
    let mut conn = secondary.connect().await?;
    let status = ReplicaStatus::read(&mut conn, secondary.flavour()).await?;
    conn.close().await;
    let mut lines = vec![format!(
        "would start replication on '{}' from {} as '{}' at GTID {gtid}:",
        ctx.dr.secondary,
        src.address(),
        src.user
    )];
    for sql in setup_statements(secondary.flavour(), &src, &gtid, true) {
        lines.push(format!("  {sql}"));
    }
    if let Some(s) = status.filter(|s| s.active()) {
        lines.push(format!(
            "refused: the secondary already replicates from {}",
            s.source
        ));
    }
    lines.push("then gate 2 (dr verify): both sides at one GTID fence".into());
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> ReplicationSource {
        ReplicationSource {
            host: "10.0.0.1".into(),
            port: 3307,
            user: "repl".into(),
            password: "s3cr'et".into(),
        }
    }

    #[test]
    fn mariadb_statements_start_at_the_backup_gtid() {
        let s = setup_statements(Flavour::MariaDb, &src(), "0-1-42", false);
        assert_eq!(s[1], "SET GLOBAL gtid_slave_pos = '0-1-42'");
        assert_eq!(
            s[2],
            "CHANGE MASTER TO MASTER_HOST = '10.0.0.1', MASTER_PORT = 3307, MASTER_USER = \
             'repl', MASTER_PASSWORD = 's3cr''et', MASTER_USE_GTID = slave_pos"
        );
        assert_eq!(s.last().unwrap(), "START SLAVE");
    }

    #[test]
    fn mysql_statements_use_auto_position_and_printing_hides_the_password() {
        let s = setup_statements(Flavour::MySql, &src(), "ignored", true);
        assert_eq!(
            s,
            vec![
                "STOP REPLICA".to_string(),
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST = '10.0.0.1', SOURCE_PORT = 3307, \
                 SOURCE_USER = 'repl', SOURCE_PASSWORD = '<redacted>', SOURCE_AUTO_POSITION = 1"
                    .to_string(),
                "START REPLICA".to_string(),
            ]
        );
        assert!(!format!("{:?}", src()).contains("s3cr"));
    }

    #[test]
    fn host_port_parses_and_rejects() {
        assert_eq!(parse_host_port("db:3306").unwrap(), ("db".into(), 3306));
        assert_eq!(parse_host_port("[::1]:33").unwrap(), ("::1".into(), 33));
        assert!(parse_host_port("db").is_err());
        assert!(parse_host_port(":1").is_err());
    }

    #[test]
    fn lag_is_per_domain() {
        let lag = lag_by_domain("0-1-100,1-2-7", "0-1-90");
        assert_eq!(lag, BTreeMap::from([(0, 10), (1, 7)]));
        assert_eq!(lag_by_domain("0-1-5", "0-1-5"), BTreeMap::from([(0, 0)]));
        assert!(lag_by_domain("", "").is_empty());
    }

    #[test]
    fn errors_are_one_clear_line() {
        let st = |errno, io: &str| ReplicaStatus {
            io_running: io.into(),
            sql_running: "Yes".into(),
            last_io_errno: errno,
            last_io_error: "Could not find GTID state".into(),
            ..ReplicaStatus::default()
        };
        let msg = |s: ReplicaStatus| s.failure("h:1").unwrap().to_string();
        assert!(msg(st(1236, "No")).contains("purged"));
        assert!(msg(st(1045, "Connecting")).contains("credentials"));
        assert!(msg(st(2003, "Connecting")).contains("cannot reach"));
        assert!(st(0, "Yes").failure("h:1").is_none());
        for m in [msg(st(1236, "No")), msg(st(1045, "Connecting"))] {
            assert_eq!(m.lines().count(), 1, "{m}");
        }
    }
}
