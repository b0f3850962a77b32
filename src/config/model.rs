//! The serde model of a sync-diff-inspector (v2) configuration file.
//!
//! Field names map to kebab-case TOML keys, and unknown keys are rejected everywhere so a
//! typo never silently falls back to a default. Optional string keys treat `""` as unset,
//! as sync-diff-inspector does.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Text written in place of secrets by `Debug` and `Serialize`.
pub const REDACTED: &str = "<redacted>";

/// A whole configuration file. Load it with [`Config::from_file`] or
/// [`Config::from_toml_str`], which also run [`Config::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Number of tables/chunks compared concurrently (`check-thread-count`, default 4, ≥ 1).
    #[serde(default = "default_check_thread_count")]
    pub check_thread_count: usize,
    /// Write fix SQL for differing rows (`export-fix-sql`, default true).
    #[serde(default = "default_true")]
    pub export_fix_sql: bool,
    /// Compare table structure only, skip data (`check-struct-only`, default false).
    #[serde(default)]
    pub check_struct_only: bool,
    /// Compare data only, skip the structure check (`check-data-only`, default false).
    #[serde(default)]
    pub check_data_only: bool,
    /// Report a table missing on one side instead of failing (`skip-non-existing-table`).
    #[serde(default)]
    pub skip_non_existing_table: bool,
    /// Chunk splitter choice (`splitter-strategy`). Recorded; syncgate picks its own splitter.
    #[serde(default)]
    pub splitter_strategy: SplitterStrategy,
    /// DM-master address (`dm-addr`). Accepted by the parser, rejected by validation.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub dm_addr: Option<String>,
    /// DM task name (`dm-task`). Accepted by the parser, rejected by validation.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub dm_task: Option<String>,
    /// Servers by name (`[data-sources.NAME]`).
    #[serde(default)]
    pub data_sources: BTreeMap<String, DataSource>,
    /// Table-router rules by name (`[routes.NAME]`), referenced from `route-rules`.
    #[serde(default)]
    pub routes: BTreeMap<String, Route>,
    /// Per-table settings by name (`[table-configs.NAME]`), enabled by `target-configs`.
    #[serde(default)]
    pub table_configs: BTreeMap<String, TableConfig>,
    /// What to compare (`[task]`, required).
    pub task: Task,
    /// The DR flow (`[dr]`): which sources are primary and secondary, where backups and
    /// redo live.
    #[serde(default)]
    pub dr: Option<DrSection>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            check_thread_count: default_check_thread_count(),
            export_fix_sql: true,
            check_struct_only: false,
            check_data_only: false,
            skip_non_existing_table: false,
            splitter_strategy: SplitterStrategy::default(),
            dm_addr: None,
            dm_task: None,
            data_sources: BTreeMap::new(),
            routes: BTreeMap::new(),
            table_configs: BTreeMap::new(),
            task: Task::default(),
            dr: None,
        }
    }
}

fn default_check_thread_count() -> usize {
    4
}

fn default_true() -> bool {
    true
}

/// `[task] fix-sql-binlog`: whether applying fix (and undo) SQL is binary-logged on the
/// downstream. Matters when the downstream is a replica: logged local writes become errant
/// GTIDs (MySQL) or local GTIDs in another server's domain (MariaDB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FixSqlBinlog {
    /// Leave the session's binary logging as it is (apply the fix on the primary instead,
    /// so that it replicates).
    Keep,
    /// `SET SESSION sql_log_bin = 0` at the top of every file and on `--apply-fix`.
    Skip,
}

/// sync-diff-inspector's `splitter-strategy`. syncgate accepts and records it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitterStrategy {
    /// Let the tool choose (default).
    #[default]
    Auto,
    /// Random sampling of split points.
    Random,
    /// `LIMIT`-based walking of the index.
    Limit,
}

/// One server (`[data-sources.NAME]`).
///
/// `Debug` and `Serialize` redact the password and TLS private key, so a config can be
/// logged or fingerprinted without leaking them.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DataSource {
    /// Host name or IP (default `127.0.0.1`).
    #[serde(default = "default_host")]
    pub host: String,
    /// TCP port (default 3306).
    #[serde(default = "default_port")]
    pub port: u16,
    /// User name (default `root`).
    #[serde(default = "default_user")]
    pub user: String,
    /// Password (default empty). Never printed.
    #[serde(default, serialize_with = "serialize_secret")]
    pub password: String,
    /// `""` (current data), a TiDB TSO, a datetime, or `"auto"` (from TiCDC syncpoints).
    #[serde(default)]
    pub snapshot: String,
    /// SQL mode to use on this server's sessions and when parsing its DDL.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub sql_mode: Option<String>,
    /// `"auto"`: chunk queries name the chunk key's index with `FORCE INDEX` (any server);
    /// unset otherwise.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub sql_hint_use_index: Option<String>,
    /// Names of `[routes.*]` applied to this source's tables, first match wins.
    #[serde(default)]
    pub route_rules: Vec<String>,
    /// Session variables set on every connection (`[data-sources.NAME.session]`).
    #[serde(default)]
    pub session: BTreeMap<String, SessionValue>,
    /// TLS settings (`[data-sources.NAME.security]`, see [`crate::db::tls`]); absent (or all
    /// keys empty) means plain TCP.
    #[serde(default)]
    pub security: Option<Security>,
    /// TiDB: the TiCDC server's OpenAPI address (`host:port` or `http://host:port`) of the
    /// cluster this source belongs to; `dr replicate` creates its changefeed there.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub cdc_addr: Option<String>,
}

fn default_host() -> String {
    "127.0.0.1".to_string()
}

fn default_port() -> u16 {
    3306
}

fn default_user() -> String {
    "root".to_string()
}

impl Default for DataSource {
    fn default() -> Self {
        DataSource {
            host: default_host(),
            port: default_port(),
            user: default_user(),
            password: String::new(),
            snapshot: String::new(),
            sql_mode: None,
            sql_hint_use_index: None,
            route_rules: Vec::new(),
            session: BTreeMap::new(),
            security: None,
            cdc_addr: None,
        }
    }
}

impl DataSource {
    /// `host:port`, for messages and connection options.
    pub fn addr(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            // An IPv6 literal needs brackets before the port.
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Whether `snapshot = "auto"` (snapshots taken from TiCDC syncpoints).
    pub fn is_auto_snapshot(&self) -> bool {
        self.snapshot.eq_ignore_ascii_case("auto")
    }
}

impl fmt::Debug for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataSource")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &redact(&self.password))
            .field("snapshot", &self.snapshot)
            .field("sql_mode", &self.sql_mode)
            .field("sql_hint_use_index", &self.sql_hint_use_index)
            .field("route_rules", &self.route_rules)
            .field("session", &self.session)
            .field("security", &self.security)
            .field("cdc_addr", &self.cdc_addr)
            .finish()
    }
}

/// TLS material for one data source: file paths or inline PEM text.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Security {
    /// CA certificate file (PEM).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub ca_path: Option<String>,
    /// Client certificate file (PEM).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub cert_path: Option<String>,
    /// Client private key file (PEM).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub key_path: Option<String>,
    /// CA certificate as PEM text, instead of `ca-path`.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub ca_bytes: Option<String>,
    /// Client certificate as PEM text, instead of `cert-path`.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub cert_bytes: Option<String>,
    /// Client private key as PEM text, instead of `key-path`. Never printed.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        serialize_with = "serialize_opt_secret"
    )]
    pub key_bytes: Option<String>,
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Security")
            .field("ca_path", &self.ca_path)
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("ca_bytes", &self.ca_bytes)
            .field("cert_bytes", &self.cert_bytes)
            .field("key_bytes", &self.key_bytes.as_deref().map(redact))
            .finish()
    }
}

/// A session variable value: TOML strings, integers, floats and booleans are accepted.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionValue {
    /// Rendered as a quoted SQL string.
    String(String),
    /// Rendered as is.
    Integer(i64),
    /// Rendered as a decimal number (always finite).
    Float(f64),
    /// Rendered as `ON` / `OFF`, which every boolean system variable accepts.
    Bool(bool),
}

impl SessionValue {
    /// The value as SQL literal text for `SET SESSION name = <literal>`.
    pub fn to_sql_literal(&self) -> String {
        match self {
            SessionValue::String(s) => crate::sql::quote_str(s),
            SessionValue::Integer(i) => i.to_string(),
            SessionValue::Float(f) => {
                let text = f.to_string();
                // `1` would read back as an integer; keep it a decimal.
                if text.contains(['.', 'e', 'E']) {
                    text
                } else {
                    format!("{text}.0")
                }
            }
            SessionValue::Bool(true) => "ON".to_string(),
            SessionValue::Bool(false) => "OFF".to_string(),
        }
    }
}

impl Serialize for SessionValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            SessionValue::String(s) => serializer.serialize_str(s),
            SessionValue::Integer(i) => serializer.serialize_i64(*i),
            SessionValue::Float(f) => serializer.serialize_f64(*f),
            SessionValue::Bool(b) => serializer.serialize_bool(*b),
        }
    }
}

impl<'de> Deserialize<'de> for SessionValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SessionValueVisitor)
    }
}

struct SessionValueVisitor;

impl serde::de::Visitor<'_> for SessionValueVisitor {
    type Value = SessionValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, integer, float or boolean")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<SessionValue, E> {
        Ok(SessionValue::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<SessionValue, E> {
        Ok(SessionValue::Integer(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<SessionValue, E> {
        i64::try_from(v)
            .map(SessionValue::Integer)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<SessionValue, E> {
        if v.is_finite() {
            Ok(SessionValue::Float(v))
        } else {
            Err(E::invalid_value(
                serde::de::Unexpected::Float(v),
                &"a finite number",
            ))
        }
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SessionValue, E> {
        Ok(SessionValue::String(v.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<SessionValue, E> {
        Ok(SessionValue::String(v))
    }
}

/// A table-router rule (`[routes.NAME]`): upstream tables matching the patterns are
/// compared against `target-schema`.`target-table` downstream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Route {
    /// Upstream schema pattern (wildcards as in table filters).
    pub schema_pattern: String,
    /// Upstream table pattern; unset matches every table of a matching schema.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub table_pattern: Option<String>,
    /// Downstream schema name.
    pub target_schema: String,
    /// Downstream table name; unset keeps the upstream table name.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub target_table: Option<String>,
}

/// Settings for the tables matching `target-tables` (`[table-configs.NAME]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TableConfig {
    /// Table-filter patterns of the downstream tables this config applies to.
    pub target_tables: Vec<String>,
    /// SQL `WHERE` fragment limiting the compared rows on both sides.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub range: Option<String>,
    /// Columns of the index to split chunks on (must match an index exactly).
    #[serde(default)]
    pub index_fields: Vec<String>,
    /// Columns left out of the comparison.
    #[serde(default)]
    pub ignore_columns: Vec<String>,
    /// Rows per chunk; absent or 0 = automatic (0 is accepted as sync-diff-inspector does,
    /// and named in the report's warnings, so it is kept apart from "absent").
    #[serde(default)]
    pub chunk_size: Option<u64>,
    /// Collation for ordering and range predicates (not for the checksum).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub collation: Option<String>,
    /// MariaDB system-versioned tables: compare every row version (`FOR SYSTEM_TIME ALL`,
    /// period columns included) instead of the current rows.
    #[serde(default)]
    pub system_versioned_history: bool,
}

/// What to compare (`[task]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Task {
    /// Where reports, fix SQL and checkpoints go. Default `./output`; a relative path is
    /// relative to the working directory of the process, not to the config file.
    #[serde(default = "default_output_dir")]
    pub output_dir: PathBuf,
    /// Data-source names forming the upstream (one, or several shards). With a `[dr]`
    /// section it defaults to `[dr] primary`.
    #[serde(default)]
    pub source_instances: Vec<String>,
    /// Data-source name of the downstream. With a `[dr]` section it defaults to
    /// `[dr] secondary`.
    #[serde(default)]
    pub target_instance: String,
    /// Table-filter patterns of the downstream tables to check.
    pub target_check_tables: Vec<String>,
    /// Names of `[table-configs.*]` to apply.
    #[serde(default)]
    pub target_configs: Vec<String>,
    /// TiCDC changefeed whose syncpoints `snapshot = "auto"` uses.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub syncpoint_changefeed: Option<String>,
    /// Where every run's report and fix SQL are uploaded (`s3://…`, `local:///…`), under
    /// `runs/<run id>/`; also where `check --lock` keeps its lease. Unset: nowhere.
    #[serde(default)]
    pub report_storage: Option<UriSetting>,
    /// Whether applied fix SQL is binary-logged (see [`FixSqlBinlog`]); unset: logged, and
    /// `--apply-fix` is refused on a replica.
    #[serde(default)]
    pub fix_sql_binlog: Option<FixSqlBinlog>,
}

/// A storage URI in the config: `Debug` and `Serialize` redact its secrets.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct UriSetting(pub String);

impl UriSetting {
    /// The URI, `None` when empty.
    pub fn get(&self) -> Option<&str> {
        Some(self.0.as_str()).filter(|s| !s.trim().is_empty())
    }
}

impl fmt::Debug for UriSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&redact_uri(&self.0), f)
    }
}

impl Serialize for UriSetting {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_uri(&self.0, s)
    }
}

fn default_output_dir() -> PathBuf {
    PathBuf::from("./output")
}

impl Default for Task {
    fn default() -> Self {
        Task {
            output_dir: default_output_dir(),
            source_instances: Vec::new(),
            target_instance: String::new(),
            target_check_tables: Vec::new(),
            target_configs: Vec::new(),
            syncpoint_changefeed: None,
            report_storage: None,
            fix_sql_binlog: None,
        }
    }
}

/// The DR flow's settings (`[dr]`).
///
/// `Debug` and `Serialize` redact the secrets inside the storage URIs.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DrSection {
    /// Data-source name of the primary.
    pub primary: String,
    /// Data-source name of the secondary.
    pub secondary: String,
    /// Where backups, their manifests and the flow state live (`s3://…`, `local:///…`).
    #[serde(serialize_with = "serialize_uri")]
    pub backup_storage: String,
    /// Where redo lives: TiCDC's redo log, or archived binlogs on MariaDB/MySQL.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        serialize_with = "serialize_opt_uri"
    )]
    pub redo_storage: Option<String>,
    /// TiCDC changefeed of the flow (TiDB).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub changefeed_id: Option<String>,
    /// TiDB: how long the PD service safepoint taken before a backup holds GC back when
    /// nothing releases it (seconds, default 24 h).
    #[serde(default = "default_gc_hold_ttl")]
    pub gc_hold_ttl: u64,
    /// MariaDB/MySQL: the user the secondary replicates as (default: the primary data
    /// source's user).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub replication_user: Option<String>,
    /// Its password (default: the primary data source's password). Never printed.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        serialize_with = "serialize_opt_secret"
    )]
    pub replication_password: Option<String>,
    /// `host:port` the secondary reaches the primary at, when it differs from the primary
    /// data source's address (NAT, another network).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub primary_host_for_replica: Option<String>,
    /// `dr archive`: seconds between writes of the open segment (default 1).
    #[serde(default = "default_flush_interval")]
    pub flush_interval: f64,
}

fn default_flush_interval() -> f64 {
    1.0
}

fn default_gc_hold_ttl() -> u64 {
    24 * 3600
}

impl fmt::Debug for DrSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrSection")
            .field("primary", &self.primary)
            .field("secondary", &self.secondary)
            .field("backup_storage", &redact_uri(&self.backup_storage))
            .field(
                "redo_storage",
                &self.redo_storage.as_deref().map(redact_uri),
            )
            .field("changefeed_id", &self.changefeed_id)
            .field("gc_hold_ttl", &self.gc_hold_ttl)
            .field("replication_user", &self.replication_user)
            .field(
                "replication_password",
                &self.replication_password.as_deref().map(redact),
            )
            .field("primary_host_for_replica", &self.primary_host_for_replica)
            .field("flush_interval", &self.flush_interval)
            .finish()
    }
}

/// Query parameters of a storage URI whose values are secrets.
const URI_SECRETS: &[&str] = &["secret-access-key", "session-token", "access-key"];

/// A storage URI with the values of its secret parameters replaced (pure text work: it
/// must not fail on a URI that does not parse).
pub fn redact_uri(uri: &str) -> String {
    let Some((base, query)) = uri.split_once('?') else {
        return uri.to_string();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if URI_SECRETS.contains(&k) && !v.is_empty() => {
                format!("{k}={REDACTED}")
            }
            _ => pair.to_string(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

fn serialize_uri<S: Serializer>(uri: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_uri(uri))
}

fn serialize_opt_uri<S: Serializer>(uri: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match uri {
        Some(v) => s.serialize_some(&redact_uri(v)),
        None => s.serialize_none(),
    }
}

/// `""` means "not set" in sync-diff-inspector configs.
fn empty_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(d)?;
    Ok(value.filter(|s| !s.is_empty()))
}

fn redact(secret: &str) -> &str {
    if secret.is_empty() {
        ""
    } else {
        REDACTED
    }
}

fn serialize_secret<S: Serializer>(secret: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(redact(secret))
}

fn serialize_opt_secret<S: Serializer>(secret: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(v) => s.serialize_some(redact(v)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_literals() {
        assert_eq!(
            SessionValue::String("it's".into()).to_sql_literal(),
            "'it''s'"
        );
        assert_eq!(
            SessionValue::String("a\\b".into()).to_sql_literal(),
            "'a\\\\b'"
        );
        assert_eq!(SessionValue::Integer(-5).to_sql_literal(), "-5");
        assert_eq!(SessionValue::Float(1.5).to_sql_literal(), "1.5");
        assert_eq!(SessionValue::Float(2.0).to_sql_literal(), "2.0");
        assert_eq!(SessionValue::Bool(true).to_sql_literal(), "ON");
        assert_eq!(SessionValue::Bool(false).to_sql_literal(), "OFF");
    }

    #[test]
    fn secrets_are_redacted() {
        let ds = DataSource {
            password: "hunter2".into(),
            security: Some(Security {
                key_bytes: Some("-----BEGIN PRIVATE KEY-----".into()),
                ..Security::default()
            }),
            ..DataSource::default()
        };
        let debug = format!("{ds:?} {ds:#?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("PRIVATE"), "{debug}");
        assert!(debug.contains(REDACTED));
        let json = serde_json::to_string(&ds).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(!json.contains("PRIVATE"), "{json}");
        let toml_text = toml::to_string(&ds).unwrap();
        assert!(!toml_text.contains("hunter2"), "{toml_text}");
        // An empty password stays visibly empty.
        let empty = format!("{:?}", DataSource::default());
        assert!(empty.contains("password: \"\""), "{empty}");
    }

    #[test]
    fn addr_formats_ipv6() {
        let mut ds = DataSource::default();
        assert_eq!(ds.addr(), "127.0.0.1:3306");
        ds.host = "::1".into();
        assert_eq!(ds.addr(), "[::1]:3306");
    }
}
