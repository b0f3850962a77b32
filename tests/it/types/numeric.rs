//! Integer, DECIMAL, FLOAT, DOUBLE and BIT columns.

use super::{case, check, dump, run_cases};
use crate::scenario::{counts, Scenario};

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
