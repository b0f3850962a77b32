//! What every DR step starts from: the config's `[dr]` section resolved into sources,
//! storage and directories.

use std::path::PathBuf;
use std::sync::Arc;

use super::DrError;
use crate::check::CheckJob;
use crate::config::{Config, DrSection};
use crate::db::SourceSpec;
use crate::error::Result;
use crate::interrupt::Interrupt;
use crate::job::{job_from_config, Overrides};
use crate::storage::{ObjectStore, StorageUri};

/// A DR step's view of the config.
#[derive(Debug, Clone)]
pub struct DrContext {
    pub config: Config,
    pub dr: DrSection,
    pub primary: SourceSpec,
    pub secondary: SourceSpec,
    pub backup_uri: StorageUri,
    /// The flow's output directory: the flow state's copy, and one directory per step
    /// for its gate's report.
    pub output_dir: PathBuf,
    pub interrupt: Interrupt,
    /// Concurrency of gates and fingerprints (`check-thread-count`).
    pub threads: usize,
    /// Print what would be done and change nothing.
    pub dry_run: bool,
}

impl DrContext {
    /// Resolve `config` (which must have a `[dr]` section).
    pub fn new(config: &Config, output_dir: Option<PathBuf>, interrupt: Interrupt) -> Result<Self> {
        let dr = config.dr.clone().ok_or_else(|| {
            DrError::Precondition(
                "the config has no [dr] section (primary, secondary, backup-storage); see \
                 docs/dr.md"
                    .into(),
            )
        })?;
        let source = |name: &str| {
            let ds = config.data_sources.get(name).ok_or_else(|| {
                DrError::Precondition(format!("[dr] names '{name}', not in [data-sources]"))
            })?;
            crate::job::spec(name, ds)
        };
        Ok(DrContext {
            primary: source(&dr.primary)?,
            secondary: source(&dr.secondary)?,
            backup_uri: StorageUri::parse(&dr.backup_storage)?,
            output_dir: output_dir.unwrap_or_else(|| config.task.output_dir.clone()),
            threads: config.check_thread_count.max(1),
            config: config.clone(),
            dr,
            interrupt,
            dry_run: false,
        })
    }

    /// The same flow seen with other roles: `primary` is the node replicated from and
    /// gated against, `secondary` the node restored onto and replicating. Reseed and
    /// switchover run the existing steps this way round (the acting primary is the
    /// config's secondary after a failover). `primary-host-for-replica` names the config's
    /// primary's address only, so it is not carried over.
    pub fn with_roles(&self, primary: &str, secondary: &str) -> Result<DrContext> {
        let source = |name: &str| {
            let ds = self.config.data_sources.get(name).ok_or_else(|| {
                DrError::Precondition(format!(
                    "no data source '{name}' in the config ([data-sources.{name}])"
                ))
            })?;
            crate::job::spec(name, ds)
        };
        let mut ctx = self.clone();
        ctx.primary = source(primary)?;
        ctx.secondary = source(secondary)?;
        ctx.dr.primary = primary.to_string();
        ctx.dr.secondary = secondary.to_string();
        ctx.dr.primary_host_for_replica = None;
        Ok(ctx)
    }

    /// TiDB: `cdc-addr` of the primary's data source, the TiCDC server its changefeeds run on.
    pub fn primary_cdc_addr(&self) -> Option<String> {
        self.config
            .data_sources
            .get(&self.dr.primary)
            .and_then(|ds| ds.cdc_addr.clone())
    }

    /// Open backup-storage (one request: unreachable, credentials and bucket fail here).
    pub async fn store(&self) -> Result<Arc<dyn ObjectStore>> {
        Ok(crate::storage::open(&self.backup_uri).await?)
    }

    /// Where `step` writes its gate report.
    pub fn step_dir(&self, step: &str) -> PathBuf {
        self.output_dir.join(step)
    }

    /// The check that a gate runs: primary against secondary, reports in the step's
    /// directory.
    pub fn gate_job(&self, step: &str) -> Result<CheckJob> {
        let mut config = self.config.clone();
        config.task.source_instances = vec![self.dr.primary.clone()];
        config.task.target_instance = self.dr.secondary.clone();
        let overrides = Overrides {
            output_dir: Some(self.step_dir(step)),
            ..Overrides::default()
        };
        let mut job = job_from_config(&config, &overrides)?;
        job.interrupt = self.interrupt.clone();
        Ok(job)
    }
}
