//! Structure comparison of the two sides of a table. Pure.
//!
//! Every difference is reported; whether data can still be compared is decided separately
//! (the data check needs the chunk key on both sides, and compares the columns present on
//! both sides by name).

use super::model::{Column, ForeignKey, Index, TableSchema};
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
        let detail = type_detail(up, down)
            .map(|d| format!("; {d}"))
            .unwrap_or_default();
        diff(
            "type",
            up.column_type.clone(),
            format!("{}{detail}", down.column_type),
        );
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

/// The numbers in a type's parentheses (`decimal(10,2)` → 10, 2); ENUM/SET member lists give
/// none.
fn type_numbers(column_type: &str) -> Vec<u64> {
    let Some(open) = column_type.find('(') else {
        return Vec::new();
    };
    let rest = &column_type[open + 1..];
    rest[..rest.find(')').unwrap_or(rest.len())]
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

/// What differs between two column types of the same base type, in words: signedness,
/// length, precision, scale, fractional-second digits, display width or members.
fn type_detail(up: &Column, down: &Column) -> Option<String> {
    if !up.data_type.eq_ignore_ascii_case(&down.data_type) {
        return None;
    }
    let mut parts = Vec::new();
    if up.unsigned != down.unsigned {
        let sign = |c: &Column| if c.unsigned { "unsigned" } else { "signed" };
        parts.push(format!("{} vs {}", sign(up), sign(down)));
    }
    let (a, b) = (
        type_numbers(&up.column_type),
        type_numbers(&down.column_type),
    );
    let names: &[&str] = match up.data_type.as_str() {
        "decimal" | "numeric" | "float" | "double" => &["precision", "scale"],
        "char" | "varchar" | "binary" | "varbinary" | "bit" => &["length"],
        "datetime" | "timestamp" | "time" => &["fractional-second digits"],
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => {
            &["display width"]
        }
        "enum" | "set" => {
            parts.push("members".to_string());
            &[]
        }
        _ => &[],
    };
    // A temporal type without digits has 0 of them; other missing numbers are shown as such.
    let default = names
        .first()
        .is_some_and(|n| n.starts_with("fractional"))
        .then_some(0);
    for (i, name) in names.iter().enumerate() {
        let (x, y) = (a.get(i).copied().or(default), b.get(i).copied().or(default));
        if x != y {
            let show = |v: Option<u64>| v.map_or("none".to_string(), |v| v.to_string());
            parts.push(format!("{name} {} vs {}", show(x), show(y)));
        }
    }
    if up.column_type.contains("zerofill") != down.column_type.contains("zerofill") {
        parts.push("zerofill".to_string());
    }
    (!parts.is_empty()).then(|| parts.join(", "))
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
    compare_column_sets(up, down, &mut out);
    compare_indexes(up, down, &mut out);
    compare_foreign_keys(up, down, &mut out);
    if up.system_versioned != down.system_versioned {
        let v = |b: bool| {
            if b {
                "system-versioned"
            } else {
                "not versioned"
            }
        };
        out.push(StructureDiff(format!(
            "system versioning differs (upstream {}, downstream {})",
            v(up.system_versioned),
            v(down.system_versioned)
        )));
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

/// Columns on one side only, differences of columns on both, and their order: compared by
/// name (case-insensitively), since the data check pairs columns by name too.
fn compare_column_sets(up: &TableSchema, down: &TableSchema, out: &mut Vec<StructureDiff>) {
    for uc in &up.columns {
        match down.column(&uc.name) {
            None => out.push(StructureDiff(format!(
                "column `{}` exists only upstream",
                uc.name
            ))),
            Some(dc) => compare_columns(uc, dc, out),
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
}

/// `primary key (a, b)`: an index as shown when its two sides differ.
fn describe_index(i: &Index) -> String {
    format!("{} ({})", index_kind(i), i.columns.join(", "))
}

/// Indexes matched by what they are (kind and columns), so a renamed index is no
/// difference; one with the same name but another definition is reported as differing.
fn compare_indexes(up: &TableSchema, down: &TableSchema, out: &mut Vec<StructureDiff>) {
    for ui in &up.indexes {
        let sig = index_sig(ui);
        if down.indexes.iter().any(|di| index_sig(di) == sig) {
            continue;
        }
        match down
            .indexes
            .iter()
            .find(|di| di.name.eq_ignore_ascii_case(&ui.name))
        {
            Some(di) => out.push(StructureDiff(format!(
                "{} `{}` differs (upstream {}, downstream {})",
                index_kind(ui),
                ui.name,
                describe_index(ui),
                describe_index(di)
            ))),
            None => out.push(StructureDiff(format!(
                "{} `{}` ({}) exists only upstream",
                index_kind(ui),
                ui.name,
                ui.columns.join(", ")
            ))),
        }
    }
    for di in &down.indexes {
        let sig = index_sig(di);
        let named_upstream = up
            .indexes
            .iter()
            .any(|ui| ui.name.eq_ignore_ascii_case(&di.name));
        if !named_upstream && !up.indexes.iter().any(|ui| index_sig(ui) == sig) {
            out.push(StructureDiff(format!(
                "{} `{}` ({}) exists only downstream",
                index_kind(di),
                di.name,
                di.columns.join(", ")
            )));
        }
    }
}

/// Columns, referenced schema, table and columns, update and delete rules.
type FkSig = (Vec<String>, String, String, Vec<String>, String, String);

/// What a foreign key is, for matching across sides (names case-folded). A reference into
/// the table's own schema is compared as such: the two sides' schemas may have different
/// names (routes).
fn fk_sig(fk: &ForeignKey, own_schema: &str) -> FkSig {
    let ref_schema = if fk.ref_schema.eq_ignore_ascii_case(own_schema) {
        String::new()
    } else {
        fk.ref_schema.to_ascii_lowercase()
    };
    (
        fk.columns
            .iter()
            .map(|c| c.to_ascii_lowercase())
            .collect::<Vec<_>>(),
        ref_schema,
        fk.ref_table.to_ascii_lowercase(),
        fk.ref_columns
            .iter()
            .map(|c| c.to_ascii_lowercase())
            .collect::<Vec<_>>(),
        fk.on_update.clone(),
        fk.on_delete.clone(),
    )
}

/// `(a) -> s.t (id) ON UPDATE … ON DELETE …`: a foreign key as shown in reports.
fn describe_fk(fk: &ForeignKey) -> String {
    format!(
        "({}) -> {}.{} ({}) ON UPDATE {} ON DELETE {}",
        fk.columns.join(", "),
        fk.ref_schema,
        fk.ref_table,
        fk.ref_columns.join(", "),
        fk.on_update,
        fk.on_delete
    )
}

/// Foreign keys matched by what they are ([`fk_sig`]), like indexes: a renamed one is no
/// difference, a same-named one with another definition differs.
fn compare_foreign_keys(up: &TableSchema, down: &TableSchema, out: &mut Vec<StructureDiff>) {
    let (us, ds) = (&up.table.schema, &down.table.schema);
    for fk in &up.foreign_keys {
        let sig = fk_sig(fk, us);
        if down.foreign_keys.iter().any(|d| fk_sig(d, ds) == sig) {
            continue;
        }
        match down
            .foreign_keys
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(&fk.name))
        {
            Some(d) => out.push(StructureDiff(format!(
                "foreign key `{}` differs (upstream {}, downstream {})",
                fk.name,
                describe_fk(fk),
                describe_fk(d)
            ))),
            None => out.push(StructureDiff(format!(
                "foreign key `{}` {} exists only upstream",
                fk.name,
                describe_fk(fk)
            ))),
        }
    }
    for fk in &down.foreign_keys {
        let sig = fk_sig(fk, ds);
        let named_upstream = up
            .foreign_keys
            .iter()
            .any(|u| u.name.eq_ignore_ascii_case(&fk.name));
        if !named_upstream && !up.foreign_keys.iter().any(|u| fk_sig(u, us) == sig) {
            out.push(StructureDiff(format!(
                "foreign key `{}` {} exists only downstream",
                fk.name,
                describe_fk(fk)
            )));
        }
    }
}
