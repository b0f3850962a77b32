//! Property test of the whole check over **generated schemas**: proptest generates a table
//! (1–6 columns of random types, each nullable or not, keyed on one or two leading columns or
//! keyless), its rows, and random deletes / updates / inserts on the downstream, and asserts
//!
//! - (a) the reported `rows_missing` / `rows_extra` / `rows_changed` equal the ground truth,
//!   and the table is `equal` exactly when there is no difference;
//! - (b) executing the fix SQL files on the downstream makes a second check report the table
//!   equal, and both sides then read back identically.
//!
//! Column types: TINYINT, INT UNSIGNED, BIGINT, DECIMAL(12,4), DOUBLE, FLOAT, DATE,
//! DATETIME(6), TIME, VARCHAR(12) utf8mb4_general_ci, CHAR(5), VARBINARY(8), TEXT,
//! ENUM('a','b','c'), BIT(10), JSON (MariaDB: LONGTEXT with a `json_valid` CHECK). Key columns
//! are NOT NULL and never TEXT, JSON, FLOAT or DOUBLE. Strings come from a small alphabet full
//! of traps (`,` `'` `\` `"`, space, tab, newline, `a`/`A`/`ä`, a 4-byte emoji), so case-,
//! accent- and trailing-space-only differences are frequent.
//!
//! # Ground truth
//!
//! The test does not model type conversion. Seed and drift SQL use `INSERT IGNORE` /
//! `UPDATE IGNORE`, so key collisions (including ones only under the collation, e.g. `'a'` vs
//! `'A '`) are dropped by the server; then both sides are **read back** and the truth is the
//! diff of the read-back rows, using these rules from `docs/comparison-rules.md`:
//!
//! - a value is the text the server sends over the text protocol for the column, except FLOAT
//!   (read as `CAST(c AS DOUBLE)`) and BIT (read as `CAST(c AS UNSIGNED)`); NULL equals only
//!   NULL; texts compare byte for byte (case, accents and trailing spaces count);
//! - keyed tables: rows are matched by key as the server matches them. For VARCHAR/CHAR key
//!   columns (utf8mb4_general_ci, PAD SPACE) the key identity is
//!   `WEIGHT_STRING(c AS CHAR(n))`, so `'a'`, `'A'`, `'a '` and `'ä'` are one key; every other
//!   key type (numbers, DECIMAL of one scale, temporal, ENUM, BIT, VARBINARY) is matched by its
//!   value text. Same key + any column text different (key columns included) = one changed row;
//! - keyless tables: multisets of whole rows (`rows_changed` is always 0).
//!
//! Drift rows are targeted through their read-back text (`CAST(expr AS BINARY) <=> X'..'`,
//! `LIMIT 1`), so a delete removes exactly one copy of a duplicated keyless row.
//!
//! # Running
//!
//! Case count: `SYNCGATE_PROPTEST_CASES` (default 16, about 10–20 s); shrink budget:
//! `SYNCGATE_PROPTEST_SHRINK_ITERS` (default 32). Nothing is persisted (no
//! `proptest-regressions` files). To run more cases on demand:
//!
//! ```text
//! SYNCGATE_PROPTEST_CASES=500 cargo nextest run --test integration prop_schema
//! ```
//!
//! A failure prints the minimal case found: the DDL, seed and drift SQL, the read-back rows,
//! the reports and the fix SQL files.

mod gen;
mod truth;

use crate::support::TestDb;
use gen::{case, Case};
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestError, TestRunner};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use syncgate::report::{RunReport, TableResult};
use truth::{drift_sql, read_back, seed_sql, texts, truth, Counts, ReadRow};

// ---------------------------------------------------------------------------------------
// Running the check

fn config_text(up: &TestDb, down: &TestDb, out: &Path, c: &Case) -> String {
    let db = up.name();
    let mut text = crate::scenario::pair_config(up.port(), down.port(), db, out, c.threads, "");
    if let Some(n) = c.chunk_size {
        write!(
            text,
            "target-configs = [\"small\"]\n\n[table-configs.small]\n\
             target-tables = [\"{db}.*\"]\nchunk-size = {n}\n"
        )
        .unwrap();
    }
    text
}

async fn check(up: &TestDb, down: &TestDb, out: &Path, c: &Case) -> RunReport {
    crate::scenario::run_in_process(&config_text(up, down, out, c)).await
}

/// Execute every fix SQL file on the downstream, in name order; their paths and texts.
async fn apply_fix_files(down: &TestDb, out: &Path) -> Vec<(PathBuf, String)> {
    crate::scenario::apply_fix_dir(down, out).await
}

fn show_rows(rows: &[ReadRow]) -> String {
    let mut s = String::new();
    for r in rows {
        let vals: Vec<String> = r
            .text
            .iter()
            .map(|t| match t {
                None => "NULL".into(),
                Some(b) => format!("{:?}", String::from_utf8_lossy(b)),
            })
            .collect();
        writeln!(s, "  ({})", vals.join(", ")).unwrap();
    }
    s
}

/// Everything needed to understand a failure.
fn describe(
    c: &Case,
    seed: &str,
    drift: &str,
    up: &[ReadRow],
    down: &[ReadRow],
    reports: &[&RunReport],
    fixes: &[(PathBuf, String)],
) -> String {
    let mut s = format!(
        "schema: {:?}, chunk-size {:?}, threads {}\n--- seed SQL (both sides)\n{seed}\n\
         --- drift SQL (downstream)\n{drift}\n--- upstream rows\n{}--- downstream rows \
         (after drift)\n{}",
        c.schema,
        c.chunk_size,
        c.threads,
        show_rows(up),
        show_rows(down)
    );
    for r in reports {
        let t = r.tables.first();
        writeln!(
            s,
            "--- report (table)\n{}",
            serde_json::to_string_pretty(&t).unwrap()
        )
        .unwrap();
    }
    for (path, sql) in fixes {
        writeln!(s, "--- fix file {}\n{sql}", path.display()).unwrap();
    }
    s
}

macro_rules! ensure {
    ($cond:expr, $ctx:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(TestCaseError::fail(format!("{}\n{}", format!($($fmt)+), $ctx())));
        }
    };
}

async fn run_case(up: &TestDb, down: &TestDb, c: &Case) -> Result<(), TestCaseError> {
    let seed = seed_sql(c);
    up.exec(&seed).await;
    down.exec(&seed).await;
    let up_rows = read_back(up, &c.schema).await;
    let seeded = read_back(down, &c.schema).await;
    assert_eq!(
        texts(&up_rows),
        texts(&seeded),
        "test bug: the same seed gave different rows\n{seed}"
    );
    let drift = drift_sql(c, &seeded);
    if !drift.is_empty() {
        down.exec(&drift).await;
    }
    let down_rows = read_back(down, &c.schema).await;
    let keyed = c.schema.key > 0;
    let want = truth(keyed, &up_rows, &down_rows);

    // (a) the report equals the ground truth.
    let dir = tempfile::tempdir().expect("tempdir");
    let out1 = dir.path().join("out1");
    let first = check(up, down, &out1, c).await;
    let ctx = || describe(c, &seed, &drift, &up_rows, &down_rows, &[&first], &[]);
    ensure!(first.tables.len() == 1, ctx, "expected table t only");
    let t = &first.tables[0];
    ensure!(t.error.is_none(), ctx, "table failed: {:?}", t.error);
    ensure!(
        t.structure_equal && t.data_checked,
        ctx,
        "table not compared as expected"
    );
    let got = Counts::of(t);
    ensure!(got == want, ctx, "got {got:?}, ground truth {want:?}");
    let expected = if want.is_zero() {
        TableResult::Equal
    } else {
        TableResult::Different
    };
    ensure!(
        t.result == expected,
        ctx,
        "result {:?}, expected {expected:?}",
        t.result
    );

    // (b) the fix SQL repairs the downstream.
    let fixes = apply_fix_files(down, &out1).await;
    let out2 = dir.path().join("out2");
    let second = check(up, down, &out2, c).await;
    let ctx = || {
        describe(
            c,
            &seed,
            &drift,
            &up_rows,
            &down_rows,
            &[&first, &second],
            &fixes,
        )
    };
    for t in &second.tables {
        ensure!(
            t.result == TableResult::Equal && Counts::of(t).is_zero(),
            ctx,
            "after the fix, table {} is {:?} with {:?}",
            t.table,
            t.result,
            Counts::of(t)
        );
    }
    let up_after = read_back(up, &c.schema).await;
    let down_after = read_back(down, &c.schema).await;
    ensure!(
        texts(&up_after) == texts(&up_rows),
        ctx,
        "the upstream changed"
    );
    ensure!(
        texts(&up_after) == texts(&down_after),
        ctx,
        "after the fix, the sides differ:\n up\n{}down\n{}",
        show_rows(&up_after),
        show_rows(&down_after)
    );
    Ok(())
}

fn env_u32(name: &str, default: u32) -> u32 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

#[test]
fn generated_schemas_report_ground_truth_and_fix_sql_repairs() {
    crate::support::require_mariadbd();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (up, down) = rt.block_on(TestDb::pair());
    let config = ProptestConfig {
        cases: env_u32("SYNCGATE_PROPTEST_CASES", 16),
        max_shrink_iters: env_u32("SYNCGATE_PROPTEST_SHRINK_ITERS", 32),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case(), |c| rt.block_on(run_case(&up, &down, &c)));
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, minimal)) => {
            panic!("property failed; minimal case {minimal:#?}\n{reason}")
        }
        Err(e) => panic!("{e}"),
    }
    rt.block_on(async {
        up.drop_db().await;
        down.drop_db().await;
    });
}
