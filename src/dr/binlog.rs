//! MariaDB binlog events, just enough to cut a binlog stream into transaction-complete
//! segments: the common event header, the Format_description event, MariaDB's GTID event
//! and the events that end a transaction (XID, `COMMIT` query, XA prepare). Pure code.

use std::collections::BTreeMap;
use std::fmt;

/// The four bytes every binlog file starts with.
pub const MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];
/// Size of the common event header (v4).
pub const HEADER_LEN: usize = 19;

pub const QUERY_EVENT: u8 = 2;
pub const ROTATE_EVENT: u8 = 4;
pub const FORMAT_DESCRIPTION_EVENT: u8 = 15;
pub const XID_EVENT: u8 = 16;
pub const XA_PREPARE_EVENT: u8 = 38;
/// MariaDB: the GTID that opens each event group.
pub const GTID_EVENT: u8 = 162;

/// MariaDB GTID event flag: the group is one statement with no COMMIT after it (DDL).
const FL_STANDALONE: u8 = 1;

/// A binlog parse error: the bytes are not a binlog this module understands.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BinlogError {
    #[error("not a binlog: bad magic")]
    BadMagic,
    #[error("binlog event at offset {offset} has an impossible size {size}")]
    BadSize { offset: usize, size: u32 },
    #[error("binlog event of type {type_code} is truncated ({len} bytes)")]
    Truncated { type_code: u8, len: usize },
    #[error("a transaction's events came before the Format_description event")]
    NoFormat,
    /// The stream skipped transactions: the source's binlog lacks some (a replica without
    /// `log_slave_updates`, filtered replication, a binlog that starts after them).
    #[error(
        "the binlog has a gap in domain {domain}: after {after} the next transaction is {next}"
    )]
    Gap {
        domain: u32,
        after: Gtid,
        next: Gtid,
    },
    /// The stream's transaction at an archived sequence number is another transaction:
    /// the source's history and the archive's went apart (writes on two nodes).
    #[error(
        "the binlog has {seen} where the archive has {archived}: the two histories differ \
         from there (writes on two nodes?)"
    )]
    Diverged { archived: Gtid, seen: Gtid },
}

/// The v4 common header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHeader {
    pub timestamp: u32,
    pub type_code: u8,
    pub server_id: u32,
    pub size: u32,
    pub log_pos: u32,
    pub flags: u16,
}

impl EventHeader {
    pub fn parse(b: &[u8]) -> Option<EventHeader> {
        if b.len() < HEADER_LEN {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Some(EventHeader {
            timestamp: u32_at(0),
            type_code: b[4],
            server_id: u32_at(5),
            size: u32_at(9),
            log_pos: u32_at(13),
            flags: u16::from_le_bytes([b[17], b[18]]),
        })
    }
}

/// One GTID: `domain-server-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

impl std::str::FromStr for Gtid {
    type Err = String;
    fn from_str(s: &str) -> Result<Gtid, String> {
        let parts: Vec<&str> = s.trim().split('-').collect();
        let bad = || format!("'{s}' is not a GTID (domain-server-seq)");
        if parts.len() != 3 {
            return Err(bad());
        }
        Ok(Gtid {
            domain: parts[0].parse().map_err(|_| bad())?,
            server: parts[1].parse().map_err(|_| bad())?,
            seq: parts[2].parse().map_err(|_| bad())?,
        })
    }
}

/// A GTID position: the last GTID per domain (`@@gtid_binlog_pos`, `@@gtid_slave_pos`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidPos(pub BTreeMap<u32, Gtid>);

impl GtidPos {
    /// Parse `0-1-7,1-2-3` (empty: no domain).
    pub fn parse(s: &str) -> Result<GtidPos, String> {
        let mut pos = GtidPos::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let g: Gtid = item.parse()?;
            pos.0.insert(g.domain, g);
        }
        Ok(pos)
    }

    /// Whether `g` is at or before this position (already applied).
    pub fn contains(&self, g: &Gtid) -> bool {
        self.0.get(&g.domain).is_some_and(|p| g.seq <= p.seq)
    }

    /// Advance the position to `g` when it is newer.
    pub fn advance(&mut self, g: Gtid) {
        let e = self.0.entry(g.domain).or_insert(g);
        if g.seq >= e.seq {
            *e = g;
        }
    }

    /// Whether every domain of `other` is at or before this position.
    pub fn covers(&self, other: &GtidPos) -> bool {
        other.0.values().all(|g| self.contains(g))
    }
}

impl fmt::Display for GtidPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.0.values().map(Gtid::to_string).collect();
        f.write_str(&items.join(","))
    }
}

/// Split `buf` (binlog bytes after the magic) into whole events; returns them and the
/// number of bytes consumed (a partial event at the end is left for later).
pub fn split_events(buf: &[u8]) -> Result<(Vec<&[u8]>, usize), BinlogError> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(h) = EventHeader::parse(&buf[at..]) {
        let size = h.size as usize;
        if size < HEADER_LEN {
            return Err(BinlogError::BadSize {
                offset: at,
                size: h.size,
            });
        }
        if buf.len() - at < size {
            break;
        }
        out.push(&buf[at..at + size]);
        at += size;
    }
    Ok((out, at))
}

/// Whether events carry a CRC32 trailer, from a Format_description event.
fn fde_has_checksum(event: &[u8]) -> bool {
    // The checksum algorithm byte precedes the FDE's own 4-byte CRC; 0 means off.
    event.len() >= HEADER_LEN + 57 + 5 && event[event.len() - 5] == 1
}

/// The GTID and flags of a MariaDB GTID event.
pub fn parse_gtid_event(event: &[u8]) -> Result<(Gtid, u8), BinlogError> {
    let h = EventHeader::parse(event).ok_or(BinlogError::Truncated {
        type_code: GTID_EVENT,
        len: event.len(),
    })?;
    let b = &event[HEADER_LEN..];
    if b.len() < 13 {
        return Err(BinlogError::Truncated {
            type_code: GTID_EVENT,
            len: event.len(),
        });
    }
    let seq = u64::from_le_bytes(b[0..8].try_into().expect("8 bytes"));
    let domain = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
    Ok((
        Gtid {
            domain,
            server: h.server_id,
            seq,
        },
        b[12],
    ))
}

/// The statement of a Query event (`checksum`: the event ends with a CRC32).
pub fn query_text(event: &[u8], checksum: bool) -> Option<&[u8]> {
    let end = event.len().checked_sub(if checksum { 4 } else { 0 })?;
    let b = event.get(HEADER_LEN..end)?;
    // Post-header: thread id 4, exec time 4, db length 1, error code 2, status length 2.
    let db_len = *b.get(8)? as usize;
    let status_len = u16::from_le_bytes([*b.get(11)?, *b.get(12)?]) as usize;
    b.get(13 + status_len + db_len + 1..)
}

/// A transaction as it went into a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnInfo {
    pub gtid: Gtid,
    /// Commit time (the header timestamp of its last event), Unix seconds.
    pub commit_ts: u32,
}

/// A run of whole transactions, ready to be written as a binlog file.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Magic + Format_description + the transactions' events.
    pub bytes: Vec<u8>,
    pub first: Gtid,
    pub last: Gtid,
    pub last_commit_ts: u32,
    pub transactions: u64,
}

/// Cuts a stream of events into transaction-complete segments. Transactions at or before
/// `skip` are dropped (already archived); a transaction whose end has not arrived stays
/// open and is never part of a segment.
#[derive(Debug, Default)]
pub struct Segmenter {
    fde: Option<Vec<u8>>,
    checksum: bool,
    skip: GtidPos,
    open: Option<OpenTxn>,
    done: Vec<u8>,
    first: Option<Gtid>,
    last: Option<TxnInfo>,
    count: u64,
    /// Refuse gaps and divergence against `skip` ([`Segmenter::continuing`]).
    strict: bool,
}

#[derive(Debug)]
struct OpenTxn {
    gtid: Gtid,
    standalone: bool,
    bytes: Vec<u8>,
    events: usize,
}

impl Segmenter {
    pub fn new(skip: GtidPos) -> Segmenter {
        Segmenter {
            skip,
            ..Segmenter::default()
        }
    }

    /// A segmenter for an archive that holds everything up to `skip`: every transaction
    /// after it must follow on with no gap in its domain ([`BinlogError::Gap`]), and the
    /// transaction at `skip` itself, when the stream shows it, must be the archived one
    /// ([`BinlogError::Diverged`]).
    pub fn continuing(skip: GtidPos) -> Segmenter {
        Segmenter {
            skip,
            strict: true,
            ..Segmenter::default()
        }
    }

    /// The newest transaction taken in (segmented or waiting), for resuming.
    pub fn position(&self) -> &GtidPos {
        &self.skip
    }

    /// Take one whole event.
    pub fn feed(&mut self, event: &[u8]) -> Result<(), BinlogError> {
        let h = EventHeader::parse(event).ok_or(BinlogError::Truncated {
            type_code: 0,
            len: event.len(),
        })?;
        match h.type_code {
            FORMAT_DESCRIPTION_EVENT => {
                self.checksum = fde_has_checksum(event);
                self.fde = Some(event.to_vec());
                // A new FDE mid-transaction means the writer restarted: the open one is lost.
                self.open = None;
                return Ok(());
            }
            GTID_EVENT => {
                let (gtid, flags) = parse_gtid_event(event)?;
                self.open = Some(OpenTxn {
                    gtid,
                    standalone: flags & FL_STANDALONE != 0,
                    bytes: event.to_vec(),
                    events: 1,
                });
                return Ok(());
            }
            _ => {}
        }
        let Some(open) = self.open.as_mut() else {
            // Rotate, GTID list, checkpoint, heartbeat, stop: not part of a transaction.
            return Ok(());
        };
        open.bytes.extend_from_slice(event);
        open.events += 1;
        let ends = match h.type_code {
            XID_EVENT | XA_PREPARE_EVENT => true,
            QUERY_EVENT if open.standalone => true,
            QUERY_EVENT => query_text(event, self.checksum).is_some_and(|q| {
                let q = q.trim_ascii();
                q.eq_ignore_ascii_case(b"COMMIT") || q.eq_ignore_ascii_case(b"ROLLBACK")
            }),
            _ => false,
        };
        if ends {
            let open = self.open.take().expect("open transaction");
            if self.fde.is_none() {
                return Err(BinlogError::NoFormat);
            }
            if self.strict {
                self.check_follows(open.gtid)?;
            }
            if self.skip.contains(&open.gtid) {
                return Ok(());
            }
            self.skip.advance(open.gtid);
            self.done.extend_from_slice(&open.bytes);
            self.first.get_or_insert(open.gtid);
            self.last = Some(TxnInfo {
                gtid: open.gtid,
                commit_ts: h.timestamp,
            });
            self.count += 1;
        }
        Ok(())
    }

    /// `g` against the newest transaction taken in its domain: at it, the same
    /// transaction; after it, the next one.
    fn check_follows(&self, g: Gtid) -> Result<(), BinlogError> {
        let Some(at) = self.skip.0.get(&g.domain) else {
            return Ok(());
        };
        if g.seq == at.seq && g.server != at.server {
            return Err(BinlogError::Diverged {
                archived: *at,
                seen: g,
            });
        }
        if g.seq > at.seq + 1 {
            return Err(BinlogError::Gap {
                domain: g.domain,
                after: *at,
                next: g,
            });
        }
        Ok(())
    }

    /// Bytes of complete transactions waiting.
    pub fn pending_bytes(&self) -> usize {
        self.done.len()
    }

    /// Whether a transaction is open (started, not ended).
    pub fn in_transaction(&self) -> bool {
        self.open.is_some()
    }

    /// The complete transactions taken in since the last call, as a binlog file.
    pub fn take_segment(&mut self) -> Option<Segment> {
        let (first, last) = (self.first.take()?, self.last.take()?);
        let fde = self.fde.as_ref()?;
        let mut bytes = Vec::with_capacity(4 + fde.len() + self.done.len());
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(fde);
        bytes.append(&mut self.done);
        let transactions = std::mem::take(&mut self.count);
        Some(Segment {
            bytes,
            first,
            last: last.gtid,
            last_commit_ts: last.commit_ts,
            transactions,
        })
    }

    /// Forget the open transaction (its connection broke; it will be read again).
    pub fn drop_open(&mut self) {
        self.open = None;
    }
}

/// The GTIDs of the transactions in a binlog file's bytes (magic included), for checks.
pub fn transactions(file: &[u8]) -> Result<Vec<Gtid>, BinlogError> {
    let body = file.strip_prefix(&MAGIC).ok_or(BinlogError::BadMagic)?;
    let (events, _) = split_events(body)?;
    let mut seg = Segmenter::new(GtidPos::default());
    let mut out = Vec::new();
    for e in events {
        let before = seg.count;
        seg.feed(e)?;
        if seg.count > before {
            out.push(seg.last.expect("counted").gtid);
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn event(type_code: u8, server_id: u32, ts: u32, body: &[u8], crc: bool) -> Vec<u8> {
        let size = (HEADER_LEN + body.len() + if crc { 4 } else { 0 }) as u32;
        let mut e = Vec::new();
        e.extend_from_slice(&ts.to_le_bytes());
        e.push(type_code);
        e.extend_from_slice(&server_id.to_le_bytes());
        e.extend_from_slice(&size.to_le_bytes());
        e.extend_from_slice(&0u32.to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        e.extend_from_slice(body);
        if crc {
            e.extend_from_slice(&[0xaa; 4]);
        }
        e
    }

    pub fn fde() -> Vec<u8> {
        let mut body = vec![4, 0];
        body.extend_from_slice(&[b'1'; 50]);
        body.extend_from_slice(&[0; 4]);
        body.push(19);
        body.extend_from_slice(&[0; 10]);
        body.push(1); // checksum alg CRC32
        event(FORMAT_DESCRIPTION_EVENT, 1, 0, &body, true)
    }

    pub fn gtid(seq: u64, domain: u32, flags: u8) -> Vec<u8> {
        let mut body = seq.to_le_bytes().to_vec();
        body.extend_from_slice(&domain.to_le_bytes());
        body.push(flags);
        body.extend_from_slice(&[0; 6]);
        event(GTID_EVENT, 1, 100, &body, true)
    }

    pub fn query(sql: &str, ts: u32) -> Vec<u8> {
        let mut body = vec![0; 8];
        body.push(4); // db length
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&2u16.to_le_bytes());
        body.extend_from_slice(&[0xff, 0xee]);
        body.extend_from_slice(b"test\0");
        body.extend_from_slice(sql.as_bytes());
        event(QUERY_EVENT, 1, ts, &body, true)
    }

    fn rows() -> Vec<u8> {
        event(30, 1, 100, &[7; 40], true)
    }

    fn xid(ts: u32) -> Vec<u8> {
        event(XID_EVENT, 1, ts, &[9; 8], true)
    }

    #[test]
    fn header_and_gtid_parse() {
        let g = gtid(42, 3, FL_STANDALONE);
        let h = EventHeader::parse(&g).unwrap();
        assert_eq!(h.type_code, GTID_EVENT);
        assert_eq!(h.size as usize, g.len());
        let (id, flags) = parse_gtid_event(&g).unwrap();
        assert_eq!(id.to_string(), "3-1-42");
        assert_eq!(flags, FL_STANDALONE);
        assert_eq!(query_text(&query("COMMIT", 1), true), Some(&b"COMMIT"[..]));
    }

    #[test]
    fn gtid_positions_parse_and_order() {
        let p = GtidPos::parse("0-1-7, 1-2-3").unwrap();
        assert_eq!(p.to_string(), "0-1-7,1-2-3");
        assert!(p.contains(&"0-1-7".parse().unwrap()));
        assert!(!p.contains(&"0-1-8".parse().unwrap()));
        assert!(!p.contains(&"2-1-1".parse().unwrap()));
        assert!(GtidPos::parse("0-1").is_err());
        assert!(p.covers(&GtidPos::parse("0-1-5").unwrap()));
        assert!(!p.covers(&GtidPos::parse("0-1-9").unwrap()));
    }

    #[test]
    fn segments_hold_only_whole_transactions() {
        let mut s = Segmenter::new(GtidPos::default());
        s.feed(&event(
            ROTATE_EVENT,
            1,
            0,
            b"12345678mysql-bin.000001",
            false,
        ))
        .unwrap();
        s.feed(&fde()).unwrap();
        for e in [gtid(1, 0, 0), query("BEGIN", 100), rows(), xid(101)] {
            s.feed(&e).unwrap();
        }
        // DDL: standalone, ends with its one query.
        s.feed(&gtid(2, 0, FL_STANDALONE)).unwrap();
        s.feed(&query("CREATE TABLE t (a int)", 102)).unwrap();
        // Non-transactional engine: ends with a COMMIT query.
        for e in [
            gtid(3, 0, 0),
            query("BEGIN", 103),
            rows(),
            query("COMMIT", 104),
        ] {
            s.feed(&e).unwrap();
        }
        // Open: never in a segment.
        s.feed(&gtid(4, 0, 0)).unwrap();
        s.feed(&rows()).unwrap();
        assert!(s.in_transaction());
        let seg = s.take_segment().unwrap();
        assert_eq!(seg.first.seq, 1);
        assert_eq!(seg.last.seq, 3);
        assert_eq!(seg.transactions, 3);
        assert_eq!(seg.last_commit_ts, 104);
        assert!(seg.bytes.starts_with(&MAGIC));
        let ids: Vec<u64> = transactions(&seg.bytes)
            .unwrap()
            .iter()
            .map(|g| g.seq)
            .collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert!(s.take_segment().is_none());
        s.feed(&xid(105)).unwrap();
        assert_eq!(s.take_segment().unwrap().first.seq, 4);
    }

    #[test]
    fn archived_transactions_are_skipped_and_a_broken_one_is_dropped() {
        let mut s = Segmenter::new(GtidPos::parse("0-1-2").unwrap());
        s.feed(&fde()).unwrap();
        for seq in 1..=3 {
            for e in [gtid(seq, 0, 0), rows(), xid(100)] {
                s.feed(&e).unwrap();
            }
        }
        s.feed(&gtid(4, 0, 0)).unwrap();
        s.drop_open();
        s.feed(&xid(100)).unwrap(); // a stray end without its GTID is ignored
        let seg = s.take_segment().unwrap();
        assert_eq!((seg.first.seq, seg.last.seq, seg.transactions), (3, 3, 1));
        assert_eq!(s.position().to_string(), "0-1-3");
    }

    /// A GTID event from `server`.
    fn gtid_from(server: u32, seq: u64) -> Vec<u8> {
        let mut e = gtid(seq, 0, 0);
        e[5..9].copy_from_slice(&server.to_le_bytes());
        e
    }

    #[test]
    fn a_continuing_archive_refuses_gaps_and_another_history() {
        let txn = |server, seq| [gtid_from(server, seq), rows(), xid(100)];
        let feed_all = |s: &mut Segmenter, events: &[Vec<u8>]| -> Result<(), BinlogError> {
            events.iter().try_for_each(|e| s.feed(e))
        };
        // Another source's binlog replays the archived transactions (server 1) before its
        // own (server 2): they are skipped, then its own follow on.
        let mut s = Segmenter::continuing(GtidPos::parse("0-1-3").unwrap());
        s.feed(&fde()).unwrap();
        for seq in 1..=3 {
            feed_all(&mut s, &txn(1, seq)).unwrap();
        }
        feed_all(&mut s, &txn(2, 4)).unwrap();
        feed_all(&mut s, &txn(2, 5)).unwrap();
        let seg = s.take_segment().unwrap();
        assert_eq!(
            (seg.first.to_string(), seg.last.to_string()),
            ("0-2-4".into(), "0-2-5".into())
        );

        // A binlog that starts after the archive's end.
        let mut s = Segmenter::continuing(GtidPos::parse("0-1-3").unwrap());
        s.feed(&fde()).unwrap();
        assert_eq!(
            feed_all(&mut s, &txn(2, 5)),
            Err(BinlogError::Gap {
                domain: 0,
                after: "0-1-3".parse().unwrap(),
                next: "0-2-5".parse().unwrap()
            })
        );
        assert!(s.take_segment().is_none(), "nothing after a gap is taken");

        // The archive's last transaction is another one on this source.
        let mut s = Segmenter::continuing(GtidPos::parse("0-1-3").unwrap());
        s.feed(&fde()).unwrap();
        feed_all(&mut s, &txn(2, 2)).unwrap();
        let e = feed_all(&mut s, &txn(2, 3)).unwrap_err();
        assert!(matches!(e, BinlogError::Diverged { .. }), "{e}");
        assert!(
            e.to_string().contains("0-2-3") && e.to_string().contains("0-1-3"),
            "{e}"
        );

        // A new domain starts anywhere; the plain segmenter (replay) checks nothing.
        let mut s = Segmenter::continuing(GtidPos::parse("0-1-3").unwrap());
        s.feed(&fde()).unwrap();
        feed_all(&mut s, &[gtid(9, 1, 0), rows(), xid(100)]).unwrap();
        let mut s = Segmenter::new(GtidPos::parse("0-1-3").unwrap());
        s.feed(&fde()).unwrap();
        feed_all(&mut s, &txn(2, 7)).unwrap();
    }

    #[test]
    fn events_split_at_whole_boundaries() {
        let mut buf = fde();
        let g = gtid(1, 0, 0);
        buf.extend_from_slice(&g);
        buf.extend_from_slice(&g[..10]);
        let (events, used) = split_events(&buf).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(used, buf.len() - 10);
        let mut bad = vec![0u8; HEADER_LEN];
        bad[9] = 3;
        assert!(matches!(
            split_events(&bad),
            Err(BinlogError::BadSize { .. })
        ));
        assert_eq!(transactions(b"nope"), Err(BinlogError::BadMagic));
    }
}
