//! Scenarios and data sets: `TxR-DRIFT` names, the drift and the expected differences of
//! each table.

use crate::Res;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Drift {
    Equal,
    /// Rows drifted in total, over all tables.
    Rows(u64),
    /// Parts per million of all rows.
    Ppm(u64),
}

impl Drift {
    pub(crate) fn parse(s: &str) -> Option<Drift> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("equal") || s == "0" {
            return Some(Drift::Equal);
        }
        if let Some(n) = s.strip_suffix("rows") {
            return n.parse().ok().map(Drift::Rows);
        }
        let pct = s.strip_suffix("pct").or_else(|| s.strip_suffix('%'));
        if let Some(p) = pct {
            let p: f64 = p.parse().ok()?;
            return Some(Drift::Ppm((p * 10_000.0).round() as u64));
        }
        if s.contains('.') {
            let f: f64 = s.parse().ok()?;
            return Some(Drift::Ppm((f * 1_000_000.0).round() as u64));
        }
        s.parse().ok().map(Drift::Rows)
    }

    pub(crate) fn label(self) -> String {
        match self {
            Drift::Equal => "equal".into(),
            Drift::Rows(n) => format!("{n}rows"),
            Drift::Ppm(p) if p.is_multiple_of(10_000) => format!("{}pct", p / 10_000),
            Drift::Ppm(p) => format!("{}pct", p as f64 / 10_000.0),
        }
    }
}

/// One data set: `tables` × `rows` sysbench rows, drifted downstream by `drift`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct DataSpec {
    pub(crate) tables: u32,
    pub(crate) rows: u64,
    pub(crate) drift: Drift,
}

impl DataSpec {
    pub(crate) fn parse(s: &str) -> Option<DataSpec> {
        let (size, drift) = s.split_once('-')?;
        let (t, r) = size.split_once(['x', 'X'])?;
        Some(DataSpec {
            tables: t.parse().ok().filter(|t| *t > 0)?,
            // 0: empty tables (the many-tables scenarios).
            rows: parse_count(r)?,
            drift: Drift::parse(drift)?,
        })
    }

    pub(crate) fn label(&self) -> String {
        format!(
            "{}x{}-{}",
            self.tables,
            count_label(self.rows),
            self.drift.label()
        )
    }

    pub(crate) fn total_rows(&self) -> u64 {
        u64::from(self.tables) * self.rows
    }

    /// Rows drifted per table: (missing, extra, changed). The total is spread over the tables
    /// (the first ones get one more), each table's share over the kinds (missing first).
    pub(crate) fn plan(&self) -> Vec<Expected> {
        let total = match self.drift {
            Drift::Equal => 0,
            Drift::Rows(n) => n,
            Drift::Ppm(p) => ((self.total_rows() as u128 * p as u128 + 500_000) / 1_000_000) as u64,
        };
        let t = u64::from(self.tables);
        (0..t)
            .map(|i| {
                let d = total / t + u64::from(i < total % t);
                Expected {
                    missing: d.div_ceil(3),
                    extra: (d + 1) / 3,
                    changed: d / 3,
                }
            })
            .collect()
    }
}

/// `1M`, `100k`, `250000`.
pub(crate) fn parse_count(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1_000),
        'm' | 'M' => (&s[..s.len() - 1], 1_000_000),
        _ => (s, 1),
    };
    let v: f64 = num.parse().ok()?;
    Some((v * mul as f64).round() as u64)
}

pub(crate) fn count_label(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(100_000) {
        let m = n as f64 / 1e6;
        format!("{}M", m)
    } else if n >= 1_000 && n.is_multiple_of(100) {
        format!("{}k", n as f64 / 1e3)
    } else {
        n.to_string()
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Scenario {
    Single(DataSpec),
    Linear { small: DataSpec, large: DataSpec },
}

pub(crate) fn parse_scenario(name: &str, quick: bool) -> Res<Scenario> {
    let scale = |d: DataSpec| DataSpec {
        rows: if quick { (d.rows / 10).max(1) } else { d.rows },
        ..d
    };
    if name.eq_ignore_ascii_case("linear") {
        let small = DataSpec {
            tables: 1,
            rows: 1_000_000,
            drift: Drift::Equal,
        };
        return Ok(Scenario::Linear {
            small: scale(small),
            large: scale(DataSpec {
                rows: 10_000_000,
                ..small
            }),
        });
    }
    DataSpec::parse(name)
        .map(|d| Scenario::Single(scale(d)))
        .ok_or_else(|| format!("unknown scenario '{name}' (see --help)").into())
}

/// Expected differences of one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Expected {
    pub(crate) missing: u64,
    pub(crate) extra: u64,
    pub(crate) changed: u64,
}

impl Expected {
    pub(crate) fn total(&self) -> u64 {
        self.missing + self.extra + self.changed
    }
}
