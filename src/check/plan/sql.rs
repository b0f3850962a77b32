//! The SQL each side runs for a plan: checksums, key walks, row streams, estimates and
//! bucketed checksums. Pure string building over [`TablePlan`].

use super::{KeyPart, Side, TablePlan, MAX_OR_RANGES};
use crate::checksum::{checksum_sql_from, Aggregate};
use crate::chunk::{
    compare_predicate, range_predicate, row_int, with_filter, Buckets, IntRange, KeyRange, Lead,
};
use crate::diff::RowLayout;
use crate::row::Row;
use crate::schema::TypeClass;
use crate::sql::{hex_literal, quote_ident};

impl TablePlan {
    /// What key-range queries of `side` read `FROM`: the table, with its index hint if any.
    fn from(&self, side: Side) -> String {
        let table = self.source(side);
        match &self.force_index[side.index()] {
            None => table,
            Some(i) if i.eq_ignore_ascii_case("PRIMARY") => {
                format!("{table} FORCE INDEX (PRIMARY)")
            }
            Some(i) => format!("{table} FORCE INDEX ({})", quote_ident(i)),
        }
    }

    /// WHERE clause of a range, with the user's filter (upstream form; the two sides differ
    /// only for keys compared on a binary basis).
    pub fn where_clause(&self, range: &KeyRange) -> String {
        self.where_for(Side::Up, range)
    }

    pub(super) fn where_for(&self, side: Side, range: &KeyRange) -> String {
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
    pub(super) fn binary_range_predicate(&self, side: Side, range: &KeyRange) -> String {
        let term = |k: &KeyPart, v: Option<&[u8]>| self.key_term(side, k, v);
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

    /// A key column as bounds compare it on `side`, and the literal of `v` for it: columns
    /// ordered by bytes through their binary expression and a hex literal, others by name.
    fn key_term(&self, side: Side, k: &KeyPart, v: Option<&[u8]>) -> (String, String) {
        if k.binary {
            let lit = v.map(hex_literal).unwrap_or_else(|| "NULL".into());
            (k.order[side.index()].clone(), lit)
        } else {
            let c = &self.up_cols[k.pos];
            (quote_ident(&self.cols(side)[k.pos].name), c.literal(v))
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
    pub(super) fn key_select_and_order(&self, side: Side) -> (String, String) {
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

    /// The layout of [`Self::key_hashes_sql`]'s rows: key columns and hash compared,
    /// ordered by the key.
    pub fn key_hashes_layout(&self) -> RowLayout {
        self.fingerprint_layout()
    }

    /// The compared columns as read on `side`.
    pub(super) fn select_list(&self, side: Side) -> Vec<String> {
        (0..self.up_cols.len())
            .map(|i| self.select_expr(side, i))
            .collect()
    }

    /// What a row stream selects: the compared columns, then one sort value per key column
    /// (the layout of [`Self::layout`]).
    pub(super) fn streamed_columns(&self, side: Side) -> Vec<String> {
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

    /// Every row of the table as `(key columns…, row hash, sort values…)` in key order
    /// (laid out for [`Self::fingerprint_layout`]): a whole table's fingerprint, compared
    /// row by row through `diff::Merger` (the DR flow's gate at a backup point). A keyless
    /// table yields `(hash, hash)` ordered by the hash: a sorted multiset.
    pub fn fingerprint_sql(&self, side: Side) -> String {
        if self.key.is_none() {
            return format!(
                "SELECT h, h FROM (SELECT {} AS h FROM {}) AS fp ORDER BY h",
                self.row_hash(side),
                self.from(side)
            );
        }
        self.keyed_hashes_sql(side, "TRUE")
    }

    /// `(key columns…, row hash, sort values…)` of the rows matching `predicate`, in key
    /// order: laid out for [`Self::fingerprint_layout`].
    fn keyed_hashes_sql(&self, side: Side, predicate: &str) -> String {
        let s = side.index();
        let mut select: Vec<String> = self
            .key_parts
            .iter()
            .map(|k| self.select_expr(side, k.pos))
            .collect();
        // The checksum's hash, not the lone CRC: DR fingerprints stored with backups are
        // these rows.
        select.push(self.row_hash(side));
        select.extend(self.key_parts.iter().map(|k| k.sort[s].clone()));
        format!(
            "SELECT {} FROM {} WHERE {predicate} ORDER BY {}",
            select.join(", "),
            self.from(side),
            self.key_select_and_order(side).1
        )
    }

    /// The layout of [`Self::fingerprint_sql`]'s rows: key columns and hash compared.
    pub fn fingerprint_layout(&self) -> RowLayout {
        if self.key.is_none() {
            return RowLayout {
                columns: 1,
                sort_kinds: vec![crate::row::KeyKind::Int],
            };
        }
        RowLayout {
            columns: self.key_parts.len() + 1,
            sort_kinds: self.key_parts.iter().map(|k| k.kind).collect(),
        }
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

    pub(super) fn int_key_name(&self, side: Side) -> String {
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
    /// without reading the rows. The user's filter is left out: it could steer the server
    /// to another index, whose estimate would not be the key range's.
    pub fn estimate_sql(&self, range: &KeyRange) -> String {
        format!(
            "EXPLAIN SELECT 1 FROM {} WHERE {}",
            self.from(Side::Up),
            range_predicate(&self.key_cols(), range)
        )
    }

    /// The exact number of rows in a key range (upstream, through the key index; without
    /// the user's filter, as [`Self::estimate_sql`]).
    pub fn count_sql(&self, range: &KeyRange) -> String {
        format!(
            "SELECT COUNT(*) FROM {} WHERE {}",
            self.from(Side::Up),
            range_predicate(&self.key_cols(), range)
        )
    }

    /// The class of the leading key column when the table can be split by probes
    /// ([`crate::chunk::between`]): see [`Self::probe_class`]; not for one integer key,
    /// which is cut on a grid. `None`: walk the index.
    pub fn probe_lead(&self) -> Option<TypeClass> {
        match self.int_key() {
            true => None,
            false => self.probe_class(0),
        }
    }

    /// The class of key column `j` when probes can be interpolated on it: an integer or
    /// YEAR, a character or binary string, a DECIMAL, or a DATE/DATETIME/TIMESTAMP/TIME that
    /// the key index orders alike on both sides, neither nullable nor cast.
    pub fn probe_class(&self, j: usize) -> Option<TypeClass> {
        let part = self.key_parts.get(j)?;
        let p = part.pos;
        let (up, down) = (&self.up_cols[p], &self.down_cols[p]);
        let usable = self.key.is_some()
            && !self.unsplit
            && !part.binary
            && up.class == down.class
            && matches!(
                up.class,
                TypeClass::Int
                    | TypeClass::Text
                    | TypeClass::Decimal
                    | TypeClass::Date
                    | TypeClass::DateTime
                    | TypeClass::Timestamp
                    | TypeClass::Binary
                    | TypeClass::Time
                    | TypeClass::Year
            )
            && !up.nullable
            && !down.nullable
            && self.casts[p].is_none();
        usable.then_some(up.class)
    }

    /// The first (or, `last`, the last) key of the table (upstream, one index dive).
    pub fn key_end_sql(&self, last: bool) -> String {
        let (select, _) = self.key_select_and_order(Side::Up);
        format!(
            "SELECT {select} FROM {} ORDER BY {} LIMIT 1",
            self.from(Side::Up),
            self.key_order(Side::Up, last)
        )
    }

    /// The real key nearest a probe strictly between `lower` and `upper` (upstream, one
    /// index dive). The probe is on key column `j`, after the values `prefix` of the columns
    /// before it (which both bounds share): the last key at most `(prefix…, probe)`
    /// (`below`), or the first at least it.
    pub fn key_near_sql(
        &self,
        (lower, upper): (Option<&Row>, &Row),
        prefix: &[Option<Vec<u8>>],
        probe: &Lead,
        below: bool,
    ) -> String {
        let key = self.key_cols();
        let j = prefix.len().min(key.len() - 1);
        let mut at: Row = prefix[..j].to_vec();
        at.push(Some(match probe {
            Lead::Int(v) => v.to_string().into_bytes(),
            Lead::Text(t) => t.as_bytes().to_vec(),
            Lead::Stamp(s) => s.render().into_bytes(),
            Lead::Dec(d) => d.render().into_bytes(),
            Lead::Bytes(b) => b.clone(),
        }));
        let above = KeyRange {
            lower: lower.cloned(),
            upper: None,
        };
        let (select, _) = self.key_select_and_order(Side::Up);
        let (op, op_eq) = if below { ("<", "<=") } else { (">", ">=") };
        format!(
            "SELECT {select} FROM {} WHERE {} AND {} AND {} ORDER BY {} LIMIT 1",
            self.from(Side::Up),
            range_predicate(&key, &above),
            compare_predicate(&key, upper, "<", "<"),
            compare_predicate(&key[..=j], &at, op, op_eq),
            self.key_order(Side::Up, below)
        )
    }

    /// The key order of `side`, descending when `desc`.
    fn key_order(&self, side: Side, desc: bool) -> String {
        let dir = if desc { " DESC" } else { "" };
        let order: Vec<String> = self
            .key_parts
            .iter()
            .map(|k| format!("{}{dir}", k.order[side.index()]))
            .collect();
        order.join(", ")
    }

    /// A bucket number in `0..buckets` from a hash of the key as `side` reads it, for keys
    /// that cannot be bucketed by value. Equal keys read alike land in the same bucket on
    /// both sides; keys equal only under a collation (`'a'`, `'A'`) may not, which makes
    /// both their buckets differ and be merged, so no difference is hidden.
    fn key_hash_bucket(&self, side: Side, buckets: u32) -> String {
        let parts: Vec<String> = self
            .key_parts
            .iter()
            .map(|k| match k.binary {
                true => k.order[side.index()].clone(),
                false => self.select_expr(side, k.pos),
            })
            .collect();
        let key = match parts.as_slice() {
            [one] => one.clone(),
            _ => format!("CONCAT_WS(',', {})", parts.join(", ")),
        };
        format!("CRC32({key}) % {buckets}")
    }

    /// Count and checksum of each key-hash bucket (see `key_hash_bucket`) of a range.
    pub fn key_hash_bucket_sql(&self, side: Side, range: &KeyRange, buckets: u32) -> String {
        format!(
            "SELECT {} AS sg_bucket, COUNT(*), BIT_XOR({}) FROM {} WHERE {} GROUP BY sg_bucket",
            self.key_hash_bucket(side, buckets),
            self.row_hash(side),
            self.from(side),
            self.where_for(side, range)
        )
    }

    /// The rows (as [`Self::rows_sql`]) of a range whose key-hash bucket is one of `ids`.
    pub fn rows_in_key_hash_buckets_sql(
        &self,
        side: Side,
        range: &KeyRange,
        buckets: u32,
        ids: &[i128],
    ) -> String {
        let list: Vec<String> = ids.iter().map(|b| b.to_string()).collect();
        format!(
            "SELECT {} FROM {} WHERE {} AND {} IN ({}) ORDER BY {}",
            self.streamed_columns(side).join(", "),
            self.from(side),
            self.where_for(side, range),
            self.key_hash_bucket(side, buckets),
            list.join(", "),
            self.key_select_and_order(side).1
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

    /// Key and per-row hash of every row of a range, in key order: what a dense or
    /// differing chunk is merged on before any full row is read. Rows are `(key columns…,
    /// hash, sort values…)` (an integer key: `(k, hash, k)`), laid out for
    /// [`Self::key_hashes_layout`].
    pub fn key_hashes_sql(&self, side: Side, range: &KeyRange) -> String {
        self.keyed_hashes_sql(side, &self.where_for(side, range))
    }

    /// The same pairs for a table keyed by one integer column, packed by the server into one
    /// row: `COUNT(*)`, `BIT_XOR(key)` and `GROUP_CONCAT(hash, ',', key SEPARATOR ';')` in
    /// no given order ([`crate::diff::parse_key_hashes`]; the count and the XOR tell a list
    /// cut short). One packet instead of one per row: on a dense chunk the client's per-row
    /// work was most of the merge. `None` for other keys.
    pub fn packed_key_hashes_sql(&self, side: Side, range: &KeyRange) -> Option<String> {
        if !self.int_key() {
            return None;
        }
        let key = self.int_key_name(side);
        Some(format!(
            "SELECT COUNT(*), BIT_XOR({key}), GROUP_CONCAT({}, ',', {key} SEPARATOR ';') \
             FROM {} WHERE {}",
            self.row_crc(side),
            self.from(side),
            self.where_for(side, range)
        ))
    }

    /// The rows (as [`Self::rows_sql`]) with the given keys (as [`Self::key_hashes_sql`]
    /// reads them, key columns first), in key order. `None` when an integer key does not
    /// parse as one.
    pub fn rows_with_keys_sql(&self, side: Side, keys: &[Row]) -> Option<String> {
        let pred = if self.int_key() {
            let k = self.int_key_name(side);
            let list = keys
                .iter()
                .map(|r| row_int(r).map(|v| v.to_string()))
                .collect::<Option<Vec<_>>>()?;
            format!("{k} IN ({})", list.join(", "))
        } else {
            let one = |r: &Row| {
                let eq: Vec<String> = (self.key_parts.iter().enumerate())
                    .map(|(j, k)| {
                        let (expr, lit) = self.key_term(side, k, r.get(j)?.as_deref());
                        Some(format!("{expr} <=> {lit}"))
                    })
                    .collect::<Option<_>>()?;
                Some(format!("({})", eq.join(" AND ")))
            };
            let any: Vec<String> = keys.iter().map(one).collect::<Option<_>>()?;
            format!("({})", any.join(" OR "))
        };
        let select = self.streamed_columns(side);
        Some(format!(
            "SELECT {} FROM {} WHERE {} ORDER BY {}",
            select.join(", "),
            self.from(side),
            with_filter(pred, self.filter.as_deref()),
            self.key_select_and_order(side).1
        ))
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
            self.source(side),
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
            self.source(side),
            with_filter("TRUE".into(), self.filter.as_deref()),
            self.bucket_expr(side, buckets)
        )
    }
}
