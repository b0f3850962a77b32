//! syncgate: verify that two MySQL-protocol databases (TiDB, MySQL, MariaDB) hold the same
//! data, name the rows that differ, and write the SQL that repairs the downstream.
//!
//! # Layout
//!
//! The check is a pipeline; each stage is one module (see ARCHITECTURE.md):
//!
//! | stage | module | sync/async |
//! |---|---|---|
//! | configuration (sync-diff-inspector TOML) | [`config`] | sync |
//! | connections, session setup, flavour | [`source`] | async |
//! | TLS options from `[data-sources.NAME.security]` | [`tls`] | sync |
//! | structure discovery and comparison | [`schema`] | async discovery, sync compare |
//! | key ranges and their predicates; the index walker | [`chunk`] | sync ranges, async walker |
//! | server-side chunk checksum SQL | [`checksum`] | sync |
//! | row encoding, hashing, key order | [`row`] | sync |
//! | merge diff of two sorted row streams | [`diff`] | sync |
//! | fix SQL rendering and files | [`fixsql`], [`sql`] | sync |
//! | reports, progress | [`report`] | sync |
//! | checkpoint and resume | [`checkpoint`] | sync |
//! | orchestration | [`engine`] | async |
//! | local MariaDB servers (playground, tests, benches) | [`local`] | async |
//! | generated sbtest data and drift (playground, tests, benches) | [`testdata`] | async |

pub mod check;
pub mod checkpoint;
pub mod checksum;
pub mod chunk;
pub mod config;
pub mod db;
pub mod diff;
pub mod error;
pub mod exit;
pub mod fixsql;
pub mod interrupt;
pub mod job;
pub mod local;
pub mod report;
pub mod row;
pub mod schema;
pub mod snapshot;
pub mod sql;
pub mod testdata;

pub use error::{Error, Result};
