//! The chunk checksum computed inside the server. Pure SQL rendering and result parsing.
//!
//! For a chunk of a keyed table each side runs
//!
//! ```sql
//! SELECT COUNT(*), BIT_XOR(CRC32(CRC32(CONCAT_WS(0x1F, <enc(c1)>, <enc(c2)>, …)))) FROM t WHERE …
//! ```
//!
//! - Fields are separated by U+001F (ASCII unit separator). Numeric and temporal columns are
//!   their text form (FLOAT as `CAST(c AS DOUBLE)`, whose 17 significant digits identify the
//!   stored value, BIT as `CAST(c AS UNSIGNED)`), which never contains it. Character columns
//!   (CHAR, VARCHAR, TEXT, ENUM, SET) enter as they are: the encoding takes text never to
//!   contain U+001F, which is what saves reading each string twice (a length prefix costs
//!   about a tenth of the whole scan per column). Binary strings can hold any byte and are
//!   preceded by `LENGTH(c)`, except the last NOT NULL one, whose extent follows from the
//!   separator-free fields after it. Large columns (MEDIUM/LONG TEXT and BLOB, JSON) are
//!   their `MD5`, so a row never exceeds `max_allowed_packet` inside `CONCAT_WS` (which would
//!   make it NULL and drop the row from the checksum).
//! - NULL: a nullable character column is preceded by `ISNULL(c)` (a flag read, no string
//!   read; `CONCAT_WS` skips the NULL itself), other nullable columns become `IFNULL(…,'N')`,
//!   so NULL differs from `''` and from `0`.
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
pub const CHECKSUM_VERSION: &str = "sg3";

/// The field separator: U+001F, ASCII's "unit separator", a control character that text
/// data does not contain in practice (module docs: the one assumption of the encoding).
const SEPARATOR: &str = "0x1F";

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

/// The expression that yields a column's value in canonical text form: FLOAT widened to
/// DOUBLE (the server prints FLOAT with only ~6 significant digits, DOUBLE with all 17 that
/// identify the value), BIT as an unsigned integer, and strings converted to utf8mb4 so that
/// two sides with different charsets hash the same characters alike.
pub fn value_expr(column: &Column) -> String {
    value_expr_with(column, !is_utf8_compatible(column.charset.as_deref()))
}

/// [`value_expr`], converting character data to utf8mb4 only when `to_utf8mb4` says so.
/// A plan asks for it only where the two sides store a column in different charsets: the
/// conversion costs about 4x the rest of the row expression on latin1 text (benches/
/// README.md), and two sides in the same charset hash the same bytes for the same text.
pub fn value_expr_with(column: &Column, to_utf8mb4: bool) -> String {
    let name = quote_ident(&column.name);
    match column.class {
        TypeClass::Float => format!("CAST({name} AS DOUBLE)"),
        TypeClass::Bit => format!("CAST({name} AS UNSIGNED)"),
        TypeClass::Text | TypeClass::Enum | TypeClass::Set | TypeClass::Json if to_utf8mb4 => {
            format!("CONVERT({name} USING utf8mb4)")
        }
        _ => name,
    }
}

/// Whether a column can hold values so large that a row's concatenation could exceed
/// `max_allowed_packet` (`CONCAT_WS` then returns NULL, and the row would vanish from the
/// checksum): MEDIUM/LONG TEXT and BLOB, and JSON. Such columns enter the checksum as the
/// `MD5` of their value.
pub fn is_large(column: &Column) -> bool {
    matches!(
        column.data_type.to_ascii_lowercase().as_str(),
        "mediumtext" | "longtext" | "mediumblob" | "longblob" | "json"
    )
}

/// Per-row hash expression over `columns` (a 32-bit unsigned integer).
pub fn row_hash_expr(columns: &[&Column]) -> String {
    let items: Vec<(&Column, String)> = columns.iter().map(|c| (*c, value_expr(c))).collect();
    row_hash_expr_of(&items)
}

/// [`row_hash_expr`] with the value expression of each column given by the caller (a plan
/// that normalises both sides of a heterogeneous column to one type, say). Each expression
/// must yield the text [`value_expr`] describes for its column's class.
pub fn row_hash_expr_of(items: &[(&Column, String)]) -> String {
    // The outer CRC makes the XOR of row hashes non-linear in the rows' bytes.
    format!("CRC32({})", row_crc_expr_of(items))
}

/// The CRC of a row's concatenation alone: where rows are compared one by one (by key,
/// never XORed together) the outer CRC of [`row_hash_expr_of`] adds nothing.
pub fn row_crc_expr_of(items: &[(&Column, String)]) -> String {
    // Character data enters as is: it is taken never to contain the separator (module docs).
    let character = |c: &Column| {
        matches!(
            c.class,
            TypeClass::Text | TypeClass::Enum | TypeClass::Set | TypeClass::Json
        )
    };
    // Binary strings (and types the server hands over as bytes) can hold any byte: they are
    // length-prefixed. Large columns are replaced by their MD5 (hex, fixed length).
    let prefixed = |c: &Column| c.class.is_free_text() && !character(c) && !is_large(c);
    // The last prefixed column needs no prefix when it is NOT NULL: every field after it is
    // separator-free, so its end is found by counting fields from the end.
    let last_prefixed = items.iter().rposition(|(c, _)| prefixed(c));
    let mut args = vec![SEPARATOR.to_string()];
    for (i, (c, value)) in items.iter().enumerate() {
        if is_large(c) {
            let digest = format!("MD5({value})");
            args.push(if c.nullable {
                format!("IFNULL({digest},'N')")
            } else {
                digest
            });
        } else if prefixed(c) {
            if Some(i) != last_prefixed || c.nullable {
                let len = format!("LENGTH({value})");
                args.push(if c.nullable {
                    format!("IFNULL({len},'N')")
                } else {
                    len
                });
            }
            args.push(value.clone());
        } else if character(c) && c.nullable {
            // `ISNULL` reads only the NULL flag, not the string; `CONCAT_WS` skips the NULL
            // value itself, so NULL (`1`) and `''` (`0`, then an empty field) differ.
            args.push(format!("ISNULL({})", quote_ident(&c.name)));
            args.push(value.clone());
        } else if c.nullable {
            args.push(format!("IFNULL({value},'N')"));
        } else {
            args.push(value.clone());
        }
    }
    format!("CRC32(CONCAT_WS({}))", args.join(", "))
}

/// The checksum statement for the rows of `table` matching `where_clause`.
pub fn checksum_sql(
    table: &TableRef,
    columns: &[&Column],
    where_clause: &str,
    aggregate: Aggregate,
) -> String {
    checksum_sql_of(table, &row_hash_expr(columns), where_clause, aggregate)
}

/// The checksum statement over a per-row hash expression (from [`row_hash_expr_of`]).
pub fn checksum_sql_of(
    table: &TableRef,
    row_hash: &str,
    where_clause: &str,
    aggregate: Aggregate,
) -> String {
    checksum_sql_from(&table.quoted(), row_hash, where_clause, aggregate)
}

/// [`checksum_sql_of`] over a `FROM` text (a quoted table name, possibly with an index hint).
pub fn checksum_sql_from(
    from: &str,
    row_hash: &str,
    where_clause: &str,
    aggregate: Aggregate,
) -> String {
    format!(
        "SELECT COUNT(*), {}({row_hash}) FROM {from} WHERE {where_clause}",
        aggregate.function(),
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
    fn text_enters_as_is_and_binary_is_length_prefixed_except_the_last_not_null_one() {
        let id = col("id", TypeClass::Int, false, None);
        let s = col("s", TypeClass::Text, true, Some("utf8mb4"));
        let l = col("l", TypeClass::Text, false, Some("latin1"));
        let k = col("k", TypeClass::Int, true, None);
        assert_eq!(
            row_hash_expr(&[&id, &s, &l, &k]),
            "CRC32(CRC32(CONCAT_WS(0x1F, `id`, ISNULL(`s`), `s`, \
             CONVERT(`l` USING utf8mb4), IFNULL(`k`,'N'))))"
        );
        let b1 = col("b1", TypeClass::Binary, false, Some("binary"));
        let b2 = col("b2", TypeClass::Binary, true, Some("binary"));
        let b3 = col("b3", TypeClass::Binary, false, Some("binary"));
        assert_eq!(
            row_hash_expr(&[&b1, &b2, &s, &b3, &id]),
            "CRC32(CRC32(CONCAT_WS(0x1F, LENGTH(`b1`), `b1`, IFNULL(LENGTH(`b2`),'N'), `b2`, \
             ISNULL(`s`), `s`, `b3`, `id`)))"
        );
        // A nullable last binary column keeps its prefix: it is the NULL marker.
        assert_eq!(
            row_hash_expr(&[&id, &b2]),
            "CRC32(CRC32(CONCAT_WS(0x1F, `id`, IFNULL(LENGTH(`b2`),'N'), `b2`)))"
        );
    }

    #[test]
    fn float_bit_and_large_columns_have_exact_fixed_forms() {
        let id = col("id", TypeClass::Int, false, None);
        let f = col("f", TypeClass::Float, true, None);
        let b = col("b", TypeClass::Bit, false, None);
        let mut blob = col("lob", TypeClass::Binary, true, Some("binary"));
        blob.data_type = "longblob".into();
        let mut doc = col("doc", TypeClass::Text, false, Some("latin1"));
        doc.data_type = "mediumtext".into();
        let s = col("s", TypeClass::Text, false, Some("utf8mb4"));
        assert_eq!(
            row_hash_expr(&[&id, &f, &b, &blob, &doc, &s]),
            "CRC32(CRC32(CONCAT_WS(0x1F, `id`, IFNULL(CAST(`f` AS DOUBLE),'N'), \
             CAST(`b` AS UNSIGNED), IFNULL(MD5(`lob`),'N'), MD5(CONVERT(`doc` USING utf8mb4)), \
             `s`)))"
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
