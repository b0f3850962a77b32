//! A table's comparison plan: which columns are compared, which key orders and splits it,
//! and the SQL each side runs. Pure.
//!
//! # How values are read
//!
//! Each compared column is read by one expression per side, the same in the row stream as
//! in the checksum (so the merge compares what the checksum hashed, and fix SQL writes it):
//!
//! - FLOAT as `CAST(c AS DOUBLE)`: the server prints FLOAT with about 6 significant digits,
//!   which would hide differences and could not restore the value; the 17 digits of the
//!   widened value identify the float exactly and write it back exactly.
//! - BIT as `CAST(c AS UNSIGNED)` (the protocol's big-endian bytes depend on the width).
//! - A column whose two sides differ only in how a value is written — DECIMAL or integer of
//!   different scales, DATETIME/TIMESTAMP or TIME of different fractional precision — is
//!   cast on both sides to one common type (`DECIMAL(M,S)`, `DATETIME(f)`, `TIME(f)`), so
//!   `1.50` and `1.500` compare equal. Without a common type that holds every value of both
//!   sides (more than 65 digits) the text is compared as is.
//!
//! # How keys are ordered
//!
//! The merge needs both row streams in one order and a client-side sort value per key column
//! that orders exactly like the server's `ORDER BY` ([`KeyKind`]):
//!
//! - numbers by value (FLOAT and BIT keys read as above), temporal values by their text,
//!   ENUM/SET by their index (`c+0`), binary strings by their bytes;
//! - character strings by `WEIGHT_STRING(c AS CHAR(n))`, `n` the column's length: PAD SPACE
//!   collations (MariaDB's default ones, `utf8mb4_bin` included) compare as if the shorter
//!   string were padded with spaces, and plain `WEIGHT_STRING(c)` does not pad, so `'a\t'`
//!   would sort after `'a'` on the client and before it on the server. NO PAD collations
//!   (`…nopad…`, MySQL `…_0900_…`) and TEXT columns use `WEIGHT_STRING(c)`.
//!
//! When the two sides would order a key column differently — another collation (or charset),
//! ENUM/SET members defined differently, string types of different kinds, or types that are
//! not ordered by a server collation at all (UUID, INET6, spatial) — the key column is
//! ordered on both sides by its utf8mb4 bytes, `CAST(CONVERT(c USING utf8mb4) AS BINARY)`
//! (binary strings by their bytes). Both servers compute that identically, so keys are
//! matched on a binary basis: `'abc'` and `'ABC'` are two keys. No index serves that order,
//! so such a table is not split into key-range chunks: it is checksummed as one range, and
//! a difference is located by checksums of key-hash buckets, then the differing buckets'
//! rows are merged in byte order (a sort of those rows per side).
//! Types that cannot be ordered alike at all (a number on one side, a string on the other)
//! are refused for the data check.

use crate::checksum::value_expr_with;
use crate::row::KeyKind;
use crate::schema::{Column, TableRef, TableSchema, TypeClass};
use crate::sql::quote_ident;

/// Which side a statement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Up,
    Down,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::Up => 0,
            Side::Down => 1,
        }
    }
}

/// [`TablePlan::rows_in_ranges_sql`] writes at most this many ranges as an `OR`.
const MAX_OR_RANGES: usize = 8;

/// How one key column is ordered and bounded on both sides.
#[derive(Debug, Clone)]
struct KeyPart {
    /// Position in the compared columns.
    pos: usize,
    /// `ORDER BY` expression (upstream, downstream).
    order: [String; 2],
    /// Sort value streamed with each row (upstream, downstream).
    sort: [String; 2],
    kind: KeyKind,
    /// Ordered by bytes (`order` is a binary string): bounds are compared with `order` and
    /// hex literals.
    binary: bool,
}

/// Everything needed to compare one table.
#[derive(Debug, Clone)]
pub struct TablePlan {
    /// Downstream name (reports and fix SQL use it).
    pub target: TableRef,
    /// Upstream name (differs when routes map it).
    pub upstream: TableRef,
    /// Compared columns, upstream definitions, in upstream order.
    pub up_cols: Vec<Column>,
    /// The same columns, downstream definitions, same order.
    pub down_cols: Vec<Column>,
    /// Positions (in the compared columns) of the chunk key, or `None` for keyless tables.
    pub key: Option<Vec<usize>>,
    /// The user's `range` filter, applied on both sides.
    pub filter: Option<String>,
    /// Target rows per chunk (`u64::MAX` when the table is not split).
    pub chunk_size: u64,
    /// Keys are compared on a binary basis (see the module docs): no index serves that
    /// order, so the table is one range, narrowed by key-hash buckets where it differs.
    pub unsplit: bool,
    /// Per compared column: the type both sides are cast to, when they differ only in how
    /// a value is written.
    casts: Vec<Option<String>>,
    /// Per key column, in key order.
    key_parts: Vec<KeyPart>,
    /// Per side (up, down), the index that key-range queries name with `FORCE INDEX`
    /// (`sql-hint-use-index = "auto"`, [`Self::force_key_index`]).
    force_index: [Option<String>; 2],
    /// The upstream's estimate of the table's rows (`information_schema.TABLES`), when
    /// known: a table well within one chunk is not split ([`Self::fits_one_chunk`]).
    pub rows_estimate: Option<u64>,
    /// The downstream's AUTO_INCREMENT counter, checked against the upstream's keys
    /// (`check::metadata`).
    pub counter: Option<Counter>,
    /// A system-versioned table compared with its history: queries read `FOR SYSTEM_TIME
    /// ALL` and no fix SQL is written (MariaDB cannot rewrite single history rows).
    pub history: bool,
    /// Shard merge: every upstream table routed to this target, when there are several
    /// (empty otherwise). The target is compared with their union (`check::union`); this
    /// plan is the first part's and reads the downstream for all of them.
    pub parts: Vec<UpPart>,
}

/// One upstream table of a merged target.
#[derive(Debug, Clone)]
pub struct UpPart {
    /// Index of its upstream source (`source-instances` order).
    pub source: usize,
    /// Which of a worker's connections to that source reads it: the parts of one target on
    /// one source are streamed at once, each on its own connection.
    pub slot: usize,
    /// The plan of this upstream table against the target.
    pub plan: TablePlan,
}

/// A table's AUTO_INCREMENT counters as discovered, before the read points are pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// The AUTO_INCREMENT column's upstream name.
    pub column: String,
    /// The upstream's counter, when the upstream column has the attribute too.
    pub up: Option<u64>,
    pub down: u64,
}

impl TablePlan {
    /// Whether the upstream's row estimate puts the whole table well within one chunk (a
    /// quarter of it): it is then checked as one range, without the splitting queries, which
    /// on a small table cost more than checking it. An estimate too low (statistics not yet
    /// updated after a bulk load) only makes that one chunk larger; a differing chunk is
    /// narrowed the same way whatever its size.
    pub fn fits_one_chunk(&self) -> bool {
        self.rows_estimate
            .is_some_and(|n| n.saturating_mul(4) <= self.chunk_size)
    }

    /// Build a plan from both structures. `ignore` lists columns left out of the comparison;
    /// `index_fields` forces the chunk key. Returns the plan, or why data cannot be compared.
    pub fn new(
        target: TableRef,
        up: &TableSchema,
        down: &TableSchema,
        ignore: &[String],
        index_fields: &[String],
        filter: Option<String>,
        chunk_size: u64,
    ) -> Result<TablePlan, String> {
        let (up_cols, down_cols) = compared_columns(up, down, ignore)?;
        let key_index = if index_fields.is_empty() {
            up.chunk_key().map(|i| i.columns.clone())
        } else {
            Some(forced_key(up, down, index_fields)?)
        };
        let casts: Vec<Option<String>> = up_cols
            .iter()
            .zip(&down_cols)
            .map(|(u, d)| common_cast(u, d))
            .collect();
        let key = match key_index {
            None => None,
            Some(cols) => Some(key_positions(&cols, &up_cols)?),
        };
        let mut plan = TablePlan {
            upstream: up.table.clone(),
            target,
            up_cols,
            down_cols,
            key,
            filter,
            chunk_size: chunk_size.max(1),
            unsplit: false,
            casts,
            key_parts: Vec::new(),
            force_index: [None, None],
            rows_estimate: None,
            counter: None,
            history: false,
            parts: Vec::new(),
        };
        plan.order_keys()?;
        Ok(plan)
    }

    /// Decide how each key column is ordered on both sides ([`key_part`]). When any is
    /// ordered by bytes, no index serves that order: the table becomes one unsplit range,
    /// and the user is told why (module docs, "How keys are ordered").
    fn order_keys(&mut self) -> Result<(), String> {
        let mut parts = Vec::new();
        for &p in self.key.as_deref().unwrap_or(&[]) {
            let select = [
                self.select_expr(Side::Up, p),
                self.select_expr(Side::Down, p),
            ];
            parts.push(key_part(p, &self.up_cols[p], &self.down_cols[p], select)?);
        }
        self.unsplit = parts.iter().any(|k| k.binary);
        if self.unsplit {
            self.chunk_size = u64::MAX;
            let why: Vec<String> = parts
                .iter()
                .filter(|k| k.binary)
                .map(|k| {
                    let (u, d) = (&self.up_cols[k.pos], &self.down_cols[k.pos]);
                    let show = |c: &Column| {
                        format!("{} {}", c.column_type, c.collation.as_deref().unwrap_or(""))
                            .trim_end()
                            .to_string()
                    };
                    format!(
                        "`{}` ({} upstream, {} downstream)",
                        u.name,
                        show(u),
                        show(d)
                    )
                })
                .collect();
            tracing::warn!(
                "{}: key column {} ordered differently on the two sides: keys are compared \
                 as bytes and the table is checked as one range, not split into chunks \
                 (see docs/comparison-rules.md)",
                self.target,
                why.join(", ")
            );
        }
        self.key_parts = parts;
        Ok(())
    }

    /// `sql-hint-use-index = "auto"` on `side`: key-range queries name the index of
    /// `schema` (that side's structure) whose columns are the chunk key's, in key order, with
    /// `FORCE INDEX`. Returns whether there is such an index; there is none to name for a
    /// keyless table, a table keyed by byte order (no index serves that order), or a side
    /// without an index on exactly the key columns. Keyless queries never carry a hint.
    pub fn force_key_index(&mut self, side: Side, schema: &TableSchema) -> bool {
        let cols = self.cols(side);
        let want: Vec<&str> = match &self.key {
            Some(key) if !self.unsplit => key.iter().map(|&p| cols[p].name.as_str()).collect(),
            _ => return false,
        };
        let found = schema.indexes.iter().find(|i| {
            i.columns.len() == want.len()
                && i.columns
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.eq_ignore_ascii_case(b))
        });
        self.force_index[side.index()] = found.map(|i| i.name.clone());
        found.is_some()
    }

    /// What `side`'s queries read `FROM`: the table, and all its row versions when its
    /// history is compared.
    pub fn source(&self, side: Side) -> String {
        let table = self.table(side).quoted();
        match self.history {
            true => format!("{table} FOR SYSTEM_TIME ALL"),
            false => table,
        }
    }

    /// Whether this target is merged from several upstream tables (shard merge).
    pub fn is_merged(&self) -> bool {
        !self.parts.is_empty()
    }

    /// The plan with its sides exchanged: the downstream read as if it were the upstream.
    /// A merged target is split on the downstream, which holds the union of its parts, with
    /// this plan and the splitter's upstream queries.
    pub fn swapped(&self) -> TablePlan {
        let mut p = self.clone();
        std::mem::swap(&mut p.upstream, &mut p.target);
        std::mem::swap(&mut p.up_cols, &mut p.down_cols);
        p.force_index.swap(0, 1);
        for k in &mut p.key_parts {
            k.order.swap(0, 1);
            k.sort.swap(0, 1);
        }
        p.parts.clear();
        p
    }

    pub fn table(&self, side: Side) -> &TableRef {
        match side {
            Side::Up => &self.upstream,
            Side::Down => &self.target,
        }
    }

    pub fn cols(&self, side: Side) -> &[Column] {
        match side {
            Side::Up => &self.up_cols,
            Side::Down => &self.down_cols,
        }
    }

    /// Upstream definitions of the key columns.
    pub fn key_cols(&self) -> Vec<&Column> {
        self.key
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|&p| &self.up_cols[p])
            .collect()
    }

    /// The expression that reads compared column `i` on `side` (module docs, "How values
    /// are read"): what the row stream and key bounds carry.
    fn select_expr(&self, side: Side, i: usize) -> String {
        let c = &self.cols(side)[i];
        let q = quote_ident(&c.name);
        match (&self.casts[i], c.class) {
            (Some(t), _) => format!("CAST({q} AS {t})"),
            (None, TypeClass::Float) => format!("CAST({q} AS DOUBLE)"),
            (None, TypeClass::Bit) => format!("CAST({q} AS UNSIGNED)"),
            _ => q,
        }
    }

    /// The per-row hash expression of `side` over the compared columns (as checksums XOR
    /// it).
    fn row_hash(&self, side: Side) -> String {
        format!("CRC32({})", self.row_crc(side))
    }

    /// The per-row CRC of `side` for rows compared one by one (`(key, hash)` merges).
    fn row_crc(&self, side: Side) -> String {
        let items: Vec<(&Column, String)> = self
            .cols(side)
            .iter()
            .zip(&self.casts)
            .enumerate()
            .map(|(i, (c, cast))| {
                let value = match cast {
                    Some(t) => format!("CAST({} AS {t})", quote_ident(&c.name)),
                    None => value_expr_with(c, self.converts_text(side, i)),
                };
                (c, value)
            })
            .collect();
        crate::checksum::row_crc_expr_of(&items)
    }

    /// Whether compared column `i` is converted to utf8mb4 on `side` before hashing: only
    /// where the sides store it in different charsets, and then on every side not already
    /// in utf8mb4. Each column then hashes in one charset on both sides (its own, or
    /// utf8mb4), so the server's implicit conversions inside `CONCAT_WS`, which depend on the
    /// set of charsets in the row, are the same on both sides.
    fn converts_text(&self, side: Side, i: usize) -> bool {
        let charset = |c: &Column| c.charset.as_deref().map(str::to_ascii_lowercase);
        let (up, down) = (charset(&self.up_cols[i]), charset(&self.down_cols[i]));
        let mine = match side {
            Side::Up => &up,
            Side::Down => &down,
        };
        up != down && mine.as_deref() != Some("utf8mb4")
    }
}

/// The columns compared: upstream's, in upstream order, that exist downstream (by name,
/// case-insensitively) and are not in `ignore`; with their downstream definitions.
fn compared_columns(
    up: &TableSchema,
    down: &TableSchema,
    ignore: &[String],
) -> Result<(Vec<Column>, Vec<Column>), String> {
    let ignored = |name: &str| ignore.iter().any(|i| i.eq_ignore_ascii_case(name));
    let mut up_cols = Vec::new();
    let mut down_cols = Vec::new();
    for c in &up.columns {
        if ignored(&c.name) {
            continue;
        }
        if let Some(d) = down.column(&c.name) {
            up_cols.push(c.clone());
            down_cols.push(d.clone());
        }
    }
    if up_cols.is_empty() {
        return Err("no column exists on both sides".into());
    }
    Ok((up_cols, down_cols))
}

/// The chunk key the user forced with `index-fields`: the columns of the upstream index
/// on exactly those columns (in any order). It must be a primary or unique index with no
/// column nullable on either side, since a NULL key falls in no key range.
fn forced_key(
    up: &TableSchema,
    down: &TableSchema,
    index_fields: &[String],
) -> Result<Vec<String>, String> {
    let wanted: Vec<String> = index_fields
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let found = up.indexes.iter().find(|i| {
        let mut cols: Vec<String> = i.columns.iter().map(|c| c.to_ascii_lowercase()).collect();
        let mut w = wanted.clone();
        cols.sort();
        w.sort();
        cols == w
    });
    match found {
        Some(i) if i.unique || i.primary => {
            // A NULL key falls in no bounded key range: such rows would go unchecked.
            let nullable = i.columns.iter().find(|c| {
                up.column(c).is_some_and(|col| col.nullable)
                    || down.column(c).is_some_and(|col| col.nullable)
            });
            if let Some(c) = nullable {
                return Err(format!(
                    "index-fields ({}) name index `{}`, whose column `{c}` is nullable; \
                     rows with a NULL key could not be placed in a chunk",
                    index_fields.join(", "),
                    i.name
                ));
            }
            Ok(i.columns.clone())
        }
        Some(i) => Err(format!(
            "index-fields ({}) name index `{}`, which is not unique",
            index_fields.join(", "),
            i.name
        )),
        None => Err(format!(
            "index-fields ({}) match no index upstream",
            index_fields.join(", ")
        )),
    }
}

/// Positions of the key columns among the compared columns; a key column that is not
/// compared (ignored, or missing downstream) leaves the table without a usable key.
fn key_positions(key_cols: &[String], up_cols: &[Column]) -> Result<Vec<usize>, String> {
    let mut pos = Vec::new();
    for name in key_cols {
        match up_cols
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
        {
            Some(p) => pos.push(p),
            None => {
                return Err(format!(
                    "key column `{name}` is ignored or missing downstream"
                ))
            }
        }
    }
    Ok(pos)
}

/// The digits inside the first parentheses of a column type: `decimal(10,2)` → `[10, 2]`.
fn type_args(column_type: &str) -> Vec<u32> {
    let Some(open) = column_type.find('(') else {
        return Vec::new();
    };
    let rest = &column_type[open + 1..];
    let inner = &rest[..rest.find(')').unwrap_or(rest.len())];
    inner
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

/// (digits before the point, scale) of an exact numeric column.
fn exact_shape(c: &Column) -> Option<(u32, u32)> {
    match c.class {
        // BIGINT UNSIGNED has 20 digits; every integer fits.
        TypeClass::Int => Some((20, 0)),
        TypeClass::Decimal => match type_args(&c.column_type)[..] {
            [p, s] if s <= p => Some((p - s, s)),
            [p] => Some((p, 0)),
            _ => None,
        },
        _ => None,
    }
}

/// Fractional-second digits of a temporal column (`datetime(6)` → 6).
fn fsp(c: &Column) -> u32 {
    type_args(&c.column_type).first().copied().unwrap_or(0)
}

/// The type both sides of a compared column are cast to, when they differ only in how a
/// value is written (module docs, "How values are read").
fn common_cast(u: &Column, d: &Column) -> Option<String> {
    use TypeClass::*;
    match (u.class, d.class) {
        (Int | Decimal, Int | Decimal) if u.class == Decimal || d.class == Decimal => {
            let (ui, us) = exact_shape(u)?;
            let (di, ds) = exact_shape(d)?;
            if us == ds {
                return None;
            }
            let scale = us.max(ds);
            let digits = ui.max(di) + scale;
            (digits <= 65).then(|| format!("DECIMAL({digits},{scale})"))
        }
        (DateTime | Timestamp, DateTime | Timestamp) if fsp(u) != fsp(d) => {
            Some(format!("DATETIME({})", fsp(u).max(fsp(d))))
        }
        (Time, Time) if fsp(u) != fsp(d) => Some(format!("TIME({})", fsp(u).max(fsp(d)))),
        _ => None,
    }
}

/// Whether a collation compares as if the shorter string were padded with spaces. MariaDB's
/// and MySQL's collations do, except MariaDB's `…nopad…` ones and MySQL 8's `…_0900_…` ones.
fn pads_space(collation: Option<&str>) -> bool {
    let c = collation.unwrap_or("").to_ascii_lowercase();
    !(c.contains("nopad") || c.contains("_0900_"))
}

/// The declared length in characters of a CHAR/VARCHAR column (TINYTEXT: 255); `None` for
/// longer text types.
fn char_length(c: &Column) -> Option<u32> {
    match c.data_type.as_str() {
        "char" | "varchar" => type_args(&c.column_type).first().copied(),
        "tinytext" => Some(255),
        _ => None,
    }
}

/// The order of one key column on both sides (module docs, "How keys are ordered").
/// `select` holds the columns' read expressions (FLOAT and BIT cast, casts to a common
/// type applied).
fn key_part(pos: usize, u: &Column, d: &Column, select: [String; 2]) -> Result<KeyPart, String> {
    use TypeClass::*;
    let family = |c: TypeClass| match c {
        Int | Year | Bit | Decimal | Float | Double => 0,
        Date => 1,
        DateTime | Timestamp => 2,
        Time => 3,
        Text | Json | Binary | Enum | Set | Other => 4,
    };
    let names = [quote_ident(&u.name), quote_ident(&d.name)];
    let native = |sort: [String; 2], kind: KeyKind| KeyPart {
        pos,
        order: names.clone(),
        sort,
        kind,
        binary: false,
    };
    let classes = [u.class, d.class];
    match (family(u.class), family(d.class)) {
        (0, 0) => {
            let kind = if classes.iter().any(|c| matches!(c, Float | Double)) {
                KeyKind::Float
            } else if classes.contains(&Decimal) {
                KeyKind::Decimal
            } else {
                KeyKind::Int
            };
            Ok(native(select, kind))
        }
        (1, 1) | (2, 2) => Ok(native(select, KeyKind::Lexical)),
        (3, 3) => Ok(native(select, KeyKind::Time)),
        (4, 4) => {
            let same_collation = u.collation.as_deref().map(str::to_ascii_lowercase)
                == d.collation.as_deref().map(str::to_ascii_lowercase);
            let same_type = u.column_type == d.column_type;
            match (u.class, d.class) {
                (Text | Json, Text | Json) if same_collation => {
                    let n = char_length(u).zip(char_length(d)).map(|(a, b)| a.max(b));
                    let sort = |q: &String| match n {
                        Some(n) if pads_space(u.collation.as_deref()) => {
                            format!("WEIGHT_STRING({q} AS CHAR({n}))")
                        }
                        _ => format!("WEIGHT_STRING({q})"),
                    };
                    Ok(native([sort(&names[0]), sort(&names[1])], KeyKind::Bytes))
                }
                (Binary, Binary) => Ok(native(names.clone(), KeyKind::Bytes)),
                (Enum, Enum) | (Set, Set) if same_type => Ok(native(
                    [format!("{}+0", names[0]), format!("{}+0", names[1])],
                    KeyKind::Int,
                )),
                _ => {
                    let bytes = |c: &Column, q: &String| match c.class {
                        Binary => q.clone(),
                        _ => format!("CAST(CONVERT({q} USING utf8mb4) AS BINARY)"),
                    };
                    let order = [bytes(u, &names[0]), bytes(d, &names[1])];
                    Ok(KeyPart {
                        pos,
                        sort: order.clone(),
                        order,
                        kind: KeyKind::Bytes,
                        binary: true,
                    })
                }
            }
        }
        _ => Err(format!(
            "key column `{}` is {} upstream and {} downstream; keys of these types cannot be \
             ordered alike on both sides",
            u.name, u.column_type, d.column_type
        )),
    }
}

mod sql;

#[cfg(test)]
mod tests;
