//! Probe values between two keys, for splitting a table not keyed by one integer without
//! reading its rows: the producer asks the server for the real key nearest a probe (an
//! index dive) and how many rows lie between keys (`EXPLAIN`). Probes only steer that
//! search, so a poor one costs a query, never a wrong chunk. Pure.

/// The leading key column's value at a bound, as the producer interpolates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lead {
    Int(i128),
    Text(String),
    /// DATE, DATETIME, TIMESTAMP, TIME.
    Stamp(Stamp),
    /// DECIMAL.
    Dec(Dec),
    /// BINARY, VARBINARY: ordered by their bytes.
    Bytes(Vec<u8>),
}

/// An exact decimal as the server writes it (`-123.450`): the digits as one integer and the
/// number of them after the point. Values beyond 38 digits are not read (their keys are
/// walked instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dec {
    units: i128,
    scale: u32,
}

impl Dec {
    pub fn parse(s: &str) -> Option<Dec> {
        let (neg, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() || !(int.bytes().chain(frac.bytes())).all(|c| c.is_ascii_digit()) {
            return None;
        }
        let units: i128 = format!("{int}{frac}").parse().ok()?;
        Some(Dec {
            units: if neg { -units } else { units },
            scale: u32::try_from(frac.len()).ok()?,
        })
    }

    pub fn render(&self) -> String {
        let digits = self.units.unsigned_abs().to_string();
        let sign = if self.units < 0 { "-" } else { "" };
        if self.scale == 0 {
            return format!("{sign}{digits}");
        }
        let scale = self.scale as usize;
        let digits = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = digits.split_at(digits.len() - scale);
        format!("{sign}{int}.{frac}")
    }

    /// The same value with `scale` digits after the point.
    fn at(&self, scale: u32) -> Option<i128> {
        self.units
            .checked_mul(10i128.checked_pow(scale.checked_sub(self.scale)?)?)
    }
}

/// A DATE, DATETIME or TIMESTAMP as the server writes it (`YYYY-MM-DD[ HH:MM:SS[.f…]]`):
/// microseconds from 1970-01-01 (proleptic Gregorian, no time zone: the text's own clock),
/// and the shape to write a probe back in; or a TIME (`[-]HH:MM:SS[.f…]`, hours up to 838)
/// as signed microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    micros: i128,
    shape: Shape,
    /// Fraction digits written (0 to 6).
    frac: u32,
}

/// The text shape a [`Stamp`] was read in; probes are made between stamps of one shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Date,
    DateTime,
    Time,
}

use crate::civil::{civil_from_days, days_from_civil};

const MICROS_PER_DAY: i128 = 86_400_000_000;

/// `s` as a number of `len` ASCII digits.
fn digits(s: &str, len: std::ops::RangeInclusive<usize>) -> Option<i128> {
    (len.contains(&s.len()) && s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse().ok())?
}

/// `HH:MM:SS[.f…]` (hours of `hour_digits` digits, at most `max_hour`): microseconds and
/// the fraction digits written.
fn parse_clock(
    s: &str,
    hour_digits: std::ops::RangeInclusive<usize>,
    max_hour: i128,
) -> Option<(i128, u32)> {
    let (hms, fraction) = match s.split_once('.') {
        Some((hms, f)) => (hms, Some(f)),
        None => (s, None),
    };
    let mut parts = hms.split(':');
    let (h, m, sec) = (parts.next()?, parts.next()?, parts.next()?);
    let (h, m, sec) = (
        digits(h, hour_digits)?,
        digits(m, 2..=2)?,
        digits(sec, 2..=2)?,
    );
    if parts.next().is_some() || h > max_hour || m > 59 || sec > 59 {
        return None;
    }
    let (frac, micros) = match fraction {
        None => (0, 0),
        Some(f) => {
            let n = digits(f, 1..=6)?;
            (f.len() as u32, n * 10i128.pow(6 - f.len() as u32))
        }
    };
    Some((((h * 60 + m) * 60 + sec) * 1_000_000 + micros, frac))
}

/// `HH:MM:SS` of `micros` (not negative), with `frac` fraction digits.
fn render_clock(micros: i128, frac: u32) -> String {
    let secs = micros / 1_000_000;
    let mut out = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac > 0 {
        let f = (micros % 1_000_000) / 10i128.pow(6 - frac);
        out.push_str(&format!(".{f:0width$}", width = frac as usize));
    }
    out
}

impl Stamp {
    /// Read the server's text form of a DATE, DATETIME or TIMESTAMP; `None` for anything
    /// else (zero dates among them).
    pub fn parse(s: &str) -> Option<Stamp> {
        let b = s.as_bytes();
        if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let (y, m, d) = (
            digits(s.get(0..4)?, 4..=4)?,
            digits(s.get(5..7)?, 2..=2)?,
            digits(s.get(8..10)?, 2..=2)?,
        );
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
            return None;
        }
        let days = days_from_civil(y, m, d) * MICROS_PER_DAY;
        if b.len() == 10 {
            return Some(Stamp {
                micros: days,
                shape: Shape::Date,
                frac: 0,
            });
        }
        if b[10] != b' ' {
            return None;
        }
        let (clock, frac) = parse_clock(s.get(11..)?, 2..=2, 23)?;
        Some(Stamp {
            micros: days + clock,
            shape: Shape::DateTime,
            frac,
        })
    }

    /// Read the server's text form of a TIME; `None` for anything else.
    pub fn parse_time(s: &str) -> Option<Stamp> {
        let (negative, rest) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s),
        };
        let (magnitude, frac) = parse_clock(rest, 2..=3, 838)?;
        Some(Stamp {
            micros: if negative { -magnitude } else { magnitude },
            shape: Shape::Time,
            frac,
        })
    }

    /// The text form, in the shape it was read in.
    pub fn render(&self) -> String {
        match self.shape {
            Shape::Time => {
                let sign = if self.micros < 0 { "-" } else { "" };
                format!("{sign}{}", render_clock(self.micros.abs(), self.frac))
            }
            Shape::Date | Shape::DateTime => {
                let (y, m, d) = civil_from_days(self.micros.div_euclid(MICROS_PER_DAY));
                let date = format!("{y:04}-{m:02}-{d:02}");
                if self.shape == Shape::Date {
                    return date;
                }
                let rest = self.micros.rem_euclid(MICROS_PER_DAY);
                format!("{date} {}", render_clock(rest, self.frac))
            }
        }
    }

    /// The smallest step this shape can write.
    fn step(&self) -> i128 {
        match self.shape {
            Shape::Date => MICROS_PER_DAY,
            Shape::DateTime | Shape::Time => 10i128.pow(6 - self.frac),
        }
    }
}

/// The range of characters seen in a table's text keys: probes are made of these, so they
/// land among the data's own characters (digits stay digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alphabet {
    lo: u32,
    hi: u32,
    /// The largest code point the column's charset holds (latin1: U+00FF): probes made of
    /// characters beyond it would be refused by the server.
    cap: u32,
}

impl Default for Alphabet {
    fn default() -> Self {
        Alphabet {
            lo: u32::MAX,
            hi: 0,
            cap: char::MAX as u32,
        }
    }
}

/// Characters of a text value weighed per probe: with up to 0x110001 symbols a position,
/// six positions still fit a u128.
const DIGITS: usize = 6;

impl Alphabet {
    /// An empty alphabet for a column of `charset` (as `information_schema` names it).
    pub fn for_charset(charset: Option<&str>) -> Alphabet {
        let cap = match charset.unwrap_or_default() {
            "ascii" => 0x7F,
            "latin1" | "latin2" | "latin5" | "latin7" | "cp1250" | "cp1251" | "cp1256"
            | "cp1257" => 0xFF,
            "utf8" | "utf8mb3" | "ucs2" => 0xFFFF,
            _ => char::MAX as u32,
        };
        Alphabet {
            cap,
            ..Alphabet::default()
        }
    }

    /// Widen to the characters of `s` (up to the charset's cap).
    pub fn observe(&mut self, s: &str) {
        for c in s.chars() {
            let c = (c as u32).min(self.cap);
            self.lo = self.lo.min(c);
            self.hi = self.hi.max(c);
        }
    }

    /// Symbols per position: every character of the range, plus "no character" (a shorter
    /// string sorts first).
    fn base(&self) -> u128 {
        u128::from(self.hi.saturating_sub(self.lo)) + 2
    }

    fn digit(&self, c: Option<char>) -> u128 {
        match c {
            None => 0,
            Some(c) => u128::from((c as u32).clamp(self.lo, self.hi) - self.lo) + 1,
        }
    }

    fn char_of(&self, d: u128) -> Option<char> {
        let cp = self.lo + u32::try_from(d).ok()? - 1;
        // A surrogate is no character: take the next one that is.
        char::from_u32(cp).or_else(|| char::from_u32(0xE000))
    }

    /// `s`'s first `DIGITS` characters as a number in [`Self::base`].
    fn weigh(&self, s: &[char]) -> u128 {
        let base = self.base();
        (0..DIGITS).fold(0, |n, i| n * base + self.digit(s.get(i).copied()))
    }
}

/// A probe strictly between `a` and `b` (`a < b`), or `None` when there is no integer or
/// no interpolated string between them. Text is read as digits in the alphabet's base after
/// the common prefix; the order is by code point, which a collation may not share — the
/// server's answer to the probe decides, and the split only needs it to be near the middle.
pub fn between(a: &Lead, b: &Lead, alphabet: &Alphabet) -> Option<Lead> {
    match (a, b) {
        (Lead::Int(a), Lead::Int(b)) => {
            let mid = a.checked_add(b.checked_sub(*a)? / 2)?;
            (mid > *a && mid < *b).then_some(Lead::Int(mid))
        }
        (Lead::Text(a), Lead::Text(b)) => text_between(a, b, alphabet).map(Lead::Text),
        (Lead::Bytes(a), Lead::Bytes(b)) => bytes_between(a, b).map(Lead::Bytes),
        (Lead::Stamp(a), Lead::Stamp(b)) if a.shape == b.shape => {
            // The finer of the two shapes, the middle rounded down to it.
            let shape = if a.frac >= b.frac { *a } else { *b };
            let mid = a.micros + (b.micros - a.micros) / 2;
            let mid = mid - mid.rem_euclid(shape.step());
            let probe = Stamp {
                micros: mid,
                ..shape
            };
            (mid > a.micros && mid < b.micros).then_some(Lead::Stamp(probe))
        }
        (Lead::Dec(a), Lead::Dec(b)) => {
            let scale = a.scale.max(b.scale);
            let (x, y) = (a.at(scale)?, b.at(scale)?);
            let mid = x.checked_add(y.checked_sub(x)? / 2)?;
            (mid > x && mid < y).then_some(Lead::Dec(Dec { units: mid, scale }))
        }
        _ => None,
    }
}

fn text_between(a: &str, b: &str, alphabet: &Alphabet) -> Option<String> {
    if alphabet.lo > alphabet.hi {
        return None;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let (na, nb) = (alphabet.weigh(&a[common..]), alphabet.weigh(&b[common..]));
    if nb <= na + 1 {
        return None;
    }
    let mut mid = na + (nb - na) / 2;
    let base = alphabet.base();
    let mut digits = [0u128; DIGITS];
    for d in digits.iter_mut().rev() {
        *d = mid % base;
        mid /= base;
    }
    let mut out: String = a[..common].iter().collect();
    for d in digits {
        if d == 0 {
            break;
        }
        out.push(alphabet.char_of(d)?);
    }
    // Six characters weighed: a longer `a` can outweigh the probe.
    let (a, b): (String, String) = (a.iter().collect(), b.iter().collect());
    (a < out && out < b).then_some(out)
}

/// Bytes of a binary value weighed per probe: 257 symbols a position (no byte, then each
/// byte value), fifteen positions fit a u128.
const BYTE_DIGITS: usize = 15;

/// [`text_between`] for binary strings, which the server orders by their bytes (a shorter
/// string first): the bytes after the common prefix read as digits in base 257.
fn bytes_between(a: &[u8], b: &[u8]) -> Option<Vec<u8>> {
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let weigh = |s: &[u8]| {
        (0..BYTE_DIGITS).fold(0u128, |n, i| {
            n * 257 + s.get(i).map_or(0, |&c| u128::from(c) + 1)
        })
    };
    let (na, nb) = (weigh(&a[common..]), weigh(&b[common..]));
    if nb <= na + 1 {
        return None;
    }
    let mut mid = na + (nb - na) / 2;
    let mut digits = [0u128; BYTE_DIGITS];
    for d in digits.iter_mut().rev() {
        *d = mid % 257;
        mid /= 257;
    }
    let mut out = a[..common].to_vec();
    for d in digits {
        if d == 0 {
            break;
        }
        out.push(u8::try_from(d - 1).ok()?);
    }
    (a < out.as_slice() && out.as_slice() < b).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(s: &str) -> Lead {
        Lead::Text(s.into())
    }

    fn alphabet_of(values: &[&str]) -> Alphabet {
        let mut a = Alphabet::default();
        for v in values {
            a.observe(v);
        }
        a
    }

    #[test]
    fn integers_halve_and_adjacent_ones_have_nothing_between() {
        let a = Alphabet::default();
        assert_eq!(
            between(&Lead::Int(0), &Lead::Int(10), &a),
            Some(Lead::Int(5))
        );
        assert_eq!(
            between(&Lead::Int(-7), &Lead::Int(-3), &a),
            Some(Lead::Int(-5))
        );
        assert_eq!(between(&Lead::Int(4), &Lead::Int(5), &a), None);
        assert_eq!(
            between(&Lead::Int(i128::MIN / 2), &Lead::Int(i128::MAX / 2), &a),
            Some(Lead::Int(-1))
        );
        assert_eq!(
            between(&Lead::Int(i128::MIN), &Lead::Int(i128::MAX), &a),
            None
        );
    }

    fn stamp(s: &str) -> Lead {
        Lead::Stamp(Stamp::parse(s).unwrap())
    }

    #[test]
    fn stamps_read_and_write_the_servers_shapes() {
        for s in [
            "2024-02-29",
            "1970-01-01 00:00:00",
            "1969-12-31 23:59:59.999999",
            "0001-01-01 00:00:00.5",
            "9999-12-31 23:59:59",
            "2000-03-01 12:34:56.120",
        ] {
            assert_eq!(Stamp::parse(s).unwrap().render(), s);
        }
        for bad in [
            "0000-00-00",
            "0000-00-00 00:00:00",
            "2024-13-01",
            "2024-01-01T00:00:00",
            "2024-01-01 24:00:00",
            "2024-01-01 00:00:00.",
            "2024-01-01 00:00:00.1234567",
            "12:00:00",
        ] {
            assert_eq!(Stamp::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn decimals_read_write_and_halve_exactly() {
        for t in [
            "0",
            "-0.5",
            "123.450",
            "-99999999999999999999.999999",
            "0.001",
        ] {
            assert_eq!(Dec::parse(t).unwrap().render(), t);
        }
        for bad in [
            "",
            ".5",
            "1e3",
            "1.2.3",
            "--1",
            "12a",
            "1234567890123456789012345678901234567890",
        ] {
            assert_eq!(Dec::parse(bad), None, "{bad}");
        }
        let dec = |t: &str| Lead::Dec(Dec::parse(t).unwrap());
        let a = Alphabet::default();
        assert_eq!(between(&dec("1.00"), &dec("2.00"), &a), Some(dec("1.50")));
        assert_eq!(between(&dec("-3"), &dec("1.5"), &a), Some(dec("-0.8")));
        assert_eq!(between(&dec("1.01"), &dec("1.02"), &a), None);
    }

    #[test]
    fn stamps_halve_in_their_own_shape() {
        let a = Alphabet::default();
        assert_eq!(
            between(&stamp("2024-01-01"), &stamp("2024-01-31"), &a),
            Some(stamp("2024-01-16"))
        );
        assert_eq!(
            between(&stamp("2024-01-01"), &stamp("2024-01-02"), &a),
            None
        );
        assert_eq!(
            between(
                &stamp("2024-01-01 00:00:00"),
                &stamp("2024-01-01 00:00:01.5"),
                &a
            ),
            Some(stamp("2024-01-01 00:00:00.7"))
        );
        assert_eq!(
            between(
                &stamp("2024-01-01 00:00:00"),
                &stamp("2024-01-01 00:00:01"),
                &a
            ),
            None
        );
        // A date against a datetime: no probe (the caller walks instead).
        assert_eq!(
            between(&stamp("2024-01-01"), &stamp("2024-02-01 00:00:00"), &a),
            None
        );
    }

    #[test]
    fn decimal_strings_get_probes_made_of_digits() {
        let a = alphabet_of(&["1", "999999"]);
        assert_eq!(between(&text("1"), &text("2"), &a), Some(text("15")));
        // "No character" weighs least, so "1" < "10" < "100" as in the collation.
        assert_eq!(between(&text("100"), &text("300"), &a), Some(text("211")));
        // The alphabet is what the caller observed: here digits only.
        assert_eq!(
            between(&text("k0100"), &text("k0200"), &alphabet_of(&["0", "9"])),
            Some(text("k0155444"))
        );
    }

    #[test]
    fn a_long_lower_value_is_never_passed_by_its_truncated_weight() {
        let a = alphabet_of(&["1", "9"]);
        let p = between(&text("1111119"), &text("1111112"), &a);
        assert_eq!(p, None);
        let p = between(&text("1111119"), &text("2"), &a);
        assert!(
            matches!(&p, Some(Lead::Text(s)) if s.as_str() > "1111119"),
            "{p:?}"
        );
    }

    #[test]
    fn probes_stay_within_the_charset() {
        let mut a = Alphabet::for_charset(Some("latin1"));
        a.observe("a€");
        a.observe("ÿ");
        let p = between(&text("a"), &text("ÿ€"), &a);
        assert!(
            matches!(&p, Some(Lead::Text(s)) if s.chars().all(|c| (c as u32) <= 0xFF)),
            "{p:?}"
        );
    }

    #[test]
    fn no_probe_between_neighbours_or_out_of_order_values() {
        let a = alphabet_of(&["a", "z"]);
        assert_eq!(between(&text("b"), &text("a"), &a), None);
        assert_eq!(between(&text("abc"), &text("abc"), &a), None);
        assert_eq!(between(&text("x"), &text("x"), &Alphabet::default()), None);
    }

    #[test]
    fn byte_probes_split_uuid_like_keys_near_the_middle() {
        let a = [0x10u8; 16].to_vec();
        let b = [0xF0u8; 16].to_vec();
        let Some(Lead::Bytes(m)) = between(
            &Lead::Bytes(a.clone()),
            &Lead::Bytes(b.clone()),
            &Alphabet::default(),
        ) else {
            panic!("no probe between two distant keys");
        };
        assert!(a < m && m < b);
        assert_eq!(m[0], 0x80, "{m:02x?}");
        // A shared prefix is kept; adjacent values have nothing between them.
        let Some(Lead::Bytes(m)) = between(
            &Lead::Bytes(b"key\x00".to_vec()),
            &Lead::Bytes(b"key\xff".to_vec()),
            &Alphabet::default(),
        ) else {
            panic!("no probe after a common prefix");
        };
        assert!(
            m.starts_with(b"key")
                && m.as_slice() > b"key\x00".as_slice()
                && m.as_slice() < b"key\xff".as_slice()
        );
        assert_eq!(bytes_between(b"a", b"a\x00"), None);
        assert_eq!(bytes_between(b"a", b"a"), None);
    }

    #[test]
    fn clocks_read_the_servers_time_text() {
        for t in [
            "00:00:00",
            "-00:00:01",
            "838:59:59",
            "-838:59:59.000000",
            "12:30:00.5",
            "01:02:03.000004",
        ] {
            assert_eq!(Stamp::parse_time(t).unwrap().render(), t);
        }
        for bad in [
            "",
            "1:00:00",
            "12:60:00",
            "12:00",
            "12:00:00.",
            "12:00:00.1234567",
            "1234:00:00",
            "ab:cd:ef",
            "12:00:00:00",
        ] {
            assert_eq!(Stamp::parse_time(bad), None, "{bad}");
        }
        let probe = between(
            &Lead::Stamp(Stamp::parse_time("-10:00:00").unwrap()),
            &Lead::Stamp(Stamp::parse_time("12:00:00.25").unwrap()),
            &Alphabet::default(),
        );
        assert_eq!(
            probe,
            Some(Lead::Stamp(Stamp::parse_time("01:00:00.12").unwrap()))
        );
    }

    proptest! {
        /// TIME values write back what they read, order as their values, and a probe
        /// lies strictly between its ends.
        #[test]
        fn clock_probes_lie_strictly_between(
            a in -3_020_399_999_999i64..=3_020_399_999_999,
            b in -3_020_399_999_999i64..=3_020_399_999_999,
            fa in 0u32..=6,
            fb in 0u32..=6,
        ) {
            let clock = |v: i64, f: u32| {
                let step = 10i128.pow(6 - f);
                Stamp { micros: i128::from(v) - i128::from(v).rem_euclid(step), shape: Shape::Time, frac: f }
            };
            let (ca, cb) = (clock(a, fa), clock(b, fb));
            prop_assert_eq!(Stamp::parse_time(&ca.render()), Some(ca));
            if let Some(Lead::Stamp(p)) = between(&Lead::Stamp(ca), &Lead::Stamp(cb), &Alphabet::default()) {
                prop_assert!(ca.micros < p.micros && p.micros < cb.micros);
                prop_assert_eq!(Stamp::parse_time(&p.render()), Some(p));
            }
        }

        /// A byte probe lies strictly between its ends in byte order (a shorter string first).
        #[test]
        fn byte_probes_lie_strictly_between(
            a in proptest::collection::vec(any::<u8>(), 0..20),
            b in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            if let Some(p) = bytes_between(&a, &b) {
                prop_assert!(a < p && p < b, "{:?} < {:?} < {:?}", a, p, b);
            }
            if a < b && b.len() > a.len() + 1 && b.starts_with(&a) && b[a.len()] > 0 {
                // Room for a byte after `a`: a probe exists.
                prop_assert!(bytes_between(&a, &b).is_some());
            }
        }

        /// A decimal probe lies strictly between its ends, by value.
        #[test]
        fn decimal_probes_lie_strictly_between(a in -10_000_000i64..10_000_000, b in -10_000_000i64..10_000_000, sa in 0u32..4, sb in 0u32..4) {
            let text = |v: i64, s: u32| Dec { units: i128::from(v), scale: s }.render();
            let (ta, tb) = (text(a, sa), text(b, sb));
            let (x, y): (f64, f64) = (ta.parse().unwrap(), tb.parse().unwrap());
            prop_assert_eq!(Dec::parse(&ta).unwrap().render(), ta.clone());
            if let Some(Lead::Dec(p)) = between(&Lead::Dec(Dec::parse(&ta).unwrap()), &Lead::Dec(Dec::parse(&tb).unwrap()), &Alphabet::default()) {
                let m: f64 = p.render().parse().unwrap();
                prop_assert!(x < m && m < y, "{} < {} < {}", ta, p.render(), tb);
            }
        }

        /// Stamps write back what they read, and their order is the text's.
        #[test]
        fn stamps_round_trip_in_text_order(
            a in (1i128..=9999, 1i128..=12, 1i128..=28, 0i128..86_400, 0i128..1_000_000),
            b in (1i128..=9999, 1i128..=12, 1i128..=28, 0i128..86_400, 0i128..1_000_000),
        ) {
            let text = |(y, m, d, s, f): (i128, i128, i128, i128, i128)| {
                format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{f:06}", s / 3600, s / 60 % 60, s % 60)
            };
            let (ta, tb) = (text(a), text(b));
            let (sa, sb) = (Stamp::parse(&ta).unwrap(), Stamp::parse(&tb).unwrap());
            prop_assert_eq!(sa.render(), ta.clone());
            prop_assert_eq!(ta.cmp(&tb), sa.micros.cmp(&sb.micros));
            if let Some(Lead::Stamp(p)) = between(&Lead::Stamp(sa), &Lead::Stamp(sb), &Alphabet::default()) {
                let tp = p.render();
                prop_assert!(ta < tp && tp < tb, "{} < {} < {}", ta, tp, tb);
            }
        }

        /// A probe is strictly between its ends by code point order whenever one is given.
        #[test]
        fn probes_lie_strictly_between(a in "[a-f0-9]{0,9}", b in "[a-f0-9]{0,9}") {
            let (lo, hi) = if a < b { (a, b) } else { (b, a) };
            let alpha = alphabet_of(&[&lo, &hi, "0", "f"]);
            if let Some(Lead::Text(p)) = between(&text(&lo), &text(&hi), &alpha) {
                prop_assert!(lo < p && p < hi, "{lo:?} < {p:?} < {hi:?}");
            }
        }
    }
}
