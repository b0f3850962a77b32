//! Integration-test support: local MariaDB servers and per-test databases.
//! See [`mariadb`] for how servers are shared and cleaned up.
#![allow(dead_code, unused_imports)]

pub mod mariadb;

pub use mariadb::{
    fourth, pair, purge_binlogs, require_mariadbd, second, shared, start_server, third, TestDb,
};
