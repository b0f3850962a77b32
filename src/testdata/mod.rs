//! Generated test data for the playground ([`crate::playground`]), the integration
//! tests and the benches; the checker itself never uses it.
//!
//! - [`sbtest`]: sysbench-shaped `sbtest.sbtestN` tables with deterministic rows (splitmix64,
//!   so both servers of a pair get identical data without copying it), their DDL, and
//!   loading them into servers.
//! - [`drift`]: making a downstream differ from its upstream in a known way, with the exact
//!   ground truth.
//! - [`load`]: a sysbench `oltp_write_only` shaped write load paced to a rate ([`pace`]),
//!   for showing a step correct while the primary takes writes.
//! - [`ledger`]: a sequence-number writer that follows the writable primary across a role
//!   change (`dr switchover`), timing the longest gap between commits.
//!
//! Errors are [`crate::local::LocalError`]s: the servers are local ones ([`load`] returns
//! them as [`crate::Error`]).

pub mod drift;
pub mod ledger;
pub mod load;
pub mod pace;
pub mod sbtest;
pub mod seq;

pub use drift::{inject_drift, DriftReport, DriftSpec, TableDrift};
pub use ledger::{LedgerStats, LedgerWriter};
pub use load::{
    run_load, run_load_with, spawn_load, LoadCounters, LoadHandle, LoadOptions, LoadStats,
};
pub use sbtest::{
    sbtest_ddl, sbtest_rows, sbtest_tables, seed_sbtest, SbRow, SplitMix64, DATABASE,
};
