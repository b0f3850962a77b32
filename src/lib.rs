//! syncgate: verify that two MySQL-protocol databases (TiDB, MySQL, MariaDB) hold the same
//! data, name the rows that differ, and write the SQL that repairs the downstream.
//!
//! # Layout
//!
//! The check is a pipeline; each stage is one module (see ARCHITECTURE.md):
//!
//! | stage | module | sync/async |
//! |---|---|---|
//! | configuration (sync-diff-inspector TOML) | [`config`], [`job`] | sync |
//! | connections, session setup, flavour, TLS | [`db`] | async |
//! | structure discovery and comparison | [`schema`] | async discovery, sync compare |
//! | key ranges and their predicates | [`chunk`] | sync |
//! | server-side chunk checksum SQL | [`checksum`] | sync |
//! | row encoding, hashing, key order | [`row`] | sync |
//! | the row merge of two sorted streams | [`diff`] | sync |
//! | fix SQL rendering and files | [`fixsql`], [`sql`] | sync |
//! | the check: split, locate, merge, keyless, apply, aggregate | [`check`] | async |
//! | read points: snapshots, fences, TiDB TSOs and PD | [`snapshot`] | async |
//! | DR flow: TiDB BACKUP/RESTORE through SQL, the PD GC hold | [`dr`] | async |
//! | reports, progress | [`report`] | sync |
//! | checkpoint and resume | [`checkpoint`] | sync |
//! | errors, exit codes, SIGINT/SIGTERM | [`error`], [`exit`], [`interrupt`] | sync / async |
//! | object storage: S3 and local directories behind one trait | [`storage`] | async |
//! | local MariaDB servers and a local S3 server (playground, tests, benches) | [`local`] | async |
//! | generated data and drift (playground, tests, benches) | [`testdata`] | async |

pub mod check;
pub mod checkpoint;
pub mod checksum;
pub mod chunk;
pub mod civil;
pub mod config;
pub mod db;
pub mod diff;
pub mod dr;
pub mod error;
pub mod exit;
pub mod fixsql;
pub mod interrupt;
pub mod job;
pub mod local;
pub mod playground;
pub mod report;
pub mod row;
pub mod runs;
pub mod schema;
pub mod snapshot;
pub mod sql;
pub mod storage;
pub mod testdata;

pub use error::{Error, Result};
