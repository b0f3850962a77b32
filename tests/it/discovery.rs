//! Discovery of many tables of one schema (four queries for the whole schema) gives exactly
//! the structures that per-table discovery gives, for every kind of column, index, foreign
//! key and versioning, and row estimates for each table.

use crate::support::TestDb;
use syncgate::db::Source;
use syncgate::schema::{discover_table, discover_tables, TableRef};

/// More tables than the per-schema threshold, each of another shape (`t_versioned` is
/// created `WITH SYSTEM VERSIONING`).
const TABLES: [(&str, &str); 12] = [
    ("t_int", "id INT PRIMARY KEY, v VARCHAR(10)"),
    (
        "t_comp",
        "a VARCHAR(20), b INT UNSIGNED, c DECIMAL(10,2) DEFAULT 1.5, PRIMARY KEY (a, b), \
         KEY by_c (c, a)",
    ),
    (
        "t_gen",
        "id INT PRIMARY KEY, a INT, g INT AS (a * 2) VIRTUAL, h INT AS (a + 1) STORED",
    ),
    (
        "t_uniq",
        "id BIGINT NOT NULL, u CHAR(8) CHARACTER SET latin1, UNIQUE KEY uk (u, id)",
    ),
    ("t_nokey", "a INT, b TEXT"),
    (
        "t_parent",
        "p1 INT, p2 INT, label VARCHAR(5) COLLATE utf8mb4_bin, PRIMARY KEY (p1, p2)",
    ),
    (
        "t_child",
        "id INT PRIMARY KEY, p1 INT, p2 INT, KEY fk_idx (p1, p2), \
         CONSTRAINT fk_two FOREIGN KEY (p1, p2) REFERENCES t_parent (p1, p2) \
         ON DELETE CASCADE ON UPDATE SET NULL",
    ),
    (
        "t_child2",
        "id INT PRIMARY KEY, p1 INT, p2 INT, q INT, \
         CONSTRAINT fk_a FOREIGN KEY (p1, p2) REFERENCES t_parent (p1, p2), \
         CONSTRAINT fk_b FOREIGN KEY (q) REFERENCES t_int (id)",
    ),
    ("t_versioned", "id INT PRIMARY KEY, v INT"),
    (
        "t_invisible",
        "id INT PRIMARY KEY, secret INT INVISIBLE, e ENUM('x','y') NOT NULL",
    ),
    ("t_time", "ts DATETIME(6) PRIMARY KEY, d DATE, j JSON"),
    ("t_Mixed", "ID INT PRIMARY KEY, Val BLOB"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_schema_discovery_equals_per_table_discovery() {
    let db = TestDb::new().await;
    for (name, cols) in TABLES {
        let versioning = if name == "t_versioned" {
            " WITH SYSTEM VERSIONING"
        } else {
            ""
        };
        db.exec(&format!("CREATE TABLE {name} ({cols}){versioning}"))
            .await;
    }
    db.exec("INSERT INTO t_int VALUES (1, 'a'), (2, 'b'), (3, 'c'); ANALYZE TABLE t_int")
        .await;
    let source = Source::open(db.source_spec(syncgate::snapshot::Snapshot::Live))
        .await
        .unwrap();
    let mut conn = source.connect().await.unwrap();
    let mut refs: Vec<TableRef> = TABLES
        .iter()
        .map(|(t, _)| TableRef::new(db.name(), *t))
        .collect();
    // A table that does not exist is left out, not an error.
    refs.push(TableRef::new(db.name(), "t_absent"));
    let batch = discover_tables(&mut conn, &refs).await.unwrap();
    assert_eq!(batch.len(), TABLES.len(), "{:?}", batch.keys());
    for t in &refs[..TABLES.len()] {
        let single = discover_table(&mut conn, t).await.unwrap().unwrap();
        let found = &batch[t];
        assert_eq!(found.schema, single, "{t}");
        assert!(found.rows_estimate.is_some(), "{t}: no row estimate");
    }
    let int = &batch[&refs[0]];
    assert_eq!(int.rows_estimate, Some(3));
    // The shapes really are what the comparison needs (not two equal empty results).
    let child2 = &batch[&TableRef::new(db.name(), "t_child2")].schema;
    let fks: Vec<(&str, usize)> = child2
        .foreign_keys
        .iter()
        .map(|f| (f.name.as_str(), f.columns.len()))
        .collect();
    assert_eq!(fks, [("fk_a", 2), ("fk_b", 1)]);
    let versioned = &batch[&TableRef::new(db.name(), "t_versioned")].schema;
    assert!(versioned.system_versioned);
    assert_eq!(versioned.columns.len(), 2);
    let comp = &batch[&TableRef::new(db.name(), "t_comp")].schema;
    assert_eq!(comp.indexes[0].columns, ["a", "b"]);
    assert!(comp.indexes[0].primary);
    conn.close().await;
}
