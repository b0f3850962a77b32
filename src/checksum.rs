//! The chunk checksum computed inside the server. Pure SQL rendering and result parsing.
//!
//! For a chunk, each side runs
//!
//! ```sql
//! SELECT COUNT(*), SUM(CRC32(CRC32(CONCAT_WS(',', <enc(c1)>, <enc(c2)>, …)))) FROM t WHERE …
//! ```
//!
//! - `enc(c)` is unambiguous: numeric and temporal columns are their text form (which never
//!   contains `,` or `N`); strings, binaries, JSON, ENUM and SET are `CRC32(c)` (a number, so
//!   a value containing `,` cannot shift a column boundary, and each string is read once); a
//!   nullable column becomes `'N'` when it is NULL, so NULL differs from `''` and from `0`.
//! - The inner CRC32 is affine over GF(2); the outer CRC32 of its *decimal text* is not, so
//!   rows changed the same way do not cancel (the CRC32/BIT_XOR failure of earlier tools).
//! - `SUM` over exact integers (DECIMAL result) is order independent and, unlike `BIT_XOR`,
//!   does not cancel a row that appears twice.
//!
//! ARCHITECTURE.md ("Checksum") gives the soundness argument and the measured cost.

use crate::schema::{Column, TableRef, TypeClass};
use crate::sql::quote_ident;

/// Version tag of the checksum definition, recorded in reports: two runs compare only if
/// they use the same version.
pub const CHECKSUM_VERSION: &str = "sg1";

/// Count and checksum of one chunk on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Checksum {
    pub count: u64,
    pub sum: u128,
}

/// Charsets whose bytes are already UTF-8 (or a subset of it).
fn is_utf8_compatible(charset: Option<&str>) -> bool {
    match charset {
        None => true,
        Some(cs) => matches!(
            cs.to_ascii_lowercase().as_str(),
            "utf8mb4" | "utf8mb3" | "utf8" | "ascii" | "binary"
        ),
    }
}

/// The expression that yields a column's value in canonical text form (strings converted
/// to utf8mb4 so that two sides with different charsets hash the same characters alike).
pub fn value_expr(column: &Column) -> String {
    let name = quote_ident(&column.name);
    match column.class {
        TypeClass::Bit => format!("CAST({name} AS UNSIGNED)"),
        TypeClass::Text | TypeClass::Enum | TypeClass::Set | TypeClass::Json
            if !is_utf8_compatible(column.charset.as_deref()) =>
        {
            format!("CONVERT({name} USING utf8mb4)")
        }
        _ => name,
    }
}

/// The `CONCAT_WS` argument encoding one column: its text when that text cannot contain the
/// separator, else the CRC32 of its bytes (read once, and short to concatenate).
fn encode_column(column: &Column) -> String {
    let value = value_expr(column);
    let item = if column.class.is_free_text() {
        format!("CRC32({value})")
    } else {
        value
    };
    if column.nullable {
        format!("IFNULL({item},'N')")
    } else {
        item
    }
}

/// Per-row hash expression over `columns` (a 32-bit unsigned integer).
pub fn row_hash_expr(columns: &[&Column]) -> String {
    let mut args = vec!["','".to_string()];
    args.extend(columns.iter().map(|c| encode_column(c)));
    format!("CRC32(CRC32(CONCAT_WS({})))", args.join(", "))
}

/// The checksum statement for the rows of `table` matching `where_clause`.
pub fn checksum_sql(table: &TableRef, columns: &[&Column], where_clause: &str) -> String {
    format!(
        "SELECT COUNT(*), SUM({}) FROM {} WHERE {}",
        row_hash_expr(columns),
        table.quoted(),
        where_clause
    )
}

/// Parse the two result cells of [`checksum_sql`] (text protocol). An empty chunk returns
/// `SUM = NULL`, read as 0.
pub fn parse_checksum(count: Option<&[u8]>, sum: Option<&[u8]>) -> Option<Checksum> {
    let count = std::str::from_utf8(count?).ok()?.parse().ok()?;
    let sum = match sum {
        None => 0,
        Some(s) => std::str::from_utf8(s).ok()?.parse().ok()?,
    };
    Some(Checksum { count, sum })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::TypeClass;

    fn col(name: &str, class: TypeClass, nullable: bool, charset: Option<&str>) -> Column {
        Column {
            name: name.into(),
            ordinal: 1,
            data_type: String::new(),
            column_type: String::new(),
            class,
            nullable,
            unsigned: false,
            charset: charset.map(Into::into),
            collation: None,
            default: None,
            generated: None,
            invisible: false,
        }
    }

    #[test]
    fn strings_are_hashed_per_column_and_nulls_marked() {
        let id = col("id", TypeClass::Int, false, None);
        let s = col("s", TypeClass::Text, true, Some("utf8mb4"));
        let l = col("l", TypeClass::Text, false, Some("latin1"));
        let k = col("k", TypeClass::Int, true, None);
        let expr = row_hash_expr(&[&id, &s, &l, &k]);
        assert_eq!(
            expr,
            "CRC32(CRC32(CONCAT_WS(',', `id`, IFNULL(CRC32(`s`),'N'), \
             CRC32(CONVERT(`l` USING utf8mb4)), IFNULL(`k`,'N'))))"
        );
    }

    #[test]
    fn parses_empty_and_large_sums() {
        assert_eq!(
            parse_checksum(Some(b"0"), None),
            Some(Checksum { count: 0, sum: 0 })
        );
        assert_eq!(
            parse_checksum(Some(b"3"), Some(b"12884901885")),
            Some(Checksum {
                count: 3,
                sum: 12884901885
            })
        );
        assert_eq!(parse_checksum(None, None), None);
    }
}
