//! Property test of the whole check: proptest generates the contents of two tables and random
//! drift on the downstream, and asserts that
//!
//! - (a) the reported `rows_missing` / `rows_extra` / `rows_changed` equal the ground truth
//!   kept in Rust, and a table is `equal` exactly when it has no differences;
//! - (b) executing the fix SQL files on the downstream makes a second check find every table
//!   equal, and the downstream then holds exactly the upstream's bytes.
//!
//! One database pair on the harness's two servers serves every case; its tables are dropped
//! and re-created per case:
//!
//! - `k`: keyed on `id`, with nullable INT, VARCHAR (utf8mb4_general_ci), DECIMAL and
//!   VARBINARY columns whose values come from small domains full of encoding traps (`''`,
//!   `','`, quotes, backslash, `'NULL'`, case-only and trailing-space variants, emoji, 0x00 /
//!   0xFF bytes). Drift: deleted ids, one-column updates (possibly to the same value, or to a
//!   value equal only under the case-insensitive collation), inserted ids 301..=400.
//! - `m`: keyless, small domains so duplicate rows are common. Drift: one copy of some rows
//!   deleted (matched byte-exactly), some rows inserted.
//!
//! Some cases use a small `chunk-size`, so chunking, bisection and several hash buckets are
//! exercised. The check runs through the library ([`syncgate::check::run_check`]), not the
//! binary.
//!
//! Case count: `SYNCGATE_PROPTEST_CASES` (default 24); shrink budget:
//! `SYNCGATE_PROPTEST_SHRINK_ITERS` (default 64). To run more cases on demand:
//!
//! ```text
//! SYNCGATE_PROPTEST_CASES=500 cargo nextest run --test integration prop_check
//! ```
//!
//! A failure prints the minimal case found, the SQL that built it, the reports and the fix SQL
//! files; a server crash prints the case that caused it and the tail of the server's error
//! log. Nothing is persisted to disk (no `proptest-regressions` files).

mod gen;
mod truth;

use crate::support::TestDb;
use gen::{case, Case, KRow, MRow};
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestError, TestRunner};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use syncgate::report::{RunReport, TableReport, TableResult};
use truth::{drift_sql, seed_sql, truth, Counts};

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

fn table<'r>(report: &'r RunReport, name: &str) -> &'r TableReport {
    report
        .tables
        .iter()
        .find(|t| t.table == name)
        .unwrap_or_else(|| panic!("table {name} not in the report"))
}

/// Execute every fix SQL file on the downstream, in name order; their paths and texts.
async fn apply_fix_files(down: &TestDb, out: &Path) -> Vec<(PathBuf, String)> {
    crate::scenario::apply_fix_dir(down, out).await
}

/// The rows of `k` and `m` on one side, read back byte-exactly.
async fn contents(db: &TestDb) -> (BTreeMap<i32, KRow>, Vec<MRow>) {
    type KTuple = (
        i32,
        Option<i32>,
        Option<Vec<u8>>,
        Option<String>,
        Option<Vec<u8>>,
    );
    let k: Vec<KTuple> = db
        .query("SELECT id, a, CAST(s AS BINARY), CAST(d AS CHAR), b FROM k ORDER BY id")
        .await;
    let k = k
        .into_iter()
        .map(|(id, a, s, d, b)| {
            let s = s.map(|s| String::from_utf8(s).expect("utf8 in k.s"));
            let d = d.map(|d| {
                let neg = d.starts_with('-');
                let digits: String = d.chars().filter(|c| c.is_ascii_digit()).collect();
                let v: i64 = digits.parse().expect("decimal");
                if neg {
                    -v
                } else {
                    v
                }
            });
            (id, KRow { a, s, d, b })
        })
        .collect();
    let m: Vec<(Option<i32>, Option<Vec<u8>>)> =
        db.query("SELECT x, CAST(y AS BINARY) FROM m").await;
    let mut m: Vec<MRow> = m
        .into_iter()
        .map(|(x, y)| (x, y.map(|y| String::from_utf8(y).expect("utf8 in m.y"))))
        .collect();
    m.sort();
    (k, m)
}

fn sorted(mut rows: Vec<MRow>) -> Vec<MRow> {
    rows.sort();
    rows
}

/// Everything needed to understand a failure.
fn describe(
    c: &Case,
    seed: &str,
    drift: &str,
    reports: &[&RunReport],
    fixes: &[(PathBuf, String)],
) -> String {
    let mut s = format!(
        "case: {c:#?}\n--- seed SQL (both sides)\n{seed}\n--- drift SQL (downstream)\n{drift}\n"
    );
    for r in reports {
        writeln!(
            s,
            "--- report\n{}",
            serde_json::to_string_pretty(r).unwrap()
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
    let drift = drift_sql(c);
    let want = truth(c);
    up.exec(&seed).await;
    down.exec(&seed).await;
    if !drift.is_empty() {
        down.exec(&drift).await;
    }
    // The drift did what the ground truth assumes (a failure here is a bug of this test).
    let (drifted_k, drifted_m) = contents(down).await;
    if drifted_k != want.down_k || drifted_m != sorted(want.down_m.clone()) {
        panic!(
            "test bug: the drift SQL does not produce the modelled downstream\n{}",
            describe(c, &seed, &drift, &[], &[])
        );
    }

    // (a) the report equals the ground truth.
    let dir = tempfile::tempdir().expect("tempdir");
    let out1 = dir.path().join("out1");
    let first = check(up, down, &out1, c).await;
    let ctx = || describe(c, &seed, &drift, &[&first], &[]);
    ensure!(first.tables.len() == 2, ctx, "expected tables k and m");
    for (name, want) in [("k", want.k), ("m", want.m)] {
        let t = table(&first, name);
        ensure!(t.error.is_none(), ctx, "table {name} failed: {:?}", t.error);
        ensure!(
            t.structure_equal && t.data_checked,
            ctx,
            "table {name} not compared as expected"
        );
        let got = Counts::of(t);
        ensure!(
            got == want,
            ctx,
            "table {name}: got {got:?}, ground truth {want:?}"
        );
        let expected_result = if want.is_zero() {
            TableResult::Equal
        } else {
            TableResult::Different
        };
        ensure!(
            t.result == expected_result,
            ctx,
            "table {name}: result {:?}, expected {expected_result:?}",
            t.result
        );
    }

    if let Some(n) = c.chunk_size {
        let chunks = table(&first, "k").chunks;
        ensure!(
            c.k.len() as u64 <= 2 * n || chunks >= 2,
            ctx,
            "chunk-size {n} with {} rows upstream gave {chunks} chunk(s)",
            c.k.len()
        );
    }

    // (b) the fix SQL repairs the downstream.
    let fixes = apply_fix_files(down, &out1).await;
    let out2 = dir.path().join("out2");
    let second = check(up, down, &out2, c).await;
    let ctx = || describe(c, &seed, &drift, &[&first, &second], &fixes);
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
    let (up_k, up_m) = contents(up).await;
    let (down_k, down_m) = contents(down).await;
    ensure!(
        up_k == c.k && up_m == sorted(c.m.clone()),
        ctx,
        "upstream was not loaded as generated"
    );
    ensure!(
        up_k == down_k,
        ctx,
        "after the fix, k differs byte-wise:\n up   {up_k:?}\n down {down_k:?}"
    );
    ensure!(
        up_m == down_m,
        ctx,
        "after the fix, m differs byte-wise:\n up   {up_m:?}\n down {down_m:?}"
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

/// The last `n` lines of a server's error log.
fn error_log_tail(db: &TestDb, n: usize) -> String {
    let path = db.server().error_log();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| format!("({e})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `Some(description)` when a server of the pair is no longer running.
fn crashed_server(up: &TestDb, down: &TestDb) -> Option<String> {
    [("upstream", up), ("downstream", down)]
        .into_iter()
        .find(|(_, db)| !db.server().is_running())
        .map(|(side, db)| {
            format!(
                "the {side} MariaDB server died during this case; tail of {}:\n{}",
                db.server().error_log().display(),
                error_log_tail(db, 400)
            )
        })
}

#[test]
fn reported_rows_match_ground_truth_and_fix_sql_repairs() {
    crate::support::require_mariadbd();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    // The shared servers of the harness; one database pair for all cases.
    let (up, down) = rt.block_on(TestDb::pair());
    let config = ProptestConfig {
        cases: env_u32("SYNCGATE_PROPTEST_CASES", 24),
        max_shrink_iters: env_u32("SYNCGATE_PROPTEST_SHRINK_ITERS", 64),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    // A crashed server makes every later case fail for that reason alone: remember the case
    // that killed it and let the rest pass vacuously, so the failure reported is that case.
    let crash: Mutex<Option<String>> = Mutex::new(None);
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case(), |c| {
        if crash.lock().unwrap().is_some() {
            return Ok(());
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(run_case(&up, &down, &c))
        }));
        if let Some(what) = crashed_server(&up, &down) {
            let sql = format!(
                "--- seed SQL (both sides)\n{}\n--- drift SQL (downstream)\n{}",
                seed_sql(&c),
                drift_sql(&c)
            );
            let msg = format!("{what}\ncase: {c:#?}\n{sql}");
            *crash.lock().unwrap() = Some(msg.clone());
            return Err(TestCaseError::fail(msg));
        }
        match outcome {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, minimal)) => {
            panic!("property failed; minimal case {minimal:?}\n{reason}")
        }
        Err(e) => panic!("{e}"),
    }
    rt.block_on(async {
        up.drop_db().await;
        down.drop_db().await;
    });
}
