//! Key ranges and their SQL predicates. Pure.

use crate::row::Row;
use crate::schema::Column;
use crate::sql::quote_ident;
use serde::{Deserialize, Serialize};

/// A range of key tuples: `lower < key <= upper`; a missing bound is open.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyRange {
    pub lower: Option<Row>,
    pub upper: Option<Row>,
}

impl KeyRange {
    /// The whole key space.
    pub fn full() -> Self {
        Self::default()
    }

    /// Split at `mid` into `(lower, mid]` and `(mid, upper]`.
    pub fn split_at(&self, mid: Row) -> (KeyRange, KeyRange) {
        (
            KeyRange {
                lower: self.lower.clone(),
                upper: Some(mid.clone()),
            },
            KeyRange {
                lower: Some(mid),
                upper: self.upper.clone(),
            },
        )
    }

    /// Human-readable form for reports and fix SQL headers, e.g. `(10) < (id) <= (20)`.
    pub fn describe(&self, key: &[&Column]) -> String {
        let names = key
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let tuple = |r: &Row| {
            key.iter()
                .zip(r)
                .map(|(c, v)| c.literal(v.as_deref()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (&self.lower, &self.upper) {
            (None, None) => "all rows".to_string(),
            (Some(l), None) => format!("({}) < ({names})", tuple(l)),
            (None, Some(u)) => format!("({names}) <= ({})", tuple(u)),
            (Some(l), Some(u)) => format!("({}) < ({names}) <= ({})", tuple(l), tuple(u)),
        }
    }
}

/// Lexicographic comparison of `key` with `bound`: `strict_last` picks `<`/`>` versus
/// `<=`/`>=` for the last column. Expanded into ORs of equalities because not every server
/// turns row-constructor comparisons into index ranges.
fn bound_predicate(key: &[&Column], bound: &Row, op: &str, last_op: &str) -> String {
    let mut terms = Vec::with_capacity(key.len());
    for i in 0..key.len() {
        let mut parts = Vec::with_capacity(i + 1);
        for j in 0..i {
            parts.push(format!(
                "{} = {}",
                quote_ident(&key[j].name),
                key[j].literal(bound[j].as_deref())
            ));
        }
        let op = if i + 1 == key.len() { last_op } else { op };
        parts.push(format!(
            "{} {op} {}",
            quote_ident(&key[i].name),
            key[i].literal(bound[i].as_deref())
        ));
        terms.push(parts.join(" AND "));
    }
    if terms.len() == 1 {
        terms.pop().unwrap_or_default()
    } else {
        format!(
            "({})",
            terms
                .iter()
                .map(|t| format!("({t})"))
                .collect::<Vec<_>>()
                .join(" OR ")
        )
    }
}

/// The WHERE predicate selecting `range` over the key columns `key`.
pub fn range_predicate(key: &[&Column], range: &KeyRange) -> String {
    let mut parts = Vec::new();
    if let Some(lower) = &range.lower {
        parts.push(bound_predicate(key, lower, ">", ">"));
    }
    if let Some(upper) = &range.upper {
        parts.push(bound_predicate(key, upper, "<", "<="));
    }
    if parts.is_empty() {
        "TRUE".to_string()
    } else {
        parts.join(" AND ")
    }
}

/// The WHERE predicate comparing `key` with `bound` lexicographically: `op` (`<` or `>`)
/// strictly, or `op_or_equal` (`<=`, `>=`) to admit `bound` itself. `key` may be a prefix
/// of a chunk key (with `bound` as long).
pub fn compare_predicate(key: &[&Column], bound: &Row, op: &str, op_or_equal: &str) -> String {
    bound_predicate(key, bound, op, op_or_equal)
}

/// Combine a range predicate with the user's `range` filter.
pub fn with_filter(predicate: String, filter: Option<&str>) -> String {
    match filter {
        Some(f) if !f.trim().is_empty() => format!("({predicate}) AND ({f})"),
        _ => predicate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::TypeClass;

    fn col(name: &str, class: TypeClass) -> Column {
        Column {
            name: name.into(),
            ordinal: 1,
            data_type: String::new(),
            column_type: String::new(),
            class,
            nullable: false,
            unsigned: false,
            charset: None,
            collation: None,
            default: None,
            generated: None,
            invisible: false,
        }
    }

    fn v(s: &str) -> Option<Vec<u8>> {
        Some(s.as_bytes().to_vec())
    }

    #[test]
    fn single_column_bounds() {
        let id = col("id", TypeClass::Int);
        let r = KeyRange {
            lower: Some(vec![v("10")]),
            upper: Some(vec![v("20")]),
        };
        assert_eq!(range_predicate(&[&id], &r), "`id` > 10 AND `id` <= 20");
        assert_eq!(range_predicate(&[&id], &KeyRange::full()), "TRUE");
    }

    #[test]
    fn composite_bounds_expand_lexicographically() {
        let a = col("a", TypeClass::Int);
        let b = col("b", TypeClass::Text);
        let r = KeyRange {
            lower: Some(vec![v("1"), v("x")]),
            upper: None,
        };
        assert_eq!(
            range_predicate(&[&a, &b], &r),
            "((`a` > 1) OR (`a` = 1 AND `b` > 'x'))"
        );
        let r = KeyRange {
            lower: None,
            upper: Some(vec![v("1"), v("x")]),
        };
        assert_eq!(
            range_predicate(&[&a, &b], &r),
            "((`a` < 1) OR (`a` = 1 AND `b` <= 'x'))"
        );
    }
}
