use super::*;
use crate::chunk::KeyRange;
use crate::config::Config;
use crate::report::TableReport;
use crate::row::Row;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

fn config(extra: &str) -> Config {
    Config::from_toml_str(
        &format!(
            r#"check-thread-count = 4
[data-sources.up]
host = "10.0.0.1"
password = "secret"
[data-sources.down]
host = "10.0.0.2"
[data-sources.unused]
host = "10.0.0.3"
[task]
output-dir = "./out"
source-instances = ["up"]
target-instance = "down"
target-check-tables = ["shop.*"]
{extra}"#
        ),
        "test.toml",
    )
    .unwrap()
}

fn fp(c: &Config, e: Effective) -> Fingerprint {
    fingerprint(c, &e).unwrap()
}

#[test]
fn fingerprint_ignores_volatile_fields() {
    let e = Effective::default();
    let base = fp(&config(""), e);
    assert_eq!(base.hash.len(), 64);
    assert!(!base.config.to_string().contains("secret"));
    let mut c = config("");
    c.check_thread_count = 16;
    c.task.output_dir = "/elsewhere".into();
    c.splitter_strategy = crate::config::SplitterStrategy::Random;
    c.data_sources.get_mut("unused").unwrap().port = 1;
    c.data_sources.get_mut("up").unwrap().security = Some(crate::config::Security {
        ca_path: Some("/etc/ca.pem".into()),
        ..Default::default()
    });
    assert_eq!(fp(&c, e).hash, base.hash);
    // Same config, same hash (deterministic).
    assert_eq!(fp(&config(""), e), base);
}

#[test]
fn fingerprint_changes_with_what_changes_results() {
    let e = Effective::default();
    let base = fp(&config(""), e);
    let mut port = config("");
    port.data_sources.get_mut("down").unwrap().port = 4000;
    let tables = config("").task.target_check_tables;
    let mut filter = config("");
    filter.task.target_check_tables = vec!["shop.orders".into()];
    assert_ne!(tables, filter.task.target_check_tables);
    let chunk = config(
        "target-configs = [\"c\"]\n[table-configs.c]\ntarget-tables = [\"shop.*\"]\nchunk-size = 10\n",
    );
    for (what, other) in [
        ("port", fp(&port, e)),
        ("filter", fp(&filter, e)),
        ("chunk-size", fp(&chunk, e)),
        (
            "apply-fix",
            fp(
                &config(""),
                Effective {
                    apply_fix: true,
                    ..e
                },
            ),
        ),
        (
            "export-fix-sql",
            fp(
                &config(""),
                Effective {
                    export_fix_sql: true,
                    ..e
                },
            ),
        ),
    ] {
        assert_ne!(other.hash, base.hash, "{what}");
    }
    let keys = changed_keys(&base.config, &fp(&port, e).config);
    assert_eq!(keys, vec!["data-sources.down.port".to_string()]);
    let keys = changed_keys(&base.config, &fp(&chunk, e).config);
    assert!(
        keys.iter().any(|k| k.starts_with("table-configs")),
        "{keys:?}"
    );
    assert!(keys.iter().any(|k| k == "task.target-configs"), "{keys:?}");
}

#[test]
fn mismatch_message_is_one_line_and_names_keys() {
    let e = Effective::default();
    let saved = Checkpoint {
        version: FORMAT_VERSION,
        fingerprint: fp(&config(""), e).hash,
        config: fp(&config(""), e).config,
        written_at: String::new(),
        tidb_auto: None,
        tables: vec![],
    };
    let mut c = config("");
    c.task.target_check_tables = vec!["other.*".into()];
    let msg = mismatch_message(Path::new("out/checkpoint"), &saved, &fp(&c, e));
    assert!(!msg.contains('\n'), "{msg}");
    assert!(msg.contains("different configuration"), "{msg}");
    assert!(msg.contains("task.target-check-tables"), "{msg}");
    assert!(msg.contains("out/checkpoint"), "{msg}");
}

fn key(n: u8) -> Option<Row> {
    Some(vec![Some(vec![b'0' + n])])
}

#[test]
fn prefix_grows_only_when_contiguous() {
    let mut t = ChunkTracker::new(Prefix::default());
    for seq in 0..4 {
        t.queued(seq, key(seq as u8));
    }
    t.queued(4, None);
    // 2 and 1 finish before 0.
    t.changes(2, 1, 0, 0);
    assert!(!t.done(2, 10, 9, true));
    assert!(!t.done(1, 10, 10, false));
    assert_eq!(t.prefix().chunks, 0);
    assert!(t.done(0, 10, 10, false));
    let p = t.prefix();
    assert_eq!((p.chunks, p.upper.clone(), p.last), (3, key(2), false));
    assert_eq!(p.counts.rows_upstream, 30);
    assert_eq!(p.counts.rows_downstream, 29);
    assert_eq!(p.counts.rows_missing, 1);
    assert_eq!(p.counts.chunks_different, 1);
    // The last chunk finishes before chunk 3.
    assert!(!t.done(4, 5, 5, false));
    assert!(t.done(3, 10, 10, false));
    let p = t.prefix();
    assert_eq!((p.chunks, p.upper.clone(), p.last), (5, None, true));
    assert_eq!(p.counts.rows_upstream, 45);
}

#[test]
fn chunk_done_before_queued_waits_for_its_bound() {
    let mut t = ChunkTracker::new(Prefix::default());
    assert!(!t.done(0, 1, 1, false));
    assert!(t.queued(0, key(1)));
    assert_eq!(t.prefix().upper, key(1));
}

#[test]
fn resumed_prefix_continues_and_freeze_stops_it() {
    let saved = Prefix {
        key: vec!["id".into()],
        chunks: 7,
        upper: key(7),
        last: false,
        counts: ChunkCounts {
            rows_upstream: 70,
            ..Default::default()
        },
        dirty: vec![],
    };
    let mut t = ChunkTracker::new(saved);
    t.queued(7, key(8));
    t.queued(8, key(9));
    assert!(t.done(7, 10, 10, false));
    assert_eq!(t.prefix().chunks, 8);
    t.freeze();
    assert!(!t.done(8, 10, 10, false));
    assert_eq!(t.prefix().chunks, 8);
    assert_eq!(t.prefix().counts.rows_upstream, 80);
}

fn sample() -> Checkpoint {
    let report: TableReport = serde_json::from_value(serde_json::json!({
        "schema": "shop", "table": "orders", "upstream_table": "shop.orders",
        "result": "different", "structure_equal": true, "structure_diffs": [],
        "data_checked": true, "rows_missing": 1, "rows_extra": 2, "rows_changed": 3,
        "rows_upstream": 10, "rows_downstream": 11, "chunks": 2, "chunks_different": 1,
        "fix_sql": "fix-on-down/shop.orders.sql", "skip_reason": null, "error": null,
        "duration_ms": 5
    }))
    .unwrap();
    Checkpoint {
        version: FORMAT_VERSION,
        fingerprint: "ab".repeat(32),
        config: serde_json::json!({"task": {"target-instance": "down"}}),
        written_at: "2025-01-01T00:00:00Z".into(),
        tidb_auto: None,
        tables: vec![
            TableEntry {
                schema: "shop".into(),
                table: "orders".into(),
                state: EntryState::Finished {
                    report: Box::new(report),
                    dirty: vec![],
                },
                read_at: vec![ReadAt {
                    upstream: "live, not pinned".into(),
                    downstream: "live, not pinned".into(),
                }],
            },
            TableEntry {
                schema: "shop".into(),
                table: "items".into(),
                state: EntryState::InProgress {
                    prefix: Prefix {
                        key: vec!["id".into()],
                        chunks: 3,
                        upper: Some(vec![Some(b"42".to_vec()), None, Some(vec![0xff, 0])]),
                        last: false,
                        counts: ChunkCounts::default(),
                        dirty: vec![KeyRange {
                            lower: None,
                            upper: key(1),
                        }],
                    },
                },
                read_at: vec![],
            },
        ],
    }
}

#[test]
fn save_load_round_trip_is_atomic() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(load(dir.path()).unwrap(), None);
    let ck = sample();
    save(dir.path(), &ck).unwrap();
    assert_eq!(load(dir.path()).unwrap(), Some(ck.clone()));
    // Key values are readable: text, or hex when not UTF-8.
    let text = fs::read_to_string(checkpoint_dir(dir.path()).join(CHECKPOINT_FILE)).unwrap();
    assert!(text.contains("\"42\""), "{text}");
    assert!(text.contains("\"hex\": \"ff00\""), "{text}");
    // Overwrite: the new content replaces the old, no temporary file is left behind.
    let mut ck2 = ck.clone();
    ck2.tables.truncate(1);
    save(dir.path(), &ck2).unwrap();
    assert_eq!(load(dir.path()).unwrap(), Some(ck2));
    let names: Vec<String> = fs::read_dir(checkpoint_dir(dir.path()))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![CHECKPOINT_FILE.to_string()]);
    // A temp file left by a killed writer does not disturb reading, and is removed.
    let stale = checkpoint_dir(dir.path()).join(format!(".{CHECKPOINT_FILE}.1.tmp"));
    fs::write(&stale, "{").unwrap();
    assert!(load(dir.path()).unwrap().is_some());
    remove(dir.path()).unwrap();
    assert!(!checkpoint_dir(dir.path()).exists());
    assert_eq!(load(dir.path()).unwrap(), None);
}

#[test]
fn unreadable_or_other_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cdir = checkpoint_dir(dir.path());
    fs::create_dir_all(&cdir).unwrap();
    fs::write(cdir.join(CHECKPOINT_FILE), "{\"version\": 99}").unwrap();
    let msg = load(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("format version 99"), "{msg}");
    fs::write(cdir.join(CHECKPOINT_FILE), "not json").unwrap();
    let msg = load(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("cannot be resumed"), "{msg}");
}

#[test]
fn prune_keeps_only_the_saved_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let fix = dir.path();
    let a = parts_dir(fix, "shop.a.sql");
    let b = parts_dir(fix, "shop.b.sql");
    for d in [&a, &b] {
        fs::create_dir_all(d).unwrap();
        for seq in [0, 2, 5, 11] {
            fs::write(part_path(d, seq), format!("-- {seq}\n")).unwrap();
        }
    }
    let keep = BTreeMap::from([("shop.a".to_string(), 5u64)]);
    prune_parts(fix, &keep).unwrap();
    let seqs: Vec<u64> = list_parts(&a).unwrap().into_iter().map(|p| p.0).collect();
    assert_eq!(seqs, vec![0, 2]);
    assert!(!b.exists());
    prune_parts(fix, &BTreeMap::new()).unwrap();
    assert!(!fix.join(PARTS_DIR).exists());
}
