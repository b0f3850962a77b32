//! `syncgate dr drill` end to end on small data: three local servers, a local S3 server, a
//! steady writer, the primary killed with SIGKILL; every gate must hold and the ledger must
//! be a gap-free prefix.

use crate::scenario::describe;

#[test]
fn the_drill_passes_every_gate_and_keeps_a_gap_free_ledger() {
    crate::support::require_mariadbd();
    let dir = tempfile::tempdir().unwrap();
    let drill = dir.path().join("drill");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args(["dr", "drill", "--dir", drill.to_str().unwrap()])
        .args([
            "--tps",
            "50",
            "--tables",
            "2",
            "--rows",
            "2000",
            "--gate2-runs",
            "2",
        ])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = std::fs::read_to_string(drill.join("drill.json")).unwrap();
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["result"], "passed", "{r:#}");
    let gates: Vec<(&str, &str)> = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["step"].as_str()?, e["gate"].as_str()?)))
        .collect();
    let names: Vec<&str> = gates.iter().map(|g| g.0).collect();
    assert_eq!(
        names,
        [
            "restore, gate 1",
            "replicate, gate 2",
            "gate 2 (1)",
            "gate 2 (2)",
            "failover, gate 3",
            "reseed onto spare, gate 4",
            "switchover",
            "final gate"
        ],
        "{r:#}"
    );
    assert!(gates.iter().all(|g| g.1 == "equal"), "{r:#}");
    let (ack, rec, lost) = (
        r["acknowledged_before_kill"].as_u64().unwrap(),
        r["recovered"].as_u64().unwrap(),
        r["data_lost_transactions"].as_u64().unwrap(),
    );
    // The writer is one connection: the transaction in flight at the kill can be committed
    // (and recovered) without its acknowledgement having reached the writer.
    assert!(
        ack > 50 && rec > 0 && rec + lost >= ack && rec <= ack + 1,
        "{r:#}"
    );
    assert_eq!(lost, ack.saturating_sub(rec), "{r:#}");
    assert!(r["recovery_point"].is_string(), "{r:#}");
    assert!(r["writable_after_ms"].as_u64().unwrap() > 0, "{r:#}");
    assert!(r["switchover_freeze_ms"].is_u64(), "{r:#}");
    assert_eq!(r["ledger_gap_free"], true, "{r:#}");
    assert!(
        r["ledger_rows"].as_u64().unwrap() > rec,
        "writes went on after the failover"
    );
    // The archive followed the writes through the failover and the switchover: from the
    // backup point to the final primary's position, gap-free, from three servers' binlogs.
    assert_eq!(r["archive_complete"], true, "{r:#}");
    assert_eq!(r["archive_sources"], 3, "{r:#}");
    let after_failover = r["ledger_rows"].as_u64().unwrap() - rec;
    assert!(
        r["archive_transactions"].as_u64().unwrap() > after_failover,
        "{r:#}"
    );
    let txt = std::fs::read_to_string(drill.join("drill.txt")).unwrap();
    assert!(txt.contains("DR drill: PASSED"), "{txt}");
    // The directory is marked as a drill's: the next drill may replace it.
    assert!(drill.join(".syncgate-drill").exists());
}
