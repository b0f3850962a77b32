//! Integration tests (one binary: `cargo test --test integration`).
//! Servers and per-test databases come from [`support`]; fixture scenarios from
//! [`scenario`].

mod scenario;
mod support;

// What belongs where:
// - check_e2e: the `check` command end to end on fixture scenarios.
// - cli_errors: bad input -> one line on stderr, exit code 2.
// - harness_smoke: the test harness itself.
// - kubernetes: the manifests in deploy/kubernetes/, checked by syncgate's own parser.
// - load: the sysbench-shaped write load and `playground load`.
// - playground_dr: the playground's S3 server and DR config, with the DR commands on them.
// - storage: the object-store conformance suite (local directory, S3 over HTTP against
//   a local S3 server) and the errors of opening a store.
// - tls: `[data-sources.NAME.security]` against a mariadbd with TLS on.
mod check_e2e;
mod cli_errors;
mod collation;
mod config_honoured;
mod discovery;
mod dr_archive;
mod dr_backup;
mod dr_drill;
mod dr_failover;
mod dr_replicate;
mod dr_reseed;
mod dr_run;
mod fix_undo;
mod harness_smoke;
mod index_hint;
mod int_split;
mod kubernetes;
mod load;
mod names;
mod objects;
mod playground_dr;
mod privileges;
mod prop_check;
mod prop_schema;
mod replica_fence;
mod resume;
mod scheduled;
mod shard_merge;
mod signals;
mod snapshot_mysql;
mod storage;
mod structure;
mod tidb_contract;
mod tls;
mod types;
