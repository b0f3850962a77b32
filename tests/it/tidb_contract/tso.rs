//! TSO: the oracle layout, UTC rendering and parsing.

use super::SAMPLE;
use syncgate::snapshot::tidb::Tso;

#[test]
fn tso_parts_follow_the_oracle_layout() {
    let t = Tso(SAMPLE);
    assert_eq!(t.physical_ms(), 1_645_790_279_990);
    assert_eq!(t.logical(), 1);
    assert_eq!(Tso::new(1_645_790_279_990, 1), t);
    assert_eq!(Tso::from_unix_ms(1_645_790_279_990), Tso(SAMPLE - 1));
    assert_eq!(Tso::from_unix_ms(1_645_790_279_990).logical(), 0);
    // Round trip through the parts for a spread of values.
    for raw in [1u64, 262_143, 262_144, SAMPLE, u64::MAX] {
        let t = Tso(raw);
        assert_eq!(Tso::new(t.physical_ms(), t.logical()), t, "{raw}");
        assert_eq!((t.physical_ms() << 18) + t.logical(), raw);
    }
    // Out-of-range parts clamp instead of wrapping.
    assert_eq!(Tso::new(0, 1 << 20).logical(), Tso::LOGICAL_MASK);
    assert_eq!(
        Tso::from_unix_ms(u64::MAX).physical_ms(),
        Tso::MAX_PHYSICAL_MS
    );
}

#[test]
fn tso_renders_as_utc_time() {
    let t = Tso(SAMPLE);
    assert_eq!(t.to_datetime_utc(), "2022-02-25T11:57:59.990Z");
    assert_eq!(t.to_sql_datetime_utc(), "2022-02-25 11:57:59.990");
    assert_eq!(
        t.to_string(),
        "TSO 431434047157698561 (2022-02-25 11:57:59.990 UTC)"
    );
    assert_eq!(
        Tso::from_unix_ms(1_645_790_279_000).to_string(),
        "TSO 431434046898176000 (2022-02-25 11:57:59.000 UTC)"
    );
    assert_eq!(Tso(0).to_datetime_utc(), "1970-01-01T00:00:00.000Z");
}

#[test]
fn tso_parses_decimal_text_only() {
    assert_eq!("431434047157698561".parse::<Tso>().unwrap(), Tso(SAMPLE));
    assert_eq!(" 431434047157698561\n".parse::<Tso>().unwrap(), Tso(SAMPLE));
    for bad in ["", "0", "-1", "12a", "4.5", "18446744073709551616"] {
        assert!(bad.parse::<Tso>().is_err(), "{bad:?} must not parse");
    }
}
