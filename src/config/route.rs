//! Table routing: which downstream table an upstream table is compared with.
//!
//! Built from one data source's `route-rules`, in the order listed there; the **first**
//! matching rule wins (sync-diff-inspector's router instead errors on some overlaps, which
//! an ordered list makes unnecessary). Patterns use the table-filter wildcard syntax and are
//! case-insensitive. A rule without `table-pattern` matches every table of its schemas; a
//! rule without `target-table` keeps the upstream table name.

use super::model::Route;
use super::pattern::NamePattern;
use crate::error::{Error, Result};

/// One compiled `[routes.NAME]` rule.
#[derive(Debug, Clone)]
struct CompiledRoute {
    schema: NamePattern,
    table: Option<NamePattern>,
    target_schema: String,
    target_table: Option<String>,
}

impl CompiledRoute {
    fn matches(&self, schema: &str, table: &str) -> bool {
        self.schema.matches(schema) && self.table.as_ref().is_none_or(|t| t.matches(table))
    }
}

/// The ordered route rules of one upstream data source.
#[derive(Debug, Clone, Default)]
pub struct RouteRules {
    rules: Vec<CompiledRoute>,
}

impl RouteRules {
    /// Compiles `(name, rule)` pairs in priority order; errors name the rule and its key.
    pub fn new<'a, I>(routes: I) -> Result<RouteRules>
    where
        I: IntoIterator<Item = (&'a str, &'a Route)>,
    {
        let mut rules = Vec::new();
        for (name, route) in routes {
            let pattern = |key: &str, text: &str| {
                NamePattern::parse_whole(text).map_err(|reason| {
                    Error::Config(format!(
                        "[routes.{name}] {key}: invalid pattern '{text}': {reason}"
                    ))
                })
            };
            if route.target_schema.is_empty() {
                return Err(Error::Config(format!(
                    "[routes.{name}] target-schema must not be empty"
                )));
            }
            rules.push(CompiledRoute {
                schema: pattern("schema-pattern", &route.schema_pattern)?,
                table: route
                    .table_pattern
                    .as_deref()
                    .map(|t| pattern("table-pattern", t))
                    .transpose()?,
                target_schema: route.target_schema.clone(),
                target_table: route.target_table.clone(),
            });
        }
        Ok(RouteRules { rules })
    }

    /// Whether there are no rules (every table maps to itself).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The downstream `(schema, table)` for an upstream table: the first matching rule's
    /// target, or the table's own name when no rule matches.
    pub fn route(&self, schema: &str, table: &str) -> (String, String) {
        match self.rules.iter().find(|r| r.matches(schema, table)) {
            Some(rule) => (
                rule.target_schema.clone(),
                rule.target_table
                    .clone()
                    .unwrap_or_else(|| table.to_string()),
            ),
            None => (schema.to_string(), table.to_string()),
        }
    }

    /// Whether a rule (not the identity) routes `schema`.`table`. sync-diff-inspector
    /// compares a rule's target name exactly with the downstream's tables, and the identity
    /// case-insensitively (it adds an identity rule per target table).
    pub fn matches_rule(&self, schema: &str, table: &str) -> bool {
        self.rules.iter().any(|r| r.matches(schema, table))
    }

    /// Like [`RouteRules::route`], but `None` for an upstream table that sync-diff-inspector
    /// "shields": one that no rule matches while some rule routes other tables *to* its
    /// name (a `target-schema`.`target-table`, or any table of a `target-schema` when that
    /// rule has no `target-table`). Without this, a same-named upstream table would be
    /// merged into the routed ones by accident.
    pub fn resolve(&self, schema: &str, table: &str) -> Option<(String, String)> {
        if let Some(rule) = self.rules.iter().find(|r| r.matches(schema, table)) {
            return Some((
                rule.target_schema.clone(),
                rule.target_table
                    .clone()
                    .unwrap_or_else(|| table.to_string()),
            ));
        }
        let shielded = self.rules.iter().any(|r| {
            r.target_schema.eq_ignore_ascii_case(schema)
                && r.target_table
                    .as_deref()
                    .is_none_or(|t| t.eq_ignore_ascii_case(table))
        });
        (!shielded).then(|| (schema.to_string(), table.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(schema: &str, table: Option<&str>, ts: &str, tt: Option<&str>) -> Route {
        Route {
            schema_pattern: schema.into(),
            table_pattern: table.map(Into::into),
            target_schema: ts.into(),
            target_table: tt.map(Into::into),
        }
    }

    fn rules(list: &[(&str, Route)]) -> RouteRules {
        RouteRules::new(list.iter().map(|(n, r)| (*n, r))).unwrap()
    }

    fn pair(s: &str, t: &str) -> (String, String) {
        (s.to_string(), t.to_string())
    }

    #[test]
    fn shard_merge_and_identity() {
        let r = rules(&[("rule1", route("test_*", Some("t_*"), "test", Some("t")))]);
        assert_eq!(r.route("test_1", "t_1"), pair("test", "t"));
        assert_eq!(r.route("TEST_2", "T_9"), pair("test", "t"));
        assert_eq!(r.route("test_1", "other"), pair("test_1", "other"));
        assert_eq!(r.route("x", "t_1"), pair("x", "t_1"));
        assert!(RouteRules::default().is_empty());
        assert_eq!(RouteRules::default().route("a", "b"), pair("a", "b"));
    }

    #[test]
    fn schema_only_rule_keeps_table_name() {
        let r = rules(&[("r", route("shard_?", None, "merged", None))]);
        assert_eq!(r.route("shard_1", "orders"), pair("merged", "orders"));
        assert_eq!(r.route("shard_10", "orders"), pair("shard_10", "orders"));
    }

    #[test]
    fn first_matching_rule_wins() {
        let r = rules(&[
            ("specific", route("db", Some("t1"), "a", Some("x"))),
            ("general", route("db", Some("*"), "b", None)),
        ]);
        assert_eq!(r.route("db", "t1"), pair("a", "x"));
        assert_eq!(r.route("db", "t2"), pair("b", "t2"));
    }

    #[test]
    fn shield_same_named_upstream_table() {
        let r = rules(&[("rule1", route("test_*", Some("t_*"), "test", Some("t")))]);
        assert_eq!(r.resolve("test_1", "t_1"), Some(pair("test", "t")));
        assert_eq!(r.resolve("test", "t"), None);
        assert_eq!(r.resolve("Test", "T"), None);
        assert_eq!(r.resolve("test", "u"), Some(pair("test", "u")));

        let r = rules(&[("r", route("shard_*", None, "merged", None))]);
        assert_eq!(r.resolve("merged", "orders"), None);
        assert_eq!(r.resolve("other", "orders"), Some(pair("other", "orders")));

        // A rule routing the name to itself keeps it.
        let r = rules(&[("r", route("test*", Some("t*"), "test", Some("t")))]);
        assert_eq!(r.resolve("test", "t"), Some(pair("test", "t")));
    }

    #[test]
    fn escapes_and_errors() {
        let r = rules(&[("r", route("`my.db`", Some("t\\*"), "x", None))]);
        assert_eq!(r.route("my.db", "t*"), pair("x", "t*"));
        assert_eq!(r.route("my.db", "ta"), pair("my.db", "ta"));

        let bad = route("a.b", None, "x", None);
        let err = RouteRules::new([("r1", &bad)]).unwrap_err().to_string();
        assert!(
            err.starts_with("[routes.r1] schema-pattern: invalid pattern 'a.b'"),
            "{err}"
        );
        let bad = route("a", Some("t["), "x", None);
        let err = RouteRules::new([("r2", &bad)]).unwrap_err().to_string();
        assert!(err.contains("[routes.r2] table-pattern"), "{err}");
        let bad = route("a", None, "", None);
        assert!(RouteRules::new([("r3", &bad)]).is_err());
    }
}
