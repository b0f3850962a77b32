//! Turning a validated [`Config`] into a [`CheckJob`]: resolves data sources, the table
//! filter, routes and per-table settings.

use crate::check::{CheckJob, TableSelector, TableSettings};
use crate::checkpoint::{fingerprint, Effective};
use crate::config::{Config, DataSource, RouteRules, TableFilter};
use crate::db::SourceSpec;
use crate::error::{Error, Result};
use crate::schema::TableRef;
use std::path::PathBuf;

/// Command-line overrides applied on top of the file (the command line wins).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub check_thread_count: Option<usize>,
    pub export_fix_sql: Option<bool>,
    pub check_struct_only: bool,
    pub check_data_only: bool,
    pub skip_non_existing_table: bool,
    pub output_dir: Option<PathBuf>,
    pub apply_fix: bool,
    /// Continue from the checkpoint in the output directory (`--resume`).
    pub resume: bool,
    /// `--shard I/N`: check only this shard's tables.
    pub shard: Option<crate::check::Shard>,
}

/// The connection spec of data source `name`.
pub(crate) fn spec(name: &str, ds: &DataSource) -> Result<SourceSpec> {
    let tls = match &ds.security {
        Some(sec) => crate::db::tls::ssl_opts(name, sec)?,
        None => None,
    };
    Ok(SourceSpec {
        name: name.to_string(),
        host: ds.host.clone(),
        port: ds.port,
        user: ds.user.clone(),
        password: ds.password.clone(),
        session: ds
            .session
            .iter()
            .map(|(k, v)| format!("{} = {}", k, v.to_sql_literal()))
            .collect(),
        // Validated with the config; a value that still does not parse is refused here.
        snapshot: crate::snapshot::Snapshot::parse(&ds.snapshot)?,
        tls,
        force_index: ds
            .sql_hint_use_index
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case("auto")),
        sql_mode: ds.sql_mode.clone(),
    })
}

/// Build the job for `config`.
pub fn job_from_config(config: &Config, o: &Overrides) -> Result<CheckJob> {
    let sources = config.sources()?;
    let Some(&(up_name, up_ds)) = sources.first() else {
        return Err(Error::Config(
            "task.source-instances lists no source: name at least one upstream data source".into(),
        ));
    };
    let down_ds = config.target()?;
    let selector = ConfigSelector {
        config: config.clone(),
        filter: config.check_filter()?,
        routes: sources
            .iter()
            .map(|(name, _)| config.route_rules(name))
            .collect::<Result<_>>()?,
    };
    // Surface table-config problems (unknown names, bad patterns) before connecting.
    for name in &config.task.target_configs {
        if !config.table_configs.contains_key(name) {
            return Err(Error::Config(format!(
                "[task] target-configs: '{name}' is not defined in [table-configs]"
            )));
        }
    }
    let effective = Effective {
        export_fix_sql: o.export_fix_sql.unwrap_or(config.export_fix_sql),
        apply_fix: o.apply_fix,
        struct_only: o.check_struct_only || config.check_struct_only,
        data_only: o.check_data_only || config.check_data_only,
        skip_missing: o.skip_non_existing_table || config.skip_non_existing_table,
        shard: o.shard.map(|s| (s.index, s.count)),
    };
    Ok(CheckJob {
        upstream: spec(up_name, up_ds)?,
        more_upstreams: sources[1..]
            .iter()
            .map(|(name, ds)| spec(name, ds))
            .collect::<Result<_>>()?,
        downstream: spec(&config.task.target_instance, down_ds)?,
        threads: o
            .check_thread_count
            .unwrap_or(config.check_thread_count)
            .max(1),
        export_fix_sql: effective.export_fix_sql,
        struct_only: effective.struct_only,
        data_only: effective.data_only,
        skip_missing: effective.skip_missing,
        apply_fix: effective.apply_fix,
        resume: o.resume,
        fingerprint: fingerprint(config, &effective)?,
        syncpoint_changefeed: config.task.syncpoint_changefeed.clone(),
        fix_sql_binlog: config.task.fix_sql_binlog,
        output_dir: o
            .output_dir
            .clone()
            .unwrap_or_else(|| config.task.output_dir.clone()),
        selector: Box::new(selector),
        interrupt: crate::interrupt::Interrupt::never(),
        warnings: config_warnings(config),
        shard: o.shard,
    })
}

/// Settings that are accepted (sync-diff-inspector configs carry them) but cannot change
/// what is compared; the report names them rather than pass over them in silence.
fn config_warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if config.splitter_strategy != crate::config::SplitterStrategy::Auto {
        out.push(
            "splitter-strategy is not used: syncgate splits integer keys by value from the \
             server's row estimates and walks other keys; results do not depend on it"
                .to_string(),
        );
    }
    for name in config.table_configs.keys() {
        if !config.task.target_configs.contains(name) {
            out.push(format!(
                "[table-configs.{name}] is not used: [task] target-configs does not list it"
            ));
        }
    }
    for (name, tc) in &config.table_configs {
        if tc.chunk_size == Some(0) {
            out.push(format!(
                "[table-configs.{name}] chunk-size = 0 means automatic (about 20000 rows per \
                 chunk, as when it is left out)"
            ));
        }
        if let Some(c) = &tc.collation {
            out.push(format!(
                "[table-configs.{name}] collation '{c}' is not used: syncgate orders and bounds \
                 keys by each side's own column collation (by bytes where the sides differ), \
                 so results do not depend on it"
            ));
        }
    }
    out
}

struct ConfigSelector {
    config: Config,
    filter: TableFilter,
    /// Per upstream source, in `source-instances` order.
    routes: Vec<RouteRules>,
}

impl TableSelector for ConfigSelector {
    fn wants(&self, target: &TableRef) -> bool {
        self.filter.matches(&target.schema, &target.table)
    }

    fn route(&self, source: usize, upstream: &TableRef) -> Option<TableRef> {
        let (s, t) = self
            .routes
            .get(source)?
            .resolve(&upstream.schema, &upstream.table)?;
        Some(TableRef::new(s, t))
    }

    fn by_rule(&self, source: usize, upstream: &TableRef) -> bool {
        self.routes
            .get(source)
            .is_some_and(|r| r.matches_rule(&upstream.schema, &upstream.table))
    }

    fn settings(&self, target: &TableRef) -> Result<TableSettings> {
        Ok(
            match self
                .config
                .table_config_for(&target.schema, &target.table)?
            {
                None => TableSettings::default(),
                Some(tc) => TableSettings {
                    ignore_columns: tc.ignore_columns.clone(),
                    index_fields: tc.index_fields.clone(),
                    range: tc.range.clone(),
                    chunk_size: tc.chunk_size.unwrap_or(0),
                    history: tc.system_versioned_history,
                },
            },
        )
    }

    fn exact_names(&self) -> Vec<TableRef> {
        self.config
            .task
            .target_check_tables
            .iter()
            .filter(|p| !p.starts_with('!') && !p.contains(['*', '?', '[', '`', '\\']))
            .filter_map(|p| {
                let (s, t) = p.split_once('.')?;
                (!t.contains('.')).then(|| TableRef::new(s, t))
            })
            .collect()
    }
}
