//! Fix SQL: the statements that make the downstream rows equal to the upstream rows, and
//! the per-table `.sql` files that hold them. Pure and synchronous (plain file I/O only).
//!
//! # Statement forms
//!
//! | change | keyed table | keyless table |
//! |---|---|---|
//! | missing | `REPLACE INTO t (…) VALUES (…)` | `INSERT INTO t (…) VALUES (…)` |
//! | extra | `DELETE FROM t WHERE <key> LIMIT 1` | `DELETE FROM t WHERE <every column> LIMIT 1` |
//! | changed | `/* changed: … */` + `REPLACE` | `DELETE` of the old copy + `INSERT` of the new |
//!
//! Generated columns are never written (the server computes them) and never matched in a
//! keyless `DELETE`. Statements name the downstream table. In a keyless table each
//! [`RowChange`] stands for one copy of a row: `INSERT` adds one copy (`REPLACE` has no key
//! to replace on) and `DELETE … LIMIT 1` removes one.
//!
//! # Matching a row exactly (keyless `DELETE`)
//!
//! Values are the server's text form, so the `WHERE` clause must select rows whose text form
//! is exactly that value, one column at a time:
//!
//! - NULL: `` `c` IS NULL ``.
//! - Strings (and MariaDB's JSON, a LONGTEXT): `` (`c` = _utf8mb4'v' COLLATE utf8mb4_bin AND
//!   CHAR_LENGTH(`c`) = n) ``. A plain `=` would use the column's collation, where `'abc'`
//!   equals `'ABC'` and (PAD SPACE) `'a'` equals `'a '`, and could delete the wrong copy.
//!   The binary collation removes case/accent folding, the length check the padding. The
//!   introducer makes the literal independent of the connection charset.
//! - Native JSON (MySQL, TiDB): the same on `CAST(`c` AS CHAR CHARACTER SET utf8mb4)`, the
//!   text the server sent; JSON `=` would equate `1` and `1.0`.
//! - FLOAT: `` CAST(`c` AS DOUBLE) = v ``. FLOAT values are read as `CAST(c AS DOUBLE)`
//!   (the plan does so: the server prints FLOAT itself with only ~6 significant digits), and
//!   those 17 digits parse back to exactly the stored float widened to double. (Comparing
//!   the FLOAT column itself with a short literal would not do: `f = 0.1` is false for a
//!   stored 0.1.) Writing the same text into a FLOAT column restores the float exactly.
//! - Everything else (numbers, DOUBLE, temporal, ENUM/SET, binary, BIT read as an unsigned
//!   integer): `` `c` = v ``; the literal re-creates the value exactly (DOUBLE text
//!   round-trips; binary compares bytes).
//!
//! A keyed `DELETE` matches the key columns with plain `=` under their own collation (that is
//! what the key's uniqueness is defined by, and it can use the index) and, for character
//! strings, also byte-exactly with the string form above: it deletes exactly the row the
//! check saw as extra, never a row that only equals it under the collation. (When keys are
//! compared as bytes because the two sides' collations differ, an extra `'ABC'` and a
//! missing `'abc'` can fall into different ranges, and the `REPLACE` of `'abc'` may run
//! first, replacing `'ABC'` under a case-insensitive downstream key; a collation-only
//! `DELETE … 'ABC'` would then delete the upstream's row.) FLOAT keys use the FLOAT form
//! above.
//!
//! # Order
//!
//! [`render_changes`] emits all `DELETE`s before any `REPLACE`/`INSERT`: with a
//! case-insensitive key, an extra `'ABC'` and a missing `'abc'` are the same key, and deleting
//! after writing would delete the upstream row.

use crate::diff::RowChange;
use crate::error::{Error, Result};
use crate::row::Value;
use crate::schema::{Column, TableRef, TypeClass};
use crate::sql::{ident_list, literal, quote_ident, text_literal};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Session settings the statements rely on. The fix file sets them itself; a connection that
/// applies [`statements_for_apply`] should run these first.
pub const APPLY_SESSION_SETTINGS: [&str; 3] = [
    "SET NAMES utf8mb4",
    "SET time_zone = '+00:00'",
    "SET SESSION foreign_key_checks = 0",
];

/// Longest value shown in a `/* changed: … */` comment, in characters.
const COMMENT_VALUE_CHARS: usize = 64;

/// Longest file name stem (before `.sql`); longer names are cut and made unique by a hash.
/// Leaves room under the usual 255-byte limit for suffixes other tools add.
const MAX_FILE_STEM: usize = 200;

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

/// Where the data came from; printed in the file header so a fix file can be judged later.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixHeader {
    /// Upstream source (name, address).
    pub upstream: String,
    /// Downstream source (name, address).
    pub downstream: String,
    /// The point the upstream was read at (snapshot, GTID set, or "live").
    pub upstream_point: String,
    /// The point the downstream was read at.
    pub downstream_point: String,
}

/// One statement, without its terminating `;`, and the comment shown before it in files.
struct Statement {
    comment: Option<String>,
    sql: String,
}

/// The fix statements for `changes`, as file text: one statement per line, `DELETE`s first,
/// changed rows preceded by a `/* changed: … */` comment.
pub fn render_changes(table: &FixTable, changes: &[RowChange]) -> String {
    let mut out = String::new();
    for st in plan(table, changes) {
        if let Some(c) = st.comment {
            out.push_str(&c);
            out.push('\n');
        }
        out.push_str(&st.sql);
        out.push_str(";\n");
    }
    out
}

/// The same statements as [`render_changes`], in the same order, one per element, without
/// comments or `;`, for executing over a connection (see [`APPLY_SESSION_SETTINGS`]).
pub fn statements_for_apply(table: &FixTable, changes: &[RowChange]) -> Vec<String> {
    plan(table, changes).into_iter().map(|s| s.sql).collect()
}

/// Build the statements: deletes first (in input order), then writes (in input order).
fn plan(table: &FixTable, changes: &[RowChange]) -> Vec<Statement> {
    let keyed = table.usable_key().is_some();
    let mut deletes = Vec::new();
    let mut writes = Vec::new();
    for change in changes {
        match change {
            RowChange::Missing { up } => writes.push(Statement {
                comment: None,
                sql: write_row(table, up, keyed),
            }),
            RowChange::Extra { down } => deletes.push(Statement {
                comment: None,
                sql: delete_row(table, down),
            }),
            RowChange::Changed { up, down } => {
                // Without a key there is nothing to REPLACE on: remove the old copy, add the
                // new one.
                if !keyed {
                    deletes.push(Statement {
                        comment: None,
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

/// `REPLACE INTO` (keyed) or `INSERT INTO` (keyless, one more copy) of the writable columns.
fn write_row(table: &FixTable, row: &[Value], keyed: bool) -> String {
    let (names, values): (Vec<&str>, Vec<String>) = table
        .columns
        .iter()
        .zip(row)
        .filter(|(c, _)| c.writable())
        .map(|(c, v)| (c.name.as_str(), literal(c, v.as_deref())))
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
                literal(col, Some(v)),
                exact_predicate(col, value)
            ),
            _ => format!("{q} = {}", literal(col, Some(v))),
        },
    }
}

/// A condition true exactly for rows whose value (text form) is `value`; see the module docs.
fn exact_predicate(col: &Column, value: Option<&[u8]>) -> String {
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
        _ => format!("{q} = {}", literal(col, Some(v))),
    }
}

/// FLOAT: the value widened to double, as it was read, compared exactly.
fn float_predicate(col: &Column, q: &str, v: &[u8]) -> String {
    format!("CAST({q} AS DOUBLE) = {}", literal(col, Some(v)))
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
fn changed_comment(columns: &[Column], up: &[Value], down: &[Value]) -> String {
    let parts: Vec<String> = columns
        .iter()
        .zip(up.iter().zip(down))
        .filter(|(_, (u, d))| u != d)
        .map(|(c, (u, d))| {
            format!(
                "{}: {} -> {}{}",
                single_line(&c.name),
                shorten(&literal(c, d.as_deref())),
                shorten(&literal(c, u.as_deref())),
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
fn single_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// `<schema>.<table>.sql`, each name percent-encoded outside `[A-Za-z0-9_-]` (so `.`
/// separates unambiguously and any identifier is a valid file name). Names too long for a
/// file system are cut and suffixed with `~` and a hash of the full names.
pub fn file_name(table: &TableRef) -> String {
    let mut stem = format!(
        "{}.{}",
        percent_encode(&table.schema),
        percent_encode(&table.table)
    );
    if stem.len() > MAX_FILE_STEM {
        let mut cut = MAX_FILE_STEM - 17;
        // Do not split a `%XX` triplet.
        if let Some(p) = stem[cut - 2..cut].find('%') {
            cut = cut - 2 + p;
        }
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(table.schema.as_bytes());
        h.update(&[0]);
        h.update(table.table.as_bytes());
        stem.truncate(cut);
        stem.push_str(&format!("~{:016x}", h.digest()));
    }
    stem.push_str(".sql");
    stem
}

fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Writes one table's fix SQL file: header and session settings, then one block per
/// differing range, then `COMMIT` and the restored settings. Output is buffered; the file is
/// opened by [`FixSqlWriter::create`], so create it only once a difference is known. A file
/// whose writer was dropped without [`FixSqlWriter::finish`] has no `COMMIT` and changes
/// nothing when applied.
#[derive(Debug)]
pub struct FixSqlWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl FixSqlWriter {
    /// Create (truncate) `dir/<file_name(table)>`, creating `dir` if needed.
    pub fn create(dir: &Path, table: &TableRef, header: &FixHeader) -> Result<FixSqlWriter> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Output {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(file_name(table));
        let file = File::create(&path).map_err(|source| Error::Output {
            path: path.clone(),
            source,
        })?;
        let mut w = FixSqlWriter {
            path,
            out: BufWriter::with_capacity(64 * 1024, file),
        };
        let text = header_text(table, header, &utc_now());
        w.write(text.as_bytes())?;
        Ok(w)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Add one range's statements (as from [`render_changes`]) under a `-- range:` line.
    pub fn append_chunk(&mut self, range_description: &str, statements: &str) -> Result<()> {
        self.write(chunk_block(range_description, statements).as_bytes())
    }

    /// Add the contents of a part file: blocks rendered by [`chunk_block`] and saved while
    /// the table was being checked (one part per chunk, joined in key order at the end).
    pub fn append_part(&mut self, part: &Path) -> Result<()> {
        let mut f = File::open(part).map_err(|source| Error::Output {
            path: part.to_path_buf(),
            source,
        })?;
        std::io::copy(&mut f, &mut self.out).map_err(|source| Error::Output {
            path: self.path.clone(),
            source,
        })?;
        Ok(())
    }

    /// Write the footer, flush, and return the file's path.
    pub fn finish(mut self) -> Result<PathBuf> {
        self.write(FOOTER.as_bytes())?;
        let FixSqlWriter { path, out } = self;
        match out.into_inner() {
            Ok(_) => Ok(path),
            Err(e) => Err(Error::Output {
                path,
                source: e.into_error(),
            }),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|source| Error::Output {
            path: self.path.clone(),
            source,
        })
    }
}

/// One range's statements (as from [`render_changes`]) under a `-- range:` line: the text
/// [`FixSqlWriter::append_chunk`] adds to a file.
pub fn chunk_block(range_description: &str, statements: &str) -> String {
    let mut text = format!("\n-- range: {}\n", single_line(range_description));
    text.push_str(statements);
    if !statements.is_empty() && !statements.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// Saves the session settings the file changes, so `source`-ing it in an interactive
/// session leaves that session as it was.
const SAVE_SETTINGS: &str = "SET @syncgate_fk = @@SESSION.foreign_key_checks, \
@syncgate_tz = @@SESSION.time_zone, \
@syncgate_cs_client = @@SESSION.character_set_client, \
@syncgate_cs_results = @@SESSION.character_set_results, \
@syncgate_coll_conn = @@SESSION.collation_connection;\n";

const FOOTER: &str = "\nCOMMIT;\n\
SET SESSION foreign_key_checks = @syncgate_fk;\n\
SET time_zone = @syncgate_tz;\n\
SET character_set_client = @syncgate_cs_client, \
character_set_results = @syncgate_cs_results, \
collation_connection = @syncgate_coll_conn;\n\
-- end of fix SQL\n";

fn header_text(table: &TableRef, h: &FixHeader, time: &str) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "-- Fix SQL generated by syncgate {} at {time}.\n",
        env!("CARGO_PKG_VERSION")
    ));
    s.push_str(&format!(
        "-- Table (downstream name): {}\n",
        single_line(&table.quoted())
    ));
    s.push_str(&format!(
        "-- Upstream:   {} -- read at: {}\n",
        single_line(&h.upstream),
        single_line(&h.upstream_point)
    ));
    s.push_str(&format!(
        "-- Downstream: {} -- read at: {}\n",
        single_line(&h.downstream),
        single_line(&h.downstream_point)
    ));
    s.push_str(
        "--
-- Apply to the DOWNSTREAM only, e.g.: mariadb -h HOST -u USER -p < FILE (or mysql).
-- It writes the upstream rows as they were read: rows changed since the check are
-- overwritten, so re-check first if either side is being written to.
--
-- Session settings (saved first and restored at the end):
--   SET NAMES utf8mb4          the literals are utf8mb4 text.
--   SET time_zone = '+00:00'   TIMESTAMP values were read in UTC.
--   foreign_key_checks = 0     REPLACE is a delete plus an insert: with checks on it would
--                              fail on, or CASCADE to, child rows, and the files of related
--                              tables would have to run in dependency order. The rows
--                              written are the upstream's, so once every fix file is
--                              applied the references are as consistent as upstream.
-- All statements run in one transaction: when a statement fails the client stops (unless
-- run with --force) and the transaction is rolled back on disconnect; a truncated file has
-- no COMMIT. Within each range, DELETEs come before REPLACE/INSERT.
",
    );
    s.push_str(SAVE_SETTINGS);
    for setting in APPLY_SESSION_SETTINGS {
        s.push_str(setting);
        s.push_str(";\n");
    }
    s.push_str("START TRANSACTION;\n");
    s
}

/// Current UTC time as `YYYY-MM-DD HH:MM:SS UTC`, from the system clock.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_utc(secs)
}

/// Format Unix seconds as UTC (days-to-civil conversion, proleptic Gregorian).
fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Generated;

    fn col(name: &str, class: TypeClass) -> Column {
        Column {
            name: name.into(),
            ordinal: 1,
            data_type: match class {
                TypeClass::Json => "json".into(),
                TypeClass::Float => "float".into(),
                _ => "x".into(),
            },
            column_type: String::new(),
            class,
            nullable: true,
            unsigned: false,
            charset: None,
            collation: None,
            default: None,
            generated: None,
            invisible: false,
        }
    }

    fn gen(name: &str, class: TypeClass) -> Column {
        Column {
            generated: Some(Generated {
                expression: "`id` + 1".into(),
                stored: false,
            }),
            ..col(name, class)
        }
    }

    fn v(s: &str) -> Value {
        Some(s.as_bytes().to_vec())
    }

    fn target() -> TableRef {
        TableRef::new("s", "t")
    }

    #[test]
    fn keyed_statements() {
        let t = target();
        let cols = [
            col("id", TypeClass::Int),
            col("name", TypeClass::Text),
            gen("g", TypeClass::Int),
            col("b", TypeClass::Binary),
        ];
        let table = FixTable {
            target: &t,
            columns: &cols,
            key: Some(vec![0]),
        };
        let changes = [
            RowChange::Missing {
                up: vec![v("1"), v("it's"), v("2"), Some(vec![0, 1])],
            },
            RowChange::Changed {
                up: vec![v("2"), v("new"), v("3"), Some(vec![])],
                down: vec![v("2"), v("old"), v("3"), Some(vec![])],
            },
            RowChange::Extra {
                down: vec![v("3"), None, v("4"), None],
            },
        ];
        assert_eq!(
            render_changes(&table, &changes),
            "DELETE FROM `s`.`t` WHERE `id` = 3 LIMIT 1;\n\
             REPLACE INTO `s`.`t` (`id`, `name`, `b`) VALUES (1, 'it''s', X'0001');\n\
             /* changed: name: 'old' -> 'new' */\n\
             REPLACE INTO `s`.`t` (`id`, `name`, `b`) VALUES (2, 'new', X'');\n"
        );
        assert_eq!(
            statements_for_apply(&table, &changes),
            vec![
                "DELETE FROM `s`.`t` WHERE `id` = 3 LIMIT 1",
                "REPLACE INTO `s`.`t` (`id`, `name`, `b`) VALUES (1, 'it''s', X'0001')",
                "REPLACE INTO `s`.`t` (`id`, `name`, `b`) VALUES (2, 'new', X'')",
            ]
        );
    }

    #[test]
    fn composite_key_delete() {
        let t = target();
        let cols = [
            col("a", TypeClass::Text),
            col("v", TypeClass::Int),
            col("d", TypeClass::DateTime),
            col("f", TypeClass::Float),
        ];
        let table = FixTable {
            target: &t,
            columns: &cols,
            key: Some(vec![2, 0, 3]),
        };
        let down = vec![
            v("ABC"),
            v("1"),
            v("2024-01-02 03:04:05.5"),
            v("0.10000000149011612"),
        ];
        assert_eq!(
            statements_for_apply(&table, &[RowChange::Extra { down }]),
            vec![
                "DELETE FROM `s`.`t` WHERE `d` = '2024-01-02 03:04:05.5' AND `a` = 'ABC' \
                 AND (`a` = _utf8mb4'ABC' COLLATE utf8mb4_bin AND CHAR_LENGTH(`a`) = 3) \
                 AND CAST(`f` AS DOUBLE) = 0.10000000149011612 LIMIT 1"
            ]
        );
    }

    #[test]
    fn keyless_statements_match_the_exact_row() {
        let t = target();
        let mut maria_json = col("mj", TypeClass::Json);
        maria_json.data_type = "longtext".into();
        let cols = [
            col("i", TypeClass::Int),
            col("s", TypeClass::Text),
            col("f", TypeClass::Float),
            col("d", TypeClass::Double),
            col("j", TypeClass::Json),
            maria_json,
            gen("g", TypeClass::Int),
            col("n", TypeClass::Decimal),
            col("e", TypeClass::Enum),
        ];
        let table = FixTable {
            target: &t,
            columns: &cols,
            key: None,
        };
        let row = vec![
            v("1"),
            v("a b "),
            v("1.0000000116860974e-7"),
            v("0.1"),
            v(r#"{"a": "x"}"#),
            v("[1]"),
            v("2"),
            None,
            v("x"),
        ];
        let out = statements_for_apply(
            &table,
            &[
                RowChange::Extra { down: row.clone() },
                RowChange::Missing { up: row },
            ],
        );
        assert_eq!(
            out,
            vec![
                "DELETE FROM `s`.`t` WHERE `i` = 1 \
                 AND (`s` = _utf8mb4'a b ' COLLATE utf8mb4_bin AND CHAR_LENGTH(`s`) = 4) \
                 AND CAST(`f` AS DOUBLE) = 1.0000000116860974e-7 \
                 AND `d` = 0.1 \
                 AND (CAST(`j` AS CHAR CHARACTER SET utf8mb4) = _utf8mb4'{\"a\": \"x\"}' \
                 COLLATE utf8mb4_bin AND CHAR_LENGTH(CAST(`j` AS CHAR CHARACTER SET utf8mb4)) = 10) \
                 AND (`mj` = _utf8mb4'[1]' COLLATE utf8mb4_bin AND CHAR_LENGTH(`mj`) = 3) \
                 AND `n` IS NULL AND `e` = 'x' LIMIT 1",
                "INSERT INTO `s`.`t` (`i`, `s`, `f`, `d`, `j`, `mj`, `n`, `e`) \
                 VALUES (1, 'a b ', 1.0000000116860974e-7, 0.1, '{\"a\": \"x\"}', '[1]', NULL, 'x')",
            ]
        );
    }

    #[test]
    fn keyless_text_predicates_handle_hex_forms() {
        let c = col("s", TypeClass::Text);
        assert_eq!(
            exact_predicate(&c, Some(b"a\nb")),
            "(`s` = _utf8mb4 X'610A62' COLLATE utf8mb4_bin AND CHAR_LENGTH(`s`) = 3)"
        );
        assert_eq!(exact_predicate(&c, Some(b"\xff")), "`s` = _binary X'FF'");
        assert_eq!(
            exact_predicate(&c, Some("😀".as_bytes())),
            "(`s` = _utf8mb4'😀' COLLATE utf8mb4_bin AND CHAR_LENGTH(`s`) = 1)"
        );
        let b = col("b", TypeClass::Binary);
        assert_eq!(exact_predicate(&b, Some(b"")), "`b` = X''");
        let bit = col("b", TypeClass::Bit);
        assert_eq!(
            exact_predicate(&bit, Some(b"18446744073709551615")),
            "`b` = 18446744073709551615"
        );
    }

    #[test]
    fn keyless_changed_row_is_delete_then_insert() {
        let t = target();
        let cols = [col("a", TypeClass::Int), col("b", TypeClass::Int)];
        let table = FixTable {
            target: &t,
            columns: &cols,
            key: Some(vec![]),
        };
        let out = render_changes(
            &table,
            &[RowChange::Changed {
                up: vec![v("1"), v("2")],
                down: vec![v("1"), v("3")],
            }],
        );
        assert_eq!(
            out,
            "DELETE FROM `s`.`t` WHERE `a` = 1 AND `b` = 3 LIMIT 1;\n\
             /* changed: b: 3 -> 2 */\n\
             INSERT INTO `s`.`t` (`a`, `b`) VALUES (1, 2);\n"
        );
    }

    #[test]
    fn keyless_copies_give_one_statement_each() {
        let t = target();
        let cols = [col("a", TypeClass::Int)];
        let table = FixTable {
            target: &t,
            columns: &cols,
            key: None,
        };
        let up = vec![v("7")];
        let out = statements_for_apply(
            &table,
            &[
                RowChange::Missing { up: up.clone() },
                RowChange::Missing { up },
            ],
        );
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|s| s.starts_with("INSERT INTO")));
    }

    #[test]
    fn deletes_come_before_writes() {
        // Case-insensitive key: 'ABC' extra downstream and 'abc' missing are the same key.
        let t = target();
        let cols = [col("k", TypeClass::Text), col("v", TypeClass::Int)];
        let table = FixTable {
            target: &t,
            columns: &cols,
            key: Some(vec![0]),
        };
        let changes = [
            RowChange::Missing {
                up: vec![v("abc"), v("1")],
            },
            RowChange::Changed {
                up: vec![v("b"), v("2")],
                down: vec![v("b"), v("3")],
            },
            RowChange::Extra {
                down: vec![v("ABC"), v("1")],
            },
            RowChange::Extra {
                down: vec![v("z"), v("1")],
            },
        ];
        let out = statements_for_apply(&table, &changes);
        let verbs: Vec<&str> = out.iter().map(|s| s.split(' ').next().unwrap()).collect();
        assert_eq!(verbs, ["DELETE", "DELETE", "REPLACE", "REPLACE"]);
        assert!(out[0].contains("'ABC'") && out[1].contains("'z'"));
        assert!(out[2].contains("'abc'") && out[3].contains("'b'"));
        let text = render_changes(&table, &changes);
        let last_delete = text.rfind("DELETE").unwrap();
        assert!(text.find("REPLACE").unwrap() > last_delete);
    }

    #[test]
    fn changed_comment_is_escaped_and_truncated() {
        let cols = [
            col("a*/b", TypeClass::Text),
            col("x\ny", TypeClass::Text),
            col("long", TypeClass::Text),
            gen("g", TypeClass::Int),
            col("same", TypeClass::Int),
        ];
        let long = "é".repeat(100);
        let up = vec![v("*/ DROP TABLE t; /*!"), v("1"), v(&long), v("1"), v("5")];
        let down = vec![v("/*"), None, v("x"), v("2"), v("5")];
        let c = changed_comment(&cols, &up, &down);
        assert_eq!(
            c,
            format!(
                "/* changed: a* /b: '/ *' -> '* / DROP TABLE t; / *!', x\u{FFFD}y: NULL -> '1', \
                 long: 'x' -> '{}…, g: 2 -> 1 (generated) */",
                "é".repeat(63)
            )
        );
        assert!(!c[2..c.len() - 2].contains("*/") && !c[2..].contains("/*"));
    }

    #[test]
    fn changed_comment_shows_binary_sides_correctly() {
        let cols = [col("b", TypeClass::Binary)];
        let c = changed_comment(&cols, &[Some(vec![1])], &[Some(vec![2])]);
        assert_eq!(c, "/* changed: b: X'02' -> X'01' */");
    }

    proptest::proptest! {
        #[test]
        fn comments_never_close_early(a in ".*", b in "[*/ ]*", name in "[*/a]*") {
            let cols = [col(&name, TypeClass::Text), col("n", TypeClass::Text)];
            let c = changed_comment(&cols, &[v(&a), v(&b)], &[v(&b), v(&a)]);
            let body = &c[2..c.len() - 2];
            proptest::prop_assert!(c.starts_with("/* ") && c.ends_with(" */"));
            proptest::prop_assert!(!body.contains("*/") && !body.contains("/*"));
            proptest::prop_assert!(!c.contains('\n'));
        }
    }

    #[test]
    fn weird_identifiers_are_quoted() {
        let t = TableRef::new("my db`x", "select");
        let cols = [
            col("we`ird", TypeClass::Int),
            col("with space", TypeClass::Int),
            col("naïve 名前", TypeClass::Int),
            col("order", TypeClass::Int),
        ];
        let table = FixTable {
            target: &t,
            columns: &cols,
            key: Some(vec![0, 3]),
        };
        let row = vec![v("1"), v("2"), v("3"), v("4")];
        let out = statements_for_apply(
            &table,
            &[
                RowChange::Extra { down: row.clone() },
                RowChange::Missing { up: row },
            ],
        );
        assert_eq!(
            out,
            vec![
                "DELETE FROM `my db``x`.`select` WHERE `we``ird` = 1 AND `order` = 4 LIMIT 1",
                "REPLACE INTO `my db``x`.`select` (`we``ird`, `with space`, `naïve 名前`, `order`) \
                 VALUES (1, 2, 3, 4)",
            ]
        );
    }

    #[test]
    fn key_out_of_range_falls_back_to_whole_row() {
        let t = target();
        let cols = [col("a", TypeClass::Int)];
        let table = FixTable {
            target: &t,
            columns: &cols,
            key: Some(vec![3]),
        };
        let out = statements_for_apply(
            &table,
            &[
                RowChange::Extra { down: vec![v("1")] },
                RowChange::Missing { up: vec![v("1")] },
            ],
        );
        assert_eq!(
            out,
            vec![
                "DELETE FROM `s`.`t` WHERE `a` = 1 LIMIT 1",
                "INSERT INTO `s`.`t` (`a`) VALUES (1)",
            ]
        );
    }

    /// Every `%` is followed by two hex digits (no `%XX` was cut).
    fn whole_triplets(s: &str) -> bool {
        let b = s.as_bytes();
        (0..b.len())
            .filter(|&i| b[i] == b'%')
            .all(|i| b.len() >= i + 3 && b[i + 1..i + 3].iter().all(u8::is_ascii_hexdigit))
    }

    #[test]
    fn file_names_are_safe_and_distinct() {
        let name = |s: &str, t: &str| file_name(&TableRef::new(s, t));
        assert_eq!(name("db", "orders_2024-01"), "db.orders_2024-01.sql");
        assert_eq!(name("a.b", "c"), "a%2Eb.c.sql");
        assert_eq!(name("a", "b.c"), "a.b%2Ec.sql");
        assert_eq!(name("x", "../etc/passwd"), "x.%2E%2E%2Fetc%2Fpasswd.sql");
        assert_eq!(name("x", "a b`%"), "x.a%20b%60%25.sql");
        assert_eq!(name("x", "é"), "x.%C3%A9.sql");
        assert_eq!(name("x", ""), "x..sql");

        let long_a = name(&"名".repeat(64), &"表".repeat(64));
        let long_b = name(&"名".repeat(64), &format!("{}x", "表".repeat(63)));
        assert_ne!(long_a, long_b);
        for n in [&long_a, &long_b] {
            assert!(n.len() <= MAX_FILE_STEM + 4, "{n}");
            assert!(n.ends_with(".sql") && n.contains('~'));
            let stem = n.split('~').next().unwrap();
            assert!(whole_triplets(stem), "{n}");
        }
        for cut in 0..3 {
            let n = name("s", &format!("{}{}", "a".repeat(178 + cut), "é".repeat(30)));
            let stem = n.split('~').next().unwrap();
            assert!(whole_triplets(stem), "{n}");
        }
    }

    #[test]
    fn writer_produces_a_pipeable_file() {
        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().join("fix").join("nested");
        let t = TableRef::new("s", "t`x");
        let header = FixHeader {
            upstream: "mysql1 (127.0.0.1:3306)".into(),
            downstream: "tidb\n0".into(),
            upstream_point: "live, not pinned".into(),
            downstream_point: "snapshot 2024-01-02".into(),
        };
        let mut w = FixSqlWriter::create(&out_dir, &t, &header).unwrap();
        assert_eq!(w.path(), out_dir.join("s.t%60x.sql"));
        w.append_chunk(
            "(`id` > 5)\nAND 1",
            "DELETE FROM `s`.`t``x` WHERE `id` = 6 LIMIT 1;\n",
        )
        .unwrap();
        w.append_chunk("all", "REPLACE INTO x VALUES (1);").unwrap();
        let path = w.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(&format!(
            "-- Fix SQL generated by syncgate {} at ",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.contains("-- Table (downstream name): `s`.`t``x`\n"));
        assert!(
            text.contains("-- Upstream:   mysql1 (127.0.0.1:3306) -- read at: live, not pinned\n")
        );
        assert!(text.contains("-- Downstream: tidb\u{FFFD}0 -- read at: snapshot 2024-01-02\n"));
        assert!(text.contains(
            "SET NAMES utf8mb4;\nSET time_zone = '+00:00';\nSET SESSION foreign_key_checks = 0;\n\
             START TRANSACTION;\n"
        ));
        assert!(text.contains(
            "\n-- range: (`id` > 5)\u{FFFD}AND 1\nDELETE FROM `s`.`t``x` WHERE `id` = 6 LIMIT 1;\n\
             \n-- range: all\nREPLACE INTO x VALUES (1);\n\nCOMMIT;\n"
        ));
        assert!(text.ends_with("-- end of fix SQL\n"));
        // Every line is a comment, or a statement ending in `;`.
        for line in text.lines().filter(|l| !l.is_empty()) {
            assert!(line.starts_with("--") || line.ends_with(';'), "{line}");
        }
    }

    #[test]
    fn writer_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let err = FixSqlWriter::create(&blocker, &target(), &FixHeader::default()).unwrap_err();
        match err {
            Error::Output { path, .. } => assert_eq!(path, blocker),
            e => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(1_704_164_645), "2024-01-02 03:04:05 UTC");
        assert_eq!(format_utc(4_107_542_399), "2100-02-28 23:59:59 UTC");
    }
}
