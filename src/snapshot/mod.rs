//! Reading both sides at a fixed point in time.
//!
//! - [`tidb`]: TiDB snapshots. TSO arithmetic, the `snapshot` config value (TSO, datetime or
//!   `"auto"` from TiCDC syncpoints), the session statement that pins a connection
//!   (`tidb_snapshot`), classification of the GC errors a pinned read can hit (8055, 9006),
//!   and a watcher of PD's GC safe points over PD's HTTP API. Built against TiDB's
//!   documented contracts; its tests are contract tests (no live TiDB).
//! - [`mysql`]: one consistent snapshot shared by every worker connection of a MySQL or
//!   MariaDB source.

pub mod mysql;
pub mod tidb;
