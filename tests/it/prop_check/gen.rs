//! The generators: rows of `k` and `m` from small domains full of encoding traps, the
//! downstream drift, and whole cases.

use proptest::prelude::*;
use proptest::sample::select;
use std::collections::BTreeMap;

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
pub(super) struct KRow {
    pub(super) a: Option<i32>,
    pub(super) s: Option<String>,
    /// Hundredths.
    pub(super) d: Option<i64>,
    pub(super) b: Option<Vec<u8>>,
}

/// An update of one row of `k`.
#[derive(Debug, Clone)]
pub(super) enum KUpdate {
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
pub(super) enum KAction {
    Keep,
    Delete,
    Update(KUpdate),
}

pub(super) type MRow = (Option<i32>, Option<String>);

#[derive(Debug, Clone)]
pub(super) struct Case {
    /// Upstream (and initial downstream) rows of `k`, by id in 1..=300.
    pub(super) k: BTreeMap<i32, KRow>,
    /// Zipped with `k` in id order; ids beyond the list are kept.
    pub(super) k_actions: Vec<KAction>,
    /// Rows inserted downstream only, ids in 301..=400.
    pub(super) k_inserts: BTreeMap<i32, KRow>,
    /// Upstream (and initial downstream) rows of `m`.
    pub(super) m: Vec<MRow>,
    /// Zipped with `m`: delete one copy of that row downstream.
    pub(super) m_deletes: Vec<bool>,
    /// Rows inserted downstream only.
    pub(super) m_inserts: Vec<MRow>,
    /// `chunk-size` for both tables; `None` = default.
    pub(super) chunk_size: Option<u64>,
    pub(super) threads: usize,
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

pub(super) fn case() -> impl Strategy<Value = Case> {
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
