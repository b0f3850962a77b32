//! Configuration: sync-diff-inspector's (v2) TOML format, accepted unchanged.
//!
//! - [`Config`] and its parts ([`DataSource`], [`Route`], [`TableConfig`], [`Task`],
//!   [`Security`]) are the serde model; keys are kebab-case and unknown keys are errors.
//! - [`Config::from_file`] / [`Config::from_toml_str`] parse and [`Config::validate`];
//!   every error is one line of the form `origin:line:col: message`.
//! - [`TableFilter`] implements TiDB's table-filter syntax (`target-check-tables`,
//!   `target-tables`); [`RouteRules`] maps upstream tables to downstream names.
//!
//! Defaults that differ from sync-diff-inspector: `output-dir` is `./output` (relative to
//! the working directory), not a timestamped directory under the system temp directory.
//! `dm-addr` / `dm-task` parse but are rejected by validation.
//!
//! Pure: no I/O beyond reading the file (and the secret files it names), no async.
//! Secrets may come from the environment or a file: see `secret.rs` (`${env:NAME}`,
//! `${file:PATH}`).

mod filter;
mod load;
mod model;
mod pattern;
mod route;
mod secret;
mod validate;

pub use filter::{is_system_schema, TableFilter};
pub use model::{
    redact_uri, Config, DataSource, DrSection, FixSqlBinlog, Route, Security, SessionValue,
    SplitterStrategy, TableConfig, Task, UriSetting, REDACTED,
};
pub use route::RouteRules;

use crate::error::{Error, Result};

impl Config {
    /// The data source called `name`; an [`Error::Config`] when it is not defined.
    pub fn data_source(&self, name: &str) -> Result<&DataSource> {
        self.data_sources.get(name).ok_or_else(|| {
            Error::Config(format!(
                "data source '{name}' is not defined in [data-sources]"
            ))
        })
    }

    /// The upstream data sources, in `source-instances` order.
    pub fn sources(&self) -> Result<Vec<(&str, &DataSource)>> {
        self.task
            .source_instances
            .iter()
            .map(|name| Ok((name.as_str(), self.data_source(name)?)))
            .collect()
    }

    /// The downstream data source (`target-instance`).
    pub fn target(&self) -> Result<&DataSource> {
        self.data_source(&self.task.target_instance)
    }

    /// The compiled `target-check-tables` filter.
    pub fn check_filter(&self) -> Result<TableFilter> {
        TableFilter::new(&self.task.target_check_tables)
    }

    /// The compiled `route-rules` of data source `source`, in the order listed.
    pub fn route_rules(&self, source: &str) -> Result<RouteRules> {
        let ds = self.data_source(source)?;
        let mut routes = Vec::with_capacity(ds.route_rules.len());
        for name in &ds.route_rules {
            let route = self.routes.get(name).ok_or_else(|| {
                Error::Config(format!(
                    "[data-sources.{source}] route-rules: '{name}' is not defined in [routes]"
                ))
            })?;
            routes.push((name.as_str(), route));
        }
        RouteRules::new(routes)
    }

    /// The table config (among `target-configs`) whose `target-tables` match the downstream
    /// table `schema`.`table`, if any. A table matched by two configs is an error naming
    /// both, since their settings could conflict.
    pub fn table_config_for(&self, schema: &str, table: &str) -> Result<Option<&TableConfig>> {
        let mut found: Option<(&str, &TableConfig)> = None;
        for name in &self.task.target_configs {
            let tc = self.table_configs.get(name).ok_or_else(|| {
                Error::Config(format!(
                    "[task] target-configs: '{name}' is not defined in [table-configs]"
                ))
            })?;
            let filter = TableFilter::new(&tc.target_tables)
                .map_err(|e| Error::Config(format!("[table-configs.{name}] target-tables: {e}")))?;
            if !filter.matches(schema, table) {
                continue;
            }
            if let Some((first, _)) = found {
                return Err(Error::Config(format!(
                    "table `{schema}`.`{table}` matches both [table-configs.{first}] and \
                     [table-configs.{name}]; a table may match only one table config"
                )));
            }
            found = Some((name, tc));
        }
        Ok(found.map(|(_, tc)| tc))
    }
}

#[cfg(test)]
mod tests;
