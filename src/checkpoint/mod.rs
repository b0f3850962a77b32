//! Checkpoint and resume: what an interrupted run had finished, so that `check --resume`
//! goes on where it stopped and ends with the result an uninterrupted run would have had
//! (ARCHITECTURE.md, "Checkpoint and resume"). Pure bookkeeping plus plain file I/O; no
//! async.
//!
//! - [`fingerprint`]: sha256 over a canonical JSON of the configuration, leaving out what
//!   cannot change results (parallelism, output directory, TLS files, …). A checkpoint is
//!   only resumed under the same fingerprint; [`mismatch_message`] names what changed.
//! - [`ChunkTracker`]: per table, the chunks finished so far (they finish out of order, one
//!   worker may be slow) and the **contiguous finished prefix** in key order: its length,
//!   the upper bound of its last chunk, and its accumulated counts. Only the prefix is
//!   saved; chunks after it are checked again on resume.
//! - [`Checkpoint`]: `output-dir/checkpoint/checkpoint.json`, written atomically (temporary
//!   file in the same directory, fsync, rename), so a `kill -9` leaves the previous or the
//!   new complete file, never a torn one.
//! - Fix SQL part files: each chunk's statements go to
//!   `fix-on-<target>/.parts/<file stem>/<seq>.sql` and are joined in key order into the
//!   table's file when it finishes; [`prune_parts`] drops the parts a resume redoes.

use crate::chunk::KeyRange;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::report::TableReport;
use crate::row::Row;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Directory of the checkpoint inside the output directory.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// File name of the checkpoint inside [`CHECKPOINT_DIR`].
pub const CHECKPOINT_FILE: &str = "checkpoint.json";
/// Version of the file format; another version is refused on resume.
pub const FORMAT_VERSION: u32 = 1;
/// Directory of the per-chunk fix SQL part files inside `fix-on-<target>/`.
pub const PARTS_DIR: &str = ".parts";

// ---------------------------------------------------------------------------------------
// Configuration fingerprint
// ---------------------------------------------------------------------------------------

/// Settings that change results but may come from the command line instead of the file:
/// the fingerprint uses the values the run actually uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effective {
    pub export_fix_sql: bool,
    pub apply_fix: bool,
    pub struct_only: bool,
    pub data_only: bool,
    pub skip_missing: bool,
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

// ---------------------------------------------------------------------------------------
// Per-table chunk bookkeeping
// ---------------------------------------------------------------------------------------

/// Row counts accumulated over chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkCounts {
    pub rows_missing: u64,
    pub rows_extra: u64,
    pub rows_changed: u64,
    pub rows_upstream: u64,
    pub rows_downstream: u64,
    pub chunks_different: u64,
}

impl ChunkCounts {
    fn add(&mut self, o: &ChunkCounts) {
        self.rows_missing += o.rows_missing;
        self.rows_extra += o.rows_extra;
        self.rows_changed += o.rows_changed;
        self.rows_upstream += o.rows_upstream;
        self.rows_downstream += o.rows_downstream;
        self.chunks_different += o.chunks_different;
    }
}

/// The contiguous finished prefix of a table's chunks (in key order, the order the
/// producer numbers them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prefix {
    /// Names of the chunk key columns; a resume whose plan has another key starts over.
    pub key: Vec<String>,
    /// Chunks `0..chunks` are finished.
    pub chunks: u64,
    /// Upper bound of chunk `chunks - 1`: the index walk resumes after it. Each value is
    /// its text when that is UTF-8, else `{"hex": "…"}`.
    #[serde(with = "key_json")]
    pub upper: Option<Row>,
    /// Chunk `chunks - 1` was the table's last (no upper bound): nothing is left.
    pub last: bool,
    /// Counts of the prefix's chunks.
    pub counts: ChunkCounts,
    /// Ranges with differences in the prefix (kept for `--apply-fix`'s re-check only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirty: Vec<KeyRange>,
}

/// Key values as readable JSON: `null`, the text when it is UTF-8, else `{"hex": "…"}`.
mod key_json {
    use crate::row::{Row, Value as Cell};
    use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::{json, Value};

    pub fn serialize<S: Serializer>(row: &Option<Row>, s: S) -> Result<S::Ok, S::Error> {
        let cell = |c: &Cell| match c {
            None => Value::Null,
            Some(b) => match std::str::from_utf8(b) {
                Ok(text) => Value::String(text.to_string()),
                Err(_) => json!({ "hex": hex::encode(b) }),
            },
        };
        row.as_ref()
            .map(|r| r.iter().map(cell).collect::<Vec<_>>())
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Row>, D::Error> {
        let cell = |v: Value| -> Result<Cell, D::Error> {
            match v {
                Value::Null => Ok(None),
                Value::String(text) => Ok(Some(text.into_bytes())),
                Value::Object(m) => match m.get("hex").and_then(Value::as_str) {
                    Some(h) => hex::decode(h).map(Some).map_err(D::Error::custom),
                    None => Err(D::Error::custom("a key value object needs \"hex\"")),
                },
                other => Err(D::Error::custom(format!("unexpected key value {other}"))),
            }
        };
        Option::<Vec<Value>>::deserialize(d)?
            .map(|vals| vals.into_iter().map(cell).collect())
            .transpose()
    }
}

/// A chunk after the prefix: known from the producer (`queued`) and/or finished (`done`).
#[derive(Debug, Clone, Default)]
struct Pending {
    queued: bool,
    upper: Option<Row>,
    done: bool,
    counts: ChunkCounts,
    dirty: Vec<KeyRange>,
}

/// One table's chunks in key order, and their contiguous finished prefix (sync-diff's
/// checkpoint heap). Memory: one entry per chunk queued or finished after the prefix.
#[derive(Debug, Clone, Default)]
pub struct ChunkTracker {
    prefix: Prefix,
    pending: BTreeMap<u64, Pending>,
    frozen: bool,
}

impl ChunkTracker {
    /// Start from a saved prefix (or `Prefix::default()` with the key names).
    pub fn new(prefix: Prefix) -> Self {
        ChunkTracker {
            prefix,
            pending: BTreeMap::new(),
            frozen: false,
        }
    }

    /// The producer queued chunk `seq` with this upper bound (`None`: the table's last).
    pub fn queued(&mut self, seq: u64, upper: Option<Row>) -> bool {
        let p = self.pending.entry(seq).or_default();
        p.queued = true;
        p.upper = upper;
        self.advance()
    }

    /// Row changes found in chunk `seq`.
    pub fn changes(&mut self, seq: u64, missing: u64, extra: u64, changed: u64) {
        let c = &mut self.pending.entry(seq).or_default().counts;
        c.rows_missing += missing;
        c.rows_extra += extra;
        c.rows_changed += changed;
    }

    /// A range of chunk `seq` had differences (for `--apply-fix`).
    pub fn dirty(&mut self, seq: u64, range: KeyRange) {
        self.pending.entry(seq).or_default().dirty.push(range);
    }

    /// Chunk `seq` finished. Returns whether the prefix grew.
    pub fn done(&mut self, seq: u64, up: u64, down: u64, different: bool) -> bool {
        let p = self.pending.entry(seq).or_default();
        p.done = true;
        p.counts.rows_upstream += up;
        p.counts.rows_downstream += down;
        p.counts.chunks_different += u64::from(different);
        self.advance()
    }

    /// An error was reported for the table, by a chunk not finished yet (so after the
    /// prefix): the prefix stops growing, and a resume checks everything after it again.
    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    pub fn prefix(&self) -> &Prefix {
        &self.prefix
    }

    fn advance(&mut self) -> bool {
        let mut grew = false;
        while !self.frozen && !self.prefix.last {
            let seq = self.prefix.chunks;
            match self.pending.get(&seq) {
                Some(p) if p.queued && p.done => {}
                _ => break,
            }
            let p = self.pending.remove(&seq).unwrap_or_default();
            self.prefix.chunks += 1;
            self.prefix.last = p.upper.is_none();
            self.prefix.upper = p.upper;
            self.prefix.counts.add(&p.counts);
            self.prefix.dirty.extend(p.dirty);
            grew = true;
        }
        grew
    }
}

// ---------------------------------------------------------------------------------------
// The checkpoint file
// ---------------------------------------------------------------------------------------

/// The points a run read both sides at (as its report states them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadAt {
    pub upstream: String,
    pub downstream: String,
}

/// A table's saved state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EntryState {
    /// Checked to the end without an error: the report is reused as is. `fix_sql` in it is
    /// relative to the output directory.
    Finished {
        report: Box<TableReport>,
        /// Ranges with differences (for `--apply-fix`'s re-check only).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dirty: Vec<KeyRange>,
    },
    /// Partly checked: the finished prefix.
    InProgress { prefix: Prefix },
}

/// One table in the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableEntry {
    /// Downstream (target) schema and table.
    pub schema: String,
    pub table: String,
    #[serde(flatten)]
    pub state: EntryState,
    /// The points the saved part was read at (one per run that contributed).
    pub read_at: Vec<ReadAt>,
}

/// The whole checkpoint file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// [`Fingerprint::hash`] of the run's configuration.
    pub fingerprint: String,
    /// [`Fingerprint::config`].
    pub config: Value,
    /// When the file was written (RFC 3339, UTC).
    pub written_at: String,
    /// TiDB `snapshot = "auto"`: the TSOs the syncpoint gave (upstream, downstream); a
    /// resume reads at these, not at a newer syncpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tidb_auto: Option<ReadAt>,
    /// Tables finished or partly checked; tables not listed start from the beginning.
    pub tables: Vec<TableEntry>,
}

impl Checkpoint {
    /// The entry of target table `schema`.`table`.
    pub fn entry(&self, schema: &str, table: &str) -> Option<&TableEntry> {
        self.tables
            .iter()
            .find(|e| e.schema == schema && e.table == table)
    }
}

/// `output-dir/checkpoint`.
pub fn checkpoint_dir(output_dir: &Path) -> PathBuf {
    output_dir.join(CHECKPOINT_DIR)
}

/// Read the checkpoint in `output_dir`: `Ok(None)` when there is none, an error (one line)
/// when it cannot be read or has another format version.
pub fn load(output_dir: &Path) -> Result<Option<Checkpoint>> {
    let dir = checkpoint_dir(output_dir);
    let path = dir.join(CHECKPOINT_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(&dir, &e.to_string())),
    };
    let value: Value = serde_json::from_str(&text).map_err(|e| unreadable(&dir, &e.to_string()))?;
    let version = value.get("version").and_then(Value::as_u64);
    if version != Some(u64::from(FORMAT_VERSION)) {
        return Err(unreadable(
            &dir,
            &format!(
                "format version {} where {FORMAT_VERSION} is expected",
                version.map_or("none".to_string(), |v| v.to_string())
            ),
        ));
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| unreadable(&dir, &e.to_string()))
}

fn unreadable(dir: &Path, why: &str) -> Error {
    Error::Config(format!(
        "the checkpoint in {} cannot be resumed ({why}); remove it or use another output-dir",
        dir.display()
    ))
}

/// Write the checkpoint atomically: a temporary file in the same directory, fsync, rename,
/// then fsync of the directory (best effort) so the rename itself survives a power loss.
pub fn save(output_dir: &Path, ck: &Checkpoint) -> Result<()> {
    let dir = checkpoint_dir(output_dir);
    let path = dir.join(CHECKPOINT_FILE);
    let tmp = dir.join(format!(".{CHECKPOINT_FILE}.{}.tmp", std::process::id()));
    let res = (|| {
        fs::create_dir_all(&dir)?;
        let mut text = serde_json::to_vec_pretty(ck).map_err(std::io::Error::from)?;
        text.push(b'\n');
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    res.map_err(|source: std::io::Error| {
        let _ = fs::remove_file(&tmp);
        Error::Output { path, source }
    })
}

/// Delete the checkpoint (and temporary files a killed writer left); the directory too when
/// nothing else is in it.
pub fn remove(output_dir: &Path) -> Result<()> {
    let dir = checkpoint_dir(output_dir);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(Error::Output { path: dir, source }),
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name == CHECKPOINT_FILE
            || (name.starts_with(&format!(".{CHECKPOINT_FILE}.")) && name.ends_with(".tmp"));
        if ours {
            fs::remove_file(e.path()).map_err(|source| Error::Output {
                path: e.path(),
                source,
            })?;
        }
    }
    let _ = fs::remove_dir(&dir);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Fix SQL part files
// ---------------------------------------------------------------------------------------

/// `fix_dir/.parts/<stem>`: the part files of the table whose fix file is `<stem>.sql`.
pub fn parts_dir(fix_dir: &Path, file_name: &str) -> PathBuf {
    let stem = file_name.strip_suffix(".sql").unwrap_or(file_name);
    fix_dir.join(PARTS_DIR).join(stem)
}

/// The part file of chunk `seq` (zero-padded, so names sort in chunk order).
pub fn part_path(parts_dir: &Path, seq: u64) -> PathBuf {
    parts_dir.join(format!("{seq:010}.sql"))
}

/// The part files in `parts_dir`, in chunk order.
pub fn list_parts(parts_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = match fs::read_dir(parts_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Output {
                path: parts_dir.to_path_buf(),
                source,
            })
        }
    };
    let mut out: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let seq = name.strip_suffix(".sql")?.parse().ok()?;
            Some((seq, e.path()))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Remove the part files a run will write again: under `fix_dir/.parts`, a table directory
/// named in `keep` keeps its parts with a sequence number below the given count; every
/// other part and directory is removed.
pub fn prune_parts(fix_dir: &Path, keep: &BTreeMap<String, u64>) -> Result<()> {
    let root = fix_dir.join(PARTS_DIR);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Output { path, source }
    };
    let dirs = match fs::read_dir(&root) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(&root)(e)),
    };
    for d in dirs.flatten() {
        let name = d.file_name().to_string_lossy().into_owned();
        let path = d.path();
        match keep.get(&name) {
            Some(&n) if n > 0 && path.is_dir() => {
                for entry in fs::read_dir(&path).map_err(io(&path))?.flatten() {
                    let file = entry.file_name().to_string_lossy().into_owned();
                    let seq: Option<u64> = file.strip_suffix(".sql").and_then(|s| s.parse().ok());
                    if seq.is_none_or(|s| s >= n) {
                        fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
                    }
                }
            }
            _ if path.is_dir() => fs::remove_dir_all(&path).map_err(io(&path))?,
            _ => fs::remove_file(&path).map_err(io(&path))?,
        }
    }
    if keep.is_empty() {
        let _ = fs::remove_dir(&root);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::from_toml_str(
            &format!(
                r#"check-thread-count = 4
[data-sources.up]
host = "10.0.0.1"
password = "secret"
[data-sources.down]
host = "10.0.0.2"
[data-sources.unused]
host = "10.0.0.3"
[task]
output-dir = "./out"
source-instances = ["up"]
target-instance = "down"
target-check-tables = ["shop.*"]
{extra}"#
            ),
            "test.toml",
        )
        .unwrap()
    }

    fn fp(c: &Config, e: Effective) -> Fingerprint {
        fingerprint(c, &e).unwrap()
    }

    #[test]
    fn fingerprint_ignores_volatile_fields() {
        let e = Effective::default();
        let base = fp(&config(""), e);
        assert_eq!(base.hash.len(), 64);
        assert!(!base.config.to_string().contains("secret"));
        let mut c = config("");
        c.check_thread_count = 16;
        c.task.output_dir = "/elsewhere".into();
        c.splitter_strategy = crate::config::SplitterStrategy::Random;
        c.data_sources.get_mut("unused").unwrap().port = 1;
        c.data_sources.get_mut("up").unwrap().security = Some(crate::config::Security {
            ca_path: Some("/etc/ca.pem".into()),
            ..Default::default()
        });
        assert_eq!(fp(&c, e).hash, base.hash);
        // Same config, same hash (deterministic).
        assert_eq!(fp(&config(""), e), base);
    }

    #[test]
    fn fingerprint_changes_with_what_changes_results() {
        let e = Effective::default();
        let base = fp(&config(""), e);
        let mut port = config("");
        port.data_sources.get_mut("down").unwrap().port = 4000;
        let tables = config("").task.target_check_tables;
        let mut filter = config("");
        filter.task.target_check_tables = vec!["shop.orders".into()];
        assert_ne!(tables, filter.task.target_check_tables);
        let chunk = config(
            "target-configs = [\"c\"]\n[table-configs.c]\ntarget-tables = [\"shop.*\"]\nchunk-size = 10\n",
        );
        for (what, other) in [
            ("port", fp(&port, e)),
            ("filter", fp(&filter, e)),
            ("chunk-size", fp(&chunk, e)),
            (
                "apply-fix",
                fp(
                    &config(""),
                    Effective {
                        apply_fix: true,
                        ..e
                    },
                ),
            ),
            (
                "export-fix-sql",
                fp(
                    &config(""),
                    Effective {
                        export_fix_sql: true,
                        ..e
                    },
                ),
            ),
        ] {
            assert_ne!(other.hash, base.hash, "{what}");
        }
        let keys = changed_keys(&base.config, &fp(&port, e).config);
        assert_eq!(keys, vec!["data-sources.down.port".to_string()]);
        let keys = changed_keys(&base.config, &fp(&chunk, e).config);
        assert!(
            keys.iter().any(|k| k.starts_with("table-configs")),
            "{keys:?}"
        );
        assert!(keys.iter().any(|k| k == "task.target-configs"), "{keys:?}");
    }

    #[test]
    fn mismatch_message_is_one_line_and_names_keys() {
        let e = Effective::default();
        let saved = Checkpoint {
            version: FORMAT_VERSION,
            fingerprint: fp(&config(""), e).hash,
            config: fp(&config(""), e).config,
            written_at: String::new(),
            tidb_auto: None,
            tables: vec![],
        };
        let mut c = config("");
        c.task.target_check_tables = vec!["other.*".into()];
        let msg = mismatch_message(Path::new("out/checkpoint"), &saved, &fp(&c, e));
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.contains("different configuration"), "{msg}");
        assert!(msg.contains("task.target-check-tables"), "{msg}");
        assert!(msg.contains("out/checkpoint"), "{msg}");
    }

    fn key(n: u8) -> Option<Row> {
        Some(vec![Some(vec![b'0' + n])])
    }

    #[test]
    fn prefix_grows_only_when_contiguous() {
        let mut t = ChunkTracker::new(Prefix::default());
        for seq in 0..4 {
            t.queued(seq, key(seq as u8));
        }
        t.queued(4, None);
        // 2 and 1 finish before 0.
        t.changes(2, 1, 0, 0);
        assert!(!t.done(2, 10, 9, true));
        assert!(!t.done(1, 10, 10, false));
        assert_eq!(t.prefix().chunks, 0);
        assert!(t.done(0, 10, 10, false));
        let p = t.prefix();
        assert_eq!((p.chunks, p.upper.clone(), p.last), (3, key(2), false));
        assert_eq!(p.counts.rows_upstream, 30);
        assert_eq!(p.counts.rows_downstream, 29);
        assert_eq!(p.counts.rows_missing, 1);
        assert_eq!(p.counts.chunks_different, 1);
        // The last chunk finishes before chunk 3.
        assert!(!t.done(4, 5, 5, false));
        assert!(t.done(3, 10, 10, false));
        let p = t.prefix();
        assert_eq!((p.chunks, p.upper.clone(), p.last), (5, None, true));
        assert_eq!(p.counts.rows_upstream, 45);
    }

    #[test]
    fn chunk_done_before_queued_waits_for_its_bound() {
        let mut t = ChunkTracker::new(Prefix::default());
        assert!(!t.done(0, 1, 1, false));
        assert!(t.queued(0, key(1)));
        assert_eq!(t.prefix().upper, key(1));
    }

    #[test]
    fn resumed_prefix_continues_and_freeze_stops_it() {
        let saved = Prefix {
            key: vec!["id".into()],
            chunks: 7,
            upper: key(7),
            last: false,
            counts: ChunkCounts {
                rows_upstream: 70,
                ..Default::default()
            },
            dirty: vec![],
        };
        let mut t = ChunkTracker::new(saved);
        t.queued(7, key(8));
        t.queued(8, key(9));
        assert!(t.done(7, 10, 10, false));
        assert_eq!(t.prefix().chunks, 8);
        t.freeze();
        assert!(!t.done(8, 10, 10, false));
        assert_eq!(t.prefix().chunks, 8);
        assert_eq!(t.prefix().counts.rows_upstream, 80);
    }

    fn sample() -> Checkpoint {
        let report: TableReport = serde_json::from_value(serde_json::json!({
            "schema": "shop", "table": "orders", "upstream_table": "shop.orders",
            "result": "different", "structure_equal": true, "structure_diffs": [],
            "data_checked": true, "rows_missing": 1, "rows_extra": 2, "rows_changed": 3,
            "rows_upstream": 10, "rows_downstream": 11, "chunks": 2, "chunks_different": 1,
            "fix_sql": "fix-on-down/shop.orders.sql", "skip_reason": null, "error": null,
            "duration_ms": 5
        }))
        .unwrap();
        Checkpoint {
            version: FORMAT_VERSION,
            fingerprint: "ab".repeat(32),
            config: serde_json::json!({"task": {"target-instance": "down"}}),
            written_at: "2025-01-01T00:00:00Z".into(),
            tidb_auto: None,
            tables: vec![
                TableEntry {
                    schema: "shop".into(),
                    table: "orders".into(),
                    state: EntryState::Finished {
                        report: Box::new(report),
                        dirty: vec![],
                    },
                    read_at: vec![ReadAt {
                        upstream: "live, not pinned".into(),
                        downstream: "live, not pinned".into(),
                    }],
                },
                TableEntry {
                    schema: "shop".into(),
                    table: "items".into(),
                    state: EntryState::InProgress {
                        prefix: Prefix {
                            key: vec!["id".into()],
                            chunks: 3,
                            upper: Some(vec![Some(b"42".to_vec()), None, Some(vec![0xff, 0])]),
                            last: false,
                            counts: ChunkCounts::default(),
                            dirty: vec![KeyRange {
                                lower: None,
                                upper: key(1),
                            }],
                        },
                    },
                    read_at: vec![],
                },
            ],
        }
    }

    #[test]
    fn save_load_round_trip_is_atomic() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let ck = sample();
        save(dir.path(), &ck).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(ck.clone()));
        // Key values are readable: text, or hex when not UTF-8.
        let text = fs::read_to_string(checkpoint_dir(dir.path()).join(CHECKPOINT_FILE)).unwrap();
        assert!(text.contains("\"42\""), "{text}");
        assert!(text.contains("\"hex\": \"ff00\""), "{text}");
        // Overwrite: the new content replaces the old, no temporary file is left behind.
        let mut ck2 = ck.clone();
        ck2.tables.truncate(1);
        save(dir.path(), &ck2).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(ck2));
        let names: Vec<String> = fs::read_dir(checkpoint_dir(dir.path()))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![CHECKPOINT_FILE.to_string()]);
        // A temp file left by a killed writer does not disturb reading, and is removed.
        let stale = checkpoint_dir(dir.path()).join(format!(".{CHECKPOINT_FILE}.1.tmp"));
        fs::write(&stale, "{").unwrap();
        assert!(load(dir.path()).unwrap().is_some());
        remove(dir.path()).unwrap();
        assert!(!checkpoint_dir(dir.path()).exists());
        assert_eq!(load(dir.path()).unwrap(), None);
    }

    #[test]
    fn unreadable_or_other_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cdir = checkpoint_dir(dir.path());
        fs::create_dir_all(&cdir).unwrap();
        fs::write(cdir.join(CHECKPOINT_FILE), "{\"version\": 99}").unwrap();
        let msg = load(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("format version 99"), "{msg}");
        fs::write(cdir.join(CHECKPOINT_FILE), "not json").unwrap();
        let msg = load(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("cannot be resumed"), "{msg}");
    }

    #[test]
    fn prune_keeps_only_the_saved_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let fix = dir.path();
        let a = parts_dir(fix, "shop.a.sql");
        let b = parts_dir(fix, "shop.b.sql");
        for d in [&a, &b] {
            fs::create_dir_all(d).unwrap();
            for seq in [0, 2, 5, 11] {
                fs::write(part_path(d, seq), format!("-- {seq}\n")).unwrap();
            }
        }
        let keep = BTreeMap::from([("shop.a".to_string(), 5u64)]);
        prune_parts(fix, &keep).unwrap();
        let seqs: Vec<u64> = list_parts(&a).unwrap().into_iter().map(|p| p.0).collect();
        assert_eq!(seqs, vec![0, 2]);
        assert!(!b.exists());
        prune_parts(fix, &BTreeMap::new()).unwrap();
        assert!(!fix.join(PARTS_DIR).exists());
    }
}
