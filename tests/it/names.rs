//! Names that need quoting — reserved words, backticks, quotes, spaces, dots, non-ASCII — in
//! schemas, tables and columns, through every stage: discovery, chunking and bisection, the
//! row merge, fix SQL files (applied as a user would) and `--apply-fix`.

use crate::scenario::{counts, describe, syncgate, Scenario};
use crate::support::{pair, TestDb};
use crate::types::dump;

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A table-filter pattern matching `schema`.`table` literally (backquoted parts).
fn pattern(schema: &str, table: &str) -> String {
    let q = |s: &str| format!("`{}`", s.replace('`', "``"));
    toml_str(&format!("{}.{}", q(schema), q(table)))
}

fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

const BIG: &str = "order";
const SMALL: &str = "tablé `x` 'q' \"d\". 列 \\b%";
const KEYLESS: &str = "select";
/// Column names: `K1`, `K2` the key of `BIG`, `C1`, `C2` further columns.
const K1: &str = "select";
const K2: &str = "we`ird col";
const C1: &str = "列 名";
const C2: &str = "dé'g\"x";

/// A database pair whose schema name needs quoting. No backtick in the schema name: the
/// harness creates and drops it with plain quoting.
async fn scenario_with_quoted_schema() -> (Scenario, String) {
    let (up_server, down_server) = pair().await;
    let schema = format!("sg_names sché'ma\".x {}", std::process::id() % 100_000);
    let up = TestDb::create(up_server, schema.clone()).await;
    let down = TestDb::create(down_server, schema.clone()).await;
    let s = Scenario {
        up,
        down,
        dir: tempfile::tempdir().unwrap(),
    };
    (s, schema)
}

/// `BIG` (5000 rows, two-column key), `SMALL` (60 rows), `KEYLESS` (a duplicated row).
fn seed_sql() -> String {
    let big_rows: Vec<String> = (0..5000)
        .map(|i| format!("({}, 'k{:05}', 'v{i}', {i})", i % 7, i))
        .collect();
    let small_rows: Vec<String> = (0..60)
        .map(|i| format!("('ké{i:03}', {i}, 'ü{i}')"))
        .collect();
    format!(
        "CREATE TABLE {big} ({k1} INT NOT NULL, {k2} VARCHAR(20) NOT NULL, {c1} VARCHAR(20), \
         {c2} INT, PRIMARY KEY ({k1}, {k2})); \
         INSERT INTO {big} VALUES {big_rows}; \
         CREATE TABLE {small} ({c1} VARCHAR(10) PRIMARY KEY, `from` INT, {c2} VARCHAR(10)); \
         INSERT INTO {small} VALUES {small_rows}; \
         CREATE TABLE {keyless} ({k2} INT, {c1} VARCHAR(10)); \
         INSERT INTO {keyless} VALUES (1, 'a'), (1, 'a'), (2, 'b')",
        big = ident(BIG),
        small = ident(SMALL),
        keyless = ident(KEYLESS),
        k1 = ident(K1),
        k2 = ident(K2),
        c1 = ident(C1),
        c2 = ident(C2),
        big_rows = big_rows.join(", "),
        small_rows = small_rows.join(", "),
    )
}

/// The config: small chunks for `BIG` and `SMALL` (bisection), fix SQL exported.
fn write_config(s: &Scenario, schema: &str) -> std::path::PathBuf {
    let config = format!(
        r#"check-thread-count = 4
export-fix-sql = true

[data-sources.up]
host = "127.0.0.1"
port = {up_port}
user = "root"
password = ""

[data-sources.down]
host = "127.0.0.1"
port = {down_port}
user = "root"
password = ""

[task]
output-dir = {out}
source-instances = ["up"]
target-instance = "down"
target-check-tables = [{all}]
target-configs = ["big", "small"]

[table-configs.big]
target-tables = [{big}]
chunk-size = 2400

[table-configs.small]
target-tables = [{small}]
chunk-size = 7
"#,
        up_port = s.up.port(),
        down_port = s.down.port(),
        out = toml_str(s.output_dir().to_str().unwrap()),
        all = pattern(schema, "*").replace("`*`", "*"),
        big = pattern(schema, BIG),
        small = pattern(schema, SMALL),
    );
    let cfg = s.dir.path().join("config.toml");
    std::fs::write(&cfg, config).unwrap();
    cfg
}

fn run_check(cfg: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["check", "-C", cfg.to_str().unwrap()];
    args.extend_from_slice(extra);
    syncgate(&args)
}

/// Deletes, updates and inserts in all three tables, on the downstream.
fn drift_sql() -> String {
    format!(
        "DELETE FROM {big} WHERE {k2} IN ('k00010', 'k04321'); \
         UPDATE {big} SET {c1} = 'changed' WHERE {k2} = 'k02000'; \
         INSERT INTO {big} VALUES (9, 'new', NULL, NULL); \
         DELETE FROM {small} WHERE {c1} = 'ké005'; \
         UPDATE {small} SET {c2} = 'x' WHERE {c1} = 'ké030'; \
         UPDATE {small} SET `from` = -1 WHERE {c1} = 'ké059'; \
         DELETE FROM {keyless} WHERE {k2} = 1 LIMIT 1; INSERT INTO {keyless} VALUES (3, 'c')",
        big = ident(BIG),
        small = ident(SMALL),
        keyless = ident(KEYLESS),
        k2 = ident(K2),
        c1 = ident(C1),
        c2 = ident(C2),
    )
}

/// The drift's counts per table, bisected chunks of `SMALL`, a fix SQL file per table.
fn assert_drift_reported(s: &Scenario) {
    let summary = s.summary();
    assert_eq!(counts(&summary, BIG), (2, 1, 1), "{summary:#}");
    assert_eq!(counts(&summary, SMALL), (1, 0, 2), "{summary:#}");
    assert_eq!(counts(&summary, KEYLESS), (1, 1, 0), "{summary:#}");
    let table = |name: &str| {
        summary["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == name)
            .unwrap()
            .clone()
    };
    assert!(table(SMALL)["chunks"].as_u64().unwrap() >= 8, "{summary:#}");
    for name in [BIG, SMALL, KEYLESS] {
        let fix = table(name)["fix_sql"].as_str().unwrap().to_string();
        assert!(s.output_dir().join(&fix).is_file(), "{fix}");
    }
}

/// Every table's exact contents, ordered.
fn dump_queries() -> [String; 3] {
    [
        format!(
            "SELECT {k1}, {k2}, {c1}, {c2} FROM {} ORDER BY {k1}, {k2}",
            ident(BIG),
            k1 = ident(K1),
            k2 = ident(K2),
            c1 = ident(C1),
            c2 = ident(C2)
        ),
        format!("SELECT * FROM {} ORDER BY 1", ident(SMALL)),
        format!("SELECT * FROM {} ORDER BY 1, 2", ident(KEYLESS)),
    ]
}

async fn assert_sides_identical(s: &Scenario, queries: &[String]) {
    for q in queries {
        assert_eq!(dump(&s.up, q).await, dump(&s.down, q).await, "{q}");
    }
}

#[tokio::test]
async fn names_that_need_quoting_work_everywhere() {
    let (s, schema) = scenario_with_quoted_schema().await;
    let ddl = seed_sql();
    for db in [&s.up, &s.down] {
        db.exec(&ddl).await;
    }
    let cfg = write_config(&s, &schema);
    let run = |extra: &[&str]| run_check(&cfg, extra);

    let out = run(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(s.summary()["tables"].as_array().unwrap().len(), 3);

    let drift = drift_sql();
    s.down.exec(&drift).await;
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_drift_reported(&s);

    assert_eq!(s.apply_fix_files().await, 3);
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let queries = dump_queries();
    assert_sides_identical(&s, &queries).await;

    // The same drift again, repaired by --apply-fix.
    s.down.exec(&drift).await;
    let out = run(&["--apply-fix"]);
    assert_eq!(out.status.code(), Some(0), "repaired: {}", describe(&out));
    let summary = s.summary();
    assert_eq!(summary["result"], "repaired");
    for name in [BIG, SMALL, KEYLESS] {
        assert_eq!(
            table_field(&summary, name, "recheck_equal"),
            true,
            "{name}\n{}",
            describe(&out)
        );
    }
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_sides_identical(&s, &queries).await;
}

fn table_field(summary: &serde_json::Value, name: &str, field: &str) -> serde_json::Value {
    summary["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == name)
        .unwrap_or_else(|| panic!("{name} in {summary:#}"))[field]
        .clone()
}
