//! Sysbench-shaped rows generated *inside* the server with MariaDB's sequence engine
//! (`seq_1_to_N`) and `RAND(seed)`: millions of rows in seconds, the same digits on every
//! server. Used by the benches, where client-side generation ([`super::sbtest`]) would
//! dominate the setup time.

use mysql_async::prelude::Queryable;

use crate::local::{LocalError, Result};

/// `LPAD(FLOOR(RAND(seed) * 1e11), 11, '0')` groups joined by '-', seeds `first..first+n`
/// offsets from the row's base seed: the same digits on every server.
fn digit_groups(first: u64, n: u64) -> String {
    let groups: Vec<String> = (first..first + n)
        .map(|g| format!("LPAD(FLOOR(RAND(seq * 16 + @sg_t + {g}) * 1e11), 11, '0')"))
        .collect();
    format!("CONCAT_WS('-', {})", groups.join(", "))
}

/// The deterministic sysbench rows `from..=to` of a table (after `SET @sg_t`): `k` uniform in
/// `1..=rows`, `c` 10 and `pad` 5 groups of 11 digits, as sysbench makes them.
pub fn generator_select(from: u64, to: u64, rows: u64) -> String {
    format!(
        "SELECT seq, 1 + FLOOR(RAND(seq * 16 + @sg_t) * {rows}), {}, {} FROM seq_{from}_to_{to}",
        digit_groups(1, 10),
        digit_groups(11, 5)
    )
}

/// The session setup [`generator_select`] needs for table number `table`.
pub fn session_setup(table: u32) -> String {
    format!(
        "SET SESSION unique_checks = 0, foreign_key_checks = 0, @sg_t = {}",
        u64::from(table) * 7919
    )
}

/// Create `database.sbtest<table>` and fill it with `rows` generated rows, in one
/// statement into the empty table (MariaDB's bulk-insert path: no undo log, sorted index
/// builds). `opts` must name `database` as its default database.
pub async fn seed_table(opts: mysql_async::Opts, table: u32, rows: u64) -> Result<()> {
    let addr = crate::local::addr(&opts);
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .map_err(|error| LocalError::Connect {
            addr: addr.clone(),
            error,
        })?;
    let insert = format!(
        "INSERT INTO sbtest{table} (id, k, c, pad) {}",
        generator_select(1, rows, rows)
    );
    // An empty table (`rows` 0) gets no insert: `seq_1_to_0` would count down.
    let statements = [session_setup(table), super::sbtest_ddl(table), insert];
    let statements = &statements[..if rows == 0 { 2 } else { 3 }];
    for sql in statements {
        conn.query_drop(sql)
            .await
            .map_err(LocalError::query(&addr, sql))?;
    }
    let _ = conn.disconnect().await;
    Ok(())
}
