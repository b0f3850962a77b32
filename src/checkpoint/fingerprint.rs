//! The configuration fingerprint: which configuration a checkpoint belongs to, and the
//! one-line refusal that names what changed when it is another.

use super::Checkpoint;
use crate::config::Config;
use crate::error::{Error, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Settings that change results but may come from the command line instead of the file:
/// the fingerprint uses the values the run actually uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effective {
    pub export_fix_sql: bool,
    pub apply_fix: bool,
    pub struct_only: bool,
    pub data_only: bool,
    pub skip_missing: bool,
    /// `--shard I/N` as `(I, N)`: which tables the run checks.
    pub shard: Option<(u32, u32)>,
}

/// A configuration's identity for resuming.
#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint {
    /// Hex sha256 of [`Fingerprint::config`] in canonical form (keys sorted, no spaces).
    pub hash: String,
    /// The configuration as fingerprinted (secrets redacted, volatile keys left out), kept
    /// in the checkpoint so a mismatch can name the keys that changed.
    pub config: Value,
}

/// Top-level keys that do not change results: parallelism (a resume may use another), and
/// `splitter-strategy` (recorded only; syncgate always walks the index).
const VOLATILE_TOP: [&str; 2] = ["check-thread-count", "splitter-strategy"];
/// Data-source keys that do not change results: TLS files (a renewed certificate must not
/// break a resume) and the index hint (a TiDB planner hint).
const VOLATILE_SOURCE: [&str; 2] = ["security", "sql-hint-use-index"];

/// Fingerprint `config` as run with the `effective` settings. Left out: `check-thread-count`,
/// `splitter-strategy`, `task.output-dir` (where the checkpoint lives), data sources the task
/// does not use, and their `security` and `sql-hint-use-index`. Passwords are redacted by
/// `Config`'s `Serialize`. Added: the effective `export-fix-sql`, `check-struct-only`,
/// `check-data-only`, `skip-non-existing-table`, `apply-fix`, and the checksum version.
pub fn fingerprint(config: &Config, effective: &Effective) -> Result<Fingerprint> {
    let mut v = serde_json::to_value(config)
        .map_err(|e| Error::Config(format!("cannot fingerprint the configuration: {e}")))?;
    if let Value::Object(m) = &mut v {
        for k in VOLATILE_TOP {
            m.remove(k);
        }
        let used: Vec<&String> = config
            .task
            .source_instances
            .iter()
            .chain(std::iter::once(&config.task.target_instance))
            .collect();
        if let Some(Value::Object(sources)) = m.get_mut("data-sources") {
            sources.retain(|name, _| used.contains(&name));
            for ds in sources.values_mut() {
                if let Value::Object(ds) = ds {
                    for k in VOLATILE_SOURCE {
                        ds.remove(k);
                    }
                }
            }
        }
        if let Some(Value::Object(task)) = m.get_mut("task") {
            task.remove("output-dir");
            task.remove("report-storage");
        }
        let flags = [
            ("export-fix-sql", effective.export_fix_sql),
            ("apply-fix", effective.apply_fix),
            ("check-struct-only", effective.struct_only),
            ("check-data-only", effective.data_only),
            ("skip-non-existing-table", effective.skip_missing),
        ];
        for (k, b) in flags {
            m.insert(k.to_string(), Value::Bool(b));
        }
        if let Some((i, n)) = effective.shard {
            m.insert("shard".to_string(), Value::String(format!("{i}/{n}")));
        }
        m.insert(
            "checksum".to_string(),
            Value::String(crate::checksum::CHECKSUM_VERSION.to_string()),
        );
    }
    let hash = hex::encode(Sha256::digest(canonical_json(&v).as_bytes()));
    Ok(Fingerprint { hash, config: v })
}

/// JSON text with object keys sorted at every level (independent of serde_json's map
/// ordering feature).
fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&m[k])))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(canonical_json).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

/// Dotted paths of the keys whose values differ between two fingerprinted configurations
/// (arrays compare whole), sorted.
pub fn changed_keys(old: &Value, new: &Value) -> Vec<String> {
    fn walk(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<String>) {
        match (a, b) {
            (Some(Value::Object(x)), Some(Value::Object(y))) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(&p, x.get(k), y.get(k), out);
                }
            }
            (a, b) if a != b => out.push(if path.is_empty() {
                "(everything)".into()
            } else {
                path.to_string()
            }),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", Some(old), Some(new), &mut out);
    out
}

/// The one-line refusal for a checkpoint written under another configuration.
pub fn mismatch_message(dir: &Path, saved: &Checkpoint, current: &Fingerprint) -> String {
    let mut keys = changed_keys(&saved.config, &current.config);
    let what = if keys.is_empty() {
        format!(
            "fingerprint {} there, {} now",
            short(&saved.fingerprint),
            short(&current.hash)
        )
    } else {
        let more = keys.len().saturating_sub(6);
        keys.truncate(6);
        let mut s = format!("changed: {}", keys.join(", "));
        if more > 0 {
            s.push_str(&format!(" and {more} more"));
        }
        s
    };
    format!(
        "the checkpoint in {} was written for a different configuration ({what}); remove it or \
         use another output-dir",
        dir.display()
    )
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}
