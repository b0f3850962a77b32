//! What a backup's bytes flow through on their way into storage: a blocking compressor
//! that also watches the dump's head for the binlog position line, and a reader that
//! hashes and counts what is stored.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use std::io::{Read, Write};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{mpsc, oneshot};

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
/// Size of the reads from the dump and of the compressed chunks handed on.
const CHUNK: usize = 1 << 20;

/// Watches a dump's head for the position line and reports it once: the moment the
/// dump's snapshot exists.
struct HeadScanner {
    line: Vec<u8>,
    seen: usize,
    tx: Option<oneshot::Sender<Option<DumpPosition>>>,
}

impl HeadScanner {
    fn feed(&mut self, fresh: &[u8]) {
        let Some(tx) = self.tx.take() else {
            return;
        };
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
                let _ = tx.send(Some(p));
                return;
            }
        }
        self.seen += fresh.len();
        if self.seen > HEAD_LIMIT {
            let _ = tx.send(None);
        } else {
            self.tx = Some(tx);
        }
    }

    /// The dump ended without the line.
    fn end(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(None);
        }
    }
}

/// An `io::Write` that hands full chunks to an async reader ([`ChannelReader`]).
struct ChunkWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "upload ended"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

/// Compress a dump on a blocking thread: reads `input` in large chunks, reports the
/// header's position line through the returned receiver, and streams zstd output to the
/// returned reader. zstd runs in large blocks and never flushes early (an async encoder
/// flushed whenever the pipe ran dry, which cost a third of the backup's time), and the
/// async threads never compress.
pub fn compress_dump(
    input: std::fs::File,
) -> (
    ChannelReader,
    oneshot::Receiver<Option<DumpPosition>>,
    tokio::task::JoinHandle<std::io::Result<u64>>,
) {
    let (tx, rx) = mpsc::channel(4);
    let (seen_tx, seen_rx) = oneshot::channel();
    let worker = tokio::task::spawn_blocking(move || {
        let mut scanner = HeadScanner {
            line: Vec::new(),
            seen: 0,
            tx: Some(seen_tx),
        };
        let out = ChunkWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        let mut enc = zstd::Encoder::new(out, 1)?;
        let mut input = input;
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            scanner.feed(&buf[..n]);
            enc.write_all(&buf[..n])?;
            total += n as u64;
        }
        scanner.end();
        let mut out = enc.finish()?;
        out.flush()?;
        Ok(total)
    });
    (
        ChannelReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        },
        seen_rx,
        worker,
    )
}

/// An `AsyncRead` over chunks sent by a blocking thread; ends when the sender is gone.
pub struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        while this.pos == this.chunk.len() {
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(c)) => {
                    this.chunk = c;
                    this.pos = 0;
                }
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = (this.chunk.len() - this.pos).min(buf.remaining());
        buf.put_slice(&this.chunk[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
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
