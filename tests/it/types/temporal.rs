//! DATE, DATETIME, TIMESTAMP, TIME and YEAR columns, and servers in different time zones.

use super::{case, check, dump, run_cases};
use crate::scenario::{counts, Scenario};
use crate::support::TestDb;
use mysql_async::prelude::Queryable;

#[tokio::test]
async fn temporal_types_and_year() {
    let temporal = case(
        "t_time",
        "CREATE TABLE t_time (id INT PRIMARY KEY, d DATE, t TIME(6), dt DATETIME(6), \
         ts TIMESTAMP(6) NULL DEFAULT NULL, y YEAR, t0 TIME, dt0 DATETIME)",
        "INSERT INTO t_time VALUES \
         (1, '1000-01-01', '-838:59:59.000000', '1000-01-01 00:00:00.000000', \
          '1970-01-01 00:00:01.000000', 1901, '-00:00:01', '1000-01-01 00:00:00'), \
         (2, '9999-12-31', '838:59:59.000000', '9999-12-31 23:59:59.999999', \
          '2038-01-19 03:14:07.999999', 2155, '838:59:59', '9999-12-31 23:59:59'), \
         (3, '2024-02-29', '12:34:56.789012', '2024-02-29 12:34:56.789012', \
          '2024-02-29 12:34:56.789012', 2024, '00:00:00', '2024-02-29 12:34:56'), \
         (4, '0000-00-00', '00:00:00', '0000-00-00 00:00:00', NULL, 0, NULL, \
          '0000-00-00 00:00:00'), \
         (5, NULL, NULL, NULL, NULL, NULL, NULL, NULL), \
         (6, '2024-01-01', '00:00:00', '2024-01-01 00:00:00', '2024-01-01 00:00:00', 2000, \
          '00:00:00', '2024-01-01 00:00:00'), \
         (7, '2024-01-01', '00:00:00', '2024-01-01 00:00:00', '2024-01-01 00:00:00', 2000, \
          '00:00:00', '2024-01-01 00:00:00')",
        &[
            "UPDATE t_time SET d = '1000-01-02' WHERE id = 1",
            "UPDATE t_time SET t = '838:59:58.999999' WHERE id = 2",
            "UPDATE t_time SET dt = '2024-02-29 12:34:56.789013' WHERE id = 3",
            "UPDATE t_time SET y = 1901 WHERE id = 4",
            "UPDATE t_time SET ts = '2024-02-29 12:34:56.000001' WHERE id = 5",
            "UPDATE t_time SET t0 = '-00:00:01' WHERE id = 6",
            "UPDATE t_time SET dt0 = '2024-01-01 00:00:01' WHERE id = 7",
        ],
        "SELECT * FROM t_time ORDER BY id",
    );
    run_cases(&[temporal], "").await;
}

/// syncgate reads every side in UTC (`time_zone = '+00:00'` per session), so the same
/// instants compare equal even when the servers' global time zones differ, and the fix SQL
/// (which sets the zone itself) writes the upstream's instants.
#[tokio::test]
async fn timestamps_compare_equal_when_server_time_zones_differ() {
    let s = Scenario::empty().await;
    let _zone = GlobalTimeZone::set(&s.down, "+05:00").await;
    for db in [&s.up, &s.down] {
        db.exec(
            "SET time_zone = '+00:00'; \
             CREATE TABLE t (id INT PRIMARY KEY, ts TIMESTAMP(6) NULL DEFAULT NULL, \
             ts0 TIMESTAMP NULL DEFAULT NULL); \
             INSERT INTO t VALUES (1, '2024-03-31 01:30:00.000001', '1970-01-01 00:00:01'), \
             (2, '2038-01-19 03:14:07.999999', '2000-02-29 23:59:59'), (3, NULL, NULL)",
        )
        .await;
    }
    // Precondition: in their default sessions the two servers print different text.
    let up: Vec<(String,)> =
        s.up.query("SELECT CAST(ts AS CHAR) FROM t WHERE id = 1")
            .await;
    let down: Vec<(String,)> = s
        .down
        .query("SELECT CAST(ts AS CHAR) FROM t WHERE id = 1")
        .await;
    assert_ne!(up, down, "precondition: the global time zones differ");

    let cfg = s.config("");
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(0), "{out}");

    s.down
        .exec(
            "SET time_zone = '+00:00'; UPDATE t SET ts = '2024-03-31 01:30:00.000002' WHERE id = 1",
        )
        .await;
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(counts(&s.summary(), "t"), (0, 0, 1));
    s.apply_fix_files().await;
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(0), "{out}");
    let q = "SELECT id, UNIX_TIMESTAMP(ts), UNIX_TIMESTAMP(ts0) FROM t ORDER BY id";
    assert_eq!(dump(&s.up, q).await, dump(&s.down, q).await);
}

/// Sets a server's global `time_zone` and puts `SYSTEM` back when dropped.
struct GlobalTimeZone {
    server: &'static syncgate::local::LocalServer,
}

impl GlobalTimeZone {
    async fn set(db: &TestDb, zone: &str) -> GlobalTimeZone {
        let mut conn = db.server().conn().await.unwrap();
        conn.query_drop(format!("SET GLOBAL time_zone = '{zone}'"))
            .await
            .unwrap();
        let _ = conn.disconnect().await;
        GlobalTimeZone {
            server: db.server(),
        }
    }
}

impl Drop for GlobalTimeZone {
    fn drop(&mut self) {
        let server = self.server;
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    if let Ok(mut conn) = server.conn().await {
                        let _ = conn.query_drop("SET GLOBAL time_zone = 'SYSTEM'").await;
                        let _ = conn.disconnect().await;
                    }
                });
            }
        })
        .join();
    }
}
