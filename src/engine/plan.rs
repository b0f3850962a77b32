//! A table's comparison plan: which columns are compared, which key orders and splits it,
//! and the SQL each side runs. Pure.

use crate::checksum::{checksum_sql, Aggregate};
use crate::chunk::{range_predicate, with_filter, KeyRange};
use crate::diff::RowLayout;
use crate::row::KeyKind;
use crate::schema::{Column, TableRef, TableSchema, TypeClass};
use crate::sql::{ident_list, quote_ident};

/// Which side a statement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Up,
    Down,
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
    /// Target rows per chunk.
    pub chunk_size: u64,
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
                Some(i) if i.unique || i.primary => Some(i.columns.clone()),
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
                for &p in &pos {
                    let (u, d) = (&up_cols[p], &down_cols[p]);
                    if u.class.is_collated() && u.collation != d.collation {
                        return Err(format!(
                            "key column `{}` has collation {} upstream and {} downstream; \
                             the two sides would order keys differently",
                            u.name,
                            u.collation.as_deref().unwrap_or("?"),
                            d.collation.as_deref().unwrap_or("?")
                        ));
                    }
                }
                Some(pos)
            }
        };
        Ok(TablePlan {
            upstream: up.table.clone(),
            target,
            up_cols,
            down_cols,
            key,
            filter,
            chunk_size: chunk_size.max(1),
        })
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

    fn key_names(&self) -> Vec<&str> {
        self.key_cols().iter().map(|c| c.name.as_str()).collect()
    }

    /// WHERE clause of a range, with the user's filter.
    pub fn where_clause(&self, range: &KeyRange) -> String {
        let pred = if self.key.is_some() {
            range_predicate(&self.key_cols(), range)
        } else {
            "TRUE".to_string()
        };
        with_filter(pred, self.filter.as_deref())
    }

    /// The checksum statement of a range on one side.
    pub fn checksum_sql(&self, side: Side, range: &KeyRange) -> String {
        let cols: Vec<&Column> = self.cols(side).iter().collect();
        checksum_sql(
            self.table(side),
            &cols,
            &self.where_clause(range),
            Aggregate::Xor,
        )
    }

    /// Key tuple at `offset` (0-based) within `range`, in key order.
    pub fn key_at_sql(&self, side: Side, range: &KeyRange, offset: u64) -> String {
        let keys = ident_list(self.key_names());
        format!(
            "SELECT {keys} FROM {} WHERE {} ORDER BY {keys} LIMIT 1 OFFSET {offset}",
            self.table(side).quoted(),
            self.where_clause(range)
        )
    }

    /// Server expression and comparison rule of each key column's sort value.
    fn sort_values(&self, side: Side) -> Vec<(String, KeyKind)> {
        self.key
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|&p| {
                let c = &self.cols(side)[p];
                let name = quote_ident(&c.name);
                match c.class {
                    TypeClass::Int | TypeClass::Year => (name, KeyKind::Int),
                    TypeClass::Decimal => (name, KeyKind::Decimal),
                    TypeClass::Float | TypeClass::Double => (name, KeyKind::Float),
                    TypeClass::Date | TypeClass::DateTime | TypeClass::Timestamp => {
                        (name, KeyKind::Lexical)
                    }
                    TypeClass::Time => (name, KeyKind::Time),
                    TypeClass::Enum | TypeClass::Set => (format!("{name}+0"), KeyKind::Int),
                    TypeClass::Text | TypeClass::Json => {
                        (format!("WEIGHT_STRING({name})"), KeyKind::Bytes)
                    }
                    TypeClass::Binary | TypeClass::Bit | TypeClass::Other => (name, KeyKind::Bytes),
                }
            })
            .collect()
    }

    /// The row layout of [`Self::rows_sql`] results.
    pub fn layout(&self) -> RowLayout {
        RowLayout {
            columns: self.up_cols.len(),
            sort_kinds: self
                .sort_values(Side::Up)
                .into_iter()
                .map(|s| s.1)
                .collect(),
        }
    }

    /// Stream the compared columns (plus sort values) of a range in key order.
    pub fn rows_sql(&self, side: Side, range: &KeyRange) -> String {
        let mut select: Vec<String> = self
            .cols(side)
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect();
        select.extend(self.sort_values(side).into_iter().map(|s| s.0));
        let order = if self.key.is_some() {
            format!(" ORDER BY {}", ident_list(self.key_names()))
        } else {
            String::new()
        };
        format!(
            "SELECT {} FROM {} WHERE {}{order}",
            select.join(", "),
            self.table(side).quoted(),
            self.where_clause(range)
        )
    }

    /// Keyless tables: the per-row hash expression used to assign rows to buckets.
    pub fn bucket_expr(&self, side: Side, buckets: u64) -> String {
        let cols: Vec<&Column> = self.cols(side).iter().collect();
        format!("MOD({}, {buckets})", crate::checksum::row_hash_expr(&cols))
    }

    /// Keyless tables: count and checksum of every bucket in one scan.
    pub fn bucket_checksums_sql(&self, side: Side, buckets: u64) -> String {
        let cols: Vec<&Column> = self.cols(side).iter().collect();
        format!(
            "SELECT {} AS sg_bucket, COUNT(*), SUM({}) FROM {} WHERE {} GROUP BY 1",
            self.bucket_expr(side, buckets),
            crate::checksum::row_hash_expr(&cols),
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
            ident_list(self.cols(side).iter().map(|c| c.name.as_str())),
            self.table(side).quoted(),
            with_filter("TRUE".into(), self.filter.as_deref()),
            self.bucket_expr(side, buckets)
        )
    }
}
