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
