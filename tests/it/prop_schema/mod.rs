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

use crate::support::TestDb;
use mysql_async::{Row, Value};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestError, TestRunner};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use syncgate::report::{RunReport, TableReport, TableResult};

// ---------------------------------------------------------------------------------------
// Generated schema

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    TinyInt,
    IntU,
    BigInt,
    Dec,
    Double,
    Float,
    Date,
    DateTime,
    Time,
    VarChar,
    Char,
    VarBin,
    Text,
    Enum,
    Bit,
    Json,
}

const ALL: &[Ty] = &[
    Ty::TinyInt,
    Ty::IntU,
    Ty::BigInt,
    Ty::Dec,
    Ty::Double,
    Ty::Float,
    Ty::Date,
    Ty::DateTime,
    Ty::Time,
    Ty::VarChar,
    Ty::Char,
    Ty::VarBin,
    Ty::Text,
    Ty::Enum,
    Ty::Bit,
    Ty::Json,
];

/// Types allowed in the primary key.
const KEYABLE: &[Ty] = &[
    Ty::TinyInt,
    Ty::IntU,
    Ty::BigInt,
    Ty::Dec,
    Ty::Date,
    Ty::DateTime,
    Ty::Time,
    Ty::VarChar,
    Ty::Char,
    Ty::VarBin,
    Ty::Enum,
    Ty::Bit,
];

impl Ty {
    fn ddl(self) -> &'static str {
        match self {
            Ty::TinyInt => "TINYINT",
            Ty::IntU => "INT UNSIGNED",
            Ty::BigInt => "BIGINT",
            Ty::Dec => "DECIMAL(12,4)",
            Ty::Double => "DOUBLE",
            Ty::Float => "FLOAT",
            Ty::Date => "DATE",
            Ty::DateTime => "DATETIME(6)",
            Ty::Time => "TIME",
            Ty::VarChar => "VARCHAR(12) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci",
            Ty::Char => "CHAR(5)",
            Ty::VarBin => "VARBINARY(8)",
            Ty::Text => "TEXT",
            Ty::Enum => "ENUM('a','b','c')",
            Ty::Bit => "BIT(10)",
            Ty::Json => "JSON",
        }
    }

    /// The expression whose text is the compared value (docs/comparison-rules.md).
    fn read_expr(self, c: &str) -> String {
        match self {
            Ty::Float => format!("CAST({c} AS DOUBLE)"),
            Ty::Bit => format!("CAST({c} AS UNSIGNED)"),
            _ => c.to_string(),
        }
    }

    /// The expression identifying a key value as the server matches keys.
    fn key_expr(self, c: &str) -> String {
        match self {
            Ty::VarChar => format!("WEIGHT_STRING({c} AS CHAR(12))"),
            Ty::Char => format!("WEIGHT_STRING({c} AS CHAR(5))"),
            _ => self.read_expr(c),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Col {
    ty: Ty,
    nullable: bool,
}

#[derive(Debug, Clone)]
struct Schema {
    cols: Vec<Col>,
    /// The primary key is the first `key` columns; 0 = keyless.
    key: usize,
}

fn col_name(i: usize) -> String {
    format!("c{i}")
}

impl Schema {
    fn ddl(&self) -> String {
        let mut parts: Vec<String> = self
            .cols
            .iter()
            .enumerate()
            .map(|(i, c)| {
                format!(
                    "{} {} {}",
                    col_name(i),
                    c.ty.ddl(),
                    if c.nullable { "NULL" } else { "NOT NULL" }
                )
            })
            .collect();
        if self.key > 0 {
            let k: Vec<String> = (0..self.key).map(col_name).collect();
            parts.push(format!("PRIMARY KEY ({})", k.join(", ")));
        }
        format!(
            "DROP TABLE IF EXISTS t; CREATE TABLE t ({})",
            parts.join(", ")
        )
    }
}

fn schema() -> impl Strategy<Value = Schema> {
    (0..=2usize, 1..=6usize).prop_flat_map(|(key, n)| {
        let key = key.min(n);
        let cols: Vec<BoxedStrategy<Col>> = (0..n)
            .map(|i| {
                if i < key {
                    select(KEYABLE)
                        .prop_map(|ty| Col {
                            ty,
                            nullable: false,
                        })
                        .boxed()
                } else {
                    (select(ALL), any::<bool>())
                        .prop_map(|(ty, nullable)| Col { ty, nullable })
                        .boxed()
                }
            })
            .collect();
        cols.prop_map(move |cols| Schema { cols, key })
    })
}

// ---------------------------------------------------------------------------------------
// Generated values (as SQL literals)

/// Characters of generated strings: separators, quotes, escapes, case/accent/space variants
/// and a 4-byte emoji.
const CHARS: &[char] = &[
    'a', 'A', 'b', 'ä', ',', '\'', '\\', '"', ' ', '\t', '\n', '😀', '0', 'N',
];
const BYTES: &[u8] = &[0x00, 0xFF, 0x20, 0x41, 0x61, 0x2C, 0x27, 0x5C, 0x0A];
/// Valid JSON texts; several are the same document written differently.
const JSONS: &[&str] = &[
    "{\"a\":1}",
    "{\"a\": 1}",
    "[1,2]",
    "[]",
    "null",
    "true",
    "1.50",
    "\"x'y\\\\z\"",
    "{\"k\":\"😀\"}",
    "{\"b\":[null,\"a,b\"]}",
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn str_lit(s: &str) -> String {
    format!("_utf8mb4 X'{}'", hex(s.as_bytes()))
}

fn string(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(select(CHARS), 0..=max).prop_map(|v| v.into_iter().collect())
}

fn lit(ty: Ty) -> BoxedStrategy<String> {
    match ty {
        Ty::TinyInt => prop_oneof![select(&[0i8, 1, -1, i8::MIN, i8::MAX][..]), any::<i8>()]
            .prop_map(|v| v.to_string())
            .boxed(),
        Ty::IntU => prop_oneof![select(&[0u32, 1, u32::MAX][..]), any::<u32>()]
            .prop_map(|v| v.to_string())
            .boxed(),
        Ty::BigInt => prop_oneof![select(&[0i64, 1, -1, i64::MIN, i64::MAX][..]), any::<i64>()]
            .prop_map(|v| v.to_string())
            .boxed(),
        Ty::Dec => prop_oneof![
            select(&[0i64, 1, -1, 5000, 99_999_999_999_999_999 / 100_000][..]),
            -9_999_999_999_999_999i64..=9_999_999_999_999_999i64
        ]
        .prop_map(|v| {
            let sign = if v < 0 { "-" } else { "" };
            let a = v.unsigned_abs();
            format!("{sign}{}.{:04}", a / 10_000, a % 10_000)
        })
        .boxed(),
        // Finite, normal or zero; `{:e}` is the shortest text that round-trips.
        Ty::Double => prop_oneof![
            select(
                &[
                    0.0f64,
                    -0.0,
                    0.1,
                    1.0,
                    -2.5,
                    1e300,
                    f64::MAX,
                    f64::MIN_POSITIVE
                ][..]
            ),
            any::<f64>().prop_filter("normal", |f| f.is_normal())
        ]
        .prop_map(|f| format!("{f:e}"))
        .boxed(),
        // Exactly representable as FLOAT: an f32, written as its exact double value.
        Ty::Float => prop_oneof![
            select(&[0.0f32, 1.0, 0.1, 1.000_000_1, -3.5, f32::MAX][..]),
            any::<f32>().prop_filter("normal", |f| f.is_normal())
        ]
        .prop_map(|f| format!("{:e}", f as f64))
        .boxed(),
        Ty::Date => (1000u32..=9999, 1u32..=12, 1u32..=28)
            .prop_map(|(y, m, d)| format!("'{y:04}-{m:02}-{d:02}'"))
            .boxed(),
        Ty::DateTime => (
            (1000u32..=9999, 1u32..=12, 1u32..=28),
            (
                0u32..24,
                0u32..60,
                0u32..60,
                prop_oneof![Just(0u32), 0u32..1_000_000],
            ),
        )
            .prop_map(|((y, mo, d), (h, mi, s, us))| {
                format!("'{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}'")
            })
            .boxed(),
        Ty::Time => (any::<bool>(), 0u32..=838, 0u32..60, 0u32..60)
            .prop_map(|(neg, h, m, s)| format!("'{}{h}:{m:02}:{s:02}'", if neg { "-" } else { "" }))
            .boxed(),
        Ty::VarChar => string(8).prop_map(|s| str_lit(&s)).boxed(),
        Ty::Char => string(5).prop_map(|s| str_lit(&s)).boxed(),
        Ty::Text => string(20).prop_map(|s| str_lit(&s)).boxed(),
        Ty::VarBin => prop::collection::vec(select(BYTES), 0..=8)
            .prop_map(|b| format!("X'{}'", hex(&b)))
            .boxed(),
        Ty::Enum => select(&["'a'", "'b'", "'c'"][..])
            .prop_map(String::from)
            .boxed(),
        Ty::Bit => (0u32..1024).prop_map(|v| v.to_string()).boxed(),
        Ty::Json => select(JSONS).prop_map(str_lit).boxed(),
    }
}

fn val(c: Col) -> BoxedStrategy<String> {
    if c.nullable {
        prop::option::weighted(0.8, lit(c.ty))
            .prop_map(|v| v.unwrap_or_else(|| "NULL".into()))
            .boxed()
    } else {
        lit(c.ty)
    }
}

fn row(s: &Schema) -> Vec<BoxedStrategy<String>> {
    s.cols.iter().map(|c| val(*c)).collect()
}

/// A change on the downstream. Rows are picked among the downstream's rows as read back
/// after seeding.
#[derive(Debug, Clone)]
enum Mut {
    Delete(Index),
    /// Set column `.1` (modulo the column count) to the literal `.2`.
    Update(Index, usize, String),
    Insert(Vec<String>),
    /// Rewrite a string column (modulo the column count) of a row so that it stays equal
    /// under utf8mb4_general_ci / PAD SPACE: `UPPER`, `LOWER` or one more trailing space
    /// (`.2` modulo 3). A key column so rewritten is the same key, so the row is changed.
    Restyle(Index, usize, u8),
}

fn mutation(s: &Schema) -> BoxedStrategy<Mut> {
    let cols = s.cols.clone();
    let n = cols.len();
    prop_oneof![
        2 => any::<Index>().prop_map(Mut::Delete),
        3 => (any::<Index>(), 0..n).prop_flat_map(move |(ix, c)| {
            val(cols[c]).prop_map(move |v| Mut::Update(ix, c, v))
        }),
        2 => row(s).prop_map(Mut::Insert),
        2 => (any::<Index>(), 0..n, 0..3u8).prop_map(|(ix, c, k)| Mut::Restyle(ix, c, k)),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
struct Case {
    schema: Schema,
    rows: Vec<Vec<String>>,
    muts: Vec<Mut>,
    /// `chunk-size`; `None` = default.
    chunk_size: Option<u64>,
    threads: usize,
}

fn case() -> impl Strategy<Value = Case> {
    schema().prop_flat_map(|schema| {
        (
            prop::collection::vec(row(&schema), 0..=60),
            prop::collection::vec(mutation(&schema), 0..=20),
            prop_oneof![Just(None), Just(Some(16)), Just(Some(3))],
            select(&[4usize, 1, 2][..]),
            Just(schema),
        )
            .prop_map(|(rows, muts, chunk_size, threads, schema)| Case {
                schema,
                rows,
                muts,
                chunk_size,
                threads,
            })
    })
}

// ---------------------------------------------------------------------------------------
// SQL and read-back

fn seed_sql(c: &Case) -> String {
    let mut sql = c.schema.ddl();
    if !c.rows.is_empty() {
        let rows: Vec<String> = c
            .rows
            .iter()
            .map(|r| format!("({})", r.join(", ")))
            .collect();
        write!(sql, ";\nINSERT IGNORE INTO t VALUES {}", rows.join(", ")).unwrap();
    }
    sql
}

type Text = Option<Vec<u8>>;

/// One row as read back.
#[derive(Debug, Clone)]
struct ReadRow {
    /// Key identity (empty for keyless tables).
    key: Vec<Text>,
    /// Compared text of every column.
    text: Vec<Text>,
}

fn text_of(v: Value) -> Text {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(b),
        other => panic!("unexpected value over the text protocol: {other:?}"),
    }
}

async fn read_back(db: &TestDb, s: &Schema) -> Vec<ReadRow> {
    let n = s.cols.len();
    let mut exprs: Vec<String> = s
        .cols
        .iter()
        .enumerate()
        .map(|(i, c)| c.ty.read_expr(&col_name(i)))
        .collect();
    exprs.extend((0..s.key).map(|i| s.cols[i].ty.key_expr(&col_name(i))));
    let rows: Vec<Row> = db
        .query(&format!("SELECT {} FROM t", exprs.join(", ")))
        .await;
    let mut out: Vec<ReadRow> = rows
        .into_iter()
        .map(|r| {
            let mut vals: Vec<Text> = r.unwrap().into_iter().map(text_of).collect();
            let key = vals.split_off(n);
            ReadRow { key, text: vals }
        })
        .collect();
    out.sort_by(|a, b| (&a.key, &a.text).cmp(&(&b.key, &b.text)));
    out
}

/// `WHERE` condition matching `r` byte-exactly through the read expressions.
fn match_cond(s: &Schema, r: &ReadRow) -> String {
    let conds: Vec<String> = s
        .cols
        .iter()
        .enumerate()
        .zip(&r.text)
        .map(|((i, c), t)| {
            let v = t
                .as_ref()
                .map_or("NULL".into(), |b| format!("X'{}'", hex(b)));
            format!("CAST({} AS BINARY) <=> {v}", c.ty.read_expr(&col_name(i)))
        })
        .collect();
    conds.join(" AND ")
}

/// The drift, run on the downstream only. Empty when there is none.
fn drift_sql(c: &Case, down: &[ReadRow]) -> String {
    let mut stmts = Vec::new();
    let cols: Vec<String> = (0..c.schema.cols.len()).map(col_name).collect();
    for m in &c.muts {
        match m {
            Mut::Delete(ix) if !down.is_empty() => {
                let r = ix.get(down);
                stmts.push(format!(
                    "DELETE FROM t WHERE {} LIMIT 1",
                    match_cond(&c.schema, r)
                ));
            }
            Mut::Update(ix, col, v) if !down.is_empty() => {
                let r = ix.get(down);
                stmts.push(format!(
                    "UPDATE IGNORE t SET {} = {v} WHERE {} LIMIT 1",
                    col_name(*col),
                    match_cond(&c.schema, r)
                ));
            }
            Mut::Restyle(ix, col, kind) if !down.is_empty() => {
                if !matches!(c.schema.cols[*col].ty, Ty::VarChar | Ty::Char | Ty::Text) {
                    continue;
                }
                let r = ix.get(down);
                let name = col_name(*col);
                let new = match kind % 3 {
                    0 => format!("UPPER({name})"),
                    1 => format!("LOWER({name})"),
                    _ => format!("CONCAT({name}, ' ')"),
                };
                stmts.push(format!(
                    "UPDATE IGNORE t SET {name} = {new} WHERE {} LIMIT 1",
                    match_cond(&c.schema, r)
                ));
            }
            Mut::Insert(vals) => stmts.push(format!(
                "INSERT IGNORE INTO t ({}) VALUES ({})",
                cols.join(", "),
                vals.join(", ")
            )),
            _ => {}
        }
    }
    stmts.join(";\n")
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

fn truth(keyed: bool, up: &[ReadRow], down: &[ReadRow]) -> Counts {
    let mut c = Counts {
        missing: 0,
        extra: 0,
        changed: 0,
    };
    if keyed {
        let u: BTreeMap<&Vec<Text>, &Vec<Text>> = up.iter().map(|r| (&r.key, &r.text)).collect();
        let d: BTreeMap<&Vec<Text>, &Vec<Text>> = down.iter().map(|r| (&r.key, &r.text)).collect();
        assert_eq!(
            u.len(),
            up.len(),
            "test bug: duplicate key identity upstream"
        );
        assert_eq!(
            d.len(),
            down.len(),
            "test bug: duplicate key identity downstream"
        );
        for (k, t) in &u {
            match d.get(k) {
                None => c.missing += 1,
                Some(dt) if dt != t => c.changed += 1,
                Some(_) => {}
            }
        }
        c.extra = d.keys().filter(|k| !u.contains_key(*k)).count() as u64;
    } else {
        let ms = |rows: &[ReadRow]| {
            let mut m: HashMap<Vec<Text>, i64> = HashMap::new();
            for r in rows {
                *m.entry(r.text.clone()).or_insert(0) += 1;
            }
            m
        };
        let (u, d) = (ms(up), ms(down));
        for (row, &n) in &u {
            c.missing += (n - d.get(row).copied().unwrap_or(0)).max(0) as u64;
        }
        for (row, &n) in &d {
            c.extra += (n - u.get(row).copied().unwrap_or(0)).max(0) as u64;
        }
    }
    c
}

fn texts(rows: &[ReadRow]) -> Vec<&Vec<Text>> {
    let mut v: Vec<&Vec<Text>> = rows.iter().map(|r| &r.text).collect();
    v.sort();
    v
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
