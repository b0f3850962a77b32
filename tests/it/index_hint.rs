//! `sql-hint-use-index = "auto"`: chunk queries carry `FORCE INDEX` for the chunk key's
//! index, the server accepts them, and the results are those of a run without the hint.

use crate::scenario::{counts, describe, fixture, syncgate, Scenario};
use crate::support::TestDb;

/// Statements of database `db` with `FORCE INDEX` in the server's general log.
async fn forced(db: &TestDb) -> Vec<String> {
    db.query(&format!(
        "SELECT CONVERT(argument USING utf8mb4) FROM mysql.general_log \
         WHERE argument LIKE '%FORCE INDEX%' AND argument LIKE '%`{}`%'",
        db.name()
    ))
    .await
}

#[tokio::test]
async fn sql_hint_use_index_auto_forces_the_key_index_on_both_sides() {
    let s = Scenario::load("basic_drift", true).await;
    let cfg = s.config("");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "user = \"root\"\n",
        "user = \"root\"\nsql-hint-use-index = \"auto\"\n",
    );
    assert_eq!(text.matches("sql-hint-use-index").count(), 2, "{text}");
    std::fs::write(&cfg, text).unwrap();
    for db in [&s.up, &s.down] {
        db.exec("SET GLOBAL log_output = 'TABLE'; SET GLOBAL general_log = 1")
            .await;
    }
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    for db in [&s.up, &s.down] {
        db.exec("SET GLOBAL general_log = 0").await;
    }
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));

    // The same ground truth as without the hint.
    let summary = s.summary();
    let truth: serde_json::Value =
        serde_json::from_str(&fixture("basic_drift", "expected.json")).unwrap();
    for (table, want) in truth.as_object().unwrap() {
        let want = (
            want["missing"].as_u64().unwrap(),
            want["extra"].as_u64().unwrap(),
            want["changed"].as_u64().unwrap(),
        );
        assert_eq!(counts(&summary, table), want, "table {table}");
    }

    // Keyed tables name their primary key on both sides; the keyless table has no hint.
    for db in [&s.up, &s.down] {
        let sql = forced(db).await;
        for table in ["accounts", "tags"] {
            let hint = format!("`{table}` FORCE INDEX (PRIMARY)");
            assert!(
                sql.iter().any(|q| q.contains(&hint)),
                "no {hint} in {sql:#?}"
            );
        }
        assert!(!sql.iter().any(|q| q.contains("`events`")), "{sql:#?}");
    }
}
