//! Checks that need the whole file: cross-references between sections, incompatible
//! options, pattern syntax. Each problem carries the key path it is about, so the loader can
//! point at the line.

use std::collections::HashSet;

use super::filter::TableFilter;
use super::model::{Config, DataSource, Security};
use super::pattern::NamePattern;
use crate::error::{Error, Result};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A validation failure: what is wrong, and where in the file.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub(crate) path: Vec<Seg>,
    pub(crate) message: String,
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

fn problem(path: Vec<Seg>, message: String) -> Problem {
    Problem { path, message }
}

/// Renders a key for messages: bare when TOML allows it, quoted otherwise.
pub(crate) fn render_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

/// `[a.b.c]` for a table path.
pub(crate) fn render_table(path: &[&str]) -> String {
    let parts: Vec<String> = path.iter().map(|k| render_key(k)).collect();
    format!("[{}]", parts.join("."))
}

/// Snapshot forms sync-diff-inspector understands: a TSO or a datetime (`"auto"` and `""`
/// are handled by the caller). Checked loosely; the server has the last word.
fn is_valid_snapshot(s: &str) -> bool {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    // YYYY-MM-DD, optionally followed by [ T]hh:mm:ss and a fraction.
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() < 10 || !digits(0..4) || b[4] != b'-' || !digits(5..7) || b[7] != b'-' {
        return false;
    }
    if !digits(8..10) {
        return false;
    }
    if b.len() == 10 {
        return true;
    }
    if b.len() < 19 || !(b[10] == b' ' || b[10] == b'T') {
        return false;
    }
    if !digits(11..13) || b[13] != b':' || !digits(14..16) || b[16] != b':' || !digits(17..19) {
        return false;
    }
    match &b[19..] {
        [] => true,
        [b'.', frac @ ..] => !frac.is_empty() && frac.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

impl Config {
    /// Checks cross-references and option combinations; the loaders call it. The error
    /// names the offending key and value.
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(|p| Error::Config(p.message))
    }

    /// [`Config::validate`] with the key path of the problem, for locating it in the file.
    pub(crate) fn check(&self) -> std::result::Result<(), Problem> {
        self.check_global()?;
        self.check_dr()?;
        for (name, ds) in &self.data_sources {
            self.check_data_source(name, ds)?;
        }
        for (name, route) in &self.routes {
            let path = |k: &str| vec![key("routes"), key(name), key(k)];
            let table = render_table(&["routes", name]);
            let compile = |k: &str, text: &str| {
                NamePattern::parse_whole(text)
                    .map(|_| ())
                    .map_err(|reason| {
                        problem(
                            path(k),
                            format!("{table} {k}: invalid pattern '{text}': {reason}"),
                        )
                    })
            };
            compile("schema-pattern", &route.schema_pattern)?;
            if let Some(t) = &route.table_pattern {
                compile("table-pattern", t)?;
            }
            if route.target_schema.is_empty() {
                return Err(problem(
                    path("target-schema"),
                    format!("{table} target-schema must not be empty"),
                ));
            }
        }
        for (name, tc) in &self.table_configs {
            let table = render_table(&["table-configs", name]);
            let path = |k: &str| vec![key("table-configs"), key(name), key(k)];
            if tc.target_tables.is_empty() {
                return Err(problem(
                    path("target-tables"),
                    format!("{table} target-tables must list at least one table pattern"),
                ));
            }
            check_filter(
                &tc.target_tables,
                &path("target-tables"),
                &table,
                "target-tables",
            )?;
            for k in ["index-fields", "ignore-columns"] {
                let list = if k == "index-fields" {
                    &tc.index_fields
                } else {
                    &tc.ignore_columns
                };
                if let Some(i) = list.iter().position(|c| c.trim().is_empty()) {
                    let mut p = path(k);
                    p.push(Seg::Index(i));
                    return Err(problem(p, format!("{table} {k}: empty column name")));
                }
            }
        }
        self.check_task()
    }

    fn check_global(&self) -> std::result::Result<(), Problem> {
        for (k, set) in [("dm-addr", &self.dm_addr), ("dm-task", &self.dm_task)] {
            if set.is_some() {
                return Err(problem(
                    vec![key(k)],
                    format!(
                        "{k} is not supported: syncgate does not read sources from DM; \
                         list [data-sources], [routes] and [task] in the file instead"
                    ),
                ));
            }
        }
        if self.check_thread_count == 0 {
            return Err(problem(
                vec![key("check-thread-count")],
                "check-thread-count must be at least 1".into(),
            ));
        }
        if self.check_struct_only && self.check_data_only {
            return Err(problem(
                vec![key("check-data-only")],
                "check-struct-only and check-data-only cannot both be true".into(),
            ));
        }
        Ok(())
    }

    fn check_data_source(&self, name: &str, ds: &DataSource) -> std::result::Result<(), Problem> {
        let table = render_table(&["data-sources", name]);
        let path = |k: &str| vec![key("data-sources"), key(name), key(k)];
        if ds.host.trim().is_empty() {
            return Err(problem(
                path("host"),
                format!("{table} host must not be empty"),
            ));
        }
        if ds.port == 0 {
            return Err(problem(path("port"), format!("{table} port must not be 0")));
        }
        let consistent = ds.snapshot.eq_ignore_ascii_case("consistent");
        if !ds.snapshot.is_empty()
            && !ds.is_auto_snapshot()
            && !consistent
            && !is_valid_snapshot(&ds.snapshot)
        {
            return Err(problem(
                path("snapshot"),
                format!(
                    "{table} snapshot '{}' is not valid (expected \"\", \"auto\", \"consistent\", a \
                     TSO such as \"431434047157698561\", or a datetime \"YYYY-MM-DD hh:mm:ss\")",
                    ds.snapshot
                ),
            ));
        }
        if let Some(hint) = &ds.sql_hint_use_index {
            if !hint.eq_ignore_ascii_case("auto") {
                return Err(problem(
                    path("sql-hint-use-index"),
                    format!("{table} sql-hint-use-index '{hint}' is not valid (expected \"\" or \"auto\")"),
                ));
            }
        }
        let mut seen = HashSet::new();
        for (i, rule) in ds.route_rules.iter().enumerate() {
            let mut p = path("route-rules");
            p.push(Seg::Index(i));
            if !self.routes.contains_key(rule) {
                return Err(problem(
                    p,
                    format!("{table} route-rules: '{rule}' is not defined in [routes]"),
                ));
            }
            if !seen.insert(rule) {
                return Err(problem(
                    p,
                    format!("{table} route-rules: '{rule}' is listed twice"),
                ));
            }
        }
        // Names go into `SET SESSION <name> = …` unquoted, so only identifier text is allowed.
        if let Some(bad) = ds.session.keys().find(|k| {
            k.is_empty()
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '$')
        }) {
            let mut p = path("session");
            p.push(key(bad));
            return Err(problem(
                p,
                format!(
                    "{} '{bad}' is not a valid variable name",
                    render_table(&["data-sources", name, "session"])
                ),
            ));
        }
        if let Some(sec) = &ds.security {
            check_security(name, sec)?;
        }
        Ok(())
    }

    fn check_task(&self) -> std::result::Result<(), Problem> {
        let task = &self.task;
        let path = |k: &str| vec![key("task"), key(k)];
        if let Some(uri) = task.report_storage.as_ref().and_then(|u| u.get()) {
            if let Err(e) = crate::storage::StorageUri::parse(uri) {
                return Err(problem(
                    path("report-storage"),
                    format!("[task] report-storage: {e}"),
                ));
            }
        }
        self.check_source_instances()?;
        let target_ds = self.check_target_instance()?;
        if task.target_check_tables.is_empty() {
            return Err(problem(
                path("target-check-tables"),
                "[task] target-check-tables must list at least one table pattern".into(),
            ));
        }
        check_filter(
            &task.target_check_tables,
            &path("target-check-tables"),
            "[task]",
            "target-check-tables",
        )?;
        self.check_target_configs()?;
        let target_auto = target_ds.is_auto_snapshot();
        self.check_auto_snapshot(target_auto)?;
        if let Some(cf) = &task.syncpoint_changefeed {
            if !target_auto {
                return Err(problem(
                    path("syncpoint-changefeed"),
                    format!(
                        "[task] syncpoint-changefeed '{cf}' needs snapshot = \"auto\" on the \
                         source and target data sources"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// With a `[dr]` section, `[task]` may leave out the two sides: every gate compares the
    /// primary (upstream) with the secondary (downstream).
    /// sync-diff-inspector's own configs write `index-fields = [""]` and
    /// `ignore-columns = [""]` for "not set": a list holding only one empty name is empty. An
    /// empty name among real ones is still an error (see `check`).
    pub(crate) fn normalize_unset_lists(&mut self) {
        for tc in self.table_configs.values_mut() {
            for list in [&mut tc.index_fields, &mut tc.ignore_columns] {
                if list.len() == 1 && list[0].trim().is_empty() {
                    list.clear();
                }
            }
        }
    }

    pub(crate) fn apply_dr_defaults(&mut self) {
        if let Some(dr) = &self.dr {
            if self.task.source_instances.is_empty() {
                self.task.source_instances = vec![dr.primary.clone()];
            }
            if self.task.target_instance.is_empty() {
                self.task.target_instance = dr.secondary.clone();
            }
        }
    }

    /// `[dr]`: both sides defined and distinct, storage URIs of a known scheme.
    fn check_dr(&self) -> std::result::Result<(), Problem> {
        let Some(dr) = &self.dr else {
            return Ok(());
        };
        let path = |k: &str| vec![key("dr"), key(k)];
        for (k, name) in [("primary", &dr.primary), ("secondary", &dr.secondary)] {
            if !self.data_sources.contains_key(name) {
                return Err(problem(
                    path(k),
                    format!("[dr] {k}: '{name}' is not defined in [data-sources]"),
                ));
            }
        }
        if dr.primary == dr.secondary {
            return Err(problem(
                path("secondary"),
                format!("[dr] primary and secondary are both '{}'", dr.primary),
            ));
        }
        let uris = [
            ("backup-storage", Some(&dr.backup_storage)),
            ("redo-storage", dr.redo_storage.as_ref()),
        ];
        for (k, uri) in uris {
            if let Some(uri) = uri {
                if let Err(e) = crate::storage::StorageUri::parse(uri) {
                    return Err(problem(path(k), format!("[dr] {k}: {e}")));
                }
            }
        }
        Ok(())
    }

    /// `source-instances`: at least one, each defined in `[data-sources]`, none twice.
    fn check_source_instances(&self) -> std::result::Result<(), Problem> {
        let task = &self.task;
        let indexed = |i: usize| vec![key("task"), key("source-instances"), Seg::Index(i)];
        if task.source_instances.is_empty() {
            return Err(problem(
                vec![key("task"), key("source-instances")],
                "[task] source-instances must list at least one data source".into(),
            ));
        }
        let mut seen = HashSet::new();
        for (i, name) in task.source_instances.iter().enumerate() {
            if !self.data_sources.contains_key(name) {
                return Err(problem(
                    indexed(i),
                    format!("[task] source-instances: '{name}' is not defined in [data-sources]"),
                ));
            }
            if !seen.insert(name) {
                return Err(problem(
                    indexed(i),
                    format!("[task] source-instances: '{name}' is listed twice"),
                ));
            }
        }
        Ok(())
    }

    /// `target-instance`: defined in `[data-sources]` and not also a source. Returns its
    /// data source, whose snapshot the later checks look at.
    fn check_target_instance(&self) -> std::result::Result<&DataSource, Problem> {
        let target = &self.task.target_instance;
        let path = || vec![key("task"), key("target-instance")];
        if target.is_empty() {
            return Err(problem(
                path(),
                "missing key 'target-instance' in [task]".into(),
            ));
        }
        let Some(target_ds) = self.data_sources.get(target) else {
            return Err(problem(
                path(),
                format!("[task] target-instance: '{target}' is not defined in [data-sources]"),
            ));
        };
        if self.task.source_instances.contains(target) {
            return Err(problem(
                path(),
                format!("[task] target-instance '{target}' is also listed in source-instances"),
            ));
        }
        Ok(target_ds)
    }

    /// `target-configs`: each defined in `[table-configs]`, none twice.
    fn check_target_configs(&self) -> std::result::Result<(), Problem> {
        let indexed = |i: usize| vec![key("task"), key("target-configs"), Seg::Index(i)];
        let mut seen = HashSet::new();
        for (i, name) in self.task.target_configs.iter().enumerate() {
            if !self.table_configs.contains_key(name) {
                return Err(problem(
                    indexed(i),
                    format!("[task] target-configs: '{name}' is not defined in [table-configs]"),
                ));
            }
            if !seen.insert(name) {
                return Err(problem(
                    indexed(i),
                    format!("[task] target-configs: '{name}' is listed twice"),
                ));
            }
        }
        Ok(())
    }

    /// `snapshot = "auto"` pairs the target with exactly one source through TiCDC
    /// syncpoints: both or neither are `"auto"`, and then there is one source.
    fn check_auto_snapshot(&self, target_auto: bool) -> std::result::Result<(), Problem> {
        let task = &self.task;
        let target = &task.target_instance;
        let auto_sources: Vec<&String> = task
            .source_instances
            .iter()
            .filter(|s| self.data_sources[*s].is_auto_snapshot())
            .collect();
        if !target_auto && auto_sources.is_empty() {
            return Ok(());
        }
        let ds_path = |n: &str| vec![key("data-sources"), key(n), key("snapshot")];
        if !target_auto {
            return Err(problem(
                ds_path(auto_sources[0]),
                format!(
                    "snapshot = \"auto\" on source '{}' requires snapshot = \"auto\" on the target '{target}' too",
                    auto_sources[0]
                ),
            ));
        }
        if task.source_instances.len() != 1 || auto_sources.len() != 1 {
            return Err(problem(
                ds_path(target),
                format!(
                    "snapshot = \"auto\" on the target '{target}' requires exactly one source \
                     instance, also with snapshot = \"auto\""
                ),
            ));
        }
        Ok(())
    }
}

fn check_filter(
    patterns: &[String],
    path: &[Seg],
    table: &str,
    k: &str,
) -> std::result::Result<(), Problem> {
    for (i, p) in patterns.iter().enumerate() {
        if let Err(Error::Config(m)) = TableFilter::new(std::slice::from_ref(p)) {
            let mut at = path.to_vec();
            at.push(Seg::Index(i));
            return Err(problem(at, format!("{table} {k}: {m}")));
        }
    }
    if TableFilter::new(patterns).is_ok_and(|f| f.is_empty()) {
        return Err(problem(
            path.to_vec(),
            format!("{table} {k} has only blank or comment entries"),
        ));
    }
    Ok(())
}

fn check_security(name: &str, sec: &Security) -> std::result::Result<(), Problem> {
    let path = |k: &str| vec![key("data-sources"), key(name), key("security"), key(k)];
    let table = render_table(&["data-sources", name, "security"]);
    for (a, b, va, vb) in [
        ("ca-path", "ca-bytes", &sec.ca_path, &sec.ca_bytes),
        ("cert-path", "cert-bytes", &sec.cert_path, &sec.cert_bytes),
        ("key-path", "key-bytes", &sec.key_path, &sec.key_bytes),
    ] {
        if va.is_some() && vb.is_some() {
            return Err(problem(
                path(b),
                format!("{table} set either {a} or {b}, not both"),
            ));
        }
    }
    let has_cert = sec.cert_path.is_some() || sec.cert_bytes.is_some();
    let has_key = sec.key_path.is_some() || sec.key_bytes.is_some();
    if has_cert != has_key {
        let (missing, present) = match (has_cert, sec.cert_path.is_some(), sec.key_path.is_some()) {
            (true, true, _) => ("key-path/key-bytes", "cert-path"),
            (true, false, _) => ("key-path/key-bytes", "cert-bytes"),
            (false, _, true) => ("cert-path/cert-bytes", "key-path"),
            (false, _, false) => ("cert-path/cert-bytes", "key-bytes"),
        };
        return Err(problem(
            path(present),
            format!("{table} a client certificate needs both a certificate and a key: {missing} is missing"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_forms() {
        for ok in [
            "431434047157698561",
            "2022-02-25 20:03:59",
            "2022-02-25T20:03:59",
            "2022-02-25 20:03:59.123",
            "2022-02-25",
        ] {
            assert!(is_valid_snapshot(ok), "{ok}");
        }
        for bad in [
            "atuo",
            "2022-02-25 20:03",
            "-1",
            "2022/02/25",
            "2022-02-25 20:03:59.",
        ] {
            assert!(!is_valid_snapshot(bad), "{bad}");
        }
    }

    #[test]
    fn key_rendering() {
        assert_eq!(render_key("data-sources"), "data-sources");
        assert_eq!(render_key("my.db"), "\"my.db\"");
        assert_eq!(render_table(&["data-sources", "up"]), "[data-sources.up]");
    }
}
