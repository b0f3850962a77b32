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
//!
//! Every statement is preceded by a one-line `/* … */` comment saying what it does to which
//! row: an extra row's downstream values, a missing row's key, a changed row's differing
//! columns (values cut to a few dozen characters; `*/` and `/*` inside them are broken up).
//!
//! # Undo
//!
//! [`render_undo`] gives the statements that, applied after the fix, restore the downstream
//! as it was read: deleted rows re-inserted with every writable column, changed rows written
//! back (`REPLACE`, or `DELETE` + `INSERT` of one copy in a keyless table), inserted rows
//! deleted (by key, byte-exactly). Its `DELETE`s also come first, and across the whole file
//! (not only within a range): with a case-insensitive key the fix may have written `'abc'`
//! in one range where the undo puts back `'ABC'` in another.
//!
//! [`RowChange`]: crate::diff::RowChange

mod apply;
mod file;
mod render;
#[cfg(test)]
mod tests;

pub use apply::{statements_for_apply, APPLY_SESSION_SETTINGS};
pub use file::{
    chunk_block, file_name, metadata_fix_text, supersede_previous, undo_part, FileKind, FixHeader,
    FixSqlWriter, Superseded, METADATA_FILE, SKIP_BINLOG,
};
pub use render::{render_changes, render_undo, render_undo_split, FixTable};
