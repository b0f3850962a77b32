//! A MySQL-protocol stand-in for TiDB's BR-through-SQL surface (dr-interfaces A1, A4.2;
//! pingcap/tidb `pkg/executor/brie.go`), built on `opensrv-mysql`, on 127.0.0.1. It answers
//! `BACKUP`/`RESTORE` with the documented columns, `SHOW BACKUPS`, `SELECT CONNECTION_ID()`,
//! `BEGIN`/`SELECT @@tidb_current_ts`/`ROLLBACK`, `SET` and `KILL TIDB QUERY`, and records
//! every statement with the connection that sent it and when it arrived. For syncgate's own
//! connection setup and discovery it also answers `SELECT VERSION()`, `SHOW SESSION STATUS
//! LIKE 'Ssl_cipher'`, `SHOW DATABASES`, `SHOW FULL TABLES FROM …` and the PD discovery
//! query on `information_schema.cluster_info`.
//!
//! Connection IDs are 64-bit, as with TiDB's global kill before v7.3: the handshake carries
//! only their low 32 bits, `CONNECTION_ID()` the whole ID.

use opensrv_mysql::{
    AsyncMysqlIntermediary, AsyncMysqlShim, Column, ColumnFlags, ColumnType, ErrorKind, OkResponse,
    ParamParser, QueryResultWriter, StatementMetaWriter,
};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::AsyncWrite;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Columns and text rows of a canned answer.
type TextResult = (Vec<Column>, Vec<Vec<Option<String>>>);

/// The first connection's ID: above 32 bits, like TiDB's global connection IDs.
pub(super) const FIRST_CONNECTION_ID: u64 = 5_857_102_839_209_263_511;
/// TiDB's queue and start times in the result (UTC on syncgate's session).
pub(super) const QUEUE_TIME: &str = "2024-05-01 10:00:00";
pub(super) const EXECUTION_TIME: &str = "2024-05-01 10:00:01";
const FINISH_TIME: &str = "2024-05-01 10:00:09";
/// What `SELECT VERSION()` and the handshake report.
pub(super) const VERSION: &str = "8.0.11-TiDB-v7.5.0";
/// The system schemas `SHOW DATABASES` lists besides the user tables' schemas.
const SYSTEM_SCHEMAS: [&str; 5] = [
    "INFORMATION_SCHEMA",
    "METRICS_SCHEMA",
    "PERFORMANCE_SCHEMA",
    "mysql",
    "sys",
];

/// How a BACKUP or RESTORE ends.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
    /// The documented result row.
    Succeed,
    /// Never answers until `KILL TIDB QUERY` names the connection; then error 1317.
    Hold,
    /// An error; `{uri}` in the message is replaced by the statement's URI, secrets and all.
    Fail {
        code: u16,
        state: String,
        message: String,
    },
    /// The result's columns without a row.
    Empty,
}

/// One job as `SHOW BACKUPS` lists it.
#[derive(Debug, Clone)]
pub(super) struct Job {
    pub(super) kind: &'static str,
    pub(super) id: u64,
    pub(super) destination: String,
    pub(super) state: String,
    pub(super) progress: f64,
    pub(super) connection: u64,
    pub(super) message: Option<String>,
}

pub(super) struct TidbState {
    pub(super) backup: Outcome,
    pub(super) restore: Outcome,
    /// RESTORE answers 6 columns (`Cluster TS`; TiDB ≥ ~v6.2) or the older 5.
    pub(super) restore_six_columns: bool,
    /// `SHOW BACKUPS` with the `Id` column (older TiDB had none).
    pub(super) show_id: bool,
    pub(super) size: u64,
    pub(super) backup_ts: u64,
    /// The restore TS (`Cluster TS`, or the old shape's `BackupTS`).
    pub(super) restore_ts: u64,
    /// The TSO the next `BEGIN` gets; each one advances it by 1 ms.
    pub(super) next_tso: u64,
    /// (connection ID, statement), in arrival order.
    pub(super) statements: Vec<(u64, String)>,
    /// When each of `statements` arrived.
    pub(super) arrived: Vec<Instant>,
    /// Every TSO a `BEGIN` handed out, in order.
    pub(super) handed_out: Vec<u64>,
    /// The user tables (schema, table) that `SHOW DATABASES` / `SHOW FULL TABLES` list.
    pub(super) tables: Vec<(String, String)>,
    /// The PD client addresses (`host:port`) in `information_schema.cluster_info`.
    pub(super) pd_instances: Vec<String>,
    pub(super) jobs: Vec<Job>,
    /// Connections with a statement held open, and how to end it.
    held: HashMap<u64, Arc<Notify>>,
    /// When each held statement was killed.
    pub(super) killed_at: Vec<Instant>,
    next_connection: u64,
    /// A real server behind the stand-in: every statement it does not answer itself (the
    /// checker's queries, `SHOW DATABASES`, `SET NAMES` …) goes there on a connection of its
    /// own per session, so a gate on "TiDB" compares real rows. TiDB's own variables stay
    /// here (`tidb_snapshot` is recorded, not applied: tests keep the rows still).
    pub(super) backing: Option<mysql_async::Opts>,
    /// `tidb_super_read_only`, as `SET GLOBAL` left it.
    pub(super) super_read_only: bool,
    /// Run on the backing server when a RESTORE succeeds: BR's data movement, played by
    /// the statements the test gives.
    pub(super) on_restore: Vec<String>,
}

type Shared = Arc<Mutex<TidbState>>;

/// A running stand-in on 127.0.0.1.
pub(super) struct FakeTidb {
    pub(super) addr: SocketAddr,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl FakeTidb {
    pub(super) async fn start() -> FakeTidb {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(TidbState {
            backup: Outcome::Succeed,
            restore: Outcome::Succeed,
            restore_six_columns: true,
            show_id: true,
            size: 1_048_576,
            backup_ts: super::SAMPLE,
            restore_ts: super::SAMPLE + (90_000 << 18),
            next_tso: super::SAMPLE + (100_000 << 18),
            statements: Vec::new(),
            arrived: Vec::new(),
            handed_out: Vec::new(),
            tables: Vec::new(),
            pd_instances: Vec::new(),
            jobs: Vec::new(),
            held: HashMap::new(),
            killed_at: Vec::new(),
            next_connection: FIRST_CONNECTION_ID,
            backing: None,
            super_read_only: false,
            on_restore: Vec::new(),
        }));
        let shared = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let id = {
                    let mut s = shared.lock().unwrap();
                    let id = s.next_connection;
                    s.next_connection += 1;
                    id
                };
                let session = Session {
                    id,
                    state: shared.clone(),
                    txn_ts: None,
                    backing: None,
                };
                let (r, w) = stream.into_split();
                tokio::spawn(AsyncMysqlIntermediary::run_on(
                    session,
                    r,
                    ErrorCodes::new(w),
                ));
            }
        });
        FakeTidb {
            addr,
            state,
            server,
        }
    }

    /// Options for syncgate's calls (no `@@socket` look-up: TCP only).
    pub(super) fn opts(&self) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.addr.ip().to_string())
            .tcp_port(self.addr.port())
            .user(Some("root"))
            .prefer_socket(false)
            .into()
    }

    pub(super) fn with<R>(&self, f: impl FnOnce(&mut TidbState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// Every statement received, with its connection.
    pub(super) fn statements(&self) -> Vec<(u64, String)> {
        self.with(|s| s.statements.clone())
    }

    /// The statements connection `id` sent.
    pub(super) fn statements_of(&self, id: u64) -> Vec<String> {
        self.with(|s| {
            s.statements
                .iter()
                .filter(|(c, _)| *c == id)
                .map(|(_, sql)| sql.clone())
                .collect()
        })
    }

    /// Wait until a statement is held open on some connection; that connection's ID.
    pub(super) async fn wait_for_held(&self, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(id) = self.with(|s| s.held.keys().next().copied()) {
                return id;
            }
            assert!(
                Instant::now() < deadline,
                "no statement held within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for FakeTidb {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One client connection.
struct Session {
    id: u64,
    state: Shared,
    /// The start TS of the open transaction.
    txn_ts: Option<u64>,
    /// This session's connection to the backing server, once used.
    backing: Option<mysql_async::Conn>,
}

fn column(name: &str, coltype: ColumnType) -> Column {
    Column {
        table: String::new(),
        column: name.to_string(),
        coltype,
        colflags: ColumnFlags::empty(),
    }
}

const TEXT: ColumnType = ColumnType::MYSQL_TYPE_VAR_STRING;
const BIGINT: ColumnType = ColumnType::MYSQL_TYPE_LONGLONG;
const DATETIME: ColumnType = ColumnType::MYSQL_TYPE_DATETIME;

/// Answer with a result set of text cells (`None` = NULL).
async fn rows<W: AsyncWrite + Send + Unpin>(
    results: QueryResultWriter<'_, W>,
    columns: &[Column],
    rows: &[Vec<Option<String>>],
) -> io::Result<()> {
    let mut w = results.start(columns).await?;
    for row in rows {
        for cell in row {
            w.write_col(cell.as_deref())?;
        }
        w.end_row().await?;
    }
    w.finish().await
}

/// Answer with an error carrying any code (see [`ErrorCodes`]).
async fn error<W: AsyncWrite + Send + Unpin>(
    results: QueryResultWriter<'_, W>,
    code: u16,
    state: &str,
    message: &str,
) -> io::Result<()> {
    let marked = format!("{CODE_MARK}{code}:{state}{CODE_END}{message}");
    results
        .error(ErrorKind::ER_UNKNOWN_ERROR, marked.as_bytes())
        .await
}

async fn ok<W: AsyncWrite + Send + Unpin>(results: QueryResultWriter<'_, W>) -> io::Result<()> {
    results.completed(OkResponse::default()).await
}

/// The string literal after ` TO ` / ` FROM `, unescaped.
fn uri_of(sql: &str) -> String {
    let upper = sql.to_ascii_uppercase();
    let start = [" TO '", " FROM '"]
        .iter()
        .find_map(|k| upper.find(k).map(|i| i + k.len()))
        .expect("a BR statement has a storage literal");
    let mut out = String::new();
    let mut chars = sql[start..].chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if chars.peek() == Some(&'\'') => {
                chars.next();
                out.push('\'');
            }
            '\'' => break,
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

impl Session {
    fn record(&self, sql: &str) {
        // The driver's own settings query at connect time is not syncgate's.
        if !sql.starts_with("SELECT @@max_allowed_packet") {
            let mut s = self.state.lock().unwrap();
            s.statements.push((self.id, sql.to_string()));
            s.arrived.push(Instant::now());
        }
    }

    async fn variables<W: AsyncWrite + Send + Unpin>(
        &self,
        sql: &str,
        results: QueryResultWriter<'_, W>,
    ) -> io::Result<()> {
        let names: Vec<&str> = sql["SELECT ".len()..].split(',').map(str::trim).collect();
        let columns: Vec<Column> = names.iter().map(|n| column(n, TEXT)).collect();
        let values = names
            .iter()
            .map(|n| match n.to_ascii_lowercase().as_str() {
                "@@max_allowed_packet" => Some("67108864".to_string()),
                "@@wait_timeout" => Some("28800".to_string()),
                "@@tidb_current_ts" => Some(self.txn_ts.unwrap_or(0).to_string()),
                "@@global.tidb_super_read_only" => {
                    let on = self.state.lock().unwrap().super_read_only;
                    Some(if on { "1" } else { "0" }.to_string())
                }
                _ => None,
            })
            .collect();
        rows(results, &columns, &[values]).await
    }

    /// BACKUP or RESTORE: register the job, then answer as `outcome` says.
    async fn brie<W: AsyncWrite + Send + Unpin>(
        &self,
        kind: &'static str,
        sql: &str,
        results: QueryResultWriter<'_, W>,
    ) -> io::Result<()> {
        let uri = uri_of(sql);
        // TiDB keeps the storage without its URL parameters.
        let destination = uri.split('?').next().unwrap().to_string();
        let (outcome, six, size, backup_ts, restore_ts, job) = {
            let mut s = self.state.lock().unwrap();
            let outcome = if kind == "Backup" {
                s.backup.clone()
            } else {
                s.restore.clone()
            };
            let job = s.jobs.len();
            s.jobs.push(Job {
                kind,
                id: job as u64 + 1,
                destination: destination.clone(),
                state: kind.to_string(),
                progress: 37.5,
                connection: self.id,
                message: None,
            });
            (
                outcome,
                s.restore_six_columns,
                s.size,
                s.backup_ts,
                s.restore_ts,
                job,
            )
        };
        let finish = |state: &str, progress: f64, message: Option<String>| {
            let mut s = self.state.lock().unwrap();
            let j = &mut s.jobs[job];
            j.state = state.to_string();
            j.progress = progress;
            j.message = message;
        };
        let mut columns = vec![
            column("Destination", TEXT),
            column("Size", BIGINT),
            column("BackupTS", BIGINT),
        ];
        let mut row = vec![Some(destination), Some(size.to_string())];
        if kind == "Backup" {
            row.push(Some(backup_ts.to_string()));
        } else if six {
            columns.push(column("Cluster TS", BIGINT));
            row.push(Some(backup_ts.to_string()));
            row.push(Some(restore_ts.to_string()));
        } else {
            row.push(Some(restore_ts.to_string()));
        }
        columns.push(column("Queue Time", DATETIME));
        columns.push(column("Execution Time", DATETIME));
        row.push(Some(QUEUE_TIME.to_string()));
        row.push(Some(EXECUTION_TIME.to_string()));
        match outcome {
            Outcome::Succeed => {
                if kind == "Restore" {
                    self.play_restore().await?;
                }
                finish("Checksum", 100.0, None);
                rows(results, &columns, &[row]).await
            }
            Outcome::Empty => rows(results, &columns, &[]).await,
            Outcome::Fail {
                code,
                state,
                message,
            } => {
                let message = message.replace("{uri}", &uri);
                finish(kind, 37.5, Some(message.clone()));
                error(results, code, &state, &message).await
            }
            Outcome::Hold => {
                let notify = Arc::new(Notify::new());
                self.state
                    .lock()
                    .unwrap()
                    .held
                    .insert(self.id, notify.clone());
                notify.notified().await;
                finish(
                    &format!("{kind} Canceled"),
                    100.0,
                    Some("context canceled".into()),
                );
                error(results, 1317, "70100", "Query execution was interrupted").await
            }
        }
    }

    async fn show_backups<W: AsyncWrite + Send + Unpin>(
        &self,
        results: QueryResultWriter<'_, W>,
    ) -> io::Result<()> {
        let (show_id, jobs) = {
            let s = self.state.lock().unwrap();
            (s.show_id, s.jobs.clone())
        };
        let mut columns = Vec::new();
        if show_id {
            columns.push(column("Id", BIGINT));
        }
        columns.extend([
            column("Destination", TEXT),
            column("State", TEXT),
            column("Progress", ColumnType::MYSQL_TYPE_DOUBLE),
            column("Queue_time", DATETIME),
            column("Execution_time", DATETIME),
            column("Finish_time", DATETIME),
            column("Connection", BIGINT),
            column("Message", TEXT),
        ]);
        let table: Vec<Vec<Option<String>>> = jobs
            .iter()
            .filter(|j| j.kind == "Backup")
            .map(|j| {
                let mut row = Vec::new();
                if show_id {
                    row.push(Some(j.id.to_string()));
                }
                row.extend([
                    Some(j.destination.clone()),
                    Some(j.state.clone()),
                    Some(j.progress.to_string()),
                    Some(QUEUE_TIME.to_string()),
                    Some(EXECUTION_TIME.to_string()),
                    Some(FINISH_TIME.to_string()),
                    Some(j.connection.to_string()),
                    j.message.clone(),
                ]);
                row
            })
            .collect();
        rows(results, &columns, &table).await
    }

    /// The answer to a connection-setup or discovery query, if `sql` is one.
    fn discovery(&self, sql: &str) -> Option<TextResult> {
        let s = self.state.lock().unwrap();
        let text = |v: &str| Some(v.to_string());
        if sql.eq_ignore_ascii_case("SELECT VERSION()") {
            return Some((vec![column("VERSION()", TEXT)], vec![vec![text(VERSION)]]));
        }
        if sql.eq_ignore_ascii_case("SHOW SESSION STATUS LIKE 'Ssl_cipher'") {
            let columns = vec![column("Variable_name", TEXT), column("Value", TEXT)];
            return Some((columns, vec![vec![text("Ssl_cipher"), text("")]]));
        }
        if sql == syncgate::snapshot::tidb::pd_discovery_sql() {
            let table = s.pd_instances.iter().map(|a| vec![text(a)]).collect();
            return Some((vec![column("INSTANCE", TEXT)], table));
        }
        if sql.eq_ignore_ascii_case("SHOW DATABASES") {
            let mut names: Vec<&str> = SYSTEM_SCHEMAS.to_vec();
            for (schema, _) in &s.tables {
                if !names.contains(&schema.as_str()) {
                    names.push(schema);
                }
            }
            let table = names.into_iter().map(|n| vec![text(n)]).collect();
            return Some((vec![column("Database", TEXT)], table));
        }
        let rest = sql.strip_prefix("SHOW FULL TABLES FROM `")?;
        let (quoted, _) = rest.split_once("` WHERE Table_type = 'BASE TABLE'")?;
        let schema = quoted.replace("``", "`");
        let columns = vec![
            column(&format!("Tables_in_{schema}"), TEXT),
            column("Table_type", TEXT),
        ];
        let table = s
            .tables
            .iter()
            .filter(|(db, _)| *db == schema)
            .map(|(_, t)| vec![text(t), text("BASE TABLE")])
            .collect();
        Some((columns, table))
    }

    /// The `on_restore` statements, on a connection of their own to the backing server.
    async fn play_restore(&self) -> io::Result<()> {
        use mysql_async::prelude::Queryable;
        let (opts, statements) = {
            let s = self.state.lock().unwrap();
            (s.backing.clone(), s.on_restore.clone())
        };
        let Some(opts) = opts.filter(|_| !statements.is_empty()) else {
            return Ok(());
        };
        let io_err = |e: mysql_async::Error| io::Error::other(e.to_string());
        let mut conn = mysql_async::Conn::new(opts).await.map_err(io_err)?;
        for sql in statements {
            conn.query_drop(sql).await.map_err(io_err)?;
        }
        conn.disconnect().await.map_err(io_err)
    }

    fn backed(&self) -> bool {
        self.state.lock().unwrap().backing.is_some()
    }

    /// Run `sql` on the backing server and relay its answer: the result set in the text
    /// protocol (types and flags as the server sent them), an OK, or its error.
    async fn forward<W: AsyncWrite + Send + Unpin>(
        &mut self,
        sql: &str,
        results: QueryResultWriter<'_, W>,
    ) -> io::Result<()> {
        use mysql_async::prelude::Queryable;
        let io_err = |e: mysql_async::Error| io::Error::other(e.to_string());
        if self.backing.is_none() {
            let opts = self.state.lock().unwrap().backing.clone();
            let Some(opts) = opts else {
                let message = format!("fake TiDB: unsupported statement {sql}");
                return error(results, 1105, "HY000", &message).await;
            };
            self.backing = Some(mysql_async::Conn::new(opts).await.map_err(io_err)?);
        }
        let conn = self.backing.as_mut().unwrap();
        let answer = async {
            let mut result = conn.query_iter(sql).await?;
            let columns = result.columns().map(|c| c.to_vec()).unwrap_or_default();
            let affected = result.affected_rows();
            let rows: Vec<mysql_async::Row> = result.collect().await?;
            Ok::<_, mysql_async::Error>((columns, affected, rows))
        };
        let (columns, affected, table) = match answer.await {
            Ok(a) => a,
            Err(mysql_async::Error::Server(e)) => {
                return error(results, e.code, &e.state, &e.message).await
            }
            Err(e) => return Err(io_err(e)),
        };
        if columns.is_empty() {
            return results
                .completed(OkResponse {
                    affected_rows: affected,
                    ..OkResponse::default()
                })
                .await;
        }
        let columns: Vec<Column> = columns
            .iter()
            .map(|c| Column {
                table: c.org_table_str().into_owned(),
                column: c.name_str().into_owned(),
                coltype: ColumnType::try_from(c.column_type() as u8)
                    .unwrap_or(ColumnType::MYSQL_TYPE_VAR_STRING),
                colflags: ColumnFlags::from_bits_truncate(c.flags().bits()),
            })
            .collect();
        let mut w = results.start(&columns).await?;
        for row in &table {
            for i in 0..row.len() {
                match row.as_ref(i) {
                    Some(mysql_async::Value::Bytes(b)) => w.write_col(Some(&b[..]))?,
                    _ => w.write_col(None::<&[u8]>)?,
                }
            }
            w.end_row().await?;
        }
        w.finish().await
    }

    async fn kill<W: AsyncWrite + Send + Unpin>(
        &self,
        sql: &str,
        results: QueryResultWriter<'_, W>,
    ) -> io::Result<()> {
        let target: Option<u64> = sql["KILL TIDB QUERY ".len()..].trim().parse().ok();
        let held = {
            let mut s = self.state.lock().unwrap();
            let held = target.and_then(|id| s.held.remove(&id));
            if held.is_some() {
                s.killed_at.push(Instant::now());
            }
            held
        };
        match held {
            Some(notify) => {
                notify.notify_one();
                ok(results).await
            }
            None => {
                let message = format!("Unknown thread id: {}", &sql["KILL TIDB QUERY ".len()..]);
                error(results, 1094, "HY000", &message).await
            }
        }
    }
}

#[async_trait::async_trait]
impl<W: AsyncWrite + Send + Unpin> AsyncMysqlShim<W> for Session {
    type Error = io::Error;

    fn version(&self) -> String {
        VERSION.to_string()
    }

    fn connect_id(&self) -> u32 {
        // The handshake's field has 32 bits.
        self.id as u32
    }

    async fn on_prepare<'a>(
        &'a mut self,
        _: &'a str,
        info: StatementMetaWriter<'a, W>,
    ) -> io::Result<()> {
        info.error(
            ErrorKind::ER_UNKNOWN_ERROR,
            b"fake TiDB: no prepared statements",
        )
        .await
    }

    async fn on_execute<'a>(
        &'a mut self,
        _: u32,
        _: ParamParser<'a>,
        results: QueryResultWriter<'a, W>,
    ) -> io::Result<()> {
        error(results, 1105, "HY000", "fake TiDB: no prepared statements").await
    }

    async fn on_close<'a>(&'a mut self, _: u32)
    where
        W: 'async_trait,
    {
    }

    async fn on_query<'a>(
        &'a mut self,
        query: &'a str,
        results: QueryResultWriter<'a, W>,
    ) -> io::Result<()> {
        let sql = query.trim();
        self.record(sql);
        let upper = sql.to_ascii_uppercase();
        let tidb_own = upper.contains("TIDB_");
        let backed = self.backed();
        if backed && upper.starts_with("SET GLOBAL TIDB_SUPER_READ_ONLY") {
            let on = upper.trim_end().ends_with("ON") || upper.trim_end().ends_with('1');
            self.state.lock().unwrap().super_read_only = on;
            ok(results).await
        } else if backed
            && !tidb_own
            && (upper.starts_with("SET ") || upper.starts_with("SELECT @@"))
        {
            self.forward(sql, results).await
        } else if upper.starts_with("SELECT @@") {
            self.variables(sql, results).await
        } else if upper == "SELECT CONNECTION_ID()" {
            let id = Some(self.id.to_string());
            rows(results, &[column("CONNECTION_ID()", BIGINT)], &[vec![id]]).await
        } else if upper == "BEGIN" || upper == "START TRANSACTION" {
            self.txn_ts = Some({
                let mut s = self.state.lock().unwrap();
                let ts = s.next_tso;
                s.next_tso += 1 << 18;
                s.handed_out.push(ts);
                ts
            });
            ok(results).await
        } else if upper == "ROLLBACK" || upper == "COMMIT" {
            self.txn_ts = None;
            ok(results).await
        } else if upper.starts_with("SET ") {
            ok(results).await
        } else if upper.starts_with("BACKUP ") {
            self.brie("Backup", sql, results).await
        } else if upper.starts_with("RESTORE ") {
            self.brie("Restore", sql, results).await
        } else if upper == "SHOW BACKUPS" {
            self.show_backups(results).await
        } else if backed && (upper.starts_with("SHOW DATABASES") || upper.starts_with("SHOW FULL"))
        {
            self.forward(sql, results).await
        } else if let Some(answer) = self.discovery(sql) {
            let (columns, table) = answer;
            rows(results, &columns, &table).await
        } else if upper.starts_with("KILL TIDB QUERY ") {
            self.kill(sql, results).await
        } else {
            self.forward(sql, results).await
        }
    }
}

// ---------------------------------------------------------------------------------------
// Error codes: opensrv-mysql's `ErrorKind` lists MySQL/MariaDB codes only, not TiDB's own
// (8124, 8125). Errors are sent as ER_UNKNOWN_ERROR with the real code and SQLSTATE in a
// marker at the start of the message, and this writer puts them into the packet.
// ---------------------------------------------------------------------------------------

const CODE_MARK: &str = "\u{1}code=";
const CODE_END: char = '\u{1}';

/// Passes packets through, rewriting marked ERR packets (`0xFF`, code, `#`, SQLSTATE,
/// message) to carry the marked code and SQLSTATE.
struct ErrorCodes<W> {
    inner: W,
    /// Bytes of a packet not yet complete.
    pending: Vec<u8>,
    /// Complete packets not yet written.
    out: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> ErrorCodes<W> {
    fn new(inner: W) -> Self {
        ErrorCodes {
            inner,
            pending: Vec::new(),
            out: Vec::new(),
        }
    }

    fn cut_packets(&mut self) {
        while self.pending.len() >= 4 {
            let p = &self.pending;
            let len = u32::from_le_bytes([p[0], p[1], p[2], 0]) as usize;
            if p.len() < 4 + len {
                return;
            }
            let seq = p[3];
            let payload = rewrite_error(&p[4..4 + len]);
            self.pending.drain(..4 + len);
            self.out
                .extend_from_slice(&(payload.len() as u32).to_le_bytes()[..3]);
            self.out.push(seq);
            self.out.extend_from_slice(&payload);
        }
    }

    fn push(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

fn rewrite_error(payload: &[u8]) -> Vec<u8> {
    let marked = (payload.first() == Some(&0xFF) && payload.len() > 9)
        .then(|| payload[9..].strip_prefix(CODE_MARK.as_bytes()))
        .flatten()
        .and_then(|rest| std::str::from_utf8(rest).ok())
        .and_then(|rest| rest.split_once(CODE_END))
        .and_then(|(head, message)| {
            let (code, state) = head.split_once(':')?;
            Some((code.parse::<u16>().ok()?, state.to_string(), message))
        });
    let Some((code, state, message)) = marked else {
        return payload.to_vec();
    };
    let mut out = vec![0xFF];
    out.extend_from_slice(&code.to_le_bytes());
    out.push(b'#');
    out.extend_from_slice(state.as_bytes());
    out.extend_from_slice(message.as_bytes());
    out
}

impl<W: AsyncWrite + Unpin> AsyncWrite for ErrorCodes<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.pending.extend_from_slice(buf);
        this.cut_packets();
        // What cannot be written now is written by the flush that follows every packet.
        if let Poll::Ready(Err(e)) = this.push(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.push(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.push(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
