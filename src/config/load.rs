//! Loading a configuration file, with one-line `origin:line:col: message` errors.
//!
//! The text is parsed twice: once into toml's spanned document tree (`DeTable`) and once
//! into [`Config`]. serde's errors only carry a byte span, so the tree is what turns a span
//! back into the key path ("invalid type for 'port' in [data-sources.up]"), and what turns
//! a validation problem's key path into a line.

use std::ops::Range;
use std::path::Path;

use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use super::model::Config;
use super::validate::{render_key, render_table, Seg};
use crate::error::{Error, Result};

/// Keys of the v1 format, named in a hint when they show up in a v2 file.
const V1_KEYS: &[&str] = &[
    "log-level",
    "chunk-size",
    "sample-percent",
    "use-checksum",
    "only-use-checksum",
    "use-checkpoint",
    "ignore-data-check",
    "ignore-struct-check",
    "fix-sql-file",
    "table-rules",
    "check-tables",
    "table-config",
    "source-db",
    "target-db",
];

impl Config {
    /// Reads, parses and validates a configuration file. An unreadable file is
    /// [`Error::ConfigRead`]; anything wrong inside it is a one-line [`Error::Config`].
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|cause| Error::ConfigRead {
            path: path.to_path_buf(),
            cause,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses and validates configuration text; `origin` (usually the file name) prefixes
    /// error messages as `origin:line:col: …`.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config> {
        let doc = DeTable::parse(text).map_err(|e| {
            let message = format!("invalid TOML: {}", syntax_message(text, &e));
            Error::Config(located(origin, text, e.span().map(|s| s.start), &message))
        })?;
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let (at, message) = describe_serde_error(text, doc.get_ref(), &e);
            Error::Config(located(origin, text, at, &message))
        })?;
        config.apply_dr_defaults();
        config.normalize_unset_lists();
        if let Err(problem) = config
            .resolve_secrets(&super::secret::System)
            .and_then(|()| config.check())
        {
            let at = locate_path(doc.get_ref(), &problem.path).map(|s| s.start);
            return Err(Error::Config(located(origin, text, at, &problem.message)));
        }
        Ok(config)
    }
}

/// `origin:line:col: message`, or `origin: message` without a position. Always one line.
fn located(origin: &str, text: &str, at: Option<usize>, message: &str) -> String {
    let message = first_line(message);
    match at {
        Some(offset) => {
            let (line, col) = line_col(text, offset);
            format!("{origin}:{line}:{col}: {message}")
        }
        None => format!("{origin}: {message}"),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim_end()
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// toml's first message line, plus the key for duplicates (toml's message omits it).
fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    let message = first_line(e.message()).to_string();
    let spanned = e.span().and_then(|s| text.get(s)).unwrap_or("");
    if message == "duplicate key" && !spanned.is_empty() {
        format!("duplicate key '{spanned}'")
    } else {
        message
    }
}

/// serde writes names as `name`; messages here use 'name'.
fn quote_ticks(s: &str) -> String {
    s.replace('`', "'")
}

/// What the error span points at in the document.
struct Hit<'a> {
    /// Keys from the root to the key or value at the span.
    path: Vec<String>,
    /// The value at the span, when the span is a value rather than a key.
    value: Option<&'a DeValue<'a>>,
}

impl Hit<'_> {
    /// The last key, quoted for messages.
    fn key(&self) -> String {
        self.path.last().map_or_else(String::new, |k| render_key(k))
    }

    /// ` in [a.b]` for the table holding the key, empty at the top level.
    fn in_table(&self) -> String {
        match self.path.len() {
            0 | 1 => String::new(),
            n => {
                let parents: Vec<&str> = self.path[..n - 1].iter().map(String::as_str).collect();
                format!(" in {}", render_table(&parents))
            }
        }
    }
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// Finds the key whose name is at `span`, or else the smallest value containing `span`.
fn locate<'a>(root: &'a DeTable<'a>, span: &Range<usize>) -> Option<Hit<'a>> {
    fn walk<'a>(
        table: &'a DeTable<'a>,
        span: &Range<usize>,
        path: &mut Vec<String>,
        best: &mut Option<(usize, Hit<'a>)>,
    ) -> bool {
        for (k, v) in table.iter() {
            path.push(k.get_ref().to_string());
            if k.span() == *span {
                *best = Some((
                    0,
                    Hit {
                        path: path.clone(),
                        value: None,
                    },
                ));
                return true;
            }
            if walk_value(v, span, path, best) {
                return true;
            }
            path.pop();
        }
        false
    }
    fn walk_value<'a>(
        v: &'a Spanned<DeValue<'a>>,
        span: &Range<usize>,
        path: &mut Vec<String>,
        best: &mut Option<(usize, Hit<'a>)>,
    ) -> bool {
        let vspan = v.span();
        if contains(&vspan, span) {
            let size = vspan.end - vspan.start + 1;
            if best.as_ref().is_none_or(|(b, _)| size <= *b) {
                *best = Some((
                    size,
                    Hit {
                        path: path.clone(),
                        value: Some(v.get_ref()),
                    },
                ));
            }
        }
        match v.get_ref() {
            DeValue::Table(t) => walk(t, span, path, best),
            DeValue::Array(items) => items.iter().any(|item| walk_value(item, span, path, best)),
            _ => false,
        }
    }
    let mut best = None;
    walk(root, span, &mut Vec::new(), &mut best);
    best.map(|(_, hit)| hit)
}

/// The span of the value at a validation problem's path, or of its closest parent.
fn locate_path(root: &DeTable<'_>, path: &[Seg]) -> Option<Range<usize>> {
    let mut found: Option<Range<usize>> = None;
    let mut current: Option<&DeValue<'_>> = None;
    for seg in path {
        let next = match (seg, current) {
            (Seg::Key(k), None) => find_key(root, k),
            (Seg::Key(k), Some(DeValue::Table(t))) => find_key(t, k),
            (Seg::Index(i), Some(DeValue::Array(a))) => a.get(*i),
            _ => None,
        };
        let Some(next) = next else { break };
        found = Some(next.span());
        current = Some(next.get_ref());
    }
    found
}

fn find_key<'a>(table: &'a DeTable<'a>, key: &str) -> Option<&'a Spanned<DeValue<'a>>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(_, v)| v)
}

fn article_type(type_str: &str) -> String {
    match type_str {
        "integer" | "array" => format!("an {type_str}"),
        other => format!("a {other}"),
    }
}

/// serde's "expected …" text in TOML terms. `for_value` phrases integer limits, which only
/// matter when the type was right but the value was not.
fn expected_text(expected: &str, for_value: bool) -> String {
    let int = |range: &str| {
        if for_value {
            format!("an integer {range}")
        } else {
            "an integer".to_string()
        }
    };
    match expected {
        "usize" | "u64" | "u32" => int("of at least 0"),
        "u16" => int("between 0 and 65535"),
        "u8" => int("between 0 and 255"),
        "i64" | "i32" | "isize" => "an integer".to_string(),
        "a sequence" => "an array".to_string(),
        "a map" => "a table".to_string(),
        "a boolean" | "a string" => expected.to_string(),
        e if e.starts_with("struct ") => "a table".to_string(),
        e => quote_ticks(e),
    }
}

/// [`expected_text`] for a value of `key`, with the key's own lower bound where validation
/// asks for more than the type does (so `-3` and `0` get the same answer).
fn expected_for(key: &str, expected: &str) -> String {
    match key {
        "check-thread-count" => "an integer of at least 1".to_string(),
        _ => expected_text(expected, true),
    }
}

/// The failing value's literal text, for "found …" in value errors.
fn found_text(text: &str, span: Option<Range<usize>>) -> Option<String> {
    let raw = span.and_then(|s| text.get(s))?.trim();
    (!raw.is_empty() && raw.len() <= 60 && !raw.contains('\n')).then(|| raw.to_string())
}

/// Splits `head, expected tail` messages such as serde's "invalid type: X, expected Y".
fn split_expected(rest: &str) -> Option<(&str, &str)> {
    rest.rfind(", expected ")
        .map(|i| (&rest[..i], &rest[i + ", expected ".len()..]))
}

/// Levenshtein distance, for "did you mean" on unknown keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Rewrites a serde error into a short message naming the key; returns the offset to
/// report it at.
fn describe_serde_error(
    text: &str,
    root: &DeTable<'_>,
    e: &toml::de::Error,
) -> (Option<usize>, String) {
    let raw = first_line(e.message());
    let span = e.span();
    let hit = span.as_ref().and_then(|s| locate(root, s));
    let at = span.as_ref().map(|s| s.start);
    let (key, in_table) = match &hit {
        Some(h) => (h.key(), h.in_table()),
        None => (String::new(), String::new()),
    };

    if let Some(rest) = raw.strip_prefix("unknown field ") {
        return (at, unknown_key_message(rest, &in_table));
    }

    if let Some(rest) = raw.strip_prefix("missing field ") {
        return missing_key_message(rest, hit.as_ref(), at);
    }

    if let Some(rest) = raw.strip_prefix("invalid type: ") {
        let expected = split_expected(rest).map_or("", |(_, exp)| exp);
        let found = hit
            .as_ref()
            .and_then(|h| h.value)
            .map(|v| article_type(v.type_str()))
            .unwrap_or_else(|| rest.split(',').next().unwrap_or(rest).to_string());
        if found == expected_text(expected, false) {
            // The right type, out of the target's range (say, an integer past 2^64).
            let literal = found_text(text, span.clone()).unwrap_or(found);
            return (
                at,
                format!(
                    "invalid value for '{key}'{in_table}: {literal} is out of range (expected \
                     {})",
                    expected_for(&key, expected)
                ),
            );
        }
        return (
            at,
            format!(
                "invalid type for '{key}'{in_table}: expected {}, found {found}",
                expected_text(expected, false)
            ),
        );
    }

    if let Some(rest) = raw.strip_prefix("invalid value: ") {
        let (head, expected) = split_expected(rest).unwrap_or((rest, ""));
        let found = found_text(text, span.clone()).unwrap_or_else(|| quote_ticks(head));
        return (
            at,
            format!(
                "invalid value for '{key}'{in_table}: expected {}, found {found}",
                expected_for(&key, expected)
            ),
        );
    }

    if let Some(rest) = raw.strip_prefix("unknown variant ") {
        let (name, expected) = split_expected(rest).unwrap_or((rest, ""));
        let expected = expected.trim_start_matches("one of ").replace(" or ", ", ");
        return (
            at,
            format!(
                "invalid value for '{key}'{in_table}: expected one of {}, found {}",
                quote_ticks(&expected),
                quote_ticks(name)
            ),
        );
    }

    // toml's own enum error for a non-string value.
    if raw.starts_with("wanted string or table") {
        let found = hit.as_ref().and_then(|h| h.value).map_or_else(
            || "another type".to_string(),
            |v| article_type(v.type_str()),
        );
        return (
            at,
            format!("invalid type for '{key}'{in_table}: expected a string, found {found}"),
        );
    }

    let message = quote_ticks(raw);
    if key.is_empty() {
        (at, message)
    } else {
        (at, format!("'{key}'{in_table}: {message}"))
    }
}

/// serde's "unknown field `x`, expected one of …" (`rest` is what follows "unknown field "):
/// the valid keys, the closest one as a "did you mean", and a hint when `x` is a v1 key at
/// the top level (someone feeding a sync-diff-inspector v1 file).
fn unknown_key_message(rest: &str, in_table: &str) -> String {
    let (name, expected) = match split_expected(rest) {
        Some((n, exp)) => (n, Some(exp)),
        None => (rest.split(',').next().unwrap_or(rest), None),
    };
    let name = name.trim_matches('`');
    let candidates: Vec<&str> = expected
        .map(|exp| {
            exp.trim_start_matches("one of ")
                .split([',', ' '])
                .map(|s| s.trim_matches('`'))
                .filter(|s| !s.is_empty() && *s != "or")
                .collect()
        })
        .unwrap_or_default();
    let mut message = format!("unknown key '{}'{in_table}", name);
    if !candidates.is_empty() {
        let list: Vec<String> = candidates.iter().map(|c| format!("'{c}'")).collect();
        message.push_str(&format!(" (expected one of {}", list.join(", ")));
        if let Some(close) = candidates
            .iter()
            .filter(|c| edit_distance(name, c) <= 2)
            .min_by_key(|c| edit_distance(name, c))
        {
            message.push_str(&format!("; did you mean '{close}'?"));
        }
        message.push(')');
    }
    if in_table.is_empty() && V1_KEYS.contains(&name) {
        message.push_str(&format!(
            "; '{name}' is a sync-diff-inspector v1 key, and syncgate reads the v2 format"
        ));
    }
    message
}

/// serde's "missing field `x`": names the table it is missing from when the span locates
/// one; otherwise no position is given, and a missing `[task]` gets its own message.
fn missing_key_message(
    rest: &str,
    hit: Option<&Hit<'_>>,
    at: Option<usize>,
) -> (Option<usize>, String) {
    let name = rest.trim_matches('`');
    match hit {
        Some(h) if !h.path.is_empty() => {
            let parents: Vec<&str> = h.path.iter().map(String::as_str).collect();
            (
                at,
                format!("missing key '{name}' in {}", render_table(&parents)),
            )
        }
        _ if name == "task" => (None, "missing [task] table".to_string()),
        _ => (None, format!("missing key '{name}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // Columns count characters, not bytes.
        let eq = text.find('=').unwrap();
        assert_eq!(line_col(text, eq), (1, 3));
        let second = text.rfind('=').unwrap();
        assert_eq!(line_col(text, second), (2, 4));
        assert_eq!(line_col(text, 999), (3, 1));
    }

    #[test]
    fn distance() {
        assert_eq!(edit_distance("chunk-sizee", "chunk-size"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("port", "port"), 0);
    }
}
