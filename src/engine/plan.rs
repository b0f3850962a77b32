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
//! a difference is bisected with byte-order bounds (each step scans and sorts the range).
//! Types that cannot be ordered alike at all (a number on one side, a string on the other)
//! are refused for the data check.

use crate::checksum::{checksum_sql_from, row_hash_expr_of, value_expr, Aggregate};
use crate::chunk::{range_predicate, row_int, with_filter, Buckets, IntRange, KeyRange};
use crate::diff::RowLayout;
use crate::row::{KeyKind, Row};
use crate::schema::{Column, TableRef, TableSchema, TypeClass};
use crate::sql::{hex_literal, literal, quote_ident};

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
    /// order, so the table is one range, bisected only where it differs.
    pub unsplit: bool,
    /// Per compared column: the type both sides are cast to, when they differ only in how
    /// a value is written.
    casts: Vec<Option<String>>,
    /// Per key column, in key order.
    key_parts: Vec<KeyPart>,
    /// Per side (up, down), the index that key-range queries name with `FORCE INDEX`
    /// (`sql-hint-use-index = "auto"`, [`Self::force_key_index`]).
    force_index: [Option<String>; 2],
}

impl TablePlan {
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
        let key_index = if index_fields.is_empty() {
            up.chunk_key().map(|i| i.columns.clone())
        } else {
            let wanted: Vec<String> = index_fields
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect();
            let found = up.indexes.iter().find(|i| {
                let mut cols: Vec<String> =
                    i.columns.iter().map(|c| c.to_ascii_lowercase()).collect();
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
                    Some(i.columns.clone())
                }
                Some(i) => {
                    return Err(format!(
                        "index-fields ({}) name index `{}`, which is not unique",
                        index_fields.join(", "),
                        i.name
                    ))
                }
                None => {
                    return Err(format!(
                        "index-fields ({}) match no index upstream",
                        index_fields.join(", ")
                    ))
                }
            }
        };
        let casts: Vec<Option<String>> = up_cols
            .iter()
            .zip(&down_cols)
            .map(|(u, d)| common_cast(u, d))
            .collect();
        let key = match key_index {
            None => None,
            Some(cols) => {
                let mut pos = Vec::new();
                for name in &cols {
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
                Some(pos)
            }
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
        };
        let mut parts = Vec::new();
        for &p in plan.key.as_deref().unwrap_or(&[]) {
            let select = [
                plan.select_expr(Side::Up, p),
                plan.select_expr(Side::Down, p),
            ];
            parts.push(key_part(p, &plan.up_cols[p], &plan.down_cols[p], select)?);
        }
        plan.unsplit = parts.iter().any(|k| k.binary);
        if plan.unsplit {
            plan.chunk_size = u64::MAX;
            let why: Vec<String> = parts
                .iter()
                .filter(|k| k.binary)
                .map(|k| {
                    let (u, d) = (&plan.up_cols[k.pos], &plan.down_cols[k.pos]);
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
                plan.target,
                why.join(", ")
            );
        }
        plan.key_parts = parts;
        Ok(plan)
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

    /// What key-range queries of `side` read `FROM`: the table, with its index hint if any.
    fn from(&self, side: Side) -> String {
        let table = self.table(side).quoted();
        match &self.force_index[side.index()] {
            None => table,
            Some(i) if i.eq_ignore_ascii_case("PRIMARY") => {
                format!("{table} FORCE INDEX (PRIMARY)")
            }
            Some(i) => format!("{table} FORCE INDEX ({})", quote_ident(i)),
        }
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

    /// The per-row hash expression of `side` over the compared columns.
    fn row_hash(&self, side: Side) -> String {
        let items: Vec<(&Column, String)> = self
            .cols(side)
            .iter()
            .zip(&self.casts)
            .map(|(c, cast)| {
                let value = match cast {
                    Some(t) => format!("CAST({} AS {t})", quote_ident(&c.name)),
                    None => value_expr(c),
                };
                (c, value)
            })
            .collect();
        row_hash_expr_of(&items)
    }

    /// WHERE clause of a range, with the user's filter (upstream form; the two sides differ
    /// only for keys compared on a binary basis).
    pub fn where_clause(&self, range: &KeyRange) -> String {
        self.where_for(Side::Up, range)
    }

    fn where_for(&self, side: Side, range: &KeyRange) -> String {
        let pred = if self.key.is_none() {
            "TRUE".to_string()
        } else if self.unsplit {
            self.binary_range_predicate(side, range)
        } else {
            range_predicate(&self.key_cols(), range)
        };
        with_filter(pred, self.filter.as_deref())
    }

    /// `range` over the key when some key column is ordered by bytes: those columns are
    /// compared through their binary expression with hex literals, the others as usual.
    fn binary_range_predicate(&self, side: Side, range: &KeyRange) -> String {
        let s = side.index();
        let term = |k: &KeyPart, v: Option<&[u8]>| -> (String, String) {
            if k.binary {
                let lit = v.map(hex_literal).unwrap_or_else(|| "NULL".into());
                (k.order[s].clone(), lit)
            } else {
                let c = &self.up_cols[k.pos];
                (quote_ident(&self.cols(side)[k.pos].name), literal(c, v))
            }
        };
        let bound = |row: &Row, op: &str, last_op: &str| -> String {
            let mut terms = Vec::new();
            for i in 0..self.key_parts.len() {
                let mut parts = Vec::new();
                for (j, k) in self.key_parts.iter().enumerate().take(i + 1) {
                    let (expr, lit) = term(k, row.get(j).and_then(|v| v.as_deref()));
                    let op = if j < i {
                        "="
                    } else if i + 1 == self.key_parts.len() {
                        last_op
                    } else {
                        op
                    };
                    parts.push(format!("{expr} {op} {lit}"));
                }
                terms.push(parts.join(" AND "));
            }
            if terms.len() == 1 {
                terms.pop().unwrap_or_default()
            } else {
                let t: Vec<String> = terms.iter().map(|t| format!("({t})")).collect();
                format!("({})", t.join(" OR "))
            }
        };
        let mut parts = Vec::new();
        if let Some(lower) = &range.lower {
            parts.push(bound(lower, ">", ">"));
        }
        if let Some(upper) = &range.upper {
            parts.push(bound(upper, "<", "<="));
        }
        if parts.is_empty() {
            "TRUE".to_string()
        } else {
            parts.join(" AND ")
        }
    }

    /// The checksum statement of a range on one side.
    pub fn checksum_sql(&self, side: Side, range: &KeyRange) -> String {
        checksum_sql_from(
            &self.from(side),
            &self.row_hash(side),
            &self.where_for(side, range),
            Aggregate::Xor,
        )
    }

    /// The key columns as read, and the key order, of `side`.
    fn key_select_and_order(&self, side: Side) -> (String, String) {
        let s = side.index();
        let select: Vec<String> = self
            .key_parts
            .iter()
            .map(|k| self.select_expr(side, k.pos))
            .collect();
        let order: Vec<&str> = self.key_parts.iter().map(|k| k.order[s].as_str()).collect();
        (select.join(", "), order.join(", "))
    }

    /// Key tuple at `offset` (0-based) within `range`, in key order.
    pub fn key_at_sql(&self, side: Side, range: &KeyRange, offset: u64) -> String {
        if self.unsplit && offset >= self.chunk_size - 1 {
            // The producer asking where the first chunk ends: an unsplit table is one
            // chunk. (Answering the query would sort the whole table for nothing.)
            return "SELECT 1 FROM DUAL WHERE FALSE".to_string();
        }
        let (select, order) = self.key_select_and_order(side);
        format!(
            "SELECT {select} FROM {} WHERE {} ORDER BY {order} LIMIT 1 OFFSET {offset}",
            self.from(side),
            self.where_for(side, range)
        )
    }

    /// The row layout of [`Self::rows_sql`] results.
    pub fn layout(&self) -> RowLayout {
        RowLayout {
            columns: self.up_cols.len(),
            sort_kinds: self.key_parts.iter().map(|k| k.kind).collect(),
        }
    }

    /// The compared columns as read on `side`.
    fn select_list(&self, side: Side) -> Vec<String> {
        (0..self.up_cols.len())
            .map(|i| self.select_expr(side, i))
            .collect()
    }

    /// What a row stream selects: the compared columns, then one sort value per key column
    /// (the layout of [`Self::layout`]).
    fn streamed_columns(&self, side: Side) -> Vec<String> {
        let s = side.index();
        let mut select = self.select_list(side);
        select.extend(self.key_parts.iter().map(|k| k.sort[s].clone()));
        select
    }

    /// Stream the compared columns (plus sort values) of a range in key order.
    pub fn rows_sql(&self, side: Side, range: &KeyRange) -> String {
        let select = self.streamed_columns(side);
        let order = if self.key.is_some() {
            format!(" ORDER BY {}", self.key_select_and_order(side).1)
        } else {
            String::new()
        };
        format!(
            "SELECT {} FROM {} WHERE {}{order}",
            select.join(", "),
            self.from(side),
            self.where_for(side, range)
        )
    }

    /// Whether the table is keyed by one integer column read as is on both sides: it is
    /// then split by key value and checksummed per bucket of keys
    /// (see [`crate::chunk::Buckets`]).
    pub fn int_key(&self) -> bool {
        match self.key.as_deref() {
            Some([p]) => {
                !self.unsplit
                    && !self.up_cols[*p].nullable
                    && !self.down_cols[*p].nullable
                    && self.up_cols[*p].class == TypeClass::Int
                    && self.down_cols[*p].class == TypeClass::Int
                    && self.casts[*p].is_none()
            }
            _ => false,
        }
    }

    /// A range's bounds as integers, when the key is an integer key and both are present.
    pub fn int_range(&self, range: &KeyRange) -> Option<IntRange> {
        if !self.int_key() {
            return None;
        }
        Some(IntRange {
            lower: row_int(range.lower.as_ref()?)?,
            upper: row_int(range.upper.as_ref()?)?,
        })
    }

    fn int_key_name(&self, side: Side) -> String {
        let p = self
            .key
            .as_deref()
            .and_then(|k| k.first())
            .copied()
            .unwrap_or(0);
        quote_ident(&self.cols(side)[p].name)
    }

    /// Smallest and largest key (upstream, whole table: an index lookup at each end).
    pub fn key_min_max_sql(&self) -> String {
        let k = self.int_key_name(Side::Up);
        format!("SELECT MIN({k}), MAX({k}) FROM {}", self.from(Side::Up))
    }

    /// The server's row estimate for a key range (upstream): `EXPLAIN` dives into the index
    /// without reading the rows.
    pub fn estimate_sql(&self, range: IntRange) -> String {
        let k = self.int_key_name(Side::Up);
        format!(
            "EXPLAIN SELECT 1 FROM {} WHERE {k} > {} AND {k} <= {}",
            self.from(Side::Up),
            range.lower,
            range.upper
        )
    }

    /// The exact number of rows in a key range (upstream, through the key index).
    pub fn count_sql(&self, range: IntRange) -> String {
        let k = self.int_key_name(Side::Up);
        format!(
            "SELECT COUNT(*) FROM {} WHERE {k} > {} AND {k} <= {}",
            self.from(Side::Up),
            range.lower,
            range.upper
        )
    }

    /// Count and checksum of every bucket of `buckets` in one scan of its range.
    pub fn bucket_checksum_sql(&self, side: Side, buckets: &Buckets) -> String {
        let (lower, upper) = buckets.range.to_bounds();
        let range = KeyRange {
            lower: Some(lower),
            upper: Some(upper),
        };
        format!(
            "SELECT {} AS sg_bucket, COUNT(*), BIT_XOR({}) FROM {} WHERE {} GROUP BY sg_bucket",
            buckets.sql(&self.int_key_name(side)),
            self.row_hash(side),
            self.from(side),
            self.where_for(side, &range)
        )
    }

    /// Integer key and per-row hash of every row of a range, in key order: what a dense
    /// chunk is merged on before any full row is read.
    pub fn key_hashes_sql(&self, side: Side, range: &KeyRange) -> String {
        let k = self.int_key_name(side);
        format!(
            "SELECT {k}, {} FROM {} WHERE {} ORDER BY {k}",
            self.row_hash(side),
            self.from(side),
            self.where_for(side, range)
        )
    }

    /// The rows (as [`Self::rows_sql`]) with the given integer keys, in key order.
    pub fn rows_with_keys_sql(&self, side: Side, keys: &[i128]) -> String {
        let k = self.int_key_name(side);
        let list = keys
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let select = self.streamed_columns(side);
        format!(
            "SELECT {} FROM {} WHERE {} ORDER BY {k}",
            select.join(", "),
            self.from(side),
            with_filter(format!("{k} IN ({list})"), self.filter.as_deref()),
        )
    }

    /// Stream the rows of several integer key ranges (sorted, disjoint) in key order.
    ///
    /// A few ranges are an `OR` of ranges, which the server reads as index ranges. Many are
    /// one covering range filtered by `INTERVAL(key, l1+1, u1+1, l2+1, …)`, odd exactly
    /// inside a range: the server binary-searches its constant list, where an `OR` of
    /// hundreds of ranges is evaluated term by term for every row.
    pub fn rows_in_ranges_sql(&self, side: Side, ranges: &[IntRange]) -> String {
        let k = self.int_key_name(side);
        let pred = match (ranges.first(), ranges.last()) {
            (Some(first), Some(last)) if ranges.len() > MAX_OR_RANGES => {
                let bounds: Vec<String> = ranges
                    .iter()
                    .flat_map(|r| [r.lower + 1, r.upper + 1])
                    .map(|b| b.to_string())
                    .collect();
                format!(
                    "{k} > {} AND {k} <= {} AND INTERVAL({k}, {}) % 2 = 1",
                    first.lower,
                    last.upper,
                    bounds.join(", ")
                )
            }
            _ => ranges
                .iter()
                .map(|r| format!("({k} > {} AND {k} <= {})", r.lower, r.upper))
                .collect::<Vec<_>>()
                .join(" OR "),
        };
        let select = self.streamed_columns(side);
        format!(
            "SELECT {} FROM {} WHERE {} ORDER BY {}",
            select.join(", "),
            self.from(side),
            with_filter(format!("({pred})"), self.filter.as_deref()),
            self.key_select_and_order(side).1
        )
    }

    /// Keyless tables: the per-row hash expression used to assign rows to buckets.
    pub fn bucket_expr(&self, side: Side, buckets: u64) -> String {
        format!("MOD({}, {buckets})", self.row_hash(side))
    }

    /// Keyless tables: count and checksum of every bucket in one scan.
    pub fn bucket_checksums_sql(&self, side: Side, buckets: u64) -> String {
        format!(
            "SELECT {} AS sg_bucket, COUNT(*), SUM({}) FROM {} WHERE {} GROUP BY 1",
            self.bucket_expr(side, buckets),
            self.row_hash(side),
            self.table(side).quoted(),
            with_filter("TRUE".into(), self.filter.as_deref())
        )
    }

    /// Keyless tables: the rows of some buckets.
    pub fn bucket_rows_sql(&self, side: Side, buckets: u64, which: &[u64]) -> String {
        let list = which
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT {} FROM {} WHERE {} AND {} IN ({list})",
            self.select_list(side).join(", "),
            self.table(side).quoted(),
            with_filter("TRUE".into(), self.filter.as_deref()),
            self.bucket_expr(side, buckets)
        )
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Index;

    fn col(name: &str, class: TypeClass, column_type: &str, collation: Option<&str>) -> Column {
        Column {
            name: name.into(),
            ordinal: 1,
            data_type: column_type
                .split(['(', ' '])
                .next()
                .unwrap_or_default()
                .into(),
            column_type: column_type.into(),
            class,
            nullable: false,
            unsigned: false,
            charset: collation.map(|c| c.split('_').next().unwrap_or_default().into()),
            collation: collation.map(Into::into),
            default: None,
            generated: None,
            invisible: false,
        }
    }

    fn schema(columns: Vec<Column>, key: &[&str]) -> TableSchema {
        TableSchema {
            table: TableRef::new("d", "t"),
            columns,
            indexes: vec![Index {
                name: "PRIMARY".into(),
                columns: key.iter().map(|k| k.to_string()).collect(),
                unique: true,
                primary: true,
            }],
            foreign_keys: Vec::new(),
            collation: None,
            engine: None,
        }
    }

    fn plan(up: Vec<Column>, down: Vec<Column>, key: &[&str]) -> TablePlan {
        TablePlan::new(
            TableRef::new("d", "t"),
            &schema(up, key),
            &schema(down, key),
            &[],
            &[],
            None,
            1000,
        )
        .unwrap()
    }

    fn range(lower: &str, upper: &str) -> KeyRange {
        KeyRange {
            lower: Some(vec![Some(lower.as_bytes().to_vec())]),
            upper: Some(vec![Some(upper.as_bytes().to_vec())]),
        }
    }

    #[test]
    fn index_fields_on_a_nullable_unique_index_are_refused() {
        let id = col("id", TypeClass::Int, "int(11)", None);
        let mut u = col("u", TypeClass::Int, "int(11)", None);
        u.nullable = true;
        let mut sch = schema(vec![id, u], &["id"]);
        sch.indexes.push(Index {
            name: "uk".into(),
            columns: vec!["u".into()],
            unique: true,
            primary: false,
        });
        let t = TableRef::new("d", "t");
        let err = TablePlan::new(t.clone(), &sch, &sch, &[], &["u".into()], None, 1000)
            .expect_err("nullable key refused");
        assert!(err.contains("`u` is nullable"), "{err}");
        assert!(TablePlan::new(t, &sch, &sch, &[], &["id".into()], None, 1000).is_ok());
    }

    #[test]
    fn float_and_bit_are_read_exactly() {
        let cols = vec![
            col("id", TypeClass::Int, "int(11)", None),
            col("f", TypeClass::Float, "float", None),
            col("b", TypeClass::Bit, "bit(64)", None),
        ];
        let p = plan(cols.clone(), cols, &["id"]);
        let sql = p.rows_sql(Side::Up, &KeyRange::full());
        assert_eq!(
            sql,
            "SELECT `id`, CAST(`f` AS DOUBLE), CAST(`b` AS UNSIGNED), `id` FROM `d`.`t` \
             WHERE TRUE ORDER BY `id`"
        );
        assert!(p
            .checksum_sql(Side::Down, &KeyRange::full())
            .contains("`id`, CAST(`f` AS DOUBLE), CAST(`b` AS UNSIGNED)"));
        assert!(!p.unsplit);
    }

    /// The checksum cost is measured on sysbench's shape (INT key, INT, CHARs): the plan must
    /// render exactly the plain checksum over those columns, no casts or digests added.
    #[test]
    fn sysbench_shape_checksum_is_the_plain_one() {
        let cols = vec![
            col("id", TypeClass::Int, "int(11)", None),
            col("k", TypeClass::Int, "int(11)", None),
            col(
                "c",
                TypeClass::Text,
                "char(120)",
                Some("utf8mb4_general_ci"),
            ),
            col(
                "pad",
                TypeClass::Text,
                "char(60)",
                Some("utf8mb4_general_ci"),
            ),
        ];
        let p = plan(cols.clone(), cols.clone(), &["id"]);
        let refs: Vec<&Column> = cols.iter().collect();
        assert_eq!(
            p.checksum_sql(Side::Up, &KeyRange::full()),
            crate::checksum::checksum_sql(&TableRef::new("d", "t"), &refs, "TRUE", Aggregate::Xor)
        );
        assert!(p
            .checksum_sql(Side::Up, &KeyRange::full())
            .contains("CONCAT_WS(0x1F, `id`, `k`, `c`, `pad`)"));
    }

    #[test]
    fn pad_space_keys_sort_by_padded_weights() {
        let up = vec![col(
            "k",
            TypeClass::Text,
            "varchar(10)",
            Some("utf8mb4_general_ci"),
        )];
        let mut down = up.clone();
        down[0].column_type = "varchar(20)".into();
        let p = plan(up, down, &["k"]);
        assert!(!p.unsplit);
        assert!(p
            .rows_sql(Side::Up, &KeyRange::full())
            .starts_with("SELECT `k`, WEIGHT_STRING(`k` AS CHAR(20)) FROM"));
        let nopad = vec![col(
            "k",
            TypeClass::Text,
            "varchar(10)",
            Some("utf8mb4_nopad_bin"),
        )];
        let p = plan(nopad.clone(), nopad, &["k"]);
        assert!(p
            .rows_sql(Side::Up, &KeyRange::full())
            .starts_with("SELECT `k`, WEIGHT_STRING(`k`) FROM"));
    }

    #[test]
    fn differing_key_collations_compare_bytes_in_one_range() {
        let up = vec![col(
            "k",
            TypeClass::Text,
            "varchar(10)",
            Some("utf8mb4_bin"),
        )];
        let down = vec![col(
            "k",
            TypeClass::Text,
            "varchar(10)",
            Some("utf8mb4_general_ci"),
        )];
        let p = plan(up, down, &["k"]);
        assert!(p.unsplit);
        assert_eq!(p.chunk_size, u64::MAX);
        let bin = "CAST(CONVERT(`k` USING utf8mb4) AS BINARY)";
        assert_eq!(
            p.rows_sql(Side::Down, &range("a", "b")),
            format!(
                "SELECT `k`, {bin} FROM `d`.`t` WHERE {bin} > X'61' AND {bin} <= X'62' \
                 ORDER BY {bin}"
            )
        );
        // The producer's boundary question has no answer: one chunk.
        assert_eq!(
            p.key_at_sql(Side::Up, &KeyRange::full(), p.chunk_size - 1),
            "SELECT 1 FROM DUAL WHERE FALSE"
        );
        assert!(p
            .key_at_sql(Side::Up, &KeyRange::full(), 999)
            .ends_with(&format!("ORDER BY {bin} LIMIT 1 OFFSET 999")));
    }

    #[test]
    fn composite_binary_bounds_keep_native_columns() {
        let up = vec![
            col("a", TypeClass::Int, "int(11)", None),
            col(
                "k",
                TypeClass::Text,
                "varchar(10)",
                Some("latin1_swedish_ci"),
            ),
        ];
        let mut down = up.clone();
        down[1].collation = Some("utf8mb4_general_ci".into());
        let p = plan(up, down, &["a", "k"]);
        let r = KeyRange {
            lower: Some(vec![Some(b"1".to_vec()), Some(b"x".to_vec())]),
            upper: None,
        };
        let bin = "CAST(CONVERT(`k` USING utf8mb4) AS BINARY)";
        assert_eq!(
            p.where_clause(&r),
            format!("((`a` > 1) OR (`a` = 1 AND {bin} > X'78'))")
        );
    }

    #[test]
    fn decimals_of_different_scales_are_cast_to_one_type() {
        let up = vec![
            col("id", TypeClass::Int, "int(11)", None),
            col("d", TypeClass::Decimal, "decimal(10,2)", None),
            col("t", TypeClass::DateTime, "datetime", None),
        ];
        let down = vec![
            col("id", TypeClass::Int, "bigint(20)", None),
            col("d", TypeClass::Decimal, "decimal(12,3) unsigned", None),
            col("t", TypeClass::Timestamp, "timestamp(6)", None),
        ];
        let p = plan(up, down, &["id"]);
        assert_eq!(
            p.rows_sql(Side::Down, &KeyRange::full()),
            "SELECT `id`, CAST(`d` AS DECIMAL(12,3)), CAST(`t` AS DATETIME(6)), `id` \
             FROM `d`.`t` WHERE TRUE ORDER BY `id`"
        );
        // Too wide for one DECIMAL: compared as written.
        assert_eq!(
            common_cast(
                &col("d", TypeClass::Decimal, "decimal(65,0)", None),
                &col("d", TypeClass::Decimal, "decimal(65,30)", None)
            ),
            None
        );
        assert_eq!(
            common_cast(
                &col("d", TypeClass::Int, "int(11)", None),
                &col("d", TypeClass::Decimal, "decimal(10,2)", None)
            ),
            Some("DECIMAL(22,2)".into())
        );
    }

    #[test]
    fn keys_of_unrelated_types_are_refused() {
        let up = vec![col("k", TypeClass::Int, "int(11)", None)];
        let down = vec![col(
            "k",
            TypeClass::Text,
            "varchar(10)",
            Some("utf8mb4_bin"),
        )];
        let err = TablePlan::new(
            TableRef::new("d", "t"),
            &schema(up, &["k"]),
            &schema(down, &["k"]),
            &[],
            &[],
            None,
            10,
        )
        .unwrap_err();
        assert!(err.contains("cannot be ordered alike"), "{err}");
    }

    #[test]
    fn sql_hint_use_index_forces_the_chunk_key_index_per_side() {
        let cols = || {
            vec![
                col("id", TypeClass::Int, "int(11)", None),
                col("a", TypeClass::Int, "int(11)", None),
                col("b", TypeClass::Int, "int(11)", None),
            ]
        };
        let mut up = schema(cols(), &["id"]);
        up.indexes.push(Index {
            name: "uk_ab".into(),
            columns: vec!["a".into(), "b".into()],
            unique: true,
            primary: false,
        });
        // Downstream the same columns are indexed under another name.
        let mut down = schema(cols(), &["id"]);
        down.indexes.push(Index {
            name: "ab".into(),
            columns: vec!["A".into(), "B".into()],
            unique: true,
            primary: false,
        });
        let t = TableRef::new("d", "t");
        let fields = ["b".to_string(), "a".to_string()];
        let mut p = TablePlan::new(t.clone(), &up, &down, &[], &fields, None, 10).unwrap();
        let pair = |a: &str, b: &str| Some(vec![Some(a.into()), Some(b.into())]);
        let r = KeyRange {
            lower: pair("1", "1"),
            upper: pair("2", "2"),
        };
        let before = p.rows_sql(Side::Up, &r);
        assert!(before.contains("FROM `d`.`t` WHERE"), "{before}");

        assert!(p.force_key_index(Side::Up, &up));
        assert!(p.force_key_index(Side::Down, &down));
        let (cs_up, cs_down) = (p.checksum_sql(Side::Up, &r), p.checksum_sql(Side::Down, &r));
        assert!(
            cs_up.contains("FROM `d`.`t` FORCE INDEX (`uk_ab`) WHERE"),
            "{cs_up}"
        );
        assert!(
            cs_down.contains("FROM `d`.`t` FORCE INDEX (`ab`) WHERE"),
            "{cs_down}"
        );
        let rows = p.rows_sql(Side::Up, &r);
        assert_eq!(
            rows,
            before.replace("FROM `d`.`t`", "FROM `d`.`t` FORCE INDEX (`uk_ab`)")
        );
        assert!(p
            .key_at_sql(Side::Down, &r, 5)
            .contains("FROM `d`.`t` FORCE INDEX (`ab`) WHERE"));

        // The primary key is named PRIMARY (a keyword, not quoted); an integer key's
        // split queries carry it too.
        let mut p = TablePlan::new(t.clone(), &up, &down, &[], &[], None, 10).unwrap();
        assert!(p.force_key_index(Side::Up, &up));
        assert!(p.int_key());
        let ir = IntRange { lower: 0, upper: 9 };
        for sql in [p.key_min_max_sql(), p.estimate_sql(ir), p.count_sql(ir)] {
            assert!(sql.contains("FROM `d`.`t` FORCE INDEX (PRIMARY)"), "{sql}");
        }
        // Only the side that asked for it.
        assert!(!p
            .checksum_sql(Side::Down, &range("1", "2"))
            .contains("FORCE INDEX"));

        // A side without an index on exactly the key columns gets no hint.
        let mut p = TablePlan::new(t.clone(), &up, &down, &[], &fields, None, 10).unwrap();
        let mut other = down.clone();
        other.indexes[1].columns = vec!["a".into()];
        assert!(!p.force_key_index(Side::Down, &other));
        assert!(!p.checksum_sql(Side::Down, &r).contains("FORCE INDEX"));
        // Keyless tables have nothing to force.
        let mut keyless = schema(cols(), &[]);
        keyless.indexes.clear();
        let mut p = TablePlan::new(t, &keyless, &keyless, &[], &[], None, 10).unwrap();
        assert!(!p.force_key_index(Side::Up, &keyless));
    }
}
