//! A ledger writer that follows the writable primary: one transaction per tick, each
//! appending the next sequence number to a ledger table, tried on the servers in turn
//! until one takes it (the others refuse with `read_only`, or are gone). Made for role
//! changes under load (`dr switchover` tests and bench): every number committed exactly
//! once somewhere, and the longest time between two commits is the write freeze the
//! application saw.
//!
//! The writer's user must not have SUPER or READ ONLY ADMIN (those bypass `read_only`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

/// What the writer did.
#[derive(Debug, Clone, Copy, Default)]
pub struct LedgerStats {
    /// The last sequence number committed (1, 2, … with no gap).
    pub committed: u64,
    /// The longest time between two commits.
    pub longest_gap: Duration,
    /// Attempts refused (read_only, connection errors), retried elsewhere.
    pub refused: u64,
}

/// A running ledger writer.
pub struct LedgerWriter {
    stop: Arc<AtomicBool>,
    committed: Arc<AtomicU64>,
    stats: Arc<Mutex<LedgerStats>>,
    task: tokio::task::JoinHandle<()>,
}

impl LedgerWriter {
    /// Write `INSERT INTO table (seq) VALUES (n)` at `tps`, on the first of `servers` that
    /// takes it.
    pub fn start(servers: Vec<mysql_async::Opts>, table: &str, tps: u64) -> LedgerWriter {
        LedgerWriter::start_from(servers, table, tps, 1)
    }

    /// [`LedgerWriter::start`] with `first` as the first sequence number (a ledger carried
    /// on after a failover).
    pub fn start_from(
        servers: Vec<mysql_async::Opts>,
        table: &str,
        tps: u64,
        first: u64,
    ) -> LedgerWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(AtomicU64::new(0));
        let stats = Arc::new(Mutex::new(LedgerStats::default()));
        let (s, c, st) = (stop.clone(), committed.clone(), stats.clone());
        let table = table.to_string();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / tps.max(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut target = 0usize;
            let mut conn: Option<mysql_async::Conn> = None;
            let mut last_commit = Instant::now();
            let mut n = first;
            while !s.load(Ordering::SeqCst) {
                tick.tick().await;
                // One number until it is committed somewhere.
                loop {
                    if s.load(Ordering::SeqCst) {
                        break;
                    }
                    if conn.is_none() {
                        conn = mysql_async::Conn::new(servers[target].clone()).await.ok();
                    }
                    let ok = match conn.as_mut() {
                        Some(cx) => {
                            let sql =
                                format!("BEGIN; INSERT INTO {table} (seq) VALUES ({n}); COMMIT");
                            cx.query_drop(sql).await.is_ok()
                        }
                        None => false,
                    };
                    if ok {
                        let now = Instant::now();
                        let mut stats = st.lock().unwrap();
                        stats.longest_gap = stats.longest_gap.max(now - last_commit);
                        stats.committed = n;
                        last_commit = now;
                        c.store(n, Ordering::SeqCst);
                        n += 1;
                        break;
                    }
                    st.lock().unwrap().refused += 1;
                    if let Some(cx) = conn.take() {
                        let _ = cx.disconnect().await;
                    }
                    target = (target + 1) % servers.len();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            if let Some(cx) = conn.take() {
                let _ = cx.disconnect().await;
            }
        });
        LedgerWriter {
            stop,
            committed,
            stats,
            task,
        }
    }

    /// The last sequence number committed so far.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::SeqCst)
    }

    /// The longest gap so far (reset with [`LedgerWriter::reset_gap`]).
    pub fn stats(&self) -> LedgerStats {
        *self.stats.lock().unwrap()
    }

    /// Start measuring the longest gap afresh (e.g. just before a switchover).
    pub fn reset_gap(&self) {
        self.stats.lock().unwrap().longest_gap = Duration::ZERO;
    }

    /// Stop after the transaction in flight.
    pub async fn stop(self) -> LedgerStats {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        *self.stats.lock().unwrap()
    }
}
