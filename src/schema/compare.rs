//! Structure comparison of the two sides of a table. Pure.
//!
//! Every difference is reported; whether data can still be compared is decided separately
//! (the data check needs the chunk key on both sides, and compares the columns present on
//! both sides by name).

use super::model::{Column, Index, TableSchema};
use std::fmt;

/// One structure difference, rendered as a line for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructureDiff(pub String);

impl fmt::Display for StructureDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn show(v: &Option<String>) -> String {
    v.as_deref()
        .map(|s| format!("'{s}'"))
        .unwrap_or_else(|| "NULL".into())
}

fn compare_columns(up: &Column, down: &Column, out: &mut Vec<StructureDiff>) {
    let name = &up.name;
    let mut diff = |what: &str, a: String, b: String| {
        out.push(StructureDiff(format!(
            "column `{name}`: {what} differs (upstream {a}, downstream {b})"
        )))
    };
    if up.name != down.name {
        diff("name case", up.name.clone(), down.name.clone());
    }
    if up.column_type != down.column_type {
        diff("type", up.column_type.clone(), down.column_type.clone());
    }
    if up.nullable != down.nullable {
        let n = |c: &Column| if c.nullable { "NULL" } else { "NOT NULL" }.to_string();
        diff("nullability", n(up), n(down));
    }
    if up.default != down.default {
        diff("default", show(&up.default), show(&down.default));
    }
    if up.charset != down.charset {
        diff("charset", show(&up.charset), show(&down.charset));
    }
    if up.collation != down.collation {
        diff("collation", show(&up.collation), show(&down.collation));
    }
    let gen = |c: &Column| match &c.generated {
        None => "not generated".to_string(),
        Some(g) => format!(
            "{} AS ({})",
            if g.stored { "STORED" } else { "VIRTUAL" },
            g.expression
        ),
    };
    if gen(up) != gen(down) {
        diff("generation", gen(up), gen(down));
    }
    if up.invisible != down.invisible {
        diff(
            "visibility",
            up.invisible.to_string(),
            down.invisible.to_string(),
        );
    }
}

fn index_kind(i: &Index) -> &'static str {
    if i.primary {
        "primary key"
    } else if i.unique {
        "unique key"
    } else {
        "index"
    }
}

fn index_sig(i: &Index) -> (bool, bool, Vec<String>) {
    (
        i.primary,
        i.unique,
        i.columns.iter().map(|c| c.to_ascii_lowercase()).collect(),
    )
}

/// All structure differences between `up` and `down` (empty = equal structure).
pub fn compare_structure(up: &TableSchema, down: &TableSchema) -> Vec<StructureDiff> {
    let mut out = Vec::new();
    for uc in &up.columns {
        match down.column(&uc.name) {
            None => out.push(StructureDiff(format!(
                "column `{}` exists only upstream",
                uc.name
            ))),
            Some(dc) => compare_columns(uc, dc, &mut out),
        }
    }
    for dc in &down.columns {
        if up.column(&dc.name).is_none() {
            out.push(StructureDiff(format!(
                "column `{}` exists only downstream",
                dc.name
            )));
        }
    }
    let order = |s: &TableSchema| {
        s.columns
            .iter()
            .map(|c| c.name.to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    let (uo, dord) = (order(up), order(down));
    let common_u: Vec<_> = uo.iter().filter(|n| dord.contains(n)).collect();
    let common_d: Vec<_> = dord.iter().filter(|n| uo.contains(n)).collect();
    if common_u != common_d {
        out.push(StructureDiff("column order differs".into()));
    }

    for ui in &up.indexes {
        let sig = index_sig(ui);
        if !down.indexes.iter().any(|di| index_sig(di) == sig) {
            out.push(StructureDiff(format!(
                "{} `{}` ({}) exists only upstream",
                index_kind(ui),
                ui.name,
                ui.columns.join(", ")
            )));
        }
    }
    for di in &down.indexes {
        let sig = index_sig(di);
        if !up.indexes.iter().any(|ui| index_sig(ui) == sig) {
            out.push(StructureDiff(format!(
                "{} `{}` ({}) exists only downstream",
                index_kind(di),
                di.name,
                di.columns.join(", ")
            )));
        }
    }

    let fk_sig = |fk: &super::model::ForeignKey| {
        (
            fk.columns
                .iter()
                .map(|c| c.to_ascii_lowercase())
                .collect::<Vec<_>>(),
            fk.ref_schema.to_ascii_lowercase(),
            fk.ref_table.to_ascii_lowercase(),
            fk.ref_columns
                .iter()
                .map(|c| c.to_ascii_lowercase())
                .collect::<Vec<_>>(),
            fk.on_update.clone(),
            fk.on_delete.clone(),
        )
    };
    for fk in &up.foreign_keys {
        if !down.foreign_keys.iter().any(|d| fk_sig(d) == fk_sig(fk)) {
            out.push(StructureDiff(format!(
                "foreign key `{}` ({}) -> {}.{} exists only upstream",
                fk.name,
                fk.columns.join(", "),
                fk.ref_schema,
                fk.ref_table
            )));
        }
    }
    for fk in &down.foreign_keys {
        if !up.foreign_keys.iter().any(|u| fk_sig(u) == fk_sig(fk)) {
            out.push(StructureDiff(format!(
                "foreign key `{}` ({}) -> {}.{} exists only downstream",
                fk.name,
                fk.columns.join(", "),
                fk.ref_schema,
                fk.ref_table
            )));
        }
    }
    if up.collation != down.collation {
        out.push(StructureDiff(format!(
            "table collation differs (upstream {}, downstream {})",
            show(&up.collation),
            show(&down.collation)
        )));
    }
    out
}
