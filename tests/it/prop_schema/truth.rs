//! Seed and drift SQL, the rows read back from a server, and the ground truth computed
//! from them.

use super::gen::{col_name, hex, Case, Mut, Schema, Ty};
use crate::support::TestDb;
use mysql_async::{Row, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use syncgate::report::TableReport;

// ---------------------------------------------------------------------------------------
// SQL and read-back

pub(super) fn seed_sql(c: &Case) -> String {
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

pub(super) type Text = Option<Vec<u8>>;

/// One row as read back.
#[derive(Debug, Clone)]
pub(super) struct ReadRow {
    /// Key identity (empty for keyless tables).
    pub(super) key: Vec<Text>,
    /// Compared text of every column.
    pub(super) text: Vec<Text>,
}

fn text_of(v: Value) -> Text {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(b),
        other => panic!("unexpected value over the text protocol: {other:?}"),
    }
}

pub(super) async fn read_back(db: &TestDb, s: &Schema) -> Vec<ReadRow> {
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
pub(super) fn drift_sql(c: &Case, down: &[ReadRow]) -> String {
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
pub(super) struct Counts {
    missing: u64,
    extra: u64,
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

pub(super) fn truth(keyed: bool, up: &[ReadRow], down: &[ReadRow]) -> Counts {
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

pub(super) fn texts(rows: &[ReadRow]) -> Vec<&Vec<Text>> {
    let mut v: Vec<&Vec<Text>> = rows.iter().map(|r| &r.text).collect();
    v.sort();
    v
}
