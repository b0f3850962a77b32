//! The test harness and `syncgate::local` against a real MariaDB.

use std::net::TcpStream;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use syncgate::local::{self, DetachedServer, LocalServer, ServerOptions};
use syncgate::playground::{self, DriftReport, DriftSpec, PlaygroundOptions, UpReport};

use crate::support::{self, TestDb};

#[tokio::test]
async fn shared_server_create_insert_select() {
    let db = TestDb::new().await;
    assert!(
        db.name()
            .starts_with("sg_shared_server_create_insert_select_"),
        "{}",
        db.name()
    );
    db.exec(
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO t VALUES (1, 'héllo 🙂')",
    )
    .await;
    let rows: Vec<(i32, String)> = db.query("SELECT id, v FROM t").await;
    assert_eq!(rows, vec![(1, "héllo 🙂".to_string())]);

    // The database is dropped with the TestDb.
    let server = db.server();
    let name = db.name().to_string();
    drop(db);
    let mut conn = server.conn().await.unwrap();
    let left: Option<String> = conn
        .exec_first(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name = ?",
            (name,),
        )
        .await
        .unwrap();
    assert_eq!(left, None);
}

#[tokio::test]
async fn pair_is_two_processes() {
    let (up, down) = support::pair().await;
    assert_ne!(up.pid(), down.pid());
    assert_ne!(up.port(), down.port());
    assert_ne!(up.data_dir(), down.data_dir());
    let mut a = up.conn().await.unwrap();
    let mut b = down.conn().await.unwrap();
    let ida: u32 = a.query_first("SELECT @@server_id").await.unwrap().unwrap();
    let idb: u32 = b.query_first("SELECT @@server_id").await.unwrap().unwrap();
    assert_eq!((ida, idb), (1, 2));
    let log_bin: u32 = a.query_first("SELECT @@log_bin").await.unwrap().unwrap();
    assert_eq!(log_bin, 1);

    // Same database name on both sides, different contents.
    let (u, d) = TestDb::pair().await;
    assert_eq!(u.name(), d.name());
    u.exec("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await;
    d.exec("CREATE TABLE t (id INT PRIMARY KEY)").await;
    let nu: Vec<i64> = u.query("SELECT COUNT(*) FROM t").await;
    let nd: Vec<i64> = d.query("SELECT COUNT(*) FROM t").await;
    assert_eq!((nu[0], nd[0]), (1, 0));
}

#[tokio::test]
async fn kill_closes_the_port_and_restart_recovers() {
    let mut server = support::start_server(9).await;
    let port = server.port();
    let pid = server.pid();
    assert_eq!(server.url(), format!("mysql://root@127.0.0.1:{port}"));
    {
        let mut conn = server.conn().await.unwrap();
        conn.query_drop(
            "CREATE DATABASE crash; CREATE TABLE crash.t (id INT PRIMARY KEY); \
             INSERT INTO crash.t VALUES (1), (2), (3)",
        )
        .await
        .unwrap();
        conn.disconnect().await.unwrap();
    }
    assert!(server.is_running());
    server.kill();
    assert!(!server.is_running());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} still exists after kill"
    );
    assert!(
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_err(),
        "port {port} still accepts connections after kill()"
    );
    assert!(server.conn().await.is_err());

    // Crash recovery keeps committed rows.
    server.restart().await.unwrap();
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), pid);
    let mut conn = server.conn().await.unwrap();
    let n: i64 = conn
        .query_first("SELECT COUNT(*) FROM crash.t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 3);
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn shutdown_is_clean_and_removes_temp_dir() {
    let server = support::start_server(10).await;
    let port = server.port();
    let dir = server.data_dir().to_path_buf();
    assert!(dir.join("data/mysql").is_dir());
    server.shutdown().await.unwrap();
    assert!(!dir.exists(), "{} not removed", dir.display());
    assert!(
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_err()
    );
}

#[tokio::test]
async fn detached_server_survives_handle_and_stops_by_dir() {
    support::require_mariadbd();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("srv");
    let opts = ServerOptions {
        server_id: Some(5),
        log_bin: true,
        data_dir: Some(dir.clone()),
        ..Default::default()
    };
    let server = LocalServer::start_detached(opts.clone()).await.unwrap();
    let (pid, port) = (server.pid(), server.port());
    assert!(server.is_detached());
    drop(server); // must not stop it

    let found = DetachedServer::find(&dir)
        .unwrap()
        .expect("server should still run");
    assert_eq!((found.pid, found.port), (pid, port));
    let mut conn = found.conn().await.unwrap();
    let gtid: String = conn
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gtid, "");
    conn.disconnect().await.unwrap();

    // A second start on the same dir is refused while it runs.
    let err = LocalServer::start_detached(opts).await.unwrap_err();
    assert!(err.to_string().contains("already runs"), "{err}");

    assert!(DetachedServer::stop(&dir).await.unwrap());
    assert_eq!(DetachedServer::find(&dir).unwrap(), None);
    assert!(!DetachedServer::stop(&dir).await.unwrap());
    // The data dir is persistent.
    assert!(dir.join("data/mysql").is_dir());
    assert!(dir.join("binlog.index").is_file());
}

#[tokio::test]
async fn fixed_port_in_use_is_reported() {
    support::require_mariadbd();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let err = LocalServer::start(ServerOptions {
        port: Some(port),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains(&format!("port {port}")), "{err}");
}

/// Stops a playground even when the test panics (its servers are detached).
pub(crate) struct PlaygroundGuard(pub(crate) std::path::PathBuf);

impl Drop for PlaygroundGuard {
    fn drop(&mut self) {
        let dir = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _ = rt.block_on(playground::down(&dir, true));
        })
        .join();
    }
}

/// Options for a 2 × 2000-row playground in `dir`, on two distinct free ports, without an S3
/// server.
pub(crate) fn playground_options(
    tmp: &std::path::Path,
    dir: &std::path::Path,
) -> PlaygroundOptions {
    let upstream_port = local::free_port().unwrap();
    let downstream_port = loop {
        let p = local::free_port().unwrap();
        if p != upstream_port {
            break p;
        }
    };
    PlaygroundOptions {
        dir: dir.to_path_buf(),
        tables: 2,
        rows: 2000,
        seed: 3,
        config_path: tmp.join("configs/playground.toml"),
        upstream_port,
        downstream_port,
        s3: None,
        spare_port: None,
    }
}

/// The first `up`: seeded, both servers up with their tables, ports in the config and state.
fn assert_freshly_up(report: &UpReport, opts: &PlaygroundOptions) {
    let (dir, upstream_port, downstream_port) =
        (&opts.dir, opts.upstream_port, opts.downstream_port);
    assert!(report.seeded && !report.already_running, "{report}");
    let st = &report.status;
    assert!(st.is_up(), "{st}");
    for role in ["upstream", "downstream"] {
        let s = st.server(role).unwrap();
        assert_eq!(
            s.tables,
            vec![("sbtest1".to_string(), 2000), ("sbtest2".to_string(), 2000)],
            "{role}"
        );
    }
    assert_eq!(st.server("upstream").unwrap().port, Some(upstream_port));
    let config = std::fs::read_to_string(&opts.config_path).unwrap();
    assert!(
        config.contains(&format!("port = {downstream_port}")),
        "{config}"
    );
    let state = playground::read_state(dir).unwrap().unwrap();
    assert_eq!(state.downstream.port, downstream_port);
}

async fn gtid_binlog_pos(conn: &mut mysql_async::Conn) -> String {
    conn.query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap()
}

/// Drift: ground truth matches the data.
async fn assert_drift_matches_data(
    drift: &DriftReport,
    up: &mut mysql_async::Conn,
    down: &mut mysql_async::Conn,
) {
    assert_eq!(drift.tables.len(), 2);
    assert_eq!(
        (drift.missing(), drift.extra(), drift.changed()),
        (10, 10, 10)
    );
    for t in &drift.tables {
        let ids = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let count = |ids: String| format!("SELECT COUNT(*) FROM {} WHERE id IN ({ids})", t.table);
        let n: i64 = down
            .query_first(count(ids(&t.missing)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0, "missing rows still downstream in {}", t.table);
        let n: i64 = down
            .query_first(count(ids(&t.extra)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 5);
        let n: i64 = up.query_first(count(ids(&t.extra))).await.unwrap().unwrap();
        assert_eq!(n, 0);
        assert!(t.extra.iter().all(|id| *id > 2000));
        let c_sql = format!(
            "SELECT id, c FROM {} WHERE id IN ({}) ORDER BY id",
            t.table,
            ids(&t.changed)
        );
        let cu: Vec<(i64, String)> = up.query(&c_sql).await.unwrap();
        let cd: Vec<(i64, String)> = down.query(&c_sql).await.unwrap();
        assert_eq!(cu.len(), 5);
        assert_eq!(cd.len(), 5);
        assert!(cu.iter().zip(&cd).all(|(x, y)| x.0 == y.0 && x.1 != y.1));
    }
}

/// Down keeps data; up again restarts without reseeding; down with removal deletes `dir`.
async fn assert_down_keeps_data_then_removes(dir: &std::path::Path, opts: &PlaygroundOptions) {
    let d = playground::down(dir, false).await.unwrap();
    assert_eq!(d.stopped, vec!["upstream", "downstream"]);
    let st = playground::status(dir).await.unwrap();
    assert!(!st.is_up() && st.servers.iter().all(|s| !s.running), "{st}");
    let again = playground::up(opts).await.unwrap();
    assert!(!again.seeded && !again.already_running);
    assert_eq!(again.status.server("downstream").unwrap().tables[0].1, 2000);

    let d = playground::down(dir, true).await.unwrap();
    assert_eq!(d.stopped.len(), 2);
    assert!(!dir.exists());
}

#[tokio::test]
async fn playground_up_status_drift_down() {
    support::require_mariadbd();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pg");
    let _guard = PlaygroundGuard(dir.clone());
    let opts = playground_options(tmp.path(), &dir);
    let report = playground::up(&opts).await.unwrap();
    assert_freshly_up(&report, &opts);

    // Both sides hold the same data.
    let up_srv = DetachedServer::find(&dir.join("upstream"))
        .unwrap()
        .unwrap();
    let down_srv = DetachedServer::find(&dir.join("downstream"))
        .unwrap()
        .unwrap();
    let mut up = up_srv.conn().await.unwrap();
    let mut down = down_srv.conn().await.unwrap();
    let checksum = "CHECKSUM TABLE sbtest.sbtest1, sbtest.sbtest2";
    let a: Vec<(String, i64)> = up.query(checksum).await.unwrap();
    let b: Vec<(String, i64)> = down.query(checksum).await.unwrap();
    assert_eq!(a, b);
    let gtid_before = gtid_binlog_pos(&mut down).await;

    // Idempotent; a request for another shape is not applied, and the report says so.
    let again = playground::up(&opts).await.unwrap();
    assert!(again.already_running);
    assert_eq!(again.unapplied_note(), None, "{again}");
    let mut other = opts.clone();
    other.tables += 1;
    other.rows *= 10;
    let again = playground::up(&other).await.unwrap();
    assert!(again.already_running);
    let text = again.to_string();
    assert!(text.contains("keeps its existing data"), "{text}");
    assert!(text.contains("down --purge"), "{text}");

    // `demo` never deletes a playground that is up unless told: without a terminal and
    // without --reset it refuses, and the data stays.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args(["demo", "--dir"])
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        crate::scenario::describe(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pass --reset"), "{stderr}");
    assert!(playground::status(&dir).await.unwrap().is_up());

    // Drift: ground truth matches the data.
    let drift = playground::inject_drift(&dir, &DriftSpec::default())
        .await
        .unwrap();
    assert_drift_matches_data(&drift, &mut up, &mut down).await;
    let gtid_after = gtid_binlog_pos(&mut down).await;
    assert_eq!(gtid_before, gtid_after, "drift must not reach the binlog");
    up.disconnect().await.unwrap();
    down.disconnect().await.unwrap();

    assert_down_keeps_data_then_removes(&dir, &opts).await;
}

#[tokio::test]
async fn early_exit_quotes_the_error_log() {
    support::require_mariadbd();
    let err = LocalServer::start(ServerOptions {
        extra_args: vec!["--no-such-option-for-syncgate".into()],
        ..Default::default()
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("exited during start-up"), "{err}");
    assert!(err.contains("no-such-option-for-syncgate"), "{err}");
}
