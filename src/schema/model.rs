//! Table structure model, as read from `information_schema`. Pure data, no I/O.

use serde::Serialize;
use std::fmt;

/// A fully qualified table name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TableRef {
    pub schema: String,
    pub table: String,
}

impl TableRef {
    pub fn new(schema: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            table: table.into(),
        }
    }

    /// `` `schema`.`table` `` with identifiers quoted for SQL.
    pub fn quoted(&self) -> String {
        format!(
            "{}.{}",
            crate::sql::quote_ident(&self.schema),
            crate::sql::quote_ident(&self.table)
        )
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// How a column's values are represented and compared. Derived from `DATA_TYPE`; decides
/// the checksum expression, the key ordering and the SQL literal form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeClass {
    /// TINYINT … BIGINT, signed or unsigned.
    Int,
    /// DECIMAL / NUMERIC.
    Decimal,
    /// FLOAT (single precision).
    Float,
    /// DOUBLE / REAL.
    Double,
    Date,
    Time,
    DateTime,
    Timestamp,
    Year,
    /// CHAR, VARCHAR, TEXT family (character strings with a collation).
    Text,
    /// BINARY, VARBINARY, BLOB family.
    Binary,
    Json,
    Enum,
    Set,
    Bit,
    /// Anything else (spatial types, …): compared by its server text form.
    Other,
}

impl TypeClass {
    /// How values of this class are written as SQL literals.
    pub fn literal_kind(self) -> crate::sql::LiteralKind {
        use crate::sql::LiteralKind;
        match self {
            // FLOAT arrives as `CAST(c AS DOUBLE)` text: 17 digits that re-create the float.
            // BIT arrives as `CAST(c AS UNSIGNED)` text (the plan selects it so), not as the
            // protocol's big-endian bytes: comparable across BIT widths and readable.
            TypeClass::Int
            | TypeClass::Decimal
            | TypeClass::Year
            | TypeClass::Float
            | TypeClass::Double
            | TypeClass::Bit => LiteralKind::Number,
            TypeClass::Binary => LiteralKind::Binary,
            TypeClass::Date
            | TypeClass::Time
            | TypeClass::DateTime
            | TypeClass::Timestamp
            | TypeClass::Text
            | TypeClass::Json
            | TypeClass::Enum
            | TypeClass::Set
            | TypeClass::Other => LiteralKind::Text,
        }
    }

    /// Classify an `information_schema.COLUMNS.DATA_TYPE` value.
    pub fn from_data_type(data_type: &str, collation: Option<&str>) -> Self {
        match data_type.to_ascii_lowercase().as_str() {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => TypeClass::Int,
            "decimal" | "numeric" => TypeClass::Decimal,
            "float" => TypeClass::Float,
            "double" | "real" | "double precision" => TypeClass::Double,
            "date" => TypeClass::Date,
            "time" => TypeClass::Time,
            "datetime" => TypeClass::DateTime,
            "timestamp" => TypeClass::Timestamp,
            "year" => TypeClass::Year,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => {
                // MariaDB reports JSON as LONGTEXT (with a json_valid CHECK): it stays text
                // and is compared byte for byte, which is what docs/comparison-rules.md
                // promises for it. A `binary` collation on a text type (CHAR BINARY in old
                // servers) is still text.
                let _ = collation;
                TypeClass::Text
            }
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                TypeClass::Binary
            }
            "json" => TypeClass::Json,
            "enum" => TypeClass::Enum,
            "set" => TypeClass::Set,
            "bit" => TypeClass::Bit,
            _ => TypeClass::Other,
        }
    }

    /// Whether the server's text form of a value of this class may contain arbitrary bytes
    /// (including the `,` separator), so that the canonical encoding must length-prefix it.
    pub fn is_free_text(self) -> bool {
        matches!(
            self,
            TypeClass::Text
                | TypeClass::Binary
                | TypeClass::Json
                | TypeClass::Enum
                | TypeClass::Set
                | TypeClass::Other
        )
    }

    /// Whether values are character strings ordered by a collation.
    pub fn is_collated(self) -> bool {
        matches!(self, TypeClass::Text | TypeClass::Json)
    }
}

/// A generated column's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Generated {
    pub expression: String,
    pub stored: bool,
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column {
    pub name: String,
    /// 1-based position in the table.
    pub ordinal: u32,
    /// `DATA_TYPE`, lowercase (e.g. `int`).
    pub data_type: String,
    /// `COLUMN_TYPE`, lowercase (e.g. `int(10) unsigned`).
    pub column_type: String,
    pub class: TypeClass,
    pub nullable: bool,
    pub unsigned: bool,
    pub charset: Option<String>,
    pub collation: Option<String>,
    pub default: Option<String>,
    pub generated: Option<Generated>,
    /// Hidden from `SELECT *` (MariaDB `INVISIBLE`).
    pub invisible: bool,
}

impl Column {
    /// A value of this column (server text form, `None` = NULL) as an SQL literal.
    pub fn literal(&self, value: Option<&[u8]>) -> String {
        crate::sql::literal(self.class.literal_kind(), value)
    }

    /// Whether fix SQL may write this column (generated columns are computed by the server).
    pub fn writable(&self) -> bool {
        self.generated.is_none()
    }
}

/// An index (PRIMARY, UNIQUE or plain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Index {
    pub name: String,
    pub columns: Vec<String>,
    pub unique: bool,
    pub primary: bool,
}

/// A foreign key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    pub ref_schema: String,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
    pub on_update: String,
    pub on_delete: String,
}

/// The structure of one table on one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSchema {
    pub table: TableRef,
    /// Columns in ordinal order.
    pub columns: Vec<Column>,
    pub indexes: Vec<Index>,
    pub foreign_keys: Vec<ForeignKey>,
    pub collation: Option<String>,
    pub engine: Option<String>,
    /// `WITH SYSTEM VERSIONING` (MariaDB): the check reads the current rows; the period
    /// columns (`AS ROW START` / `AS ROW END`) are left out of `columns` and of the keys,
    /// since they record when each server wrote a row version, not data.
    pub system_versioned: bool,
    /// The column with the `AUTO_INCREMENT` attribute, if any.
    pub auto_increment: Option<String>,
    /// A system-versioned table's period columns (row start, row end), left out of
    /// `columns`; read only when its history is compared.
    pub period: Vec<Column>,
}

impl TableSchema {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The index used to split and order the table: the primary key, else the first unique
    /// key whose columns are all NOT NULL. `None` means the table is compared as a multiset.
    pub fn chunk_key(&self) -> Option<&Index> {
        if let Some(pk) = self.indexes.iter().find(|i| i.primary) {
            return Some(pk);
        }
        self.indexes.iter().find(|i| {
            i.unique
                && i.columns
                    .iter()
                    .all(|c| self.column(c).is_some_and(|col| !col.nullable))
        })
    }
}
