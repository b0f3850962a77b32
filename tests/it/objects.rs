//! Objects beyond plain tables: system-versioned tables (MariaDB) are compared like any
//! other table on their current rows, their period columns left out.

use crate::scenario::{counts, describe, syncgate, Scenario};

/// Three shapes of system-versioned table: implicit period columns, explicit `AS ROW
/// START/END` columns (which MariaDB appends to the primary key), and partitioned `BY
/// SYSTEM_TIME`. Both sides get the same data with different histories (the upstream's rows
/// were updated, so their row_start differs); the downstream then drifts by one missing,
/// one extra and one changed row per table. The check names exactly those, the fix SQL
/// repairs them, and history never counts as a difference.
#[tokio::test]
async fn system_versioned_tables_are_compared_on_their_current_rows() {
    let s = Scenario::empty().await;
    let ddl =
        "CREATE TABLE implicit_sv (id INT PRIMARY KEY, v VARCHAR(20)) WITH SYSTEM VERSIONING; \
               CREATE TABLE explicit_sv (id INT PRIMARY KEY, v VARCHAR(20), \
                 rs TIMESTAMP(6) GENERATED ALWAYS AS ROW START, \
                 re TIMESTAMP(6) GENERATED ALWAYS AS ROW END, \
                 PERIOD FOR SYSTEM_TIME (rs, re)) WITH SYSTEM VERSIONING; \
               CREATE TABLE parted_sv (id INT PRIMARY KEY, v VARCHAR(20)) WITH SYSTEM VERSIONING \
                 PARTITION BY SYSTEM_TIME (PARTITION p_hist HISTORY, PARTITION p_cur CURRENT);";
    let tables = ["implicit_sv", "explicit_sv", "parted_sv"];
    let mut fill = String::new();
    for t in tables {
        fill.push_str(&format!(
            "INSERT INTO {t} (id, v) SELECT seq, CONCAT('v', seq) FROM seq_1_to_300; "
        ));
    }
    for db in [&s.up, &s.down] {
        db.exec(ddl).await;
        db.exec(&fill).await;
    }
    let mut history = String::new();
    let mut drift = String::new();
    for t in tables {
        history.push_str(&format!(
            "UPDATE {t} SET v = 'tmp' WHERE id <= 50; \
             UPDATE {t} SET v = CONCAT('v', id) WHERE id <= 50; "
        ));
        drift.push_str(&format!(
            "DELETE FROM {t} WHERE id = 7; INSERT INTO {t} (id, v) VALUES (1000, 'extra'); \
             UPDATE {t} SET v = 'changed' WHERE id = 200; "
        ));
    }
    s.up.exec(&history).await;
    s.down.exec(&drift).await;

    let cfg = s.config("");
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let summary = s.summary();
    for t in tables {
        assert_eq!(counts(&summary, t), (1, 1, 1), "{t}\n{summary:#}");
    }
    for t in summary["tables"].as_array().unwrap() {
        assert_eq!(t["structure_equal"], true, "{t:#}");
        assert_eq!(t["rows_upstream"], 300, "{t:#}");
    }

    assert_eq!(s.apply_fix_files().await, 3);
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    // Versioned on one side only is a structure difference; the data is still compared.
    s.down
        .exec("ALTER TABLE implicit_sv DROP SYSTEM VERSIONING")
        .await;
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let summary = s.summary();
    let t = summary["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "implicit_sv")
        .unwrap();
    assert!(
        t["structure_diffs"]
            .to_string()
            .contains("system versioning differs"),
        "{t:#}"
    );
    assert_eq!(counts(&summary, "implicit_sv"), (0, 0, 0));
}

/// `system-versioned-history = true`: a system-versioned table is compared over every row
/// version (`FOR SYSTEM_TIME ALL`), period columns included. Both sides get the same
/// history written explicitly (`system_versioning_insert_history`); then the upstream has a
/// version the downstream lacks and the downstream one the upstream lacks, with equal
/// current rows. Without the setting the tables are equal; with it each shows one missing
/// and one extra version, and no fix SQL is written for history.
#[tokio::test]
async fn history_of_system_versioned_tables_is_compared_on_request() {
    let s = Scenario::empty().await;
    let end = "2038-01-19 03:14:07.999999";
    for db in [&s.up, &s.down] {
        db.exec(
            "CREATE TABLE h (id INT PRIMARY KEY, v VARCHAR(20)) WITH SYSTEM VERSIONING; \
             CREATE TABLE he (id INT PRIMARY KEY, v VARCHAR(20), \
               rs TIMESTAMP(6) GENERATED ALWAYS AS ROW START, \
               re TIMESTAMP(6) GENERATED ALWAYS AS ROW END, \
               PERIOD FOR SYSTEM_TIME (rs, re)) WITH SYSTEM VERSIONING; \
             CREATE TABLE hp (id INT PRIMARY KEY, v VARCHAR(20)) WITH SYSTEM VERSIONING \
               PARTITION BY SYSTEM_TIME (PARTITION p_hist HISTORY, PARTITION p_cur CURRENT)",
        )
        .await;
    }
    let insert = |t: &str, rows: &[(u32, &str, &str, &str)]| {
        let (start, finish) = if t == "he" {
            ("rs", "re")
        } else {
            ("row_start", "row_end")
        };
        let values: Vec<String> = rows
            .iter()
            .map(|(id, v, a, b)| format!("({id}, '{v}', '{a}', '{b}')"))
            .collect();
        format!(
            "SET SESSION system_versioning_insert_history = 1; \
             INSERT INTO {t} (id, v, {start}, {finish}) VALUES {};",
            values.join(", ")
        )
    };
    let tables = ["h", "he", "hp"];
    for t in tables {
        let common = [
            (1, "a", "2020-01-01 00:00:00", "2021-01-01 00:00:00"),
            (1, "b", "2021-01-01 00:00:00", end),
            (2, "x", "2020-01-01 00:00:00", end),
        ];
        for db in [&s.up, &s.down] {
            db.exec(&insert(t, &common)).await;
        }
        s.up.exec(&insert(
            t,
            &[(3, "gone", "2020-01-01 00:00:00", "2020-06-01 00:00:00")],
        ))
        .await;
        s.down
            .exec(&insert(
                t,
                &[(2, "old", "2019-01-01 00:00:00", "2020-01-01 00:00:00")],
            ))
            .await;
    }

    let cfg = s.config("");
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "current rows are equal: {}",
        describe(&out)
    );

    let cfg = s.config(&format!(
        "target-configs = [\"history\"]\n\n[table-configs.history]\n\
         target-tables = [\"{}.h*\"]\nsystem-versioned-history = true\n",
        s.down.name()
    ));
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let summary = s.summary();
    for t in tables {
        assert_eq!(counts(&summary, t), (1, 1, 0), "{t}\n{summary:#}");
        let report = summary["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["table"] == t)
            .unwrap();
        assert_eq!(report["history"], true, "{report:#}");
        assert_eq!(
            report["rows_upstream"], 4,
            "every version is read: {report:#}"
        );
        assert!(report["fix_sql"].is_null(), "{report:#}");
    }
}

/// Views, routines, triggers and events hold no table data the check compares: the report
/// lists each as not compared, with the side it exists on, instead of passing over it.
#[tokio::test]
async fn objects_that_are_not_tables_are_listed_as_not_compared() {
    let s = Scenario::empty().await;
    for db in [&s.up, &s.down] {
        db.exec(
            "CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 1); \
             CREATE VIEW v_both AS SELECT id FROM t; \
             CREATE SEQUENCE seq_both; \
             CREATE TRIGGER trg_both BEFORE INSERT ON t FOR EACH ROW SET NEW.v = NEW.v",
        )
        .await;
    }
    s.up.exec(
        "CREATE PROCEDURE proc_up() SELECT 1; \
         CREATE FUNCTION fn_up() RETURNS INT DETERMINISTIC RETURN 1; \
         CREATE EVENT ev_up ON SCHEDULE EVERY 1 DAY DISABLE DO SELECT 1",
    )
    .await;
    s.down.exec("CREATE VIEW v_down AS SELECT v FROM t").await;

    let cfg = s.config("");
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let summary = s.summary();
    let listed: Vec<(String, String, String)> = summary["not_compared"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap().to_string(),
                o["name"].as_str().unwrap().to_string(),
                o["on"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = |k: &str, n: &str, on: &str| (k.to_string(), n.to_string(), on.to_string());
    for expected in [
        want("view", "v_both", "both"),
        want("view", "v_down", "downstream only"),
        want("trigger", "trg_both", "both"),
        want("procedure", "proc_up", "upstream only"),
        want("function", "fn_up", "upstream only"),
        want("event", "ev_up", "upstream only"),
    ] {
        assert!(listed.contains(&expected), "{expected:?} not in {listed:?}");
    }
    // Sequences on both sides are compared (their state, see below), not listed.
    assert_eq!(listed.len(), 6, "{listed:?}");
    let txt = std::fs::read_to_string(s.output_dir().join("summary.txt")).unwrap();
    assert!(txt.contains("Not compared (6)"), "{txt}");
    assert_eq!(summary["metadata"], serde_json::json!([]), "{summary:#}");
    assert_eq!(
        summary["tables"].as_array().unwrap().len(),
        1,
        "{summary:#}"
    );
}

/// What a promoted downstream would hand out next. AUTO_INCREMENT: a downstream that never
/// got the upstream's top rows has its counter at or below the upstream's largest id (a
/// difference, beside the missing rows); an upstream counter ahead only because of a
/// rolled-back insert is not one. Sequences: behind, defined differently and missing on the
/// downstream are differences; ahead is a warning. The fix SQL (tables' files, then
/// metadata.sql) makes a second check equal, and `--apply-fix` does the same.
#[tokio::test]
async fn counters_and_sequences_behind_on_the_downstream_are_reported_and_fixed() {
    let s = Scenario::empty().await;
    for db in [&s.up, &s.down] {
        db.exec(
            "CREATE TABLE gap (id INT AUTO_INCREMENT PRIMARY KEY, v INT); \
             CREATE TABLE rolled (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, v INT); \
             INSERT INTO gap SELECT seq, seq FROM seq_1_to_90; \
             INSERT INTO rolled SELECT seq, seq FROM seq_1_to_100; \
             CREATE SEQUENCE s_behind; CREATE SEQUENCE s_ahead; \
             CREATE SEQUENCE s_def INCREMENT BY 1",
        )
        .await;
    }
    s.up.exec(
        "INSERT INTO gap SELECT seq, seq FROM seq_91_to_100; \
         START TRANSACTION; INSERT INTO rolled (v) SELECT seq FROM seq_1_to_10; ROLLBACK; \
         SELECT NEXTVAL(s_behind); ALTER SEQUENCE s_def INCREMENT BY 7; \
         CREATE SEQUENCE s_missing START WITH 50 CACHE 5",
    )
    .await;
    s.down.exec("SELECT NEXTVAL(s_ahead)").await;
    let counter = |db: &'static str| {
        format!(
            "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = \
             DATABASE() AND TABLE_NAME = '{db}'"
        )
    };
    assert_eq!(s.down.query::<u64>(&counter("gap")).await[0], 91);

    let cfg = s.config("");
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let summary = s.summary();
    assert_eq!(counts(&summary, "gap"), (10, 0, 0));
    assert_eq!(counts(&summary, "rolled"), (0, 0, 0));
    let found: Vec<(String, String)> = summary["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["kind"].as_str().unwrap().into(),
                m["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = |k: &str, n: &str| (k.to_string(), n.to_string());
    assert_eq!(
        found,
        [
            want("auto_increment", "gap"),
            want("sequence", "s_behind"),
            want("sequence", "s_def"),
            want("sequence", "s_missing"),
        ],
        "{summary:#}"
    );
    let gap = &summary["metadata"][0];
    assert!(
        gap["detail"].as_str().unwrap().contains("91..=100"),
        "{gap:#}"
    );
    assert!(
        summary["warnings"].to_string().contains("s_ahead"),
        "{summary:#}"
    );
    let rel = summary["metadata_fix_sql"].as_str().unwrap();
    let text = std::fs::read_to_string(s.output_dir().join(rel)).unwrap();
    assert!(text.contains("ALTER TABLE `"), "{text}");
    assert!(text.contains("CREATE SEQUENCE `"), "{text}");
    let txt = std::fs::read_to_string(s.output_dir().join("summary.txt")).unwrap();
    assert!(
        txt.contains("Counters and sequences that differ (4)"),
        "{txt}"
    );
    // The terminal says it too: the tables alone would not explain the exit code.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("auto_increment `") && stdout.contains("Counters and sequences: 4"),
        "{stdout}"
    );

    // gap.sql and metadata.sql.
    assert_eq!(s.apply_fix_files().await, 2);
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(s.down.query::<u64>(&counter("gap")).await[0] > 100);
    assert_eq!(
        s.down
            .query::<u64>("SELECT next_not_cached_value FROM s_missing")
            .await[0],
        s.up.query::<u64>("SELECT next_not_cached_value FROM s_missing")
            .await[0]
    );

    // --apply-fix moves a sequence that fell behind again, and says it did.
    s.up.exec("SELECT SETVAL(s_behind, 5000)").await;
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap(), "--apply-fix"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let summary = s.summary();
    assert_eq!(summary["result"], "repaired", "{summary:#}");
    assert_eq!(summary["metadata"][0]["fixed"], true, "{summary:#}");
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}
