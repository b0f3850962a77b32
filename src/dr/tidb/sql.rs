//! The BACKUP / RESTORE / KILL statements, and keeping their secrets out of logs.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BrKind {
    Backup,
    Restore,
}

impl BrKind {
    pub(super) fn keyword(self) -> &'static str {
        match self {
            BrKind::Backup => "BACKUP",
            BrKind::Restore => "RESTORE",
        }
    }

    pub(super) fn preposition(self) -> &'static str {
        match self {
            BrKind::Backup => "TO",
            BrKind::Restore => "FROM",
        }
    }
}

pub(super) fn brie_sql(kind: BrKind, schemas: &[String], uri: &str, opts: &BrOptions) -> String {
    let target = if schemas.is_empty() {
        "*".to_string()
    } else {
        crate::sql::ident_list(schemas.iter().map(String::as_str))
    };
    let mut sql = format!(
        "{} DATABASE {target} {} {}",
        kind.keyword(),
        kind.preposition(),
        crate::sql::quote_str(uri)
    );
    if let Some(n) = opts.concurrency {
        let _ = write!(sql, " CONCURRENCY = {n}");
    }
    if let Some(n) = opts.rate_limit_mb {
        let _ = write!(sql, " RATE_LIMIT = {n} MB/SECOND");
    }
    sql.push_str(if opts.checksum {
        " CHECKSUM = TRUE"
    } else {
        " CHECKSUM = FALSE"
    });
    sql
}

/// `BACKUP DATABASE `a`, `b` TO '<uri>' [CONCURRENCY = n] [RATE_LIMIT = n MB/SECOND]
/// CHECKSUM = TRUE|FALSE`; no schemas means `DATABASE *` (every schema but the system ones).
/// The URI is a string literal with `'` and `\` escaped (read as such on the job's session).
pub fn backup_sql(schemas: &[String], uri_with_secrets: &str, opts: &BrOptions) -> String {
    brie_sql(BrKind::Backup, schemas, uri_with_secrets, opts)
}

/// `RESTORE DATABASE … FROM '<uri>' …`, as [`backup_sql`].
pub fn restore_sql(schemas: &[String], uri_with_secrets: &str, opts: &BrOptions) -> String {
    brie_sql(BrKind::Restore, schemas, uri_with_secrets, opts)
}

/// `KILL TIDB QUERY <id>`: cancels the statement running on connection `id` (A1.2).
pub fn kill_sql(connection_id: u64) -> String {
    format!("KILL TIDB QUERY {connection_id}")
}

/// A storage URI fit to print: without its query string and fragment (where BR URIs carry
/// credentials), and with a `user:password@` replaced by `***@`.
pub fn redact_uri(uri: &str) -> String {
    let base = uri.split(['?', '#']).next().unwrap_or_default();
    if let Some((scheme, rest)) = base.split_once("://") {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if let Some((_, host)) = authority.rsplit_once('@') {
            return format!("{scheme}://***@{host}{path}");
        }
    }
    base.to_string()
}

/// `text` (e.g. a server's error message) with the secrets of `uri` masked: the URI itself
/// becomes [`redact_uri`], the values of its secret parameters (as written and
/// percent-decoded) become `***`, and so does the value after any `secret-access-key=`,
/// `session-token=`, `account-key=` or `sas-token=`.
pub fn redact_secrets(text: &str, uri: &str) -> String {
    let mut out = if uri.is_empty() {
        text.to_string()
    } else {
        text.replace(uri, &redact_uri(uri))
    };
    for secret in secret_values(uri) {
        // Shorter values are no secrets, and masking them would garble the text.
        if secret.len() >= 4 {
            out = out.replace(&secret, "***");
        }
    }
    mask_secret_params(&out)
}

pub(super) fn is_secret_param(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase().replace('_', "-");
    SECRET_PARAMS.contains(&key.as_str())
}

pub(super) fn secret_values(uri: &str) -> Vec<String> {
    let mut out = Vec::new();
    let without_fragment = uri.split('#').next().unwrap_or_default();
    if let Some((base, query)) = without_fragment.split_once('?') {
        for (key, value) in query.split('&').filter_map(|p| p.split_once('=')) {
            if is_secret_param(key) {
                out.push(value.to_string());
                out.push(percent_decode(value));
            }
        }
        if let Some((_, rest)) = base.split_once("://") {
            let authority = rest.split('/').next().unwrap_or_default();
            if let Some((userinfo, _)) = authority.rsplit_once('@') {
                if let Some((_, password)) = userinfo.split_once(':') {
                    out.push(password.to_string());
                }
            }
        }
    }
    out
}

pub(super) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `key=value` → `key=***` for the secret parameters, wherever they appear.
pub(super) fn mask_secret_params(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if let Some(key_len) = secret_param_at(bytes, i) {
            out.push_str(&text[i..i + key_len]);
            out.push_str("***");
            i += key_len;
            while i < bytes.len() && !ends_value(bytes[i]) {
                i += 1;
            }
            continue;
        }
        let ch = text[i..].chars().next().unwrap_or_default();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The length of `<secret key>=` starting at `i`, if one does.
pub(super) fn secret_param_at(bytes: &[u8], i: usize) -> Option<usize> {
    SECRET_PARAMS.iter().find_map(|key| {
        let candidate = bytes.get(i..i + key.len())?;
        let same = candidate.iter().zip(key.bytes()).all(|(&c, k)| {
            let c = if c == b'_' { b'-' } else { c };
            c.eq_ignore_ascii_case(&k)
        });
        (same && bytes.get(i + key.len()) == Some(&b'=')).then_some(key.len() + 1)
    })
}

pub(super) fn ends_value(b: u8) -> bool {
    b.is_ascii_whitespace() || b"&'\",;)]}>\\".contains(&b)
}
