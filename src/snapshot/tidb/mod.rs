//! TiDB snapshots: TSOs, the `snapshot` config value, pinning a session, GC errors, PD
//! discovery, and a keeper of a PD service GC safepoint at the snapshot.
//!
//! **Built against TiDB's and PD's documented contracts.** TiDB cannot run where syncgate is
//! developed, so everything here follows the documented interfaces (cited per item from
//! `shared/reference/dr-interfaces.md`, `sync-diff-inspector.md`, TiDB's docs and PD's
//! `pdpb.proto`) and is tested by *contract tests* (`tests/it/tidb_contract/`): pure
//! functions for SQL text and parsing, and a mock PD gRPC server on 127.0.0.1 that records
//! every request. No test runs against a live TiDB or PD.
//!
//! # Pieces
//!
//! - [`Tso`]: `ts = (physical_ms << 18) + logical` (dr-interfaces A4.1).
//! - [`parse_snapshot`]: the `snapshot` value of a data source: a decimal TSO, a datetime
//!   `YYYY-MM-DD hh:mm:ss[.ffffff]`, `"auto"`, or empty (live). A datetime becomes a TSO on the
//!   server, as in sync-diff-inspector (§8.1: `SELECT unix_timestamp(?)`):
//!   [`datetime_to_tso_sql`] builds the query and [`tso_from_unix_timestamp_result`] reads
//!   its answer. `UNIX_TIMESTAMP` reads the datetime in the *session* time zone; syncgate's
//!   sessions use `+00:00` (see `source.rs`), so on a connection from `Source::connect` the
//!   datetime means UTC. Unlike sync-diff-inspector, which keeps whole seconds, the
//!   milliseconds of the datetime are kept.
//! - `snapshot = "auto"`: [`syncpoint_sql`] and [`parse_syncpoint_row`] read the newest row
//!   of TiCDC's `tidb_cdc.syncpoint_v1` on the downstream (dr-interfaces A7,
//!   sync-diff-inspector §8.2); [`query_syncpoint`] runs it.
//! - [`set_snapshot_sql`]: `SET SESSION tidb_snapshot = '<tso>'` (dr-interfaces A4.3).
//! - [`classify_tidb_error`]: error 8055 (snapshot older than the GC safe point, raised when
//!   `tidb_snapshot` is set) and 9006 (GC life time shorter than the transaction, raised by a
//!   read below the safe point), dr-interfaces A4.3, turned into messages that say what to do.
//! - [`pd_discovery_sql`] / [`discover_pd`]: the PD addresses of a TiDB cluster from
//!   `information_schema.cluster_info`, as sync-diff-inspector finds them (§2.1).
//! - [`GcKeeper`]: GC protection through PD, see below.
//!
//! # GC protection
//!
//! sync-diff-inspector registers a PD *service GC safepoint* `Sync_diff_<ns>` (TTL 300 s,
//! refreshed every 150 s) through PD's gRPC API (`UpdateServiceGCSafePoint`,
//! sync-diff-inspector.md §2.1 "GC keeper", §8.3; dr-interfaces A5 "Holders"). [`GcKeeper`]
//! does the same with `syncgate_<unix ms>` over the small gRPC client in [`super::pd`]:
//! register at start (refusing a snapshot GC has already passed), refresh every TTL/2,
//! remove at stop (TTL 0). While it is registered, GC cannot pass the snapshot. The engine
//! starts one per TiDB side read at a TSO or datetime when `cluster_info` names a PD it can
//! reach (`engine::run_check`); otherwise the report warns that the run relies on
//! `tidb_gc_life_time`.

mod errors;
mod gc_keeper;
mod pd_discovery;
mod session;
mod setting;
mod syncpoint;
mod tso;

pub use errors::{
    classify_query_error, classify_tidb_error, explain, SnapshotError, ER_GC_TOO_EARLY,
    ER_SNAPSHOT_TOO_OLD,
};
pub use gc_keeper::{default_service_id, GcKeeper, GcStatus, DEFAULT_GC_TTL_SECS};
pub use pd_discovery::{discover_pd, pd_addrs_from_rows, pd_discovery_sql};
pub use session::{clear_snapshot_sql, resolve_datetime, set_snapshot_sql};
pub use setting::{parse_snapshot, SnapshotSetting};
pub use syncpoint::{parse_syncpoint_row, query_syncpoint, syncpoint_sql, Syncpoint};
pub use tso::{datetime_to_tso_sql, tso_from_unix_timestamp_result, Tso};
