//! Rendering fix statements: `REPLACE`/`INSERT` for rows the downstream lacks or has
//! changed, `DELETE … LIMIT 1` for rows it has extra, `DELETE`s first (see the module docs
//! of [`crate::fixsql`] for the forms and why they match exactly one row).

use crate::diff::RowChange;
use crate::row::Value;
use crate::schema::{Column, TableRef, TypeClass};
use crate::sql::{ident_list, quote_ident, text_literal};

/// Longest value shown in a statement's comment, in characters.
const COMMENT_VALUE_CHARS: usize = 64;

/// What fix SQL needs to know about one table.
#[derive(Debug, Clone)]
pub struct FixTable<'a> {
    /// The downstream table the statements write to.
    pub target: &'a TableRef,
    /// The compared columns, in row order: value `i` of a row belongs to `columns[i]`.
    pub columns: &'a [Column],
    /// Positions of the PRIMARY/UNIQUE key columns in a row; `None` for a keyless table,
    /// whose rows are compared as a multiset.
    pub key: Option<Vec<usize>>,
}

impl FixTable<'_> {
    /// The key, if it is usable for every row of this table (non-empty, in range).
    fn usable_key(&self) -> Option<&[usize]> {
        self.key
            .as_deref()
            .filter(|k| !k.is_empty() && k.iter().all(|&i| i < self.columns.len()))
    }
}

/// One statement, without its terminating `;`, and the comment shown before it in files.
pub(super) struct Statement {
    pub(super) comment: Option<String>,
    pub(super) sql: String,
}

/// The fix statements for `changes`, as file text: one statement per line, `DELETE`s first,
/// each preceded by a one-line comment saying what it does to which row.
pub fn render_changes(table: &FixTable, changes: &[RowChange]) -> String {
    render(plan(table, changes))
}

/// The statements that undo [`render_changes`] applied to the downstream it was computed
/// from: extra rows re-inserted, changed rows put back, missing rows deleted again. Same
/// order rule (`DELETE`s first), each statement with its comment.
pub fn render_undo(table: &FixTable, changes: &[RowChange]) -> String {
    render(undo_plan(table, changes))
}

/// [`render_undo`] as two texts, its `DELETE`s and its writes, so a file joined from many
/// ranges can put every `DELETE` before every write (see [`crate::fixsql::undo_part`]).
pub fn render_undo_split(table: &FixTable, changes: &[RowChange]) -> (String, String) {
    let (deletes, writes) = undo_statements(table, changes);
    (render(deletes), render(writes))
}

fn render(statements: Vec<Statement>) -> String {
    let mut out = String::new();
    for st in statements {
        if let Some(c) = st.comment {
            out.push_str(&c);
            out.push('\n');
        }
        out.push_str(&st.sql);
        out.push_str(";\n");
    }
    out
}

/// Build the statements: deletes first (in input order), then writes (in input order).
pub(super) fn plan(table: &FixTable, changes: &[RowChange]) -> Vec<Statement> {
    let keyed = table.usable_key().is_some();
    let mut deletes = Vec::new();
    let mut writes = Vec::new();
    for change in changes {
        match change {
            RowChange::Missing { up } => writes.push(Statement {
                comment: Some(row_comment("missing row, inserted", table, up, false)),
                sql: write_row(table, up, keyed),
            }),
            RowChange::Extra { down } => deletes.push(Statement {
                comment: Some(row_comment("extra row, deleted", table, down, true)),
                sql: delete_row(table, down),
            }),
            RowChange::Changed { up, down } => {
                // Without a key there is nothing to REPLACE on: remove the old copy, add the
                // new one.
                if !keyed {
                    deletes.push(Statement {
                        comment: Some(row_comment(
                            "changed row, old copy deleted",
                            table,
                            down,
                            true,
                        )),
                        sql: delete_row(table, down),
                    });
                }
                writes.push(Statement {
                    comment: Some(changed_comment(table.columns, up, down)),
                    sql: write_row(table, up, keyed),
                });
            }
        }
    }
    deletes.extend(writes);
    deletes
}

/// The undo statements, deletes first.
fn undo_plan(table: &FixTable, changes: &[RowChange]) -> Vec<Statement> {
    let (mut deletes, writes) = undo_statements(table, changes);
    deletes.extend(writes);
    deletes
}

/// The undo's deletes and writes (each in input order). A keyed row is written back with
/// `REPLACE`, so a row the fix wrote under an equal (case-insensitive) key is replaced.
fn undo_statements(table: &FixTable, changes: &[RowChange]) -> (Vec<Statement>, Vec<Statement>) {
    let keyed = table.usable_key().is_some();
    let mut deletes = Vec::new();
    let mut writes = Vec::new();
    for change in changes {
        match change {
            RowChange::Missing { up } => deletes.push(Statement {
                comment: Some(row_comment(
                    "undo: delete the row the fix inserted",
                    table,
                    up,
                    false,
                )),
                sql: delete_row(table, up),
            }),
            RowChange::Extra { down } => writes.push(Statement {
                comment: Some(row_comment(
                    "undo: re-insert the row the fix deleted",
                    table,
                    down,
                    true,
                )),
                sql: write_row(table, down, keyed),
            }),
            RowChange::Changed { up, down } => {
                if !keyed {
                    deletes.push(Statement {
                        comment: Some(row_comment(
                            "undo: delete the copy the fix inserted",
                            table,
                            up,
                            true,
                        )),
                        sql: delete_row(table, up),
                    });
                }
                let c = changed_comment(table.columns, down, up);
                writes.push(Statement {
                    comment: Some(c.replacen("/* changed:", "/* undo, changed back:", 1)),
                    sql: write_row(table, down, keyed),
                });
            }
        }
    }
    (deletes, writes)
}

/// `/* <what>: col = value, … */`: every column when `whole` (a row that is removed: what a
/// reviewer loses) or the table is keyless (its values are its identity), else the key
/// columns; values shortened, escaped for the comment.
fn row_comment(what: &str, table: &FixTable, row: &[Value], whole: bool) -> String {
    let shown: Vec<usize> = match table.usable_key() {
        Some(key) if !whole => key.iter().copied().filter(|&i| i < row.len()).collect(),
        _ => (0..table.columns.len().min(row.len())).collect(),
    };
    let parts: Vec<String> = shown
        .iter()
        .map(|&i| {
            let c = &table.columns[i];
            format!(
                "{} = {}",
                single_line(&quote_ident(&c.name)),
                shorten(&c.literal(row[i].as_deref()))
            )
        })
        .collect();
    format!(
        "/* {what}: {} */",
        escape_comment(&single_line(&parts.join(", ")))
    )
}

/// `REPLACE INTO` (keyed) or `INSERT INTO` (keyless, one more copy) of the writable columns.
fn write_row(table: &FixTable, row: &[Value], keyed: bool) -> String {
    let (names, values): (Vec<&str>, Vec<String>) = table
        .columns
        .iter()
        .zip(row)
        .filter(|(c, _)| c.writable())
        .map(|(c, v)| (c.name.as_str(), c.literal(v.as_deref())))
        .unzip();
    format!(
        "{} INTO {} ({}) VALUES ({})",
        if keyed { "REPLACE" } else { "INSERT" },
        table.target.quoted(),
        ident_list(names),
        values.join(", ")
    )
}

/// `DELETE … LIMIT 1` of one row: by key when the table has one, else by every writable
/// column matched exactly.
fn delete_row(table: &FixTable, row: &[Value]) -> String {
    let preds: Vec<String> = match table.usable_key() {
        Some(key) if key.iter().all(|&i| i < row.len()) => key
            .iter()
            .map(|&i| key_predicate(&table.columns[i], row[i].as_deref()))
            .collect(),
        _ => table
            .columns
            .iter()
            .zip(row)
            .filter(|(c, _)| c.writable())
            .map(|(c, v)| exact_predicate(c, v.as_deref()))
            .collect(),
    };
    // A table always has a writable column; should a row still yield no condition, delete
    // nothing rather than an arbitrary row.
    let cond = if preds.is_empty() {
        "1 = 0".to_string()
    } else {
        preds.join(" AND ")
    };
    format!("DELETE FROM {} WHERE {cond} LIMIT 1", table.target.quoted())
}

/// Equality on a key column, under the column's own collation (the one uniqueness uses, and
/// the index serves), and byte-exact for character strings (module docs).
fn key_predicate(col: &Column, value: Option<&[u8]>) -> String {
    let q = quote_ident(&col.name);
    match value {
        None => format!("{q} IS NULL"),
        Some(v) => match col.class {
            TypeClass::Float => float_predicate(col, &q, v),
            TypeClass::Json => exact_predicate(col, value),
            TypeClass::Text => format!(
                "{q} = {} AND {}",
                col.literal(Some(v)),
                exact_predicate(col, value)
            ),
            _ => format!("{q} = {}", col.literal(Some(v))),
        },
    }
}

/// A condition true exactly for rows whose value (text form) is `value`; see the module docs.
pub(super) fn exact_predicate(col: &Column, value: Option<&[u8]>) -> String {
    let q = quote_ident(&col.name);
    let Some(v) = value else {
        return format!("{q} IS NULL");
    };
    match col.class {
        TypeClass::Float => float_predicate(col, &q, v),
        TypeClass::Text => text_predicate(&q, v),
        TypeClass::Json if col.data_type.eq_ignore_ascii_case("json") => {
            text_predicate(&format!("CAST({q} AS CHAR CHARACTER SET utf8mb4)"), v)
        }
        TypeClass::Json => text_predicate(&q, v),
        _ => format!("{q} = {}", col.literal(Some(v))),
    }
}

/// FLOAT: the value widened to double, as it was read, compared exactly.
fn float_predicate(col: &Column, q: &str, v: &[u8]) -> String {
    format!("CAST({q} AS DOUBLE) = {}", col.literal(Some(v)))
}

/// Byte-exact string equality: binary collation plus a length check against PAD SPACE.
fn text_predicate(expr: &str, v: &[u8]) -> String {
    let lit = text_literal(v);
    match std::str::from_utf8(v) {
        Ok(s) => {
            let lit = if lit.starts_with('\'') {
                format!("_utf8mb4{lit}")
            } else {
                lit
            };
            format!(
                "({expr} = {lit} COLLATE utf8mb4_bin AND CHAR_LENGTH({expr}) = {})",
                s.chars().count()
            )
        }
        // `_binary X'…'`: already a byte comparison (and COLLATE is not allowed on it).
        Err(_) => format!("{expr} = {lit}"),
    }
}

/// `/* changed: col: old -> new, … */` for the differing columns (old = downstream).
pub(super) fn changed_comment(columns: &[Column], up: &[Value], down: &[Value]) -> String {
    let parts: Vec<String> = columns
        .iter()
        .zip(up.iter().zip(down))
        .filter(|(_, (u, d))| u != d)
        .map(|(c, (u, d))| {
            format!(
                "{}: {} -> {}{}",
                single_line(&c.name),
                shorten(&c.literal(d.as_deref())),
                shorten(&c.literal(u.as_deref())),
                if c.writable() { "" } else { " (generated)" }
            )
        })
        .collect();
    format!("/* changed: {} */", escape_comment(&parts.join(", ")))
}

/// Cut a rendered value to [`COMMENT_VALUE_CHARS`] characters, marking the cut with `…`.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(COMMENT_VALUE_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Make text safe inside `/* … */`: no `*/` can end the comment early and no `/*` can start
/// an executable (`/*!`) or hint (`/*+`) comment. Replacing `*/` first cannot create a new
/// `/*`-`*/` pair.
fn escape_comment(s: &str) -> String {
    s.replace("*/", "* /").replace("/*", "/ *")
}

/// Control characters (newlines) replaced, so text stays on its `--` comment line.
pub(super) fn single_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}
