//! Table filters (`target-check-tables`, `target-tables`) in the TiDB table-filter syntax.
//!
//! A filter is a list of `schema.table` rules; a rule starting with `!` excludes. Rules are
//! evaluated in order and the **last** matching rule decides; a table no rule matches is
//! not selected. So `["*.*", "!mysql.*"]` selects everything outside `mysql`, while
//! `["!mysql.*"]` alone selects nothing. Blank entries and entries starting with `#` are
//! ignored, as in TiDB. Name matching is case-insensitive (see the `pattern` module for the
//! wildcard syntax). Not supported: `/regex/` parts and `@file` imports.
//!
//! System schemas ([`is_system_schema`]) are never selected, whatever the rules say: they
//! differ between any two servers by design.

use super::pattern::NamePattern;
use crate::error::{Error, Result};

/// Schemas that hold server metadata rather than user data (compared case-insensitively).
const SYSTEM_SCHEMAS: &[&str] = &[
    "mysql",
    "information_schema",
    "performance_schema",
    "sys",
    "metrics_schema",
    "inspection_schema",
];

/// Whether `name` is a system schema (`mysql`, `information_schema`, `performance_schema`,
/// `sys`, and TiDB's `metrics_schema` / `inspection_schema`), in any letter case. Such
/// schemas are never checked.
pub fn is_system_schema(name: &str) -> bool {
    SYSTEM_SCHEMAS.iter().any(|s| s.eq_ignore_ascii_case(name))
}

/// One `[!]schema.table` rule.
#[derive(Debug, Clone)]
struct Rule {
    include: bool,
    schema: NamePattern,
    table: NamePattern,
}

/// A compiled table filter: which `schema.table` names a check covers.
#[derive(Debug, Clone)]
pub struct TableFilter {
    rules: Vec<Rule>,
}

impl TableFilter {
    /// Compiles filter rules; an invalid rule is an [`Error::Config`] quoting it.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<TableFilter> {
        let mut rules = Vec::with_capacity(patterns.len());
        for pattern in patterns {
            let pattern = pattern.as_ref();
            if let Some(rule) = parse_rule(pattern).map_err(|reason| {
                Error::Config(format!("invalid table pattern '{pattern}': {reason}"))
            })? {
                rules.push(rule);
            }
        }
        Ok(TableFilter { rules })
    }

    /// Whether the filter selects `schema.table`. System schemas are never selected.
    pub fn matches(&self, schema: &str, table: &str) -> bool {
        if is_system_schema(schema) {
            return false;
        }
        self.rules
            .iter()
            .rev()
            .find(|r| r.schema.matches(schema) && r.table.matches(table))
            .is_some_and(|r| r.include)
    }

    /// Whether there is no rule at all (such a filter selects nothing).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The schema names of inclusion rules without wildcards, when every inclusion rule has
    /// one; lets discovery list only those schemas instead of all of them.
    pub fn literal_schemas(&self) -> Option<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.include) {
            if !rule.schema.is_literal() {
                return None;
            }
            let name = unquote(rule.schema.source());
            if !is_system_schema(&name) && !out.iter().any(|s| s.eq_ignore_ascii_case(&name)) {
                out.push(name);
            }
        }
        Some(out)
    }
}

/// The literal name a wildcard-free part stands for (quotes and escapes removed).
fn unquote(source: &str) -> String {
    let mut chars = source.chars();
    match chars.next() {
        Some(q @ ('`' | '"')) => {
            let inner = &source[1..source.len() - 1];
            inner.replace(&format!("{q}{q}"), &q.to_string())
        }
        _ => {
            let mut out = String::with_capacity(source.len());
            let mut it = source.chars();
            while let Some(c) = it.next() {
                if c == '\\' {
                    if let Some(esc) = it.next() {
                        out.push(esc);
                    }
                } else {
                    out.push(c);
                }
            }
            out
        }
    }
}

/// Parses one rule; `Ok(None)` for blank and comment entries.
fn parse_rule(raw: &str) -> std::result::Result<Option<Rule>, String> {
    let line = raw.trim_matches([' ', '\t']);
    let (include, body) = match line.chars().next() {
        None | Some('#') => return Ok(None),
        Some('@') => return Err("importing rules from a file (@...) is not supported".into()),
        Some('!') => (false, &line[1..]),
        Some(_) => (true, line),
    };
    let (schema, rest) = NamePattern::parse_prefix(body)?;
    let rest = rest
        .strip_prefix('.')
        .ok_or("missing '.' between the schema and table patterns")?;
    if rest.is_empty() {
        return Err("missing table pattern after '.'".into());
    }
    let (table, rest) = NamePattern::parse_prefix(rest)?;
    if !rest.is_empty() {
        return Err(format!(
            "unexpected '{rest}' after the table pattern (escape a literal '.' as '\\.')"
        ));
    }
    Ok(Some(Rule {
        include,
        schema,
        table,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(patterns: &[&str]) -> TableFilter {
        TableFilter::new(patterns).unwrap()
    }

    #[test]
    fn plain_and_wildcards() {
        let f = filter(&["db.*", "other.t?"]);
        assert!(f.matches("db", "anything"));
        assert!(f.matches("other", "t1"));
        assert!(!f.matches("other", "t12"));
        assert!(!f.matches("dbx", "t"));

        let f = filter(&["schema*.table*"]);
        assert!(f.matches("schema1", "table_a"));
        assert!(f.matches("schema", "table"));
        assert!(!f.matches("schem", "table"));
    }

    #[test]
    fn last_matching_rule_decides() {
        let f = filter(&["*.*", "!mysql.*", "!c.*"]);
        assert!(f.matches("a", "t"));
        assert!(!f.matches("c", "t"));

        // README example of tidb-tools' table-filter.
        let f = filter(&["employees.*", "!*.dep*", "*.departments"]);
        assert!(!f.matches("irrelevant", "table"));
        assert!(f.matches("employees", "employees"));
        assert!(!f.matches("employees", "dept_emp"));
        assert!(f.matches("employees", "departments"));
        assert!(f.matches("else", "departments"));

        // Exclusion first, then inclusion: the inclusion wins.
        let f = filter(&["!db.t1", "db.*"]);
        assert!(f.matches("db", "t1"));

        // Only exclusions: nothing is selected.
        let f = filter(&["!db.t1"]);
        assert!(!f.matches("db", "t2"));
    }

    #[test]
    fn classes_and_escapes() {
        let f = filter(&["db[0-9].t[!x]"]);
        assert!(f.matches("db1", "ta"));
        assert!(!f.matches("db1", "tx"));
        assert!(!f.matches("dba", "ta"));

        let f = filter(&["`my.db`.t", "db.t\\*", "\"q.s\".`x``y`"]);
        assert!(f.matches("my.db", "t"));
        assert!(!f.matches("my", "db.t"));
        assert!(f.matches("db", "t*"));
        assert!(!f.matches("db", "tx"));
        assert!(f.matches("q.s", "x`y"));
        assert!(filter(&["my\\.db.t"]).matches("my.db", "t"));
    }

    #[test]
    fn case_insensitive() {
        let f = filter(&["Shop.Orders*"]);
        assert!(f.matches("shop", "orders_2024"));
        assert!(f.matches("SHOP", "ORDERS"));
    }

    #[test]
    fn system_schemas_are_always_excluded() {
        let f = filter(&["*.*"]);
        for s in [
            "mysql",
            "MySQL",
            "information_schema",
            "INFORMATION_SCHEMA",
            "performance_schema",
            "sys",
            "metrics_schema",
            "METRICS_SCHEMA",
        ] {
            assert!(is_system_schema(s), "{s}");
            assert!(!f.matches(s, "user"), "{s}");
        }
        assert!(!filter(&["mysql.user"]).matches("mysql", "user"));
        assert!(f.matches("mysql2", "t"));
        assert!(!is_system_schema("sysbench"));
    }

    #[test]
    fn blanks_and_comments_are_ignored() {
        let f = filter(&["", "  # a comment", " db.t "]);
        assert!(f.matches("db", "t"));
        assert!(filter(&["", "#x"]).is_empty());
    }

    #[test]
    fn invalid_rules() {
        for bad in [
            "db", "db.", ".t", "db.t.x", "db.t u", "@file", "/a/./b/", "db.t[", "a-b.c",
        ] {
            let err = TableFilter::new(&[bad]).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid table pattern '{bad}': ")),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn literal_schema_list() {
        assert_eq!(
            filter(&["a.*", "`b.c`.t", "A.x", "!z.*", "mysql.user"]).literal_schemas(),
            Some(vec!["a".to_string(), "b.c".to_string()])
        );
        assert_eq!(filter(&["a*.t"]).literal_schemas(), None);
    }
}
