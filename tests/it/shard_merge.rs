//! Shard merge: a target compared with the union of several upstream tables — on three
//! upstream servers (`source-instances`), and on one server whose routed table names differ
//! only in letter case (sync-diff-inspector's router scenarios).

use crate::scenario::{counts, describe, summary, syncgate};
use crate::support::{fourth, second, shared, third, TestDb};

/// `[data-sources.NAME]` for a local server.
fn source(name: &str, port: u16, routes: &str) -> String {
    format!(
        "[data-sources.{name}]\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"root\"\n\
         password = \"\"\nroute-rules = [{routes}]\n\n"
    )
}

/// The rows of shard `i` of 3: ids `1..=n` with `id % 3 == i`.
fn shard_rows(i: u32, n: u32) -> String {
    let rows: Vec<String> = (1..=n)
        .filter(|id| id % 3 == i)
        .map(|id| format!("({id}, 'v{id}', {})", id * 7))
        .collect();
    format!("INSERT INTO orders VALUES {};", rows.join(","))
}

/// Customers keyed by a string: shard `i` holds the codes of `id % 3 == i`.
fn customer_rows(i: u32, n: u32) -> String {
    let rows: Vec<String> = (1..=n)
        .filter(|id| id % 3 == i)
        .map(|id| format!("('c{id:06}', 'name {id}')"))
        .collect();
    format!("INSERT INTO customers VALUES {};", rows.join(","))
}

const SCHEMA: &str = "CREATE TABLE orders (id INT PRIMARY KEY, v VARCHAR(20), n INT); \
    CREATE TABLE customers (code VARCHAR(16) PRIMARY KEY, name VARCHAR(40));";

fn table<'a>(s: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    s["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == name)
        .unwrap_or_else(|| panic!("{name} not in {s:#}"))
}

/// Three upstream databases on three servers, each holding a third of `orders` (integer
/// key) and `customers` (string key), with their routes to one downstream database.
struct Shards {
    ups: Vec<TestDb>,
    down: TestDb,
    dir: tempfile::TempDir,
}

impl Shards {
    /// `rows` orders and a third as many customers; downstream drift: a missing, an extra
    /// and a changed order (every 1000th id when `spread`), and key 8 (shard 2's) also on
    /// shard 0 with the same values.
    async fn load(rows: u32, spread: bool) -> Shards {
        let servers = [shared().await, third().await, fourth().await];
        let down = TestDb::on(second().await).await;
        let mut ups = Vec::new();
        for (i, server) in servers.into_iter().enumerate() {
            let db = TestDb::on(server).await;
            db.exec(SCHEMA).await;
            db.exec(&shard_rows(i as u32, rows)).await;
            db.exec(&customer_rows(i as u32, rows / 3)).await;
            ups.push(db);
        }
        down.exec(SCHEMA).await;
        for i in 0..3 {
            down.exec(&shard_rows(i, rows)).await;
            down.exec(&customer_rows(i, rows / 3)).await;
        }
        down.exec(
            "DELETE FROM orders WHERE id = 5; INSERT INTO orders VALUES (100001, 'x', 0); \
             UPDATE orders SET v = 'changed' WHERE id = 7; \
             DELETE FROM customers WHERE code = 'c002000'; \
             UPDATE customers SET name = 'other' WHERE code = 'c000010';",
        )
        .await;
        if spread {
            down.exec(
                "DELETE FROM orders WHERE id % 1000 = 11; \
                 UPDATE orders SET n = -n WHERE id % 1000 = 503;",
            )
            .await;
        }
        ups[0].exec("INSERT INTO orders VALUES (8, 'v8', 56)").await;
        Shards {
            ups,
            down,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn out(&self) -> std::path::PathBuf {
        self.dir.path().join("out")
    }

    /// The check's config: sources `a`, `b`, `c` routed to the downstream's database.
    fn config(&self, threads: usize, chunk_size: u64) -> String {
        let (ups, down) = (&self.ups, &self.down);
        let mut text = format!(
            "check-thread-count = {threads}\nexport-fix-sql = true\n\n{}{}{}{}",
            source("a", ups[0].port(), "\"to_a\""),
            source("b", ups[1].port(), "\"to_b\""),
            source("c", ups[2].port(), "\"to_c\""),
            source("down", down.port(), ""),
        );
        for (name, db) in ["a", "b", "c"].iter().zip(ups) {
            text.push_str(&format!(
                "[routes.to_{name}]\nschema-pattern = \"{}\"\ntarget-schema = \"{}\"\n\n",
                db.name(),
                down.name()
            ));
        }
        text.push_str(&format!(
            "[task]\noutput-dir = \"{}\"\nsource-instances = [\"a\", \"b\", \"c\"]\n\
             target-instance = \"down\"\ntarget-check-tables = [\"{}.*\"]\n\
             target-configs = [\"small\"]\n\n\
             [table-configs.small]\ntarget-tables = [\"{}.*\"]\nchunk-size = {chunk_size}\n",
            self.out().display(),
            down.name(),
            down.name()
        ));
        let path = self.dir.path().join("config.toml");
        std::fs::write(&path, &text).unwrap();
        path.to_string_lossy().into_owned()
    }
}

/// Three upstream servers, each holding a third of `orders` (integer key, split by value on
/// the downstream) and of `customers` (string key, split by walking the downstream), merged
/// into one downstream; each shard's database has its own name, routed to the target's.
/// The drift — a missing, an extra and a changed row, and a key held by two shards — is
/// reported exactly; the fix SQL makes the downstream equal to the union.
#[tokio::test]
async fn three_upstream_servers_merged_into_one_downstream() {
    let shards = Shards::load(9_000, false).await;
    let (ups, down, out) = (&shards.ups, &shards.down, shards.out());
    let cfg = &shards.config(3, 1000);

    let run = syncgate(&["check", "-C", cfg]);
    assert_eq!(run.status.code(), Some(1), "{}", describe(&run));
    let s = summary(&out);
    assert_eq!(s["upstream"].as_array().unwrap().len(), 3, "{s:#}");
    let orders = table(&s, "orders");
    assert_eq!(counts(&s, "orders"), (1, 1, 1), "{orders:#}");
    assert_eq!(orders["rows_upstream"], 9_001, "{orders:#}");
    assert_eq!(orders["rows_downstream"], 9_000, "{orders:#}");
    assert_eq!(orders["overlapping_keys"], 1, "{orders:#}");
    let overlap = orders["overlaps"][0].as_str().unwrap();
    assert!(
        overlap.starts_with("key (8) in ") && overlap.contains("(a)") && overlap.contains("(c)"),
        "{overlap}"
    );
    assert!(orders["chunks"].as_u64().unwrap() >= 5, "{orders:#}");
    for part in ["a:", "b:", "c:"] {
        assert!(
            orders["upstream_table"].as_str().unwrap().contains(part),
            "{orders:#}"
        );
    }
    let text = std::fs::read_to_string(out.join("summary.txt")).unwrap();
    assert!(
        text.contains("Keys held by several upstream tables") && text.contains(overlap),
        "{text}"
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("1 key(s) held by several upstream tables"),
        "{stdout}"
    );
    assert_eq!(counts(&s, "customers"), (1, 0, 1), "{s:#}");
    assert_eq!(table(&s, "customers")["overlapping_keys"], 0);

    // The fix SQL targets the downstream; with the overlap removed upstream, the
    // downstream then equals the union.
    crate::scenario::apply_fix_dir(down, &out).await;
    ups[0].exec("DELETE FROM orders WHERE id = 8").await;
    let again = syncgate(&["check", "-C", cfg]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let s = summary(&out);
    assert_eq!(table(&s, "orders")["rows_upstream"], 9_000);
    assert_eq!(table(&s, "orders")["result"], "equal");
}

/// A differing chunk far larger than the rows merged directly is narrowed by checksums
/// of key ranges over the downstream and all three shards before rows are streamed: the
/// counts and the overlap are the same as with small chunks, and the fix makes the
/// downstream equal to the union.
#[tokio::test]
async fn large_differing_chunks_of_a_merged_target_are_narrowed_exactly() {
    let shards = Shards::load(30_000, false).await;
    let (ups, down, out) = (&shards.ups, &shards.down, shards.out());
    // Inside a chunk with both bounds (the first and last chunks are open-ended).
    down.exec("UPDATE orders SET n = -n WHERE id IN (15001, 15002, 19999)")
        .await;
    let cfg = &shards.config(2, 10_000);

    let run = syncgate(&["check", "-C", cfg]);
    assert_eq!(run.status.code(), Some(1), "{}", describe(&run));
    let s = summary(&out);
    let orders = table(&s, "orders");
    assert_eq!(counts(&s, "orders"), (1, 1, 4), "{orders:#}");
    assert_eq!(orders["overlapping_keys"], 1, "{orders:#}");
    assert_eq!(orders["rows_upstream"], 30_001, "{orders:#}");

    crate::scenario::apply_fix_dir(down, &out).await;
    ups[0].exec("DELETE FROM orders WHERE id = 8").await;
    let again = syncgate(&["check", "-C", cfg]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
}

/// sync-diff-inspector's router scenarios (its `shard` integration test, rules 1 to 5) on
/// seven upstream tables whose names differ only in letter case, against a downstream that
/// holds one target `<p>_1.tbl` (as TiDB, whose names are case-insensitive): each rule set
/// merges exactly the upstream tables sync-diff-inspector reads into the target, with and
/// without `skip-non-existing-table`.
#[tokio::test]
async fn router_scenarios_read_the_tables_sync_diff_inspector_reads() {
    let up_server = shared().await;
    let n = std::process::id() % 100_000;
    let (p, cap) = (format!("sg_router{n}"), format!("sg_Router{n}"));
    // (schema, table, id): one row each.
    let tables = [
        (format!("{p}_0"), "tbl", 1),
        (format!("{cap}_0"), "tbl", 2),
        (format!("{p}_0"), "Tbl", 3),
        (format!("{p}_1"), "tbl", 4),
        (format!("{cap}_1"), "tbl", 5),
        (format!("{p}_1"), "Tbl", 6),
        (format!("{cap}_1"), "Tbl", 7),
    ];
    let mut dbs = std::collections::BTreeMap::new();
    for (schema, table, id) in &tables {
        if !dbs.contains_key(schema) {
            dbs.insert(
                schema.clone(),
                TestDb::create(up_server, schema.clone()).await,
            );
        }
        dbs[schema]
            .exec(&format!(
                "CREATE TABLE `{table}` (id INT PRIMARY KEY, name VARCHAR(25), deptId INT); \
                 INSERT INTO `{table}` VALUES ({id}, 'hello{id}', {id})"
            ))
            .await;
    }
    let down = TestDb::create(second().await, format!("{p}_1")).await;
    let all: Vec<String> = (1..=7).map(|i| format!("({i}, 'hello{i}', {i})")).collect();
    down.exec(&format!(
        "CREATE TABLE tbl (id INT PRIMARY KEY, name VARCHAR(25), deptId INT); \
         INSERT INTO tbl VALUES {}",
        all.join(",")
    ))
    .await;
    let rule = |schema: &str, table: Option<&str>, ts: &str, tt: Option<&str>| {
        let mut r = format!("[routes.rule1]\nschema-pattern = \"{schema}\"\n");
        if let Some(t) = table {
            r.push_str(&format!("table-pattern = \"{t}\"\n"));
        }
        r.push_str(&format!("target-schema = \"{ts}\"\n"));
        if let Some(t) = tt {
            r.push_str(&format!("target-table = \"{t}\"\n"));
        }
        r
    };
    let (p0, p1, pq) = (format!("{p}_0"), format!("{p}_1"), format!("{p}_?"));
    // (rules, the ids of the upstream tables sync-diff-inspector reads for the target)
    let scenarios: [(Option<String>, Vec<u32>); 5] = [
        (
            Some(rule(&p0, Some("tbl"), &p1, Some("tbl"))),
            vec![1, 2, 3],
        ),
        (Some(rule(&p0, None, &p1, None)), vec![1, 2]),
        (
            Some(rule(
                "other_schema",
                Some("tbl"),
                "other_schema",
                Some("tbl"),
            )),
            vec![4, 5, 6, 7],
        ),
        (None, vec![4, 5, 6, 7]),
        (
            Some(rule(&pq, Some("tbl"), &p1, Some("tbl"))),
            vec![1, 2, 3, 4, 5, 6, 7],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (rules, read)) in scenarios.iter().enumerate() {
        for skip in [false, true] {
            let out = dir.path().join(format!("out-{i}-{skip}"));
            let routes = if rules.is_some() { "\"rule1\"" } else { "" };
            let text = format!(
                "skip-non-existing-table = {skip}\n\n{}{}{}\n\
                 [task]\noutput-dir = \"{}\"\nsource-instances = [\"up\"]\n\
                 target-instance = \"down\"\ntarget-check-tables = [\"{p1}.tbl\"]\n",
                source("up", up_server.port(), routes),
                source("down", down.port(), ""),
                rules.as_deref().unwrap_or(""),
                out.display(),
            );
            let config = dir.path().join(format!("config-{i}-{skip}.toml"));
            std::fs::write(&config, &text).unwrap();
            let run = syncgate(&["check", "-C", config.to_str().unwrap()]);
            let what = format!("rule {}, skip {skip}: {}", i + 1, describe(&run));
            // Rule 2 keeps each table's name: `<p>_0.Tbl` goes to `<p>_1.Tbl`, which the
            // downstream lacks; without the flag that stops the check.
            if i == 1 && !skip {
                assert_eq!(run.status.code(), Some(2), "{what}");
                let stderr = String::from_utf8_lossy(&run.stderr);
                assert!(stderr.contains(&format!("{p1}.Tbl")), "{what}");
                continue;
            }
            let equal = read.len() == 7;
            assert_eq!(run.status.code(), Some(if equal { 0 } else { 1 }), "{what}");
            let s = summary(&out);
            let t = s["tables"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["table"] == "tbl")
                .unwrap_or_else(|| panic!("{what}\n{s:#}"));
            let mut got: Vec<&str> = t["upstream_table"].as_str().unwrap().split(", ").collect();
            got.sort();
            let mut want: Vec<String> = read
                .iter()
                .map(|id| {
                    let (schema, table, _) = &tables[*id as usize - 1];
                    format!("{schema}.{table}")
                })
                .collect();
            want.sort();
            assert_eq!(got, want, "{what}");
            assert_eq!(t["rows_upstream"], read.len(), "{what}");
            assert_eq!(counts(&s, "tbl"), (0, 7 - read.len() as u64, 0), "{what}");
            if i == 1 {
                let lone = s["tables"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|t| t["table"] == "Tbl")
                    .unwrap_or_else(|| panic!("{what}\n{s:#}"));
                assert_eq!(lone["result"], "skipped", "{what}");
                assert_eq!(lone["rows_missing"], 1, "{what}");
            }
        }
    }
}

/// A merged check killed with SIGKILL midway and resumed with `--resume` ends with exactly
/// an uninterrupted run's results, overlap count and fix SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_check_killed_and_resumed_equals_an_uninterrupted_run() {
    use crate::resume::{fix_sql, killed_after_partial_progress, reference_run, results};
    let shards = Shards::load(30_000, true).await;
    let cfg = shards.config(4, 100);
    let (reference, took) = reference_run(shards.dir.path(), &cfg);
    let _ = killed_after_partial_progress(&cfg, &shards.out(), took);
    let out = syncgate(&["check", "-C", &cfg, "--resume"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let (resumed, want) = (summary(&shards.out()), summary(&reference));
    assert_eq!(results(&resumed), results(&want));
    assert_eq!(fix_sql(&shards.out()), fix_sql(&reference));
    assert_eq!(table(&resumed, "orders")["overlapping_keys"], 1);
    assert_eq!(counts(&want, "orders"), (31, 1, 31), "{want:#}");
}
