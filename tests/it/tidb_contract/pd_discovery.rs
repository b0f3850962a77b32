//! PD discovery through `information_schema.cluster_info`, PD addresses, service ID and
//! defaults.

use super::row;
use syncgate::snapshot::pd::{
    parse_pd_addr, parse_pd_addrs, GET_MEMBERS_PATH, UPDATE_SERVICE_GC_SAFE_POINT_PATH,
};
use syncgate::snapshot::tidb::{
    default_service_id, pd_addrs_from_rows, pd_discovery_sql, DEFAULT_GC_TTL_SECS,
};

#[test]
fn pd_discovery_reads_cluster_info() {
    // sync-diff-inspector.md §2.1: PD addresses come from information_schema.cluster_info;
    // TiDB docs: TYPE is tidb/pd/tikv, INSTANCE is IP:PORT.
    assert_eq!(
        pd_discovery_sql(),
        "SELECT INSTANCE FROM information_schema.cluster_info WHERE TYPE = 'pd'"
    );
    let rows = vec![
        row(&[Some("10.0.1.1:2379")]),
        row(&[Some("10.0.1.2:2379")]),
        row(&[None]),
        row(&[Some("10.0.1.1:2379")]),
        row(&[Some("https://10.0.1.3:2379")]),
        row(&[Some("pd-without-port")]),
        row(&[Some("[fd00::4]:2379")]),
    ];
    let (addrs, rejected) = pd_addrs_from_rows(&rows);
    assert_eq!(
        addrs,
        [
            "http://10.0.1.1:2379",
            "http://10.0.1.2:2379",
            "http://[fd00::4]:2379"
        ]
    );
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    assert_eq!(rejected[0], "INSTANCE is NULL");
    assert!(rejected[1].contains("https (PD with TLS) is not supported"));
    assert!(rejected[2].contains("the port is missing"));
    assert_eq!(pd_addrs_from_rows(&[]), (vec![], vec![]));
}

#[test]
fn pd_addresses_are_normalised_to_plain_http() {
    for (raw, want) in [
        ("127.0.0.1:2379", "http://127.0.0.1:2379"),
        (
            " http://pd-0.pd-peer.tidb.svc:2379/ ",
            "http://pd-0.pd-peer.tidb.svc:2379",
        ),
        ("HTTP://pd:2379", "http://pd:2379"),
        ("[::1]:2379", "http://[::1]:2379"),
        ("http://[fd00::1]:12379", "http://[fd00::1]:12379"),
    ] {
        assert_eq!(parse_pd_addr(raw).as_deref(), Ok(want), "{raw:?}");
    }
    for (raw, why) in [
        ("https://pd:2379", "https (PD with TLS) is not supported"),
        ("grpc://pd:2379", "expected host:port or http://host:port"),
        ("pd", "the port is missing"),
        ("pd:", "is not a port"),
        ("pd:0", "is not a port"),
        ("pd:65536", "is not a port"),
        ("pd:http", "is not a port"),
        ("::1:2379", "write IPv6 hosts as [addr]:port"),
        ("[::1]2379", "expected [ipv6]:port"),
        (":2379", "not a host name"),
        ("http://user@pd:2379", "not a host name"),
        ("http://pd:2379/pd/api/v1", "is not a port"),
    ] {
        let err = parse_pd_addr(raw).expect_err(raw);
        assert!(err.contains(why), "{raw:?}: {err}");
    }
    assert_eq!(
        parse_pd_addrs("pd1:2379, http://pd2:2379 ,,pd1:2379").unwrap(),
        ["http://pd1:2379", "http://pd2:2379"]
    );
    assert_eq!(parse_pd_addrs(" , ").unwrap_err(), "no PD address given");
}

#[test]
fn service_id_and_defaults() {
    let id = default_service_id();
    let ms: u64 = id
        .strip_prefix("syncgate_")
        .expect("syncgate_ prefix")
        .parse()
        .expect("unix ms");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(now_ms.abs_diff(ms) < 60_000, "{id}");
    assert_eq!(DEFAULT_GC_TTL_SECS, 300);
    assert_eq!(GET_MEMBERS_PATH, "/pdpb.PD/GetMembers");
    assert_eq!(
        UPDATE_SERVICE_GC_SAFE_POINT_PATH,
        "/pdpb.PD/UpdateServiceGCSafePoint"
    );
}
