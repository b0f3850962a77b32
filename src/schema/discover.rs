//! Reading table structure from `information_schema` (never by parsing DDL, so no DDL
//! dialect can break a run).

use super::model::{Column, ForeignKey, Generated, Index, TableRef, TableSchema, TypeClass};
use crate::db::{cell_str, cell_u64, Conn};
use crate::error::Result;
use crate::row::Row;
use crate::sql::quote_str;
use std::collections::BTreeMap;

/// Every base table visible on the connection outside the system schemas, sorted by schema
/// and name.
///
/// Listed per schema with `SHOW FULL TABLES`, as sync-diff-inspector does, rather than with
/// one `information_schema.TABLES` scan: that scan also opens every view's structure (the
/// `sys` schema's views reference `information_schema` themselves), which is slower on a busy
/// server and has crashed MariaDB 10.11.19 (signal 11 in `ha_maria::drop_table` while cleaning
/// up a nested schema temp table) in our test runs.
pub async fn list_tables(conn: &mut Conn) -> Result<Vec<TableRef>> {
    let schemas = conn.rows("SHOW DATABASES").await?;
    let mut out = Vec::new();
    for row in &schemas {
        let Some(schema) = cell_str(row, 0) else {
            continue;
        };
        if crate::config::is_system_schema(&schema) {
            continue;
        }
        let sql = format!(
            "SHOW FULL TABLES FROM {} WHERE Table_type = 'BASE TABLE'",
            crate::sql::quote_ident(&schema)
        );
        for r in conn.rows(&sql).await? {
            if let Some(table) = cell_str(&r, 0) {
                out.push(TableRef::new(schema.clone(), table));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The structure of `table`, or `None` when it does not exist.
pub async fn discover_table(conn: &mut Conn, table: &TableRef) -> Result<Option<TableSchema>> {
    let found = discover_in_schema(conn, &table.schema, Some(&table.table)).await?;
    Ok(found.into_values().next().map(|d| d.schema))
}

/// A table's structure and the server's estimate of its rows.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub schema: TableSchema,
    /// `information_schema.TABLES.TABLE_ROWS`: an estimate (InnoDB's statistics), `None`
    /// when the server gives none.
    pub rows_estimate: Option<u64>,
    /// `information_schema.TABLES.AUTO_INCREMENT`: the value the table's AUTO_INCREMENT
    /// counter hands out next, `None` for a table without one.
    pub counter: Option<u64>,
}

/// Schemas with more selected tables than this are read with one query per kind for the
/// whole schema instead of per table: a thousand small tables cost four queries, not four
/// thousand. Below it, per-table queries avoid opening every table of a large schema.
const PER_SCHEMA_FROM: usize = 8;

/// The structures of `tables` that exist, by name (a table missing from the result does not
/// exist). Tables are read per schema when many of one schema are asked for.
pub async fn discover_tables(
    conn: &mut Conn,
    tables: &[TableRef],
) -> Result<BTreeMap<TableRef, Discovered>> {
    let mut by_schema: BTreeMap<&str, Vec<&TableRef>> = BTreeMap::new();
    for t in tables {
        by_schema.entry(t.schema.as_str()).or_default().push(t);
    }
    let mut out = BTreeMap::new();
    for (schema, wanted) in by_schema {
        let mut found = if wanted.len() > PER_SCHEMA_FROM {
            discover_in_schema(conn, schema, None).await?
        } else {
            BTreeMap::new()
        };
        for t in wanted {
            // Not found by exact name in the whole-schema read (a name that differs only in
            // case on a case-insensitive server): ask for it by name.
            let d = match found.remove(&t.table) {
                Some(d) => Some(d),
                None => discover_in_schema(conn, schema, Some(&t.table))
                    .await?
                    .into_values()
                    .next(),
            };
            if let Some(mut d) = d {
                d.schema.table = t.clone();
                out.insert(t.clone(), d);
            }
        }
    }
    Ok(out)
}

/// The base tables of `schema` (only `table` when given), by table name: four queries
/// (tables, columns, indexes, foreign keys) whatever the number of tables.
async fn discover_in_schema(
    conn: &mut Conn,
    schema: &str,
    table: Option<&str>,
) -> Result<BTreeMap<String, Discovered>> {
    let schema_lit = quote_str(schema);
    let table_filter = |col: &str| match table {
        Some(t) => format!(" AND {col} = {}", quote_str(t)),
        None => String::new(),
    };
    let where_clause = format!("TABLE_SCHEMA = {schema_lit}{}", table_filter("TABLE_NAME"));

    // MariaDB lists a system-versioned table as 'SYSTEM VERSIONED' here (and as 'BASE
    // TABLE' in SHOW FULL TABLES): it is an ordinary table to its users.
    let infos = conn
        .rows(&format!(
            "SELECT TABLE_NAME, TABLE_COLLATION, ENGINE, TABLE_TYPE, TABLE_ROWS, \
             AUTO_INCREMENT FROM information_schema.TABLES \
             WHERE {where_clause} AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')"
        ))
        .await?;
    if infos.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut columns = group_by_table(read_columns(conn, &where_clause).await?);
    let mut indexes = group_by_table(read_indexes(conn, &where_clause).await?);
    let fk_filter = table_filter("k.TABLE_NAME") + &table_filter("r.TABLE_NAME");
    let mut foreign_keys = group_by_table(read_foreign_keys(conn, &schema_lit, &fk_filter).await?);
    let mut out = BTreeMap::new();
    for info in &infos {
        let Some(name) = cell_str(info, 0) else {
            continue;
        };
        let (mut cols, auto): (Vec<Column>, Vec<bool>) = columns
            .remove(&name)
            .unwrap_or_default()
            .into_iter()
            .unzip();
        let auto_increment = cols
            .iter()
            .zip(&auto)
            .find(|(_, a)| **a)
            .map(|(c, _)| c.name.clone());
        let mut idxs = indexes.remove(&name).unwrap_or_default();
        let system_versioned = cell_str(info, 3).as_deref() == Some("SYSTEM VERSIONED");
        let period = if system_versioned {
            period_columns(drop_period_columns(&mut cols, &mut idxs))
        } else {
            Vec::new()
        };
        let schema = TableSchema {
            table: TableRef::new(schema, name.clone()),
            columns: cols,
            indexes: idxs,
            foreign_keys: foreign_keys.remove(&name).unwrap_or_default(),
            collation: cell_str(info, 1),
            engine: cell_str(info, 2),
            system_versioned,
            auto_increment,
            period,
        };
        out.insert(
            name,
            Discovered {
                schema,
                rows_estimate: cell_u64(info, 4),
                counter: cell_u64(info, 5),
            },
        );
    }
    Ok(out)
}

/// `(table name, item)` pairs, in order, grouped by table name.
fn group_by_table<T>(items: Vec<(String, T)>) -> BTreeMap<String, Vec<T>> {
    let mut out: BTreeMap<String, Vec<T>> = BTreeMap::new();
    for (table, item) in items {
        out.entry(table).or_default().push(item);
    }
    out
}

/// Removes a system-versioned table's explicit period columns (generated `ROW START` /
/// `ROW END`) from its columns and keys. MariaDB appends the row-end column to every unique
/// key; among current rows it is the same maximum for all, so the rest of the key stays
/// unique. (Implicit period columns are hidden and never listed.)
fn drop_period_columns(columns: &mut Vec<Column>, indexes: &mut [Index]) -> Vec<Column> {
    let is_period = |c: &Column| {
        c.generated.as_ref().is_some_and(|g| {
            let e = g.expression.trim().to_ascii_uppercase();
            e == "ROW START" || e == "ROW END"
        })
    };
    let period: Vec<String> = columns
        .iter()
        .filter(|c| is_period(c))
        .map(|c| c.name.clone())
        .collect();
    let (dropped, kept) = std::mem::take(columns)
        .into_iter()
        .partition(|c| is_period(c));
    *columns = kept;
    for idx in indexes.iter_mut() {
        idx.columns
            .retain(|c| !period.iter().any(|p| p.eq_ignore_ascii_case(c)));
    }
    dropped
}

/// A system-versioned table's period columns: the explicit ones, else MariaDB's implicit
/// `row_start` and `row_end` (hidden: never listed, but selectable by name).
fn period_columns(explicit: Vec<Column>) -> Vec<Column> {
    if !explicit.is_empty() {
        return explicit;
    }
    ["row_start", "row_end"]
        .iter()
        .enumerate()
        .map(|(i, name)| Column {
            name: name.to_string(),
            ordinal: u32::MAX - 1 + i as u32,
            data_type: "timestamp".into(),
            column_type: "timestamp(6)".into(),
            class: TypeClass::from_data_type("timestamp", None),
            nullable: false,
            unsigned: false,
            charset: None,
            collation: None,
            default: None,
            generated: None,
            invisible: true,
        })
        .collect()
}

/// The tables' columns in ordinal order (`information_schema.COLUMNS`), each with its
/// table's name and whether it is the table's AUTO_INCREMENT column; `where_clause` selects
/// the tables.
async fn read_columns(
    conn: &mut Conn,
    where_clause: &str,
) -> Result<Vec<(String, (Column, bool))>> {
    let rows = conn
        .rows(&format!(
            "SELECT COLUMN_NAME, ORDINAL_POSITION, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, \
             CHARACTER_SET_NAME, COLLATION_NAME, COLUMN_DEFAULT, EXTRA, GENERATION_EXPRESSION, \
             TABLE_NAME FROM information_schema.COLUMNS WHERE {where_clause} \
             ORDER BY TABLE_NAME, ORDINAL_POSITION"
        ))
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let auto =
                cell_str(r, 8).is_some_and(|e| e.to_ascii_lowercase().contains("auto_increment"));
            (
                cell_str(r, 10).unwrap_or_default(),
                (column_from_row(r), auto),
            )
        })
        .collect())
}

/// One row of [`read_columns`]' query as a [`Column`]: types lower-cased, `EXTRA` read for
/// generation (STORED, or MariaDB's PERSISTENT) and invisibility.
fn column_from_row(r: &Row) -> Column {
    let name = cell_str(r, 0).unwrap_or_default();
    let data_type = cell_str(r, 2).unwrap_or_default().to_ascii_lowercase();
    let column_type = cell_str(r, 3).unwrap_or_default().to_ascii_lowercase();
    let collation = cell_str(r, 6);
    let extra = cell_str(r, 8).unwrap_or_default().to_ascii_uppercase();
    let generated = if extra.contains("GENERATED") {
        Some(Generated {
            expression: cell_str(r, 9).unwrap_or_default(),
            stored: extra.contains("STORED") || extra.contains("PERSISTENT"),
        })
    } else {
        None
    };
    Column {
        class: TypeClass::from_data_type(&data_type, collation.as_deref()),
        unsigned: column_type.contains("unsigned"),
        name,
        ordinal: cell_u64(r, 1).unwrap_or(0) as u32,
        data_type,
        column_type,
        nullable: cell_str(r, 4).as_deref() == Some("YES"),
        charset: cell_str(r, 5),
        collation,
        default: cell_str(r, 7),
        generated,
        invisible: extra.contains("INVISIBLE"),
    }
}

/// The tables' indexes (`information_schema.STATISTICS`), each with its table's name; per
/// table primary first, then unique, then the rest (the order keys are chosen in). Indexes
/// with an expression part are left out: they cannot bound key ranges.
async fn read_indexes(conn: &mut Conn, where_clause: &str) -> Result<Vec<(String, Index)>> {
    let rows = conn
        .rows(&format!(
            "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME, TABLE_NAME \
             FROM information_schema.STATISTICS \
             WHERE {where_clause} ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"
        ))
        .await?;
    let mut out = Vec::new();
    for (table, rows) in group_by_table(
        rows.into_iter()
            .map(|r| (cell_str(&r, 3).unwrap_or_default(), r))
            .collect(),
    ) {
        out.extend(
            indexes_from_rows(&rows)
                .into_iter()
                .map(|i| (table.clone(), i)),
        );
    }
    Ok(out)
}

/// One table's [`read_indexes`] rows, in index and sequence order, as its indexes.
fn indexes_from_rows(rows: &[Row]) -> Vec<Index> {
    let mut indexes: Vec<Index> = Vec::new();
    let mut expression_indexes = Vec::new();
    for r in rows {
        let name = cell_str(r, 0).unwrap_or_default();
        let Some(column) = cell_str(r, 2) else {
            // Functional index part (MySQL 8): cannot be used for ranges.
            expression_indexes.push(name);
            continue;
        };
        match indexes.last_mut() {
            Some(idx) if idx.name == name => idx.columns.push(column),
            _ => indexes.push(Index {
                primary: name == "PRIMARY",
                unique: cell_u64(r, 1) == Some(0),
                name,
                columns: vec![column],
            }),
        }
    }
    indexes.retain(|i| !expression_indexes.contains(&i.name));
    // Primary first, then unique, then the rest: the order keys are chosen in.
    indexes.sort_by_key(|i| (!i.primary, !i.unique, i.name.clone()));
    indexes
}

/// The foreign keys of the tables of `schema_lit` (quoted) selected by `table_filter`
/// (conditions on `k.TABLE_NAME` and `r.TABLE_NAME`, or empty for all), each with its
/// table's name: `KEY_COLUMN_USAGE` joined with `REFERENTIAL_CONSTRAINTS` for the rules,
/// columns in constraint order.
async fn read_foreign_keys(
    conn: &mut Conn,
    schema_lit: &str,
    table_filter: &str,
) -> Result<Vec<(String, ForeignKey)>> {
    let rows = conn
        .rows(&format!(
            "SELECT k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_SCHEMA, \
             k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, r.UPDATE_RULE, r.DELETE_RULE, \
             k.TABLE_NAME \
             FROM information_schema.KEY_COLUMN_USAGE k \
             JOIN information_schema.REFERENTIAL_CONSTRAINTS r \
               ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME \
              AND r.TABLE_NAME = k.TABLE_NAME \
             WHERE k.TABLE_SCHEMA = {schema_lit} AND r.CONSTRAINT_SCHEMA = {schema_lit}{table_filter} \
               AND k.REFERENCED_TABLE_NAME IS NOT NULL \
             ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION"
        ))
        .await?;
    // Grouped by exact table name first: `ORDER BY` compares names case-insensitively, so
    // the rows of `T` and `t` may interleave.
    let by_table = group_by_table(
        rows.into_iter()
            .map(|r| (cell_str(&r, 7).unwrap_or_default(), r))
            .collect(),
    );
    let mut out = Vec::new();
    for (table, rows) in by_table {
        out.extend(
            foreign_keys_from_rows(&rows)
                .into_iter()
                .map(|f| (table.clone(), f)),
        );
    }
    Ok(out)
}

/// One table's [`read_foreign_keys`] rows, in constraint and position order.
fn foreign_keys_from_rows(rows: &[Row]) -> Vec<ForeignKey> {
    let mut foreign_keys: Vec<ForeignKey> = Vec::new();
    for r in rows {
        let name = cell_str(r, 0).unwrap_or_default();
        let column = cell_str(r, 1).unwrap_or_default();
        let ref_column = cell_str(r, 4).unwrap_or_default();
        match foreign_keys.last_mut() {
            Some(fk) if fk.name == name => {
                fk.columns.push(column);
                fk.ref_columns.push(ref_column);
            }
            _ => foreign_keys.push(ForeignKey {
                name,
                columns: vec![column],
                ref_schema: cell_str(r, 2).unwrap_or_default(),
                ref_table: cell_str(r, 3).unwrap_or_default(),
                ref_columns: vec![ref_column],
                on_update: cell_str(r, 5).unwrap_or_default(),
                on_delete: cell_str(r, 6).unwrap_or_default(),
            }),
        }
    }
    foreign_keys
}
