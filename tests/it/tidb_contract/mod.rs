//! Contract tests for `syncgate::snapshot::tidb`, `syncgate::snapshot::pd` and
//! `syncgate::dr::tidb`: TiDB and PD cannot run here, so these check the pieces against
//! TiDB's and PD's documented interfaces (shared/reference/dr-interfaces.md A1, A4, A5, A7;
//! sync-diff-inspector.md §2.1, §8; TiDB's `information_schema.cluster_info` docs; kvproto
//! `pdpb.proto`): pure functions for SQL text and parsing, a hand-written mock of PD's gRPC
//! service `pdpb.PD` (`GetMembers`, `UpdateServiceGCSafePoint`, with PD's leader and
//! cluster-ID checks) on 127.0.0.1 that records every request, and a MySQL-protocol
//! stand-in for TiDB's BR statements (`fake_tidb`) that records every statement. No live
//! TiDB or PD is involved. The TiCDC OpenAPI v2 client and `replicate` are checked against an
//! in-process HTTP stand-in answering as A6 documents (`ticdc`).

/// 2022-02-25 11:57:59.990 UTC, logical 1.
const SAMPLE: u64 = 431_434_047_157_698_561;

fn row(cells: &[Option<&str>]) -> Vec<Option<Vec<u8>>> {
    cells
        .iter()
        .map(|c| c.map(|s| s.as_bytes().to_vec()))
        .collect()
}

mod br;
mod dr_flow;
mod fake_tidb;
mod gc_keeper;
mod mock_pd;
mod pd_discovery;
mod roles;
mod snapshot;
mod syncpoint;
mod ticdc;
mod tso;
