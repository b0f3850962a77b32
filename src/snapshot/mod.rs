//! Reading both sides at a fixed point in time.
//!
//! - [`tidb`]: TiDB snapshots. TSO arithmetic, the `snapshot` config value (TSO, datetime or
//!   `"auto"` from TiCDC syncpoints), the session statement that pins a connection
//!   (`tidb_snapshot`), classification of the GC errors a pinned read can hit (8055, 9006),
//!   PD discovery through `information_schema.cluster_info`, and a keeper of a PD service GC
//!   safepoint at the snapshot. Built against TiDB's documented contracts; its tests are
//!   contract tests (no live TiDB).
//! - [`pd`]: the minimal PD gRPC client the keeper uses (`GetMembers`,
//!   `UpdateServiceGCSafePoint`), with hand-written prost messages from `pdpb.proto`.
//! - [`mysql`]: one consistent snapshot shared by every worker connection of a MySQL or
//!   MariaDB source.
//! - [`Snapshot`] (`setting.rs`): the typed `snapshot` setting, a leaf `db` depends on;
//!   [`ReadPoint`] (`point.rs`): where a side was actually read.

pub mod mysql;
pub mod pd;
mod point;
mod setting;
pub mod tidb;

pub use point::ReadPoint;
pub use setting::Snapshot;
