//! Rows as the server sends them, their canonical encoding, row hashes and key ordering.
//! Pure and synchronous.
//!
//! A row is the list of the server's text-protocol values (`None` = SQL NULL). The canonical
//! encoding hashed by [`row_hash`] is, per value, a tag byte (`0` NULL, `1` value) followed
//! for values by a little-endian `u32` length and the bytes: NULL is distinct from `''` and
//! from `0`, and column boundaries cannot shift.

use std::cmp::Ordering;
use xxhash_rust::xxh3::Xxh3;

/// One value in the server's text form; `None` is SQL NULL.
pub type Value = Option<Vec<u8>>;
/// One row, values in the order of the query's select list.
pub type Row = Vec<Value>;

/// 128-bit xxh3 of the canonical encoding of `values`. Equal values give equal hashes;
/// different values collide with probability about 2^-128.
pub fn row_hash<'a>(values: impl IntoIterator<Item = &'a Value>) -> u128 {
    let mut h = Xxh3::new();
    for v in values {
        match v {
            None => h.update(&[0]),
            Some(bytes) => {
                h.update(&[1]);
                h.update(&(bytes.len() as u32).to_le_bytes());
                h.update(bytes);
            }
        }
    }
    h.digest128()
}

/// How one key column's sort values compare; chosen so that the order equals the order the
/// server uses for `ORDER BY` on that column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Integers of any width, signed or unsigned (compared as i128).
    Int,
    /// Exact decimals in text form.
    Decimal,
    /// FLOAT/DOUBLE (compared as f64 with a total order).
    Float,
    /// Fixed-format text whose byte order is the value order (DATE, DATETIME, TIMESTAMP, YEAR).
    Lexical,
    /// TIME (`[-]H+:MM:SS[.f]`).
    Time,
    /// Raw bytes compared with memcmp: binary strings, `WEIGHT_STRING()` sort keys of
    /// collated strings (padded like PAD SPACE collations compare), and the utf8mb4 bytes of
    /// keys compared on a binary basis (the plan's docs say when).
    Bytes,
}

/// Compare two key tuples column by column.
pub fn compare_keys(kinds: &[KeyKind], a: &[Value], b: &[Value]) -> Ordering {
    for ((kind, x), y) in kinds.iter().zip(a).zip(b) {
        let ord = compare_value(*kind, x.as_deref(), y.as_deref());
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

/// Compare two values of one key column. NULL sorts first, as on the server.
pub fn compare_value(kind: KeyKind, a: Option<&[u8]>, b: Option<&[u8]>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => match kind {
            KeyKind::Int => parse_i128(a).cmp(&parse_i128(b)),
            KeyKind::Decimal => compare_decimal(a, b),
            KeyKind::Float => parse_f64(a).total_cmp(&parse_f64(b)),
            KeyKind::Lexical | KeyKind::Bytes => a.cmp(b),
            KeyKind::Time => parse_time_micros(a).cmp(&parse_time_micros(b)),
        },
    }
}

fn parse_i128(b: &[u8]) -> i128 {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn parse_f64(b: &[u8]) -> f64 {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Microseconds of a TIME value such as `-838:59:59.000000`.
fn parse_time_micros(b: &[u8]) -> i64 {
    let s = std::str::from_utf8(b).unwrap_or("").trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut parts = hms.split(':').map(|p| p.parse::<i64>().unwrap_or(0));
    let h = parts.next().unwrap_or(0);
    let m = parts.next().unwrap_or(0);
    let sec = parts.next().unwrap_or(0);
    let mut micros_str = frac.to_string();
    micros_str.truncate(6);
    while micros_str.len() < 6 {
        micros_str.push('0');
    }
    let micros = micros_str.parse::<i64>().unwrap_or(0);
    let v = ((h * 60 + m) * 60 + sec) * 1_000_000 + micros;
    if neg {
        -v
    } else {
        v
    }
}

/// Numeric comparison of two decimal strings (`-12.50`, `3`, `0.001`) without loss.
pub fn compare_decimal(a: &[u8], b: &[u8]) -> Ordering {
    let (na, ia, fa) = split_decimal(a);
    let (nb, ib, fb) = split_decimal(b);
    let a_zero = is_zero(ia, fa);
    let b_zero = is_zero(ib, fb);
    let na = na && !a_zero;
    let nb = nb && !b_zero;
    match (na, nb) {
        (false, true) => return Ordering::Greater,
        (true, false) => return Ordering::Less,
        _ => {}
    }
    let mag = ia
        .len()
        .cmp(&ib.len())
        .then_with(|| ia.cmp(ib))
        .then_with(|| compare_fraction(fa, fb));
    if na {
        mag.reverse()
    } else {
        mag
    }
}

fn split_decimal(s: &[u8]) -> (bool, &[u8], &[u8]) {
    let (neg, s) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = match s.iter().position(|&c| c == b'.') {
        Some(p) => (&s[..p], &s[p + 1..]),
        None => (s, &s[s.len()..]),
    };
    let first_nz = int.iter().position(|&c| c != b'0').unwrap_or(int.len());
    (neg, &int[first_nz..], frac)
}

fn is_zero(int: &[u8], frac: &[u8]) -> bool {
    int.is_empty() && frac.iter().all(|&c| c == b'0')
}

fn compare_fraction(a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(b'0');
        let y = b.get(i).copied().unwrap_or(b'0');
        if x != y {
            return x.cmp(&y);
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Value {
        Some(s.as_bytes().to_vec())
    }

    #[test]
    fn encoding_separates_null_empty_and_boundaries() {
        assert_ne!(row_hash(&[None]), row_hash(&[v("")]));
        assert_ne!(row_hash(&[v("")]), row_hash(&[v("0")]));
        assert_ne!(row_hash(&[v("ab"), v("c")]), row_hash(&[v("a"), v("bc")]));
        assert_ne!(row_hash(&[v("a"), None]), row_hash(&[None, v("a")]));
        assert_eq!(row_hash(&[v("x"), None]), row_hash(&[v("x"), None]));
    }

    #[test]
    fn integer_keys_compare_numerically_beyond_f64() {
        let k = KeyKind::Int;
        assert_eq!(
            compare_value(
                k,
                Some(b"18446744073709551615"),
                Some(b"18446744073709551614")
            ),
            Ordering::Greater
        );
        assert_eq!(compare_value(k, Some(b"-5"), Some(b"3")), Ordering::Less);
        assert_eq!(compare_value(k, Some(b"10"), Some(b"9")), Ordering::Greater);
    }

    #[test]
    fn decimals_compare_numerically() {
        let c = |a: &str, b: &str| compare_decimal(a.as_bytes(), b.as_bytes());
        assert_eq!(c("1.50", "1.5"), Ordering::Equal);
        assert_eq!(c("-0.00", "0"), Ordering::Equal);
        assert_eq!(c("10.0", "9.99"), Ordering::Greater);
        assert_eq!(c("-10.0", "-9.99"), Ordering::Less);
        assert_eq!(c("0.001", "0.0009"), Ordering::Greater);
        assert_eq!(
            c("12345678901234567890123.5", "12345678901234567890123.45"),
            Ordering::Greater
        );
    }

    #[test]
    fn time_keys_handle_sign_and_fraction() {
        let k = KeyKind::Time;
        assert_eq!(
            compare_value(k, Some(b"-01:00:00"), Some(b"00:00:00")),
            Ordering::Less
        );
        assert_eq!(
            compare_value(k, Some(b"100:00:00"), Some(b"99:59:59.999999")),
            Ordering::Greater
        );
    }

    #[test]
    fn null_sorts_first() {
        assert_eq!(
            compare_value(KeyKind::Bytes, None, Some(b"")),
            Ordering::Less
        );
    }
}
