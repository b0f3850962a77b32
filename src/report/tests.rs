//! Tests for the report model, summary files and terminal table.

use super::*;
use crate::error::{EXIT_DIFFERENT, EXIT_EQUAL, EXIT_ERROR};
use serde_json::Value;
use std::path::Path;

fn table(schema: &str, name: &str, result: TableResult) -> TableReport {
    let checked = matches!(result, TableResult::Equal | TableResult::Different);
    TableReport {
        schema: schema.into(),
        table: name.into(),
        upstream_table: format!("{schema}.{name}"),
        result,
        structure_equal: checked,
        structure_diffs: vec![],
        data_checked: checked,
        rows_missing: 0,
        rows_extra: 0,
        rows_changed: 0,
        rows_upstream: 100,
        rows_downstream: 100,
        chunks: 4,
        chunks_different: 0,
        fix_sql: None,
        undo_sql: None,
        skip_reason: None,
        error: None,
        duration_ms: 1200,
        fix_applied: false,
        recheck_equal: None,
        resumed_chunks: 0,
        history: false,
        overlapping_keys: 0,
        overlaps: Vec::new(),
    }
}

fn source(name: &str, flavour: &str, snapshot: &str) -> SourceReport {
    SourceReport {
        name: name.into(),
        address: "127.0.0.1:3306".into(),
        flavour: flavour.into(),
        version: "10.11.6".into(),
        snapshot: snapshot.into(),
        pinned: !snapshot.is_empty() && !snapshot.starts_with("live"),
        encrypted: false,
        tls_cipher: None,
    }
}

/// Equal, different (data and structure), skipped and error tables.
fn mixed() -> RunReport {
    let equal = table("shop", "users", TableResult::Equal);
    let mut data = table("shop", "orders", TableResult::Different);
    data.rows_missing = 3;
    data.rows_extra = 2;
    data.rows_changed = 5;
    data.rows_downstream = 99;
    data.chunks_different = 1;
    data.fix_sql = Some("fix-on-tidb/shop.orders.sql".into());
    data.upstream_table = "shop_old.orders".into();
    let mut structure = table("shop", "items", TableResult::Different);
    structure.structure_equal = false;
    structure.data_checked = false;
    structure.structure_diffs = vec!["column `price`: decimal(10,2) vs double".into()];
    let mut skipped = table("shop", "gone", TableResult::Skipped);
    skipped.skip_reason = Some("does not exist in downstream".into());
    let mut failed = table("shop", "logs", TableResult::Error);
    failed.error = Some("query failed on 'up': lock wait timeout".into());
    RunReport {
        result: RunResult::Equal,
        syncgate_version: "0.1.0".into(),
        checksum: "xxh3-v1".into(),
        started_at: "2025-01-02T03:04:05Z".into(),
        duration_ms: 75_300,
        upstream: vec![source("up", "mysql", "live, not pinned")],
        downstream: SourceReport {
            encrypted: true,
            tls_cipher: Some("TLS_AES_256_GCM_SHA384".into()),
            ..source("down", "tidb", "tso 449833230912356353")
        },
        output_dir: "out".into(),
        tables: vec![equal, data, structure, skipped, failed],
        error: None,
        warnings: vec!["upstream binlog is not row-based".into()],
        not_compared: Vec::new(),
        metadata: Vec::new(),
        metadata_fix_sql: None,
    }
}

fn with_results(results: &[TableResult]) -> RunReport {
    let mut r = mixed();
    r.tables = results
        .iter()
        .enumerate()
        .map(|(i, &res)| table("db", &format!("t{i}"), res))
        .collect();
    r.warnings.clear();
    r
}

#[test]
fn compute_result_and_exit_code() {
    use TableResult::*;
    let cases: &[(&[TableResult], RunResult, i32)] = &[
        (&[], RunResult::Equal, EXIT_EQUAL),
        (&[Equal, Equal], RunResult::Equal, EXIT_EQUAL),
        (&[Equal, Skipped], RunResult::Equal, EXIT_EQUAL),
        (&[Skipped], RunResult::Equal, EXIT_EQUAL),
        (
            &[Equal, Different, Skipped],
            RunResult::Different,
            EXIT_DIFFERENT,
        ),
        (&[Different, Error], RunResult::Error, EXIT_ERROR),
        (&[Error], RunResult::Error, EXIT_ERROR),
    ];
    for (tables, want, code) in cases {
        let mut r = with_results(tables);
        r.compute_result();
        assert_eq!(r.result, *want, "{tables:?}");
        assert_eq!(r.exit_code(), *code, "{tables:?}");
    }
    // A run-level error wins even when every table is equal.
    let mut r = with_results(&[Equal]);
    r.error = Some("cannot connect".into());
    r.compute_result();
    assert_eq!((r.result, r.exit_code()), (RunResult::Error, 2));
    assert_eq!((EXIT_EQUAL, EXIT_DIFFERENT, EXIT_ERROR), (0, 1, 2));

    // --apply-fix: repaired only when every different table was fixed and re-checked equal.
    let mut r = with_results(&[Equal, Different, Different]);
    for t in &mut r.tables[1..] {
        t.fix_applied = true;
        t.recheck_equal = Some(true);
    }
    r.compute_result();
    assert_eq!((r.result, r.exit_code()), (RunResult::Repaired, 0));
    assert_eq!(r.result.as_str(), "repaired");
    r.tables[2].recheck_equal = Some(false);
    r.compute_result();
    assert_eq!((r.result, r.exit_code()), (RunResult::Different, 1));
    r.tables[2].recheck_equal = None;
    r.tables[2].fix_applied = false;
    r.compute_result();
    assert_eq!((r.result, r.exit_code()), (RunResult::Different, 1));
}

#[test]
fn counts_line() {
    let r = mixed();
    assert_eq!(
        r.counts().to_string(),
        "5 tables: 1 equal, 2 different, 1 skipped, 1 error"
    );
    let r = with_results(&[TableResult::Equal]);
    assert_eq!(
        r.counts().to_string(),
        "1 table: 1 equal, 0 different, 0 skipped, 0 errors"
    );
}

#[test]
fn fix_sql_dir_is_common_parent() {
    let mut r = mixed();
    assert_eq!(r.fix_sql_dir(), Some("fix-on-tidb".into()));
    r.tables[2].fix_sql = Some("elsewhere/x.sql".into());
    assert_eq!(r.fix_sql_dir(), Some(PathBuf::new()));
    for t in &mut r.tables {
        t.fix_sql = None;
    }
    assert_eq!(r.fix_sql_dir(), None);
}

#[test]
fn write_summary_json_has_documented_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested/out");
    let mut r = mixed();
    r.compute_result();
    write_summary(&r, &out).unwrap();

    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(SUMMARY_JSON)).unwrap()).unwrap();
    for key in [
        "result",
        "syncgate_version",
        "checksum",
        "started_at",
        "duration_ms",
        "upstream",
        "downstream",
        "output_dir",
        "tables",
        "error",
        "warnings",
    ] {
        assert!(v.get(key).is_some(), "missing top-level key {key}");
    }
    assert_eq!(v["result"], "error");
    for key in [
        "name",
        "address",
        "flavour",
        "version",
        "snapshot",
        "encrypted",
        "tls_cipher",
    ] {
        assert!(
            v["downstream"].get(key).is_some(),
            "missing source key {key}"
        );
        assert!(
            v["upstream"][0].get(key).is_some(),
            "missing source key {key}"
        );
    }
    assert_eq!(v["upstream"][0]["encrypted"], false);
    assert_eq!(v["upstream"][0]["tls_cipher"], Value::Null);
    assert_eq!(v["downstream"]["encrypted"], true);
    assert_eq!(v["downstream"]["tls_cipher"], "TLS_AES_256_GCM_SHA384");
    let tables = v["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 5);
    for t in tables {
        for key in [
            "schema",
            "table",
            "upstream_table",
            "result",
            "structure_equal",
            "structure_diffs",
            "data_checked",
            "rows_missing",
            "rows_extra",
            "rows_changed",
            "rows_upstream",
            "rows_downstream",
            "chunks",
            "chunks_different",
            "fix_sql",
            "skip_reason",
            "error",
            "duration_ms",
            "fix_applied",
            "recheck_equal",
        ] {
            assert!(t.get(key).is_some(), "missing table key {key}");
        }
    }
    let orders = &tables[1];
    assert_eq!(orders["schema"], "shop");
    assert_eq!(orders["table"], "orders");
    assert_eq!(orders["result"], "different");
    assert_eq!(orders["structure_equal"], true);
    assert_eq!(orders["rows_missing"], 3);
    assert_eq!(orders["rows_extra"], 2);
    assert_eq!(orders["rows_changed"], 5);
    assert_eq!(orders["fix_sql"], "fix-on-tidb/shop.orders.sql");
    assert_eq!(tables[0]["fix_sql"], Value::Null);
    assert_eq!(tables[3]["result"], "skipped");
    assert_eq!(tables[4]["result"], "error");

    // Round-trips into the model, and no temp files are left behind.
    let back: RunReport =
        serde_json::from_str(&std::fs::read_to_string(out.join(SUMMARY_JSON)).unwrap()).unwrap();
    assert_eq!(back.tables[1].rows_changed, 5);
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [SUMMARY_JSON, SUMMARY_TXT]);

    // Writing again replaces both files.
    r.tables.truncate(1);
    r.compute_result();
    write_summary(&r, &out).unwrap();
    let txt = std::fs::read_to_string(out.join(SUMMARY_TXT)).unwrap();
    assert!(txt.ends_with("Result: equal\n"), "{txt}");
}

#[test]
fn summary_txt_lines() {
    let mut r = mixed();
    r.compute_result();
    let txt = render_summary_txt(&r);
    let has = |s: &str| assert!(txt.contains(s), "missing {s:?} in\n{txt}");
    has("syncgate 0.1.0 summary");
    has("Started:    2025-01-02T03:04:05Z");
    has("Duration:   1m 15s");
    has("Checksum:   xxh3-v1");
    has("Upstream up\n  Address:  127.0.0.1:3306\n  Server:   mysql 10.11.6\n");
    has("  Snapshot: live, not pinned\n  Warning:  read live");
    has("Downstream down\n");
    has("  Snapshot: tso 449833230912356353\n");
    // Each side says whether its connection is encrypted.
    has("  Server:   mysql 10.11.6\n  TLS:      none, the connection is not encrypted\n");
    has("Downstream down\n  Address:  127.0.0.1:3306\n  Server:   tidb 10.11.6\n  TLS:      encrypted, cipher TLS_AES_256_GCM_SHA384\n");
    // Only the live side gets the warning.
    assert_eq!(txt.matches("Warning:  read live").count(), 1);
    has("Equal tables (1)");
    has("| Table      | Upstream rows | Downstream rows |");
    has("| shop.users |           100 |             100 |");
    has("Tables that are not equal (3)");
    let row = |name: &str| {
        txt.lines()
            .find(|l| l.starts_with(&format!("| {name} ")) && !l.contains("Upstream rows"))
            .unwrap_or_else(|| panic!("no row {name} in\n{txt}"))
            .split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("Table"),
        [
            "Table",
            "Result",
            "Structure",
            "Missing",
            "Extra",
            "Changed",
            "Fix SQL"
        ]
    );
    assert_eq!(
        row("shop.orders (from shop_old.orders)"),
        [
            "shop.orders (from shop_old.orders)",
            "different",
            "equal",
            "3",
            "2",
            "5",
            "fix-on-tidb/shop.orders.sql"
        ]
    );
    assert_eq!(
        row("shop.items"),
        ["shop.items", "different", "different", "-", "-", "-", "-"]
    );
    assert_eq!(
        row("shop.logs"),
        ["shop.logs", "error", "-", "-", "-", "-", "-"]
    );
    has("Skipped tables (1)\n  shop.gone: does not exist in downstream\n");
    has("Errors (1)\n  shop.logs: query failed on 'up': lock wait timeout\n");
    has("Structure differences\n  shop.items\n    - column `price`: decimal(10,2) vs double\n");
    has("Warnings (1)\n  - upstream binlog is not row-based\n");
    assert!(txt.ends_with("Result: error\n"), "{txt}");

    assert!(!txt.contains("Fix SQL applied"), "{txt}");

    // Applied fixes are listed with their re-check outcome.
    let mut r = mixed();
    r.tables[1].fix_applied = true;
    r.tables[1].recheck_equal = Some(true);
    r.tables[2].fix_applied = true;
    r.tables[2].recheck_equal = Some(false);
    let txt = render_summary_txt(&r);
    assert!(
        txt.contains(
            "Fix SQL applied to 2 tables: 1 equal on re-check, 1 still different\n  \
             shop.orders (from shop_old.orders): equal on re-check\n  \
             shop.items: still different on re-check\n"
        ),
        "{txt}"
    );
    let s = render_terminal(&r);
    assert!(
        s.contains("Fix SQL applied to 2 tables: 1 equal on re-check, 1 still different\n"),
        "{s}"
    );

    // Run-level error and empty sections.
    let mut r = with_results(&[TableResult::Equal]);
    r.error = Some("cannot connect".into());
    r.upstream[0].snapshot = "ts 2025-01-02 03:04:05".into();
    r.upstream[0].pinned = true;
    r.compute_result();
    let txt = render_summary_txt(&r);
    assert!(txt.contains("Errors (1)\n  run: cannot connect\n"), "{txt}");
    assert!(
        txt.contains("Tables that are not equal (0)\n  none\n"),
        "{txt}"
    );
    assert!(!txt.contains("Warning:"), "{txt}");
    assert!(!txt.contains("Skipped tables"), "{txt}");
    assert!(!txt.contains("Structure differences"), "{txt}");
}

#[test]
fn write_summary_reports_output_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let err = write_summary(&mixed(), &file.join("out")).unwrap_err();
    assert!(matches!(err, crate::Error::Output { .. }), "{err:?}");
}

#[test]
fn terminal_table_and_counts() {
    let mut r = mixed();
    r.compute_result();
    let s = render_terminal(&r);
    for name in [
        "shop.users",
        "shop.orders",
        "shop.items",
        "shop.gone",
        "shop.logs",
    ] {
        assert!(s.contains(name), "missing {name} in\n{s}");
    }
    assert!(s.contains("╭"), "rounded style:\n{s}");
    for head in [
        "Table",
        "Result",
        "Structure",
        "Rows up/down",
        "Missing",
        "Extra",
        "Changed",
    ] {
        assert!(s.contains(head), "missing header {head} in\n{s}");
    }
    assert!(s.contains("100/99"), "{s}");
    assert!(
        s.contains("skipped shop.gone: does not exist in downstream\n"),
        "{s}"
    );
    assert!(s.contains("error   shop.logs: query failed"), "{s}");
    assert!(
        s.contains("5 tables: 1 equal, 2 different, 1 skipped, 1 error\n"),
        "{s}"
    );
    let fix = format!(
        "Fix SQL: {}\n",
        Path::new("out").join("fix-on-tidb").display()
    );
    assert!(s.contains(&fix), "{s}");
    let sum = format!(
        "Summary: {}\n",
        Path::new("out").join(SUMMARY_TXT).display()
    );
    assert!(s.ends_with(&sum), "{s}");
    // Width stays sane: no line much wider than the content needs.
    assert!(s.lines().all(|l| l.chars().count() < 120), "{s}");

    // No fix SQL, no tables.
    let mut r = with_results(&[]);
    r.compute_result();
    let s = render_terminal(&r);
    assert!(s.contains("No tables were compared."), "{s}");
    assert!(s.contains("0 tables: 0 equal"), "{s}");
    assert!(!s.contains("Fix SQL"), "{s}");
}

#[test]
fn result_words_match_serde() {
    for r in [RunResult::Equal, RunResult::Different, RunResult::Error] {
        assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
    }
    for r in [
        TableResult::Equal,
        TableResult::Different,
        TableResult::Skipped,
        TableResult::Error,
    ] {
        assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
    }
}
