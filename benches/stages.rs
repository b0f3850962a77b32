//! Criterion micro-benches of syncgate's pure (CPU-only) stages, on sysbench-shaped rows
//! (`id INT, k INT, c CHAR(120), pad CHAR(60)`, from the playground's generator):
//!
//! | group | what is timed | bytes counted |
//! |---|---|---|
//! | `row_hash` | canonical encoding + xxh3-128 of each row ([`row_hash`]) | value bytes hashed |
//! | `diff_sorted` | merge diff of two key-ordered streams ([`diff_sorted`]), 0 % and 1 % of rows differing | value bytes of both streams |
//! | `multiset_diff` | keyless multiset diff ([`MultisetDiff`]), 0 % and 1 % differing | value bytes of both sides |
//! | `render_changes` | fix SQL rendering ([`render_changes`]): `REPLACE` (missing rows), `DELETE` (extra rows) | SQL bytes produced |
//!
//! Each benchmark is registered twice in its group, as `rows/<case>` with
//! `Throughput::Elements` (rows per second; for `render_changes`, statements per second) and
//! as `bytes/<case>` with `Throughput::Bytes`, for 1k and 100k rows.
//!
//! Run: `cargo bench --bench stages` (all) or e.g. `cargo bench --bench stages -- diff_sorted`.
//! `SG_STAGES_QUICK=1` shortens warm-up and measurement (smoke run).

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use syncgate::diff::{diff_sorted, MultisetDiff, RowChange, RowLayout};
use syncgate::fixsql::{render_changes, FixTable};
use syncgate::row::{row_hash, KeyKind, Row};
use syncgate::schema::{Column, TableRef, TypeClass};
use syncgate::testdata::sbtest_rows;

const SIZES: [(u64, &str); 2] = [(1_000, "1k"), (100_000, "100k")];
const SEED: u64 = 42;

/// `n` sysbench rows as the server's text values: `id, k, c, pad`.
fn sb_rows(n: u64) -> Vec<Row> {
    sbtest_rows(SEED, 1, n)
        .map(|r| {
            vec![
                Some(r.id.to_string().into_bytes()),
                Some(r.k.to_string().into_bytes()),
                Some(r.c.into_bytes()),
                Some(r.pad.into_bytes()),
            ]
        })
        .collect()
}

fn value_bytes(rows: &[Row]) -> u64 {
    rows.iter()
        .flatten()
        .map(|v| v.as_ref().map_or(0, |b| b.len() as u64))
        .sum()
}

/// Rows as streamed for a merge: the compared columns, then the sort value (the id).
fn with_sort_value(rows: &[Row]) -> Vec<Row> {
    rows.iter()
        .map(|r| {
            let mut r = r.clone();
            r.push(r[0].clone());
            r
        })
        .collect()
}

/// An upstream and a downstream copy of `rows` where `pct` percent of the rows differ: of
/// every three differing rows one is missing downstream, one extra downstream (present
/// downstream only) and one changed (`c` altered). Returns the expected change count.
fn drifted(rows: &[Row], pct: u64) -> (Vec<Row>, Vec<Row>, usize) {
    let n = rows.len() as u64;
    let differing = n * pct / 100;
    // Spread the differing rows evenly over the key range.
    let stride = n.checked_div(differing).map_or(u64::MAX, |s| s.max(1));
    let (mut up, mut down) = (Vec::new(), Vec::new());
    let mut count = 0usize;
    for (i, r) in rows.iter().enumerate() {
        let i = i as u64;
        if differing > 0 && i % stride == stride / 2 && i / stride < differing {
            count += 1;
            match (i / stride) % 3 {
                0 => up.push(r.clone()),
                1 => down.push(r.clone()),
                _ => {
                    up.push(r.clone());
                    let mut changed = r.clone();
                    if let Some(Some(c)) = changed.get_mut(2) {
                        c[0] = b'x';
                    }
                    down.push(changed);
                }
            }
        } else {
            up.push(r.clone());
            down.push(r.clone());
        }
    }
    (up, down, count)
}

fn column(
    name: &str,
    ordinal: u32,
    class: TypeClass,
    data_type: &str,
    column_type: &str,
) -> Column {
    let text = class == TypeClass::Text;
    Column {
        name: name.into(),
        ordinal,
        data_type: data_type.into(),
        column_type: column_type.into(),
        class,
        nullable: false,
        unsigned: false,
        charset: text.then(|| "utf8mb4".into()),
        collation: text.then(|| "utf8mb4_general_ci".into()),
        default: None,
        generated: None,
        invisible: false,
    }
}

fn sbtest_columns() -> Vec<Column> {
    vec![
        column("id", 1, TypeClass::Int, "int", "int(11)"),
        column("k", 2, TypeClass::Int, "int", "int(11)"),
        column("c", 3, TypeClass::Text, "char", "char(120)"),
        column("pad", 4, TypeClass::Text, "char", "char(60)"),
    ]
}

fn config() -> Criterion {
    let quick = std::env::var_os("SG_STAGES_QUICK").is_some_and(|v| !v.is_empty() && v != "0");
    let c = Criterion::default();
    if quick {
        c.warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1))
            .sample_size(10)
    } else {
        c.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .sample_size(20)
    }
}

fn bench_row_hash(c: &mut Criterion) {
    let mut g = c.benchmark_group("row_hash");
    for (n, label) in SIZES {
        let rows = sb_rows(n);
        let bytes = value_bytes(&rows);
        let run = |b: &mut criterion::Bencher, rows: &Vec<Row>| {
            b.iter(|| {
                let mut acc = 0u128;
                for r in rows {
                    acc ^= row_hash(black_box(r));
                }
                acc
            })
        };
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::new("rows", label), &rows, run);
        g.throughput(Throughput::Bytes(bytes));
        g.bench_with_input(BenchmarkId::new("bytes", label), &rows, run);
    }
    g.finish();
}

fn bench_diff_sorted(c: &mut Criterion) {
    let layout = RowLayout {
        columns: 4,
        sort_kinds: vec![KeyKind::Int],
    };
    let mut g = c.benchmark_group("diff_sorted");
    for (n, label) in SIZES {
        let rows = sb_rows(n);
        for pct in [0u64, 1] {
            let (up, down, expected) = drifted(&rows, pct);
            let (up, down) = (with_sort_value(&up), with_sort_value(&down));
            // A bench of a wrong result is worthless: check once, outside the timing.
            let got = diff_sorted(&layout, up.clone(), down.clone()).len();
            assert_eq!(got, expected, "diff_sorted {label} {pct}%");
            let bytes = value_bytes(&up) + value_bytes(&down);
            let case = format!("{label}/{pct}pct");
            let run = |b: &mut criterion::Bencher, (up, down): &(Vec<Row>, Vec<Row>)| {
                b.iter_batched(
                    || (up.clone(), down.clone()),
                    |(u, d)| diff_sorted(&layout, u, d),
                    BatchSize::LargeInput,
                )
            };
            let input = (up, down);
            g.throughput(Throughput::Elements(n));
            g.bench_with_input(BenchmarkId::new("rows", &case), &input, run);
            g.throughput(Throughput::Bytes(bytes));
            g.bench_with_input(BenchmarkId::new("bytes", &case), &input, run);
        }
    }
    g.finish();
}

fn multiset(up: Vec<Row>, down: Vec<Row>) -> Vec<RowChange> {
    let mut m = MultisetDiff::new();
    for r in up {
        m.add_up(r);
    }
    for r in down {
        m.add_down(r);
    }
    m.finish()
}

fn bench_multiset(c: &mut Criterion) {
    let mut g = c.benchmark_group("multiset_diff");
    for (n, label) in SIZES {
        let rows = sb_rows(n);
        for pct in [0u64, 1] {
            let (up, down, expected) = drifted(&rows, pct);
            // A changed row is one missing plus one extra copy in a multiset.
            let changed = up.len() + down.len() - 2 * (rows.len() - expected);
            let got = multiset(up.clone(), down.clone()).len();
            assert_eq!(got, changed, "multiset {label} {pct}%");
            let bytes = value_bytes(&up) + value_bytes(&down);
            let case = format!("{label}/{pct}pct");
            let run = |b: &mut criterion::Bencher, (up, down): &(Vec<Row>, Vec<Row>)| {
                b.iter_batched(
                    || (up.clone(), down.clone()),
                    |(u, d)| multiset(u, d),
                    BatchSize::LargeInput,
                )
            };
            let input = (up, down);
            g.throughput(Throughput::Elements(n));
            g.bench_with_input(BenchmarkId::new("rows", &case), &input, run);
            g.throughput(Throughput::Bytes(bytes));
            g.bench_with_input(BenchmarkId::new("bytes", &case), &input, run);
        }
    }
    g.finish();
}

fn bench_render(c: &mut Criterion) {
    let target = TableRef::new("sbtest", "sbtest1");
    let columns = sbtest_columns();
    let table = FixTable {
        target: &target,
        columns: &columns,
        key: Some(vec![0]),
    };
    let mut g = c.benchmark_group("render_changes");
    for (n, label) in SIZES {
        let rows = sb_rows(n);
        let cases: [(&str, Vec<RowChange>); 2] = [
            (
                "replace",
                rows.iter()
                    .map(|r| RowChange::Missing { up: r.clone() })
                    .collect(),
            ),
            (
                "delete",
                rows.iter()
                    .map(|r| RowChange::Extra { down: r.clone() })
                    .collect(),
            ),
        ];
        for (kind, changes) in cases {
            let sql = render_changes(&table, &changes);
            let verb = if kind == "replace" {
                "REPLACE INTO"
            } else {
                "DELETE FROM"
            };
            assert_eq!(sql.matches(verb).count() as u64, n, "render {kind} {label}");
            let case = format!("{kind}/{label}");
            let run = |b: &mut criterion::Bencher, changes: &Vec<RowChange>| {
                b.iter(|| render_changes(&table, black_box(changes)))
            };
            g.throughput(Throughput::Elements(n));
            g.bench_with_input(BenchmarkId::new("rows", &case), &changes, run);
            g.throughput(Throughput::Bytes(sql.len() as u64));
            g.bench_with_input(BenchmarkId::new("bytes", &case), &changes, run);
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    // Command-line options (`--measurement-time`, `--sample-size`, …) still override these.
    config = config();
    targets = bench_row_hash, bench_diff_sorted, bench_multiset, bench_render
}
criterion_main!(benches);
