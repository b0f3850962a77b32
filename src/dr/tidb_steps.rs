//! placeholder until dr::tidb lands
use super::flow::Flow;
use super::gate::GateReport;
use super::manifest::Manifest;
use super::DrContext;
use crate::db::Source;
use crate::error::Result;
use crate::storage::ObjectStore;
use std::path::Path;
pub async fn run_backup(
    _ctx: &DrContext,
    _store: &dyn ObjectStore,
    _primary: &Source,
    _id: &str,
    _flow: &mut Flow,
) -> Result<Manifest> {
    Err(super::DrError::Precondition("TiDB backup: wiring pending".into()).into())
}
pub async fn restore(_ctx: &DrContext, _manifest: &Manifest) -> Result<()> {
    Err(super::DrError::Precondition("TiDB restore: wiring pending".into()).into())
}
pub async fn gate1(_ctx: &DrContext, _m: &Manifest, _tso: u64, _dir: &Path) -> Result<GateReport> {
    Err(super::DrError::Precondition("TiDB gate: wiring pending".into()).into())
}
