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
    let summary = s.summary();
    assert_eq!(summary["result"], "equal");

    // The first run's fix SQL no longer looks current: moved aside, and the report says so.
    let sql_files = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        walk(dir)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect()
    };
    let out_dir = s.output_dir();
    let current: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("fix-on-")
        })
        .flat_map(|d| sql_files(&d))
        .collect();
    assert!(current.is_empty(), "stale fix SQL left: {current:?}");
    let moved = sql_files(&out_dir.join("superseded"));
    let fix_moved = moved
        .iter()
        .filter(|p| p.to_string_lossy().contains("/fix-on-down/"))
        .count();
    assert_eq!(fix_moved, 3, "{moved:?}");
    assert_eq!(moved.len(), 6, "the undo files go with the fix: {moved:?}");
    let warnings = summary["warnings"].to_string();
    assert!(
        warnings.contains("moved an earlier run's fix SQL (3 file(s))"),
        "{warnings}"
    );
}

/// Every file under `dir`, recursively.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
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
    // Everything found was repaired and re-checked equal: exit 0, result "repaired".
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let summary = s.summary();
    assert_eq!(summary["result"], "repaired");
    let txt = std::fs::read_to_string(s.output_dir().join("summary.txt")).unwrap();
    assert!(txt.ends_with("Result: repaired\n"), "{txt}");
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

/// The classic `BIT_XOR(CRC32(CONCAT_WS(...)))` cannot tell these two tables apart (CRC32 is
/// affine over GF(2)); syncgate must.
#[tokio::test]
async fn crc32_xor_collision_is_still_reported() {
    let s = Scenario::empty().await;
    let ddl = "CREATE TABLE t (id INT PRIMARY KEY, v CHAR(2) NOT NULL)";
    s.up.exec(&format!("{ddl}; INSERT INTO t VALUES (1,'AA'),(2,'BB')"))
        .await;
    s.down
        .exec(&format!("{ddl}; INSERT INTO t VALUES (1,'AB'),(2,'BA')"))
        .await;
    let classic = "SELECT COUNT(*), BIT_XOR(CRC32(CONCAT_WS(',', id, v, \
                   CONCAT(ISNULL(id), ISNULL(v))))) FROM t";
    let a: Vec<(u64, u64)> = s.up.query(classic).await;
    let b: Vec<(u64, u64)> = s.down.query(classic).await;
    assert_eq!(a, b, "precondition: the classic checksum collides");

    let cfg = s.config("");
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(counts(&s.summary(), "t"), (0, 0, 2));
}

/// The reference tool's example config, with only hosts and ports pointed at local MariaDB
/// servers: its TiDB TSO snapshots cannot be read there, so it stops with one line naming the
/// side and the modes that work; without the TSOs it runs.
#[tokio::test]
async fn seed_example_config_runs_unchanged() {
    let up = crate::support::start_server(11).await;
    let down = crate::support::start_server(12).await;
    for server in [&up, &down] {
        let mut conn = server.conn().await.unwrap();
        use mysql_async::prelude::Queryable;
        conn.query_drop(format!(
            "CREATE DATABASE shop; USE shop; {} {}",
            fixture("basic_drift", "schema.sql"),
            fixture("basic_drift", "seed.sql")
        ))
        .await
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("output");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/sync-diff-example.toml"),
    )
    .unwrap()
    .replace("\"172.16.6.123\"", "\"127.0.0.1\"")
    .replace("\"172.16.6.124\"", "\"127.0.0.1\"")
    .replacen("port = 4000", &format!("port = {}", up.port()), 1)
    .replacen("port = 4000", &format!("port = {}", down.port()), 1)
    .replace("\"./output\"", &format!("{:?}", out_dir.to_str().unwrap()));
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, &text).unwrap();

    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    for needle in [
        "'upstream'",
        "431434047157698561",
        "\"consistent\"",
        "\"auto\"",
    ] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }

    let text = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("snapshot"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&cfg, &text).unwrap();
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let summary = crate::scenario::summary(&out_dir);
    assert_eq!(
        summary["tables"].as_array().unwrap().len(),
        3,
        "{summary:#}"
    );

    // And it finds drift.
    let mut conn = down.conn().await.unwrap();
    use mysql_async::prelude::Queryable;
    conn.query_drop(format!("USE shop; {}", fixture("basic_drift", "drift.sql")))
        .await
        .unwrap();
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
}
