//! Tables keyed by one integer column are split by key value and narrowed down with bucketed
//! checksums (`chunk::Buckets`, `engine::worker::split_int`, `locate_in_buckets`) and, once
//! differences are dense, merged row by row (`DenseHints`). These tests put keys where that
//! arithmetic can go wrong — negative keys, gaps of 10^12, keys next to the type's limits,
//! downstream rows outside the upstream's MIN/MAX — with sparse and dense drift, and check the
//! exact counts, the chunk count, and that the fix SQL makes the sides equal.

use crate::scenario::{apply_fix_dir, pair_config, run_in_process, Scenario};
use syncgate::report::TableResult;

/// Check the pair with `chunk-size = 1000` in process; the table's report.
async fn check(s: &Scenario) -> syncgate::report::TableReport {
    check_with(s, "").await
}

/// [`check`] with more config text.
async fn check_with(s: &Scenario, more: &str) -> syncgate::report::TableReport {
    check_sized(s, 1000, more).await
}

/// [`check_with`] at another `chunk-size`.
async fn check_sized(s: &Scenario, chunk_size: u64, more: &str) -> syncgate::report::TableReport {
    let text = pair_config(
        s.up.port(),
        s.down.port(),
        s.up.name(),
        &s.output_dir(),
        3,
        &format!(
            "target-configs = [\"small\"]\n\n[table-configs.small]\ntarget-tables = [\"*.*\"]\n\
             chunk-size = {chunk_size}\n{more}"
        ),
    );
    let report = run_in_process(&text).await;
    assert_eq!(report.tables.len(), 1, "{report:?}");
    let t = report.tables.into_iter().next().unwrap();
    assert!(t.error.is_none(), "{:?}", t.error);
    t
}

/// Check, apply the fix SQL, check again: the second run must find the sides equal.
async fn check_fix_recheck(s: &Scenario, want: (u64, u64, u64)) -> syncgate::report::TableReport {
    check_fix_recheck_with(s, want, "").await
}

async fn check_fix_recheck_with(
    s: &Scenario,
    want: (u64, u64, u64),
    more: &str,
) -> syncgate::report::TableReport {
    let t = check_with(s, more).await;
    assert_eq!(
        (t.rows_missing, t.rows_extra, t.rows_changed),
        want,
        "missing, extra, changed"
    );
    assert!(!apply_fix_dir(&s.down, &s.output_dir()).await.is_empty());
    let again = check(s).await;
    assert_eq!(again.result, TableResult::Equal, "{again:?}");
    assert_eq!(again.rows_upstream, again.rows_downstream);
    t
}

/// Fill both sides with `fill`, drift the downstream with `drift`, then
/// [`check_fix_recheck`]: exactly `want` (missing, extra, changed), in at least
/// `min_chunks` chunks.
async fn drift_check_fix(fill: &str, drift: &str, want: (u64, u64, u64), min_chunks: u64) {
    let s = Scenario::empty().await;
    s.up.exec(fill).await;
    s.down.exec(fill).await;
    s.down.exec(drift).await;
    let t = check_fix_recheck(&s, want).await;
    assert!(t.chunks >= min_chunks, "{} chunks", t.chunks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_signed_keys_sparse_and_dense_drift() {
    let s = Scenario::empty().await;
    let fill = "CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR(30) NOT NULL, n INT NULL);
        INSERT INTO t SELECT CAST(seq AS SIGNED) - 5001, CONCAT('neg-', seq), seq FROM seq_1_to_5000;
        INSERT INTO t SELECT seq, CONCAT('dense-', seq), NULL FROM seq_1_to_20000;
        INSERT INTO t SELECT 1000000000000 + seq, CONCAT('far-', seq), seq FROM seq_1_to_3000;
        INSERT INTO t SELECT 9223372036854775807 - CAST(seq AS SIGNED) + 1, 'top', 1 FROM seq_1_to_800;
        INSERT INTO t VALUES (-9223372036854775808, 'bottom', 0);";
    s.up.exec(fill).await;
    s.down.exec(fill).await;
    // Sparse: a few rows per cluster. Dense: every 40th row of 5,001..15,000 changed and
    // every 97th deleted (250 + 103 rows in 10,000). Outside the upstream's MIN/MAX and in
    // the gaps: extra rows.
    s.down
        .exec(
            "DELETE FROM t WHERE id IN (-4000, -17, 3, 19999, 1000000000005, \
               9223372036854775807, -9223372036854775808);
             UPDATE t SET v = 'changed' WHERE id IN (-5000, 2, 1000000002999, 9223372036854775100);
             UPDATE t SET n = 7 WHERE id BETWEEN 5001 AND 15000 AND id % 40 = 0;
             DELETE FROM t WHERE id BETWEEN 5001 AND 15000 AND id % 97 = 0 AND id % 40 <> 0;
             INSERT INTO t VALUES (-9223372036854775807, 'x', 1), (500000000000, 'gap', 1),
               (0, 'zero', NULL), (1000000003001, 'after', 2);",
        )
        .await;
    let dense_deleted = (5001..=15000)
        .filter(|i: &i64| i % 97 == 0 && i % 40 != 0)
        .count() as u64;
    let dense_changed = (5001..=15000).filter(|i: &i64| i % 40 == 0).count() as u64;
    let t = check_fix_recheck(&s, (7 + dense_deleted, 4, 4 + dense_changed)).await;
    // 28,801 rows over a key span of 2^64: chunks follow the rows, not the span.
    assert!(
        (25..=200).contains(&t.chunks),
        "{} chunks for 28,801 rows with chunk-size 1000",
        t.chunks
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_keys_at_both_limits() {
    drift_check_fix(
        "CREATE TABLE u (id BIGINT UNSIGNED PRIMARY KEY, v CHAR(10) NOT NULL);
        INSERT INTO u SELECT seq - 1, 'low' FROM seq_1_to_4000;
        INSERT INTO u SELECT 18446744073709551615 - seq + 1, 'high' FROM seq_1_to_4000;",
        "DELETE FROM u WHERE id IN (0, 18446744073709551615, 2500);
             UPDATE u SET v = 'x' WHERE id IN (1, 18446744073709551614, 3999);
             INSERT INTO u VALUES (9223372036854775808, 'middle');",
        (3, 1, 3),
        8,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dense_drift_everywhere_is_merged_exactly() {
    dense_drift_everywhere("").await;
}

/// The dense chunks' `(key, hash)` lists come packed in one value a side; a server that cuts
/// them short (`group_concat_max_len` far below a chunk's list, and at a size that ends
/// inside a key) must not lose a difference: the count and the keys' XOR tell, and the
/// chunk is read row by row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dense_drift_is_exact_when_the_packed_lists_are_cut_short() {
    dense_drift_everywhere(
        "\n[data-sources.up.session]\ngroup_concat_max_len = 1003\n\
         [data-sources.down.session]\ngroup_concat_max_len = 997\n",
    )
    .await;
}

/// About 1 % of the rows differ: a chunk's first bucket level leaves thousands of rows in
/// differing buckets without most buckets differing, and the chunk is merged on `(key, row
/// hash)` from there; counts and fix SQL must be exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_percent_drift_is_merged_exactly() {
    let s = Scenario::empty().await;
    let fill = "CREATE TABLE p (id INT PRIMARY KEY, a VARCHAR(20), b INT);
        INSERT INTO p SELECT seq, CONCAT('a', seq), seq % 7 FROM seq_1_to_100000;";
    s.up.exec(fill).await;
    s.down.exec(fill).await;
    s.down
        .exec(
            "UPDATE p SET b = b + 1 WHERE id % 211 = 0;
             DELETE FROM p WHERE id % 307 = 0 AND id % 211 <> 0;
             INSERT INTO p SELECT 100000 + seq, 'extra', 0 FROM seq_1_to_200;",
        )
        .await;
    let changed = (1..=100_000u64).filter(|i| i % 211 == 0).count() as u64;
    let missing = (1..=100_000u64)
        .filter(|i| i % 307 == 0 && i % 211 != 0)
        .count() as u64;
    // Chunks of 20,000 rows, far above the rows merged directly.
    let t = check_sized(&s, 20_000, "").await;
    assert_eq!(
        (t.rows_missing, t.rows_extra, t.rows_changed),
        (missing, 200, changed)
    );
    assert!(t.chunks >= 3, "{} chunks", t.chunks);
    assert!(!apply_fix_dir(&s.down, &s.output_dir()).await.is_empty());
    assert_eq!(check(&s).await.result, TableResult::Equal);
}

async fn dense_drift_everywhere(more: &str) {
    // Every 13th row differs in every chunk: the dense hint makes later chunks merge row by
    // row; counts and fix SQL must be the same as with checksums.
    let s = Scenario::empty().await;
    let fill = "CREATE TABLE d (id INT PRIMARY KEY, a VARCHAR(20), b VARCHAR(20));
        INSERT INTO d SELECT seq * 3, CONCAT('a', seq), IF(seq % 5 = 0, NULL, 'b') \
        FROM seq_1_to_30000;";
    s.up.exec(fill).await;
    s.down.exec(fill).await;
    s.down
        .exec(
            "UPDATE d SET b = IF(b IS NULL, '', NULL) WHERE id % 13 = 0;
             DELETE FROM d WHERE id % 29 = 0 AND id % 13 <> 0;
             INSERT INTO d SELECT seq * 3 + 1, 'extra', 'b' FROM seq_1_to_30000 WHERE seq % 31 = 0;",
        )
        .await;
    let changed = (1..=30000u64).filter(|i| (i * 3) % 13 == 0).count() as u64;
    let missing = (1..=30000u64)
        .filter(|i| (i * 3) % 29 == 0 && (i * 3) % 13 != 0)
        .count() as u64;
    let extra = (1..=30000u64).filter(|i| i % 31 == 0).count() as u64;
    check_fix_recheck_with(&s, (missing, extra, changed), more).await;
}

/// A table the upstream's row estimate puts well within one chunk (a quarter of
/// `chunk-size`) is checked as one range without splitting queries; differences at both
/// ends and outside the upstream's keys are still found and fixed. Just above the threshold
/// the table is split again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_table_is_one_chunk_and_still_exact() {
    let s = Scenario::empty().await;
    let fill = "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(30) NOT NULL);
        INSERT INTO t SELECT seq, CONCAT('v', seq) FROM seq_1_to_200; ANALYZE TABLE t;";
    s.up.exec(fill).await;
    s.down.exec(fill).await;
    s.down
        .exec(
            "DELETE FROM t WHERE id IN (1, 200);
             UPDATE t SET v = 'changed' WHERE id = 100;
             INSERT INTO t VALUES (-5, 'below'), (1000, 'above');",
        )
        .await;
    let t = check_fix_recheck(&s, (2, 2, 1)).await;
    assert_eq!(t.chunks, 1, "200 rows with chunk-size 1000: {t:?}");

    // 300 rows: 4 × 300 > 1000, so the table is split (below, blocks, above).
    s.up.exec("INSERT INTO t SELECT seq, CONCAT('v', seq) FROM seq_201_to_300; ANALYZE TABLE t")
        .await;
    s.down
        .exec("INSERT INTO t SELECT seq, CONCAT('v', seq) FROM seq_201_to_300")
        .await;
    let t = check(&s).await;
    assert_eq!(t.result, TableResult::Equal, "{t:?}");
    assert!(
        t.chunks > 1,
        "300 rows with chunk-size 1000: {} chunks",
        t.chunks
    );
}

/// Keys led by a decimal are split at real keys found near interpolated values
/// (`chunk::Dec`, exact), not walked: negative and positive keys three decimals apart, rows
/// missing, extra beyond both ends and changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_led_by_a_decimal_are_split_and_exact() {
    drift_check_fix(
        "CREATE TABLE t (p DECIMAL(12,3) PRIMARY KEY, v INT NOT NULL);
        INSERT INTO t SELECT (CAST(seq AS SIGNED) - 5000) * 1.237, seq FROM seq_1_to_10000;
        ANALYZE TABLE t;",
        "DELETE FROM t WHERE v IN (1, 5000, 10000);
             UPDATE t SET v = -v WHERE v IN (2, 7777);
             INSERT INTO t VALUES (-999999999.999, 1), (999999999.999, 2), (0.001, 3);",
        (3, 3, 2),
        8,
    )
    .await;
}

/// Keys of binary strings (UUIDs stored as `BINARY(16)`, the common shape) are split at
/// real keys found near probes interpolated on their bytes, not walked: rows missing,
/// changed, and extra below the first and above the last key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_uuid_keys_are_split_and_exact() {
    drift_check_fix(
        "CREATE TABLE t (k BINARY(16) PRIMARY KEY, v INT NOT NULL);
        INSERT INTO t SELECT UNHEX(MD5(seq)), seq FROM seq_1_to_12000;
        ANALYZE TABLE t;",
        "DELETE FROM t WHERE v IN (1, 6000, 12000);
             UPDATE t SET v = -v WHERE v IN (2, 9000);
             INSERT INTO t VALUES (UNHEX(REPEAT('00', 16)), 0), (UNHEX(REPEAT('FF', 16)), 0);",
        (3, 2, 2),
        8,
    )
    .await;

    // VARBINARY keys of 2 to 8 bytes, and a family that are prefixes of each other ('',
    // 0x00, 0x0000, …): a shorter string sorts first, and probes past a common prefix must
    // still land between real keys.
    drift_check_fix(
        "CREATE TABLE t (k VARBINARY(20) PRIMARY KEY, v INT NOT NULL);
        INSERT INTO t SELECT LEFT(UNHEX(CONCAT(LPAD(HEX(seq), 4, '0'), MD5(seq))), \
        2 + seq % 7), seq FROM seq_1_to_9000;
        INSERT INTO t VALUES ('', -1), (0x00, -2), (0x0000, -3), (0x000000, -4);
        ANALYZE TABLE t;",
        "DELETE FROM t WHERE v IN (10, 4500, -3);
             UPDATE t SET v = -v WHERE v IN (11, 6001);
             INSERT INTO t VALUES (UNHEX(REPEAT('FF', 20)), 0), (0x0000000000, 0);",
        (3, 2, 2),
        4,
    )
    .await;
}

/// Keys led by a TIME (negative and beyond 24 hours included) or a YEAR are split at
/// real keys found near probes (`chunk::Stamp`, signed; a year as an integer), not walked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_led_by_a_time_or_a_year_are_split_and_exact() {
    drift_check_fix(
        "CREATE TABLE t (tm TIME(2) PRIMARY KEY, v INT NOT NULL);
        INSERT INTO t SELECT SEC_TO_TIME((CAST(seq AS SIGNED) - 6000) * 431.37), seq \
        FROM seq_1_to_12000;
        ANALYZE TABLE t;",
        "DELETE FROM t WHERE v IN (1, 6000, 12000);
             UPDATE t SET v = -v WHERE v IN (2, 9000);
             INSERT INTO t VALUES ('-838:59:59', 0), ('838:59:59', 0);",
        (3, 2, 2),
        8,
    )
    .await;

    drift_check_fix(
        "CREATE TABLE t (y YEAR NOT NULL, id INT NOT NULL, v INT NOT NULL, \
        PRIMARY KEY (y, id));
        INSERT INTO t SELECT 1901 + seq % 200, seq, seq FROM seq_1_to_12000;
        ANALYZE TABLE t;",
        "DELETE FROM t WHERE v IN (1, 6000, 12000);
             UPDATE t SET v = -v WHERE v IN (2, 9000);
             INSERT INTO t VALUES (2155, 0, 0), (1901, 0, 0);",
        (3, 2, 2),
        8,
    )
    .await;
}

/// Keys led by a date or a datetime are split at real keys found near interpolated
/// timestamps (`chunk::Stamp`), not walked: a `(DATETIME(3), INT)` key whose rows share
/// timestamps, and a `DATE` key, with rows missing, extra (before the first and after the
/// last key) and changed; exact counts, many chunks, and the fix makes the sides equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_led_by_a_date_or_datetime_are_split_and_exact() {
    drift_check_fix(
        "CREATE TABLE t (ts DATETIME(3) NOT NULL, id INT NOT NULL, v VARCHAR(20), \
        PRIMARY KEY (ts, id));
        INSERT INTO t SELECT TIMESTAMP '2024-01-01 00:00:00' \
        + INTERVAL ((seq DIV 3) * 7919 + seq % 7) * 1000 MICROSECOND, seq, CONCAT('v', seq) \
        FROM seq_1_to_12000;
        ANALYZE TABLE t;",
        "DELETE FROM t WHERE id IN (1, 4000, 11999);
             UPDATE t SET v = 'changed' WHERE id IN (2, 6000, 12000);
             INSERT INTO t VALUES ('2023-12-31 23:59:59.999', 0, 'early'), \
             ('2030-01-01 00:00:00', 1, 'late');",
        (3, 2, 3),
        8,
    )
    .await;

    drift_check_fix(
        "CREATE TABLE t (d DATE PRIMARY KEY, v INT NOT NULL);
        INSERT INTO t SELECT DATE '1990-01-01' + INTERVAL seq DAY, seq FROM seq_0_to_9999;
        ANALYZE TABLE t;",
        "DELETE FROM t WHERE v IN (0, 5000);
             UPDATE t SET v = -v WHERE v IN (9999, 1234);
             INSERT INTO t VALUES ('1000-01-01', 1), ('9999-12-31', 2);",
        (2, 2, 2),
        8,
    )
    .await;
}
