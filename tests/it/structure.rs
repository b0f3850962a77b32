//! Structure differences are reported precisely (one line per difference, saying what
//! differs and both sides' definitions), `--check-struct-only` compares nothing else, and
//! heterogeneous sides — other column order, wider integer and string types, other default
//! collations, other DECIMAL scales — still compare their data by value.

use crate::scenario::{counts, Scenario};
use crate::types::{check, dump};

fn diffs_of(summary: &serde_json::Value, table: &str) -> Vec<String> {
    let t = summary["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .unwrap_or_else(|| panic!("{table} in {summary:#}"));
    t["structure_diffs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}

/// (table, upstream columns, downstream columns): one kind of structure difference each.
const DIFFERING_TABLES: [(&str, &str, &str); 8] = [
    (
        "t_type",
        "id INT PRIMARY KEY, u INT UNSIGNED, d DECIMAL(10,2), p DECIMAL(10,2), \
         v VARCHAR(10), dt DATETIME(3), e ENUM('a','b')",
        "id INT PRIMARY KEY, u INT, d DECIMAL(10,3), p DECIMAL(12,2), \
         v VARCHAR(20), dt DATETIME(6), e ENUM('a','b','c')",
    ),
    (
        "t_null",
        "id INT PRIMARY KEY, a INT NULL, b INT NOT NULL",
        "id INT PRIMARY KEY, a INT NOT NULL, b INT NULL",
    ),
    (
        "t_default",
        "id INT PRIMARY KEY, a VARCHAR(5) DEFAULT 'x', b INT DEFAULT 1",
        "id INT PRIMARY KEY, a VARCHAR(5) DEFAULT 'y', b INT",
    ),
    (
        "t_gen",
        "id INT PRIMARY KEY, a INT, g INT AS (a * 2) VIRTUAL, h INT AS (a + 1) STORED",
        "id INT PRIMARY KEY, a INT, g INT AS (a * 3) VIRTUAL, h INT AS (a + 1) VIRTUAL",
    ),
    (
        "t_pk",
        "id INT, x INT NOT NULL, PRIMARY KEY (id)",
        "id INT, x INT NOT NULL, PRIMARY KEY (id, x)",
    ),
    (
        "t_idx",
        "id INT PRIMARY KEY, a INT, b INT, c INT, UNIQUE KEY uk_a (a), KEY by_b (b), \
         KEY by_c (c)",
        "id INT PRIMARY KEY, a INT, b INT, c INT, KEY uk_a (a), KEY by_b (b, c), \
         KEY by_a_b (a, b)",
    ),
    (
        "t_coll",
        "id INT PRIMARY KEY, a VARCHAR(5) COLLATE utf8mb4_general_ci, \
         b VARCHAR(5) CHARACTER SET latin1",
        "id INT PRIMARY KEY, a VARCHAR(5) COLLATE utf8mb4_bin, \
         b VARCHAR(5) CHARACTER SET utf8mb4",
    ),
    (
        "t_same",
        "id INT PRIMARY KEY, a INT",
        "id INT PRIMARY KEY, a INT",
    ),
];

/// The tables of [`DIFFERING_TABLES`], plus foreign keys and a table collation that differ,
/// and a row of data on the downstream.
async fn create_differing_structures(s: &Scenario) {
    for (name, up, down) in DIFFERING_TABLES {
        s.up.exec(&format!("CREATE TABLE {name} ({up})")).await;
        s.down.exec(&format!("CREATE TABLE {name} ({down})")).await;
    }
    s.up.exec(
        "CREATE TABLE parent (id INT PRIMARY KEY, k INT, UNIQUE KEY (k)); \
         CREATE TABLE t_fk (id INT PRIMARY KEY, p INT, q INT, \
         CONSTRAINT fk_p FOREIGN KEY (p) REFERENCES parent (id) ON DELETE CASCADE, \
         CONSTRAINT fk_q FOREIGN KEY (q) REFERENCES parent (id)); \
         ALTER TABLE t_same COLLATE utf8mb4_general_ci",
    )
    .await;
    s.down
        .exec(
            "CREATE TABLE parent (id INT PRIMARY KEY, k INT, UNIQUE KEY (k)); \
             CREATE TABLE t_fk (id INT PRIMARY KEY, p INT, q INT, \
             CONSTRAINT fk_p FOREIGN KEY (p) REFERENCES parent (id) ON DELETE RESTRICT, \
             CONSTRAINT fk_k FOREIGN KEY (q) REFERENCES parent (k)); \
             ALTER TABLE t_same COLLATE utf8mb4_bin",
        )
        .await;
    // Some data, to show struct-only reads none.
    s.down.exec("INSERT INTO t_null VALUES (1, 1, 1)").await;
}

/// `check --check-struct-only`: exit 1, and no table's data read.
fn check_struct_only(s: &Scenario) -> serde_json::Value {
    let cfg = s.config("");
    let out =
        crate::scenario::syncgate(&["check", "-C", cfg.to_str().unwrap(), "--check-struct-only"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        crate::scenario::describe(&out)
    );
    let summary = s.summary();
    for t in summary["tables"].as_array().unwrap() {
        assert_eq!(t["data_checked"], false, "{t:#}");
        assert_eq!(t["rows_missing"], 0, "{t:#}");
    }
    summary
}

/// The structure differences reported for `table` are exactly `want` (in any order).
fn expect_diffs(summary: &serde_json::Value, table: &str, want: &[&str]) {
    let got = diffs_of(summary, table);
    let mut want: Vec<String> = want.iter().map(|w| w.to_string()).collect();
    want.sort();
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(sorted, want, "{table}");
}

/// Column types, nullability, defaults, generation and collations.
fn expect_column_diffs(summary: &serde_json::Value) {
    let expect = |table: &str, want: &[&str]| expect_diffs(summary, table, want);
    expect(
        "t_type",
        &[
            "column `u`: type differs (upstream int(10) unsigned, downstream int(11); \
             unsigned vs signed, display width 10 vs 11)",
            "column `d`: type differs (upstream decimal(10,2), downstream decimal(10,3); \
             scale 2 vs 3)",
            "column `p`: type differs (upstream decimal(10,2), downstream decimal(12,2); \
             precision 10 vs 12)",
            "column `v`: type differs (upstream varchar(10), downstream varchar(20); \
             length 10 vs 20)",
            "column `dt`: type differs (upstream datetime(3), downstream datetime(6); \
             fractional-second digits 3 vs 6)",
            "column `e`: type differs (upstream enum('a','b'), downstream enum('a','b','c'); \
             members)",
        ],
    );
    expect(
        "t_null",
        &[
            "column `a`: nullability differs (upstream NULL, downstream NOT NULL)",
            "column `b`: nullability differs (upstream NOT NULL, downstream NULL)",
            // MariaDB reports the implicit default of a nullable column as NULL.
            "column `a`: default differs (upstream 'NULL', downstream NULL)",
            "column `b`: default differs (upstream NULL, downstream 'NULL')",
        ],
    );
    expect(
        "t_default",
        &[
            "column `a`: default differs (upstream ''x'', downstream ''y'')",
            "column `b`: default differs (upstream '1', downstream 'NULL')",
        ],
    );
    expect(
        "t_gen",
        &[
            "column `g`: generation differs (upstream VIRTUAL AS (`a` * 2), downstream \
             VIRTUAL AS (`a` * 3))",
            "column `h`: generation differs (upstream STORED AS (`a` + 1), downstream \
             VIRTUAL AS (`a` + 1))",
        ],
    );
    expect(
        "t_coll",
        &[
            "column `a`: collation differs (upstream 'utf8mb4_general_ci', downstream \
             'utf8mb4_bin')",
            "column `b`: charset differs (upstream 'latin1', downstream 'utf8mb4')",
            "column `b`: collation differs (upstream 'latin1_swedish_ci', downstream \
             'utf8mb4_general_ci')",
        ],
    );
}

/// Keys, indexes, foreign keys (naming database `db`) and the table collation.
fn expect_key_and_table_diffs(summary: &serde_json::Value, db: &str) {
    let expect = |table: &str, want: &[&str]| expect_diffs(summary, table, want);
    expect(
        "t_pk",
        &[
            "primary key `PRIMARY` differs (upstream primary key (id), downstream primary key \
           (id, x))",
        ],
    );
    expect(
        "t_idx",
        &[
            "unique key `uk_a` differs (upstream unique key (a), downstream index (a))",
            "index `by_b` differs (upstream index (b), downstream index (b, c))",
            "index `by_c` (c) exists only upstream",
            "index `by_a_b` (a, b) exists only downstream",
        ],
    );
    expect(
        "t_fk",
        &[
            &format!(
                "foreign key `fk_p` differs (upstream (p) -> {db}.parent (id) ON UPDATE \
                 RESTRICT ON DELETE CASCADE, downstream (p) -> {db}.parent (id) ON UPDATE \
                 RESTRICT ON DELETE RESTRICT)"
            ),
            &format!(
                "foreign key `fk_q` (q) -> {db}.parent (id) ON UPDATE RESTRICT ON DELETE \
                 RESTRICT exists only upstream"
            ),
            &format!(
                "foreign key `fk_k` (q) -> {db}.parent (k) ON UPDATE RESTRICT ON DELETE \
                 RESTRICT exists only downstream"
            ),
        ],
    );
    expect(
        "t_same",
        &["table collation differs (upstream 'utf8mb4_general_ci', downstream 'utf8mb4_bin')"],
    );
    expect("parent", &[]);
}

#[tokio::test]
async fn each_structure_difference_is_reported_precisely() {
    let s = Scenario::empty().await;
    create_differing_structures(&s).await;
    let summary = check_struct_only(&s);
    expect_column_diffs(&summary);
    expect_key_and_table_diffs(&summary, s.up.name());
}

/// The two sides differ in column order, integer width, string length, default collations,
/// DECIMAL scale and DATETIME precision, but hold the same values: the data check finds 0
/// differing rows (1.50 and 1.500 are one value), the structure report names every
/// difference, and a real value change is still one changed row that the fix repairs.
#[tokio::test]
async fn heterogeneous_sides_compare_data_by_value() {
    let s = Scenario::empty().await;
    s.up.exec(
        "CREATE TABLE t (id INT PRIMARY KEY, a INT, s VARCHAR(10), d DECIMAL(10,2), \
         t DATETIME, k VARCHAR(10) COLLATE utf8mb4_general_ci, f FLOAT) \
         COLLATE utf8mb4_general_ci; \
         INSERT INTO t VALUES (1, 1, 'abc', 1.50, '2024-01-01 10:00:00', 'Ab', 0.5), \
         (2, -2, '', -0.01, '1999-12-31 23:59:59', 'x ', NULL), \
         (3, NULL, NULL, NULL, NULL, NULL, 1.25), (4, 4, 'é', 12345678.99, NULL, '', 2), \
         (5, 5, 'five', 5, '2024-01-01 00:00:00', 'five', 5)",
    )
    .await;
    s.down
        .exec(
            "CREATE TABLE t (k VARCHAR(20) COLLATE utf8mb4_bin, f FLOAT, d DECIMAL(12,3), \
             s VARCHAR(20), id BIGINT PRIMARY KEY, t DATETIME(6), a BIGINT) \
             COLLATE utf8mb4_bin; \
             INSERT INTO t (id, a, s, d, t, k, f) VALUES \
             (1, 1, 'abc', 1.500, '2024-01-01 10:00:00.000000', 'Ab', 0.5), \
             (2, -2, '', -0.010, '1999-12-31 23:59:59', 'x ', NULL), \
             (3, NULL, NULL, NULL, NULL, NULL, 1.25), (4, 4, 'é', 12345678.990, NULL, '', 2), \
             (5, 5, 'five', 5, '2024-01-01 00:00:00', 'five', 5)",
        )
        .await;
    let cfg = s.config("");
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(1), "the structure differs\n{out}");
    let summary = s.summary();
    let t = &summary["tables"][0];
    assert_eq!(t["data_checked"], true);
    assert_eq!(counts(&summary, "t"), (0, 0, 0), "{summary:#}");
    assert_eq!(t["chunks_different"], 0, "{summary:#}");
    let mut diffs = diffs_of(&summary, "t");
    diffs.sort();
    assert_eq!(
        diffs,
        vec![
            "column `a`: type differs (upstream int(11), downstream bigint(20))",
            "column `d`: type differs (upstream decimal(10,2), downstream decimal(12,3); \
             precision 10 vs 12, scale 2 vs 3)",
            "column `id`: type differs (upstream int(11), downstream bigint(20))",
            "column `k`: collation differs (upstream 'utf8mb4_general_ci', downstream \
             'utf8mb4_bin')",
            "column `k`: type differs (upstream varchar(10), downstream varchar(20); \
             length 10 vs 20)",
            "column `s`: collation differs (upstream 'utf8mb4_general_ci', downstream \
             'utf8mb4_bin')",
            "column `s`: type differs (upstream varchar(10), downstream varchar(20); \
             length 10 vs 20)",
            "column `t`: type differs (upstream datetime, downstream datetime(6); \
             fractional-second digits 0 vs 6)",
            "column order differs",
            "table collation differs (upstream 'utf8mb4_general_ci', downstream \
             'utf8mb4_bin')",
        ]
    );
    // --check-data-only: the data alone is equal.
    let out =
        crate::scenario::syncgate(&["check", "-C", cfg.to_str().unwrap(), "--check-data-only"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::scenario::describe(&out)
    );

    s.down
        .exec(
            "UPDATE t SET d = 1.501 WHERE id = 1; UPDATE t SET t = '1999-12-31 23:59:59.000001' \
             WHERE id = 2; UPDATE t SET k = 'AB' WHERE id = 5",
        )
        .await;
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(counts(&s.summary(), "t"), (0, 0, 3));
    s.apply_fix_files().await;
    let out =
        crate::scenario::syncgate(&["check", "-C", cfg.to_str().unwrap(), "--check-data-only"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::scenario::describe(&out)
    );
    let q = "SELECT id, a, s, CAST(d AS DECIMAL(12,3)), CAST(t AS DATETIME(6)), HEX(k), \
             CAST(f AS DOUBLE) FROM t ORDER BY id";
    assert_eq!(dump(&s.up, q).await, dump(&s.down, q).await);
}

/// `--check-struct-only` reads no data: a table whose structure is equal is equal, whatever
/// its rows.
#[tokio::test]
async fn check_struct_only_ignores_data() {
    let s = Scenario::empty().await;
    for db in [&s.up, &s.down] {
        db.exec("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    }
    s.up.exec("INSERT INTO t VALUES (1, 1), (2, 2)").await;
    s.down.exec("INSERT INTO t VALUES (2, 3), (4, 4)").await;
    let cfg = s.config("");
    let out =
        crate::scenario::syncgate(&["check", "-C", cfg.to_str().unwrap(), "--check-struct-only"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::scenario::describe(&out)
    );
    let summary = s.summary();
    assert_eq!(summary["tables"][0]["data_checked"], false);
    assert_eq!(summary["tables"][0]["result"], "equal");
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(counts(&s.summary(), "t"), (1, 1, 1));
}
