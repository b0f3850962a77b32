//! Server cost of syncgate's chunk checksum versus the classic
//! `COUNT(*), BIT_XOR(CRC32(CONCAT_WS(',', cols)))`, on one sysbench-shaped table.
//!
//! Run: `cargo bench --bench checksum_cost` (env `SG_BENCH_ROWS`, default 1000000;
//! `SG_BENCH_RUNS`, default 7). Starts its own MariaDB server; prints medians and the ratio.
//! `SG_BENCH_VARIANTS` may hold further `;`-separated SELECTs on `bench.sbtest1` to time
//! alongside (used to profile the parts of the expression).

use std::time::{Duration, Instant};
use syncgate::checksum::{checksum_sql, Aggregate};
use syncgate::db::{Conn, Source, SourceSpec};
use syncgate::local::{LocalServer, ServerOptions};
use syncgate::schema::{discover_table, TableRef};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// One `mariadbd` with a buffer pool large enough for the table, and a syncgate source on it.
async fn start_server() -> Res<(LocalServer, Source)> {
    let server = LocalServer::start(ServerOptions {
        extra_args: vec!["--innodb-buffer-pool-size=1G".into()],
        ..ServerOptions::default()
    })
    .await?;
    let source = Source::open(SourceSpec {
        name: "bench".into(),
        host: "127.0.0.1".into(),
        port: server.port(),
        user: "root".into(),
        password: String::new(),
        session: vec![],
        snapshot: syncgate::snapshot::Snapshot::Live,
        tls: None,
        force_index: false,
        sql_mode: None,
    })
    .await?;
    Ok((server, source))
}

/// Create `bench.sbtest1` and fill it with `rows` deterministic sysbench rows; leaves `bench`
/// as the connection's default database.
async fn seed(conn: &mut Conn, rows: u64) -> Res<()> {
    let t = Instant::now();
    conn.exec("CREATE DATABASE bench").await?;
    conn.exec(
        "CREATE TABLE bench.sbtest1 (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
         k INT NOT NULL DEFAULT 0, c CHAR(120) NOT NULL DEFAULT '', \
         pad CHAR(60) NOT NULL DEFAULT '', KEY k_1(k))",
    )
    .await?;
    conn.exec("USE bench").await?;
    let groups = |n: usize| {
        (0..n)
            .map(|i| format!("LPAD(FLOOR(RAND(seq * {}) * 1e11), 11, '0')", i + 7))
            .collect::<Vec<_>>()
            .join(", ")
    };
    conn.exec(&format!(
        "INSERT INTO sbtest1 (id, k, c, pad) SELECT seq, FLOOR(RAND(seq) * {rows}), \
         CONCAT_WS('-', {}), CONCAT_WS('-', {}) FROM seq_1_to_{rows}",
        groups(10),
        groups(5)
    ))
    .await?;
    eprintln!("seeded {rows} rows in {:.1}s", t.elapsed().as_secs_f64());
    Ok(())
}

/// Each query's time for every run, the queries interleaved within a run.
async fn time_interleaved(
    conn: &mut Conn,
    queries: &[String],
    runs: usize,
) -> Res<Vec<Vec<Duration>>> {
    let mut times = vec![Vec::new(); queries.len()];
    for _ in 0..runs {
        for (q, t) in queries.iter().zip(&mut times) {
            let start = Instant::now();
            conn.rows(q).await?;
            t.push(start.elapsed());
        }
    }
    Ok(times)
}

/// The further SELECTs of `SG_BENCH_VARIANTS`.
fn variants_from_env() -> Vec<String> {
    std::env::var("SG_BENCH_VARIANTS")
        .unwrap_or_default()
        .split(';')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

fn print_results(rows: u64, runs: usize, classic: Duration, ours: Duration, ours_sql: &str) {
    println!("rows: {rows}, runs: {runs} (median)");
    println!(
        "classic  COUNT + BIT_XOR(CRC32(CONCAT_WS)) : {:.3}s",
        classic.as_secs_f64()
    );
    println!(
        "syncgate {}: {:.3}s",
        syncgate::checksum::CHECKSUM_VERSION,
        ours.as_secs_f64()
    );
    println!(
        "ratio syncgate/classic: {:.2}",
        ours.as_secs_f64() / classic.as_secs_f64()
    );
    println!("syncgate sql: {ours_sql}");
}

#[tokio::main]
async fn main() -> Res<()> {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        // `cargo test --benches` / `cargo bench -- --list`: nothing to list.
        return Ok(());
    }
    let rows = env_u64("SG_BENCH_ROWS", 1_000_000);
    let runs = env_u64("SG_BENCH_RUNS", 7) as usize;
    let (_server, source) = start_server().await?;
    let mut conn = source.connect().await?;
    seed(&mut conn, rows).await?;

    let table = TableRef::new("bench", "sbtest1");
    let schema = discover_table(&mut conn, &table)
        .await?
        .ok_or("table not found")?;
    let cols: Vec<_> = schema.columns.iter().collect();
    let ours = checksum_sql(&table, &cols, "TRUE", Aggregate::Xor);
    let classic = "SELECT COUNT(*), BIT_XOR(CRC32(CONCAT_WS(',', id, k, c, pad))) \
                   FROM bench.sbtest1"
        .to_string();
    // Warm the buffer pool so both variants read from memory.
    conn.rows(&classic).await?;
    conn.rows(&ours).await?;
    let pair = [classic, ours];
    let [a, b]: [Vec<Duration>; 2] = time_interleaved(&mut conn, &pair, runs)
        .await?
        .try_into()
        .expect("two queries timed");
    let variants = variants_from_env();
    let vtimes = time_interleaved(&mut conn, &variants, runs).await?;
    let (ma, mb) = (median(a), median(b));
    for (v, times) in variants.iter().zip(vtimes) {
        let m = median(times);
        println!(
            "{:.3}s ({:.2}x) {v}",
            m.as_secs_f64(),
            m.as_secs_f64() / ma.as_secs_f64()
        );
    }
    print_results(rows, runs, ma, mb, &pair[1]);
    Ok(())
}
