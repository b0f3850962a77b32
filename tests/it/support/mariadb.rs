//! Shared MariaDB servers for the integration tests.
//!
//! # Servers
//!
//! - [`shared`]: one server per test *process*, started lazily on first use. Under
//!   `cargo nextest` every test runs in its own process, so every test gets a fresh server
//!   (about 0.3 s from the cached template); under `cargo test` all tests of the binary share
//!   it and isolate themselves by database name ([`TestDb`]).
//! - [`pair`]: `(upstream, downstream)`: the shared server plus a second independent server.
//!   Both have binlogs on (server ids 1 and 2).
//!
//! The servers live in `static`s, whose destructors never run. They are still killed when the
//! test process exits, however it exits: [`syncgate::local::LocalServer`] attaches a watchdog
//! process that SIGKILLs the server (and removes its temporary dir) as soon as the pipe it
//! shares with the test process closes, i.e. when the test process is gone (see the module
//! docs of `syncgate::local`). Leftover dirs of killed runs are also swept on the next start.
//!
//! Each `#[tokio::test]` has its own runtime, so never cache a connection across tests: ask
//! the server (or the [`TestDb`]) for a new one.
//!
//! # Missing MariaDB
//!
//! If `mariadbd` is not installed, every test that needs a server panics with a message
//! saying so; nothing is skipped silently.

use std::sync::atomic::{AtomicU32, Ordering};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use syncgate::local::{mariadbd_available, LocalServer, ServerOptions};
use tokio::sync::OnceCell;

static SHARED: OnceCell<LocalServer> = OnceCell::const_new();
static SECOND: OnceCell<LocalServer> = OnceCell::const_new();
static THIRD: OnceCell<LocalServer> = OnceCell::const_new();
static FOURTH: OnceCell<LocalServer> = OnceCell::const_new();

/// Panic with a clear message unless `mariadbd` can be found.
pub fn require_mariadbd() {
    if !mariadbd_available() {
        panic!(
            "mariadbd / mariadb-install-db not found (PATH, /usr/sbin, /usr/bin): the integration \
             tests need a local MariaDB. Install it with `apt-get install -y mariadb-server` \
             (or run .ci/run, which does)."
        );
    }
}

/// Start a private server (not shared; killed when the handle drops).
pub async fn start_server(server_id: u32) -> LocalServer {
    require_mariadbd();
    LocalServer::start(ServerOptions {
        server_id: Some(server_id),
        log_bin: true,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("cannot start a test MariaDB server: {e}"))
}

async fn start_shared(server_id: u32) -> LocalServer {
    let server = start_server(server_id).await;
    drop_leftover_dbs(&server).await;
    server
}

/// The server shared by all tests of this process (upstream side, server id 1).
pub async fn shared() -> &'static LocalServer {
    SHARED.get_or_init(|| start_shared(1)).await
}

/// A second shared server (downstream side, server id 2), independent of [`shared`].
pub async fn second() -> &'static LocalServer {
    SECOND.get_or_init(|| start_shared(2)).await
}

/// Third and fourth shared servers (server ids 3 and 4), for several upstream sources.
pub async fn third() -> &'static LocalServer {
    THIRD.get_or_init(|| start_shared(3)).await
}

pub async fn fourth() -> &'static LocalServer {
    FOURTH.get_or_init(|| start_shared(4)).await
}

/// `(upstream, downstream)`: two different shared servers. Tests isolate by database name,
/// e.g. with [`TestDb::pair`].
pub async fn pair() -> (&'static LocalServer, &'static LocalServer) {
    let up = shared().await;
    let down = second().await;
    (up, down)
}

/// Drop `sg_%` databases left by earlier runs against this server.
async fn drop_leftover_dbs(server: &LocalServer) {
    let mut conn = server
        .conn()
        .await
        .unwrap_or_else(|e| panic!("connect to test server: {e}"));
    let names: Vec<String> = conn
        .query(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'sg\\_%'",
        )
        .await
        .expect("list leftover test databases");
    for name in names {
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
            .await
            .expect("drop leftover test database");
    }
    let _ = conn.disconnect().await;
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `sg_<test name>_<counter>`, at most 64 characters of `[a-z0-9_]`.
fn unique_db_name(hint: Option<&str>) -> String {
    let thread = std::thread::current();
    let raw = hint.or(thread.name()).unwrap_or("test");
    // "module::test_name" -> "test_name" keeps the useful part within the length limit.
    let raw = raw.rsplit("::").next().unwrap_or(raw);
    let mut clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    clean.truncate(48);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("sg_{clean}_{n}")
}

/// A database created for one test on one server, dropped when the value drops (or
/// explicitly with [`TestDb::drop_db`]).
#[derive(Debug)]
pub struct TestDb {
    server: &'static LocalServer,
    name: String,
    dropped: bool,
}

impl TestDb {
    /// A fresh database on the [`shared`] server, named after the current test.
    pub async fn new() -> TestDb {
        TestDb::on(shared().await).await
    }

    /// A fresh database on `server`, named after the current test.
    pub async fn on(server: &'static LocalServer) -> TestDb {
        TestDb::create(server, unique_db_name(None)).await
    }

    /// A database with the same (fresh) name on both servers of [`pair`]:
    /// `(upstream, downstream)`.
    pub async fn pair() -> (TestDb, TestDb) {
        let (up, down) = pair().await;
        let name = unique_db_name(None);
        let a = TestDb::create(up, name.clone()).await;
        let b = TestDb::create(down, name).await;
        (a, b)
    }

    /// Create database `name` (utf8mb4) on `server`, replacing any database of that name.
    pub async fn create(server: &'static LocalServer, name: String) -> TestDb {
        let mut conn = server
            .conn()
            .await
            .unwrap_or_else(|e| panic!("connect to test server: {e}"));
        conn.query_drop(format!(
            "DROP DATABASE IF EXISTS `{name}`; \
             CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        ))
        .await
        .unwrap_or_else(|e| panic!("create test database {name}: {e}"));
        let _ = conn.disconnect().await;
        TestDb {
            server,
            name,
            dropped: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn server(&self) -> &'static LocalServer {
        self.server
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `mysql://root@127.0.0.1:PORT/NAME`.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server.url(), self.name)
    }

    /// A new connection with this database as the default.
    pub async fn conn(&self) -> Conn {
        let opts =
            mysql_async::OptsBuilder::from_opts(self.server.opts()).db_name(Some(&self.name));
        Conn::new(opts)
            .await
            .unwrap_or_else(|e| panic!("connect to test database {}: {e}", self.name))
    }

    /// Run one or more `;`-separated statements in this database (panics on error).
    pub async fn exec(&self, sql: &str) {
        let mut conn = self.conn().await;
        conn.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{e}\n  sql: {sql}"));
        let _ = conn.disconnect().await;
    }

    /// Rows of a query in this database (panics on error).
    pub async fn query<T: mysql_async::prelude::FromRow + Send + 'static>(
        &self,
        sql: &str,
    ) -> Vec<T> {
        let mut conn = self.conn().await;
        let rows = conn
            .query(sql)
            .await
            .unwrap_or_else(|e| panic!("{e}\n  sql: {sql}"));
        let _ = conn.disconnect().await;
        rows
    }

    /// A data source `up` for this database's server, as root, reading at `snapshot`.
    pub fn source_spec(&self, snapshot: syncgate::snapshot::Snapshot) -> syncgate::db::SourceSpec {
        syncgate::db::SourceSpec {
            name: "up".into(),
            host: "127.0.0.1".into(),
            port: self.port(),
            user: "root".into(),
            password: String::new(),
            session: vec![],
            snapshot,
            tls: None,
            force_index: false,
            sql_mode: None,
        }
    }

    /// Drop the database now.
    pub async fn drop_db(mut self) {
        drop_database(self.server, &self.name).await;
        self.dropped = true;
    }
}

async fn drop_database(server: &LocalServer, name: &str) {
    if let Ok(mut conn) = server.conn().await {
        let _ = conn
            .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
            .await;
        let _ = conn.disconnect().await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Drop runs inside (or outside) a test's runtime; use a private one on a thread.
        let server = self.server;
        let name = std::mem::take(&mut self.name);
        let handle = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(drop_database(server, &name));
            }
        });
        let _ = handle.join();
    }
}

/// `FLUSH BINARY LOGS`, then `PURGE BINARY LOGS TO` the new file until every older binlog
/// is really gone; returns the one file left. MariaDB purges a binlog only after InnoDB
/// has written the binlog checkpoint for it, which trails the FLUSH by a moment: a PURGE
/// right after the FLUSH may silently keep the older files (seen on 10.11).
pub async fn purge_binlogs(server: &LocalServer) -> String {
    let mut c = server.conn().await.expect("connect");
    c.query_drop("FLUSH BINARY LOGS").await.expect("flush");
    let row: mysql_async::Row = c
        .query_first("SHOW MASTER STATUS")
        .await
        .expect("SHOW MASTER STATUS")
        .expect("binlog on");
    let file: String = row.get(0).expect("file");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        c.query_drop(format!("PURGE BINARY LOGS TO '{file}'"))
            .await
            .expect("purge");
        let rows: Vec<mysql_async::Row> = c.query("SHOW BINARY LOGS").await.expect("list");
        let files: Vec<String> = rows.iter().filter_map(|r| r.get(0)).collect();
        if files == [file.clone()] {
            let _ = c.disconnect().await;
            return file;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "PURGE BINARY LOGS TO '{file}' still leaves {files:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
