//! `syncgate check` end to end against two real MariaDB servers.

use crate::scenario::{counts, describe, fixture, syncgate, Scenario};

fn expected(scenario: &str) -> serde_json::Value {
    serde_json::from_str(&fixture(scenario, "expected.json")).expect("expected.json")
}

#[tokio::test]
async fn drifted_fixture_reports_ground_truth_and_fix_sql_repairs_it() {
    let s = Scenario::load("basic_drift", true).await;
    let cfg = s.config("");
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));

    let summary = s.summary();
    assert_eq!(summary["result"], "different");
    let truth = expected("basic_drift");
    for (table, want) in truth.as_object().unwrap() {
        let got = counts(&summary, table);
        let want = (
            want["missing"].as_u64().unwrap(),
            want["extra"].as_u64().unwrap(),
            want["changed"].as_u64().unwrap(),
        );
        assert_eq!(got, want, "table {table}: (missing, extra, changed)");
    }
    for t in summary["tables"].as_array().unwrap() {
        assert_eq!(t["result"], "different", "{t:#}");
        assert_eq!(t["structure_equal"], true);
        let fix = t["fix_sql"].as_str().expect("fix_sql path");
        assert!(s.output_dir().join(fix).is_file(), "{fix} exists");
    }

    assert_eq!(s.apply_fix_files().await, 3);
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(s.summary()["result"], "equal");
}

#[tokio::test]
async fn equal_data_exits_zero_and_writes_no_fix_sql() {
    let s = Scenario::load("basic_drift", false).await;
    let cfg = s.config("");
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let summary = s.summary();
    assert_eq!(summary["result"], "equal");
    for t in summary["tables"].as_array().unwrap() {
        assert_eq!(t["result"], "equal");
        assert!(t["fix_sql"].is_null());
        assert!(t["rows_upstream"].as_u64().unwrap() > 0);
        assert_eq!(t["rows_upstream"], t["rows_downstream"]);
    }
    let txt = std::fs::read_to_string(s.output_dir().join("summary.txt")).unwrap();
    assert!(txt.contains("live, not pinned"), "{txt}");
}

#[tokio::test]
async fn apply_fix_repairs_downstream_and_rechecks() {
    let s = Scenario::load("basic_drift", true).await;
    // Small chunks so that several chunks and bisection are exercised.
    let cfg = s.config(&format!(
        "target-configs = [\"small\"]\n\n[table-configs.small]\ntarget-tables = [\"{}.accounts\"]\nchunk-size = 700\n",
        s.up.name()
    ));
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap(), "--apply-fix"]);
    let summary = s.summary();
    for t in summary["tables"].as_array().unwrap() {
        assert_eq!(t["fix_applied"], true, "{t:#}\n{}", describe(&out));
        assert_eq!(t["recheck_equal"], true, "{t:#}");
    }
    assert_eq!(counts(&summary, "accounts"), (2, 1, 3));
    let accounts = summary["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "accounts")
        .unwrap();
    assert!(accounts["chunks"].as_u64().unwrap() >= 8, "{accounts:#}");

    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[tokio::test]
async fn struct_only_reports_structure_differences_without_data() {
    let s = Scenario::load("basic_drift", true).await;
    s.down
        .exec("ALTER TABLE tags MODIFY val VARCHAR(100) NULL; ALTER TABLE accounts ADD INDEX by_owner (owner)")
        .await;
    let cfg = s.config("");
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap(), "--check-struct-only"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let summary = s.summary();
    let table = |name: &str| {
        summary["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == name)
            .unwrap()
            .clone()
    };
    let tags = table("tags");
    assert_eq!(tags["structure_equal"], false);
    assert_eq!(tags["data_checked"], false);
    let diffs = tags["structure_diffs"].to_string();
    assert!(diffs.contains("`val`") && diffs.contains("type"), "{diffs}");
    let accounts = table("accounts");
    assert!(accounts["structure_diffs"].to_string().contains("by_owner"));
    assert_eq!(table("events")["structure_equal"], true);
    assert_eq!(table("events")["result"], "equal");
}
