//! The chunk checksum computed inside the server. Pure SQL rendering and result parsing.
//!
//! For a chunk of a keyed table each side runs
//!
//! ```sql
//! SELECT COUNT(*), BIT_XOR(CRC32(CRC32(CONCAT_WS(',', <enc(c1)>, <enc(c2)>, …)))) FROM t WHERE …
//! ```
//!
//! - The encoding is unambiguous: numeric and temporal columns are their text form (which
//!   never contains `,` or `N`); free-text columns (strings, binaries, JSON, ENUM, SET) are
//!   preceded by `LENGTH(c)`, except the last NOT NULL one, whose extent follows from the
//!   comma-free fields after it; a nullable column yields `'N'` when it is NULL, so NULL
//!   differs from `''` and from `0`.
//! - The inner CRC32 is affine over GF(2); the outer CRC32 of its *decimal text* is not, so
//!   rows changed the same way do not cancel (the CRC32/BIT_XOR failure of earlier tools).
//! - Keyed chunks hold distinct rows, so XOR of that non-linear value is sound. Keyless
//!   tables, whose rows can repeat, use an exact `SUM` instead, which does not cancel a row
//!   present twice.
//!
//! ARCHITECTURE.md ("Checksum") gives the soundness argument and the measured cost.

use crate::schema::{Column, TableRef, TypeClass};
use crate::sql::quote_ident;

/// Version tag of the checksum definition, recorded in reports: two runs compare only if
/// they use the same version.
pub const CHECKSUM_VERSION: &str = "sg1";

/// How per-row values are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// `BIT_XOR`: for chunks of distinct rows (a unique key).
    Xor,
    /// Exact `SUM`: for rows that may repeat (tables without a key).
    Sum,
}

impl Aggregate {
    fn function(self) -> &'static str {
        match self {
            Aggregate::Xor => "BIT_XOR",
            Aggregate::Sum => "SUM",
        }
    }
}

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

/// Per-row hash expression over `columns` (a 32-bit unsigned integer).
pub fn row_hash_expr(columns: &[&Column]) -> String {
    // The last free-text column needs no length prefix when it is NOT NULL: every field
    // after it is comma-free, so its end is found by counting fields from the end.
    let last_free = columns.iter().rposition(|c| c.class.is_free_text());
    let mut args = vec!["','".to_string()];
    for (i, c) in columns.iter().enumerate() {
        let value = value_expr(c);
        if c.class.is_free_text() {
            if Some(i) != last_free || c.nullable {
                let len = format!("LENGTH({value})");
                args.push(if c.nullable {
                    format!("IFNULL({len},'N')")
                } else {
                    len
                });
            }
            args.push(value);
        } else if c.nullable {
            args.push(format!("IFNULL({value},'N')"));
        } else {
            args.push(value);
        }
    }
    format!("CRC32(CRC32(CONCAT_WS({})))", args.join(", "))
}

/// The checksum statement for the rows of `table` matching `where_clause`.
pub fn checksum_sql(
    table: &TableRef,
    columns: &[&Column],
    where_clause: &str,
    aggregate: Aggregate,
) -> String {
    format!(
        "SELECT COUNT(*), {}({}) FROM {} WHERE {}",
        aggregate.function(),
        row_hash_expr(columns),
        table.quoted(),
        where_clause
    )
}

/// Parse the two result cells of [`checksum_sql`] (text protocol). An empty chunk returns
/// `SUM = NULL`, read as 0 (`BIT_XOR` of nothing is 0 already).
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
    fn free_text_is_length_prefixed_except_the_last_not_null_one() {
        let id = col("id", TypeClass::Int, false, None);
        let s = col("s", TypeClass::Text, true, Some("utf8mb4"));
        let l = col("l", TypeClass::Text, false, Some("latin1"));
        let k = col("k", TypeClass::Int, true, None);
        assert_eq!(
            row_hash_expr(&[&id, &s, &l, &k]),
            "CRC32(CRC32(CONCAT_WS(',', `id`, IFNULL(LENGTH(`s`),'N'), `s`, \
             CONVERT(`l` USING utf8mb4), IFNULL(`k`,'N'))))"
        );
        // A nullable last free-text column keeps its prefix: it is the NULL marker.
        assert_eq!(
            row_hash_expr(&[&id, &s]),
            "CRC32(CRC32(CONCAT_WS(',', `id`, IFNULL(LENGTH(`s`),'N'), `s`)))"
        );
    }

    #[test]
    fn aggregate_is_chosen_by_caller() {
        let id = col("id", TypeClass::Int, false, None);
        let t = TableRef::new("d", "t");
        assert!(checksum_sql(&t, &[&id], "TRUE", Aggregate::Xor).contains("BIT_XOR(CRC32"));
        assert!(checksum_sql(&t, &[&id], "TRUE", Aggregate::Sum).contains("SUM(CRC32"));
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
