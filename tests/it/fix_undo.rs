//! Fix SQL a reviewer can read and undo: every statement has its comment, and the undo file
//! applied after the fix puts the drifted downstream back exactly (keyed and keyless tables,
//! NULLs, binary values, a case-insensitive key).

use crate::scenario::{describe, syncgate, Scenario};

const SCHEMA: &str = "
CREATE TABLE k (id INT PRIMARY KEY, name VARCHAR(40), b VARBINARY(8), g INT AS (id * 2) VIRTUAL);
CREATE TABLE ci (code VARCHAR(20) COLLATE utf8mb4_general_ci PRIMARY KEY, v INT);
CREATE TABLE bag (a INT, t VARCHAR(20), b BLOB);
";

const SEED: &str = "
INSERT INTO k (id, name, b) VALUES (1, 'one', X'00FF'), (2, NULL, NULL), (3, 'th*/ree', X'2A2F'), (4, 'four', X'');
INSERT INTO ci VALUES ('abc', 1), ('Zed', 2), ('m', 3);
INSERT INTO bag VALUES (1, 'x', NULL), (1, 'x', NULL), (2, NULL, X'00'), (3, 'y', X'01');
";

/// Downstream drift: an extra row (with `*/` in a value), a missing one, a changed one, a
/// case-only key change, surplus and missing keyless copies.
const DRIFT: &str = "
INSERT INTO k (id, name, b) VALUES (100001, 'gone */ DROP TABLE k; /*', X'DEAD');
DELETE FROM k WHERE id = 2;
UPDATE k SET name = NULL, b = X'01' WHERE id = 3;
DELETE FROM ci WHERE code = 'abc';
INSERT INTO ci VALUES ('ABC', 9);
UPDATE ci SET v = NULL WHERE code = 'm';
INSERT INTO bag VALUES (1, 'x', NULL), (4, 'z', X'FF00');
DELETE FROM bag WHERE a = 2;
";

async fn dump(db: &crate::support::TestDb) -> Vec<String> {
    let mut out = Vec::new();
    for (t, cols) in [
        ("k", "id, name, b, g"),
        ("ci", "code, v"),
        ("bag", "a, t, b"),
    ] {
        let hexed: Vec<String> = cols
            .split(", ")
            .map(|c| format!("IFNULL(HEX({c}), 'NULL')"))
            .collect();
        let rows: Vec<(String,)> = db
            .query(&format!(
                "SELECT CONCAT_WS('|', {}) FROM {t} ORDER BY {cols}",
                hexed.join(", ")
            ))
            .await;
        out.push(format!("{t}: {rows:?}"));
        let ck: Vec<(String, Option<u64>)> = db.query(&format!("CHECKSUM TABLE {t}")).await;
        out.push(format!("{t} checksum {:?}", ck[0].1));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_then_undo_restores_the_downstream_and_every_statement_is_commented() {
    let s = Scenario::empty().await;
    for db in [&s.up, &s.down] {
        db.exec(SCHEMA).await;
        db.exec(SEED).await;
    }
    s.down.exec(DRIFT).await;
    let before = dump(&s.down).await;
    let config = s.config("");
    let out = syncgate(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let summary = s.summary();
    let out_dir = s.output_dir();
    let mut fixes = Vec::new();
    for t in summary["tables"].as_array().unwrap() {
        let fix = out_dir.join(t["fix_sql"].as_str().expect("fix_sql"));
        let undo = out_dir.join(t["undo_sql"].as_str().expect("undo_sql"));
        assert!(undo.starts_with(out_dir.join("undo-on-down")), "{undo:?}");
        fixes.push((
            std::fs::read_to_string(fix).unwrap(),
            std::fs::read_to_string(undo).unwrap(),
        ));
    }
    assert_eq!(fixes.len(), 3);
    for (fix, undo) in &fixes {
        for text in [fix, undo] {
            let lines: Vec<&str> = text.lines().collect();
            for (i, l) in lines.iter().enumerate() {
                let statement = ["DELETE ", "REPLACE ", "INSERT "]
                    .iter()
                    .any(|p| l.starts_with(p));
                if statement {
                    let c = lines[i - 1];
                    assert!(c.starts_with("/* ") && c.ends_with(" */"), "{c}\n{l}");
                    // The comment cannot end early.
                    assert!(!c[3..c.len() - 3].contains("*/"), "{c}");
                }
            }
        }
    }
    let all_fix: String = fixes.iter().map(|f| f.0.as_str()).collect();
    assert!(
        all_fix.contains("/* extra row, deleted: `id` = 100001, `name` = 'gone * / DROP TABLE k; / *', `b` = X'DEAD'"),
        "{all_fix}"
    );
    assert!(
        all_fix.contains("/* missing row, inserted: `id` = 2 */"),
        "{all_fix}"
    );
    // Apply the fix: the downstream equals the upstream.
    let applied = s.apply_fix_files().await;
    assert_eq!(applied, 3);
    assert_eq!(dump(&s.down).await, dump(&s.up).await);
    // Apply the undo: the downstream is back as it was read, byte for byte.
    let mut undo_files: Vec<_> = std::fs::read_dir(out_dir.join("undo-on-down"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    undo_files.sort();
    assert_eq!(undo_files.len(), 3);
    for f in undo_files {
        s.down.exec(&std::fs::read_to_string(f).unwrap()).await;
    }
    assert_eq!(dump(&s.down).await, before);
}
