use super::file::{format_utc, MAX_FILE_STEM};
use super::render::{changed_comment, exact_predicate};
use super::*;
use crate::diff::RowChange;
use crate::error::Error;
use crate::row::Value;
use crate::schema::Generated;
use crate::schema::{Column, TableRef, TypeClass};

fn col(name: &str, class: TypeClass) -> Column {
    Column {
        name: name.into(),
        ordinal: 1,
        data_type: match class {
            TypeClass::Json => "json".into(),
            TypeClass::Float => "float".into(),
            _ => "x".into(),
        },
        column_type: String::new(),
        class,
        nullable: true,
        unsigned: false,
        charset: None,
        collation: None,
        default: None,
        generated: None,
        invisible: false,
    }
}

fn gen(name: &str, class: TypeClass) -> Column {
    Column {
        generated: Some(Generated {
            expression: "`id` + 1".into(),
            stored: false,
        }),
        ..col(name, class)
    }
}

fn v(s: &str) -> Value {
    Some(s.as_bytes().to_vec())
}

fn target() -> TableRef {
    TableRef::new("s", "t")
}

#[test]
fn keyed_statements() {
    let t = target();
    let cols = [
        col("id", TypeClass::Int),
        col("name", TypeClass::Text),
        gen("g", TypeClass::Int),
        col("b", TypeClass::Binary),
    ];
    let table = FixTable {
        target: &t,
        columns: &cols,
        key: Some(vec![0]),
    };
    let changes = [
        RowChange::Missing {
            up: vec![v("1"), v("it's"), v("2"), Some(vec![0, 1])],
        },
        RowChange::Changed {
            up: vec![v("2"), v("new"), v("3"), Some(vec![])],
            down: vec![v("2"), v("old"), v("3"), Some(vec![])],
        },
        RowChange::Extra {
            down: vec![v("3"), None, v("4"), None],
        },
    ];
    assert_eq!(
        render_changes(&table, &changes),
        "/* extra row, deleted: `id` = 3, `name` = NULL, `g` = 4, `b` = NULL */\n\
         DELETE FROM `s`.`t` WHERE `id` = 3 LIMIT 1;\n\
         /* missing row, inserted: `id` = 1 */\n\
         REPLACE INTO `s`.`t` (`id`, `name`, `b`) VALUES (1, 'it''s', X'0001');\n\
         /* changed: name: 'old' -> 'new' */\n\
         REPLACE INTO `s`.`t` (`id`, `name`, `b`) VALUES (2, 'new', X'');\n"
    );
    assert_eq!(
        statements_for_apply(&table, &changes),
        vec![
            "DELETE FROM `s`.`t` WHERE `id` = 3 LIMIT 1",
            "REPLACE INTO `s`.`t` (`id`, `name`, `b`) VALUES (1, 'it''s', X'0001')",
            "REPLACE INTO `s`.`t` (`id`, `name`, `b`) VALUES (2, 'new', X'')",
        ]
    );
}

#[test]
fn composite_key_delete() {
    let t = target();
    let cols = [
        col("a", TypeClass::Text),
        col("v", TypeClass::Int),
        col("d", TypeClass::DateTime),
        col("f", TypeClass::Float),
    ];
    let table = FixTable {
        target: &t,
        columns: &cols,
        key: Some(vec![2, 0, 3]),
    };
    let down = vec![
        v("ABC"),
        v("1"),
        v("2024-01-02 03:04:05.5"),
        v("0.10000000149011612"),
    ];
    assert_eq!(
        statements_for_apply(&table, &[RowChange::Extra { down }]),
        vec![
            "DELETE FROM `s`.`t` WHERE `d` = '2024-01-02 03:04:05.5' AND `a` = 'ABC' \
             AND (`a` = _utf8mb4'ABC' COLLATE utf8mb4_bin AND CHAR_LENGTH(`a`) = 3) \
             AND CAST(`f` AS DOUBLE) = 0.10000000149011612 LIMIT 1"
        ]
    );
}

#[test]
fn keyless_statements_match_the_exact_row() {
    let t = target();
    let mut maria_json = col("mj", TypeClass::Json);
    maria_json.data_type = "longtext".into();
    let cols = [
        col("i", TypeClass::Int),
        col("s", TypeClass::Text),
        col("f", TypeClass::Float),
        col("d", TypeClass::Double),
        col("j", TypeClass::Json),
        maria_json,
        gen("g", TypeClass::Int),
        col("n", TypeClass::Decimal),
        col("e", TypeClass::Enum),
    ];
    let table = FixTable {
        target: &t,
        columns: &cols,
        key: None,
    };
    let row = vec![
        v("1"),
        v("a b "),
        v("1.0000000116860974e-7"),
        v("0.1"),
        v(r#"{"a": "x"}"#),
        v("[1]"),
        v("2"),
        None,
        v("x"),
    ];
    let out = statements_for_apply(
        &table,
        &[
            RowChange::Extra { down: row.clone() },
            RowChange::Missing { up: row },
        ],
    );
    assert_eq!(
        out,
        vec![
            "DELETE FROM `s`.`t` WHERE `i` = 1 \
             AND (`s` = _utf8mb4'a b ' COLLATE utf8mb4_bin AND CHAR_LENGTH(`s`) = 4) \
             AND CAST(`f` AS DOUBLE) = 1.0000000116860974e-7 \
             AND `d` = 0.1 \
             AND (CAST(`j` AS CHAR CHARACTER SET utf8mb4) = _utf8mb4'{\"a\": \"x\"}' \
             COLLATE utf8mb4_bin AND CHAR_LENGTH(CAST(`j` AS CHAR CHARACTER SET utf8mb4)) = 10) \
             AND (`mj` = _utf8mb4'[1]' COLLATE utf8mb4_bin AND CHAR_LENGTH(`mj`) = 3) \
             AND `n` IS NULL AND `e` = 'x' LIMIT 1",
            "INSERT INTO `s`.`t` (`i`, `s`, `f`, `d`, `j`, `mj`, `n`, `e`) \
             VALUES (1, 'a b ', 1.0000000116860974e-7, 0.1, '{\"a\": \"x\"}', '[1]', NULL, 'x')",
        ]
    );
}

#[test]
fn keyless_text_predicates_handle_hex_forms() {
    let c = col("s", TypeClass::Text);
    assert_eq!(
        exact_predicate(&c, Some(b"a\nb")),
        "(`s` = _utf8mb4 X'610A62' COLLATE utf8mb4_bin AND CHAR_LENGTH(`s`) = 3)"
    );
    assert_eq!(exact_predicate(&c, Some(b"\xff")), "`s` = _binary X'FF'");
    assert_eq!(
        exact_predicate(&c, Some("😀".as_bytes())),
        "(`s` = _utf8mb4'😀' COLLATE utf8mb4_bin AND CHAR_LENGTH(`s`) = 1)"
    );
    let b = col("b", TypeClass::Binary);
    assert_eq!(exact_predicate(&b, Some(b"")), "`b` = X''");
    let bit = col("b", TypeClass::Bit);
    assert_eq!(
        exact_predicate(&bit, Some(b"18446744073709551615")),
        "`b` = 18446744073709551615"
    );
}

#[test]
fn keyless_changed_row_is_delete_then_insert() {
    let t = target();
    let cols = [col("a", TypeClass::Int), col("b", TypeClass::Int)];
    let table = FixTable {
        target: &t,
        columns: &cols,
        key: Some(vec![]),
    };
    let out = render_changes(
        &table,
        &[RowChange::Changed {
            up: vec![v("1"), v("2")],
            down: vec![v("1"), v("3")],
        }],
    );
    assert_eq!(
        out,
        "/* changed row, old copy deleted: `a` = 1, `b` = 3 */\n\
         DELETE FROM `s`.`t` WHERE `a` = 1 AND `b` = 3 LIMIT 1;\n\
         /* changed: b: 3 -> 2 */\n\
         INSERT INTO `s`.`t` (`a`, `b`) VALUES (1, 2);\n"
    );
}

#[test]
fn keyless_copies_give_one_statement_each() {
    let t = target();
    let cols = [col("a", TypeClass::Int)];
    let table = FixTable {
        target: &t,
        columns: &cols,
        key: None,
    };
    let up = vec![v("7")];
    let out = statements_for_apply(
        &table,
        &[
            RowChange::Missing { up: up.clone() },
            RowChange::Missing { up },
        ],
    );
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|s| s.starts_with("INSERT INTO")));
}

#[test]
fn deletes_come_before_writes() {
    // Case-insensitive key: 'ABC' extra downstream and 'abc' missing are the same key.
    let t = target();
    let cols = [col("k", TypeClass::Text), col("v", TypeClass::Int)];
    let table = FixTable {
        target: &t,
        columns: &cols,
        key: Some(vec![0]),
    };
    let changes = [
        RowChange::Missing {
            up: vec![v("abc"), v("1")],
        },
        RowChange::Changed {
            up: vec![v("b"), v("2")],
            down: vec![v("b"), v("3")],
        },
        RowChange::Extra {
            down: vec![v("ABC"), v("1")],
        },
        RowChange::Extra {
            down: vec![v("z"), v("1")],
        },
    ];
    let out = statements_for_apply(&table, &changes);
    let verbs: Vec<&str> = out.iter().map(|s| s.split(' ').next().unwrap()).collect();
    assert_eq!(verbs, ["DELETE", "DELETE", "REPLACE", "REPLACE"]);
    assert!(out[0].contains("'ABC'") && out[1].contains("'z'"));
    assert!(out[2].contains("'abc'") && out[3].contains("'b'"));
    let text = render_changes(&table, &changes);
    let last_delete = text.rfind("DELETE").unwrap();
    assert!(text.find("REPLACE").unwrap() > last_delete);
}

#[test]
fn changed_comment_is_escaped_and_truncated() {
    let cols = [
        col("a*/b", TypeClass::Text),
        col("x\ny", TypeClass::Text),
        col("long", TypeClass::Text),
        gen("g", TypeClass::Int),
        col("same", TypeClass::Int),
    ];
    let long = "é".repeat(100);
    let up = vec![v("*/ DROP TABLE t; /*!"), v("1"), v(&long), v("1"), v("5")];
    let down = vec![v("/*"), None, v("x"), v("2"), v("5")];
    let c = changed_comment(&cols, &up, &down);
    assert_eq!(
        c,
        format!(
            "/* changed: a* /b: '/ *' -> '* / DROP TABLE t; / *!', x\u{FFFD}y: NULL -> '1', \
             long: 'x' -> '{}…, g: 2 -> 1 (generated) */",
            "é".repeat(63)
        )
    );
    assert!(!c[2..c.len() - 2].contains("*/") && !c[2..].contains("/*"));
}

#[test]
fn changed_comment_shows_binary_sides_correctly() {
    let cols = [col("b", TypeClass::Binary)];
    let c = changed_comment(&cols, &[Some(vec![1])], &[Some(vec![2])]);
    assert_eq!(c, "/* changed: b: X'02' -> X'01' */");
}

proptest::proptest! {
    #[test]
    fn comments_never_close_early(a in ".*", b in "[*/ ]*", name in "[*/a]*") {
        let cols = [col(&name, TypeClass::Text), col("n", TypeClass::Text)];
        let c = changed_comment(&cols, &[v(&a), v(&b)], &[v(&b), v(&a)]);
        let body = &c[2..c.len() - 2];
        proptest::prop_assert!(c.starts_with("/* ") && c.ends_with(" */"));
        proptest::prop_assert!(!body.contains("*/") && !body.contains("/*"));
        proptest::prop_assert!(!c.contains('\n'));
    }
}

#[test]
fn weird_identifiers_are_quoted() {
    let t = TableRef::new("my db`x", "select");
    let cols = [
        col("we`ird", TypeClass::Int),
        col("with space", TypeClass::Int),
        col("naïve 名前", TypeClass::Int),
        col("order", TypeClass::Int),
    ];
    let table = FixTable {
        target: &t,
        columns: &cols,
        key: Some(vec![0, 3]),
    };
    let row = vec![v("1"), v("2"), v("3"), v("4")];
    let out = statements_for_apply(
        &table,
        &[
            RowChange::Extra { down: row.clone() },
            RowChange::Missing { up: row },
        ],
    );
    assert_eq!(
        out,
        vec![
            "DELETE FROM `my db``x`.`select` WHERE `we``ird` = 1 AND `order` = 4 LIMIT 1",
            "REPLACE INTO `my db``x`.`select` (`we``ird`, `with space`, `naïve 名前`, `order`) \
             VALUES (1, 2, 3, 4)",
        ]
    );
}

#[test]
fn key_out_of_range_falls_back_to_whole_row() {
    let t = target();
    let cols = [col("a", TypeClass::Int)];
    let table = FixTable {
        target: &t,
        columns: &cols,
        key: Some(vec![3]),
    };
    let out = statements_for_apply(
        &table,
        &[
            RowChange::Extra { down: vec![v("1")] },
            RowChange::Missing { up: vec![v("1")] },
        ],
    );
    assert_eq!(
        out,
        vec![
            "DELETE FROM `s`.`t` WHERE `a` = 1 LIMIT 1",
            "INSERT INTO `s`.`t` (`a`) VALUES (1)",
        ]
    );
}

/// Every `%` is followed by two hex digits (no `%XX` was cut).
fn whole_triplets(s: &str) -> bool {
    let b = s.as_bytes();
    (0..b.len())
        .filter(|&i| b[i] == b'%')
        .all(|i| b.len() >= i + 3 && b[i + 1..i + 3].iter().all(u8::is_ascii_hexdigit))
}

#[test]
fn file_names_are_safe_and_distinct() {
    let name = |s: &str, t: &str| file_name(&TableRef::new(s, t));
    assert_eq!(name("db", "orders_2024-01"), "db.orders_2024-01.sql");
    assert_eq!(name("a.b", "c"), "a%2Eb.c.sql");
    assert_eq!(name("a", "b.c"), "a.b%2Ec.sql");
    assert_eq!(name("x", "../etc/passwd"), "x.%2E%2E%2Fetc%2Fpasswd.sql");
    assert_eq!(name("x", "a b`%"), "x.a%20b%60%25.sql");
    assert_eq!(name("x", "é"), "x.%C3%A9.sql");
    assert_eq!(name("x", ""), "x..sql");

    let long_a = name(&"名".repeat(64), &"表".repeat(64));
    let long_b = name(&"名".repeat(64), &format!("{}x", "表".repeat(63)));
    assert_ne!(long_a, long_b);
    for n in [&long_a, &long_b] {
        assert!(n.len() <= MAX_FILE_STEM + 4, "{n}");
        assert!(n.ends_with(".sql") && n.contains('~'));
        let stem = n.split('~').next().unwrap();
        assert!(whole_triplets(stem), "{n}");
    }
    for cut in 0..3 {
        let n = name("s", &format!("{}{}", "a".repeat(178 + cut), "é".repeat(30)));
        let stem = n.split('~').next().unwrap();
        assert!(whole_triplets(stem), "{n}");
    }
}

#[test]
fn writer_produces_a_pipeable_file() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("fix").join("nested");
    let t = TableRef::new("s", "t`x");
    let header = FixHeader {
        upstream: "mysql1 (127.0.0.1:3306)".into(),
        downstream: "tidb\n0".into(),
        upstream_point: "live, not pinned".into(),
        downstream_point: "snapshot 2024-01-02".into(),
        replica_warning: Some("a replica\nof x".into()),
        skip_binlog: true,
    };
    let mut w = FixSqlWriter::create(&out_dir, &t, &header).unwrap();
    assert_eq!(w.path(), out_dir.join("s.t%60x.sql"));
    w.append_chunk(
        "(`id` > 5)\nAND 1",
        "DELETE FROM `s`.`t``x` WHERE `id` = 6 LIMIT 1;\n",
    )
    .unwrap();
    w.append_chunk("all", "REPLACE INTO x VALUES (1);").unwrap();
    let path = w.finish().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(&format!(
        "-- Fix SQL generated by syncgate {} at ",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(text.contains("-- Table (downstream name): `s`.`t``x`\n"));
    assert!(text.contains("-- Upstream:   mysql1 (127.0.0.1:3306) -- read at: live, not pinned\n"));
    assert!(text.contains("-- Downstream: tidb\u{FFFD}0 -- read at: snapshot 2024-01-02\n"));
    assert!(text.contains(
        "SET NAMES utf8mb4;\nSET time_zone = '+00:00';\nSET SESSION foreign_key_checks = 0;\n\
         START TRANSACTION;\n"
    ));
    assert!(text.contains(
        "\n-- range: (`id` > 5)\u{FFFD}AND 1\nDELETE FROM `s`.`t``x` WHERE `id` = 6 LIMIT 1;\n\
         \n-- range: all\nREPLACE INTO x VALUES (1);\n\nCOMMIT;\n"
    ));
    assert!(text.ends_with("SET SESSION sql_log_bin = @syncgate_log_bin;\n-- end of fix SQL\n"));
    assert!(text.contains("-- WARNING: a replica\u{FFFD}of x\n"));
    let off = text
        .find("SET SESSION sql_log_bin = 0;\n")
        .expect("binlog off");
    assert!(off < text.find("START TRANSACTION").unwrap());
    // Every line is a comment, or a statement ending in `;`.
    for line in text.lines().filter(|l| !l.is_empty()) {
        assert!(line.starts_with("--") || line.ends_with(';'), "{line}");
    }
}

#[test]
fn writer_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let err = FixSqlWriter::create(&blocker, &target(), &FixHeader::default()).unwrap_err();
    match err {
        Error::Output { path, .. } => assert_eq!(path, blocker),
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn utc_formatting() {
    assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
    assert_eq!(format_utc(1_704_164_645), "2024-01-02 03:04:05 UTC");
    assert_eq!(format_utc(4_107_542_399), "2100-02-28 23:59:59 UTC");
}

#[test]
fn undo_reverses_each_change_deletes_first() {
    let t = target();
    let cols = [
        col("id", TypeClass::Int),
        col("name", TypeClass::Text),
        gen("g", TypeClass::Int),
    ];
    let table = FixTable {
        target: &t,
        columns: &cols,
        key: Some(vec![0]),
    };
    let changes = [
        RowChange::Extra {
            down: vec![v("3"), v("x*/y"), v("6")],
        },
        RowChange::Missing {
            up: vec![v("1"), None, v("2")],
        },
        RowChange::Changed {
            up: vec![v("2"), v("new"), v("4")],
            down: vec![v("2"), v("old"), v("4")],
        },
    ];
    assert_eq!(
        render_undo(&table, &changes),
        "/* undo: delete the row the fix inserted: `id` = 1 */\n\
         DELETE FROM `s`.`t` WHERE `id` = 1 LIMIT 1;\n\
         /* undo: re-insert the row the fix deleted: `id` = 3, `name` = 'x* /y', `g` = 6 */\n\
         REPLACE INTO `s`.`t` (`id`, `name`) VALUES (3, 'x*/y');\n\
         /* undo, changed back: name: 'new' -> 'old' */\n\
         REPLACE INTO `s`.`t` (`id`, `name`) VALUES (2, 'old');\n"
    );
    let fix = render_changes(&table, &changes);
    assert!(
        fix.starts_with(
            "/* extra row, deleted: `id` = 3, `name` = 'x* /y', `g` = 6 */\n\
             DELETE FROM `s`.`t` WHERE `id` = 3 LIMIT 1;\n\
             /* missing row, inserted: `id` = 1 */\n"
        ),
        "{fix}"
    );
}

#[test]
fn undo_parts_join_every_delete_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let parts: Vec<std::path::PathBuf> = (0..2)
        .map(|i| {
            let p = dir.path().join(format!("{i}.sql"));
            let text = undo_part(
                &format!("r{i}"),
                &format!("DELETE {i};\n"),
                &format!("REPLACE {i};\n"),
            );
            // A chunk may append more than one batch to its part.
            std::fs::write(&p, format!("{text}{text}")).unwrap();
            p
        })
        .collect();
    let t = target();
    let mut w =
        FixSqlWriter::create_kind(dir.path(), &t, &FixHeader::default(), FileKind::Undo).unwrap();
    w.append_undo_parts(&parts).unwrap();
    let text = std::fs::read_to_string(w.finish().unwrap()).unwrap();
    let body: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("DELETE ") || l.starts_with("REPLACE "))
        .collect();
    assert_eq!(
        body,
        [
            "DELETE 0;",
            "DELETE 0;",
            "DELETE 1;",
            "DELETE 1;",
            "REPLACE 0;",
            "REPLACE 0;",
            "REPLACE 1;",
            "REPLACE 1;"
        ]
    );
    assert!(
        text.contains("It undoes fix-on-<downstream>/s.t.sql"),
        "{text}"
    );
    assert!(!text.contains("sql_log_bin"), "{text}");
}
