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

use crate::support::TestDb;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestError, TestRunner};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use syncgate::report::{RunReport, TableReport, TableResult};

// ---------------------------------------------------------------------------------------
// Generated data

/// Strings of `k.s` (VARCHAR(20), utf8mb4_general_ci).
const K_STRINGS: &[&str] = &[
    "", ",", "'", "\\", "a,b", "NULL", "N", "n", "😀", "a", "A", "a ", "ä", "\"", "\n", "x'y\\z",
];
/// Strings of `m.y` (VARCHAR(5)): few, so duplicates are common.
const M_STRINGS: &[&str] = &["a", "", "A", "a ", ",", "'", "😀"];
/// Bytes of `k.b` (VARBINARY(8)).
const BYTES: &[u8] = &[0x00, 0xFF, 0x20, 0x41, 0x61, 0x2C, 0x27, 0x5C];
/// Values of `k.a`.
const INTS: &[i32] = &[0, 1, -1, 42, i32::MIN, i32::MAX];
/// Values of `k.d` (DECIMAL(8,2)) in hundredths.
const CENTS: &[i64] = &[0, 1, -1, 10, 150, -150, 12_345, 99_999_999, -99_999_999];

#[derive(Debug, Clone, PartialEq, Eq)]
struct KRow {
    a: Option<i32>,
    s: Option<String>,
    /// Hundredths.
    d: Option<i64>,
    b: Option<Vec<u8>>,
}

/// An update of one row of `k`.
#[derive(Debug, Clone)]
enum KUpdate {
    /// Set one column.
    A(Option<i32>),
    S(Option<String>),
    D(Option<i64>),
    B(Option<Vec<u8>>),
    /// Rewrite every column with its current value: not a change.
    Same,
    /// Swap the ASCII case of `s`: equal under utf8mb4_general_ci, still a change (unless
    /// `s` has no letters).
    FlipCase,
    /// Append a space to `s`: equal under the PAD SPACE collation, still a change.
    PadSpace,
}

/// What happens downstream to an existing row of `k` (`Keep` first so shrinking prefers it).
#[derive(Debug, Clone)]
enum KAction {
    Keep,
    Delete,
    Update(KUpdate),
}

type MRow = (Option<i32>, Option<String>);

#[derive(Debug, Clone)]
struct Case {
    /// Upstream (and initial downstream) rows of `k`, by id in 1..=300.
    k: BTreeMap<i32, KRow>,
    /// Zipped with `k` in id order; ids beyond the list are kept.
    k_actions: Vec<KAction>,
    /// Rows inserted downstream only, ids in 301..=400.
    k_inserts: BTreeMap<i32, KRow>,
    /// Upstream (and initial downstream) rows of `m`.
    m: Vec<MRow>,
    /// Zipped with `m`: delete one copy of that row downstream.
    m_deletes: Vec<bool>,
    /// Rows inserted downstream only.
    m_inserts: Vec<MRow>,
    /// `chunk-size` for both tables; `None` = default.
    chunk_size: Option<u64>,
    threads: usize,
}

fn int_val() -> impl Strategy<Value = Option<i32>> {
    prop::option::weighted(0.8, select(INTS))
}

fn k_str_val() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(0.8, select(K_STRINGS).prop_map(String::from))
}

fn dec_val() -> impl Strategy<Value = Option<i64>> {
    prop::option::weighted(0.8, select(CENTS))
}

fn bin_val() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::weighted(0.8, prop::collection::vec(select(BYTES), 0..=8))
}

fn k_row() -> impl Strategy<Value = KRow> {
    (int_val(), k_str_val(), dec_val(), bin_val()).prop_map(|(a, s, d, b)| KRow { a, s, d, b })
}

fn k_action() -> impl Strategy<Value = KAction> {
    prop_oneof![
        6 => Just(KAction::Keep),
        2 => Just(KAction::Delete),
        1 => int_val().prop_map(|v| KAction::Update(KUpdate::A(v))),
        3 => k_str_val().prop_map(|v| KAction::Update(KUpdate::S(v))),
        1 => dec_val().prop_map(|v| KAction::Update(KUpdate::D(v))),
        1 => bin_val().prop_map(|v| KAction::Update(KUpdate::B(v))),
        1 => Just(KAction::Update(KUpdate::Same)),
        1 => Just(KAction::Update(KUpdate::FlipCase)),
        1 => Just(KAction::Update(KUpdate::PadSpace)),
    ]
}

fn m_row() -> impl Strategy<Value = MRow> {
    (
        prop::option::weighted(0.8, 0..3i32),
        prop::option::weighted(0.8, select(M_STRINGS).prop_map(String::from)),
    )
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::btree_map(1..=300i32, k_row(), 0..120),
        prop::collection::vec(k_action(), 0..120),
        prop::collection::btree_map(301..=400i32, k_row(), 0..8),
        prop::collection::vec(m_row(), 0..40),
        prop::collection::vec(prop::bool::weighted(0.25), 0..40),
        prop::collection::vec(m_row(), 0..8),
        prop_oneof![Just(None), Just(Some(16)), Just(Some(3))],
        select(&[4usize, 1, 2][..]),
    )
        .prop_map(
            |(k, k_actions, k_inserts, m, m_deletes, m_inserts, chunk_size, threads)| Case {
                k,
                k_actions,
                k_inserts,
                m,
                m_deletes,
                m_inserts,
                chunk_size,
                threads,
            },
        )
}

// ---------------------------------------------------------------------------------------
// Ground truth

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    missing: u64,
    extra: u64,
    changed: u64,
}

impl Counts {
    fn of(t: &TableReport) -> Counts {
        Counts {
            missing: t.rows_missing,
            extra: t.rows_extra,
            changed: t.rows_changed,
        }
    }

    fn is_zero(&self) -> bool {
        self.missing == 0 && self.extra == 0 && self.changed == 0
    }
}

struct Truth {
    k: Counts,
    m: Counts,
    /// Downstream contents after the drift.
    down_k: BTreeMap<i32, KRow>,
    down_m: Vec<MRow>,
}

fn apply_update(row: &mut KRow, u: &KUpdate) {
    match u {
        KUpdate::A(v) => row.a = *v,
        KUpdate::S(v) => row.s = v.clone(),
        KUpdate::D(v) => row.d = *v,
        KUpdate::B(v) => row.b = v.clone(),
        KUpdate::Same => {}
        KUpdate::FlipCase => {
            row.s = row.s.as_ref().map(|s| {
                s.chars()
                    .map(|c| {
                        if c.is_ascii_lowercase() {
                            c.to_ascii_uppercase()
                        } else {
                            c.to_ascii_lowercase()
                        }
                    })
                    .collect()
            })
        }
        // VARCHAR(20): every generated string is short enough for one more character.
        KUpdate::PadSpace => row.s = row.s.as_ref().map(|s| format!("{s} ")),
    }
}

fn multiset(rows: &[MRow]) -> HashMap<&MRow, i64> {
    let mut out = HashMap::new();
    for r in rows {
        *out.entry(r).or_insert(0) += 1;
    }
    out
}

fn truth(c: &Case) -> Truth {
    let mut down_k = c.k.clone();
    let mut k = Counts {
        missing: 0,
        extra: c.k_inserts.len() as u64,
        changed: 0,
    };
    for ((id, orig), action) in c.k.iter().zip(&c.k_actions) {
        match action {
            KAction::Keep => {}
            KAction::Delete => {
                down_k.remove(id);
                k.missing += 1;
            }
            KAction::Update(u) => {
                let row = down_k.get_mut(id).expect("row exists");
                apply_update(row, u);
                if row != orig {
                    k.changed += 1;
                }
            }
        }
    }
    down_k.extend(c.k_inserts.iter().map(|(id, r)| (*id, r.clone())));

    let mut down_m: Vec<MRow> =
        c.m.iter()
            .enumerate()
            .filter(|(i, _)| !c.m_deletes.get(*i).copied().unwrap_or(false))
            .map(|(_, r)| r.clone())
            .collect();
    down_m.extend(c.m_inserts.iter().cloned());
    let (up_set, down_set) = (multiset(&c.m), multiset(&down_m));
    let mut m = Counts {
        missing: 0,
        extra: 0,
        changed: 0,
    };
    for (row, &n) in &up_set {
        m.missing += (n - down_set.get(row).copied().unwrap_or(0)).max(0) as u64;
    }
    for (row, &n) in &down_set {
        m.extra += (n - up_set.get(row).copied().unwrap_or(0)).max(0) as u64;
    }
    Truth {
        k,
        m,
        down_k,
        down_m,
    }
}

// ---------------------------------------------------------------------------------------
// SQL

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn int_lit(v: Option<i32>) -> String {
    v.map_or("NULL".into(), |v| v.to_string())
}

fn str_lit(v: &Option<String>) -> String {
    v.as_ref().map_or("NULL".into(), |s| {
        format!("_utf8mb4 X'{}'", hex(s.as_bytes()))
    })
}

fn dec_text(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

fn dec_lit(v: Option<i64>) -> String {
    v.map_or("NULL".into(), dec_text)
}

fn bin_lit(v: &Option<Vec<u8>>) -> String {
    v.as_ref()
        .map_or("NULL".into(), |b| format!("X'{}'", hex(b)))
}

fn k_values(id: i32, r: &KRow) -> String {
    format!(
        "({id}, {}, {}, {}, {})",
        int_lit(r.a),
        str_lit(&r.s),
        dec_lit(r.d),
        bin_lit(&r.b)
    )
}

fn m_values(r: &MRow) -> String {
    format!("({}, {})", int_lit(r.0), str_lit(&r.1))
}

const SCHEMA: &str = "DROP TABLE IF EXISTS k, m; \
    CREATE TABLE k (id INT NOT NULL PRIMARY KEY, a INT NULL, s VARCHAR(20) NULL, \
    d DECIMAL(8,2) NULL, b VARBINARY(8) NULL); \
    CREATE TABLE m (x INT NULL, y VARCHAR(5) NULL)";

/// Schema and rows, run on both sides.
fn seed_sql(c: &Case) -> String {
    let mut sql = SCHEMA.to_string();
    if !c.k.is_empty() {
        let rows: Vec<String> = c.k.iter().map(|(id, r)| k_values(*id, r)).collect();
        write!(sql, ";\nINSERT INTO k VALUES {}", rows.join(", ")).unwrap();
    }
    if !c.m.is_empty() {
        let rows: Vec<String> = c.m.iter().map(m_values).collect();
        write!(sql, ";\nINSERT INTO m VALUES {}", rows.join(", ")).unwrap();
    }
    sql
}

/// The drift, run on the downstream only. Empty when there is none.
fn drift_sql(c: &Case) -> String {
    let mut stmts = Vec::new();
    let mut deleted = Vec::new();
    for ((id, orig), action) in c.k.iter().zip(&c.k_actions) {
        match action {
            KAction::Keep => {}
            KAction::Delete => deleted.push(id.to_string()),
            KAction::Update(u) => {
                let mut new = orig.clone();
                apply_update(&mut new, u);
                let set = match u {
                    KUpdate::A(_) => format!("a = {}", int_lit(new.a)),
                    KUpdate::S(_) | KUpdate::FlipCase | KUpdate::PadSpace => {
                        format!("s = {}", str_lit(&new.s))
                    }
                    KUpdate::D(_) => format!("d = {}", dec_lit(new.d)),
                    KUpdate::B(_) => format!("b = {}", bin_lit(&new.b)),
                    KUpdate::Same => format!(
                        "a = {}, s = {}, d = {}, b = {}",
                        int_lit(new.a),
                        str_lit(&new.s),
                        dec_lit(new.d),
                        bin_lit(&new.b)
                    ),
                };
                stmts.push(format!("UPDATE k SET {set} WHERE id = {id}"));
            }
        }
    }
    if !deleted.is_empty() {
        stmts.push(format!(
            "DELETE FROM k WHERE id IN ({})",
            deleted.join(", ")
        ));
    }
    if !c.k_inserts.is_empty() {
        let rows: Vec<String> = c.k_inserts.iter().map(|(id, r)| k_values(*id, r)).collect();
        stmts.push(format!("INSERT INTO k VALUES {}", rows.join(", ")));
    }
    for (row, _) in c.m.iter().zip(&c.m_deletes).filter(|(_, d)| **d) {
        // Byte-exact match: the column collation would equate 'a', 'A' and 'a '.
        let y = row
            .1
            .as_ref()
            .map_or("NULL".into(), |s| format!("X'{}'", hex(s.as_bytes())));
        stmts.push(format!(
            "DELETE FROM m WHERE x <=> {} AND CAST(y AS BINARY) <=> {y} LIMIT 1",
            int_lit(row.0)
        ));
    }
    if !c.m_inserts.is_empty() {
        let rows: Vec<String> = c.m_inserts.iter().map(m_values).collect();
        stmts.push(format!("INSERT INTO m VALUES {}", rows.join(", ")));
    }
    stmts.join(";\n")
}

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
