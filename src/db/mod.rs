//! Connections to one data source: opening, session setup, flavour detection and the
//! handful of query shapes the pipeline needs.
//!
//! Every connection runs the same session setup so that both sides render values alike:
//! `utf8mb4` connection charset, `time_zone = '+00:00'` (TIMESTAMP text is zone independent),
//! and `sql_mode` without `NO_BACKSLASH_ESCAPES`/`ANSI_QUOTES` (syncgate's SQL uses backticks
//! and its own literal forms). User `session` variables from the config come last.
//!
//! Connections are handed out one by one (no pool): each worker owns its connection for the
//! run, which is what a pinned snapshot per worker needs.

pub mod tls;

use crate::error::{Error, Result, ServerError};
use crate::row::{Row, Value};
use mysql_async::prelude::Queryable;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How long a connection attempt may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The server product behind a data source; a few statements differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    MariaDb,
    MySql,
    TiDb,
}

impl Flavour {
    /// Classify from `SELECT VERSION()`.
    pub fn from_version(version: &str) -> Self {
        let v = version.to_ascii_lowercase();
        if v.contains("tidb") {
            Flavour::TiDb
        } else if v.contains("mariadb") {
            Flavour::MariaDb
        } else {
            Flavour::MySql
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::MariaDb => "mariadb",
            Flavour::MySql => "mysql",
            Flavour::TiDb => "tidb",
        }
    }
}

impl fmt::Display for Flavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything needed to reach a data source.
#[derive(Clone)]
pub struct SourceSpec {
    /// The data-source name from the config (used in messages).
    pub name: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// Extra `SET SESSION` assignments, already rendered (`name = value`).
    pub session: Vec<String>,
    /// The configured `snapshot`.
    pub snapshot: crate::snapshot::Snapshot,
    /// TLS options ([`crate::db::tls::ssl_opts`]); `None` is plain TCP. With `Some`, every
    /// connection is TLS or fails.
    pub tls: Option<mysql_async::SslOpts>,
    /// `sql-hint-use-index = "auto"`: chunk queries name the chunk key's index with
    /// `FORCE INDEX`.
    pub force_index: bool,
    /// `sql-mode`: the session's `sql_mode` instead of the server's default (syncgate still
    /// drops `NO_BACKSLASH_ESCAPES` and `ANSI_QUOTES`, which change how its SQL parses).
    pub sql_mode: Option<String>,
}

impl fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceSpec")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"******")
            .field("session", &self.session)
            .field("snapshot", &self.snapshot)
            // The options hold the client key: say only whether TLS is on.
            .field("tls", &self.tls.is_some())
            .field("force_index", &self.force_index)
            .finish()
    }
}

impl SourceSpec {
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The driver's connection options (no session setup: [`Source::connect`] adds it).
    pub fn opts(&self) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(Some(self.password.clone()))
            .prefer_socket(false)
            .stmt_cache_size(0)
            .ssl_opts(self.tls.clone())
            .into()
    }
}

/// An opened data source: its spec plus what was learned on the first connection.
#[derive(Debug, Clone)]
pub struct Source {
    spec: Arc<SourceSpec>,
    flavour: Flavour,
    version: String,
    /// The TLS cipher of the first connection (`Ssl_cipher`), `None` when not encrypted or
    /// the server does not say.
    tls_cipher: Option<String>,
}

impl Source {
    /// Connect once to validate the address and credentials and detect the flavour.
    pub async fn open(spec: SourceSpec) -> Result<Source> {
        let spec = Arc::new(spec);
        let mut conn = raw_connect(&spec).await?;
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(|e| query_error(&spec.name, "SELECT VERSION()", &e))?;
        let version = version.unwrap_or_default();
        let flavour = Flavour::from_version(&version);
        let tls_cipher = match conn
            .query_first::<(String, String), _>("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            .await
        {
            Ok(row) => row.map(|(_, cipher)| cipher).filter(|c| !c.is_empty()),
            Err(e) => {
                tracing::debug!("{}: cannot read Ssl_cipher: {e}", spec.name);
                None
            }
        };
        let _ = conn.disconnect().await;
        Ok(Source {
            spec,
            flavour,
            version,
            tls_cipher,
        })
    }

    /// The TLS cipher the server reports for this source's connections (`Ssl_cipher`).
    pub fn tls_cipher(&self) -> Option<&str> {
        self.tls_cipher.as_deref()
    }

    /// Whether connections to this source are encrypted: the server reports a cipher, or
    /// TLS is configured (then a connection is TLS or fails).
    pub fn encrypted(&self) -> bool {
        self.tls_cipher.is_some() || self.spec.tls.is_some()
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn spec(&self) -> &SourceSpec {
        &self.spec
    }

    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// The same source with another `snapshot` value (a resolved TiDB `auto` or datetime).
    pub fn with_snapshot(&self, snapshot: crate::snapshot::Snapshot) -> Source {
        let mut spec = (*self.spec).clone();
        spec.snapshot = snapshot;
        Source {
            spec: Arc::new(spec),
            flavour: self.flavour,
            version: self.version.clone(),
            tls_cipher: self.tls_cipher.clone(),
        }
    }

    /// Whether every connection reads at the configured TiDB snapshot.
    pub fn pins_tidb_snapshot(&self) -> bool {
        self.flavour == Flavour::TiDb && self.spec.snapshot.is_tidb_point()
    }

    /// A new connection with the session set up.
    pub async fn connect(&self) -> Result<Conn> {
        let inner = raw_connect(&self.spec).await?;
        let mut conn = Conn {
            inner,
            source: self.spec.name.clone().into(),
        };
        conn.exec("SET NAMES utf8mb4").await?;
        // UTC for temporal values; room for the packed `(key, hash)` lists of dense chunks
        // (`TablePlan::packed_key_hashes_sql`; MySQL's and TiDB's default is 1 KiB).
        conn.exec("SET SESSION time_zone = '+00:00', group_concat_max_len = 67108864")
            .await?;
        if let Some(mode) = &self.spec.sql_mode {
            let sql = format!("SET SESSION sql_mode = {}", crate::sql::quote_str(mode));
            conn.exec(&sql).await?;
        }
        // Keep the configured (or the server's) modes but drop the two that change how our
        // SQL text parses.
        conn.exec(
            "SET SESSION sql_mode = REPLACE(REPLACE(@@SESSION.sql_mode, \
             'NO_BACKSLASH_ESCAPES', ''), 'ANSI_QUOTES', '')",
        )
        .await?;
        if self.flavour == Flavour::MariaDb {
            // Long checksum queries must not be cut off by a server-wide statement limit.
            conn.exec("SET SESSION max_statement_time = 0").await?;
        }
        if self.flavour == Flavour::MySql && !self.version.starts_with("5.") {
            // MySQL 8 caches information_schema.TABLES (row estimates, AUTO_INCREMENT) for a
            // day by default; the check needs the current values.
            conn.exec("SET SESSION information_schema_stats_expiry = 0")
                .await?;
        }
        if self.flavour == Flavour::TiDb && self.pins_tidb_snapshot() {
            let sql = format!(
                "SET SESSION tidb_snapshot = {}",
                crate::sql::quote_str(&self.spec.snapshot.to_string())
            );
            conn.exec(&sql).await?;
        }
        for assignment in &self.spec.session {
            conn.exec(&format!("SET SESSION {assignment}")).await?;
        }
        Ok(conn)
    }
}

async fn raw_connect(spec: &SourceSpec) -> Result<mysql_async::Conn> {
    let opts = spec.opts();
    let connect_error = |message: String, server: Option<Box<ServerError>>| Error::Connect {
        source_name: spec.name.clone(),
        addr: spec.address(),
        message,
        server,
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, mysql_async::Conn::new(opts)).await {
        Err(_) => Err(connect_error(
            format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
            None,
        )),
        Ok(Err(e)) => Err(connect_error(
            spec.tls
                .as_ref()
                .and_then(|_| crate::db::tls::describe_tls_failure(&e))
                .unwrap_or_else(|| describe_mysql_error(&e)),
            server_error(&e),
        )),
        Ok(Ok(conn)) => Ok(conn),
    }
}

/// One-line description of a driver error, without the driver's decorations.
pub fn describe_mysql_error(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => ServerError::from(s).to_string(),
        mysql_async::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// A connection with syncgate's session settings, tagged with its data-source name.
pub struct Conn {
    inner: mysql_async::Conn,
    source: Arc<str>,
}

impl Conn {
    fn query_error(&self, sql: &str, e: &mysql_async::Error) -> Error {
        query_error(&self.source, sql, e)
    }

    /// The data-source name this connection belongs to.
    pub fn source_name(&self) -> &str {
        &self.source
    }

    /// Run a statement and discard any result.
    pub async fn exec(&mut self, sql: &str) -> Result<()> {
        match self.inner.query_drop(sql).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.query_error(sql, &e)),
        }
    }

    /// Run a query and collect every row as text-protocol values. Only for small results.
    pub async fn rows(&mut self, sql: &str) -> Result<Vec<Row>> {
        let mut out = Vec::new();
        let mut stream = self.stream(sql).await?;
        while let Some(row) = stream.next().await? {
            out.push(row);
        }
        Ok(out)
    }

    /// The first row of a query as column name → text value (for `SHOW` statements whose
    /// column order differs between servers).
    pub async fn first_named(
        &mut self,
        sql: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, Option<String>>>> {
        let row: Option<mysql_async::Row> = match self.inner.query_first(sql).await {
            Ok(r) => r,
            Err(e) => return Err(self.query_error(sql, &e)),
        };
        Ok(row.map(|row| {
            let names: Vec<String> = row
                .columns_ref()
                .iter()
                .map(|c| c.name_str().into_owned())
                .collect();
            names
                .into_iter()
                .zip(row.unwrap())
                .map(|(n, v)| {
                    (
                        n,
                        to_value(v).map(|b| String::from_utf8_lossy(&b).into_owned()),
                    )
                })
                .collect()
        }))
    }

    /// The first row of a query, if any.
    pub async fn first(&mut self, sql: &str) -> Result<Option<Row>> {
        let mut rows = self.rows(sql).await?;
        Ok(if rows.is_empty() {
            None
        } else {
            Some(rows.swap_remove(0))
        })
    }

    /// Stream the rows of a query one at a time (memory bounded by one row).
    pub async fn stream(&mut self, sql: &str) -> Result<RowStream<'_>> {
        let source = self.source.clone();
        match self.inner.query_iter(sql.to_string()).await {
            Ok(result) => Ok(RowStream {
                result,
                sql: sql.to_string(),
                source,
            }),
            Err(e) => Err(query_error(&source, sql, &e)),
        }
    }

    /// Close the connection politely.
    pub async fn close(self) {
        let _ = self.inner.disconnect().await;
    }

    /// The underlying driver connection, for statements this wrapper does not cover.
    pub fn inner(&mut self) -> &mut mysql_async::Conn {
        &mut self.inner
    }
}

/// Rows of one query, pulled one at a time.
pub struct RowStream<'a> {
    result: mysql_async::QueryResult<'a, 'static, mysql_async::TextProtocol>,
    sql: String,
    source: Arc<str>,
}

impl RowStream<'_> {
    /// The next row, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Row>> {
        match self.result.next().await {
            Ok(Some(row)) => Ok(Some(row.unwrap().into_iter().map(to_value).collect())),
            Ok(None) => Ok(None),
            Err(e) => Err(query_error(&self.source, &self.sql, &e)),
        }
    }
}

/// Server errors that mean the connection is gone: killed (1927), server shutdown (1053),
/// gone away (2006), lost during query (2013).
const CONNECTION_ERRORS: [u16; 4] = [1927, 1053, 2006, 2013];

/// Whether a driver error means the connection itself is broken.
pub(crate) fn connection_lost(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(_) => true,
        mysql_async::Error::Driver(d) => {
            matches!(d, mysql_async::DriverError::ConnectionClosed)
        }
        mysql_async::Error::Server(s) => CONNECTION_ERRORS.contains(&s.code),
        _ => false,
    }
}

/// A query error naming the source and (a prefix of) the statement.
fn query_error(source: &str, sql: &str, e: &mysql_async::Error) -> Error {
    let mut sql = sql.to_string();
    if sql.len() > 300 {
        let mut cut = 300;
        while !sql.is_char_boundary(cut) {
            cut -= 1;
        }
        sql.truncate(cut);
        sql.push('…');
    }
    // TiDB's GC errors are explained by the check (`snapshot::tidb::explain`): this module
    // knows servers, not what a snapshot error means.
    let message = describe_mysql_error(e);
    let server = server_error(e);
    if connection_lost(e) {
        Error::ConnectionLost {
            source_name: source.to_string(),
            sql,
            message,
            server,
        }
    } else {
        Error::Query {
            source_name: source.to_string(),
            sql,
            message,
            server,
        }
    }
}

/// The server's error inside a driver error, if the server sent one.
fn server_error(e: &mysql_async::Error) -> Option<Box<ServerError>> {
    match e {
        mysql_async::Error::Server(s) => Some(Box::new(s.into())),
        _ => None,
    }
}

/// Text-protocol values arrive as bytes; anything else (not expected) is rendered as text.
fn to_value(v: mysql_async::Value) -> Value {
    match v {
        mysql_async::Value::NULL => None,
        mysql_async::Value::Bytes(b) => Some(b),
        other => Some(other.as_sql(true).into_bytes()),
    }
}

/// Read a text cell as UTF-8 (lossy), for metadata queries.
pub fn cell_str(row: &Row, i: usize) -> Option<String> {
    row.get(i)
        .and_then(|v| v.as_ref())
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// Read a text cell as an unsigned integer.
pub fn cell_u64(row: &Row, i: usize) -> Option<u64> {
    cell_str(row, i).and_then(|s| s.trim().parse().ok())
}
