//! A write load shaped like sysbench `oltp_write_only`, paced to a fixed rate: what the DR
//! steps must stay correct under (tests, benches, `syncgate playground load`).
//!
//! Each transaction, on one table chosen uniformly:
//!
//! ```sql
//! BEGIN;
//! UPDATE t SET k = k + 1 WHERE id = ?;                -- index update
//! UPDATE t SET c = ? WHERE id = ?;                    -- non-index update
//! DELETE FROM t WHERE id = ? RETURNING k;             -- delete ...
//! INSERT INTO t (id, k, c, pad) VALUES (?, ?, ?, ?);  -- ... and re-insert the same id
//! COMMIT;
//! ```
//!
//! Every id is uniform over the table's id range (read once at the start), as sysbench picks
//! them. Unlike sysbench, the re-inserted row keeps the deleted row's `k` (hence `RETURNING`,
//! a MariaDB statement): row counts stay constant and the sum of `k` grows by exactly one per
//! committed transaction, so a test can prove that every transaction landed exactly once.
//! An id without a row (a gap in the range) updates nothing and re-inserts nothing.
//!
//! Transactions start on the ticks of one [`Pacer`] shared by all connections: `tps` in
//! total, missed ticks dropped rather than made up in a burst.
//!
//! Deadlocks (1213) and lock wait timeouts (1205) are rolled back and retried with new ids
//! ([`LoadStats::retried`]). A lost connection or a failed reconnect counts as an error
//! ([`LoadStats::errors`]) and the connection is opened again on a later tick: a test that
//! kills the server sees errors, not a panic. Any other error ends the run with that error.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use serde::Serialize;
use tokio::task::{JoinHandle, JoinSet};

use super::pace::Pacer;
use super::sbtest::{digit_groups, SplitMix64};
use crate::error::{Error, Result};
use crate::interrupt::{Interrupt, Signal};
use crate::local::{self, LocalError};
use crate::schema::TableRef;

/// Server errors after which the transaction is rolled back and tried again.
const RETRYABLE: [u16; 2] = [1213, 1205];
/// A transaction in flight when the load is stopped may finish within this; then it is
/// abandoned (its connection dropped, so the server rolls it back).
const STOP_GRACE: Duration = Duration::from_millis(250);
/// A connection that could not be (re)opened waits this long before its next attempt, so a
/// dead server is not hammered at the full rate.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);
/// A connection attempt that takes longer counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// What to run: [`run_load`], [`spawn_load`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Transactions per second, in total over all connections (0: as fast as they go).
    pub tps: u32,
    /// Stop after this long (`None`: until interrupted or stopped).
    pub duration: Option<Duration>,
    /// Tables of the sbtest shape (`id` INT key, `k` INT, `c`, `pad`) with rows.
    pub tables: Vec<TableRef>,
    /// Connections sharing the load (default 4).
    pub connections: usize,
    /// Seed of the ids and values written.
    pub seed: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            tps: 100,
            duration: None,
            tables: Vec::new(),
            connections: 4,
            seed: 0,
        }
    }
}

/// What a load did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadStats {
    /// Transactions committed.
    pub transactions: u64,
    /// Statements the server executed, BEGIN and COMMIT included (also those of attempts
    /// rolled back for a retry).
    pub statements: u64,
    /// Transactions that could not run for a lost connection or a failed reconnect.
    pub errors: u64,
    /// Attempts rolled back after a deadlock or lock wait timeout and tried again.
    pub retried: u64,
    /// Time since the load began.
    pub elapsed: Duration,
}

impl LoadStats {
    /// Committed transactions per second of `elapsed`.
    pub fn achieved_tps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.transactions as f64 / secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for LoadStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} transactions in {:.1?} ({:.1} TPS), {} statements, {} errors, {} retried",
            self.transactions,
            self.elapsed,
            self.achieved_tps(),
            self.statements,
            self.errors,
            self.retried
        )
    }
}

/// Live counters of one load, readable while it runs (progress displays, tests waiting for
/// the first transactions). Cheap to clone; clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct LoadCounters(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    transactions: AtomicU64,
    statements: AtomicU64,
    errors: AtomicU64,
    retried: AtomicU64,
    started: OnceLock<Instant>,
}

impl LoadCounters {
    /// The counts so far (`elapsed` since the load began; zero before).
    pub fn stats(&self) -> LoadStats {
        let c = &self.0;
        LoadStats {
            transactions: c.transactions.load(Ordering::Relaxed),
            statements: c.statements.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            elapsed: c.started.get().map_or(Duration::ZERO, Instant::elapsed),
        }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Run the load on the server of `opts` until `load.duration` passes or `interrupt` fires
/// (a stop, not an error: the result is the stats).
pub async fn run_load(opts: &Opts, load: &LoadOptions, interrupt: &Interrupt) -> Result<LoadStats> {
    run_load_with(opts, load, interrupt, &LoadCounters::default()).await
}

/// [`run_load`], counting into `counters` as it goes (one load per counters).
pub async fn run_load_with(
    opts: &Opts,
    load: &LoadOptions,
    interrupt: &Interrupt,
    counters: &LoadCounters,
) -> Result<LoadStats> {
    if load.connections == 0 {
        return Err(LocalError::Options("a load needs at least one connection".into()).into());
    }
    let tables = prepare_tables(opts, &load.tables).await?;
    let t0 = *counters.0.started.get_or_init(Instant::now);
    let run = Arc::new(Run {
        opts: opts.clone(),
        addr: local::addr(opts),
        tables,
        pacer: Mutex::new(Pacer::new(load.tps, load.duration)),
        t0,
        interrupt: interrupt.clone(),
        counters: counters.clone(),
    });
    tracing::info!(
        "load on {}: {} TPS over {} connections, {} tables{}",
        run.addr,
        load.tps,
        load.connections,
        run.tables.len(),
        load.duration
            .map_or(String::new(), |d| format!(", for {d:.1?}"))
    );
    let mut workers = JoinSet::new();
    for index in 0..load.connections {
        let rng = SplitMix64::new(worker_seed(load.seed, index));
        workers.spawn(worker(run.clone(), rng));
    }
    supervise(workers, counters).await?;
    let stats = LoadStats {
        elapsed: t0.elapsed(),
        ..counters.stats()
    };
    tracing::info!("load on {}: {stats}", run.addr);
    Ok(stats)
}

/// A load running in the background ([`spawn_load`]).
pub struct LoadHandle {
    task: Option<JoinHandle<Result<LoadStats>>>,
    stop: Box<dyn Fn(Signal) + Send + Sync>,
    counters: LoadCounters,
}

impl fmt::Debug for LoadHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadHandle")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// [`run_load`] on a tokio task (call inside a runtime). The load ends at its duration, on
/// [`LoadHandle::stop`], or when the handle is dropped.
pub fn spawn_load(opts: Opts, load: LoadOptions) -> LoadHandle {
    let (interrupt, stop) = Interrupt::manual();
    let counters = LoadCounters::default();
    let task = tokio::spawn({
        let counters = counters.clone();
        async move { run_load_with(&opts, &load, &interrupt, &counters).await }
    });
    LoadHandle {
        task: Some(task),
        stop: Box::new(stop),
        counters,
    }
}

impl LoadHandle {
    /// The counts so far.
    pub fn stats(&self) -> LoadStats {
        self.counters.stats()
    }

    /// Whether the load has ended (its duration passed, or it failed).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// End the load (transactions in flight may finish for a moment) and return its stats,
    /// or the error that ended it earlier.
    pub async fn stop(mut self) -> Result<LoadStats> {
        (self.stop)(Signal::Interrupt);
        let task = self.task.take().expect("the task is taken only here");
        task.await.map_err(LocalError::task("load"))?
    }
}

impl Drop for LoadHandle {
    fn drop(&mut self) {
        (self.stop)(Signal::Interrupt);
    }
}

/// One table's statements and id range.
#[derive(Debug)]
struct TableSql {
    name: TableRef,
    min_id: i64,
    max_id: i64,
    update_k: String,
    update_c: String,
    delete: String,
    insert: String,
}

/// Read each table's id range; a table without rows cannot take this load.
async fn prepare_tables(opts: &Opts, tables: &[TableRef]) -> Result<Vec<TableSql>> {
    if tables.is_empty() {
        return Err(LocalError::Options("a load needs at least one table".into()).into());
    }
    let addr = local::addr(opts);
    let mut conn = local::connect_to(opts).await?;
    let mut out = Vec::with_capacity(tables.len());
    for table in tables {
        let t = table.quoted();
        let sql = format!("SELECT MIN(id), MAX(id) FROM {t}");
        let range: Option<(Option<i64>, Option<i64>)> = conn
            .query_first(&sql)
            .await
            .map_err(LocalError::query(&addr, &sql))?;
        let Some((Some(min_id), Some(max_id))) = range else {
            let message = format!("{table} has no rows: the load changes existing rows");
            return Err(LocalError::Options(message).into());
        };
        out.push(TableSql {
            name: table.clone(),
            min_id,
            max_id,
            update_k: format!("UPDATE {t} SET k = k + 1 WHERE id = ?"),
            update_c: format!("UPDATE {t} SET c = ? WHERE id = ?"),
            delete: format!("DELETE FROM {t} WHERE id = ? RETURNING k"),
            insert: format!("INSERT INTO {t} (id, k, c, pad) VALUES (?, ?, ?, ?)"),
        });
    }
    let _ = conn.disconnect().await;
    Ok(out)
}

/// What the workers share.
struct Run {
    opts: Opts,
    addr: String,
    tables: Vec<TableSql>,
    pacer: Mutex<Pacer>,
    t0: Instant,
    interrupt: Interrupt,
    counters: LoadCounters,
}

impl Run {
    /// When this worker's next transaction starts; `None` once the run's time is up.
    fn next_start(&self) -> Option<Instant> {
        let now = self.t0.elapsed();
        let mut pacer = self.pacer.lock().unwrap_or_else(|e| e.into_inner());
        pacer.next_start(now).map(|start| self.t0 + start)
    }

    /// Sleep until `until`; false if the interrupt fired first.
    async fn sleep_until(&self, until: Instant) -> bool {
        let sleep = tokio::time::sleep_until(until.into());
        self.interrupt.interruptible(sleep).await.is_ok()
    }
}

/// Each worker's generator seed.
fn worker_seed(seed: u64, index: usize) -> u64 {
    SplitMix64::new(seed ^ (index as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407)).next_u64()
}

/// Wait for the workers, logging progress; the first failure aborts the others.
async fn supervise(mut workers: JoinSet<Result<()>>, counters: &LoadCounters) -> Result<()> {
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    progress.tick().await;
    let mut last = counters.stats();
    loop {
        tokio::select! {
            joined = workers.join_next() => match joined {
                None => return Ok(()),
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => return Err(LocalError::task("load worker")(e).into()),
            },
            _ = progress.tick() => {
                let now = counters.stats();
                let secs = now.elapsed.saturating_sub(last.elapsed).as_secs_f64();
                let tps = (now.transactions - last.transactions) as f64 / secs.max(1e-3);
                tracing::info!(
                    "load: {} transactions, {tps:.1} TPS now, {} errors, {} retried",
                    now.transactions, now.errors, now.retried
                );
                last = now;
            }
        }
    }
}

/// How a tick ended that did not fail the run.
enum Tick {
    Committed,
    /// No connection (lost, or could not be opened): counted as an error.
    NoConnection,
    /// The load was stopped and the transaction in flight abandoned.
    Abandoned,
}

/// One connection's loop: take a tick, wait for it, run a transaction.
async fn worker(run: Arc<Run>, mut rng: SplitMix64) -> Result<()> {
    let mut conn: Option<Conn> = None;
    while let Some(start) = run.next_start() {
        if !run.sleep_until(start).await {
            break;
        }
        let outcome = tokio::select! {
            outcome = tick(&run, &mut conn, &mut rng) => outcome?,
            _ = after_stop_grace(&run.interrupt) => Tick::Abandoned,
        };
        match outcome {
            Tick::Committed => {}
            Tick::NoConnection => {
                if !run.sleep_until(Instant::now() + RECONNECT_PAUSE).await {
                    break;
                }
            }
            Tick::Abandoned => {
                // Mid-statement: the connection cannot be reused; dropping it closes it.
                conn = None;
                break;
            }
        }
    }
    if let Some(conn) = conn {
        let _ = tokio::time::timeout(STOP_GRACE, conn.disconnect()).await;
    }
    Ok(())
}

/// Resolves `STOP_GRACE` after the interrupt fires.
async fn after_stop_grace(interrupt: &Interrupt) {
    interrupt.wait().await;
    tokio::time::sleep(STOP_GRACE).await;
}

/// Run one transaction (retrying deadlocks), opening the connection first if needed.
async fn tick(run: &Run, slot: &mut Option<Conn>, rng: &mut SplitMix64) -> Result<Tick> {
    let counters = &run.counters.0;
    if slot.is_none() {
        match tokio::time::timeout(CONNECT_TIMEOUT, local::connect_to(&run.opts)).await {
            Ok(Ok(conn)) => {
                *slot = Some(conn);
            }
            Ok(Err(e)) => {
                tracing::debug!("load: cannot connect: {e}");
                LoadCounters::bump(&counters.errors);
                return Ok(Tick::NoConnection);
            }
            Err(_) => {
                tracing::debug!("load: connecting to {} timed out", run.addr);
                LoadCounters::bump(&counters.errors);
                return Ok(Tick::NoConnection);
            }
        }
    }
    let conn = slot.as_mut().expect("connected above");
    loop {
        let plan = plan_txn(rng, &run.tables);
        let table = &run.tables[plan.table];
        let Err((sql, e)) = run_txn(conn, table, &plan, &run.counters).await else {
            LoadCounters::bump(&counters.transactions);
            return Ok(Tick::Committed);
        };
        let code = match &e {
            mysql_async::Error::Server(s) => Some(s.code),
            _ => None,
        };
        if code.is_some_and(|c| RETRYABLE.contains(&c)) {
            tracing::debug!("load: {}: {e}; retrying", table.name);
            LoadCounters::bump(&counters.retried);
            let _ = conn.query_drop("ROLLBACK").await;
        } else if crate::db::connection_lost(&e) {
            tracing::warn!("load: connection to {} lost: {e}; reconnecting", run.addr);
            LoadCounters::bump(&counters.errors);
            *slot = None;
            return Ok(Tick::NoConnection);
        } else {
            return Err(Error::from(LocalError::query(&run.addr, &sql)(e)));
        }
    }
}

/// The random choices of one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TxnPlan {
    /// Index into the tables.
    table: usize,
    /// Row whose `k` is incremented.
    k_id: i64,
    /// Row whose `c` is replaced, and its new `c`.
    c_id: i64,
    c: String,
    /// Row deleted and re-inserted, with its new `c` and `pad`.
    delete_id: i64,
    new_c: String,
    pad: String,
}

/// Choose a table uniformly and each id uniformly over its id range.
fn plan_txn(rng: &mut SplitMix64, tables: &[TableSql]) -> TxnPlan {
    let table = rng.below(tables.len() as u64) as usize;
    let t = &tables[table];
    let span = (t.max_id - t.min_id) as u64 + 1;
    let mut id = || t.min_id + rng.below(span) as i64;
    let (k_id, c_id, delete_id) = (id(), id(), id());
    let mut text = |groups| {
        let mut s = String::with_capacity(groups * 12);
        digit_groups(rng, groups, &mut s);
        s
    };
    let (c, new_c, pad) = (text(10), text(10), text(5));
    TxnPlan {
        table,
        k_id,
        c_id,
        c,
        delete_id,
        new_c,
        pad,
    }
}

/// One attempt at the transaction; on failure, the statement that failed and its error.
async fn run_txn(
    conn: &mut Conn,
    t: &TableSql,
    p: &TxnPlan,
    counters: &LoadCounters,
) -> std::result::Result<(), (String, mysql_async::Error)> {
    let failed = |sql: &str| {
        let sql = sql.to_string();
        move |e| (sql, e)
    };
    let done = || LoadCounters::bump(&counters.0.statements);
    conn.query_drop("BEGIN").await.map_err(failed("BEGIN"))?;
    done();
    conn.exec_drop(&t.update_k, (p.k_id,))
        .await
        .map_err(failed(&t.update_k))?;
    done();
    conn.exec_drop(&t.update_c, (&p.c, p.c_id))
        .await
        .map_err(failed(&t.update_c))?;
    done();
    let k: Option<i64> = conn
        .exec_first(&t.delete, (p.delete_id,))
        .await
        .map_err(failed(&t.delete))?;
    done();
    if let Some(k) = k {
        conn.exec_drop(&t.insert, (p.delete_id, k, &p.new_c, &p.pad))
            .await
            .map_err(failed(&t.insert))?;
        done();
    }
    conn.query_drop("COMMIT").await.map_err(failed("COMMIT"))?;
    done();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, min_id: i64, max_id: i64) -> TableSql {
        TableSql {
            name: TableRef::new("sbtest", name),
            min_id,
            max_id,
            update_k: String::new(),
            update_c: String::new(),
            delete: String::new(),
            insert: String::new(),
        }
    }

    #[test]
    fn plans_pick_every_table_and_ids_within_their_range() {
        let tables = [table("sbtest1", 1, 10), table("sbtest2", 100, 102)];
        let mut rng = SplitMix64::new(5);
        let mut seen = [0u32; 2];
        let mut ids_seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            let p = plan_txn(&mut rng, &tables);
            seen[p.table] += 1;
            let t = &tables[p.table];
            for id in [p.k_id, p.c_id, p.delete_id] {
                assert!((t.min_id..=t.max_id).contains(&id), "{id} in {}", t.name);
                ids_seen.insert(id);
            }
            assert_eq!((p.c.len(), p.new_c.len(), p.pad.len()), (119, 119, 59));
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
        // Both ends of both ranges are reached.
        for id in [1, 10, 100, 102] {
            assert!(ids_seen.contains(&id), "{id}");
        }
    }

    #[test]
    fn plans_are_deterministic_per_seed_and_differ_per_worker() {
        let tables = [table("sbtest1", 1, 1000)];
        let plans = |seed| {
            let mut rng = SplitMix64::new(seed);
            (0..5)
                .map(|_| plan_txn(&mut rng, &tables))
                .collect::<Vec<_>>()
        };
        assert_eq!(plans(worker_seed(1, 0)), plans(worker_seed(1, 0)));
        assert_ne!(plans(worker_seed(1, 0)), plans(worker_seed(1, 1)));
        assert_ne!(plans(worker_seed(1, 0)), plans(worker_seed(2, 0)));
    }

    #[test]
    fn stats_read_well() {
        let s = LoadStats {
            transactions: 300,
            statements: 1800,
            errors: 1,
            retried: 2,
            elapsed: Duration::from_millis(3000),
        };
        assert!((s.achieved_tps() - 100.0).abs() < 1e-9);
        assert_eq!(
            s.to_string(),
            "300 transactions in 3.0s (100.0 TPS), 1800 statements, 1 errors, 2 retried"
        );
        assert_eq!(LoadStats::default().achieved_tps(), 0.0);
    }
}
