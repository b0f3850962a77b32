//! Cutting a `mariadb-dump` stream into parts that loaders can run at once.
//!
//! The dump is read line by line as it is produced; only the start of each line (and
//! whether it ends a statement) is looked at, so rows of any size and binary data pass
//! through untouched. Sections are recognised by the dump's own comment lines, and only
//! between statements with the `;` delimiter (never inside a routine's or trigger's body,
//! nor inside a statement that spans lines):
//!
//! - the **head**: everything before the first database (the session `SET` lines, the
//!   position comments) — every loader runs it first;
//! - **schema**: each `-- Current Database:` section (`CREATE DATABASE`, `USE`) — run first,
//!   by one loader, before any table part;
//! - **tables**: from `-- Table structure for table` (or `-- Temporary table structure for
//!   view`) to the next section: the table, its rows and its triggers. Whole tables are
//!   packed into parts of about `limit` bytes, one database per part — run concurrently;
//! - **tail**: events, routines, the final view structures and the trailer that restores
//!   the session — run last, by one loader, in dump order.
//!
//! Every part other than the head starts with the `USE` statement of its database, so
//! (after the head) it runs alone.

use std::io;

/// Lines are classified by at most this many leading bytes (section comments are short).
const PREFIX: usize = 4096;

/// What a part holds, which decides when it is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartKind {
    Head,
    Schema,
    Tables,
    Tail,
}

/// A finished table part, as handed to the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePart {
    /// Tables (and temporary view structures) in it, as the dump names them.
    pub tables: Vec<String>,
    /// Uncompressed bytes.
    pub bytes: u64,
}

/// Where table parts go as they are cut: their bytes, then their end.
pub trait PartSink {
    fn write(&mut self, data: &[u8]) -> io::Result<()>;
    fn end_part(&mut self, part: TablePart) -> io::Result<()>;
}

/// The small sections, kept in memory until the dump ends.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rest {
    pub head: Vec<u8>,
    pub schema: Vec<u8>,
    pub tail: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Head,
    Schema,
    Tables,
    Tail,
}

/// The streaming cutter.
pub struct Splitter {
    limit: u64,
    section: Section,
    rest: Rest,
    /// The current line's first bytes, until it is classified.
    line: Vec<u8>,
    /// The current line was classified and its bytes go straight to the section.
    streaming: bool,
    /// The last non-blank byte of the current line (does it end a statement?).
    last: u8,
    /// The last non-blank byte of the last non-blank line.
    last_stmt_byte: u8,
    /// The current line is a `--` comment (it neither opens nor closes a statement).
    comment: bool,
    /// Inside a statement that spans lines, or a `DELIMITER ;;` block.
    open: bool,
    delimiter_default: bool,
    /// The `USE` statement of the current database, and the one each output has seen.
    use_stmt: Vec<u8>,
    /// A `USE` statement that spans lines (a name with a newline) is being collected.
    in_use: bool,
    tail_use: Vec<u8>,
    /// The table part being written.
    part: Option<TablePart>,
    part_use: Vec<u8>,
}

impl Splitter {
    /// A splitter packing table parts up to about `limit` uncompressed bytes.
    pub fn new(limit: u64) -> Self {
        Splitter {
            limit,
            section: Section::Head,
            rest: Rest::default(),
            line: Vec::new(),
            streaming: false,
            last: b'\n',
            last_stmt_byte: b';',
            comment: false,
            open: false,
            delimiter_default: true,
            use_stmt: Vec::new(),
            in_use: false,
            tail_use: Vec::new(),
            part: None,
            part_use: Vec::new(),
        }
    }

    /// Feed the next bytes of the dump.
    pub fn feed(&mut self, mut data: &[u8], sink: &mut dyn PartSink) -> io::Result<()> {
        while !data.is_empty() {
            let nl = data.iter().position(|&b| b == b'\n');
            let (piece, more) = match nl {
                Some(i) => (&data[..=i], &data[i + 1..]),
                None => (data, &data[data.len()..]),
            };
            data = more;
            let ends = nl.is_some();
            let body = if ends {
                &piece[..piece.len() - 1]
            } else {
                piece
            };
            if let Some(&b) = body.iter().rev().find(|b| !b.is_ascii_whitespace()) {
                self.last = b;
                self.last_stmt_byte = b;
            }
            if self.streaming {
                self.emit(piece, sink)?;
            } else {
                self.line.extend_from_slice(piece);
                if ends || self.line.len() >= PREFIX {
                    let line = std::mem::take(&mut self.line);
                    self.classify(&line, sink)?;
                    self.emit(&line, sink)?;
                    self.streaming = !ends;
                }
            }
            if ends {
                self.streaming = false;
                self.line_ended();
            }
        }
        Ok(())
    }

    /// The dump ended: the last table part is closed, the small sections returned.
    pub fn finish(mut self, sink: &mut dyn PartSink) -> io::Result<Rest> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.classify(&line, sink)?;
            self.emit(&line, sink)?;
        }
        self.close_part(sink)?;
        Ok(self.rest)
    }

    /// Book-keeping at the end of a line: is a statement still open?
    fn line_ended(&mut self) {
        let blank = self.last == b'\n';
        self.last = b'\n';
        if self.in_use || self.comment || blank || !self.delimiter_default {
            return;
        }
        self.open = self.last_stmt_byte != b';';
    }

    /// Decide, from its first bytes, which section a line starts.
    fn classify(&mut self, line: &[u8], sink: &mut dyn PartSink) -> io::Result<()> {
        self.comment = false;
        if self.in_use {
            self.use_stmt.extend_from_slice(line);
            self.in_use = odd_backticks(&self.use_stmt);
            return Ok(());
        }
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        self.comment = !self.open && text.starts_with(b"--");
        if text.starts_with(b"DELIMITER ") {
            self.delimiter_default = text.trim_ascii_end() == b"DELIMITER ;";
            self.open = !self.delimiter_default;
            return Ok(());
        }
        if self.open || !self.delimiter_default {
            return Ok(());
        }
        if text.starts_with(b"USE `") {
            self.use_stmt = line.to_vec();
            // The name holds a newline: the statement goes on.
            self.in_use = odd_backticks(&self.use_stmt);
            return Ok(());
        }
        let Some(comment) = text.strip_prefix(b"-- ") else {
            if text.starts_with(b"/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE") {
                self.enter(Section::Tail, sink)?;
            }
            return Ok(());
        };
        if comment.starts_with(b"Current Database: ") {
            self.enter(Section::Schema, sink)?;
        } else if let Some(name) = comment
            .strip_prefix(b"Table structure for table ")
            .or_else(|| comment.strip_prefix(b"Temporary table structure for view "))
        {
            self.start_table(name, sink)?;
        } else if comment.starts_with(b"Dumping events for database ")
            || comment.starts_with(b"Dumping routines for database ")
            || comment.starts_with(b"Final view structure for view ")
        {
            self.enter(Section::Tail, sink)?;
        }
        Ok(())
    }

    fn enter(&mut self, section: Section, sink: &mut dyn PartSink) -> io::Result<()> {
        if section != Section::Tables {
            self.close_part(sink)?;
        }
        self.section = section;
        Ok(())
    }

    /// A table starts: in the open part while it is small and of the same database.
    fn start_table(&mut self, name: &[u8], sink: &mut dyn PartSink) -> io::Result<()> {
        let full = self
            .part
            .as_ref()
            .is_some_and(|p| p.bytes >= self.limit || self.part_use != self.use_stmt);
        if full {
            self.close_part(sink)?;
        }
        self.section = Section::Tables;
        if self.part.is_none() {
            self.part = Some(TablePart {
                tables: Vec::new(),
                bytes: 0,
            });
            self.part_use = self.use_stmt.clone();
            let use_stmt = self.use_stmt.clone();
            self.emit(&use_stmt, sink)?;
        }
        let name = String::from_utf8_lossy(name).trim().to_string();
        self.part.as_mut().expect("part is open").tables.push(name);
        Ok(())
    }

    fn close_part(&mut self, sink: &mut dyn PartSink) -> io::Result<()> {
        match self.part.take() {
            Some(p) => sink.end_part(p),
            None => Ok(()),
        }
    }

    /// Route bytes to the current section (a `USE` first where its database changed).
    fn emit(&mut self, data: &[u8], sink: &mut dyn PartSink) -> io::Result<()> {
        match self.section {
            Section::Head => self.rest.head.extend_from_slice(data),
            Section::Schema => self.rest.schema.extend_from_slice(data),
            Section::Tail => {
                if self.tail_use != self.use_stmt && !self.in_use {
                    self.tail_use = self.use_stmt.clone();
                    if !data.starts_with(b"USE `") {
                        let u = self.use_stmt.clone();
                        self.rest.tail.extend_from_slice(&u);
                    }
                }
                self.rest.tail.extend_from_slice(data)
            }
            Section::Tables => {
                if let Some(p) = self.part.as_mut() {
                    p.bytes += data.len() as u64;
                }
                sink.write(data)?;
            }
        }
        Ok(())
    }
}

/// An unclosed backtick-quoted name (a name may hold a newline).
fn odd_backticks(s: &[u8]) -> bool {
    s.iter().filter(|&&b| b == b'`').count() % 2 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        cur: Vec<u8>,
        parts: Vec<(TablePart, Vec<u8>)>,
    }

    impl PartSink for Collect {
        fn write(&mut self, data: &[u8]) -> io::Result<()> {
            self.cur.extend_from_slice(data);
            Ok(())
        }
        fn end_part(&mut self, part: TablePart) -> io::Result<()> {
            let bytes = std::mem::take(&mut self.cur);
            assert_eq!(part.bytes, bytes.len() as u64);
            self.parts.push((part, bytes));
            Ok(())
        }
    }

    fn split(dump: &[u8], limit: u64, chunk: usize) -> (Rest, Vec<(TablePart, Vec<u8>)>) {
        let mut s = Splitter::new(limit);
        let mut sink = Collect::default();
        for c in dump.chunks(chunk.max(1)) {
            s.feed(c, &mut sink).unwrap();
        }
        let rest = s.finish(&mut sink).unwrap();
        assert!(sink.cur.is_empty(), "bytes after the last part");
        (rest, sink.parts)
    }

    const HEAD: &str = "/*M!999999\\- enable the sandbox mode */ \n\
-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)\n\
--\n-- Host: 127.0.0.1    Database: a\n\
-- ------------------------------------------------------\n\
-- Server version\t10.11.19-MariaDB-0+deb12u1-log\n\n\
/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n\
/*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */;\n\
/*!40103 SET TIME_ZONE='+00:00' */;\n\n\
--\n-- Position to start replication or point-in-time recovery from\n--\n\n\
-- CHANGE MASTER TO MASTER_LOG_FILE='binlog.000001', MASTER_LOG_POS=838;\n\n";

    fn table(name: &str, rows: &str, trigger: bool) -> String {
        let mut s = format!(
            "--\n-- Table structure for table `{name}`\n--\n\n\
DROP TABLE IF EXISTS `{name}`;\n\
CREATE TABLE `{name}` (\n  `id` int(11) NOT NULL,\n  `c` varchar(10) DEFAULT NULL COMMENT ';',\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB;\n\n\
--\n-- Dumping data for table `{name}`\n--\n\n\
LOCK TABLES `{name}` WRITE;\n\
INSERT INTO `{name}` VALUES {rows};\n\
UNLOCK TABLES;\n"
        );
        if trigger {
            s.push_str(
                "DELIMITER ;;\n/*!50003 CREATE*/ /*!50003 TRIGGER `t` BEFORE INSERT ON `x` FOR EACH ROW BEGIN\n\
SET @a = '\n-- Table structure for table `fake`\n';\nEND */;;\nDELIMITER ;\n",
            );
        }
        s
    }

    /// A database's section; a newline in its name continues the comment (as the dump
    /// writes it) but not the statements.
    fn db(name: &str) -> String {
        let commented = name.replace('\n', "\n-- ");
        format!(
            "--\n-- Current Database: `{commented}`\n--\n\n\
CREATE DATABASE /*!32312 IF NOT EXISTS*/ `{name}`;\n\nUSE `{name}`;\n\n"
        )
    }

    const TRAILER: &str = "/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;\n\n\
/*!40101 SET CHARACTER_SET_CLIENT=@OLD_CHARACTER_SET_CLIENT */;\n\n\
-- Dump completed on 2026-11-26 22:00:00\n";

    fn sample() -> String {
        let mut d = String::from(HEAD);
        d += &db("a");
        d += &table("t1", "(1,'x'),(2,0x00FF0A)", true);
        d += &table("t2", "(1,'-- Table structure for table `no`')", false);
        d += "--\n-- Dumping routines for database 'a'\n--\nDELIMITER ;;\nCREATE PROCEDURE p()\nBEGIN\n\
SELECT '\n-- Table structure for table `no`\n';\nEND ;;\nDELIMITER ;\n";
        d += &db("b\nc");
        d += &table("u1", "(1,'y')", false);
        d += "--\n-- Current Database: `a`\n--\n\nUSE `a`;\n\n\
--\n-- Final view structure for view `v`\n--\n\nCREATE VIEW `v` AS SELECT 1;\n";
        d += TRAILER;
        d
    }

    #[test]
    fn sections_land_in_their_parts() {
        let dump = sample();
        let (rest, parts) = split(dump.as_bytes(), 1 << 30, 1 << 20);
        let head = String::from_utf8(rest.head).unwrap();
        assert!(head.ends_with("MASTER_LOG_POS=838;\n\n--\n"), "{head}");
        let schema = String::from_utf8(rest.schema).unwrap();
        assert!(schema.contains("CREATE DATABASE /*!32312 IF NOT EXISTS*/ `a`"));
        assert!(schema.contains("`b\nc`"));
        assert!(!schema.contains("INSERT"));
        let names: Vec<_> = parts.iter().map(|(p, _)| p.tables.clone()).collect();
        assert_eq!(
            names,
            vec![
                vec!["`t1`".to_string(), "`t2`".to_string()],
                vec!["`u1`".to_string()]
            ]
        );
        let first = String::from_utf8(parts[0].1.clone()).unwrap();
        assert!(
            first.starts_with("USE `a`;\n-- Table structure for table `t1`"),
            "{first}"
        );
        assert!(first.contains("END */;;\nDELIMITER ;\n"), "trigger stays");
        let second = String::from_utf8(parts[1].1.clone()).unwrap();
        assert!(second.starts_with("USE `b\nc`;\n"), "{second}");
        let tail = String::from_utf8(rest.tail).unwrap();
        assert!(tail.starts_with("USE `a`;\n-- Dumping routines"), "{tail}");
        assert!(tail.contains("CREATE VIEW `v`"));
        assert!(tail.ends_with(TRAILER));
        assert!(!tail.contains("INSERT"));
    }

    #[test]
    fn small_limit_gives_one_table_per_part() {
        let (_, parts) = split(sample().as_bytes(), 1, 7);
        let names: Vec<_> = parts.iter().map(|(p, _)| p.tables.len()).collect();
        assert_eq!(names, vec![1, 1, 1]);
    }

    #[test]
    fn nothing_is_lost_or_reordered_at_any_chunking() {
        let dump = sample();
        let (whole_rest, whole) = split(dump.as_bytes(), 100, 1 << 20);
        for chunk in [1, 2, 3, 5, 64, 4095, 4097] {
            let (rest, parts) = split(dump.as_bytes(), 100, chunk);
            assert_eq!(rest, whole_rest, "chunk {chunk}");
            assert_eq!(parts, whole, "chunk {chunk}");
        }
    }

    /// Every byte of the dump is in exactly one output, in order, besides the added
    /// `USE` lines.
    fn reassembled(rest: &Rest, parts: &[(TablePart, Vec<u8>)]) -> usize {
        rest.head.len()
            + rest.schema.len()
            + rest.tail.len()
            + parts.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_pass_through(
            tables in proptest::collection::vec(
                (proptest::collection::vec(proptest::num::u8::ANY, 0..300), proptest::bool::ANY),
                0..6),
            limit in 1u64..2000,
            chunk in 1usize..5000,
        ) {
            let mut d = String::from(HEAD);
            d += &db("a");
            let mut expect = Vec::new();
            for (i, (rows, trig)) in tables.iter().enumerate() {
                // binary row data (hex-blob off) with newlines escaped as the dump does
                let text: String = rows.iter().map(|&b| match b {
                    b'\n' => "\\n".to_string(),
                    b'\'' => "\\'".to_string(),
                    b'\\' => "\\\\".to_string(),
                    b if b.is_ascii() => (b as char).to_string(),
                    b => format!("\\x{b:02x}"),
                }).collect();
                d += &table(&format!("t{i}"), &format!("(1,'{text}')"), *trig);
                expect.push(format!("`t{i}`"));
            }
            d += TRAILER;
            let (rest, parts) = split(d.as_bytes(), limit, chunk);
            let got: Vec<String> = parts.iter().flat_map(|(p, _)| p.tables.clone()).collect();
            proptest::prop_assert_eq!(got, expect);
            // each part, and the tail, start with the database's USE
            let uses = (parts.len() + 1) * "USE `a`;\n".len();
            proptest::prop_assert_eq!(reassembled(&rest, &parts), d.len() + uses);
            proptest::prop_assert!(rest.tail.ends_with(TRAILER.as_bytes()));
        }
    }
}
