//! Secrets kept out of the config file: a secret value may be, or (in a storage URI)
//! contain, a reference that is replaced when the config is loaded.
//!
//! | reference | replaced by |
//! |---|---|
//! | `${env:NAME}` | the environment variable `NAME` (an error when it is not set) |
//! | `${file:PATH}` | the file's contents without one trailing newline (an error when it cannot be read) |
//! | `$${` | a literal `${` |
//!
//! The same form works in every secret: a data source's `password`, its
//! `security.key-bytes`, and `[dr]`'s storage URIs and replication password. Inside a URI
//! the value is percent-encoded, so a key holding `+`, `/` or `&` needs no care. Secrets so
//! read are redacted like any other, and since `Serialize` redacts them, the checkpoint
//! fingerprint does not change when only their value does.

use super::model::Config;
use super::validate::{Problem, Seg};
use std::borrow::Cow;

/// Where a reference is replaced: a plain value, or a URI (values percent-encoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    Plain,
    Uri,
}

/// Reads the environment and files; a trait so the expansion is testable without either.
pub(crate) trait Lookup {
    fn env(&self, name: &str) -> Option<String>;
    fn file(&self, path: &str) -> std::io::Result<String>;
}

/// The process environment and the file system.
pub(crate) struct System;

impl Lookup for System {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn file(&self, path: &str) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// `value` with its references replaced; borrowed when it holds none. The error is one line
/// naming the reference, never the secret.
pub(crate) fn expand<'a>(
    value: &'a str,
    context: Context,
    lookup: &dyn Lookup,
) -> Result<Cow<'a, str>, String> {
    if !value.contains("${") {
        return Ok(Cow::Borrowed(value));
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            // `$${` is a literal `${`.
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let body = &rest[at + 2..];
        let end = body
            .find('}')
            .ok_or_else(|| format!("unterminated reference '${{{body}' (expected '}}')"))?;
        let reference = &body[..end];
        let secret = resolve(reference, lookup)?;
        match context {
            Context::Plain => out.push_str(&secret),
            Context::Uri => out.push_str(&percent_encode(&secret)),
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

fn resolve(reference: &str, lookup: &dyn Lookup) -> Result<String, String> {
    if let Some(name) = reference.strip_prefix("env:") {
        if name.is_empty() {
            return Err("'${env:}' names no environment variable".into());
        }
        return lookup
            .env(name)
            .ok_or_else(|| format!("environment variable {name} is not set"));
    }
    if let Some(path) = reference.strip_prefix("file:") {
        if path.is_empty() {
            return Err("'${file:}' names no file".into());
        }
        let text = lookup
            .file(path)
            .map_err(|e| format!("cannot read secret file {path}: {e}"))?;
        let text = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text);
        return Ok(text.to_string());
    }
    Err(format!(
        "unknown reference '${{{reference}}}' (use ${{env:NAME}} or ${{file:PATH}}, or $${{ \
         for a literal ${{)"
    ))
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Config {
    /// Replaces the references in every secret (see the module docs); the error names the
    /// key holding the reference.
    pub(crate) fn resolve_secrets(&mut self, lookup: &dyn Lookup) -> Result<(), Problem> {
        let key = |k: &str| Seg::Key(k.to_string());
        // The message names the key (the position alone would not say which value).
        let fail = |path: Vec<Seg>| {
            move |message: String| {
                let name = match path.last() {
                    Some(Seg::Key(k)) => k.clone(),
                    _ => String::new(),
                };
                Problem {
                    path,
                    message: format!("{name}: {message}"),
                }
            }
        };
        for (name, ds) in &mut self.data_sources {
            let at = |k: &str| vec![key("data-sources"), key(name), key(k)];
            replace(&mut ds.password, Context::Plain, lookup).map_err(fail(at("password")))?;
            if let Some(bytes) = ds.security.as_mut().and_then(|s| s.key_bytes.as_mut()) {
                let mut path = at("security");
                path.push(key("key-bytes"));
                replace(bytes, Context::Plain, lookup).map_err(fail(path))?;
            }
        }
        if let Some(uri) = self.task.report_storage.as_mut() {
            replace(&mut uri.0, Context::Uri, lookup)
                .map_err(fail(vec![key("task"), key("report-storage")]))?;
        }
        if let Some(dr) = &mut self.dr {
            let at = |k: &str| vec![key("dr"), key(k)];
            replace(&mut dr.backup_storage, Context::Uri, lookup)
                .map_err(fail(at("backup-storage")))?;
            if let Some(uri) = dr.redo_storage.as_mut() {
                replace(uri, Context::Uri, lookup).map_err(fail(at("redo-storage")))?;
            }
            if let Some(password) = dr.replication_password.as_mut() {
                replace(password, Context::Plain, lookup)
                    .map_err(fail(at("replication-password")))?;
            }
        }
        Ok(())
    }
}

fn replace(value: &mut String, context: Context, lookup: &dyn Lookup) -> Result<(), String> {
    if let Cow::Owned(v) = expand(value, context, lookup)? {
        *value = v;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fake {
        env: HashMap<&'static str, &'static str>,
        files: HashMap<&'static str, &'static str>,
    }

    impl Lookup for Fake {
        fn env(&self, name: &str) -> Option<String> {
            self.env.get(name).map(|v| v.to_string())
        }
        fn file(&self, path: &str) -> std::io::Result<String> {
            self.files
                .get(path)
                .map(|v| v.to_string())
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        }
    }

    fn fake() -> Fake {
        Fake {
            env: HashMap::from([("PW", "s3cr+t/&="), ("EMPTY", "")]),
            files: HashMap::from([("/run/pw", "from-file\n"), ("/run/crlf", "x\r\n\n")]),
        }
    }

    #[test]
    fn plain_values_are_replaced_whole_or_in_part() {
        let f = fake();
        let e = |v| expand(v, Context::Plain, &f).unwrap().into_owned();
        assert_eq!(e("${env:PW}"), "s3cr+t/&=");
        assert_eq!(e("${file:/run/pw}"), "from-file");
        assert_eq!(
            e("${file:/run/crlf}"),
            "x\r\n",
            "only one trailing newline goes"
        );
        assert_eq!(e("${env:EMPTY}"), "", "set but empty is empty");
        assert_eq!(e("a${env:PW}b"), "as3cr+t/&=b");
        assert_eq!(e("no reference"), "no reference");
        assert_eq!(e("$${env:PW}"), "${env:PW}", "escaped");
        assert_eq!(e("cost $5"), "cost $5");
    }

    #[test]
    fn in_a_uri_values_are_percent_encoded() {
        let f = fake();
        let uri = "s3://b/p?access-key=AK&secret-access-key=${env:PW}";
        assert_eq!(
            expand(uri, Context::Uri, &f).unwrap(),
            "s3://b/p?access-key=AK&secret-access-key=s3cr%2Bt%2F%26%3D"
        );
    }

    #[test]
    fn missing_and_malformed_references_name_the_reference_not_a_secret() {
        let f = fake();
        let err = |v| expand(v, Context::Plain, &f).unwrap_err();
        assert_eq!(err("${env:NOPE}"), "environment variable NOPE is not set");
        assert!(err("${file:/nope}").starts_with("cannot read secret file /nope: "));
        assert!(err("${vault:x}").starts_with("unknown reference '${vault:x}'"));
        assert!(err("${env:PW").starts_with("unterminated reference"));
        assert!(err("${env:}").contains("names no environment variable"));
        for e in [err("${env:NOPE}"), err("${vault:x}")] {
            assert!(!e.contains("s3cr"), "{e}");
        }
    }
}
