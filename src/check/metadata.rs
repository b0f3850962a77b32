//! What a promoted downstream hands out next: AUTO_INCREMENT counters and sequences. Rows
//! can be equal while these are behind, and a downstream that takes writes after a failover
//! then reuses ids (docs/comparison-rules.md, "Counters and sequences").
//!
//! - **Counters** are read when the data phase opens its read points. A downstream counter
//!   is a difference when it is at or below the largest value of the column the upstream
//!   holds at its read point (`MAX` on a pinned worker connection): the next insert would
//!   take an id an upstream row has. A counter behind the upstream's counter but above every
//!   key is not (ids of rolled-back inserts, which no row holds). Counters only grow, so a
//!   downstream counter not below the upstream's as discovered needs no `MAX` query.
//! - **Sequences** (MariaDB on both sides) are read live: MariaDB does not version their
//!   state. A downstream sequence is a difference when it is behind (its next value would
//!   hand out values the upstream has handed out), defined differently (increment, bounds,
//!   cache, cycle) or missing; one ahead is a warning (no value is reused).

use super::plan::TablePlan;
use crate::db::{cell_str, cell_u64, Conn};
use crate::error::Result;
use crate::report::MetadataDiff;
use crate::schema::TableRef;
use crate::sql::quote_str;
use std::collections::BTreeMap;

/// Tables per `UNION ALL` of `MAX` queries (and per `IN` list of counters).
const BATCH: usize = 200;

/// A difference found, with what a second read must see for it to count as fixed.
#[derive(Debug, Clone)]
pub(super) struct Found {
    pub diff: MetadataDiff,
    check: Recheck,
}

#[derive(Debug, Clone)]
enum Recheck {
    /// The downstream counter must be above this key.
    Counter { table: TableRef, max: i128 },
    /// The downstream sequence must be no longer behind or defined differently.
    Sequence { name: TableRef, up: SeqState },
}

/// The counters at or below an upstream key. `uc` reads the upstream at its read point;
/// `dc` the downstream's counters (live: they only grow).
pub(super) async fn counters(
    uc: &mut Conn,
    dc: &mut Conn,
    plans: &[&TablePlan],
) -> Result<Vec<Found>> {
    let candidates: Vec<&TablePlan> = plans
        .iter()
        .copied()
        .filter(|p| {
            p.counter
                .as_ref()
                .is_some_and(|c| c.up.is_none_or(|up| c.down < up))
        })
        .collect();
    let mut out = Vec::new();
    for batch in candidates.chunks(BATCH) {
        let maxes = upstream_maxes(uc, batch).await?;
        let now = downstream_counters(dc, batch).await?;
        for (i, p) in batch.iter().enumerate() {
            let (Some(c), Some(&max)) = (&p.counter, maxes.get(&i)) else {
                continue;
            };
            // A table dropped since discovery has no counter now: its data errors say so.
            let Some(&down) = now.get(&p.target) else {
                continue;
            };
            if let Some(diff) = counter_diff(&p.target, &c.column, down, c.up, max) {
                out.push(Found {
                    diff,
                    check: Recheck::Counter {
                        table: p.target.clone(),
                        max: max.unwrap_or(0),
                    },
                });
            }
        }
    }
    Ok(out)
}

/// `MAX(column)` of each table of `batch` (by position), `None` for an empty table.
async fn upstream_maxes(
    uc: &mut Conn,
    batch: &[&TablePlan],
) -> Result<BTreeMap<usize, Option<i128>>> {
    let columns: Vec<(TableRef, String)> = batch
        .iter()
        .map(|p| {
            let column = p
                .counter
                .as_ref()
                .map(|c| c.column.clone())
                .unwrap_or_default();
            (p.upstream.clone(), column)
        })
        .collect();
    max_values(uc, &columns).await
}

/// `MAX(column)` of each `(table, column)` (by position), `None` for an empty table; one
/// `UNION ALL` query for the lot.
async fn max_values(
    conn: &mut Conn,
    columns: &[(TableRef, String)],
) -> Result<BTreeMap<usize, Option<i128>>> {
    let sql = columns
        .iter()
        .enumerate()
        .map(|(i, (table, column))| {
            format!(
                "SELECT {i}, MAX({}) FROM {}",
                crate::sql::quote_ident(column),
                table.quoted()
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let mut out = BTreeMap::new();
    if sql.is_empty() {
        return Ok(out);
    }
    for r in conn.rows(&sql).await? {
        if let Some(i) = cell_str(&r, 0).and_then(|v| v.parse::<usize>().ok()) {
            out.insert(i, cell_str(&r, 1).and_then(|v| v.parse::<i128>().ok()));
        }
    }
    Ok(out)
}

/// A node about to be promoted, on its own (no upstream to compare with): every user
/// table's AUTO_INCREMENT counter at or below the table's largest value (a restore or an
/// import that did not carry the counter) is moved past it. Returns how many counters were
/// checked and the ones moved (`fixed` when a second read confirms it).
pub async fn raise_own_counters(conn: &mut Conn) -> Result<(usize, Vec<MetadataDiff>)> {
    let rows = conn
        .rows(
            "SELECT c.TABLE_SCHEMA, c.TABLE_NAME, c.COLUMN_NAME, t.AUTO_INCREMENT \
             FROM information_schema.COLUMNS c JOIN information_schema.TABLES t \
             ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
             WHERE c.EXTRA LIKE '%auto_increment%' AND t.AUTO_INCREMENT IS NOT NULL",
        )
        .await?;
    let mut tables = Vec::new();
    for r in &rows {
        let (Some(schema), Some(table), Some(column), Some(counter)) = (
            cell_str(r, 0),
            cell_str(r, 1),
            cell_str(r, 2),
            cell_u64(r, 3),
        ) else {
            continue;
        };
        if !crate::config::is_system_schema(&schema) {
            tables.push((TableRef::new(schema, table), column, counter));
        }
    }
    let mut raised = Vec::new();
    for batch in tables.chunks(BATCH) {
        let columns: Vec<(TableRef, String)> = batch
            .iter()
            .map(|(t, c, _)| (t.clone(), c.clone()))
            .collect();
        let maxes = max_values(conn, &columns).await?;
        for (i, (table, column, counter)) in batch.iter().enumerate() {
            let max = maxes.get(&i).copied().flatten();
            if let Some(mut diff) = counter_diff(table, column, *counter, None, max) {
                for statement in &diff.fix {
                    conn.exec(statement).await?;
                }
                let now = counter_now(conn, table).await?;
                diff.fixed = now.zip(max).is_some_and(|(n, m)| i128::from(n) > m);
                raised.push(diff);
            }
        }
    }
    Ok((tables.len(), raised))
}

/// The downstream counters of `batch`'s tables now, by table.
async fn downstream_counters(
    dc: &mut Conn,
    batch: &[&TablePlan],
) -> Result<BTreeMap<TableRef, u64>> {
    let list = batch
        .iter()
        .map(|p| {
            format!(
                "({}, {})",
                quote_str(&p.target.schema),
                quote_str(&p.target.table)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT TABLE_SCHEMA, TABLE_NAME, AUTO_INCREMENT FROM information_schema.TABLES \
         WHERE (TABLE_SCHEMA, TABLE_NAME) IN ({list}) AND AUTO_INCREMENT IS NOT NULL"
    );
    let mut out = BTreeMap::new();
    for r in dc.rows(&sql).await? {
        let (Some(schema), Some(table), Some(n)) =
            (cell_str(&r, 0), cell_str(&r, 1), cell_u64(&r, 2))
        else {
            continue;
        };
        out.insert(TableRef::new(schema, table), n);
    }
    Ok(out)
}

/// The difference of a downstream counter `down` against the largest upstream value of the
/// column, `None` when it is above it. The fix moves the counter past that value and past
/// the upstream's own counter (ids the upstream handed out are not handed out again).
pub(super) fn counter_diff(
    table: &TableRef,
    column: &str,
    down: u64,
    up_counter: Option<u64>,
    up_max: Option<i128>,
) -> Option<MetadataDiff> {
    let max = up_max?;
    if i128::from(down) > max {
        return None;
    }
    let next = (max + 1).max(i128::from(up_counter.unwrap_or(0)));
    Some(MetadataDiff {
        kind: "auto_increment".into(),
        schema: table.schema.clone(),
        name: table.table.clone(),
        detail: format!(
            "AUTO_INCREMENT counter {down} is at or below the upstream's largest {column} \
             ({max}): inserts would reuse ids {down}..={max}"
        ),
        fix: vec![format!(
            "ALTER TABLE {} AUTO_INCREMENT = {next}",
            table.quoted()
        )],
        fixed: false,
    })
}

/// A MariaDB sequence's state (`SELECT … FROM sequence`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SeqState {
    /// `next_not_cached_value`: no server hands out this value or beyond (in the order of
    /// the increment) before writing a new state.
    pub next: i128,
    pub min: i128,
    pub max: i128,
    pub start: i128,
    pub increment: i128,
    pub cache: u64,
    pub cycle: bool,
    /// `cycle_count`: how many times a cycling sequence wrapped.
    pub round: u64,
}

impl SeqState {
    /// Whether `self` would hand out a value `other` already handed out.
    fn behind(&self, other: &SeqState) -> bool {
        if self.round != other.round {
            return self.round < other.round;
        }
        if other.increment < 0 {
            self.next > other.next
        } else {
            self.next < other.next
        }
    }

    /// The definition clauses `ALTER SEQUENCE` and `CREATE SEQUENCE` share.
    fn clauses(&self) -> String {
        let cache = match self.cache {
            0 => "NOCACHE".to_string(),
            n => format!("CACHE {n}"),
        };
        format!(
            "INCREMENT BY {} MINVALUE {} MAXVALUE {} START WITH {} {cache} {}",
            self.increment,
            self.min,
            self.max,
            self.start,
            if self.cycle { "CYCLE" } else { "NOCYCLE" }
        )
    }

    fn same_definition(&self, other: &SeqState) -> bool {
        (
            self.min,
            self.max,
            self.start,
            self.increment,
            self.cache,
            self.cycle,
        ) == (
            other.min,
            other.max,
            other.start,
            other.increment,
            other.cache,
            other.cycle,
        )
    }
}

/// A sequence's state, `None` when it does not exist.
pub(super) async fn read_sequence(conn: &mut Conn, name: &TableRef) -> Result<Option<SeqState>> {
    let sql = format!(
        "SELECT next_not_cached_value, minimum_value, maximum_value, start_value, increment, \
         cache_size, cycle_option, cycle_count FROM {}",
        name.quoted()
    );
    let row = match conn.first(&sql).await {
        Ok(row) => row,
        // Dropped since it was listed.
        Err(e) if e.server_code() == Some(1146) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(r) = row else { return Ok(None) };
    let int = |i| {
        cell_str(&r, i)
            .and_then(|v| v.parse::<i128>().ok())
            .unwrap_or(0)
    };
    Ok(Some(SeqState {
        next: int(0),
        min: int(1),
        max: int(2),
        start: int(3),
        increment: int(4),
        cache: int(5).max(0) as u64,
        cycle: int(6) != 0,
        round: int(7).max(0) as u64,
    }))
}

/// The difference of the downstream sequence `down` (missing: `None`) from the upstream's,
/// or a warning when it is only ahead. `name` is the downstream name.
pub(super) fn sequence_diff(
    name: &TableRef,
    up: &SeqState,
    down: Option<&SeqState>,
) -> (Option<MetadataDiff>, Option<String>) {
    let setval = format!(
        "SELECT SETVAL({}, {}, 0, {})",
        name.quoted(),
        up.next,
        up.round
    );
    let diff = |detail: String, fix: Vec<String>| MetadataDiff {
        kind: "sequence".into(),
        schema: name.schema.clone(),
        name: name.table.clone(),
        detail,
        fix,
        fixed: false,
    };
    let Some(down) = down else {
        let create = format!("CREATE SEQUENCE {} {}", name.quoted(), up.clauses());
        return (
            Some(diff(
                format!(
                    "missing on the downstream (upstream next value {})",
                    up.next
                ),
                vec![create, setval],
            )),
            None,
        );
    };
    let mut what = Vec::new();
    let mut fix = Vec::new();
    if !down.same_definition(up) {
        what.push(format!(
            "defined as {} on the downstream, {} on the upstream",
            down.clauses(),
            up.clauses()
        ));
        fix.push(format!("ALTER SEQUENCE {} {}", name.quoted(), up.clauses()));
    }
    let behind = down.behind(up);
    if behind {
        what.push(format!(
            "behind: next value {} (round {}) on the downstream, {} (round {}) on the \
             upstream: values up to the upstream's would be handed out again",
            down.next, down.round, up.next, up.round
        ));
        fix.push(setval);
    }
    let warning = (!behind && down.next != up.next).then(|| {
        format!(
            "sequence {}: the downstream is ahead of the upstream (next value {} vs {}): no \
             value is reused, not a difference",
            name.quoted(),
            down.next,
            up.next
        )
    });
    if what.is_empty() {
        return (None, warning);
    }
    (Some(diff(what.join("; "), fix)), warning)
}

/// The sequences (downstream names, with their upstream names) compared, the differences
/// and the warnings.
pub(super) async fn sequences(
    uc: &mut Conn,
    dc: &mut Conn,
    pairs: &[(TableRef, TableRef)],
    warnings: &mut Vec<String>,
) -> Result<Vec<Found>> {
    let mut out = Vec::new();
    for (upstream, target) in pairs {
        let Some(up) = read_sequence(uc, upstream).await? else {
            continue;
        };
        let down = read_sequence(dc, target).await?;
        let (diff, warning) = sequence_diff(target, &up, down.as_ref());
        warnings.extend(warning);
        if let Some(diff) = diff {
            out.push(Found {
                diff,
                check: Recheck::Sequence {
                    name: target.clone(),
                    up,
                },
            });
        }
    }
    Ok(out)
}

/// `--apply-fix`: run each difference's fix on the downstream and read it again; a
/// difference is fixed when the second read no longer finds it.
pub(super) async fn apply_and_recheck(dc: &mut Conn, found: &mut [Found]) -> Result<()> {
    for f in found.iter_mut() {
        for statement in &f.diff.fix {
            dc.exec(statement).await?;
        }
        f.diff.fixed = match &f.check {
            Recheck::Counter { table, max } => {
                let now = counter_now(dc, table).await?;
                now.is_some_and(|n| i128::from(n) > *max)
            }
            Recheck::Sequence { name, up } => {
                let down = read_sequence(dc, name).await?;
                sequence_diff(name, up, down.as_ref()).0.is_none()
            }
        };
    }
    Ok(())
}

async fn counter_now(dc: &mut Conn, table: &TableRef) -> Result<Option<u64>> {
    let sql = format!(
        "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND \
         TABLE_NAME = {}",
        quote_str(&table.schema),
        quote_str(&table.table)
    );
    Ok(dc.first(&sql).await?.and_then(|r| cell_u64(&r, 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> TableRef {
        TableRef::new("db", "t")
    }

    fn seq(next: i128) -> SeqState {
        SeqState {
            next,
            min: 1,
            max: 1000,
            start: 1,
            increment: 1,
            cache: 10,
            cycle: false,
            round: 0,
        }
    }

    #[test]
    fn a_counter_is_a_difference_only_at_or_below_an_upstream_key() {
        assert!(counter_diff(&t(), "id", 101, Some(101), Some(100)).is_none());
        assert!(
            counter_diff(&t(), "id", 5, Some(200), None).is_none(),
            "empty upstream"
        );
        let d = counter_diff(&t(), "id", 100, Some(101), Some(100)).unwrap();
        assert_eq!(d.fix, ["ALTER TABLE `db`.`t` AUTO_INCREMENT = 101"]);
        // Past the upstream's counter too, when it is higher than its largest key.
        let d = counter_diff(&t(), "id", 50, Some(130), Some(100)).unwrap();
        assert_eq!(d.fix, ["ALTER TABLE `db`.`t` AUTO_INCREMENT = 130"]);
        assert!(d.detail.contains("50..=100"), "{}", d.detail);
        // Above every key but below the upstream's counter: rolled-back ids only.
        assert!(counter_diff(&t(), "id", 101, Some(130), Some(100)).is_none());
        // Negative keys only.
        assert!(counter_diff(&t(), "id", 1, None, Some(-5)).is_none());
    }

    #[test]
    fn a_sequence_behind_is_set_forward_and_one_ahead_is_a_warning() {
        let (d, w) = sequence_diff(&t(), &seq(50), Some(&seq(20)));
        let d = d.unwrap();
        assert_eq!(d.fix, ["SELECT SETVAL(`db`.`t`, 50, 0, 0)"]);
        assert!(w.is_none());
        let (d, w) = sequence_diff(&t(), &seq(20), Some(&seq(50)));
        assert!(d.is_none());
        assert!(w.unwrap().contains("ahead"));
        assert_eq!(sequence_diff(&t(), &seq(20), Some(&seq(20))), (None, None));
    }

    #[test]
    fn descending_and_cycling_sequences_compare_in_their_own_order() {
        let desc = |next| SeqState {
            increment: -1,
            ..seq(next)
        };
        assert!(
            desc(10).behind(&desc(5)),
            "a descending sequence at 10 is behind 5"
        );
        assert!(!desc(5).behind(&desc(10)));
        let round = |next, round| SeqState {
            cycle: true,
            round,
            ..seq(next)
        };
        assert!(
            round(900, 0).behind(&round(3, 1)),
            "a lower round is behind"
        );
        assert!(!round(3, 1).behind(&round(900, 0)));
    }

    #[test]
    fn a_definition_difference_is_altered_before_the_value_is_set() {
        let up = SeqState {
            increment: 5,
            cycle: true,
            ..seq(50)
        };
        let (d, _) = sequence_diff(&t(), &up, Some(&seq(20)));
        let d = d.unwrap();
        assert_eq!(d.fix.len(), 2);
        assert!(
            d.fix[0].starts_with("ALTER SEQUENCE `db`.`t` INCREMENT BY 5 "),
            "{:?}",
            d.fix
        );
        assert!(d.fix[0].ends_with(" CYCLE"));
        assert!(d.fix[1].starts_with("SELECT SETVAL("));
        let (missing, _) = sequence_diff(&t(), &up, None);
        let missing = missing.unwrap();
        assert!(missing.fix[0].starts_with("CREATE SEQUENCE `db`.`t` INCREMENT BY 5"));
        assert!(missing.detail.contains("missing"));
    }
}
