//! Result rows read by column name (dr-interfaces A1.3 "Client rule").

use super::*;

/// Names compared without case, `_` read as a space: `Queue Time` (BACKUP) and
/// `Queue_time` (SHOW BACKUPS) are one name.
pub(super) fn normalize(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('_', " ")
}

/// One result row read by column name.
pub(super) struct Named<'a> {
    statement: &'static str,
    columns: &'a [String],
    normalized: Vec<String>,
    row: &'a [Option<Vec<u8>>],
}

impl<'a> Named<'a> {
    pub(super) fn new(
        statement: &'static str,
        columns: &'a [String],
        row: &'a [Option<Vec<u8>>],
    ) -> std::result::Result<Self, BrError> {
        if row.len() != columns.len() {
            return Err(BrError::RowShape {
                statement: statement.into(),
                cells: row.len(),
                columns: columns.len(),
            });
        }
        Ok(Named {
            statement,
            columns,
            normalized: columns.iter().map(|c| normalize(c)).collect(),
            row,
        })
    }

    pub(super) fn has(&self, column: &str) -> bool {
        self.normalized.contains(&normalize(column))
    }

    pub(super) fn bad(&self, column: &str, value: Option<&str>, reason: &str) -> BrError {
        BrError::BadValue {
            statement: self.statement.into(),
            column: column.into(),
            value: value.map(str::to_string),
            reason: reason.into(),
        }
    }

    /// The cell of `column` (`None` for NULL); a missing column is an error.
    pub(super) fn cell(&self, column: &str) -> std::result::Result<Option<&'a str>, BrError> {
        let wanted = normalize(column);
        let Some(i) = self.normalized.iter().position(|c| *c == wanted) else {
            return Err(BrError::MissingColumn {
                statement: self.statement.into(),
                column: column.into(),
                columns: self.columns.to_vec(),
            });
        };
        match self.row[i].as_deref() {
            None => Ok(None),
            Some(bytes) => std::str::from_utf8(bytes)
                .map(Some)
                .map_err(|_| self.bad(column, None, "not UTF-8 text")),
        }
    }

    /// [`Named::cell`] of a column that may be absent (`None` then).
    pub(super) fn optional(&self, column: &str) -> std::result::Result<Option<&'a str>, BrError> {
        if self.has(column) {
            self.cell(column)
        } else {
            Ok(None)
        }
    }

    pub(super) fn text(&self, column: &str) -> std::result::Result<String, BrError> {
        self.cell(column)?
            .map(str::to_string)
            .ok_or_else(|| self.bad(column, None, "a value is required"))
    }

    pub(super) fn parse<T: std::str::FromStr>(
        &self,
        column: &str,
        value: Option<&str>,
        what: &str,
    ) -> std::result::Result<T, BrError> {
        let text = value.ok_or_else(|| self.bad(column, None, &format!("{what} expected")))?;
        text.trim()
            .parse()
            .map_err(|_| self.bad(column, Some(text), &format!("not {what}")))
    }

    pub(super) fn number<T: std::str::FromStr>(
        &self,
        column: &str,
        what: &str,
    ) -> std::result::Result<T, BrError> {
        self.parse(column, self.cell(column)?, what)
    }

    /// The backup point: a positive TSO.
    pub(super) fn tso(&self, column: &str) -> std::result::Result<u64, BrError> {
        let ts: u64 = self.number(column, "an unsigned integer (a TSO)")?;
        if ts == 0 {
            return Err(self.bad(
                column,
                Some("0"),
                "the backup point must be a positive TSO; without it nothing can be compared \
                 or replicated from it",
            ));
        }
        Ok(ts)
    }
}

/// Read BACKUP's row (A1.3): `Destination`, `Size`, `BackupTS` (a positive TSO) and the
/// optional `Queue Time`, `Execution Time`, found by name in any order.
pub fn parse_backup_result(
    columns: &[String],
    row: &[Option<Vec<u8>>],
) -> std::result::Result<BackupResult, BrError> {
    let r = Named::new("BACKUP", columns, row)?;
    Ok(BackupResult {
        destination: r.text("Destination")?,
        size: r.number("Size", "an unsigned integer")?,
        backup_ts: r.tso("BackupTS")?,
        queue_time: r.optional("Queue Time")?.map(str::to_string),
        execution_time: r.optional("Execution Time")?.map(str::to_string),
    })
}

/// Read RESTORE's row (A1.3), by name: with `Cluster TS` (6 columns), `BackupTS` is the
/// archive's snapshot (a positive TSO) and `Cluster TS` the restore TS; without it (5
/// columns, older TiDB), `BackupTS` held the restore TS and is reported as `cluster_ts`, with
/// `backup_ts` 0.
pub fn parse_restore_result(
    columns: &[String],
    row: &[Option<Vec<u8>>],
) -> std::result::Result<RestoreResult, BrError> {
    let r = Named::new("RESTORE", columns, row)?;
    let destination = r.text("Destination")?;
    let size = r.number("Size", "an unsigned integer")?;
    let nonzero = |ts: u64| (ts > 0).then_some(ts);
    let (backup_ts, cluster_ts) = if r.has("Cluster TS") {
        let cluster: u64 = r.number("Cluster TS", "an unsigned integer (a TSO)")?;
        (r.tso("BackupTS")?, nonzero(cluster))
    } else {
        let restore_ts: u64 = r.number("BackupTS", "an unsigned integer (a TSO)")?;
        (0, nonzero(restore_ts))
    };
    Ok(RestoreResult {
        destination,
        size,
        backup_ts,
        cluster_ts,
        verification_ts: None,
    })
}

/// Read `SHOW BACKUPS` (A1.4), by name: `Destination`, `State` and `Progress` are required;
/// `Id` (absent on older TiDB), `Connection` and `Message` may be missing or NULL. TiDB strips
/// the URL parameters from `Destination`, but a failed job's `Message` is the BR error, which
/// may quote the URI: its secret parameters are masked.
pub fn parse_show_backups(
    columns: &[String],
    rows: &[Vec<Option<Vec<u8>>>],
) -> std::result::Result<Vec<BrJob>, BrError> {
    rows.iter()
        .map(|row| {
            let r = Named::new("SHOW BACKUPS", columns, row)?;
            let progress: f64 = r.number("Progress", "a percentage")?;
            if !progress.is_finite() {
                return Err(r.bad("Progress", None, "not a finite percentage"));
            }
            let id = r.optional("Id")?;
            let connection = r.optional("Connection")?;
            Ok(BrJob {
                id: id
                    .map(|v| r.parse("Id", Some(v), "an integer"))
                    .transpose()?,
                destination: r.text("Destination")?,
                state: r.text("State")?,
                progress,
                connection: connection
                    .map(|v| r.parse("Connection", Some(v), "an unsigned integer"))
                    .transpose()?,
                message: r.optional("Message")?.map(mask_secret_params),
            })
        })
        .collect()
}
