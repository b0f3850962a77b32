//! Reading table structure from `information_schema` (never by parsing DDL, so no DDL
//! dialect can break a run).

use super::model::{Column, ForeignKey, Generated, Index, TableRef, TableSchema, TypeClass};
use crate::db::{cell_str, cell_u64, Conn};
use crate::error::Result;
use crate::row::Row;
use crate::sql::quote_str;

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
    let schema_lit = quote_str(&table.schema);
    let table_lit = quote_str(&table.table);
    let where_clause = format!("TABLE_SCHEMA = {schema_lit} AND TABLE_NAME = {table_lit}");

    // MariaDB lists a system-versioned table as 'SYSTEM VERSIONED' here (and as 'BASE
    // TABLE' in SHOW FULL TABLES): it is an ordinary table to its users.
    let Some(info) = conn
        .first(&format!(
            "SELECT TABLE_COLLATION, ENGINE, TABLE_TYPE FROM information_schema.TABLES \
             WHERE {where_clause} AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')"
        ))
        .await?
    else {
        return Ok(None);
    };
    let mut columns = read_columns(conn, &where_clause).await?;
    let mut indexes = read_indexes(conn, &where_clause).await?;
    let foreign_keys = read_foreign_keys(conn, &schema_lit, &table_lit).await?;
    let system_versioned = cell_str(&info, 2).as_deref() == Some("SYSTEM VERSIONED");
    if system_versioned {
        drop_period_columns(&mut columns, &mut indexes);
    }

    Ok(Some(TableSchema {
        table: table.clone(),
        columns,
        indexes,
        foreign_keys,
        collation: cell_str(&info, 0),
        engine: cell_str(&info, 1),
        system_versioned,
    }))
}

/// Removes a system-versioned table's explicit period columns (generated `ROW START` /
/// `ROW END`) from its columns and keys. MariaDB appends the row-end column to every unique
/// key; among current rows it is the same maximum for all, so the rest of the key stays
/// unique. (Implicit period columns are hidden and never listed.)
fn drop_period_columns(columns: &mut Vec<Column>, indexes: &mut [Index]) {
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
    columns.retain(|c| !is_period(c));
    for idx in indexes.iter_mut() {
        idx.columns
            .retain(|c| !period.iter().any(|p| p.eq_ignore_ascii_case(c)));
    }
}

/// The table's columns in ordinal order (`information_schema.COLUMNS`), `where_clause`
/// selecting the table.
async fn read_columns(conn: &mut Conn, where_clause: &str) -> Result<Vec<Column>> {
    let rows = conn
        .rows(&format!(
            "SELECT COLUMN_NAME, ORDINAL_POSITION, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, \
             CHARACTER_SET_NAME, COLLATION_NAME, COLUMN_DEFAULT, EXTRA, GENERATION_EXPRESSION \
             FROM information_schema.COLUMNS WHERE {where_clause} ORDER BY ORDINAL_POSITION"
        ))
        .await?;
    Ok(rows.iter().map(column_from_row).collect())
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

/// The table's indexes (`information_schema.STATISTICS`), primary first, then unique, then
/// the rest (the order keys are chosen in). Indexes with an expression part are left out:
/// they cannot bound key ranges.
async fn read_indexes(conn: &mut Conn, where_clause: &str) -> Result<Vec<Index>> {
    let rows = conn
        .rows(&format!(
            "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE {where_clause} ORDER BY INDEX_NAME, SEQ_IN_INDEX"
        ))
        .await?;
    let mut indexes: Vec<Index> = Vec::new();
    let mut expression_indexes = Vec::new();
    for r in &rows {
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
    Ok(indexes)
}

/// The table's foreign keys (`KEY_COLUMN_USAGE` joined with `REFERENTIAL_CONSTRAINTS` for
/// the rules), columns in constraint order. `schema_lit` and `table_lit` are quoted.
async fn read_foreign_keys(
    conn: &mut Conn,
    schema_lit: &str,
    table_lit: &str,
) -> Result<Vec<ForeignKey>> {
    let rows = conn
        .rows(&format!(
            "SELECT k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_SCHEMA, \
             k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, r.UPDATE_RULE, r.DELETE_RULE \
             FROM information_schema.KEY_COLUMN_USAGE k \
             JOIN information_schema.REFERENTIAL_CONSTRAINTS r \
               ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME \
              AND r.TABLE_NAME = k.TABLE_NAME \
             WHERE k.TABLE_SCHEMA = {schema_lit} AND k.TABLE_NAME = {table_lit} \
               AND r.CONSTRAINT_SCHEMA = {schema_lit} AND r.TABLE_NAME = {table_lit} \
               AND k.REFERENCED_TABLE_NAME IS NOT NULL \
             ORDER BY k.CONSTRAINT_NAME, k.ORDINAL_POSITION"
        ))
        .await?;
    let mut foreign_keys: Vec<ForeignKey> = Vec::new();
    for r in &rows {
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
    Ok(foreign_keys)
}
