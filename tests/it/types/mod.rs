//! Every column type end to end against two real MariaDB servers: for each type,
//!
//! - (a) equal data is reported equal (exit 0);
//! - (b) a change of one value of that type on the downstream is found as one changed row
//!   (each drift statement changes one value in its own row, so the changed-row count equals
//!   the number of drift statements exactly when every change was found);
//! - (c) the fix SQL files, applied as a user would, make the check pass and leave the
//!   downstream holding exactly the upstream's bytes (compared through an exact select
//!   list: FLOAT widened to DOUBLE, everything else as the server sends it).
//!
//! The comparison rules these tests pin down are written up in docs/comparison-rules.md.

use crate::scenario::{counts, describe, syncgate, Scenario};
use crate::support::TestDb;
use mysql_async::prelude::Queryable;

/// A row of text-protocol values (`None` = NULL).
pub type Dump = Vec<Vec<Option<Vec<u8>>>>;

/// The rows of `sql` on `db`, read in UTC.
pub async fn dump(db: &TestDb, sql: &str) -> Dump {
    let mut conn = db.conn().await;
    conn.query_drop("SET time_zone = '+00:00'").await.unwrap();
    let rows: Vec<mysql_async::Row> = conn
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{e}\n  sql: {sql}"));
    let _ = conn.disconnect().await;
    rows.into_iter()
        .map(|r| {
            r.unwrap()
                .into_iter()
                .map(|v| match v {
                    mysql_async::Value::NULL => None,
                    mysql_async::Value::Bytes(b) => Some(b),
                    other => Some(other.as_sql(true).into_bytes()),
                })
                .collect()
        })
        .collect()
}

/// One table of one type family.
pub struct Case {
    pub table: &'static str,
    /// `CREATE TABLE …` (and anything else both sides need).
    pub ddl: String,
    /// Statements filling the table, run on both sides in UTC.
    pub seed: String,
    /// Statements run on the downstream only, each changing one value in its own row.
    pub drift: Vec<String>,
    /// A query returning the table's exact contents, ordered.
    pub dump: String,
}

/// Run `syncgate check` on the scenario's config and return its exit code.
pub fn check(cfg: &std::path::Path) -> (Option<i32>, String) {
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    (out.status.code(), describe(&out))
}

/// (a), (b) and (c) of the module docs for every case, in one database pair. `extra` is
/// added to the config (TOML).
pub async fn run_cases(cases: &[Case], extra: &str) {
    let s = Scenario::empty().await;
    for db in [&s.up, &s.down] {
        for c in cases {
            db.exec(&format!("SET time_zone = '+00:00'; {}; {}", c.ddl, c.seed))
                .await;
        }
    }
    let cfg = s.config(extra);
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(0), "equal data must be equal\n{out}");
    let summary = s.summary();
    assert_eq!(
        summary["tables"].as_array().unwrap().len(),
        cases.len(),
        "{summary:#}"
    );

    for c in cases {
        for d in &c.drift {
            s.down.exec(&format!("SET time_zone = '+00:00'; {d}")).await;
        }
    }
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(1), "{out}");
    let summary = s.summary();
    for c in cases {
        assert_eq!(
            counts(&summary, c.table),
            (0, 0, c.drift.len() as u64),
            "{}: (missing, extra, changed); drift {:?}\n{summary:#}",
            c.table,
            c.drift
        );
    }

    s.apply_fix_files().await;
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(0), "after the fix SQL\n{out}");
    for c in cases {
        assert_eq!(
            dump(&s.up, &c.dump).await,
            dump(&s.down, &c.dump).await,
            "{}: downstream bytes after the fix",
            c.table
        );
    }
}

fn case(table: &'static str, ddl: &str, seed: &str, drift: &[&str], dump: &str) -> Case {
    Case {
        table,
        ddl: ddl.to_string(),
        seed: seed.to_string(),
        drift: drift.iter().map(|d| d.to_string()).collect(),
        dump: dump.to_string(),
    }
}

#[tokio::test]
async fn integers_of_every_width_and_exact_decimals() {
    let ints = case(
        "t_int",
        "CREATE TABLE t_int (id INT PRIMARY KEY, ti TINYINT, tu TINYINT UNSIGNED, \
         si SMALLINT, su SMALLINT UNSIGNED, mi MEDIUMINT, mu MEDIUMINT UNSIGNED, i INT, \
         iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED, z INT(6) ZEROFILL)",
        "INSERT INTO t_int VALUES \
         (1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0, 0), \
         (2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, \
          9223372036854775807, 18446744073709551615, 999999), \
         (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), \
         (4, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 7), (5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), \
         (6, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), (7, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), \
         (8, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), (9, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), \
         (10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), (11, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), \
         (12, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)",
        &[
            "UPDATE t_int SET bu = 18446744073709551614 WHERE id = 2",
            "UPDATE t_int SET bi = -9223372036854775807 WHERE id = 1",
            "UPDATE t_int SET ti = 0 WHERE id = 3",
            "UPDATE t_int SET tu = 2 WHERE id = 4",
            "UPDATE t_int SET si = 2 WHERE id = 5",
            "UPDATE t_int SET su = 2 WHERE id = 6",
            "UPDATE t_int SET mi = 2 WHERE id = 7",
            "UPDATE t_int SET mu = 2 WHERE id = 8",
            "UPDATE t_int SET i = NULL WHERE id = 9",
            "UPDATE t_int SET iu = 0 WHERE id = 10",
            "UPDATE t_int SET z = 70 WHERE id = 11",
        ],
        "SELECT * FROM t_int ORDER BY id",
    );
    let decimals = case(
        "t_dec",
        "CREATE TABLE t_dec (id INT PRIMARY KEY, d DECIMAL(65,30), m DECIMAL(10,2) NOT NULL, \
         u DECIMAL(5,0) UNSIGNED)",
        "INSERT INTO t_dec VALUES \
         (1, 12345678901234567890123456789012345.123456789012345678901234567890, 1.50, 0), \
         (2, -12345678901234567890123456789012345.123456789012345678901234567890, -0.01, 99999), \
         (3, 0.000000000000000000000000000001, 0, NULL), (4, NULL, 99999999.99, 1), \
         (5, 0, 0, 0)",
        &[
            "UPDATE t_dec SET d = 12345678901234567890123456789012345.123456789012345678901234567891 \
             WHERE id = 1",
            "UPDATE t_dec SET m = -0.02 WHERE id = 2",
            "UPDATE t_dec SET d = 0 WHERE id = 3",
            "UPDATE t_dec SET u = 2 WHERE id = 4",
            "UPDATE t_dec SET d = NULL WHERE id = 5",
        ],
        "SELECT * FROM t_dec ORDER BY id",
    );
    run_cases(&[ints, decimals], "").await;
}

/// FLOAT is compared through `CAST(f AS DOUBLE)`: the server prints FLOAT with about six
/// significant digits, so 1.0000001 and 1.0000002 both print as `1`; they must still differ,
/// and the fix must restore the exact float.
#[tokio::test]
async fn float_and_double_compare_every_bit_and_round_trip() {
    let floats = case(
        "t_float",
        "CREATE TABLE t_float (id INT PRIMARY KEY, f FLOAT, d DOUBLE, fn FLOAT NOT NULL)",
        "INSERT INTO t_float VALUES \
         (1, 1.0000001, 1.0000001, 1), (2, 0, 0, 0), (3, NULL, NULL, 0), \
         (4, 3.4028234e38, 1.7976931348623157e308, -3.4028234e38), \
         (5, 1.17549435e-38, 2.2250738585072014e-308, 1.4e-45), \
         (6, 0.1, 0.1, 0.1), (7, -1.5, -1.5, 16777216), (8, 1e-10, 1e-300, 123456.789), \
         (9, 1, 1, 1), (10, 1, 1, 1), (11, 1, 1, 1)",
        &[
            // Beyond FLOAT's six printed digits.
            "UPDATE t_float SET f = 1.0000002 WHERE id = 1",
            // 0 versus NULL, both ways.
            "UPDATE t_float SET f = NULL WHERE id = 2",
            "UPDATE t_float SET d = 0 WHERE id = 3",
            "UPDATE t_float SET d = 1.7976931348623155e308 WHERE id = 4",
            "UPDATE t_float SET fn = 2.8e-45 WHERE id = 5",
            // The 17th significant digit of a DOUBLE.
            "UPDATE t_float SET d = 0.10000000000000002 WHERE id = 6",
            "UPDATE t_float SET fn = 16777218 WHERE id = 7",
            "UPDATE t_float SET fn = 123456.796875 WHERE id = 8",
            "UPDATE t_float SET f = 1.0000001 WHERE id = 9",
            "UPDATE t_float SET f = 0.99999994 WHERE id = 10",
        ],
        "SELECT id, CAST(f AS DOUBLE), d, CAST(fn AS DOUBLE) FROM t_float ORDER BY id",
    );
    // Keyless: the multiset path reads FLOAT the same way, and its DELETE matches it.
    let keyless = case(
        "t_float_nokey",
        "CREATE TABLE t_float_nokey (f FLOAT, d DOUBLE)",
        "INSERT INTO t_float_nokey VALUES (1.0000001, 1), (2, 2), (0.1, 0.1)",
        &[],
        "SELECT CAST(f AS DOUBLE), d FROM t_float_nokey ORDER BY 1, 2",
    );
    run_cases(&[floats, keyless], "").await;
}

#[tokio::test]
async fn keyless_float_change_is_found_and_fixed() {
    let s = Scenario::empty().await;
    for db in [&s.up, &s.down] {
        db.exec(
            "CREATE TABLE t (f FLOAT, d DOUBLE); \
             INSERT INTO t VALUES (1.0000001, 1), (2, 2), (0.1, 0.1), (0.1, 0.1)",
        )
        .await;
    }
    s.down.exec("UPDATE t SET f = 1.0000002 WHERE d = 1").await;
    let cfg = s.config("");
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(1), "{out}");
    // Keyless: the changed copy is one missing and one extra row.
    assert_eq!(counts(&s.summary(), "t"), (1, 1, 0));
    s.apply_fix_files().await;
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(0), "{out}");
    let q = "SELECT CAST(f AS DOUBLE), d FROM t ORDER BY 1, 2";
    assert_eq!(dump(&s.up, q).await, dump(&s.down, q).await);
}

/// FLOAT values across the whole exponent range (denormals included), written by fix SQL
/// from their `CAST(f AS DOUBLE)` text, come back as exactly the same floats.
#[tokio::test]
async fn random_floats_round_trip_through_fix_sql() {
    let s = Scenario::empty().await;
    for db in [&s.up, &s.down] {
        db.exec("CREATE TABLE t (id INT PRIMARY KEY, f FLOAT, d DOUBLE)")
            .await;
    }
    s.up.exec(
        "INSERT INTO t SELECT seq, (RAND(seq) - 0.5) * POW(10, FLOOR(RAND(seq + 7) * 84) - 46), \
         (RAND(seq + 3) - 0.5) * POW(10, FLOOR(RAND(seq + 9) * 600) - 300) \
         FROM seq_1_to_3000",
    )
    .await;
    let cfg = s.config("");
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(counts(&s.summary(), "t"), (3000, 0, 0));
    s.apply_fix_files().await;
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(0), "{out}");
    let q = "SELECT id, CAST(f AS DOUBLE), d FROM t ORDER BY id";
    assert_eq!(dump(&s.up, q).await, dump(&s.down, q).await);
}

/// -0 and 0 are one value: the server prints both as `0` (FLOAT and DOUBLE alike) and SQL
/// `=` agrees, so a downstream -0 where the upstream has 0 is not a difference.
#[tokio::test]
async fn negative_zero_equals_zero() {
    let s = Scenario::empty().await;
    for db in [&s.up, &s.down] {
        db.exec("CREATE TABLE t (id INT PRIMARY KEY, f FLOAT, d DOUBLE)")
            .await;
    }
    s.up.exec("INSERT INTO t VALUES (1, 0, 0)").await;
    // -1e-50 underflows to -0 in a FLOAT.
    s.down.exec("INSERT INTO t VALUES (1, -1e-50, 0)").await;
    let sign: Vec<(f64,)> = s.down.query("SELECT ATAN2(f, -1) FROM t").await;
    assert!(sign[0].0 < 0.0, "precondition: the downstream FLOAT is -0");
    let cfg = s.config("");
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test]
async fn bit_of_every_width() {
    let bits = case(
        "t_bit",
        "CREATE TABLE t_bit (id INT PRIMARY KEY, b1 BIT(1), b8 BIT(8), b13 BIT(13), \
         b64 BIT(64) NOT NULL)",
        "INSERT INTO t_bit VALUES (1, b'1', b'10101010', b'1000000000001', \
         18446744073709551615), (2, b'0', b'0', b'0', 0), (3, NULL, NULL, NULL, 1), \
         (4, 1, 255, 8191, 9223372036854775808)",
        &[
            "UPDATE t_bit SET b64 = 18446744073709551614 WHERE id = 1",
            "UPDATE t_bit SET b1 = 1 WHERE id = 2",
            "UPDATE t_bit SET b8 = 0 WHERE id = 3",
            "UPDATE t_bit SET b13 = 8190 WHERE id = 4",
        ],
        "SELECT id, HEX(b1), HEX(b8), HEX(b13), HEX(b64) FROM t_bit ORDER BY id",
    );
    run_cases(&[bits], "").await;
}

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

#[tokio::test]
async fn character_strings() {
    let strings = case(
        "t_str",
        "CREATE TABLE t_str (id INT PRIMARY KEY, c CHAR(10), v VARCHAR(50), \
         t TEXT, l VARCHAR(20) CHARACTER SET latin1, b VARCHAR(10) COLLATE utf8mb4_bin, \
         n VARCHAR(10) NOT NULL DEFAULT '') DEFAULT CHARSET utf8mb4",
        "INSERT INTO t_str VALUES \
         (1, 'a  ', 'a ', 'line1\\nline2\\ttab', 'café', 'ABC', ''), \
         (2, '😀', '😀𝄞 four-byte', 'it''s \"quoted\" \\\\ back', 'naïve', 'abc', ','), \
         (3, NULL, NULL, NULL, NULL, NULL, 'NULL'), \
         (4, '', '', '', '', '', 'N'), \
         (5, 'x', 'x', 'x', 'x', 'x', 'x'), (6, 'x', 'x', 'x', 'x', 'x', 'x'), \
         (7, 'x', 'x', 'x', 'x', 'x', 'x')",
        &[
            // VARCHAR keeps trailing spaces: 'a ' and 'a' differ.
            "UPDATE t_str SET v = 'a' WHERE id = 1",
            // A 4-byte character changed.
            "UPDATE t_str SET v = '😁𝄞 four-byte' WHERE id = 2",
            // NULL versus '' and 'NULL'.
            "UPDATE t_str SET t = '' WHERE id = 3",
            "UPDATE t_str SET n = 'NUL' WHERE id = 4",
            // Case only, under a case-insensitive collation.
            "UPDATE t_str SET c = 'X' WHERE id = 5",
            "UPDATE t_str SET l = 'é' WHERE id = 6",
            "UPDATE t_str SET b = 'X' WHERE id = 7",
        ],
        "SELECT id, HEX(c), HEX(v), HEX(t), HEX(l), HEX(b), HEX(n) FROM t_str ORDER BY id",
    );
    run_cases(&[strings], "").await;
}

#[tokio::test]
async fn binary_strings_with_zero_and_invalid_utf8_bytes() {
    let binary = case(
        "t_bin",
        "CREATE TABLE t_bin (id INT PRIMARY KEY, b BINARY(4), vb VARBINARY(10), bl BLOB, \
         tb TINYBLOB)",
        "INSERT INTO t_bin VALUES \
         (1, X'00FF00', X'C328', X'00', X'FFFE'), \
         (2, X'61', X'6100', X'2C2C', X''), \
         (3, NULL, NULL, NULL, NULL), \
         (4, '', '', '', ''), \
         (5, X'5C27', X'0D0A1A', X'E282AC', X'80')",
        &[
            "UPDATE t_bin SET b = X'00FF01' WHERE id = 1",
            // A trailing zero byte is part of a VARBINARY value.
            "UPDATE t_bin SET vb = X'610000' WHERE id = 2",
            "UPDATE t_bin SET bl = X'' WHERE id = 3",
            "UPDATE t_bin SET tb = NULL WHERE id = 4",
            "UPDATE t_bin SET bl = X'E282AD' WHERE id = 5",
        ],
        "SELECT id, HEX(b), HEX(vb), HEX(bl), HEX(tb) FROM t_bin ORDER BY id",
    );
    run_cases(&[binary], "").await;
}

/// MariaDB's JSON is LONGTEXT with a `json_valid` CHECK: values are compared as text, byte
/// for byte, so `{"a":1}` and `{"a": 1}` differ (docs/comparison-rules.md).
#[tokio::test]
async fn json_enum_and_set() {
    let other = case(
        "t_doc",
        "CREATE TABLE t_doc (id INT PRIMARY KEY, j JSON, e ENUM('a','b','c') NOT NULL, \
         s SET('x','y','z'))",
        "INSERT INTO t_doc VALUES \
         (1, '{\"a\": 1, \"b\": [1, 2.5, \"x,y\"]}', 'a', 'x,y'), \
         (2, '{\"a\":1}', 'b', ''), (3, NULL, 'c', NULL), (4, '\"\\\\n\"', 'a', 'z'), \
         (5, '[]', 'a', 'x')",
        &[
            "UPDATE t_doc SET j = '{\"a\": 1, \"b\": [1, 2.5, \"x,z\"]}' WHERE id = 1",
            // Same JSON document, other text.
            "UPDATE t_doc SET j = '{\"a\": 1}' WHERE id = 2",
            "UPDATE t_doc SET e = 'a' WHERE id = 3",
            "UPDATE t_doc SET s = 'y,z' WHERE id = 4",
            "UPDATE t_doc SET s = '' WHERE id = 5",
        ],
        "SELECT id, HEX(j), e, s FROM t_doc ORDER BY id",
    );
    run_cases(&[other], "").await;
}

/// Generated columns are compared (a downstream whose generated values differ is a
/// difference) but never written by fix SQL; invisible columns are data, so they are selected
/// by name, compared and written.
#[tokio::test]
async fn generated_and_invisible_columns() {
    let generated = case(
        "t_gen",
        "CREATE TABLE t_gen (id INT PRIMARY KEY, a INT, v INT AS (a * 2) VIRTUAL, \
         s VARCHAR(20) AS (CONCAT('s', a)) STORED)",
        "INSERT INTO t_gen (id, a) VALUES (1, 1), (2, 2), (3, NULL)",
        &[
            "UPDATE t_gen SET a = 10 WHERE id = 1",
            "UPDATE t_gen SET a = 3 WHERE id = 3",
        ],
        "SELECT id, a, v, s FROM t_gen ORDER BY id",
    );
    let invisible = case(
        "t_inv",
        "CREATE TABLE t_inv (id INT PRIMARY KEY, v INT, h VARCHAR(10) INVISIBLE DEFAULT 'd')",
        "INSERT INTO t_inv (id, v, h) VALUES (1, 1, 'one'), (2, 2, NULL), (3, 3, 'three')",
        &[
            "UPDATE t_inv SET h = 'ONE!' WHERE id = 1",
            "UPDATE t_inv SET h = 'two' WHERE id = 2",
        ],
        "SELECT id, v, h FROM t_inv ORDER BY id",
    );
    run_cases(&[generated, invisible], "").await;
}

#[tokio::test]
async fn generated_columns_are_left_out_of_fix_sql() {
    let s = Scenario::empty().await;
    for db in [&s.up, &s.down] {
        db.exec(
            "CREATE TABLE t (id INT PRIMARY KEY, a INT, v INT AS (a * 2) VIRTUAL, \
             h INT INVISIBLE); INSERT INTO t (id, a, h) VALUES (1, 1, 7)",
        )
        .await;
    }
    s.down.exec("UPDATE t SET a = 5, h = 8").await;
    let cfg = s.config("");
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(1), "{out}");
    let fix = s.summary()["tables"][0]["fix_sql"]
        .as_str()
        .unwrap()
        .to_string();
    let text = std::fs::read_to_string(s.output_dir().join(fix)).unwrap();
    assert!(
        text.contains("REPLACE INTO") && text.contains("(`id`, `a`, `h`) VALUES (1, 1, 7)"),
        "{text}"
    );
    assert!(text.contains("v: 10 -> 2 (generated)"), "{text}");
}

/// Values of several MiB are compared and repaired. (The row merge streams rows; the
/// checksum hashes large columns by MD5, see the next test.)
#[tokio::test]
async fn longblob_of_several_mib() {
    let lob = case(
        "t_lob",
        "CREATE TABLE t_lob (id INT PRIMARY KEY, b LONGBLOB, t LONGTEXT)",
        "INSERT INTO t_lob VALUES \
         (1, REPEAT(X'00FF7F80', 1024 * 1024), REPEAT('é,', 1024 * 1024)), \
         (2, REPEAT('abc', 1024 * 1024), NULL), (3, NULL, '')",
        &[
            "UPDATE t_lob SET b = INSERT(b, 2000001, 1, X'01') WHERE id = 1",
            "UPDATE t_lob SET t = REPEAT('x', 3 * 1024 * 1024) WHERE id = 2",
            "UPDATE t_lob SET b = '' WHERE id = 3",
        ],
        "SELECT id, MD5(b), LENGTH(b), MD5(t), LENGTH(t) FROM t_lob ORDER BY id",
    );
    run_cases(&[lob], "").await;
}

/// A row longer than `max_allowed_packet` (64 MiB on the test servers) cannot pass through
/// `CONCAT_WS` (the server returns NULL, which would drop the row from a checksum: both sides
/// "equal" whatever the row holds). Large columns enter the checksum as their MD5, so equal
/// rows checksum equal and a changed one is found. (Streaming such a row for the row merge
/// then exceeds the driver's packet limit: the table ends in an error naming that query,
/// never in "equal".)
#[tokio::test]
async fn rows_longer_than_max_allowed_packet_are_still_checksummed() {
    let s = Scenario::empty().await;
    let mib = 22 * 1024 * 1024;
    for db in [&s.up, &s.down] {
        db.exec(&format!(
            "CREATE TABLE t (id INT PRIMARY KEY, a LONGBLOB, b LONGBLOB, c LONGBLOB); \
             INSERT INTO t VALUES (1, NULL, NULL, NULL); \
             UPDATE t SET a = REPEAT('a', {mib}); UPDATE t SET b = REPEAT('b', {mib}); \
             UPDATE t SET c = REPEAT('c', {mib})"
        ))
        .await;
    }
    let packet: Vec<(u64,)> = s.up.query("SELECT @@max_allowed_packet").await;
    assert!(
        3 * mib as u64 > packet[0].0,
        "precondition: the row is longer than max_allowed_packet"
    );
    let cfg = s.config("");
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(0), "{out}");

    s.down
        .exec("UPDATE t SET b = INSERT(b, 1000, 1, 'B')")
        .await;
    let (code, out) = check(&cfg);
    assert_ne!(code, Some(0), "a changed row must not be equal\n{out}");
    let error = s.summary()["tables"][0]["error"].to_string();
    assert!(
        error.contains("SELECT `id`, `a`, `b`, `c`, `id` FROM"),
        "the checksum differed and the rows were streamed: {error}"
    );
}
