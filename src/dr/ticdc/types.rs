//! TiCDC OpenAPI v2 bodies and errors (dr-interfaces A6), and the MySQL sink URI (A6.5).
//! Pure data: no I/O.

use std::fmt;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

use crate::config::REDACTED;

/// A URI that carries a secret (the sink's password, the redo storage's keys). It goes to
/// TiCDC as it is; `Debug` and `Display` show it redacted.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretUri(String);

impl SecretUri {
    pub fn new(uri: String) -> SecretUri {
        SecretUri(uri)
    }

    /// The URI with its secrets, for TiCDC only. Never log it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The URI without the password of its user part and with secret query values masked.
    pub fn redacted(&self) -> String {
        crate::config::redact_uri(&strip_password(&self.0))
    }

    /// The secret pieces of the URI (the password raw and encoded, secret query values),
    /// to mask where a server echoes them.
    pub fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(pass) = userinfo_password(&self.0) {
            if !pass.is_empty() {
                out.push(pass.to_string());
                if let Ok(decoded) = percent_encoding::percent_decode_str(pass).decode_utf8() {
                    out.push(decoded.into_owned());
                }
            }
        }
        if let Some((_, query)) = self.0.split_once('?') {
            for pair in query.split('&') {
                if let Some((k, v)) = pair.split_once('=') {
                    let secret = ["secret-access-key", "session-token", "access-key"]
                        .iter()
                        .any(|s| k.replace('_', "-") == *s);
                    if secret && !v.is_empty() {
                        out.push(v.to_string());
                    }
                }
            }
        }
        out.retain(|s| s.len() >= 2);
        out
    }

    /// Whether `other` names the same place with the same user (passwords ignored: TiCDC
    /// may answer the sink URI with its password masked).
    pub fn same_target(&self, other: &SecretUri) -> bool {
        strip_password(&self.0) == strip_password(&other.0)
    }
}

impl fmt::Debug for SecretUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The `user:password@` part's password, as written.
fn userinfo_password(uri: &str) -> Option<&str> {
    let (_, rest) = uri.split_once("://")?;
    let authority = rest.split(['/', '?']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    userinfo.split_once(':').map(|(_, p)| p)
}

fn strip_password(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:{REDACTED}@{host}{tail}")
        }
        None => uri.to_string(),
    }
}

/// Replace every secret in `text` with [`REDACTED`] (a server message may echo a URI).
pub fn mask(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    let mut secrets: Vec<&String> = secrets.iter().collect();
    // Longest first: an encoded password may contain the raw one.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in secrets {
        out = out.replace(s.as_str(), REDACTED);
    }
    out
}

/// Characters escaped in the user and password of a sink URI: everything but unreserved.
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The MySQL sink URI of a downstream (A6.5): `mysql://user:password@host:port/`, user and
/// password percent-encoded. TLS files are passed as `ssl-ca`, `ssl-cert`, `ssl-key`; they are
/// read by the TiCDC server, so the paths must be valid there.
pub fn mysql_sink_uri(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    tls_files: &[(&str, &str)],
) -> SecretUri {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let mut uri = format!(
        "mysql://{}:{}@{host}:{port}/",
        utf8_percent_encode(user, USERINFO),
        utf8_percent_encode(password, USERINFO)
    );
    for (i, (k, v)) in tls_files.iter().enumerate() {
        uri.push(if i == 0 { '?' } else { '&' });
        uri.push_str(&format!("{k}={}", utf8_percent_encode(v, USERINFO)));
    }
    SecretUri(uri)
}

/// `consistent` (A8.1, API v2 snake_case): the redo log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistentConfig {
    /// `eventual` turns redo on.
    pub level: String,
    /// Where the redo log goes: one prefix per changefeed (`cdc redo apply` reads every meta
    /// file under it, A8.4).
    pub storage: SecretUri,
    /// Milliseconds between flushes of the redo log (minimum 50).
    #[serde(default)]
    pub flush_interval: u64,
    /// Milliseconds between meta file writes (minimum 50).
    #[serde(default)]
    pub meta_flush_interval: u64,
}

/// The part of `replica_config` syncgate sets; TiCDC fills the rest with its defaults
/// (it decodes over a pre-filled struct, A6.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaConfig {
    #[serde(default)]
    pub enable_sync_point: bool,
    /// Sent as a Go duration string; answered in nanoseconds (A6.2).
    #[serde(default, with = "go_duration")]
    pub sync_point_interval: Option<Duration>,
    #[serde(default)]
    pub consistent: Option<ConsistentConfig>,
}

/// The body of `POST /api/v2/changefeeds` (A6.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangefeedConfig {
    pub namespace: String,
    pub changefeed_id: String,
    pub start_ts: u64,
    pub sink_uri: SecretUri,
    pub replica_config: ReplicaConfig,
}

impl ChangefeedConfig {
    /// Everything secret in the body, to mask in TiCDC's answers.
    pub fn secrets(&self) -> Vec<String> {
        let mut s = self.sink_uri.secrets();
        if let Some(c) = &self.replica_config.consistent {
            s.extend(c.storage.secrets());
        }
        s
    }
}

/// A changefeed's state (`model.FeedState`, A6.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedState {
    Normal,
    /// Shown as warning.
    Pending,
    Warning,
    Stopped,
    Failed,
    Finished,
    Removed,
    #[serde(other)]
    Unknown,
}

impl FeedState {
    pub fn as_str(&self) -> &'static str {
        match self {
            FeedState::Normal => "normal",
            FeedState::Pending => "pending",
            FeedState::Warning => "warning",
            FeedState::Stopped => "stopped",
            FeedState::Failed => "failed",
            FeedState::Finished => "finished",
            FeedState::Removed => "removed",
            FeedState::Unknown => "unknown",
        }
    }

    /// States that do not become `normal` without an operator.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            FeedState::Stopped | FeedState::Failed | FeedState::Finished | FeedState::Removed
        )
    }
}

impl fmt::Display for FeedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A changefeed's error or warning (`RunningError`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// What `GET /changefeeds/{id}` and `POST /changefeeds` answer (A6.1); fields syncgate
/// does not use are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChangefeedInfo {
    #[serde(default)]
    pub namespace: String,
    pub id: String,
    #[serde(default)]
    pub sink_uri: SecretUri,
    #[serde(default)]
    pub start_ts: u64,
    #[serde(default)]
    pub checkpoint_ts: u64,
    pub state: FeedState,
    #[serde(default)]
    pub error: Option<RunningError>,
    #[serde(default)]
    pub config: Option<ReplicaConfig>,
}

/// One item of `GET /changefeeds?state=all`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChangefeedSummary {
    #[serde(default)]
    pub namespace: String,
    pub id: String,
    pub state: FeedState,
    #[serde(default)]
    pub checkpoint_tso: u64,
    #[serde(default)]
    pub error: Option<RunningError>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ChangefeedList {
    #[serde(default)]
    pub items: Vec<ChangefeedSummary>,
}

/// TiCDC's error body (A6.4).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiErrorBody {
    #[serde(default)]
    pub error_msg: String,
    #[serde(default)]
    pub error_code: String,
}

/// What went wrong talking to TiCDC. Messages never carry the sink's or the redo storage's
/// secrets (they are masked before an error is built).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CdcError {
    /// TiCDC could not be reached, or the exchange broke.
    #[error("TiCDC {addr}: {message}")]
    Unreachable { addr: String, message: String },
    /// An answer that is not what the API documents.
    #[error("TiCDC {addr}: unexpected answer to {request}: {message}")]
    BadResponse {
        addr: String,
        request: String,
        message: String,
    },
    /// `CDC:ErrStartTsBeforeGC`: GC has passed the start point; the data from there on may be
    /// collected. Take a new backup.
    #[error("TiCDC refused start-ts {start_ts}: it is at or below the GC safepoint{}; data from the backup point on may be collected, take a new backup ({message})", .gc_safe_point.map(|g| format!(" {g}")).unwrap_or_default())]
    StartTsBeforeGc {
        start_ts: u64,
        gc_safe_point: Option<u64>,
        message: String,
    },
    /// `CDC:ErrChangeFeedAlreadyExists`.
    #[error("changefeed {id} already exists on TiCDC ({message})")]
    ChangefeedExists { id: String, message: String },
    /// `CDC:ErrChangeFeedNotExists`.
    #[error("changefeed {id} does not exist on TiCDC")]
    ChangefeedNotFound { id: String },
    /// `CDC:ErrSinkURIInvalid` and other sink errors: the secondary as TiCDC sees it.
    #[error("TiCDC refused the sink {sink}: {message}")]
    InvalidSink { sink: String, message: String },
    /// `CDC:ErrAPIInvalidParam` and other 400 answers.
    #[error("TiCDC refused the request {request}: {message} ({code})")]
    Invalid {
        request: String,
        code: String,
        message: String,
    },
    /// HTTP 401: TiCDC checks clients with a TiDB user (A6.4).
    #[error("TiCDC {addr} refused the client (HTTP 401): {message}")]
    Unauthorized { addr: String, message: String },
    /// Any other error answer (500: owner or cluster trouble, 503: not ready).
    #[error("TiCDC {request} failed (HTTP {status}, {code}): {message}")]
    Api {
        request: String,
        status: u16,
        code: String,
        message: String,
    },
    /// The changefeed reached a state it does not leave by itself.
    #[error("changefeed {id} is {state}: {message}")]
    NotRunning {
        id: String,
        state: FeedState,
        message: String,
    },
    /// The changefeed did not become `normal` in time.
    #[error("changefeed {id} did not become normal within {}s (last state {state}{})", .waited.as_secs(), if .message.is_empty() { String::new() } else { format!(": {}", .message) })]
    Timeout {
        id: String,
        waited: Duration,
        state: FeedState,
        message: String,
    },
}

/// The TSO pair of `ErrStartTsBeforeGC`'s message: "start-ts %d is earlier than or equal to
/// GC safepoint at %d".
pub fn parse_start_ts_before_gc(message: &str) -> Option<u64> {
    let (_, tail) = message.split_once("GC safepoint at ")?;
    let digits: String = tail.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// What an error answer is about, to name it in the typed error.
#[derive(Debug, Clone, Default)]
pub struct Asked<'a> {
    /// TiCDC's address.
    pub addr: &'a str,
    /// `METHOD path`.
    pub request: &'a str,
    /// The changefeed.
    pub id: &'a str,
    /// The start-ts sent (create), else 0.
    pub start_ts: u64,
    /// The sink, redacted.
    pub sink: &'a str,
    /// Secrets to mask out of TiCDC's message.
    pub secrets: &'a [String],
}

/// Map an error answer to its typed error. Secrets are masked out of the message first.
pub fn api_error(asked: &Asked<'_>, status: u16, body: &[u8]) -> CdcError {
    let Asked {
        addr,
        request,
        id,
        start_ts,
        sink,
        secrets,
    } = *asked;
    let parsed: ApiErrorBody = serde_json::from_slice(body).unwrap_or_else(|_| ApiErrorBody {
        error_msg: String::from_utf8_lossy(body).trim().to_string(),
        error_code: String::new(),
    });
    let message = mask(&parsed.error_msg, secrets);
    let code = parsed.error_code;
    match (status, code.as_str()) {
        (_, "CDC:ErrStartTsBeforeGC") => CdcError::StartTsBeforeGc {
            start_ts,
            gc_safe_point: parse_start_ts_before_gc(&message),
            message,
        },
        (_, "CDC:ErrChangeFeedAlreadyExists") => CdcError::ChangefeedExists {
            id: id.to_string(),
            message,
        },
        (_, "CDC:ErrChangeFeedNotExists") => CdcError::ChangefeedNotFound { id: id.to_string() },
        (_, c) if c.starts_with("CDC:ErrSink") || c.starts_with("CDC:ErrMySQL") => {
            CdcError::InvalidSink {
                sink: sink.to_string(),
                message: format!("{message} ({c})"),
            }
        }
        (401, _) => CdcError::Unauthorized {
            addr: addr.to_string(),
            message,
        },
        (400, _) => CdcError::Invalid {
            request: request.to_string(),
            code,
            message,
        },
        _ => CdcError::Api {
            request: request.to_string(),
            status,
            code,
            message,
        },
    }
}

/// Durations as TiCDC takes them (a Go duration string) and answers them (nanoseconds).
mod go_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format!("{}s", d.as_secs())),
            None => s.serialize_none(),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Nanos(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(match Option::<Raw>::deserialize(d)? {
            None => None,
            Some(Raw::Nanos(n)) => Some(Duration::from_nanos(n)),
            Some(Raw::Text(t)) => parse(&t),
        })
    }

    /// `90s`, `5m`, `1h` and sums of them (`1m30s`).
    fn parse(t: &str) -> Option<Duration> {
        let mut total = 0u64;
        let mut num = String::new();
        for c in t.chars() {
            if c.is_ascii_digit() {
                num.push(c);
            } else {
                let n: u64 = num.parse().ok()?;
                num.clear();
                total += n * match c {
                    's' => 1,
                    'm' => 60,
                    'h' => 3600,
                    _ => return None,
                };
            }
        }
        num.is_empty().then_some(Duration::from_secs(total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_uri_encodes_the_password_and_redacts_it() {
        let uri = mysql_sink_uri("10.0.0.2", 4000, "dr user", "p@ss:w/rd?&x", &[]);
        assert_eq!(
            uri.expose_secret(),
            "mysql://dr%20user:p%40ss%3Aw%2Frd%3F%26x@10.0.0.2:4000/"
        );
        let shown = format!("{uri} {uri:?}");
        assert!(
            !shown.contains("p%40ss") && !shown.contains("p@ss"),
            "{shown}"
        );
        assert!(shown.contains("mysql://dr%20user:<redacted>@10.0.0.2:4000/"));
        assert!(uri.secrets().contains(&"p@ss:w/rd?&x".to_string()));
        let v6 = mysql_sink_uri("::1", 4000, "root", "", &[("ssl-ca", "/etc/ca.pem")]);
        assert_eq!(
            v6.expose_secret(),
            "mysql://root:@[::1]:4000/?ssl-ca=%2Fetc%2Fca.pem"
        );
    }

    #[test]
    fn same_target_ignores_a_masked_password() {
        let a = mysql_sink_uri("h", 4000, "u", "secret", &[]);
        let masked = SecretUri::new("mysql://u:xxxxx@h:4000/".into());
        assert!(a.same_target(&masked));
        assert!(!a.same_target(&mysql_sink_uri("h", 4001, "u", "secret", &[])));
        assert!(!a.same_target(&mysql_sink_uri("h", 4000, "v", "secret", &[])));
    }

    #[test]
    fn storage_secrets_are_masked() {
        let s = SecretUri::new(
            "s3://b/redo?access-key=AKIAXYZ&secret-access-key=topsecret&endpoint=http://x".into(),
        );
        assert!(!format!("{s:?}").contains("topsecret"));
        let text = mask(
            "cannot open s3://b/redo?secret-access-key=topsecret",
            &s.secrets(),
        );
        assert!(!text.contains("topsecret"), "{text}");
    }

    #[test]
    fn errors_are_typed_by_code() {
        let asked = Asked {
            addr: "cdc",
            request: "POST /changefeeds",
            id: "cf",
            start_ts: 10,
            ..Asked::default()
        };
        let e = api_error(
            &asked,
            400,
            br#"{"error_msg":"[CDC:ErrStartTsBeforeGC]fail to create or maintain changefeed because start-ts 10 is earlier than or equal to GC safepoint at 20","error_code":"CDC:ErrStartTsBeforeGC"}"#,
        );
        assert!(
            matches!(
                e,
                CdcError::StartTsBeforeGc {
                    start_ts: 10,
                    gc_safe_point: Some(20),
                    ..
                }
            ),
            "{e:?}"
        );
        let e = api_error(&asked, 500, b"not json");
        assert!(matches!(&e, CdcError::Api { status: 500, message, .. } if message == "not json"));
        let secrets = ["pw1234".to_string()];
        let e = api_error(
            &Asked {
                secrets: &secrets,
                ..asked.clone()
            },
            400,
            br#"{"error_msg":"bad uri mysql://u:pw1234@h","error_code":"CDC:ErrSinkURIInvalid"}"#,
        );
        assert!(matches!(e, CdcError::InvalidSink { .. }));
        assert!(!e.to_string().contains("pw1234"), "{e}");
    }

    #[test]
    fn durations_go_out_as_strings_and_come_back_as_nanoseconds() {
        let rc = ReplicaConfig {
            enable_sync_point: true,
            sync_point_interval: Some(Duration::from_secs(60)),
            consistent: None,
        };
        let v = serde_json::to_value(&rc).unwrap();
        assert_eq!(v["sync_point_interval"], "60s");
        let back: ReplicaConfig =
            serde_json::from_str(r#"{"enable_sync_point":true,"sync_point_interval":60000000000}"#)
                .unwrap();
        assert_eq!(back.sync_point_interval, Some(Duration::from_secs(60)));
        let text: ReplicaConfig =
            serde_json::from_str(r#"{"sync_point_interval":"1m30s"}"#).unwrap();
        assert_eq!(text.sync_point_interval, Some(Duration::from_secs(90)));
    }
}
