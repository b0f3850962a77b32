//! The generators: schemas (column types, nullability, key), values as SQL literals,
//! downstream mutations and whole cases.

use proptest::prelude::*;
use proptest::sample::{select, Index};

// ---------------------------------------------------------------------------------------
// Generated schema

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
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
    pub(super) fn ddl(self) -> &'static str {
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
    pub(super) fn read_expr(self, c: &str) -> String {
        match self {
            Ty::Float => format!("CAST({c} AS DOUBLE)"),
            Ty::Bit => format!("CAST({c} AS UNSIGNED)"),
            _ => c.to_string(),
        }
    }

    /// The expression identifying a key value as the server matches keys.
    pub(super) fn key_expr(self, c: &str) -> String {
        match self {
            Ty::VarChar => format!("WEIGHT_STRING({c} AS CHAR(12))"),
            Ty::Char => format!("WEIGHT_STRING({c} AS CHAR(5))"),
            _ => self.read_expr(c),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Col {
    pub(super) ty: Ty,
    pub(super) nullable: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Schema {
    pub(super) cols: Vec<Col>,
    /// The primary key is the first `key` columns; 0 = keyless.
    pub(super) key: usize,
}

pub(super) fn col_name(i: usize) -> String {
    format!("c{i}")
}

impl Schema {
    pub(super) fn ddl(&self) -> String {
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

pub(super) fn schema() -> impl Strategy<Value = Schema> {
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

pub(super) fn hex(bytes: &[u8]) -> String {
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

pub(super) fn row(s: &Schema) -> Vec<BoxedStrategy<String>> {
    s.cols.iter().map(|c| val(*c)).collect()
}

/// A change on the downstream. Rows are picked among the downstream's rows as read back
/// after seeding.
#[derive(Debug, Clone)]
pub(super) enum Mut {
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
pub(super) struct Case {
    pub(super) schema: Schema,
    pub(super) rows: Vec<Vec<String>>,
    pub(super) muts: Vec<Mut>,
    /// `chunk-size`; `None` = default.
    pub(super) chunk_size: Option<u64>,
    pub(super) threads: usize,
}

pub(super) fn case() -> impl Strategy<Value = Case> {
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
