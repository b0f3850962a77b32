//! Syncgate's report and fix SQL against the injected drift.

use crate::run::SyncgateRun;
use crate::scenario::{DataSpec, Expected};
use std::collections::BTreeMap;
use std::path::Path;

/// Compare what syncgate reported (and wrote as fix SQL) with the injected drift.
pub(crate) fn verify(
    run: &SyncgateRun,
    spec: &DataSpec,
    plan: &[Expected],
    out: &Path,
) -> Vec<String> {
    let mut problems = Vec::new();
    let r = &run.report;
    let mut expected_tables: BTreeMap<String, Expected> = BTreeMap::new();
    for (i, e) in plan.iter().enumerate() {
        expected_tables.insert(format!("sbtest{}", i + 1), *e);
    }
    if r.tables.len() != plan.len() {
        problems.push(format!(
            "{} tables reported, {} expected",
            r.tables.len(),
            plan.len()
        ));
    }
    for t in &r.tables {
        let Some(e) = expected_tables.get(&t.table) else {
            problems.push(format!("unexpected table {}.{}", t.schema, t.table));
            continue;
        };
        let got = Expected {
            missing: t.rows_missing,
            extra: t.rows_extra,
            changed: t.rows_changed,
        };
        if got != *e {
            problems.push(format!(
                "{}: reported missing/extra/changed {}/{}/{}, injected {}/{}/{}",
                t.table, got.missing, got.extra, got.changed, e.missing, e.extra, e.changed
            ));
        }
        let want_result = if e.total() == 0 { "equal" } else { "different" };
        if t.result.as_str() != want_result {
            problems.push(format!(
                "{}: result {} (expected {want_result}){}",
                t.table,
                t.result.as_str(),
                t.error
                    .as_deref()
                    .map(|e| format!(", error: {e}"))
                    .unwrap_or_default()
            ));
        }
        let (up, down) = (spec.rows, spec.rows - e.missing + e.extra);
        if (t.rows_upstream, t.rows_downstream) != (up, down) {
            problems.push(format!(
                "{}: rows upstream/downstream {}/{}, actual {up}/{down}",
                t.table, t.rows_upstream, t.rows_downstream
            ));
        }
    }
    // The fix SQL: one REPLACE per missing or changed row, one DELETE per extra row.
    let (replaces, deletes) = fix_statements(out);
    let want_replaces: u64 = plan.iter().map(|e| e.missing + e.changed).sum();
    let want_deletes: u64 = plan.iter().map(|e| e.extra).sum();
    if (replaces, deletes) != (want_replaces, want_deletes) {
        problems.push(format!(
            "fix SQL has {replaces} REPLACE / {deletes} DELETE statements, expected \
             {want_replaces} / {want_deletes}"
        ));
    }
    problems
}

/// The `REPLACE INTO` and `DELETE FROM` statements of the fix SQL under `out`.
fn fix_statements(out: &Path) -> (u64, u64) {
    let (mut replaces, mut deletes) = (0u64, 0u64);
    if let Ok(dir) = std::fs::read_dir(out.join("fix-on-downstream")) {
        for entry in dir.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            for line in text.lines() {
                if line.starts_with("REPLACE INTO ") {
                    replaces += 1;
                } else if line.starts_with("DELETE FROM ") {
                    deletes += 1;
                }
            }
        }
    }
    (replaces, deletes)
}
