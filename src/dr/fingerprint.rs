//! Row fingerprints: every row's key and hash, read in the backup's own snapshot and stored
//! beside the backup, so that a gate can compare the secondary with the primary *as it was
//! at the backup point* — which MariaDB and MySQL cannot read back later.
//!
//! A fingerprint is a zstd stream of the rows of [`TablePlan::fingerprint_sql`]: key
//! columns, the checker's row hash (the same expression a chunk checksum aggregates),
//! and the key's sort values, in key order. Gate 1 streams the same query from the
//! secondary and merges both through [`crate::diff::Merger`]: missing, extra and changed
//! rows are named by key, memory bounded by one row per side.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::check::plan::{Side, TablePlan};
use crate::db::Conn;
use crate::diff::{Advance, Merger, RowChange};
use crate::error::{Error, Result};
use crate::row::Row;

/// Rows per batch between the server stream and the file thread.
const BATCH: usize = 2048;
/// Differing keys kept per kind and table (counts are always exact).
pub const MAX_NAMED: usize = 1000;
/// Marks a NULL cell in the record encoding.
const NULL_CELL: u32 = u32::MAX;

/// Append one row: cell count, then per cell its length (or [`NULL_CELL`]) and bytes.
pub fn encode_row(row: &Row, out: &mut Vec<u8>) {
    out.extend_from_slice(&(row.len() as u32).to_le_bytes());
    for cell in row {
        match cell {
            None => out.extend_from_slice(&NULL_CELL.to_le_bytes()),
            Some(b) => {
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
    }
}

/// Read one row; `Ok(None)` at a clean end of the stream.
pub fn decode_row(r: &mut impl Read) -> std::io::Result<Option<Row>> {
    let mut word = [0u8; 4];
    match r.read_exact(&mut word) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let cells = u32::from_le_bytes(word) as usize;
    if cells > 4096 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("fingerprint record claims {cells} cells"),
        ));
    }
    let mut row = Vec::with_capacity(cells);
    for _ in 0..cells {
        r.read_exact(&mut word)?;
        let len = u32::from_le_bytes(word);
        if len == NULL_CELL {
            row.push(None);
            continue;
        }
        let mut b = vec![0u8; len as usize];
        r.read_exact(&mut b)?;
        row.push(Some(b));
    }
    Ok(Some(row))
}

fn internal(e: tokio::task::JoinError) -> Error {
    Error::Internal(e.to_string())
}

/// Stream the table's fingerprint from `conn` (already in the snapshot) into a zstd file
/// at `path`. Returns the number of rows.
pub async fn capture(conn: &mut Conn, plan: &TablePlan, path: PathBuf) -> Result<u64> {
    let (tx, mut rx) = mpsc::channel::<Vec<Row>>(4);
    let writer = tokio::task::spawn_blocking(move || -> Result<()> {
        let file = std::fs::File::create(&path).map_err(|e| Error::Output {
            path: path.clone(),
            source: e,
        })?;
        let mut enc = zstd::Encoder::new(BufWriter::new(file), 1)?;
        let mut buf = Vec::new();
        while let Some(batch) = rx.blocking_recv() {
            buf.clear();
            for row in &batch {
                encode_row(row, &mut buf);
            }
            enc.write_all(&buf)?;
        }
        let mut inner = enc.finish()?;
        inner.flush()?;
        Ok(())
    });
    let sql = plan.fingerprint_sql(Side::Up);
    let mut rows = 0u64;
    let streamed: Result<()> = async {
        let mut stream = conn.stream(&sql).await?;
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(row) = stream.next().await? {
            batch.push(row);
            rows += 1;
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                if tx.send(full).await.is_err() {
                    break; // the writer failed; its error is reported below
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(batch).await;
        }
        Ok(())
    }
    .await;
    drop(tx);
    let written = writer.await.map_err(internal)?;
    streamed?;
    written?;
    Ok(rows)
}

/// What gate 1 found in one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableVerdict {
    pub table: String,
    /// Rows at the backup point (the fingerprint) and on the secondary.
    pub primary_rows: u64,
    pub secondary_rows: u64,
    pub missing: u64,
    pub extra: u64,
    pub changed: u64,
    /// Keys (`col=value AND …`) of the first [`MAX_NAMED`] rows of each kind.
    pub missing_keys: Vec<String>,
    pub extra_keys: Vec<String>,
    pub changed_keys: Vec<String>,
}

impl TableVerdict {
    pub fn differing(&self) -> u64 {
        self.missing + self.extra + self.changed
    }
}

/// Compare the fingerprint file at `path` with the secondary's rows (read on `conn`).
pub async fn compare(conn: &mut Conn, plan: &TablePlan, path: PathBuf) -> Result<TableVerdict> {
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Vec<Row>>>(4);
    let reader = tokio::task::spawn_blocking(move || {
        let opened =
            std::fs::File::open(&path).and_then(|f| zstd::Decoder::with_buffer(BufReader::new(f)));
        let mut dec = match opened {
            Ok(d) => d,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        loop {
            let mut batch = Vec::with_capacity(BATCH);
            let mut end = false;
            while batch.len() < BATCH {
                match decode_row(&mut dec) {
                    Ok(Some(row)) => batch.push(row),
                    Ok(None) => {
                        end = true;
                        break;
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
            if tx.blocking_send(Ok(batch)).is_err() || end {
                return;
            }
        }
    });
    let mut verdict = TableVerdict {
        table: plan.target.to_string(),
        ..TableVerdict::default()
    };
    let mut up_rows: std::vec::IntoIter<Row> = Vec::new().into_iter();
    let mut up_ended = false;
    let sql = plan.fingerprint_sql(Side::Down);
    let mut down = conn.stream(&sql).await?;
    let mut merger = Merger::new(plan.fingerprint_layout());
    loop {
        let (want_up, want_down) = merger.wants();
        if want_up {
            let mut next = up_rows.next();
            while next.is_none() && !up_ended {
                match rx.recv().await {
                    Some(Ok(batch)) if batch.is_empty() => up_ended = true,
                    Some(Ok(batch)) => {
                        up_rows = batch.into_iter();
                        next = up_rows.next();
                    }
                    Some(Err(e)) => {
                        return Err(Error::Internal(format!(
                            "fingerprint of {} cannot be read: {e}",
                            plan.target
                        )))
                    }
                    None => up_ended = true,
                }
            }
            merger.put_up(next);
        }
        if want_down {
            merger.put_down(down.next().await?);
        }
        match merger.advance() {
            Advance::Done => break,
            Advance::Same => {}
            Advance::Change(change) => note(&mut verdict, plan, change),
        }
    }
    drop(rx);
    let _ = reader.await;
    (verdict.primary_rows, verdict.secondary_rows) = merger.rows();
    Ok(verdict)
}

/// Count a difference and name its row while fewer than [`MAX_NAMED`] are named.
fn note(v: &mut TableVerdict, plan: &TablePlan, change: RowChange) {
    let (count, keys, row) = match change {
        RowChange::Missing { up } => (&mut v.missing, &mut v.missing_keys, up),
        RowChange::Extra { down } => (&mut v.extra, &mut v.extra_keys, down),
        RowChange::Changed { up, .. } => (&mut v.changed, &mut v.changed_keys, up),
    };
    *count += 1;
    if keys.len() < MAX_NAMED {
        keys.push(describe_key(plan, &row));
    }
}

/// `id = 5` / `a = 'x' AND b = 2`: the row's key as SQL a DBA can paste into a WHERE. A
/// keyless table's row is named by its hash.
fn describe_key(plan: &TablePlan, row: &Row) -> String {
    let Some(key) = plan.key.as_deref() else {
        let hash = row
            .first()
            .and_then(|c| c.as_deref())
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        return format!("row with hash {hash}");
    };
    key.iter()
        .enumerate()
        .map(|(i, &pos)| {
            let col = &plan.up_cols[pos];
            format!(
                "{} = {}",
                crate::sql::quote_ident(&col.name),
                col.literal(row.get(i).and_then(|c| c.as_deref()))
            )
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_through_the_encoding() {
        let rows: Vec<Row> = vec![
            vec![Some(b"1".to_vec()), None, Some(Vec::new())],
            vec![],
            vec![Some(vec![0, 255, 10])],
        ];
        let mut buf = Vec::new();
        for r in &rows {
            encode_row(r, &mut buf);
        }
        let mut cur = std::io::Cursor::new(buf);
        let mut back = Vec::new();
        while let Some(r) = decode_row(&mut cur).unwrap() {
            back.push(r);
        }
        assert_eq!(back, rows);
    }

    #[test]
    fn a_truncated_record_is_an_error_not_an_end() {
        let mut buf = Vec::new();
        encode_row(&vec![Some(b"hello".to_vec())], &mut buf);
        buf.truncate(buf.len() - 2);
        let mut cur = std::io::Cursor::new(buf);
        assert!(decode_row(&mut cur).is_err());
    }
}
