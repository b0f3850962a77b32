//! SQL text rendering shared by every stage: identifier quoting and value literals.
//!
//! Values travel through syncgate as the server's text-protocol bytes (`None` = NULL).
//! [`literal`] turns such bytes back into a literal that re-creates the same value on any
//! MySQL-protocol server, independent of `sql_mode` (`NO_BACKSLASH_ESCAPES`,
//! `ANSI_QUOTES`): strings that need escaping are written as hex with a charset
//! introducer instead of backslash escapes.

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

/// How a column's values are written as literals (a column's type decides:
/// `schema::TypeClass::literal_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiteralKind {
    /// Passed through when the server's text is a plain number (integers, DECIMAL, YEAR;
    /// FLOAT/DOUBLE read as 17-digit DOUBLE text; BIT read as `CAST(c AS UNSIGNED)`).
    Number,
    /// Bytes as a hex literal.
    Binary,
    /// Text, quoted (or hex-encoded when it would need escapes).
    Text,
}

/// Render a value (server text form, `None` = NULL) as an SQL literal of `kind`.
pub fn literal(kind: LiteralKind, value: Option<&[u8]>) -> String {
    let Some(bytes) = value else {
        return "NULL".to_string();
    };
    match kind {
        LiteralKind::Number => numeric_literal(bytes),
        LiteralKind::Binary => hex_literal(bytes),
        LiteralKind::Text => text_literal(bytes),
    }
}

/// Numbers come from the server as ASCII (`-12`, `1.50`, `1e20`, `-0`, ZEROFILL `0007`);
/// they are passed through unchanged so the server re-parses exactly what it printed
/// (DECIMAL stays exact, DOUBLE round-trips). Anything that is not a plain number is quoted
/// (and converted by the server, or rejected in strict mode), so a malformed value can never
/// inject SQL or turn into an identifier such as `e`.
fn numeric_literal(bytes: &[u8]) -> String {
    if is_plain_number(bytes) {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        text_literal(bytes)
    }
}

/// `-?D+(.D+)?([eE][+-]?D+)?`: the only shapes servers print for numeric columns, and each
/// is a single numeric token (no `--` comment, no hex, no identifier).
pub fn is_plain_number(bytes: &[u8]) -> bool {
    fn digits(b: &[u8], i: &mut usize) -> bool {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    }
    let mut i = 0;
    if bytes.first() == Some(&b'-') {
        i += 1;
    }
    if !digits(bytes, &mut i) {
        return false;
    }
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        if !digits(bytes, &mut i) {
            return false;
        }
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(bytes, &mut i) {
            return false;
        }
    }
    i == bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Column, TypeClass};

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
    fn malformed_numbers_are_quoted() {
        assert_eq!(numeric_literal(b"12"), "12");
        assert_eq!(numeric_literal(b"1;DROP"), "'1;DROP'");
    }

    fn col(class: TypeClass) -> Column {
        Column {
            name: "c".into(),
            ordinal: 1,
            data_type: String::new(),
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

    fn lit(class: TypeClass, v: &[u8]) -> String {
        col(class).literal(Some(v))
    }

    #[test]
    fn null_is_null_for_every_class() {
        for class in [
            TypeClass::Int,
            TypeClass::Text,
            TypeClass::Binary,
            TypeClass::Bit,
        ] {
            assert_eq!(col(class).literal(None), "NULL");
        }
    }

    #[test]
    fn integers_pass_through() {
        assert_eq!(lit(TypeClass::Int, b"-12"), "-12");
        assert_eq!(
            lit(TypeClass::Int, b"18446744073709551615"),
            "18446744073709551615"
        );
        assert_eq!(
            lit(TypeClass::Int, b"-9223372036854775808"),
            "-9223372036854775808"
        );
        // ZEROFILL values keep their digits; the server reads them as decimal numbers.
        assert_eq!(lit(TypeClass::Int, b"0007"), "0007");
        assert_eq!(lit(TypeClass::Year, b"2024"), "2024");
        assert_eq!(lit(TypeClass::Year, b"0000"), "0000");
    }

    #[test]
    fn decimals_stay_exact() {
        assert_eq!(lit(TypeClass::Decimal, b"1.50"), "1.50");
        assert_eq!(lit(TypeClass::Decimal, b"-0.00"), "-0.00");
        let big = b"12345678901234567890123456789012345.123456789012345678901234567890";
        assert_eq!(lit(TypeClass::Decimal, big), String::from_utf8_lossy(big));
    }

    #[test]
    fn floats_keep_the_server_text() {
        for v in [
            "0.1",
            "1e20",
            "-0",
            "1.5e-7",
            "0.30000000000000004",
            "1.7976931348623157e308",
            "5e-324",
            "1.2345678901234568e17",
            "3.40282e38",
        ] {
            assert_eq!(lit(TypeClass::Double, v.as_bytes()), v);
            assert_eq!(lit(TypeClass::Float, v.as_bytes()), v);
        }
    }

    #[test]
    fn malformed_numbers_never_render_raw() {
        for v in [
            "", "e", "E5", "1e", "1e+", "--1", "-", "1-1", "0x10", "0b1", ".5", "1.", "+1", "inf",
            "NaN", "1 OR 1=1", "1;DROP", "1/*", "1--", "12'",
        ] {
            for class in [
                TypeClass::Int,
                TypeClass::Decimal,
                TypeClass::Float,
                TypeClass::Double,
                TypeClass::Year,
            ] {
                let out = lit(class, v.as_bytes());
                assert_eq!(
                    decode_literal(&out),
                    Some(v.as_bytes().to_vec()),
                    "{v:?} {class:?}"
                );
            }
        }
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(lit(TypeClass::Text, b""), "''");
        assert_eq!(
            lit(TypeClass::Text, b"'; DROP TABLE t; --"),
            "'''; DROP TABLE t; --'"
        );
        assert_eq!(lit(TypeClass::Text, b"a\\'"), "_utf8mb4 X'615C27'");
        assert_eq!(lit(TypeClass::Text, b"a\nb"), "_utf8mb4 X'610A62'");
        assert_eq!(lit(TypeClass::Text, b"\r\x1a"), "_utf8mb4 X'0D1A'");
        assert_eq!(lit(TypeClass::Text, "😀 ü".as_bytes()), "'😀 ü'");
        assert_eq!(lit(TypeClass::Text, b"\xc3\x28"), "_binary X'C328'");
    }

    #[test]
    fn binary_is_hex() {
        assert_eq!(lit(TypeClass::Binary, b""), "X''");
        assert_eq!(lit(TypeClass::Binary, &[0, 0xff, b'\'']), "X'00FF27'");
    }

    #[test]
    fn temporal_json_enum_set_are_quoted() {
        assert_eq!(lit(TypeClass::Date, b"2024-01-02"), "'2024-01-02'");
        assert_eq!(
            lit(TypeClass::Time, b"-838:59:59.000000"),
            "'-838:59:59.000000'"
        );
        assert_eq!(
            lit(TypeClass::DateTime, b"2024-01-02 03:04:05.123456"),
            "'2024-01-02 03:04:05.123456'"
        );
        assert_eq!(
            lit(TypeClass::Timestamp, b"2024-01-02 03:04:05"),
            "'2024-01-02 03:04:05'"
        );
        assert_eq!(
            lit(TypeClass::Json, br#"{"a": "it's"}"#),
            r#"'{"a": "it''s"}'"#
        );
        // JSON escapes contain backslashes: hex keeps them byte-exact in every sql_mode.
        assert_eq!(lit(TypeClass::Json, br#""\n""#), "_utf8mb4 X'225C6E22'");
        assert_eq!(lit(TypeClass::Enum, b"small"), "'small'");
        assert_eq!(lit(TypeClass::Set, b"a,b"), "'a,b'");
    }

    #[test]
    fn bit_values_are_unsigned_integers() {
        assert_eq!(
            lit(TypeClass::Bit, b"18446744073709551615"),
            "18446744073709551615"
        );
        assert_eq!(lit(TypeClass::Bit, b"0"), "0");
        // Raw protocol bytes are never pasted into SQL.
        assert_eq!(lit(TypeClass::Bit, &[0x01, 0x27]), "_utf8mb4 X'0127'");
    }

    /// Decode what [`text_literal`] produced, as a server would: a `'…'` string whose only
    /// escape is `''` (no backslash or control character, so `NO_BACKSLASH_ESCAPES` does not
    /// matter), or a hex string with an optional introducer.
    fn decode_literal(lit: &str) -> Option<Vec<u8>> {
        let hex_part = lit
            .strip_prefix("_utf8mb4 X'")
            .or_else(|| lit.strip_prefix("_binary X'"))
            .or_else(|| lit.strip_prefix("X'"));
        if let Some(rest) = hex_part {
            let digits = rest.strip_suffix('\'')?;
            if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            let bytes = hex::decode(digits).ok()?;
            // The server rejects a `_utf8mb4` introducer on invalid UTF-8.
            if lit.starts_with("_utf8mb4") && std::str::from_utf8(&bytes).is_err() {
                return None;
            }
            return Some(bytes);
        }
        let body = lit.strip_prefix('\'')?.strip_suffix('\'')?;
        let mut out = String::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            match c {
                '\'' => {
                    // A lone quote would end the literal early.
                    if chars.next() != Some('\'') {
                        return None;
                    }
                    out.push('\'');
                }
                '\\' => return None,
                c if c.is_control() => return None,
                c => out.push(c),
            }
        }
        Some(out.into_bytes())
    }

    proptest::proptest! {
        #[test]
        fn text_literal_decodes_to_the_same_bytes(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)
        ) {
            let lit = text_literal(&bytes);
            proptest::prop_assert_eq!(decode_literal(&lit), Some(bytes));
        }

        #[test]
        fn text_literal_decodes_unicode(s in "(\\PC|['\\\\\"`;\\x00-\\x1f])*") {
            let lit = text_literal(s.as_bytes());
            proptest::prop_assert_eq!(decode_literal(&lit), Some(s.into_bytes()));
        }

        #[test]
        fn numeric_literals_are_one_token(
            bytes in proptest::collection::vec(proptest::sample::select(b"0123456789-+.eEx' ;".to_vec()), 0..12)
        ) {
            let out = numeric_literal(&bytes);
            if is_plain_number(&bytes) {
                proptest::prop_assert_eq!(out.as_bytes(), &bytes[..]);
            } else {
                proptest::prop_assert_eq!(decode_literal(&out), Some(bytes));
            }
        }
    }
}
