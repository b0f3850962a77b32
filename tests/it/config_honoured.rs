//! Settings sync-diff-inspector configs carry are honoured, or named in the report; none is
//! accepted and passed over in silence.

use crate::scenario::{counts, describe, syncgate, Scenario};

/// Rewrite `[data-sources.up]` of the scenario's config with `line` added.
fn with_upstream_line(s: &Scenario, line: &str) -> String {
    let path = s.config("");
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "password = \"\"\n",
        &format!("password = \"\"\n{line}\n"),
        1,
    );
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_mode_of_a_data_source_is_the_session_sql_mode() {
    let s = Scenario::empty().await;
    for db in [&s.up, &s.down] {
        db.exec("CREATE TABLE t (id INT PRIMARY KEY, c CHAR(6)); INSERT INTO t VALUES (1, 'ab')")
            .await;
    }
    // Equal under the servers' own modes.
    let cfg = s.config("");
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    // PAD_CHAR_TO_FULL_LENGTH makes the upstream read CHAR values padded: had the setting
    // been ignored, the sides would still compare equal.
    let cfg = with_upstream_line(&s, "sql-mode = \"PAD_CHAR_TO_FULL_LENGTH\"");
    let out = syncgate(&["check", "-C", &cfg]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(counts(&s.summary(), "t"), (0, 0, 1));

    // Modes that would change how syncgate's own SQL parses are still dropped.
    let cfg = with_upstream_line(&s, "sql-mode = \"ANSI_QUOTES,NO_BACKSLASH_ESCAPES\"");
    let out = syncgate(&["check", "-C", &cfg]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_settings_are_named_in_the_report() {
    let s = Scenario::empty().await;
    for db in [&s.up, &s.down] {
        db.exec("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)")
            .await;
    }
    let path = s.config("");
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "export-fix-sql = true\n",
        "export-fix-sql = true\nsplitter-strategy = \"random\"\n",
        1,
    ) + "target-configs = [\"c\"]\n[table-configs.c]\ntarget-tables = [\"*.t\"]\n\
           collation = \"utf8mb4_bin\"\nchunk-size = 0\n[table-configs.orphan]\ntarget-tables = [\"*.t\"]\n";
    std::fs::write(&path, text).unwrap();
    let out = syncgate(&["check", "-C", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let warnings = s.summary()["warnings"].clone();
    assert!(
        warnings.as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .starts_with("splitter-strategy is not used")),
        "{warnings:#}"
    );
    assert!(
        warnings
            .to_string()
            .contains("[table-configs.c] chunk-size = 0 means automatic"),
        "{warnings:#}"
    );
}
