use super::*;

fn names(cols: &[&str]) -> Vec<String> {
    cols.iter().map(|c| c.to_string()).collect()
}

fn row(cells: &[Option<&str>]) -> Vec<Option<Vec<u8>>> {
    cells
        .iter()
        .map(|c| c.map(|s| s.as_bytes().to_vec()))
        .collect()
}

const BACKUP_COLUMNS: [&str; 5] = [
    "Destination",
    "Size",
    "BackupTS",
    "Queue Time",
    "Execution Time",
];

#[test]
fn backup_result_is_read_by_name_in_any_order() {
    let expected = BackupResult {
        destination: "s3://bk/prod".into(),
        size: 1_048_576,
        backup_ts: 431_434_047_157_698_561,
        queue_time: Some("2024-05-01 10:00:00".into()),
        execution_time: Some("2024-05-01 10:00:01".into()),
    };
    let cells = [
        Some("s3://bk/prod"),
        Some("1048576"),
        Some("431434047157698561"),
        Some("2024-05-01 10:00:00"),
        Some("2024-05-01 10:00:01"),
    ];
    let got = parse_backup_result(&names(&BACKUP_COLUMNS), &row(&cells)).unwrap();
    assert_eq!(got, expected);

    // Reversed columns, other case and underscores: the same values.
    let reversed: Vec<&str> = [
        "execution_time",
        "QUEUE TIME",
        "backupts",
        "size",
        "destination",
    ]
    .to_vec();
    let mut rev_cells = cells.to_vec();
    rev_cells.reverse();
    let got = parse_backup_result(&names(&reversed), &row(&rev_cells)).unwrap();
    assert_eq!(got, expected);

    // The times are optional: NULL or absent.
    let got = parse_backup_result(
        &names(&["BackupTS", "Destination", "Size"]),
        &row(&[Some("7"), Some("local:///b"), Some("0")]),
    )
    .unwrap();
    assert_eq!(got.queue_time, None);
    assert_eq!(got.execution_time, None);
    assert_eq!((got.backup_ts, got.size), (7, 0));
    let mut nulls = cells.to_vec();
    nulls[3] = None;
    nulls[4] = None;
    let got = parse_backup_result(&names(&BACKUP_COLUMNS), &row(&nulls)).unwrap();
    assert_eq!((got.queue_time, got.execution_time), (None, None));
}

#[test]
fn backup_result_refuses_a_missing_or_unusable_backup_point() {
    let cols = names(&BACKUP_COLUMNS);
    let base = [
        Some("s3://bk/prod"),
        Some("10"),
        Some("431434047157698561"),
        None,
        None,
    ];
    let with = |i: usize, v: Option<&str>| {
        let mut cells = base.to_vec();
        cells[i] = v;
        parse_backup_result(&cols, &row(&cells)).unwrap_err()
    };
    // BackupTS 0, NULL, garbage, negative, too large.
    let e = with(2, Some("0"));
    assert!(e.to_string().contains("positive TSO"), "{e}");
    assert!(matches!(
        with(2, None),
        BrError::BadValue { value: None, .. }
    ));
    for garbage in ["abc", "-1", "18446744073709551616", "4.5", ""] {
        let e = with(2, Some(garbage));
        assert!(
            matches!(&e, BrError::BadValue { column, value: Some(v), .. } if column == "BackupTS" && v == garbage),
            "{garbage}: {e:?}"
        );
    }
    assert!(matches!(with(1, Some("12 MB")), BrError::BadValue { .. }));
    assert!(matches!(with(0, None), BrError::BadValue { .. }));
    // Non-UTF-8 bytes.
    let mut cells = row(&base);
    cells[0] = Some(vec![0xff, 0xfe]);
    assert!(matches!(
        parse_backup_result(&cols, &cells),
        Err(BrError::BadValue { .. })
    ));
    // A missing column names what was there.
    let e = parse_backup_result(
        &names(&["Destination", "Size"]),
        &row(&[Some("x"), Some("1")]),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "BACKUP result has no column \"BackupTS\" (columns: Destination, Size)"
    );
    // A row of another width.
    let e = parse_backup_result(&cols, &row(&base[..4])).unwrap_err();
    assert!(matches!(
        e,
        BrError::RowShape {
            cells: 4,
            columns: 5,
            ..
        }
    ));
}

#[test]
fn restore_result_has_six_columns_now_and_five_before() {
    let six = names(&[
        "Destination",
        "Size",
        "BackupTS",
        "Cluster TS",
        "Queue Time",
        "Execution Time",
    ]);
    let got = parse_restore_result(
        &six,
        &row(&[
            Some("s3://bk/prod"),
            Some("2048"),
            Some("431434047157698561"),
            Some("431434141450371074"),
            Some("2024-05-01 10:00:00"),
            Some("2024-05-01 10:00:02"),
        ]),
    )
    .unwrap();
    assert_eq!(
        got,
        RestoreResult {
            destination: "s3://bk/prod".into(),
            size: 2048,
            backup_ts: 431_434_047_157_698_561,
            cluster_ts: Some(431_434_141_450_371_074),
            verification_ts: None,
        }
    );
    // The old shape: BackupTS held the restore TS.
    let five = names(&[
        "Destination",
        "Size",
        "BackupTS",
        "Queue Time",
        "Execution Time",
    ]);
    let got = parse_restore_result(
        &five,
        &row(&[
            Some("s3://bk/prod"),
            Some("2048"),
            Some("431434141450371074"),
            None,
            None,
        ]),
    )
    .unwrap();
    assert_eq!(
        (got.backup_ts, got.cluster_ts),
        (0, Some(431_434_141_450_371_074))
    );
    // ... or 0, as the old doc showed it.
    let got = parse_restore_result(
        &five,
        &row(&[Some("s3://bk/prod"), Some("2048"), Some("0"), None, None]),
    )
    .unwrap();
    assert_eq!((got.backup_ts, got.cluster_ts), (0, None));
    // In the current shape the archive's BackupTS must be a TSO; Cluster TS is read too.
    let bad = |ts: Option<&str>, cluster: Option<&str>| {
        parse_restore_result(&six, &row(&[Some("d"), Some("1"), ts, cluster, None, None]))
            .unwrap_err()
    };
    assert!(matches!(
        bad(Some("0"), Some("5")),
        BrError::BadValue { .. }
    ));
    assert!(matches!(
        bad(Some("5"), Some("x5")),
        BrError::BadValue { .. }
    ));
    assert!(matches!(bad(Some("5"), None), BrError::BadValue { .. }));
}

#[test]
fn show_backups_reads_rows_by_name_with_or_without_id() {
    let cols = names(&[
        "Id",
        "Destination",
        "State",
        "Progress",
        "Queue_time",
        "Execution_time",
        "Finish_time",
        "Connection",
        "Message",
    ]);
    let rows = vec![
        row(&[
            Some("1"),
            Some("s3://bk/a"),
            Some("Checksum"),
            Some("100"),
            Some("2024-05-01 10:00:00"),
            Some("2024-05-01 10:00:00"),
            Some("2024-05-01 10:00:09"),
            Some("5857102839209263511"),
            None,
        ]),
        row(&[
            Some("2"),
            Some("s3://bk/b"),
            Some("Backup Canceled"),
            Some("37.5"),
            None,
            None,
            None,
            Some("7"),
            Some("context canceled"),
        ]),
    ];
    let jobs = parse_show_backups(&cols, &rows).unwrap();
    assert_eq!(
        jobs,
        vec![
            BrJob {
                id: Some(1),
                destination: "s3://bk/a".into(),
                state: "Checksum".into(),
                progress: 100.0,
                connection: Some(5_857_102_839_209_263_511),
                message: None,
            },
            BrJob {
                id: Some(2),
                destination: "s3://bk/b".into(),
                state: "Backup Canceled".into(),
                progress: 37.5,
                connection: Some(7),
                message: Some("context canceled".into()),
            },
        ]
    );
    // Older TiDB: no Id column.
    let jobs = parse_show_backups(&cols[1..], &[rows[0][1..].to_vec()]).unwrap();
    assert_eq!(jobs[0].id, None);
    assert_eq!(jobs[0].state, "Checksum");
    // No rows, no jobs.
    assert_eq!(parse_show_backups(&cols, &[]).unwrap(), vec![]);
    // Garbage progress, missing state.
    let mut bad = rows[0].clone();
    bad[3] = Some(b"NaN".to_vec());
    assert!(parse_show_backups(&cols, &[bad]).is_err());
    let mut bad = rows[0].clone();
    bad[3] = Some(b"half".to_vec());
    assert!(parse_show_backups(&cols, &[bad]).is_err());
    let mut bad = rows[0].clone();
    bad[2] = None;
    assert!(parse_show_backups(&cols, &[bad]).is_err());
    let mut bad = rows[0].clone();
    bad[0] = Some(b"one".to_vec());
    assert!(parse_show_backups(&cols, &[bad]).is_err());
}

#[test]
fn statements_quote_schemas_escape_the_uri_and_always_state_the_checksum() {
    let schemas = vec!["sales".to_string(), "we`ird".to_string()];
    let opts = BrOptions {
        concurrency: Some(8),
        rate_limit_mb: Some(120),
        checksum: true,
    };
    assert_eq!(
        backup_sql(&schemas, "s3://bk/p?secret-access-key=it's\\", &opts),
        "BACKUP DATABASE `sales`, `we``ird` TO 's3://bk/p?secret-access-key=it''s\\\\' \
         CONCURRENCY = 8 RATE_LIMIT = 120 MB/SECOND CHECKSUM = TRUE"
    );
    let no_checksum = BrOptions {
        checksum: false,
        ..BrOptions::default()
    };
    assert_eq!(
        restore_sql(&[], "local:///tmp/b", &no_checksum),
        "RESTORE DATABASE * FROM 'local:///tmp/b' CHECKSUM = FALSE"
    );
    assert!(BrOptions::default().checksum);
    assert_eq!(
        kill_sql(5_857_102_839_209_263_511),
        "KILL TIDB QUERY 5857102839209263511"
    );
    assert!(BrOptions {
        concurrency: Some(0),
        ..BrOptions::default()
    }
    .validate()
    .is_err());
}

#[test]
fn secrets_are_masked_in_uris_and_messages() {
    let uri = "s3://bk/prod?access-key=AKIAEXAMPLE&secret-access-key=wJalr%2FXUtnFEMI&session-token=FQoGZXIvYXdzE&endpoint=http://minio:9000";
    assert_eq!(redact_uri(uri), "s3://bk/prod");
    assert_eq!(
        redact_uri("hdfs://user:pw@nn:8020/b?x=1"),
        "hdfs://***@nn:8020/b"
    );
    assert_eq!(redact_uri("local:///tmp/b"), "local:///tmp/b");

    // The URI echoed whole, a decoded secret alone, and key=value in another spelling.
    let message = format!(
        "failed to access {uri}: AccessDenied for key wJalr/XUtnFEMI; \
         Secret_Access_Key=other-secret, SESSION-TOKEN=tok123"
    );
    let masked = redact_secrets(&message, uri);
    for secret in ["wJalr", "FQoGZXIvYXdzE", "other-secret", "tok123"] {
        assert!(!masked.contains(secret), "{secret} in {masked}");
    }
    assert!(
        masked.starts_with("failed to access s3://bk/prod: AccessDenied"),
        "{masked}"
    );
    assert!(masked.contains("Secret_Access_Key=***,"), "{masked}");
    // A part of the URI as the server may print it.
    let partial = "open s3://bk/prod?secret-access-key=wJalr%2FXUtnFEMI&region=x: denied";
    assert_eq!(
        redact_secrets(partial, uri),
        "open s3://bk/prod?secret-access-key=***&region=x: denied"
    );
    // Nothing to mask: unchanged.
    assert_eq!(redact_secrets("plain é message", ""), "plain é message");
}
