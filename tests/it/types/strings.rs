//! Character and binary strings, JSON, ENUM and SET, generated and invisible columns, and
//! values of several MiB.

use super::{case, check, run_cases};
use crate::scenario::Scenario;

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
