//! Sysbench-shaped tables: `sbtest.sbtestN (id INT PK, k INT, c CHAR(120), pad CHAR(60),
//! KEY k_1 (k))` with deterministic rows ([`sbtest_rows`]), their DDL ([`sbtest_ddl`]) and
//! loading them into servers ([`seed_sbtest`]).

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};

use crate::local::{self, LocalError, Result};

/// The database the generated tables live in.
pub const DATABASE: &str = "sbtest";
/// Rows per multi-row INSERT statement.
const BATCH_ROWS: u64 = 1000;

/// splitmix64: a tiny, fast, seedable PRNG (deterministic across platforms and versions).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)` (`n > 0`; the modulo bias is negligible for our ranges).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// The generator seed of one table (`table` is 1-based).
pub(super) fn table_seed(seed: u64, table: u32) -> u64 {
    SplitMix64::new(seed ^ (u64::from(table)).wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

/// One sysbench row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbRow {
    pub id: i64,
    pub k: i64,
    pub c: String,
    pub pad: String,
}

/// `groups` groups of 11 random digits joined by '-' (sysbench's `c` has 10, `pad` 5).
pub(super) fn digit_groups(rng: &mut SplitMix64, groups: usize, out: &mut String) {
    use std::fmt::Write;
    for g in 0..groups {
        if g > 0 {
            out.push('-');
        }
        let _ = write!(out, "{:011}", rng.below(100_000_000_000));
    }
}

/// Generate the next row (id `id`) of a table of `rows` rows.
pub(super) fn next_row(rng: &mut SplitMix64, id: i64, rows: u64) -> SbRow {
    let k = 1 + rng.below(rows.max(1)) as i64;
    let mut c = String::with_capacity(119);
    digit_groups(rng, 10, &mut c);
    let mut pad = String::with_capacity(59);
    digit_groups(rng, 5, &mut pad);
    SbRow { id, k, c, pad }
}

/// The rows of table `sbtest<table>` (1-based) for `seed`: ids `1..=rows`, the same on every
/// call.
pub fn sbtest_rows(seed: u64, table: u32, rows: u64) -> impl Iterator<Item = SbRow> {
    let mut rng = SplitMix64::new(table_seed(seed, table));
    (1..=rows).map(move |id| next_row(&mut rng, id as i64, rows))
}

/// `CREATE TABLE` of `sbtest<n>` (with `KEY k_1`).
pub fn sbtest_ddl(table: u32) -> String {
    format!(
        "CREATE TABLE `sbtest{table}` (\n  \
         id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,\n  \
         k INT NOT NULL DEFAULT 0,\n  \
         c CHAR(120) NOT NULL DEFAULT '',\n  \
         pad CHAR(60) NOT NULL DEFAULT '',\n  \
         KEY k_1 (k)\n) ENGINE=InnoDB"
    )
}

/// Append `(id,k,'c','pad')` to a VALUES list. Generated strings are digits and dashes only.
pub(super) fn push_values(sql: &mut String, row: &SbRow) {
    use std::fmt::Write;
    let _ = write!(sql, "({},{},'{}','{}')", row.id, row.k, row.c, row.pad);
}

/// Create `sbtest` (if needed) and (re)create `sbtest1..=tables` with `rows` identical rows on
/// every target. Tables and targets load concurrently, one connection each, with multi-row
/// INSERTs of 1000 rows in one transaction per table, `unique_checks` and `foreign_key_checks`
/// off. Binlogs stay on, so a replica of the server would receive the same rows.
pub async fn seed_sbtest(targets: &[Opts], tables: u32, rows: u64, seed: u64) -> Result<()> {
    for opts in targets {
        let mut conn = local::connect_to(opts).await?;
        let sql = format!(
            "CREATE DATABASE IF NOT EXISTS `{DATABASE}` \
             CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        );
        conn.query_drop(&sql)
            .await
            .map_err(LocalError::query(&local::addr(opts), &sql))?;
        let _ = conn.disconnect().await;
    }
    let mut set = tokio::task::JoinSet::new();
    for opts in targets {
        for table in 1..=tables {
            set.spawn(load_table(opts.clone(), table, rows, seed));
        }
    }
    let mut first_err = None;
    let (total, mut done) = (set.len(), 0);
    let started = std::time::Instant::now();
    while let Some(res) = set.join_next().await {
        let res = res.map_err(LocalError::task("load")).and_then(|r| r);
        if res.is_ok() {
            // Seeding millions of rows takes minutes: say how far it is.
            done += 1;
            tracing::info!(
                "seeding: {done}/{total} tables of {rows} rows loaded ({:.0?})",
                started.elapsed()
            );
        }
        if let Err(e) = res {
            if first_err.is_none() {
                first_err = Some(e);
                set.abort_all();
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

async fn load_table(opts: Opts, table: u32, rows: u64, seed: u64) -> Result<()> {
    let where_ = local::addr(&opts);
    let mut conn = local::connect_to(&opts).await?;
    let name = format!("sbtest{table}");
    let run = |sql: &str| LocalError::query(&where_, sql);
    let ddl = sbtest_ddl(table);
    let setup = format!(
        "SET SESSION unique_checks = 0, foreign_key_checks = 0; \
         USE `{DATABASE}`; DROP TABLE IF EXISTS `{name}`; {ddl}"
    );
    conn.query_drop(&setup).await.map_err(run(&setup))?;
    conn.query_drop("START TRANSACTION")
        .await
        .map_err(run("START TRANSACTION"))?;
    let mut gen = sbtest_rows(seed, table, rows);
    let prefix = format!("INSERT INTO `{name}` (id, k, c, pad) VALUES ");
    let mut loaded = 0u64;
    while loaded < rows {
        let n = BATCH_ROWS.min(rows - loaded);
        let mut sql = String::with_capacity(prefix.len() + n as usize * 200);
        sql.push_str(&prefix);
        for i in 0..n {
            if i > 0 {
                sql.push(',');
            }
            push_values(&mut sql, &gen.next().expect("generator yields `rows` rows"));
        }
        conn.query_drop(&sql).await.map_err(run(&sql))?;
        loaded += n;
    }
    conn.query_drop("COMMIT").await.map_err(run("COMMIT"))?;
    let _ = conn.disconnect().await;
    tracing::debug!("{where_}: loaded {DATABASE}.{name} ({rows} rows)");
    Ok(())
}

/// Base tables of `sbtest` on `conn` (to `addr`), ordered by their numeric suffix (`sbtest2`
/// before `sbtest10`).
pub async fn sbtest_tables(conn: &mut Conn, addr: &str) -> Result<Vec<String>> {
    let sql = "SELECT table_name FROM information_schema.tables \
               WHERE table_schema = ? AND table_type = 'BASE TABLE'";
    let mut names: Vec<String> = conn
        .exec(sql, (DATABASE,))
        .await
        .map_err(LocalError::query(addr, sql))?;
    names.sort_by_key(|n| table_sort_key(n));
    Ok(names)
}

fn table_sort_key(name: &str) -> (String, u64, String) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, num) = name.split_at(name.len() - digits);
    (stem.to_string(), num.parse().unwrap_or(0), name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_stable() {
        // Reference values of splitmix64 seeded with 0.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let mut r = SplitMix64::new(42);
        for _ in 0..1000 {
            assert!(r.below(7) < 7);
        }
    }

    #[test]
    fn rows_are_deterministic_and_sysbench_shaped() {
        let a: Vec<SbRow> = sbtest_rows(7, 1, 50).collect();
        let b: Vec<SbRow> = sbtest_rows(7, 1, 50).collect();
        assert_eq!(a, b);
        let other_table: Vec<SbRow> = sbtest_rows(7, 2, 50).collect();
        assert_ne!(a, other_table);
        let other_seed: Vec<SbRow> = sbtest_rows(8, 1, 50).collect();
        assert_ne!(a, other_seed);
        for (i, r) in a.iter().enumerate() {
            assert_eq!(r.id, i as i64 + 1);
            assert!((1..=50).contains(&r.k));
            assert_eq!(r.c.len(), 119);
            assert_eq!(r.pad.len(), 59);
            let groups: Vec<&str> = r.c.split('-').collect();
            assert_eq!(groups.len(), 10);
            assert!(groups
                .iter()
                .all(|g| g.len() == 11 && g.bytes().all(|b| b.is_ascii_digit())));
            assert_eq!(r.pad.split('-').count(), 5);
        }
    }

    #[test]
    fn values_are_rendered_as_sql() {
        let row = SbRow {
            id: 3,
            k: 9,
            c: "1-2".into(),
            pad: "3".into(),
        };
        let mut s = String::new();
        push_values(&mut s, &row);
        assert_eq!(s, "(3,9,'1-2','3')");
    }

    #[test]
    fn ddl_matches_sysbench() {
        let ddl = sbtest_ddl(3);
        assert!(ddl.starts_with("CREATE TABLE `sbtest3`"));
        for part in [
            "id INT NOT NULL AUTO_INCREMENT PRIMARY KEY",
            "k INT NOT NULL DEFAULT 0",
            "c CHAR(120) NOT NULL DEFAULT ''",
            "pad CHAR(60) NOT NULL DEFAULT ''",
            "KEY k_1 (k)",
        ] {
            assert!(ddl.contains(part), "{part}");
        }
    }

    #[test]
    fn tables_sort_numerically() {
        let mut v = vec!["sbtest10", "sbtest2", "sbtest1", "other"];
        v.sort_by_key(|n| table_sort_key(n));
        assert_eq!(v, vec!["other", "sbtest1", "sbtest2", "sbtest10"]);
    }
}
