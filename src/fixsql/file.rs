//! Fix SQL files: their names, header (sources, read points, session settings), per-range
//! blocks and footer, and the buffered writer that puts them together.

use super::render::single_line;
use super::APPLY_SESSION_SETTINGS;
use crate::error::{Error, Result};
use crate::schema::TableRef;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Longest file name stem (before `.sql`); longer names are cut and made unique by a hash.
/// Leaves room under the usual 255-byte limit for suffixes other tools add.
pub(super) const MAX_FILE_STEM: usize = 200;

/// Where the data came from; printed in the file header so a fix file can be judged later.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixHeader {
    /// Upstream source (name, address).
    pub upstream: String,
    /// Downstream source (name, address).
    pub downstream: String,
    /// The point the upstream was read at (snapshot, GTID set, or "live").
    pub upstream_point: String,
    /// The point the downstream was read at.
    pub downstream_point: String,
    /// Why applying the file on the downstream needs care (it is a replica), if it does.
    pub replica_warning: Option<String>,
    /// `[task] fix-sql-binlog = "skip"`: the file turns binary logging off for its session.
    pub skip_binlog: bool,
}

/// Which of a table's two files is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `fix-on-<target>/`: makes the downstream equal to the upstream.
    Fix,
    /// `undo-on-<target>/`: applied after the fix, puts the downstream back as it was read.
    Undo,
}

/// Lines that open the `DELETE` and the write section of an undo part (statement lines never
/// start with `--`: literals with control characters are hex).
const UNDO_DELETES_MARK: &str = "-- undo deletes";
const UNDO_WRITES_MARK: &str = "-- undo writes";

/// One range's undo statements as saved in a part file (one or more per chunk): its
/// `DELETE`s, then its writes. [`FixSqlWriter::append_undo_parts`] puts every range's
/// `DELETE`s before any write.
pub fn undo_part(range_description: &str, deletes: &str, writes: &str) -> String {
    let mut text = format!("{UNDO_DELETES_MARK}\n");
    if !deletes.is_empty() {
        text.push_str(&chunk_block(range_description, deletes));
    }
    text.push_str(UNDO_WRITES_MARK);
    text.push('\n');
    if !writes.is_empty() {
        text.push_str(&chunk_block(range_description, writes));
    }
    text
}

/// `<schema>.<table>.sql`, each name percent-encoded outside `[A-Za-z0-9_-]` (so `.`
/// separates unambiguously and any identifier is a valid file name). Names too long for a
/// file system are cut and suffixed with `~` and a hash of the full names.
pub fn file_name(table: &TableRef) -> String {
    let mut stem = format!(
        "{}.{}",
        percent_encode(&table.schema),
        percent_encode(&table.table)
    );
    if stem.len() > MAX_FILE_STEM {
        let mut cut = MAX_FILE_STEM - 17;
        // Do not split a `%XX` triplet.
        if let Some(p) = stem[cut - 2..cut].find('%') {
            cut = cut - 2 + p;
        }
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(table.schema.as_bytes());
        h.update(&[0]);
        h.update(table.table.as_bytes());
        stem.truncate(cut);
        stem.push_str(&format!("~{:016x}", h.digest()));
    }
    stem.push_str(".sql");
    stem
}

fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Writes one table's fix SQL file: header and session settings, then one block per
/// differing range, then `COMMIT` and the restored settings. Output is buffered; the file is
/// opened by [`FixSqlWriter::create`], so create it only once a difference is known. A file
/// whose writer was dropped without [`FixSqlWriter::finish`] has no `COMMIT` and changes
/// nothing when applied.
#[derive(Debug)]
pub struct FixSqlWriter {
    path: PathBuf,
    out: BufWriter<File>,
    kind: FileKind,
    skip_binlog: bool,
}

impl FixSqlWriter {
    /// Create (truncate) `dir/<file_name(table)>`, creating `dir` if needed.
    pub fn create(dir: &Path, table: &TableRef, header: &FixHeader) -> Result<FixSqlWriter> {
        Self::create_kind(dir, table, header, FileKind::Fix)
    }

    /// Create (truncate) the undo file `dir/<file_name(table)>` (see [`FileKind::Undo`]).
    pub fn create_kind(
        dir: &Path,
        table: &TableRef,
        header: &FixHeader,
        kind: FileKind,
    ) -> Result<FixSqlWriter> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Output {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(file_name(table));
        let file = File::create(&path).map_err(|source| Error::Output {
            path: path.clone(),
            source,
        })?;
        let mut w = FixSqlWriter {
            path,
            out: BufWriter::with_capacity(64 * 1024, file),
            kind,
            skip_binlog: header.skip_binlog,
        };
        let text = header_text(table, header, &utc_now(), kind);
        w.write(text.as_bytes())?;
        Ok(w)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Add one range's statements (as from [`render_changes`]) under a `-- range:` line.
    ///
    /// [`render_changes`]: super::render_changes
    pub fn append_chunk(&mut self, range_description: &str, statements: &str) -> Result<()> {
        self.write(chunk_block(range_description, statements).as_bytes())
    }

    /// Add the contents of a part file: blocks rendered by [`chunk_block`] and saved while
    /// the table was being checked (one part per chunk, joined in key order at the end).
    pub fn append_part(&mut self, part: &Path) -> Result<()> {
        let mut f = File::open(part).map_err(|source| Error::Output {
            path: part.to_path_buf(),
            source,
        })?;
        std::io::copy(&mut f, &mut self.out).map_err(|source| Error::Output {
            path: self.path.clone(),
            source,
        })?;
        Ok(())
    }

    /// Add undo part files (as from [`undo_part`]), in key order: first the `DELETE`s of
    /// every part, then the writes of every part. Deleting first everywhere keeps a row the
    /// fix wrote under a case-insensitive key from colliding with the row the undo puts
    /// back in another range.
    pub fn append_undo_parts(&mut self, parts: &[PathBuf]) -> Result<()> {
        for half in 0..2 {
            for part in parts {
                let text = std::fs::read_to_string(part).map_err(|source| Error::Output {
                    path: part.to_path_buf(),
                    source,
                })?;
                let mut writing = false;
                for line in text.split_inclusive('\n') {
                    match line.trim_end_matches('\n') {
                        UNDO_DELETES_MARK => writing = false,
                        UNDO_WRITES_MARK => writing = true,
                        _ if writing == (half == 1) => self.write(line.as_bytes())?,
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// Write the footer, flush, and return the file's path.
    pub fn finish(mut self) -> Result<PathBuf> {
        let footer = footer_text(self.kind, self.skip_binlog);
        self.write(footer.as_bytes())?;
        let FixSqlWriter { path, out, .. } = self;
        match out.into_inner() {
            Ok(_) => Ok(path),
            Err(e) => Err(Error::Output {
                path,
                source: e.into_error(),
            }),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|source| Error::Output {
            path: self.path.clone(),
            source,
        })
    }
}

/// One range's statements (as from [`render_changes`]) under a `-- range:` line: the text
/// [`FixSqlWriter::append_chunk`] adds to a file.
///
/// [`render_changes`]: super::render_changes
pub fn chunk_block(range_description: &str, statements: &str) -> String {
    let mut text = format!("\n-- range: {}\n", single_line(range_description));
    text.push_str(statements);
    if !statements.is_empty() && !statements.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// Saves the session settings the file changes, so `source`-ing it in an interactive
/// session leaves that session as it was.
const SAVE_SETTINGS: &str = "SET @syncgate_fk = @@SESSION.foreign_key_checks, \
@syncgate_tz = @@SESSION.time_zone, \
@syncgate_cs_client = @@SESSION.character_set_client, \
@syncgate_cs_results = @@SESSION.character_set_results, \
@syncgate_coll_conn = @@SESSION.collation_connection;\n";

const FOOTER: &str = "\nCOMMIT;\n\
SET SESSION foreign_key_checks = @syncgate_fk;\n\
SET time_zone = @syncgate_tz;\n\
SET character_set_client = @syncgate_cs_client, \
character_set_results = @syncgate_cs_results, \
collation_connection = @syncgate_coll_conn;\n";

/// Turns binary logging off for the file's session (`fix-sql-binlog = "skip"`); the footer
/// turns it back on. Needs the SUPER (MariaDB: BINLOG ADMIN) privilege.
pub const SKIP_BINLOG: &str = "SET SESSION sql_log_bin = 0";

fn footer_text(kind: FileKind, skip_binlog: bool) -> String {
    let mut s = FOOTER.to_string();
    if skip_binlog {
        s.push_str("SET SESSION sql_log_bin = @syncgate_log_bin;\n");
    }
    s.push_str(match kind {
        FileKind::Fix => "-- end of fix SQL\n",
        FileKind::Undo => "-- end of undo SQL\n",
    });
    s
}

fn header_text(table: &TableRef, h: &FixHeader, time: &str, kind: FileKind) -> String {
    let mut s = String::new();
    let name = file_name(table);
    match kind {
        FileKind::Fix => s.push_str(&format!(
            "-- Fix SQL generated by syncgate {} at {time}.\n",
            env!("CARGO_PKG_VERSION")
        )),
        FileKind::Undo => s.push_str(&format!(
            "-- Undo SQL generated by syncgate {} at {time}.\n\
             -- It undoes fix-on-<downstream>/{name}: applied AFTER that fix file, it puts the\n\
             -- downstream rows back as they were read (extra rows re-inserted, changed rows\n\
             -- restored, inserted rows deleted). DELETEs of all ranges come before the writes.\n",
            env!("CARGO_PKG_VERSION")
        )),
    }
    s.push_str(&format!(
        "-- Table (downstream name): {}\n",
        single_line(&table.quoted())
    ));
    s.push_str(&format!(
        "-- Upstream:   {} -- read at: {}\n",
        single_line(&h.upstream),
        single_line(&h.upstream_point)
    ));
    s.push_str(&format!(
        "-- Downstream: {} -- read at: {}\n",
        single_line(&h.downstream),
        single_line(&h.downstream_point)
    ));
    s.push_str(
        "--
-- Apply to the DOWNSTREAM only, e.g.: mariadb -h HOST -u USER -p < FILE (or mysql).
-- It writes the upstream rows as they were read: rows changed since the check are
-- overwritten, so re-check first if either side is being written to.
--
-- Session settings (saved first and restored at the end):
--   SET NAMES utf8mb4          the literals are utf8mb4 text.
--   SET time_zone = '+00:00'   TIMESTAMP values were read in UTC.
--   foreign_key_checks = 0     REPLACE is a delete plus an insert: with checks on it would
--                              fail on, or CASCADE to, child rows, and the files of related
--                              tables would have to run in dependency order. The rows
--                              written are the upstream's, so once every fix file is
--                              applied the references are as consistent as upstream.
-- All statements run in one transaction: when a statement fails the client stops (unless
-- run with --force) and the transaction is rolled back on disconnect; a truncated file has
-- no COMMIT. Within each range, DELETEs come before REPLACE/INSERT.
",
    );
    if let Some(w) = &h.replica_warning {
        s.push_str(&format!("--\n-- WARNING: {}\n", single_line(w)));
    }
    s.push_str(SAVE_SETTINGS);
    if h.skip_binlog {
        s.push_str(&format!(
            "-- fix-sql-binlog = \"skip\": not binary-logged, so a replica's GTIDs stay its source's.\n\
             SET @syncgate_log_bin = @@SESSION.sql_log_bin;\n{SKIP_BINLOG};\n"
        ));
    }
    for setting in APPLY_SESSION_SETTINGS {
        s.push_str(setting);
        s.push_str(";\n");
    }
    s.push_str("START TRANSACTION;\n");
    s
}

/// The file, beside the tables' fix files, that moves the downstream's AUTO_INCREMENT
/// counters and sequences (`check::metadata`). Its name has no `schema.table` form, so no
/// table's file can have it.
pub const METADATA_FILE: &str = "metadata.sql";

/// The text of [`METADATA_FILE`]: per item a comment and its statements. They are DDL (or
/// `SETVAL`), which commits by itself: no transaction, and each only moves a counter or a
/// sequence forward, so running the file twice is harmless.
pub fn metadata_fix_text(h: &FixHeader, items: &[(String, Vec<String>)]) -> String {
    let mut s = format!(
        "-- Fix SQL generated by syncgate {} at {}.\n\
         -- AUTO_INCREMENT counters and sequences of the downstream (rows are in the tables' files).\n",
        env!("CARGO_PKG_VERSION"),
        utc_now()
    );
    s.push_str(&format!(
        "-- Upstream:   {} -- read at: {}\n-- Downstream: {} -- read at: {}\n",
        single_line(&h.upstream),
        single_line(&h.upstream_point),
        single_line(&h.downstream),
        single_line(&h.downstream_point)
    ));
    s.push_str(
        "--\n-- Apply to the DOWNSTREAM only, after the tables' fix files. Each statement commits\n\
         -- by itself; none moves a counter or a sequence backwards.\n",
    );
    if let Some(w) = &h.replica_warning {
        s.push_str(&format!("--\n-- WARNING: {}\n", single_line(w)));
    }
    if h.skip_binlog {
        s.push_str(&format!(
            "SET @syncgate_log_bin = @@SESSION.sql_log_bin;\n{SKIP_BINLOG};\n"
        ));
    }
    for (comment, statements) in items {
        s.push_str(&format!("\n-- {}\n", single_line(comment)));
        for st in statements {
            s.push_str(st);
            s.push_str(";\n");
        }
    }
    if h.skip_binlog {
        s.push_str("SET SESSION sql_log_bin = @syncgate_log_bin;\n");
    }
    s.push_str("-- end of fix SQL\n");
    s
}

/// Current UTC time as `YYYY-MM-DD HH:MM:SS UTC`, from the system clock.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_utc(secs)
}

/// Format Unix seconds as UTC (days-to-civil conversion, proleptic Gregorian).
pub(super) fn format_utc(secs: u64) -> String {
    let rem = secs % 86_400;
    let (year, month, day) = crate::civil::civil_from_days(i128::from(secs / 86_400));
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Where an earlier run's fix SQL went when a new run started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superseded {
    pub files: usize,
    pub moved_to: PathBuf,
}

/// Moves the `.sql` files an earlier run left in `fix_dir` to
/// `<output_dir>/superseded/<that run's start>/<fix_dir's name>/`, so that no fix SQL in the
/// output directory looks current unless this run wrote it: applying a fix written for data
/// that has changed since would damage it. The earlier run is named by `started_at` of the
/// `summary.json` it left (the file's time when it left none).
pub fn supersede_previous(output_dir: &Path, fix_dir: &Path) -> Result<Option<Superseded>> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Output { path, source }
    };
    let entries = match std::fs::read_dir(fix_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(fix_dir)(e)),
    };
    let files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "sql"))
        .collect();
    let Some(first) = files.first() else {
        return Ok(None);
    };
    let summary = output_dir.join(crate::report::summary::SUMMARY_JSON);
    let started = std::fs::read_to_string(&summary)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v["started_at"].as_str().map(str::to_string))
        .or_else(|| {
            let modified = first.metadata().ok()?.modified().ok()?;
            let secs = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
            Some(format_utc(secs.as_secs()))
        })
        .unwrap_or_else(|| "unknown".into());
    let stamp: String = started
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = fix_dir.file_name().unwrap_or(fix_dir.as_os_str());
    let root = output_dir.join("superseded");
    let mut moved_to = root.join(&stamp).join(name);
    let mut n = 2;
    while moved_to.exists() {
        moved_to = root.join(format!("{stamp}.{n}")).join(name);
        n += 1;
    }
    std::fs::create_dir_all(&moved_to).map_err(io(&moved_to))?;
    for file in &files {
        let to = moved_to.join(file.file_name().unwrap_or_default());
        std::fs::rename(file, &to).map_err(io(file))?;
    }
    Ok(Some(Superseded {
        files: files.len(),
        moved_to,
    }))
}
