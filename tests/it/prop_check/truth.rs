//! The ground truth kept in Rust, and the seed and drift SQL of a case.

use super::gen::{Case, KAction, KRow, KUpdate, MRow};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use syncgate::report::TableReport;

// ---------------------------------------------------------------------------------------
// Ground truth

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) missing: u64,
    pub(super) extra: u64,
    pub(super) changed: u64,
}

impl Counts {
    pub(super) fn of(t: &TableReport) -> Counts {
        Counts {
            missing: t.rows_missing,
            extra: t.rows_extra,
            changed: t.rows_changed,
        }
    }

    pub(super) fn is_zero(&self) -> bool {
        self.missing == 0 && self.extra == 0 && self.changed == 0
    }
}

pub(super) struct Truth {
    pub(super) k: Counts,
    pub(super) m: Counts,
    /// Downstream contents after the drift.
    pub(super) down_k: BTreeMap<i32, KRow>,
    pub(super) down_m: Vec<MRow>,
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

pub(super) fn truth(c: &Case) -> Truth {
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
pub(super) fn seed_sql(c: &Case) -> String {
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
pub(super) fn drift_sql(c: &Case) -> String {
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
