//! The switchover's gate inside the write freeze, over what was written since the gate
//! before it. The whole compare runs first while writes go on ([`verify::fenced_check`] at
//! a GTID fence G0); under the freeze only the rows the old primary's binlog wrote from a
//! position read before G0 up to the frozen point G are compared (a superset of (G0, G]),
//! table by table as key lists ([`written`]), so the freeze is the catch-up plus a compare
//! of seconds of writes, whatever the size of the data.
//!
//! Equal at G0 and the same writes since on both sides (the new node replicates them)
//! means equal at G for every row nobody wrote. A change made behind replication in
//! between to a row nobody wrote is what this gate cannot see; `--full-gate` keeps the
//! whole compare inside the freeze. What key lists cannot describe (DDL or a
//! statement-logged write in the stretch, a binlog that cannot be read or decoded, a
//! table router in the config) falls back to the whole compare, and says so.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;

use super::tool::{self, ClientTool};
use super::written::{self, Changes, KeyColumn, KeyKind, TableChanges, TableName};
use super::{verify, DrContext};
use crate::config::Config;
use crate::db::{cell_str, cell_u64, Conn};
use crate::error::{Error, Result};
use crate::report::RunReport;

/// A table with more rows written than this is compared whole.
const KEY_CAP: usize = 50_000;

/// A binlog position of the old primary read before the gate that precedes the freeze.
#[derive(Debug, Clone)]
pub struct BinlogStart {
    pub file: String,
    pub pos: u64,
}

impl BinlogStart {
    /// `SHOW MASTER STATUS`; None when the binary log is off.
    pub async fn read(conn: &mut Conn) -> Result<Option<BinlogStart>> {
        let row = conn.first("SHOW MASTER STATUS").await?;
        Ok(row.and_then(|r| {
            Some(BinlogStart {
                file: cell_str(&r, 0)?,
                pos: cell_u64(&r, 1)?,
            })
        }))
    }
}

/// What the gate inside the freeze compared.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The whole selection (and why), or None: only the rows written since `start`.
    pub whole: Option<String>,
    /// Tables and rows listed from the binlog (when not whole).
    pub tables: usize,
    pub keys: usize,
}

impl Scope {
    pub fn describe(&self) -> String {
        match &self.whole {
            Some(why) => format!("every selected row ({why})"),
            None => format!(
                "the {} row(s) written to {} table(s) since the gate before the freeze",
                self.keys, self.tables
            ),
        }
    }
}

/// The gate, `rctx`'s primary against its secondary, over what the primary's binlog wrote
/// since `start`; the whole compare when that cannot be listed. `before` is the gate before
/// the freeze (the result when nothing selected was written since).
pub async fn gate(
    rctx: &DrContext,
    start: &BinlogStart,
    before: Option<&RunReport>,
    step: &str,
) -> Result<(RunReport, Scope)> {
    match listed(rctx, start).await {
        Ok(Listed::Config(config, scope)) => {
            let mut ctx = rctx.clone();
            ctx.config = *config;
            Ok((verify::fenced_check(&ctx, step).await?, scope))
        }
        Ok(Listed::Nothing) if before.is_none() => {
            whole(rctx, step, "nothing selected was written".into()).await
        }
        Ok(Listed::Nothing) => Ok((
            before.expect("checked above").clone(),
            Scope {
                whole: None,
                tables: 0,
                keys: 0,
            },
        )),
        Ok(Listed::Whole(why)) => whole(rctx, step, why).await,
        Err(e @ Error::Interrupted { .. }) => Err(e),
        Err(e) => {
            whole(
                rctx,
                step,
                format!("the binlog since the gate was not listed: {e}"),
            )
            .await
        }
    }
}

async fn whole(rctx: &DrContext, step: &str, why: String) -> Result<(RunReport, Scope)> {
    tracing::info!("dr switchover: the gate in the freeze compares everything: {why}");
    let report = verify::fenced_check(rctx, step).await?;
    Ok((
        report,
        Scope {
            whole: Some(why),
            tables: 0,
            keys: 0,
        },
    ))
}

enum Listed {
    /// The gate's config: the written tables, each limited to its written keys.
    Config(Box<Config>, Scope),
    /// Nothing selected was written.
    Nothing,
    Whole(String),
}

async fn listed(rctx: &DrContext, start: &BinlogStart) -> Result<Listed> {
    if !rctx.config.routes.is_empty() {
        return Ok(Listed::Whole("the config routes tables".into()));
    }
    let files = read_binlog(rctx, start).await?;
    let filter = rctx.config.check_filter()?;
    let decoded = |e: written::DecodeError| Error::Internal(e.to_string());
    let selected: BTreeSet<TableName> = written::tables_written(&files)
        .map_err(decoded)?
        .into_iter()
        .filter(|(s, t)| filter.matches(s, t))
        .collect();
    let source = crate::db::Source::open(rctx.primary.clone()).await?;
    let mut conn = source.connect().await?;
    let keys = primary_keys(&mut conn, &selected).await;
    conn.close().await;
    let keys = keys?;
    let changes = written::changes(&files, &keys, KEY_CAP).map_err(decoded)?;
    if let Some(why) = changes.everything {
        return Ok(Listed::Whole(why));
    }
    let changes = Changes {
        everything: None,
        tables: changes
            .tables
            .into_iter()
            .filter(|(name, _)| selected.contains(name))
            .collect(),
    };
    if changes.tables.is_empty() {
        return Ok(Listed::Nothing);
    }
    let (config, scope) = gate_config(&rctx.config, &changes, &keys)?;
    Ok(Listed::Config(Box::new(config), scope))
}

/// The old primary's binlog from `start` to its end (under the freeze: the frozen point),
/// read with the vendor's tool as the archive does, one file per binlog file.
async fn read_binlog(rctx: &DrContext, start: &BinlogStart) -> Result<Vec<Vec<u8>>> {
    let ds = &rctx.config.data_sources[&rctx.dr.primary];
    let tool = ClientTool::binlog_reader(ds)?;
    let dir = tempfile::tempdir()?;
    let args = vec![
        "--read-from-remote-server".to_string(),
        "--raw".into(),
        format!("--result-file={}/", dir.path().display()),
        format!("--start-position={}", start.pos),
        start.file.clone(),
    ];
    tool::finish(tool.spawn(&args, Stdio::null(), Stdio::null())?).await?;
    tokio::task::spawn_blocking(move || -> Result<Vec<Vec<u8>>> {
        let mut names: Vec<_> = std::fs::read_dir(dir.path())?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        Ok(names
            .iter()
            .map(std::fs::read)
            .collect::<std::io::Result<_>>()?)
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?
}

/// Each table's primary key (or why it has none that can be listed).
async fn primary_keys(
    conn: &mut Conn,
    tables: &BTreeSet<TableName>,
) -> Result<BTreeMap<TableName, std::result::Result<Vec<KeyColumn>, String>>> {
    let mut out: BTreeMap<TableName, std::result::Result<Vec<KeyColumn>, String>> = tables
        .iter()
        .map(|t| (t.clone(), Err("it has no primary key".to_string())))
        .collect();
    if tables.is_empty() {
        return Ok(out);
    }
    let list: Vec<String> = tables
        .iter()
        .map(|(s, t)| {
            format!(
                "({}, {})",
                crate::sql::quote_str(s),
                crate::sql::quote_str(t)
            )
        })
        .collect();
    let sql = format!(
        "SELECT k.TABLE_SCHEMA, k.TABLE_NAME, k.COLUMN_NAME, c.ORDINAL_POSITION, c.DATA_TYPE, \
         c.COLUMN_TYPE, c.CHARACTER_SET_NAME \
         FROM information_schema.KEY_COLUMN_USAGE k JOIN information_schema.COLUMNS c \
         ON c.TABLE_SCHEMA = k.TABLE_SCHEMA AND c.TABLE_NAME = k.TABLE_NAME \
         AND c.COLUMN_NAME = k.COLUMN_NAME \
         WHERE k.CONSTRAINT_NAME = 'PRIMARY' AND (k.TABLE_SCHEMA, k.TABLE_NAME) IN ({}) \
         ORDER BY k.TABLE_SCHEMA, k.TABLE_NAME, k.ORDINAL_POSITION",
        list.join(", ")
    );
    let mut columns: BTreeMap<TableName, std::result::Result<Vec<KeyColumn>, String>> =
        BTreeMap::new();
    for r in conn.rows(&sql).await? {
        let (Some(s), Some(t), Some(name), Some(pos), Some(dt), Some(ct)) = (
            cell_str(&r, 0),
            cell_str(&r, 1),
            cell_str(&r, 2),
            cell_u64(&r, 3),
            cell_str(&r, 4),
            cell_str(&r, 5),
        ) else {
            continue;
        };
        let charset = cell_str(&r, 6);
        let entry = columns.entry((s, t)).or_insert_with(|| Ok(Vec::new()));
        let Ok(cols) = entry else { continue };
        match KeyKind::of(&dt, &ct, charset.as_deref()) {
            Ok(kind) => cols.push(KeyColumn {
                name,
                position: pos.saturating_sub(1) as usize,
                kind,
            }),
            Err(why) => *entry = Err(why),
        }
    }
    out.extend(columns);
    Ok(out)
}

/// The gate's config: only the written tables, each keeping its own table config (if any)
/// with its `range` narrowed to the written keys.
fn gate_config(
    config: &Config,
    changes: &Changes,
    keys: &BTreeMap<TableName, std::result::Result<Vec<KeyColumn>, String>>,
) -> Result<(Config, Scope)> {
    let mut out = config.clone();
    out.task.target_check_tables.clear();
    out.task.target_configs.clear();
    out.table_configs.clear();
    let mut scope = Scope {
        whole: None,
        tables: 0,
        keys: 0,
    };
    for (i, ((schema, table), written)) in changes.tables.iter().enumerate() {
        let pattern = format!("{}.{}", literal_pattern(schema), literal_pattern(table));
        let mut tc = config
            .table_config_for(schema, table)?
            .cloned()
            .unwrap_or_default();
        tc.target_tables = vec![pattern.clone()];
        scope.tables += 1;
        if let (TableChanges::Keys(rows), Some(Ok(columns))) =
            (written, keys.get(&(schema.clone(), table.clone())))
        {
            scope.keys += rows.len();
            let keyed = written::range_predicate(columns, rows);
            tc.range = Some(match tc.range.take() {
                Some(r) => format!("({r}) AND {keyed}"),
                None => keyed,
            });
        }
        let name = format!("written-since-gate-{i}");
        out.table_configs.insert(name.clone(), tc);
        out.task.target_configs.push(name);
        out.task.target_check_tables.push(pattern);
    }
    Ok((out, scope))
}

/// A name as a table-filter pattern that matches only itself.
fn literal_pattern(name: &str) -> String {
    let mut out = String::with_capacity(name.len() * 2);
    for c in name.chars() {
        if !c.is_alphanumeric() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_config_keeps_table_settings_and_narrows_their_range() {
        let mut config = Config::default();
        config.task.target_check_tables = vec!["shop.*".into()];
        config.table_configs.insert(
            "orders".into(),
            crate::config::TableConfig {
                target_tables: vec!["shop.orders".into()],
                range: Some("id > 10".into()),
                ignore_columns: vec!["note".into()],
                ..Default::default()
            },
        );
        config.task.target_configs = vec!["orders".into()];
        let id = KeyColumn {
            name: "id".into(),
            position: 0,
            kind: KeyKind::Int {
                unsigned: false,
                bytes: 4,
            },
        };
        let mut changes = Changes::default();
        changes.tables.insert(
            ("shop".into(), "orders".into()),
            TableChanges::Keys(["(11)".to_string(), "(12)".into()].into()),
        );
        changes.tables.insert(
            ("shop".into(), "log-2026".into()),
            TableChanges::Whole("it has no primary key".into()),
        );
        let keys = BTreeMap::from([
            (("shop".into(), "orders".into()), Ok(vec![id])),
            (
                ("shop".into(), "log-2026".into()),
                Err("it has no primary key".into()),
            ),
        ]);
        let (c, scope) = gate_config(&config, &changes, &keys).unwrap();
        assert_eq!(
            c.task.target_check_tables,
            ["shop.log\\-2026", "shop.orders"]
        );
        let orders = c.table_config_for("shop", "orders").unwrap().unwrap();
        assert_eq!(
            orders.range.as_deref(),
            Some("(id > 10) AND `id` IN (11,12)")
        );
        assert_eq!(orders.ignore_columns, ["note"]);
        let log = c.table_config_for("shop", "log-2026").unwrap().unwrap();
        assert_eq!(log.range, None, "compared whole");
        assert!(c.table_config_for("shop", "other").unwrap().is_none());
        assert_eq!((scope.tables, scope.keys), (2, 2));
        assert!(c.check_filter().unwrap().matches("shop", "log-2026"));
        assert!(!c.check_filter().unwrap().matches("shop", "logx2026"));
    }
}
