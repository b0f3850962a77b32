//! `GcKeeper` against the mock PD: registration, refresh, removal, leader and address
//! failover, errors.

use super::mock_pd::{update, Call, MockPd};
use super::SAMPLE;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use syncgate::snapshot::tidb::{
    default_service_id, GcKeeper, SnapshotError, Tso, DEFAULT_GC_TTL_SECS,
};
use syncgate::Error;
use tokio::net::TcpListener;

/// An address nothing listens on.
async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

async fn start_err(addr: &str, snapshot: Tso, ttl: u64) -> SnapshotError {
    match GcKeeper::start(addr, "syncgate_test", snapshot, ttl).await {
        Ok(k) => panic!("start must fail, got {k:?}"),
        Err(e) => e,
    }
}
#[tokio::test]
async fn gc_keeper_registers_at_start_refreshes_within_half_ttl_and_removes_at_stop() {
    const CLUSTER: u64 = 6_998_041_512_348_237_823;
    let pd = MockPd::start(CLUSTER, SAMPLE - 1_000_000).await;
    let service = format!("{}_upstream", default_service_id());
    let started = Instant::now();
    let keeper = GcKeeper::start(&pd.addr.to_string(), &service, Tso(SAMPLE), 2)
        .await
        .expect("PD accepts the service safepoint");
    // GetMembers first (no cluster ID needed), then the registration with PD's cluster ID,
    // the TTL and the snapshot TSO as the safe point.
    assert_eq!(
        pd.calls(),
        [
            Call::GetMembers { cluster_id: 0 },
            update(CLUSTER, &service, 2, SAMPLE)
        ]
    );
    assert!(service.starts_with("syncgate_"));
    assert_eq!(keeper.pd_addr(), pd.url());
    assert_eq!(keeper.cluster_id(), CLUSTER);
    assert_eq!(keeper.snapshot(), Tso(SAMPLE));
    assert_eq!(keeper.ttl_secs(), 2);
    assert_eq!(
        keeper.describe(),
        format!(
            "protected from GC by PD service safepoint {service} (PD {}, TTL 2 s)",
            pd.url()
        )
    );
    assert_eq!(
        pd.with(|s| s.services.get(&service).copied()),
        Some((SAMPLE, 2))
    );
    let status = keeper.status();
    assert_eq!(status.refreshes, 1);
    assert_eq!(status.min_safe_point, Tso(SAMPLE - 1_000_000));

    // Refreshes: every TTL/2 = 1 s, on the leader connection (no new GetMembers).
    pd.wait_until(Duration::from_secs(5), |c| c.len() >= 4)
        .await;
    let updates = pd.updates();
    for pair in updates.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= Duration::from_millis(900) && gap < Duration::from_millis(1900),
            "refresh gap {gap:?} must be about TTL/2 and below the TTL"
        );
    }
    assert_eq!(
        pd.calls()[2..4],
        [
            update(CLUSTER, &service, 2, SAMPLE),
            update(CLUSTER, &service, 2, SAMPLE)
        ]
    );
    assert!(keeper.status().refreshes >= 3, "{:?}", keeper.status());
    assert!(keeper.warnings().is_empty(), "{:?}", keeper.warnings());
    assert!(started.elapsed() < Duration::from_secs(5));

    // Stop removes it: TTL 0, PD's removal.
    let n = pd.count();
    keeper.stop().await.expect("removed");
    let calls = pd.calls();
    assert_eq!(calls.len(), n + 1, "{calls:?}");
    assert_eq!(calls[n], update(CLUSTER, &service, 0, SAMPLE));
    assert!(pd.with(|s| s.services.is_empty()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(pd.count(), n + 1, "nothing is sent after stop");
}

#[tokio::test]
async fn gc_keeper_uses_the_given_ttl_of_300_s() {
    let pd = MockPd::start(42, 1).await;
    let keeper = GcKeeper::start(
        &pd.url(),
        "syncgate_1700000000000",
        Tso(SAMPLE),
        DEFAULT_GC_TTL_SECS,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    keeper.stop().await.unwrap();
    assert_eq!(
        pd.calls(),
        [
            Call::GetMembers { cluster_id: 0 },
            update(42, "syncgate_1700000000000", 300, SAMPLE),
            update(42, "syncgate_1700000000000", 0, SAMPLE),
        ]
    );
}

#[tokio::test]
async fn gc_keeper_refuses_a_snapshot_gc_has_already_passed() {
    // PD's minimum safe point (gc_worker) is above the snapshot: PD does not store ours
    // and answers the minimum.
    let pd = MockPd::start(42, SAMPLE + 1).await;
    let err = start_err(&pd.addr.to_string(), Tso(SAMPLE), 300).await;
    assert!(
        matches!(err, SnapshotError::AlreadyCollected { gc_safe_point, .. } if gc_safe_point == Tso(SAMPLE + 1)),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "snapshot TSO 431434047157698561 (2022-02-25 11:57:59.990 UTC) is older than the \
             cluster's GC safe point TSO 431434047157698562 (2022-02-25 11:57:59.990 UTC) \
             (PD {} refused a service GC safepoint there): its data may already be \
             collected; choose a newer snapshot (TiDB reports this as error 8055/9006)",
            pd.url()
        )
    );
    assert_eq!(
        pd.calls(),
        [
            Call::GetMembers { cluster_id: 0 },
            update(42, "syncgate_test", 300, SAMPLE)
        ]
    );
    assert!(pd.with(|s| s.services.is_empty()));
    // As a crate error it keeps the message.
    let crate_err: Error = err.into();
    assert!(crate_err
        .to_string()
        .starts_with("snapshot TSO 431434047157698561"));
}

#[tokio::test]
async fn gc_keeper_start_fails_when_pd_is_unreachable() {
    let addr = dead_addr().await;
    let t = Instant::now();
    let err = start_err(&addr.to_string(), Tso(SAMPLE), 300).await;
    let msg = err.to_string();
    assert!(matches!(err, SnapshotError::Pd { .. }), "{err:?}");
    assert!(
        msg.starts_with(&format!(
            "PD http://{addr}: cannot register service GC safepoint syncgate_test at TSO \
             431434047157698561 (2022-02-25 11:57:59.990 UTC): http://{addr}: cannot connect"
        )),
        "{msg}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "fails fast on refusal"
    );
}

#[tokio::test]
async fn gc_keeper_start_fails_when_pd_answers_with_an_error() {
    let pd = MockPd::start(42, 1).await;
    pd.with(|s| s.header_error = Some((2, "cluster is not bootstrapped".into())));
    let msg = start_err(&pd.url(), Tso(SAMPLE), 300).await.to_string();
    assert!(
        msg.ends_with(&format!(
            "{}: UpdateServiceGCSafePoint answered NOT_BOOTSTRAPPED: cluster is not \
             bootstrapped",
            pd.url()
        )),
        "{msg}"
    );
    pd.with(|s| {
        s.header_error = None;
        s.fail_updates = Some(tonic::Code::Unavailable);
    });
    let msg = start_err(&pd.url(), Tso(SAMPLE), 300).await.to_string();
    assert!(
        msg.contains("UpdateServiceGCSafePoint failed: Unavailable: mock PD is unavailable"),
        "{msg}"
    );
}

#[tokio::test]
async fn gc_keeper_sends_updates_to_the_leader_named_by_get_members() {
    let leader = MockPd::start(42, 1).await;
    let follower = MockPd::start(42, 1).await;
    follower.with(|s| s.leader_url = Some(format!("{}/", leader.url())));
    let keeper = GcKeeper::start(
        &follower.addr.to_string(),
        "syncgate_test",
        Tso(SAMPLE),
        300,
    )
    .await
    .expect("registered on the leader");
    assert_eq!(keeper.pd_addr(), leader.url());
    assert_eq!(follower.calls(), [Call::GetMembers { cluster_id: 0 }]);
    assert_eq!(leader.calls(), [update(42, "syncgate_test", 300, SAMPLE)]);
    keeper.stop().await.unwrap();
    assert_eq!(leader.calls()[1], update(42, "syncgate_test", 0, SAMPLE));
    assert_eq!(follower.count(), 1);
}

#[tokio::test]
async fn gc_keeper_tries_each_pd_address_in_turn() {
    let dead = dead_addr().await;
    let pd = MockPd::start(42, 1).await;
    let addrs = format!("{dead}, http://{}/", pd.addr);
    let keeper = GcKeeper::start(&addrs, "syncgate_test", Tso(SAMPLE), 300)
        .await
        .expect("the second address answers");
    assert_eq!(keeper.pd_addr(), pd.url());
    assert_eq!(pd.count(), 2);
    drop(keeper);
}

#[tokio::test]
async fn gc_keeper_keeps_trying_when_pd_fails_during_the_run() {
    let pd = MockPd::start(42, 1).await;
    let keeper = GcKeeper::start(&pd.url(), "syncgate_test", Tso(SAMPLE), 2)
        .await
        .unwrap();
    // PD goes bad after the registration: refreshes fail, the keeper warns and retries every
    // TTL/8, finding the leader again each time.
    pd.with(|s| s.fail_updates = Some(tonic::Code::Unavailable));
    let deadline = Instant::now() + Duration::from_secs(8);
    while !keeper.status().lapsed {
        assert!(Instant::now() < deadline, "{:?}", keeper.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = keeper.status();
    assert!(status.failures >= 2, "{status:?}");
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap()
            .contains("Unavailable: mock PD is unavailable"),
        "{status:?}"
    );
    assert!(
        pd.calls()
            .iter()
            .skip(2)
            .any(|c| matches!(c, Call::GetMembers { .. })),
        "a failed refresh looks for the leader again: {:?}",
        pd.calls()
    );
    let warnings = keeper.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("PD service safepoint syncgate_test: ")
            && warnings[0].contains("refreshes failed and none succeeded for longer than its TTL (2 s): GC protection may have lapsed"),
        "{warnings:?}"
    );
    // PD comes back: the next retry succeeds.
    let before = keeper.status().refreshes;
    pd.with(|s| s.fail_updates = None);
    let deadline = Instant::now() + Duration::from_secs(5);
    while keeper.status().refreshes == before {
        assert!(Instant::now() < deadline, "{:?}", keeper.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(keeper.status().last_error, None);
    assert!(keeper.status().lapsed, "the lapse stays on record");
    keeper.stop().await.unwrap();
    assert!(matches!(
        pd.calls().last(),
        Some(Call::Update { ttl: 0, .. })
    ));
}

#[tokio::test]
async fn gc_keeper_reports_gc_passing_the_snapshot_during_the_run() {
    let pd = MockPd::start(42, 1).await;
    let keeper = GcKeeper::start(&pd.url(), "syncgate_test", Tso(SAMPLE), 1)
        .await
        .unwrap();
    pd.with(|s| s.force_min = Some(SAMPLE + 5));
    let deadline = Instant::now() + Duration::from_secs(5);
    while keeper.status().passed_by.is_none() {
        assert!(Instant::now() < deadline, "{:?}", keeper.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(keeper.status().passed_by, Some(Tso(SAMPLE + 5)));
    let warnings = keeper.warnings();
    assert!(
        warnings[0].contains("PD reported the minimum safepoint TSO 431434047157698566")
            && warnings[0].contains("GC may have collected data the check read"),
        "{warnings:?}"
    );
    keeper.stop().await.unwrap();
}

#[tokio::test]
async fn stop_reports_a_failed_removal() {
    let pd = MockPd::start(42, 1).await;
    let keeper = GcKeeper::start(&pd.url(), "syncgate_test", Tso(SAMPLE), 300)
        .await
        .unwrap();
    pd.with(|s| s.fail_updates = Some(tonic::Code::Unavailable));
    let err = keeper.stop().await.expect_err("removal fails");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "PD {}: cannot remove service GC safepoint syncgate_test (",
            pd.url()
        )) && msg.ends_with("PD drops it when its TTL of 300 s expires"),
        "{msg}"
    );
}

#[tokio::test]
async fn dropping_the_keeper_removes_the_safepoint_in_the_background() {
    let pd = MockPd::start(42, 1).await;
    let keeper = GcKeeper::start(&pd.url(), "syncgate_test", Tso(SAMPLE), 300)
        .await
        .unwrap();
    drop(keeper);
    pd.wait_until(Duration::from_secs(5), |c| {
        c.last() == Some(&update(42, "syncgate_test", 0, SAMPLE))
    })
    .await;
    assert!(pd.with(|s| s.services.is_empty()));
}

#[tokio::test]
async fn gc_keeper_rejects_bad_settings() {
    for (addr, ttl, want) in [
        (
            "https://pd:2379",
            300,
            "https (PD with TLS) is not supported",
        ),
        (
            "grpc://pd:2379",
            300,
            "expected host:port or http://host:port",
        ),
        (" , ", 300, "no PD address given"),
        ("127.0.0.1:1", 0, "TTL must be at least 1 s"),
    ] {
        let msg = start_err(addr, Tso(SAMPLE), ttl).await.to_string();
        assert!(msg.contains(want), "{addr:?}: {msg}");
    }
}
