//! SQL text rendering shared by every stage: identifier quoting and value literals.
//!
//! Values travel through syncgate as the server's text-protocol bytes (`None` = NULL).
//! [`literal`] turns such bytes back into a literal that re-creates the same value on any
//! MySQL-protocol server, independent of `sql_mode` (`NO_BACKSLASH_ESCAPES`,
//! `ANSI_QUOTES`): strings that need escaping are written as hex with a charset
//! introducer instead of backslash escapes.

use crate::schema::{Column, TypeClass};

/// Quote an identifier with backticks, doubling embedded backticks.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('`');
    for ch in name.chars() {
        if ch == '`' {
            out.push('`');
        }
        out.push(ch);
    }
    out.push('`');
    out
}

/// A comma-separated list of quoted identifiers.
pub fn ident_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Render a plain string literal (for use in generated SQL such as `information_schema`
/// queries). Quotes are doubled and backslashes doubled; callers only use this with
/// `NO_BACKSLASH_ESCAPES` off, which syncgate's sessions guarantee.
pub fn quote_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for ch in s.chars() {
        match ch {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Hex literal `X'…'` of raw bytes.
pub fn hex_literal(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2 + 3);
    out.push_str("X'");
    out.push_str(&hex::encode_upper(bytes));
    out.push('\'');
    out
}

/// A string literal that is safe in every `sql_mode`: printable text without quotes'
/// troublemakers is quoted as is (with `''` doubling); anything with a backslash, a
/// control character or invalid UTF-8 becomes `_utf8mb4 X'…'` (or `_binary X'…'`).
pub fn text_literal(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(|c| c == '\\' || c.is_control()) => {
            let mut out = String::with_capacity(s.len() + 2);
            out.push('\'');
            for ch in s.chars() {
                if ch == '\'' {
                    out.push('\'');
                }
                out.push(ch);
            }
            out.push('\'');
            out
        }
        Ok(_) => format!("_utf8mb4 {}", hex_literal(bytes)),
        Err(_) => format!("_binary {}", hex_literal(bytes)),
    }
}

/// Render a value (server text form, `None` = NULL) of `column` as an SQL literal.
pub fn literal(column: &Column, value: Option<&[u8]>) -> String {
    let Some(bytes) = value else {
        return "NULL".to_string();
    };
    match column.class {
        TypeClass::Int | TypeClass::Decimal | TypeClass::Year => numeric_literal(bytes),
        TypeClass::Float | TypeClass::Double => numeric_literal(bytes),
        TypeClass::Bit => bit_literal(bytes),
        TypeClass::Binary => hex_literal(bytes),
        TypeClass::Date
        | TypeClass::Time
        | TypeClass::DateTime
        | TypeClass::Timestamp
        | TypeClass::Text
        | TypeClass::Json
        | TypeClass::Enum
        | TypeClass::Set
        | TypeClass::Other => text_literal(bytes),
    }
}

/// Numbers come from the server as ASCII (`-12`, `1.50`, `1e20`); anything else is quoted
/// so a malformed value can never inject SQL.
fn numeric_literal(bytes: &[u8]) -> String {
    let ok = !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
    if ok {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        text_literal(bytes)
    }
}

/// The text protocol sends BIT(n) as big-endian bytes; write it as an unsigned integer.
fn bit_literal(bytes: &[u8]) -> String {
    if bytes.len() <= 8 {
        let mut v: u64 = 0;
        for b in bytes {
            v = (v << 8) | u64::from(*b);
        }
        v.to_string()
    } else {
        hex_literal(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("a"), "`a`");
        assert_eq!(quote_ident("we`ird"), "`we``ird`");
    }

    #[test]
    fn text_literals_are_mode_independent() {
        assert_eq!(text_literal(b"abc"), "'abc'");
        assert_eq!(text_literal(b"it's"), "'it''s'");
        assert_eq!(text_literal(b"a\\b"), "_utf8mb4 X'615C62'");
        assert_eq!(text_literal(b"a\0b"), "_utf8mb4 X'610062'");
        assert_eq!(text_literal(&[0xff, 0x00]), "_binary X'FF00'");
    }

    #[test]
    fn bit_values_become_integers() {
        assert_eq!(bit_literal(&[0x01, 0x02]), "258");
        assert_eq!(bit_literal(&[]), "0");
    }

    #[test]
    fn malformed_numbers_are_quoted() {
        assert_eq!(numeric_literal(b"12"), "12");
        assert_eq!(numeric_literal(b"1;DROP"), "'1;DROP'");
    }
}
