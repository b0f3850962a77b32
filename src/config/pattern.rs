//! One name pattern of the TiDB table-filter syntax: a schema part or a table part.
//!
//! Shared by [`super::TableFilter`] (`schema.table` rules) and [`super::RouteRules`]
//! (`schema-pattern` / `table-pattern`), so both accept exactly the same wildcards.
//!
//! Syntax (after pingcap/tidb-tools `pkg/table-filter`):
//! - identifier characters `[0-9A-Za-z$_]` and any non-ASCII character match themselves;
//! - `*` matches any run of characters, `?` exactly one character (a Unicode code point);
//! - `[a-z]`, `[abc]` match one character of the class, `[!a-z]` one character outside it;
//! - `\` followed by a non-alphanumeric character makes it literal (`db\.x`, `t\*`);
//! - a part wholly enclosed in backquotes or double quotes is literal, with the quote char
//!   doubled inside (`` `my.db` ``, `"a""b"`).
//!
//! Matching is case-insensitive: pattern and name are both lowercased, because MySQL schema
//! and table names are case-insensitive on most deployments and TiDB's tools behave the same.

use std::fmt;

/// One element of a compiled wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// One literal (lowercased) character.
    Lit(char),
    /// `*`: any run of characters, possibly empty.
    Star,
    /// `?`: exactly one character.
    One,
    /// `[...]` / `[!...]`: one character inside (or, when negated, outside) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A compiled, case-insensitive name pattern.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct NamePattern {
    /// The source text, kept for messages.
    source: String,
    tokens: Vec<Token>,
}

impl fmt::Debug for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NamePattern({:?})", self.source)
    }
}

/// Why a pattern did not parse; rendered into a config error by the caller.
pub(crate) type PatternError = String;

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '$' || c == '_' || !c.is_ascii()
}

fn push_lowercased(tokens: &mut Vec<Token>, c: char) {
    tokens.extend(c.to_lowercase().map(Token::Lit));
}

/// Lowercases a class bound, keeping it as is when lowercasing is not one-to-one.
fn lower_one(c: char) -> char {
    let mut it = c.to_lowercase();
    match (it.next(), it.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

impl NamePattern {
    /// Parses one part from the start of `input`, stopping at an unescaped, unquoted `.`.
    /// Returns the pattern and the unparsed rest (which starts with `.` or is empty).
    pub(crate) fn parse_prefix(input: &str) -> Result<(NamePattern, &str), PatternError> {
        let first = match input.chars().next() {
            Some(c) => c,
            None => return Err("missing pattern".into()),
        };
        match first {
            '`' | '"' => Self::parse_quoted(input, first),
            '/' => Err("regular-expression patterns (/.../) are not supported".into()),
            _ => Self::parse_wildcard(input),
        }
    }

    /// Parses a whole string as one part: used for route patterns, where no `.` may follow.
    pub(crate) fn parse_whole(input: &str) -> Result<NamePattern, PatternError> {
        let trimmed = input.trim_matches([' ', '\t']);
        let (pattern, rest) = Self::parse_prefix(trimmed)?;
        if !rest.is_empty() {
            return Err(format!(
                "unexpected '{rest}' after the name pattern (escape a literal '.' as '\\.')"
            ));
        }
        Ok(pattern)
    }

    fn parse_quoted(input: &str, quote: char) -> Result<(NamePattern, &str), PatternError> {
        let mut name = String::new();
        let mut chars = input.char_indices().skip(1).peekable();
        while let Some((i, c)) = chars.next() {
            if c == quote {
                if let Some(&(_, next)) = chars.peek() {
                    if next == quote {
                        name.push(quote);
                        chars.next();
                        continue;
                    }
                }
                if name.is_empty() {
                    return Err("empty quoted name".into());
                }
                let rest = &input[i + c.len_utf8()..];
                let mut tokens = Vec::with_capacity(name.len());
                for ch in name.chars() {
                    push_lowercased(&mut tokens, ch);
                }
                let source = input[..i + c.len_utf8()].to_string();
                return Ok((NamePattern { source, tokens }, rest));
            }
            name.push(c);
        }
        Err(format!(
            "unterminated quoted name (missing closing {quote})"
        ))
    }

    fn parse_wildcard(input: &str) -> Result<(NamePattern, &str), PatternError> {
        let mut tokens = Vec::new();
        let mut chars = input.char_indices().peekable();
        let mut end = input.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '.' => {
                    end = i;
                    break;
                }
                '\\' => match chars.next() {
                    None => return Err("'\\' at the end of the pattern".into()),
                    Some((_, esc)) if esc.is_ascii_alphanumeric() => {
                        return Err(format!(
                            "cannot escape a letter or digit ('\\{esc}'); only special characters need escaping"
                        ))
                    }
                    Some((_, esc)) => push_lowercased(&mut tokens, esc),
                },
                '*' => {
                    // Consecutive stars mean the same as one.
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                }
                '?' => tokens.push(Token::One),
                '[' => {
                    let class_end = Self::parse_class(&input[i..], &mut tokens)?;
                    // Skip the characters the class consumed.
                    while let Some(&(j, _)) = chars.peek() {
                        if j < i + class_end {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
                c if is_ident_char(c) => push_lowercased(&mut tokens, c),
                c => {
                    return Err(format!(
                        "unexpected special character '{c}' (escape it with '\\' or quote the name with backquotes)"
                    ))
                }
            }
        }
        if end == 0 {
            return Err("missing pattern".into());
        }
        let source = input[..end].to_string();
        Ok((NamePattern { source, tokens }, &input[end..]))
    }

    /// Parses a `[...]` class at the start of `input`; returns its length in bytes.
    fn parse_class(input: &str, tokens: &mut Vec<Token>) -> Result<usize, PatternError> {
        let body = &input[1..];
        let (negated, body_start) = match body.strip_prefix('!') {
            // `[!]` alone is a class holding '!', as in fnmatch.
            Some(rest) if !rest.starts_with(']') => (true, 2),
            _ => (false, 1),
        };
        let mut items: Vec<char> = Vec::new();
        let mut end = None;
        let mut chars = input[body_start..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                ']' if !items.is_empty() => {
                    end = Some(body_start + i + 1);
                    break;
                }
                '\\' => match chars.next() {
                    Some((_, esc)) if !esc.is_ascii_alphanumeric() => items.push(esc),
                    _ => {
                        return Err(
                            "invalid escape in character class (only special characters can be escaped)"
                                .into(),
                        )
                    }
                },
                c => items.push(c),
            }
        }
        let end = end.ok_or_else(|| "unterminated character class (missing ']')".to_string())?;
        let mut ranges = Vec::new();
        let mut k = 0;
        while k < items.len() {
            // `a-z` is a range unless the '-' is the last item (then it is literal).
            if k + 2 < items.len() && items[k + 1] == '-' {
                let (lo, hi) = (items[k], items[k + 2]);
                if lo > hi {
                    return Err(format!("invalid character range '{lo}-{hi}'"));
                }
                ranges.push((lower_one(lo), lower_one(hi)));
                // Keep the original-case range too, so `[A-Z]` still covers letters whose
                // lowercase form falls outside the lowercased bounds.
                ranges.push((lo, hi));
                k += 3;
            } else {
                let l = lower_one(items[k]);
                ranges.push((l, l));
                k += 1;
            }
        }
        tokens.push(Token::Class { negated, ranges });
        Ok(end)
    }

    /// The pattern text as written.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// Whether the pattern is a plain name (no wildcard), i.e. it matches one name only.
    pub(crate) fn is_literal(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Lit(_)))
    }

    /// Case-insensitive match of a whole name.
    pub(crate) fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().flat_map(char::to_lowercase).collect();
        glob_match(&self.tokens, &name)
    }
}

fn token_matches_char(token: &Token, c: char) -> bool {
    match token {
        Token::Lit(l) => *l == c,
        Token::One => true,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
        }
        Token::Star => false,
    }
}

/// Iterative wildcard matching with single-star backtracking: O(pattern × name).
fn glob_match(tokens: &[Token], name: &[char]) -> bool {
    let (mut t, mut n) = (0, 0);
    // Position of the last `*` seen and the name position it is currently expanded to.
    let mut backtrack: Option<(usize, usize)> = None;
    while n < name.len() {
        if t < tokens.len() && tokens[t] == Token::Star {
            backtrack = Some((t, n));
            t += 1;
        } else if t < tokens.len() && token_matches_char(&tokens[t], name[n]) {
            t += 1;
            n += 1;
        } else if let Some((star_t, star_n)) = backtrack {
            // Let the last star swallow one more character and retry.
            t = star_t + 1;
            n = star_n + 1;
            backtrack = Some((star_t, star_n + 1));
        } else {
            return false;
        }
    }
    tokens[t..].iter().all(|tok| *tok == Token::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        NamePattern::parse_whole(pattern).unwrap().matches(name)
    }

    #[test]
    fn wildcards() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("t?", "t1"));
        assert!(!m("t?", "t"));
        assert!(!m("t?", "t12"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(m("a*b*c", "abc"));
        assert!(!m("a*b*c", "acb"));
        assert!(m("*_log", "order_log"));
        assert!(m("**x", "x"));
    }

    #[test]
    fn classes() {
        assert!(m("t[0-9]", "t5"));
        assert!(!m("t[0-9]", "ta"));
        assert!(m("t[abc]", "tb"));
        assert!(!m("t[!abc]", "tb"));
        assert!(m("t[!abc]", "td"));
        assert!(m("t[a-]", "t-"));
        assert!(m("[!]", "!"));
        assert!(m("t[\\]]", "t]"));
        assert!(NamePattern::parse_whole("t[z-a]").is_err());
        assert!(NamePattern::parse_whole("t[abc").is_err());
        // Case-insensitive in both directions.
        assert!(m("T[A-C]", "tb"));
        assert!(m("t[a-c]", "TB"));
    }

    #[test]
    fn escapes_and_quotes() {
        assert!(m("t\\*", "t*"));
        assert!(!m("t\\*", "tx"));
        assert!(m("my\\.db", "my.db"));
        assert!(m("`my.db`", "MY.DB"));
        assert!(m("`a``b`", "a`b"));
        assert!(m("\"a\"\"b\"", "a\"b"));
        assert!(m("`*`", "*"));
        assert!(!m("`*`", "x"));
        assert!(NamePattern::parse_whole("t\\n").is_err());
        assert!(NamePattern::parse_whole("t\\").is_err());
        assert!(NamePattern::parse_whole("`abc").is_err());
        assert!(NamePattern::parse_whole("``").is_err());
        assert!(NamePattern::parse_whole("a-b").is_err());
        assert!(NamePattern::parse_whole("/re/").is_err());
        assert!(NamePattern::parse_whole("a.b").is_err());
    }

    #[test]
    fn unicode_is_one_character() {
        assert!(m("caf?", "café"));
        assert!(m("CAFÉ", "café"));
    }

    #[test]
    fn literal_detection() {
        assert!(NamePattern::parse_whole("abc").unwrap().is_literal());
        assert!(NamePattern::parse_whole("`a*`").unwrap().is_literal());
        assert!(!NamePattern::parse_whole("a*").unwrap().is_literal());
    }
}
