//! Every column type end to end against two real MariaDB servers: for each type,
//!
//! - (a) equal data is reported equal (exit 0);
//! - (b) a change of one value of that type on the downstream is found as one changed row
//!   (each drift statement changes one value in its own row, so the changed-row count equals
//!   the number of drift statements exactly when every change was found);
//! - (c) the fix SQL files, applied as a user would, make the check pass and leave the
//!   downstream holding exactly the upstream's bytes (compared through an exact select
//!   list: FLOAT widened to DOUBLE, everything else as the server sends it).
//!
//! The comparison rules these tests pin down are written up in docs/comparison-rules.md.

mod numeric;
mod strings;
mod temporal;

use crate::scenario::{counts, describe, syncgate, Scenario};
use crate::support::TestDb;
use mysql_async::prelude::Queryable;

/// A row of text-protocol values (`None` = NULL).
pub type Dump = Vec<Vec<Option<Vec<u8>>>>;

/// The rows of `sql` on `db`, read in UTC.
pub async fn dump(db: &TestDb, sql: &str) -> Dump {
    let mut conn = db.conn().await;
    conn.query_drop("SET time_zone = '+00:00'").await.unwrap();
    let rows: Vec<mysql_async::Row> = conn
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{e}\n  sql: {sql}"));
    let _ = conn.disconnect().await;
    rows.into_iter()
        .map(|r| {
            r.unwrap()
                .into_iter()
                .map(|v| match v {
                    mysql_async::Value::NULL => None,
                    mysql_async::Value::Bytes(b) => Some(b),
                    other => Some(other.as_sql(true).into_bytes()),
                })
                .collect()
        })
        .collect()
}

/// One table of one type family.
pub struct Case {
    pub table: &'static str,
    /// `CREATE TABLE …` (and anything else both sides need).
    pub ddl: String,
    /// Statements filling the table, run on both sides in UTC.
    pub seed: String,
    /// Statements run on the downstream only, each changing one value in its own row.
    pub drift: Vec<String>,
    /// A query returning the table's exact contents, ordered.
    pub dump: String,
}

/// Run `syncgate check` on the scenario's config and return its exit code.
pub fn check(cfg: &std::path::Path) -> (Option<i32>, String) {
    let out = syncgate(&["check", "-C", cfg.to_str().unwrap()]);
    (out.status.code(), describe(&out))
}

/// (a), (b) and (c) of the module docs for every case, in one database pair. `extra` is
/// added to the config (TOML).
pub async fn run_cases(cases: &[Case], extra: &str) {
    let s = Scenario::empty().await;
    for db in [&s.up, &s.down] {
        for c in cases {
            db.exec(&format!("SET time_zone = '+00:00'; {}; {}", c.ddl, c.seed))
                .await;
        }
    }
    let cfg = s.config(extra);
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(0), "equal data must be equal\n{out}");
    let summary = s.summary();
    assert_eq!(
        summary["tables"].as_array().unwrap().len(),
        cases.len(),
        "{summary:#}"
    );

    for c in cases {
        for d in &c.drift {
            s.down.exec(&format!("SET time_zone = '+00:00'; {d}")).await;
        }
    }
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(1), "{out}");
    let summary = s.summary();
    for c in cases {
        assert_eq!(
            counts(&summary, c.table),
            (0, 0, c.drift.len() as u64),
            "{}: (missing, extra, changed); drift {:?}\n{summary:#}",
            c.table,
            c.drift
        );
    }

    s.apply_fix_files().await;
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(0), "after the fix SQL\n{out}");
    for c in cases {
        assert_eq!(
            dump(&s.up, &c.dump).await,
            dump(&s.down, &c.dump).await,
            "{}: downstream bytes after the fix",
            c.table
        );
    }
}

fn case(table: &'static str, ddl: &str, seed: &str, drift: &[&str], dump: &str) -> Case {
    Case {
        table,
        ddl: ddl.to_string(),
        seed: seed.to_string(),
        drift: drift.iter().map(|d| d.to_string()).collect(),
        dump: dump.to_string(),
    }
}
