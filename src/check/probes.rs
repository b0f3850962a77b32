//! Real keys inside a key range, found near interpolated probes by index dives
//! ([`crate::chunk::between`]): how the producer splits keys led by a string, an integer, a
//! decimal or a date/time (DATE, DATETIME, TIMESTAMP) without reading rows, and how a
//! differing chunk of such a key is cut into parts.

use super::plan::TablePlan;
use crate::chunk::{between, parse_int, Alphabet, Dec, KeyRange, Lead, Stamp};
use crate::db::Conn;
use crate::error::Result;
use crate::row::Row;
use crate::schema::TypeClass;

/// Finds real keys inside key ranges of one table.
pub(super) struct Probes {
    class: Option<TypeClass>,
    /// The leading value of the table's first key: what an open lower bound interpolates from.
    first: Option<Lead>,
    /// Characters the text keys use beyond the prefix all of them share.
    alphabet: Alphabet,
    /// Length in characters of that shared prefix.
    shared: usize,
}

impl Probes {
    /// Probes for the table between keys `first` and `last` (its first and last key when
    /// splitting it; a chunk's bounds when narrowing that chunk).
    pub(super) fn new(plan: &TablePlan, first: &Row, last: &Row) -> Probes {
        let mut p = Probes {
            class: plan.probe_lead(),
            first: None,
            alphabet: Alphabet::for_charset(key_charset(plan, 0)),
            shared: 0,
        };
        p.first = p.lead(first);
        if let (Some(Lead::Text(a)), Some(Lead::Text(b))) = (p.first.clone(), p.lead(last)) {
            p.shared = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
            p.observe(&Lead::Text(a));
            p.observe(&Lead::Text(b));
        }
        p
    }

    fn lead(&self, row: &Row) -> Option<Lead> {
        value(self.class?, row.first()?)
    }

    fn observe(&mut self, lead: &Lead) {
        if let Lead::Text(s) = lead {
            let rest: String = s.chars().skip(self.shared).collect();
            self.alphabet.observe(&rest);
        }
    }

    /// A real key strictly inside `range` (which has an upper bound), near the middle of
    /// its values on the first key column where its bounds differ (the leading column, or
    /// a later one inside one leading value); `None` when no probe finds one.
    pub(super) async fn key_inside(
        &mut self,
        conn: &mut Conn,
        plan: &TablePlan,
        range: &KeyRange,
    ) -> Result<Option<Row>> {
        let Some(upper) = &range.upper else {
            return Ok(None);
        };
        let j = match &range.lower {
            Some(l) => l.iter().zip(upper).take_while(|(a, b)| a == b).count(),
            None => 0,
        };
        if j >= upper.len() {
            return Ok(None);
        }
        let probe = if j == 0 {
            let low = match &range.lower {
                Some(l) => self.lead(l),
                None => self.first.clone(),
            };
            let (Some(low), Some(high)) = (low, self.lead(upper)) else {
                return Ok(None);
            };
            between(&low, &high, &self.alphabet)
        } else {
            // Inside one leading value: interpolate on column `j` between the bounds alone.
            let (Some(class), Some(lower)) = (plan.probe_class(j), &range.lower) else {
                return Ok(None);
            };
            let (Some(low), Some(high)) = (value(class, &lower[j]), value(class, &upper[j])) else {
                return Ok(None);
            };
            let mut alphabet = Alphabet::for_charset(key_charset(plan, j));
            for v in [&low, &high] {
                if let Lead::Text(s) = v {
                    alphabet.observe(s);
                }
            }
            between(&low, &high, &alphabet)
        };
        let Some(probe) = probe else {
            return Ok(None);
        };
        for below in [true, false] {
            let sql = plan.key_near_sql((range.lower.as_ref(), upper), &upper[..j], &probe, below);
            let found = match conn.first(&sql).await {
                Ok(found) => found,
                // A probe the column's charset cannot hold (a latin1 key probed with a
                // character between its own, an utf8mb3 one with an emoji): the server
                // refuses the comparison. No cut here, nothing lost.
                Err(e) if !e.is_connection_lost() => {
                    tracing::debug!("{}: probe refused: {e}", plan.target);
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            if let Some(key) = found {
                if let Some(lead) = self.lead(&key) {
                    self.observe(&lead);
                }
                return Ok(Some(key));
            }
        }
        Ok(None)
    }
}

/// The charset of key column `j` (upstream).
fn key_charset(plan: &TablePlan, j: usize) -> Option<&str> {
    plan.key_cols().get(j).and_then(|c| c.charset.as_deref())
}

/// A key column's value as probes interpolate it.
fn value(class: TypeClass, v: &Option<Vec<u8>>) -> Option<Lead> {
    let v = v.as_deref()?;
    match class {
        TypeClass::Int => parse_int(v).map(Lead::Int),
        TypeClass::Text => std::str::from_utf8(v).ok().map(|s| Lead::Text(s.into())),
        TypeClass::Decimal => std::str::from_utf8(v)
            .ok()
            .and_then(Dec::parse)
            .map(Lead::Dec),
        TypeClass::Date | TypeClass::DateTime | TypeClass::Timestamp => std::str::from_utf8(v)
            .ok()
            .and_then(Stamp::parse)
            .map(Lead::Stamp),
        TypeClass::Binary => Some(Lead::Bytes(v.to_vec())),
        TypeClass::Year => parse_int(v).map(Lead::Int),
        TypeClass::Time => std::str::from_utf8(v)
            .ok()
            .and_then(Stamp::parse_time)
            .map(Lead::Stamp),
        _ => None,
    }
}

/// Cut `range` (both bounds set) into up to `parts` (a power of two) consecutive ranges at
/// real keys near the middle of its leading values, halving each piece again; pieces where
/// no key is found stay whole. One index dive per cut, no rows read.
pub(super) async fn cut(
    conn: &mut Conn,
    plan: &TablePlan,
    range: &KeyRange,
    parts: usize,
) -> Result<Vec<KeyRange>> {
    let (Some(lower), Some(upper)) = (&range.lower, &range.upper) else {
        return Ok(vec![range.clone()]);
    };
    let mut probes = Probes::new(plan, lower, upper);
    let mut pieces = vec![range.clone()];
    while pieces.len() < parts {
        let mut next = Vec::with_capacity(pieces.len() * 2);
        for piece in &pieces {
            match probes.key_inside(conn, plan, piece).await? {
                Some(mid) => {
                    let (left, right) = piece.split_at(mid);
                    next.extend([left, right]);
                }
                None => next.push(piece.clone()),
            }
        }
        if next.len() == pieces.len() {
            break;
        }
        pieces = next;
    }
    Ok(pieces)
}
