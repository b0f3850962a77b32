use super::*;
use crate::checksum::Aggregate;
use crate::chunk::{IntRange, KeyRange, Lead};
use crate::schema::Index;

fn col(name: &str, class: TypeClass, column_type: &str, collation: Option<&str>) -> Column {
    Column {
        name: name.into(),
        ordinal: 1,
        data_type: column_type
            .split(['(', ' '])
            .next()
            .unwrap_or_default()
            .into(),
        column_type: column_type.into(),
        class,
        nullable: false,
        unsigned: false,
        charset: collation.map(|c| c.split('_').next().unwrap_or_default().into()),
        collation: collation.map(Into::into),
        default: None,
        generated: None,
        invisible: false,
    }
}

fn schema(columns: Vec<Column>, key: &[&str]) -> TableSchema {
    TableSchema {
        table: TableRef::new("d", "t"),
        columns,
        indexes: vec![Index {
            name: "PRIMARY".into(),
            columns: key.iter().map(|k| k.to_string()).collect(),
            unique: true,
            primary: true,
        }],
        foreign_keys: Vec::new(),
        collation: None,
        engine: None,
        system_versioned: false,
        auto_increment: None,
        period: Vec::new(),
    }
}

fn plan(up: Vec<Column>, down: Vec<Column>, key: &[&str]) -> TablePlan {
    TablePlan::new(
        TableRef::new("d", "t"),
        &schema(up, key),
        &schema(down, key),
        &[],
        &[],
        None,
        1000,
    )
    .unwrap()
}

fn range(lower: &str, upper: &str) -> KeyRange {
    KeyRange {
        lower: Some(vec![Some(lower.as_bytes().to_vec())]),
        upper: Some(vec![Some(upper.as_bytes().to_vec())]),
    }
}

#[test]
fn index_fields_on_a_nullable_unique_index_are_refused() {
    let id = col("id", TypeClass::Int, "int(11)", None);
    let mut u = col("u", TypeClass::Int, "int(11)", None);
    u.nullable = true;
    let mut sch = schema(vec![id, u], &["id"]);
    sch.indexes.push(Index {
        name: "uk".into(),
        columns: vec!["u".into()],
        unique: true,
        primary: false,
    });
    let t = TableRef::new("d", "t");
    let err = TablePlan::new(t.clone(), &sch, &sch, &[], &["u".into()], None, 1000)
        .expect_err("nullable key refused");
    assert!(err.contains("`u` is nullable"), "{err}");
    assert!(TablePlan::new(t, &sch, &sch, &[], &["id".into()], None, 1000).is_ok());
}

#[test]
fn float_and_bit_are_read_exactly() {
    let cols = vec![
        col("id", TypeClass::Int, "int(11)", None),
        col("f", TypeClass::Float, "float", None),
        col("b", TypeClass::Bit, "bit(64)", None),
    ];
    let p = plan(cols.clone(), cols, &["id"]);
    let sql = p.rows_sql(Side::Up, &KeyRange::full());
    assert_eq!(
        sql,
        "SELECT `id`, CAST(`f` AS DOUBLE), CAST(`b` AS UNSIGNED), `id` FROM `d`.`t` \
         WHERE TRUE ORDER BY `id`"
    );
    assert!(p
        .checksum_sql(Side::Down, &KeyRange::full())
        .contains("`id`, CAST(`f` AS DOUBLE), CAST(`b` AS UNSIGNED)"));
    assert!(!p.unsplit);
}

/// The checksum cost is measured on sysbench's shape (INT key, INT, CHARs): the plan must
/// render exactly the plain checksum over those columns, no casts or digests added.
#[test]
fn sysbench_shape_checksum_is_the_plain_one() {
    let cols = vec![
        col("id", TypeClass::Int, "int(11)", None),
        col("k", TypeClass::Int, "int(11)", None),
        col(
            "c",
            TypeClass::Text,
            "char(120)",
            Some("utf8mb4_general_ci"),
        ),
        col(
            "pad",
            TypeClass::Text,
            "char(60)",
            Some("utf8mb4_general_ci"),
        ),
    ];
    let p = plan(cols.clone(), cols.clone(), &["id"]);
    let refs: Vec<&Column> = cols.iter().collect();
    assert_eq!(
        p.checksum_sql(Side::Up, &KeyRange::full()),
        crate::checksum::checksum_sql(&TableRef::new("d", "t"), &refs, "TRUE", Aggregate::Xor)
    );
    assert!(p
        .checksum_sql(Side::Up, &KeyRange::full())
        .contains("CONCAT_WS(0x1F, `id`, `k`, `c`, `pad`)"));
}

#[test]
fn pad_space_keys_sort_by_padded_weights() {
    let up = vec![col(
        "k",
        TypeClass::Text,
        "varchar(10)",
        Some("utf8mb4_general_ci"),
    )];
    let mut down = up.clone();
    down[0].column_type = "varchar(20)".into();
    let p = plan(up, down, &["k"]);
    assert!(!p.unsplit);
    assert!(p
        .rows_sql(Side::Up, &KeyRange::full())
        .starts_with("SELECT `k`, WEIGHT_STRING(`k` AS CHAR(20)) FROM"));
    let nopad = vec![col(
        "k",
        TypeClass::Text,
        "varchar(10)",
        Some("utf8mb4_nopad_bin"),
    )];
    let p = plan(nopad.clone(), nopad, &["k"]);
    assert!(p
        .rows_sql(Side::Up, &KeyRange::full())
        .starts_with("SELECT `k`, WEIGHT_STRING(`k`) FROM"));
}

#[test]
fn differing_key_collations_compare_bytes_in_one_range() {
    let up = vec![col(
        "k",
        TypeClass::Text,
        "varchar(10)",
        Some("utf8mb4_bin"),
    )];
    let down = vec![col(
        "k",
        TypeClass::Text,
        "varchar(10)",
        Some("utf8mb4_general_ci"),
    )];
    let p = plan(up, down, &["k"]);
    assert!(p.unsplit);
    assert_eq!(p.chunk_size, u64::MAX);
    let bin = "CAST(CONVERT(`k` USING utf8mb4) AS BINARY)";
    assert_eq!(
        p.rows_sql(Side::Down, &range("a", "b")),
        format!(
            "SELECT `k`, {bin} FROM `d`.`t` WHERE {bin} > X'61' AND {bin} <= X'62' \
             ORDER BY {bin}"
        )
    );
    // The producer's boundary question has no answer: one chunk.
    assert_eq!(
        p.key_at_sql(Side::Up, &KeyRange::full(), p.chunk_size - 1),
        "SELECT 1 FROM DUAL WHERE FALSE"
    );
    assert!(p
        .key_at_sql(Side::Up, &KeyRange::full(), 999)
        .ends_with(&format!("ORDER BY {bin} LIMIT 1 OFFSET 999")));
}

#[test]
fn composite_binary_bounds_keep_native_columns() {
    let up = vec![
        col("a", TypeClass::Int, "int(11)", None),
        col(
            "k",
            TypeClass::Text,
            "varchar(10)",
            Some("latin1_swedish_ci"),
        ),
    ];
    let mut down = up.clone();
    down[1].collation = Some("utf8mb4_general_ci".into());
    let p = plan(up, down, &["a", "k"]);
    let r = KeyRange {
        lower: Some(vec![Some(b"1".to_vec()), Some(b"x".to_vec())]),
        upper: None,
    };
    let bin = "CAST(CONVERT(`k` USING utf8mb4) AS BINARY)";
    assert_eq!(
        p.where_clause(&r),
        format!("((`a` > 1) OR (`a` = 1 AND {bin} > X'78'))")
    );
}

#[test]
fn decimals_of_different_scales_are_cast_to_one_type() {
    let up = vec![
        col("id", TypeClass::Int, "int(11)", None),
        col("d", TypeClass::Decimal, "decimal(10,2)", None),
        col("t", TypeClass::DateTime, "datetime", None),
    ];
    let down = vec![
        col("id", TypeClass::Int, "bigint(20)", None),
        col("d", TypeClass::Decimal, "decimal(12,3) unsigned", None),
        col("t", TypeClass::Timestamp, "timestamp(6)", None),
    ];
    let p = plan(up, down, &["id"]);
    assert_eq!(
        p.rows_sql(Side::Down, &KeyRange::full()),
        "SELECT `id`, CAST(`d` AS DECIMAL(12,3)), CAST(`t` AS DATETIME(6)), `id` \
         FROM `d`.`t` WHERE TRUE ORDER BY `id`"
    );
    // Too wide for one DECIMAL: compared as written.
    assert_eq!(
        common_cast(
            &col("d", TypeClass::Decimal, "decimal(65,0)", None),
            &col("d", TypeClass::Decimal, "decimal(65,30)", None)
        ),
        None
    );
    assert_eq!(
        common_cast(
            &col("d", TypeClass::Int, "int(11)", None),
            &col("d", TypeClass::Decimal, "decimal(10,2)", None)
        ),
        Some("DECIMAL(22,2)".into())
    );
}

#[test]
fn keys_of_unrelated_types_are_refused() {
    let up = vec![col("k", TypeClass::Int, "int(11)", None)];
    let down = vec![col(
        "k",
        TypeClass::Text,
        "varchar(10)",
        Some("utf8mb4_bin"),
    )];
    let err = TablePlan::new(
        TableRef::new("d", "t"),
        &schema(up, &["k"]),
        &schema(down, &["k"]),
        &[],
        &[],
        None,
        10,
    )
    .unwrap_err();
    assert!(err.contains("cannot be ordered alike"), "{err}");
}

#[test]
fn sql_hint_use_index_forces_the_chunk_key_index_per_side() {
    let cols = || {
        vec![
            col("id", TypeClass::Int, "int(11)", None),
            col("a", TypeClass::Int, "int(11)", None),
            col("b", TypeClass::Int, "int(11)", None),
        ]
    };
    let mut up = schema(cols(), &["id"]);
    up.indexes.push(Index {
        name: "uk_ab".into(),
        columns: vec!["a".into(), "b".into()],
        unique: true,
        primary: false,
    });
    // Downstream the same columns are indexed under another name.
    let mut down = schema(cols(), &["id"]);
    down.indexes.push(Index {
        name: "ab".into(),
        columns: vec!["A".into(), "B".into()],
        unique: true,
        primary: false,
    });
    let t = TableRef::new("d", "t");
    let fields = ["b".to_string(), "a".to_string()];
    let mut p = TablePlan::new(t.clone(), &up, &down, &[], &fields, None, 10).unwrap();
    let pair = |a: &str, b: &str| Some(vec![Some(a.into()), Some(b.into())]);
    let r = KeyRange {
        lower: pair("1", "1"),
        upper: pair("2", "2"),
    };
    let before = p.rows_sql(Side::Up, &r);
    assert!(before.contains("FROM `d`.`t` WHERE"), "{before}");

    assert!(p.force_key_index(Side::Up, &up));
    assert!(p.force_key_index(Side::Down, &down));
    let (cs_up, cs_down) = (p.checksum_sql(Side::Up, &r), p.checksum_sql(Side::Down, &r));
    assert!(
        cs_up.contains("FROM `d`.`t` FORCE INDEX (`uk_ab`) WHERE"),
        "{cs_up}"
    );
    assert!(
        cs_down.contains("FROM `d`.`t` FORCE INDEX (`ab`) WHERE"),
        "{cs_down}"
    );
    let rows = p.rows_sql(Side::Up, &r);
    assert_eq!(
        rows,
        before.replace("FROM `d`.`t`", "FROM `d`.`t` FORCE INDEX (`uk_ab`)")
    );
    assert!(p
        .key_at_sql(Side::Down, &r, 5)
        .contains("FROM `d`.`t` FORCE INDEX (`ab`) WHERE"));

    // The primary key is named PRIMARY (a keyword, not quoted); an integer key's
    // split queries carry it too.
    let mut p = TablePlan::new(t.clone(), &up, &down, &[], &[], None, 10).unwrap();
    assert!(p.force_key_index(Side::Up, &up));
    assert!(p.int_key());
    let ir = IntRange { lower: 0, upper: 9 };
    for sql in [
        p.key_min_max_sql(),
        p.estimate_sql(&ir.key_range()),
        p.count_sql(&ir.key_range()),
    ] {
        assert!(sql.contains("FROM `d`.`t` FORCE INDEX (PRIMARY)"), "{sql}");
    }
    // Only the side that asked for it.
    assert!(!p
        .checksum_sql(Side::Down, &range("1", "2"))
        .contains("FORCE INDEX"));

    // A side without an index on exactly the key columns gets no hint.
    let mut p = TablePlan::new(t.clone(), &up, &down, &[], &fields, None, 10).unwrap();
    let mut other = down.clone();
    other.indexes[1].columns = vec!["a".into()];
    assert!(!p.force_key_index(Side::Down, &other));
    assert!(!p.checksum_sql(Side::Down, &r).contains("FORCE INDEX"));
    // Keyless tables have nothing to force.
    let mut keyless = schema(cols(), &[]);
    keyless.indexes.clear();
    let mut p = TablePlan::new(t, &keyless, &keyless, &[], &[], None, 10).unwrap();
    assert!(!p.force_key_index(Side::Up, &keyless));
}

#[test]
fn text_is_converted_only_where_the_sides_charsets_differ() {
    let cols = |b: &str, c: &str| {
        vec![
            col("id", TypeClass::Int, "int(11)", None),
            col(
                "a",
                TypeClass::Text,
                "varchar(20)",
                Some("latin1_swedish_ci"),
            ),
            col("b", TypeClass::Text, "varchar(20)", Some(b)),
            col("c", TypeClass::Text, "varchar(20)", Some(c)),
        ]
    };
    let p = plan(
        cols("ascii_general_ci", "utf8mb4_general_ci"),
        cols("latin1_swedish_ci", "latin1_swedish_ci"),
        &["id"],
    );
    let (up, down) = (
        p.checksum_sql(Side::Up, &KeyRange::full()),
        p.checksum_sql(Side::Down, &KeyRange::full()),
    );
    // `a` is latin1 on both sides: hashed as stored, no conversion on either side.
    assert!(
        !up.contains("CONVERT(`a`") && !down.contains("CONVERT(`a`"),
        "{up}\n{down}"
    );
    // `b` differs (ascii / latin1): both sides convert, as neither is utf8mb4.
    assert!(up.contains("CONVERT(`b` USING utf8mb4)"), "{up}");
    assert!(down.contains("CONVERT(`b` USING utf8mb4)"), "{down}");
    // `c` differs (utf8mb4 / latin1): only the latin1 side converts.
    assert!(!up.contains("CONVERT(`c`"), "{up}");
    assert!(down.contains("CONVERT(`c` USING utf8mb4)"), "{down}");
}

#[test]
fn a_table_fits_one_chunk_only_when_its_estimate_is_a_quarter_of_a_chunk_or_less() {
    let int = || vec![col("id", TypeClass::Int, "int", None)];
    let mut p = plan(int(), int(), &["id"]);
    assert!(!p.fits_one_chunk(), "no estimate: split as before");
    for (rows, fits) in [(0, true), (250, true), (251, false), (u64::MAX, false)] {
        p.rows_estimate = Some(rows);
        assert_eq!(p.fits_one_chunk(), fits, "{rows} rows, chunk-size 1000");
    }
}

#[test]
fn keys_led_by_a_string_or_an_integer_are_split_by_probes() {
    let grp = col(
        "grp",
        TypeClass::Text,
        "varchar(16)",
        Some("utf8mb4_general_ci"),
    );
    let id = col("id", TypeClass::Int, "int(11)", None);
    let v = col("v", TypeClass::Int, "int(11)", None);
    let p = plan(
        vec![grp.clone(), id.clone(), v.clone()],
        vec![grp.clone(), id.clone(), v.clone()],
        &["grp", "id"],
    );
    assert_eq!(p.probe_lead(), Some(TypeClass::Text));
    assert_eq!(
        p.key_end_sql(true),
        "SELECT `grp`, `id` FROM `d`.`t` ORDER BY `grp` DESC, `id` DESC LIMIT 1"
    );
    let row = |g: &str, i: &str| vec![Some(g.as_bytes().to_vec()), Some(i.as_bytes().to_vec())];
    let lower = row("g1", "5");
    let text = |t: &str| Lead::Text(t.into());
    assert_eq!(
        p.key_near_sql((Some(&lower), &row("g9", "2")), &[], &text("g5"), true),
        "SELECT `grp`, `id` FROM `d`.`t` WHERE ((`grp` > 'g1') OR (`grp` = 'g1' AND `id` > 5)) \
         AND ((`grp` < 'g9') OR (`grp` = 'g9' AND `id` < 2)) AND `grp` <= 'g5' \
         ORDER BY `grp` DESC, `id` DESC LIMIT 1"
    );
    assert!(p
        .key_near_sql((None, &row("g9", "2")), &[], &text("g5"), false)
        .ends_with("AND `grp` >= 'g5' ORDER BY `grp`, `id` LIMIT 1"));
    // Inside one leading value: the probe is on `id`, after `grp`'s value.
    let within = row("g5", "900");
    let g5 = [Some(b"g5".to_vec())];
    assert!(p
        .key_near_sql(
            (Some(&row("g5", "100")), &within),
            &g5,
            &Lead::Int(500),
            true
        )
        .ends_with(
            "AND ((`grp` < 'g5') OR (`grp` = 'g5' AND `id` <= 500)) \
             ORDER BY `grp` DESC, `id` DESC LIMIT 1"
        ));
    assert_eq!(p.probe_class(1), Some(TypeClass::Int));
    // Rows fetched by key: null-safe equality per key column, in key order.
    assert_eq!(
        p.rows_with_keys_sql(Side::Down, &[row("g1", "5"), row("g2", "7")])
            .unwrap(),
        "SELECT `grp`, `id`, `v`, WEIGHT_STRING(`grp` AS CHAR(16)), `id` FROM `d`.`t` \
         WHERE ((`grp` <=> 'g1' AND `id` <=> 5) OR (`grp` <=> 'g2' AND `id` <=> 7)) \
         ORDER BY `grp`, `id`"
    );

    // Led by an integer or a date: probes too; one integer key is cut on the grid instead;
    // keys compared as bytes are walked.
    let p = plan(
        vec![id.clone(), grp.clone(), v.clone()],
        vec![id.clone(), grp.clone(), v.clone()],
        &["id", "grp"],
    );
    assert_eq!(p.probe_lead(), Some(TypeClass::Int));
    let p = plan(
        vec![id.clone(), v.clone()],
        vec![id.clone(), v.clone()],
        &["id"],
    );
    assert!(p.int_key());
    assert_eq!(p.probe_lead(), None);
    let day = col("d", TypeClass::Date, "date", None);
    let p = plan(
        vec![day.clone(), id.clone()],
        vec![day, id.clone()],
        &["d", "id"],
    );
    assert_eq!(p.probe_lead(), Some(TypeClass::Date));
    let at = |d: &str, i: &str| vec![Some(d.as_bytes().to_vec()), Some(i.as_bytes().to_vec())];
    let price = col("p", TypeClass::Decimal, "decimal(12,3)", None);
    let p2 = plan(
        vec![price.clone(), v.clone()],
        vec![price, v.clone()],
        &["p"],
    );
    assert_eq!(p2.probe_lead(), Some(TypeClass::Decimal));
    let probe = Lead::Dec(crate::chunk::Dec::parse("-0.500").unwrap());
    assert!(p2
        .key_near_sql((None, &vec![Some(b"3.000".to_vec())]), &[], &probe, false)
        .ends_with("AND `p` >= -0.500 ORDER BY `p` LIMIT 1"));
    let probe = Lead::Stamp(crate::chunk::Stamp::parse("2024-01-16").unwrap());
    assert!(p
        .key_near_sql((None, &at("2024-01-31", "1")), &[], &probe, true)
        .ends_with("AND `d` <= '2024-01-16' ORDER BY `d` DESC, `id` DESC LIMIT 1"));
    let mut other = grp.clone();
    other.collation = Some("utf8mb4_bin".into());
    let p = plan(vec![grp, id.clone()], vec![other, id], &["grp", "id"]);
    assert!(p.unsplit);
    assert_eq!(p.probe_lead(), None);
}
