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

/// Three upstream servers, each holding a third of `orders` (integer key, split by value on
/// the downstream) and of `customers` (string key, split by walking the downstream), merged
/// into one downstream; each shard's database has its own name, routed to the target's.
/// The drift — a missing, an extra and a changed row, and a key held by two shards — is
/// reported exactly; the fix SQL makes the downstream equal to the union.
#[tokio::test]
async fn three_upstream_servers_merged_into_one_downstream() {
    let servers = [shared().await, third().await, fourth().await];
    let down = TestDb::on(second().await).await;
    let mut ups = Vec::new();
    for (i, server) in servers.into_iter().enumerate() {
        let db = TestDb::on(server).await;
        db.exec(SCHEMA).await;
        db.exec(&shard_rows(i as u32, 9_000)).await;
        db.exec(&customer_rows(i as u32, 3_000)).await;
        ups.push(db);
    }
    down.exec(SCHEMA).await;
    for i in 0..3 {
        down.exec(&shard_rows(i, 9_000)).await;
        down.exec(&customer_rows(i, 3_000)).await;
    }
    // Drift: missing, extra, changed; and key 8 (shard 2's) also on shard 0, same values.
    down.exec(
        "DELETE FROM orders WHERE id = 5; INSERT INTO orders VALUES (100001, 'x', 0); \
         UPDATE orders SET v = 'changed' WHERE id = 7; \
         DELETE FROM customers WHERE code = 'c002000'; \
         UPDATE customers SET name = 'other' WHERE code = 'c000010';",
    )
    .await;
    ups[0].exec("INSERT INTO orders VALUES (8, 'v8', 56)").await;

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut text = format!(
        "check-thread-count = 3\nexport-fix-sql = true\n\n{}{}{}{}",
        source("a", ups[0].port(), "\"to_a\""),
        source("b", ups[1].port(), "\"to_b\""),
        source("c", ups[2].port(), "\"to_c\""),
        source("down", down.port(), ""),
    );
    for (name, db) in ["a", "b", "c"].iter().zip(&ups) {
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
         [table-configs.small]\ntarget-tables = [\"{}.*\"]\nchunk-size = 1000\n",
        out.display(),
        down.name(),
        down.name()
    ));
    let config = dir.path().join("config.toml");
    std::fs::write(&config, &text).unwrap();
    let cfg = config.to_str().unwrap();

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
    assert_eq!(counts(&s, "customers"), (1, 0, 1), "{s:#}");
    assert_eq!(table(&s, "customers")["overlapping_keys"], 0);

    // The fix SQL targets the downstream; with the overlap removed upstream, the
    // downstream then equals the union.
    crate::scenario::apply_fix_dir(&down, &out).await;
    ups[0].exec("DELETE FROM orders WHERE id = 8").await;
    let again = syncgate(&["check", "-C", cfg]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let s = summary(&out);
    assert_eq!(table(&s, "orders")["rows_upstream"], 9_000);
    assert_eq!(table(&s, "orders")["result"], "equal");
}

/// sync-diff-inspector's router scenario: on one server, `Sg_Rt.tbl` and `sg_rt.Tbl`
/// (names that differ only in letter case) are matched by one case-insensitive rule and are
/// two upstream tables of the one target `sg_rt.tbl`, with and without
/// `skip-non-existing-table`. A table only upstream under that flag is skipped with its rows
/// counted missing.
#[tokio::test]
async fn routes_match_case_insensitively_and_merge() {
    let up_server = shared().await;
    let down = TestDb::on(second().await).await;
    let n = std::process::id() % 100_000;
    let (upper, lower) = (format!("sg_Rt{n}"), format!("sg_rt{n}"));
    let a = TestDb::create(up_server, upper.clone()).await;
    let b = TestDb::create(up_server, lower.clone()).await;
    a.exec("CREATE TABLE tbl (id INT PRIMARY KEY, v INT)").await;
    b.exec("CREATE TABLE Tbl (id INT PRIMARY KEY, v INT); CREATE TABLE only_up (id INT)")
        .await;
    b.exec("INSERT INTO only_up VALUES (1), (2)").await;
    let rows = |r: std::ops::RangeInclusive<u32>| {
        r.map(|i| format!("({i}, {i})"))
            .collect::<Vec<_>>()
            .join(",")
    };
    a.exec(&format!("INSERT INTO tbl VALUES {}", rows(1..=100))).await;
    b.exec(&format!("INSERT INTO Tbl VALUES {}", rows(101..=200)))
        .await;
    down.exec(&format!(
        "CREATE TABLE tbl (id INT PRIMARY KEY, v INT); INSERT INTO tbl VALUES {}; \
         DELETE FROM tbl WHERE id = 150;",
        rows(1..=200)
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    for skip in [false, true] {
        let out = dir.path().join(format!("out-{skip}"));
        let text = format!(
            "skip-non-existing-table = {skip}\n\n{}{}\
             [routes.rule1]\nschema-pattern = \"{lower}\"\ntarget-schema = \"{}\"\n\n\
             [task]\noutput-dir = \"{}\"\nsource-instances = [\"up\"]\n\
             target-instance = \"down\"\ntarget-check-tables = [\"{}.*\"]\n",
            source("up", a.port(), "\"rule1\""),
            source("down", down.port(), ""),
            down.name(),
            out.display(),
            down.name(),
        );
        let config = dir.path().join(format!("config-{skip}.toml"));
        std::fs::write(&config, &text).unwrap();
        let run = syncgate(&["check", "-C", config.to_str().unwrap()]);
        if !skip {
            // only_up has no downstream table: without the flag that stops the check.
            assert_eq!(run.status.code(), Some(2), "{}", describe(&run));
            assert!(
                String::from_utf8_lossy(&run.stderr).contains("only_up"),
                "{}",
                describe(&run)
            );
            continue;
        }
        assert_eq!(run.status.code(), Some(1), "{}", describe(&run));
        let s = summary(&out);
        let tables = s["tables"].as_array().unwrap();
        assert_eq!(tables.len(), 2, "{s:#}");
        let t = table(&s, "tbl");
        assert_eq!(counts(&s, "tbl"), (1, 0, 0), "{t:#}");
        assert_eq!(t["rows_upstream"], 200, "{t:#}");
        let names = t["upstream_table"].as_str().unwrap();
        assert!(
            names.contains(&format!("{upper}.tbl")) && names.contains(&format!("{lower}.Tbl")),
            "{names}"
        );
        let only = table(&s, "only_up");
        assert_eq!(only["result"], "skipped", "{only:#}");
        assert_eq!(only["rows_missing"], 2, "{only:#}");
    }
}
