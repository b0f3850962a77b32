//! What a stretch of binlog wrote, as primary-key lists: the switchover's gate inside the
//! write freeze compares only the rows written since the gate before the freeze, so the
//! freeze no longer grows with the data. Pure: binlog files in, per-table `range`
//! predicates out; mysql_common decodes the row events (MariaDB's own event types, which
//! it does not know, are passed over).

use std::collections::{BTreeMap, BTreeSet};

use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::events::{Event, EventData};
use mysql_common::binlog::row::BinlogRow;
use mysql_common::binlog::value::BinlogValue;
use mysql_common::binlog::EventStreamReader;
use mysql_common::value::Value;

use super::binlog::MAGIC;

/// `(schema, table)`.
pub type TableName = (String, String);

/// The binlog could not be read as row events.
#[derive(Debug, thiserror::Error)]
#[error("the binlog cannot be decoded: {0}")]
pub struct DecodeError(String);

/// A primary-key column, as the row images need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyColumn {
    pub name: String,
    /// Its position in the table (0-based): the row image's column index.
    pub position: usize,
    pub kind: KeyKind,
}

/// How a key column's binlog value becomes an SQL literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// An integer of `bytes` bytes. The binlog carries no signedness by default
    /// (`binlog_row_metadata = MINIMAL`), so an UNSIGNED value is decoded negative past
    /// the signed range and is read back at its width.
    Int { unsigned: bool, bytes: u8 },
    /// CHAR/VARCHAR: the stored bytes in the column's charset, `_charset X'…'`.
    Text { charset: String },
    /// VARBINARY: `X'…'`.
    Binary,
    /// DECIMAL, DATE, DATETIME, TIME: the decoded value's own literal.
    Literal,
}

impl KeyKind {
    /// The kind for an `information_schema.COLUMNS` row, or why the key cannot be listed.
    pub fn of(
        data_type: &str,
        column_type: &str,
        charset: Option<&str>,
    ) -> Result<KeyKind, String> {
        let unsigned = column_type.to_ascii_lowercase().contains("unsigned");
        let int = |bytes| Ok(KeyKind::Int { unsigned, bytes });
        match data_type.to_ascii_lowercase().as_str() {
            "tinyint" => int(1),
            "smallint" => int(2),
            "mediumint" => int(3),
            "int" | "integer" => int(4),
            "bigint" => int(8),
            "char" | "varchar" => match charset {
                Some(cs) if cs.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                    Ok(KeyKind::Text {
                        charset: cs.to_string(),
                    })
                }
                _ => Err(format!(
                    "key column of type {column_type} without a charset"
                )),
            },
            "varbinary" => Ok(KeyKind::Binary),
            "decimal" | "date" | "datetime" | "time" => Ok(KeyKind::Literal),
            other => Err(format!(
                "a {other} key column is not listed from the binlog"
            )),
        }
    }
}

/// What the binlog wrote to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableChanges {
    /// The primary keys of the rows written (before and after images), as SQL row values.
    Keys(BTreeSet<String>),
    /// The whole table must be compared, and why.
    Whole(String),
}

/// What a stretch of binlog wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Set when the stretch holds what key lists cannot describe (DDL, a statement-logged
    /// write): then everything selected is compared.
    pub everything: Option<String>,
    pub tables: BTreeMap<TableName, TableChanges>,
}

/// Every event of binlog `files` (each starting with the binlog magic), in order.
fn each_event(
    files: &[Vec<u8>],
    mut f: impl FnMut(&EventStreamReader, &Event) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let mut reader = EventStreamReader::new(BinlogVersion::Version4);
    for file in files {
        let mut input = file
            .strip_prefix(&MAGIC)
            .ok_or_else(|| DecodeError("not a binlog file (bad magic)".into()))?;
        while let Some(event) = reader
            .read(&mut input)
            .map_err(|e| DecodeError(e.to_string()))?
        {
            f(&reader, &event)?;
        }
    }
    Ok(())
}

/// The tables `files` hold row events for.
pub fn tables_written(files: &[Vec<u8>]) -> Result<BTreeSet<TableName>, DecodeError> {
    let mut out = BTreeSet::new();
    each_event(files, |reader, event| {
        if let Some(EventData::RowsEvent(rows)) = data(event)? {
            out.insert(table_of(reader, rows.table_id())?);
        }
        Ok(())
    })?;
    Ok(out)
}

/// The rows `files` wrote, per table, as key lists over `keys` (a table's primary key,
/// or why it has none that can be listed). A table with more than `cap` keys is compared
/// whole.
pub fn changes(
    files: &[Vec<u8>],
    keys: &BTreeMap<TableName, Result<Vec<KeyColumn>, String>>,
    cap: usize,
) -> Result<Changes, DecodeError> {
    let mut out = Changes::default();
    each_event(files, |reader, event| {
        match data(event)? {
            Some(EventData::QueryEvent(q)) => {
                let sql = q.query();
                if out.everything.is_none() && !is_transaction_control(&sql) {
                    let head: String = sql.chars().take(80).collect();
                    out.everything = Some(format!("the binlog holds a statement: {head}"));
                }
            }
            Some(EventData::RowsEvent(rows)) => {
                let name = table_of(reader, rows.table_id())?;
                let tme = reader
                    .get_tme(rows.table_id())
                    .ok_or_else(|| DecodeError("a row event without its table map".into()))?;
                let entry =
                    out.tables
                        .entry(name.clone())
                        .or_insert_with(|| match keys.get(&name) {
                            Some(Ok(_)) => TableChanges::Keys(BTreeSet::new()),
                            Some(Err(why)) => TableChanges::Whole(why.clone()),
                            None => TableChanges::Whole("its key is not known".into()),
                        });
                let (TableChanges::Keys(set), Some(Ok(columns))) = (&mut *entry, keys.get(&name))
                else {
                    return Ok(());
                };
                let mut whole = None;
                for row in rows.rows(tme) {
                    let (before, after) = row.map_err(|e| DecodeError(e.to_string()))?;
                    for image in [before, after].iter().flatten() {
                        match key_literal(image, columns) {
                            Ok(k) => {
                                set.insert(k);
                            }
                            Err(why) => whole = Some(why),
                        }
                    }
                }
                if set.len() > cap {
                    whole = Some(format!("more than {cap} rows written"));
                }
                if let Some(why) = whole {
                    *entry = TableChanges::Whole(why);
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

/// The event's data; MariaDB's own event types (GTID, annotate rows, checkpoints) are
/// not known to the decoder and read as nothing.
fn data(event: &Event) -> Result<Option<EventData<'_>>, DecodeError> {
    if event.header().event_type().is_err() {
        return Ok(None);
    }
    event.read_data().map_err(|e| DecodeError(e.to_string()))
}

fn table_of(reader: &EventStreamReader, table_id: u64) -> Result<TableName, DecodeError> {
    let tme = reader
        .get_tme(table_id)
        .ok_or_else(|| DecodeError("a row event without its table map".into()))?;
    Ok((
        tme.database_name().into_owned(),
        tme.table_name().into_owned(),
    ))
}

/// `BEGIN`, `COMMIT`, `ROLLBACK`, savepoints and XA: no data of their own.
fn is_transaction_control(sql: &str) -> bool {
    let s = sql.trim_start().to_ascii_uppercase();
    [
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT",
        "RELEASE SAVEPOINT",
        "XA ",
    ]
    .iter()
    .any(|p| s.starts_with(p))
}

/// One row image's key as an SQL row value: `(1,_latin1 X'61')`.
fn key_literal(image: &BinlogRow, columns: &[KeyColumn]) -> Result<String, String> {
    let mut parts = Vec::with_capacity(columns.len());
    for c in columns {
        let value = match image.as_ref(c.position) {
            Some(BinlogValue::Value(v)) => v,
            Some(_) => return Err(format!("key column {} holds JSON", c.name)),
            None => {
                return Err(format!(
                    "the row image lacks key column {} (binlog_row_image?)",
                    c.name
                ))
            }
        };
        parts.push(literal(value, &c.kind).ok_or_else(|| {
            format!(
                "key column {}: value {value:?} cannot be written back",
                c.name
            )
        })?);
    }
    Ok(format!("({})", parts.join(",")))
}

fn literal(value: &Value, kind: &KeyKind) -> Option<String> {
    Some(match (kind, value) {
        (
            KeyKind::Int {
                unsigned: true,
                bytes,
            },
            Value::Int(i),
        ) => {
            let mask = if *bytes >= 8 {
                u64::MAX
            } else {
                (1u64 << (8 * u32::from(*bytes))) - 1
            };
            ((*i as u64) & mask).to_string()
        }
        (KeyKind::Int { .. }, Value::Int(i)) => i.to_string(),
        (KeyKind::Int { .. }, Value::UInt(u)) => u.to_string(),
        (KeyKind::Text { charset }, Value::Bytes(b)) => {
            format!("_{charset} {}", crate::sql::hex_literal(b))
        }
        (KeyKind::Binary, Value::Bytes(b)) => crate::sql::hex_literal(b),
        (KeyKind::Literal, Value::Bytes(b)) if crate::sql::is_plain_number(b) => {
            String::from_utf8_lossy(b).into_owned()
        }
        (KeyKind::Literal, v @ (Value::Date(..) | Value::Time(..))) => v.as_sql(true),
        _ => return None,
    })
}

/// The `range` predicate for `rows` of a table keyed by `columns`:
/// `` `id` IN (1,2) `` or `` (`a`,`b`) IN ((1,'x'),(2,'y')) ``.
pub fn range_predicate(columns: &[KeyColumn], rows: &BTreeSet<String>) -> String {
    let single = columns.len() == 1;
    let names = crate::sql::ident_list(columns.iter().map(|c| c.name.as_str()));
    let values: Vec<&str> = rows
        .iter()
        .map(|r| match single {
            // `(5)` → `5`: a one-column row value is the value itself.
            true => &r[1..r.len() - 1],
            false => r.as_str(),
        })
        .collect();
    match single {
        true => format!("{names} IN ({})", values.join(",")),
        false => format!("({names}) IN ({})", values.join(",")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_kinds_follow_the_column_type() {
        assert_eq!(
            KeyKind::of("int", "int(10) unsigned", None),
            Ok(KeyKind::Int {
                unsigned: true,
                bytes: 4
            })
        );
        assert_eq!(
            KeyKind::of("varchar", "varchar(64)", Some("latin1")),
            Ok(KeyKind::Text {
                charset: "latin1".into()
            })
        );
        assert!(KeyKind::of("timestamp", "timestamp", None).is_err());
        assert!(KeyKind::of("binary", "binary(16)", None).is_err());
        assert!(KeyKind::of("float", "float", None).is_err());
    }

    #[test]
    fn literals_read_unsigned_values_back_and_keep_text_bytes() {
        let u32key = KeyKind::Int {
            unsigned: true,
            bytes: 4,
        };
        assert_eq!(literal(&Value::Int(-1), &u32key).unwrap(), "4294967295");
        let u64key = KeyKind::Int {
            unsigned: true,
            bytes: 8,
        };
        assert_eq!(
            literal(&Value::Int(-1), &u64key).unwrap(),
            "18446744073709551615"
        );
        let signed = KeyKind::Int {
            unsigned: false,
            bytes: 4,
        };
        assert_eq!(literal(&Value::Int(-7), &signed).unwrap(), "-7");
        let latin1 = KeyKind::Text {
            charset: "latin1".into(),
        };
        assert_eq!(
            literal(&Value::Bytes(vec![0xe9, b'\'']), &latin1).unwrap(),
            "_latin1 X'E927'"
        );
        assert_eq!(
            literal(&Value::Bytes(b"12.50".to_vec()), &KeyKind::Literal).unwrap(),
            "12.50"
        );
        assert_eq!(
            literal(&Value::Bytes(b"1; DROP".to_vec()), &KeyKind::Literal),
            None
        );
    }

    #[test]
    fn range_predicates_for_one_and_several_key_columns() {
        let col = |name: &str, position| KeyColumn {
            name: name.into(),
            position,
            kind: KeyKind::Literal,
        };
        let rows: BTreeSet<String> = ["(1)".to_string(), "(2)".into()].into();
        assert_eq!(range_predicate(&[col("id", 0)], &rows), "`id` IN (1,2)");
        let rows: BTreeSet<String> = ["(1,_latin1 X'61')".to_string()].into();
        assert_eq!(
            range_predicate(&[col("a", 0), col("b", 2)], &rows),
            "(`a`, `b`) IN ((1,_latin1 X'61'))"
        );
        assert!(is_transaction_control("BEGIN"));
        assert!(is_transaction_control("XA END 'x'"));
        assert!(!is_transaction_control("CREATE TABLE t (a int)"));
    }
}
