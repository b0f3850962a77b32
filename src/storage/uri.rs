//! [`StorageUri`]: BR/TiCDC storage URIs (`s3://bucket/prefix?…`, `local:///abs/path`,
//! `file:///abs/path`), parsed once, rendered redacted for people and with secrets only for
//! a server that needs them.
//!
//! Query values are form-decoded as Go's `url.ParseQuery` does for BR (`%XX` escapes, `+` is
//! a space), so a secret holding `+`, `/`, `&` or `=` must be percent-encoded in the URI; the
//! rendered forms encode what needs it, so they parse back to the same values.

use std::fmt;
use std::path::{Path, PathBuf};

use super::StorageError;

/// A parsed storage location. `Display` and `Debug` show the redacted form.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageUri {
    pub(crate) backend: Backend,
}

#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Backend {
    S3(Box<S3Uri>),
    /// A directory; `scheme` is `local` or `file`, as written.
    Local {
        scheme: &'static str,
        path: PathBuf,
    },
}

/// `s3://bucket/prefix?params`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct S3Uri {
    pub bucket: String,
    /// Without leading or trailing '/'; empty for the bucket's root.
    pub prefix: String,
    pub params: S3Params,
}

/// The query parameters of an S3 URI (BR's names), each set at most once.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct S3Params {
    pub access_key: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub endpoint: Option<String>,
    pub force_path_style: Option<bool>,
    pub region: Option<String>,
    pub storage_class: Option<String>,
    pub sse: Option<String>,
    pub sse_kms_key_id: Option<String>,
    pub acl: Option<String>,
}

/// Every accepted parameter, in the order the rendered URI lists them.
const PARAMS: [&str; 10] = [
    "access-key",
    "secret-access-key",
    "session-token",
    "endpoint",
    "force-path-style",
    "region",
    "storage-class",
    "sse",
    "sse-kms-key-id",
    "acl",
];

/// BR parameters this implementation does not support: rejected with a reason rather than
/// silently ignored.
const UNSUPPORTED: [(&str, &str); 5] = [
    (
        "role-arn",
        "assuming a role is not supported; use a profile or session-token",
    ),
    (
        "external-id",
        "assuming a role is not supported; use a profile or session-token",
    ),
    (
        "use-accelerate-endpoint",
        "transfer acceleration is not supported",
    ),
    (
        "provider",
        "provider is not supported; set endpoint and force-path-style",
    ),
    ("object-lock-enabled", "object lock is not supported"),
];

impl S3Params {
    fn slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        Some(match name {
            "access-key" => &mut self.access_key,
            "secret-access-key" => &mut self.secret_access_key,
            "session-token" => &mut self.session_token,
            "endpoint" => &mut self.endpoint,
            "region" => &mut self.region,
            "storage-class" => &mut self.storage_class,
            "sse" => &mut self.sse,
            "sse-kms-key-id" => &mut self.sse_kms_key_id,
            "acl" => &mut self.acl,
            _ => return None,
        })
    }

    /// The value of `name` as rendered, if set.
    fn rendered(&self, name: &str) -> Option<String> {
        let v = match name {
            "access-key" => &self.access_key,
            "secret-access-key" => &self.secret_access_key,
            "session-token" => &self.session_token,
            "endpoint" => &self.endpoint,
            "force-path-style" => return self.force_path_style.map(|b| b.to_string()),
            "region" => &self.region,
            "storage-class" => &self.storage_class,
            "sse" => &self.sse,
            "sse-kms-key-id" => &self.sse_kms_key_id,
            "acl" => &self.acl,
            _ => return None,
        };
        v.clone()
    }
}

/// Parameters left out of the redacted form (the access key is left out too: the redacted
/// form is what reports show, and it names nobody's account).
fn is_redacted(name: &str) -> bool {
    matches!(name, "access-key" | "secret-access-key" | "session-token")
}

impl StorageUri {
    /// Parse a BR/TiCDC storage URI.
    pub fn parse(raw: &str) -> Result<StorageUri, StorageError> {
        let invalid = |reason: String| StorageError::InvalidUri {
            uri: redact_raw(raw),
            reason,
        };
        let raw = raw.trim();
        if raw.contains('#') {
            return Err(invalid("'#' must be percent-encoded as %23".into()));
        }
        let Some((scheme, rest)) = raw.split_once("://") else {
            return Err(invalid(
                "no scheme (use s3://bucket/prefix or local:///absolute/path)".into(),
            ));
        };
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let backend = match scheme.to_ascii_lowercase().as_str() {
            "s3" => Backend::S3(Box::new(parse_s3(path, query).map_err(invalid)?)),
            "local" => parse_local("local", path, query).map_err(invalid)?,
            "file" => parse_local("file", path, query).map_err(invalid)?,
            other => {
                return Err(invalid(format!(
                    "unsupported scheme '{other}' (use s3://, local:// or file://)"
                )))
            }
        };
        Ok(StorageUri { backend })
    }

    /// `local:///path` for the absolute directory `path` (percent-encoded where needed).
    pub fn local(path: &Path) -> StorageUri {
        debug_assert!(path.is_absolute(), "{}", path.display());
        StorageUri {
            backend: Backend::Local {
                scheme: "local",
                path: path.to_path_buf(),
            },
        }
    }

    /// The URI with its secrets, for handing to a server that needs them (TiDB's
    /// `BACKUP … TO '<uri>'`). Never log it.
    pub fn expose_secret(&self) -> String {
        self.render(false)
    }

    /// The redacted form: no access key, secret key or session token.
    pub fn redacted(&self) -> String {
        self.render(true)
    }

    /// An S3 location's credentials (access key, secret key, session token), for handing to
    /// a tool through its environment rather than its command line. Never log them.
    pub fn credentials(&self) -> Option<(String, String, Option<String>)> {
        match &self.backend {
            Backend::S3(s3) => Some((
                s3.params.access_key.clone()?,
                s3.params.secret_access_key.clone()?,
                s3.params.session_token.clone(),
            )),
            Backend::Local { .. } => None,
        }
    }

    /// A sub-location: `s3://b/p` + `backups/x` = `s3://b/p/backups/x` (same parameters).
    pub fn join(&self, sub: &str) -> StorageUri {
        let segments = sub.split('/').filter(|s| !s.is_empty());
        let backend = match &self.backend {
            Backend::S3(s3) => {
                let mut s3 = s3.clone();
                for seg in segments {
                    if !s3.prefix.is_empty() {
                        s3.prefix.push('/');
                    }
                    s3.prefix.push_str(seg);
                }
                Backend::S3(s3)
            }
            Backend::Local { scheme, path } => Backend::Local {
                scheme,
                path: segments.fold(path.clone(), |p, seg| p.join(seg)),
            },
        };
        StorageUri { backend }
    }

    /// `s3`, `local` or `file`.
    pub fn scheme(&self) -> &str {
        match &self.backend {
            Backend::S3(_) => "s3",
            Backend::Local { scheme, .. } => scheme,
        }
    }

    /// The bucket of an S3 location.
    pub fn bucket(&self) -> Option<&str> {
        match &self.backend {
            Backend::S3(s3) => Some(&s3.bucket),
            Backend::Local { .. } => None,
        }
    }

    /// The directory of a local location.
    pub fn local_path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::S3(_) => None,
            Backend::Local { path, .. } => Some(path),
        }
    }

    fn render(&self, redact: bool) -> String {
        match &self.backend {
            Backend::Local { scheme, path } => {
                format!("{scheme}://{}", encode_path(&path.to_string_lossy()))
            }
            Backend::S3(s3) => {
                let mut out = format!("s3://{}", s3.bucket);
                if !s3.prefix.is_empty() {
                    out.push('/');
                    out.push_str(&encode_path(&s3.prefix));
                }
                let mut sep = '?';
                for name in PARAMS {
                    if redact && is_redacted(name) {
                        continue;
                    }
                    if let Some(v) = s3.params.rendered(name) {
                        out.push(sep);
                        out.push_str(name);
                        out.push('=');
                        out.push_str(&encode_value(&v));
                        sep = '&';
                    }
                }
                out
            }
        }
    }
}

impl fmt::Display for StorageUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for StorageUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageUri({})", self.redacted())
    }
}

impl std::str::FromStr for StorageUri {
    type Err = StorageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StorageUri::parse(s)
    }
}

fn parse_s3(path: &str, query: Option<&str>) -> Result<S3Uri, String> {
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty() {
        return Err("no bucket (s3://bucket/prefix)".into());
    }
    if let Some(c) = bucket
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!("bucket name contains '{c}'"));
    }
    let prefix = percent_decode(prefix, false).ok_or("invalid percent-encoding in the prefix")?;
    let prefix = prefix.trim_matches('/').to_string();
    let mut params = S3Params::default();
    for (name, value) in query_pairs(query)? {
        set_param(&mut params, &name, value)?;
    }
    if let Some(e) = &params.endpoint {
        params.endpoint = Some(check_endpoint(e)?);
    }
    if params.secret_access_key.is_some() != params.access_key.is_some() {
        return Err("access-key and secret-access-key must be given together".into());
    }
    if params.session_token.is_some() && params.access_key.is_none() {
        return Err("session-token needs access-key and secret-access-key".into());
    }
    Ok(S3Uri {
        bucket: bucket.to_string(),
        prefix,
        params,
    })
}

/// The decoded `name=value` pairs of a query; names with `_` read as `-` (as BR does).
/// Empty values count as not given.
fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let name = percent_decode(name, true)
            .ok_or("invalid percent-encoding in a parameter name")?
            .replace('_', "-")
            .to_ascii_lowercase();
        let value = percent_decode(value, true)
            .ok_or_else(|| format!("invalid percent-encoding in parameter '{name}'"))?;
        if !value.is_empty() {
            pairs.push((name, value));
        }
    }
    Ok(pairs)
}

fn set_param(params: &mut S3Params, name: &str, value: String) -> Result<(), String> {
    if let Some((_, why)) = UNSUPPORTED.iter().find(|(n, _)| *n == name) {
        return Err(format!("parameter '{name}': {why}"));
    }
    let duplicate = || format!("parameter '{name}' is given twice");
    if name == "force-path-style" {
        if params.force_path_style.is_some() {
            return Err(duplicate());
        }
        params.force_path_style = Some(parse_bool(&value).ok_or_else(|| {
            format!("parameter 'force-path-style' must be true or false, not '{value}'")
        })?);
        return Ok(());
    }
    let Some(slot) = params.slot(name) else {
        return Err(format!(
            "unknown parameter '{name}' (supported: {})",
            PARAMS.join(", ")
        ));
    };
    if slot.is_some() {
        return Err(duplicate());
    }
    *slot = Some(value);
    Ok(())
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// `http(s)://host[:port][/path]`, without a trailing '/'.
fn check_endpoint(e: &str) -> Result<String, String> {
    let rest = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("https://"))
        .ok_or("endpoint must start with http:// or https://")?;
    if rest.is_empty() || rest.starts_with('/') || rest.contains('@') {
        return Err(format!("endpoint '{}' has no host", redact_raw(e)));
    }
    Ok(e.trim_end_matches('/').to_string())
}

fn parse_local(scheme: &'static str, path: &str, query: Option<&str>) -> Result<Backend, String> {
    if let Some((name, _)) = query_pairs(query)?.into_iter().next() {
        return Err(format!(
            "parameter '{name}' is not supported by {scheme}:// storage"
        ));
    }
    if !path.starts_with('/') {
        return Err(format!(
            "a {scheme}:// URI names an absolute path: {scheme}:///absolute/path"
        ));
    }
    let decoded = percent_decode(path, false).ok_or("invalid percent-encoding in the path")?;
    let trimmed = decoded.trim_end_matches('/');
    let path = PathBuf::from(if trimmed.is_empty() { "/" } else { trimmed });
    Ok(Backend::Local { scheme, path })
}

/// `%XX` decoding (and `+` as a space when `plus_is_space`); `None` on a broken escape or
/// bytes that are not UTF-8.
fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes what would change a query value's meaning; keeps `:` and `/` readable.
pub fn encode_value(v: &str) -> String {
    encode(v, |b| b.is_ascii_alphanumeric() || b"-._~:/".contains(&b))
}

/// Encodes what would end or change a path.
fn encode_path(p: &str) -> String {
    encode(p, |b| b.is_ascii_graphic() && !b"%?#+&".contains(&b))
}

fn encode(s: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The raw URI for an error message: the query (where secrets live) and any user info
/// dropped.
fn redact_raw(raw: &str) -> String {
    let base = raw.split(['?', '#']).next().unwrap_or("").trim();
    match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => base.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "Zx9+q/w&e=r%t";

    fn err(raw: &str) -> String {
        let e = StorageUri::parse(raw).unwrap_err();
        assert!(matches!(e, StorageError::InvalidUri { .. }), "{e:?}");
        e.to_string()
    }

    fn s3(uri: &StorageUri) -> &S3Uri {
        match &uri.backend {
            Backend::S3(s3) => s3,
            Backend::Local { .. } => panic!("not s3"),
        }
    }

    #[test]
    fn s3_uri_with_every_parameter() {
        let u = StorageUri::parse(
            "s3://backup/prod/dr/?access-key=minio&secret-access-key=miniostorage&session-token=tok\
             &endpoint=http://127.0.0.1:6060/&force-path-style=false&region=eu-west-1\
             &storage-class=STANDARD_IA&sse=aws:kms&sse-kms-key-id=k1&acl=private",
        )
        .unwrap();
        let s = s3(&u);
        assert_eq!(
            (s.bucket.as_str(), s.prefix.as_str()),
            ("backup", "prod/dr")
        );
        let p = &s.params;
        assert_eq!(p.access_key.as_deref(), Some("minio"));
        assert_eq!(p.secret_access_key.as_deref(), Some("miniostorage"));
        assert_eq!(p.session_token.as_deref(), Some("tok"));
        assert_eq!(p.endpoint.as_deref(), Some("http://127.0.0.1:6060"));
        assert_eq!(p.force_path_style, Some(false));
        assert_eq!(p.region.as_deref(), Some("eu-west-1"));
        assert_eq!(p.storage_class.as_deref(), Some("STANDARD_IA"));
        assert_eq!(p.sse.as_deref(), Some("aws:kms"));
        assert_eq!(p.sse_kms_key_id.as_deref(), Some("k1"));
        assert_eq!(p.acl.as_deref(), Some("private"));
        assert_eq!(
            u.redacted(),
            "s3://backup/prod/dr?endpoint=http://127.0.0.1:6060&force-path-style=false\
             &region=eu-west-1&storage-class=STANDARD_IA&sse=aws:kms&sse-kms-key-id=k1&acl=private"
        );
        assert_eq!(StorageUri::parse(&u.expose_secret()).unwrap(), u);
        assert_eq!((u.scheme(), u.bucket()), ("s3", Some("backup")));
    }

    #[test]
    fn redacted_form_matches_the_documented_example() {
        let u = StorageUri::parse(
            "s3://backup/prod?access-key=minio&secret-access-key=miniostorage\
             &endpoint=http://127.0.0.1:6060&force-path-style=true",
        )
        .unwrap();
        let shown = "s3://backup/prod?endpoint=http://127.0.0.1:6060&force-path-style=true";
        assert_eq!(u.redacted(), shown);
        assert_eq!(u.to_string(), shown);
        assert_eq!(format!("{u:?}"), format!("StorageUri({shown})"));
        assert_eq!(
            u.expose_secret(),
            "s3://backup/prod?access-key=minio&secret-access-key=miniostorage\
             &endpoint=http://127.0.0.1:6060&force-path-style=true"
        );
    }

    #[test]
    fn secrets_are_percent_decoded_and_encoded_back() {
        // '+' is a space in a query (as for BR); a '+' in a secret must be %2B.
        let raw =
            "s3://b?access-key=AK&secret-access-key=Zx9%2Bq%2Fw%26e%3Dr%25t&session-token=a+b";
        let u = StorageUri::parse(raw).unwrap();
        assert_eq!(s3(&u).params.secret_access_key.as_deref(), Some(SECRET));
        assert_eq!(s3(&u).params.session_token.as_deref(), Some("a b"));
        let exposed = u.expose_secret();
        assert!(
            exposed.contains("secret-access-key=Zx9%2Bq/w%26e%3Dr%25t"),
            "{exposed}"
        );
        assert_eq!(StorageUri::parse(&exposed).unwrap(), u);
        for shown in [u.redacted(), format!("{u}"), format!("{u:?}")] {
            assert!(!shown.contains("Zx9"), "{shown}");
            assert!(!shown.contains("access-key"), "{shown}");
        }
        let e = err("s3://b?access-key=AK&secret-access-key=Zx9%2");
        assert!(
            e.contains("invalid percent-encoding in parameter 'secret-access-key'"),
            "{e}"
        );
        assert!(!e.contains("Zx9"), "{e}");
    }

    #[test]
    fn unknown_and_unsupported_parameters_are_named() {
        let e = err("s3://b/p?access-key=AK&secret-access-key=hush&storage_klass=X");
        assert!(
            e.starts_with("invalid storage URI 's3://b/p': unknown parameter 'storage-klass'"),
            "{e}"
        );
        assert!(!e.contains("hush"), "{e}");
        let e = err("s3://b?role-arn=arn:aws:iam::1:role/x");
        assert!(
            e.contains("parameter 'role-arn': assuming a role is not supported"),
            "{e}"
        );
        let e = err("s3://b?region=a&region=b");
        assert!(e.contains("parameter 'region' is given twice"), "{e}");
        let e = err("s3://b?force-path-style=yes");
        assert!(e.contains("must be true or false"), "{e}");
        let e = err("s3://b?endpoint=127.0.0.1:9000");
        assert!(
            e.contains("endpoint must start with http:// or https://"),
            "{e}"
        );
        let e = err("s3://b?access-key=AK");
        assert!(e.contains("must be given together"), "{e}");
        // BR spells parameters with '_' too.
        let u = StorageUri::parse("s3://b?access_key=AK&secret_access_key=S&force_path_style=1")
            .unwrap();
        assert_eq!(s3(&u).params.access_key.as_deref(), Some("AK"));
        assert_eq!(s3(&u).params.force_path_style, Some(true));
    }

    #[test]
    fn schemes_and_shapes() {
        let e = err("gcs://bucket/p?credentials-file=/x");
        assert_eq!(
            e,
            "invalid storage URI 'gcs://bucket/p': unsupported scheme 'gcs' \
             (use s3://, local:// or file://)"
        );
        assert!(err("/tmp/backup").contains("no scheme"));
        assert!(err("s3:///p").contains("no bucket"));
        assert!(err("s3://b?x=1#frag").contains("%23"));
        // User info never reaches a message.
        let e = err("s3://AK:hush@bucket/p");
        assert!(!e.contains("hush") && e.contains("s3://bucket/p"), "{e}");
        let u = StorageUri::parse("s3://bucket").unwrap();
        assert_eq!(
            (s3(&u).prefix.as_str(), u.redacted().as_str()),
            ("", "s3://bucket")
        );
    }

    #[test]
    fn local_and_file_uris() {
        let u = StorageUri::parse("local:///var/backups/dr/").unwrap();
        assert_eq!(u.local_path(), Some(Path::new("/var/backups/dr")));
        assert_eq!(
            (u.scheme(), u.redacted().as_str()),
            ("local", "local:///var/backups/dr")
        );
        let f = StorageUri::parse("file:///var/my%20backups").unwrap();
        assert_eq!(f.local_path(), Some(Path::new("/var/my backups")));
        assert_eq!(f.to_string(), "file:///var/my%20backups");
        assert_eq!(StorageUri::parse(&f.expose_secret()).unwrap(), f);
        assert!(err("local://relative/path").contains("absolute path"));
        let odd = Path::new("/var/my backups/a+b#?%");
        let made = StorageUri::local(odd).expose_secret();
        assert_eq!(made, "local:///var/my%20backups/a%2Bb%23%3F%25");
        assert_eq!(StorageUri::parse(&made).unwrap().local_path(), Some(odd));
        assert!(
            err("file:///x?endpoint=http://h").contains("parameter 'endpoint' is not supported")
        );
        assert_eq!(f.bucket(), None);
    }

    #[test]
    fn join_appends_segments_and_keeps_parameters() {
        let u = StorageUri::parse("s3://b/p?access-key=AK&secret-access-key=S&region=r").unwrap();
        let j = u.join("backups/x/");
        assert_eq!(j.redacted(), "s3://b/p/backups/x?region=r");
        assert!(s3(&j).params == s3(&u).params);
        assert_eq!(
            StorageUri::parse("s3://b")
                .unwrap()
                .join("/a//b")
                .redacted(),
            "s3://b/a/b"
        );
        assert_eq!(u.join(""), u);
        let l = StorageUri::parse("local:///d").unwrap().join("a/b");
        assert_eq!(l.local_path(), Some(Path::new("/d/a/b")));
    }
}
