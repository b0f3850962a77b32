//! Readers that a backup's bytes flow through on their way into storage: one hashes and
//! counts what is stored, one watches a dump's head for the binlog position line.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::oneshot;

/// The hash and size of what went through a [`Hashing`] reader.
#[derive(Debug, Clone, Default)]
pub struct Digested {
    pub sha256: String,
    pub size: u64,
}

/// Passes bytes through, hashing and counting them. The result is read from the shared
/// handle after the reader reached its end.
pub struct Hashing<R> {
    inner: R,
    hasher: Option<Sha256>,
    count: Arc<AtomicU64>,
    result: Arc<Mutex<Option<Digested>>>,
}

impl<R> Hashing<R> {
    /// The reader, the running byte count (for progress) and the final digest's slot.
    pub fn new(inner: R) -> (Self, Arc<AtomicU64>, Arc<Mutex<Option<Digested>>>) {
        let count = Arc::new(AtomicU64::new(0));
        let result = Arc::new(Mutex::new(None));
        (
            Hashing {
                inner,
                hasher: Some(Sha256::new()),
                count: count.clone(),
                result: result.clone(),
            },
            count,
            result,
        )
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Hashing<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let fresh = &buf.filled()[before..];
                if fresh.is_empty() {
                    if let Some(h) = this.hasher.take() {
                        *this.result.lock().unwrap() = Some(Digested {
                            sha256: hex::encode(h.finalize()),
                            size: this.count.load(Ordering::Relaxed),
                        });
                    }
                } else if let Some(h) = this.hasher.as_mut() {
                    h.update(fresh);
                    this.count.fetch_add(fresh.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

/// A dump's binlog coordinates as its header states them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpPosition {
    pub file: String,
    pub pos: u64,
}

/// Parse `-- CHANGE MASTER TO MASTER_LOG_FILE='f', MASTER_LOG_POS=n;` (mariadb-dump,
/// mysqldump before 8.0.23) or `CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='f',
/// SOURCE_LOG_POS=n;` (mysqldump since), commented or not.
pub fn parse_position_line(line: &str) -> Option<DumpPosition> {
    let line = line.trim().trim_start_matches("--").trim();
    let rest = line
        .strip_prefix("CHANGE MASTER TO MASTER_LOG_FILE='")
        .or_else(|| line.strip_prefix("CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='"))?;
    let (file, rest) = rest.split_once('\'')?;
    let rest = rest.trim_start_matches(',').trim();
    let num = rest
        .strip_prefix("MASTER_LOG_POS=")
        .or_else(|| rest.strip_prefix("SOURCE_LOG_POS="))?;
    let pos = num.trim_end_matches(';').trim().parse().ok()?;
    Some(DumpPosition {
        file: file.to_string(),
        pos,
    })
}

/// How far into a dump the position line is looked for (it is in the header).
const HEAD_LIMIT: usize = 1 << 20;

/// Passes a dump through and reports the position line of its header once seen: the
/// moment the dump's snapshot exists.
pub struct PositionSniffer<R> {
    inner: R,
    line: Vec<u8>,
    seen: usize,
    tx: Option<oneshot::Sender<Option<DumpPosition>>>,
}

impl<R> PositionSniffer<R> {
    pub fn new(inner: R) -> (Self, oneshot::Receiver<Option<DumpPosition>>) {
        let (tx, rx) = oneshot::channel();
        (
            PositionSniffer {
                inner,
                line: Vec::new(),
                seen: 0,
                tx: Some(tx),
            },
            rx,
        )
    }

    fn scan(&mut self, fresh: &[u8]) {
        if self.tx.is_none() {
            return;
        }
        for &b in fresh {
            if b != b'\n' {
                if self.line.len() < 4096 {
                    self.line.push(b);
                }
                continue;
            }
            let found = parse_position_line(&String::from_utf8_lossy(&self.line));
            self.line.clear();
            if let Some(p) = found {
                if let Some(tx) = self.tx.take() {
                    let _ = tx.send(Some(p));
                }
                return;
            }
        }
        self.seen += fresh.len();
        if self.seen > HEAD_LIMIT {
            if let Some(tx) = self.tx.take() {
                let _ = tx.send(None);
            }
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for PositionSniffer<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), true) = (&polled, this.tx.is_some()) {
            let fresh = buf.filled()[before..].to_vec();
            if fresh.is_empty() {
                if let Some(tx) = this.tx.take() {
                    let _ = tx.send(None);
                }
            } else {
                this.scan(&fresh);
            }
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_lines_of_both_tools_parse() {
        let p = parse_position_line(
            "-- CHANGE MASTER TO MASTER_LOG_FILE='binlog.000001', MASTER_LOG_POS=838;",
        );
        assert_eq!(
            p,
            Some(DumpPosition {
                file: "binlog.000001".into(),
                pos: 838
            })
        );
        let p = parse_position_line(
            "CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='mysql-bin.000003', SOURCE_LOG_POS=157;",
        );
        assert_eq!(p.unwrap().pos, 157);
        assert_eq!(
            parse_position_line("-- CHANGE MASTER TO MASTER_USE_GTID=slave_pos;"),
            None
        );
    }
}
