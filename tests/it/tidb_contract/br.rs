//! `syncgate::dr::tidb` against the stand-in TiDB ([`FakeTidb`]) and the mock PD: the exact
//! statements sent, the documented result shapes and errors, secrets kept out of errors,
//! interrupting a running job with `KILL TIDB QUERY`, and the DR flow's GC hold.

use super::fake_tidb::{FakeTidb, Outcome, EXECUTION_TIME, FIRST_CONNECTION_ID, QUEUE_TIME};
use super::mock_pd::{update, Call, MockPd};
use super::SAMPLE;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use syncgate::dr::tidb::{
    backup, fresh_tso, hold_gc, release_gc, restore, show_backups, BackupResult, BrError,
    BrOptions, DEFAULT_GC_HOLD_TTL_SECS, ER_BRIE_BACKUP_FAILED, ER_BRIE_RESTORE_FAILED,
};
use syncgate::interrupt::{Interrupt, Signal};
use syncgate::snapshot::tidb::Tso;
use syncgate::Error;

const SECRET: &str = "wJalrXUtnFEMIK7MDENGbPxRfiCY";
const TOKEN: &str = "FQoGZXIvYXdzEPT";

/// A BR storage URI with credentials, and a quote to escape.
fn uri() -> String {
    format!(
        "s3://backup/it's?access-key=AKIAEXAMPLE&secret-access-key={SECRET}\
         &session-token={TOKEN}&endpoint=http://127.0.0.1:9000&force-path-style=true"
    )
}

/// The URI as a string literal: `'` doubled.
fn uri_literal() -> String {
    format!("'{}'", uri().replace('\'', "''"))
}

const SETUP: [&str; 3] = [
    "SET SESSION time_zone = '+00:00'",
    "SET SESSION sql_mode = REPLACE(REPLACE(@@SESSION.sql_mode, 'NO_BACKSLASH_ESCAPES', ''), \
     'ANSI_QUOTES', '')",
    "SELECT CONNECTION_ID()",
];

fn schemas() -> Vec<String> {
    vec!["sales".to_string(), "we`ird".to_string()]
}

fn assert_no_secret(text: &str) {
    for secret in [SECRET, TOKEN] {
        assert!(!text.contains(secret), "a secret leaked: {text}");
    }
}

#[tokio::test]
async fn backup_sends_the_documented_statement_and_reads_its_five_columns() {
    let tidb = FakeTidb::start().await;
    let opts = BrOptions {
        concurrency: Some(8),
        rate_limit_mb: Some(120),
        checksum: true,
    };
    let got = backup(&tidb.opts(), &schemas(), &uri(), &opts, &Interrupt::never())
        .await
        .unwrap();
    assert_eq!(
        got,
        BackupResult {
            destination: "s3://backup/it's".into(),
            size: 1_048_576,
            backup_ts: SAMPLE,
            queue_time: Some(QUEUE_TIME.into()),
            execution_time: Some(EXECUTION_TIME.into()),
        }
    );
    // One connection: UTC and backslash escapes on, its 64-bit ID, then the statement with
    // quoted schemas, the escaped URI and every option spelled out.
    let mut expected: Vec<String> = SETUP.iter().map(|s| s.to_string()).collect();
    expected.push(format!(
        "BACKUP DATABASE `sales`, `we``ird` TO {} CONCURRENCY = 8 RATE_LIMIT = 120 MB/SECOND \
         CHECKSUM = TRUE",
        uri_literal()
    ));
    assert_eq!(tidb.statements_of(FIRST_CONNECTION_ID), expected);
    assert_eq!(tidb.statements().len(), expected.len());

    // All schemas, defaults: CHECKSUM is still written out.
    backup(
        &tidb.opts(),
        &[],
        &uri(),
        &BrOptions::default(),
        &Interrupt::never(),
    )
    .await
    .unwrap();
    assert_eq!(
        tidb.statements_of(FIRST_CONNECTION_ID + 1).last().unwrap(),
        &format!("BACKUP DATABASE * TO {} CHECKSUM = TRUE", uri_literal())
    );
}

#[tokio::test]
async fn restore_reads_six_or_five_columns_and_takes_a_fresh_tso_after_it() {
    let tidb = FakeTidb::start().await;
    let restore_ts = tidb.with(|s| s.restore_ts);
    let next_tso = tidb.with(|s| s.next_tso);
    let opts = BrOptions {
        checksum: false,
        ..BrOptions::default()
    };
    let got = restore(&tidb.opts(), &schemas(), &uri(), &opts, &Interrupt::never())
        .await
        .unwrap();
    assert_eq!(got.destination, "s3://backup/it's");
    assert_eq!(got.backup_ts, SAMPLE);
    assert_eq!(got.cluster_ts, Some(restore_ts));
    // The verification point: a TSO taken after RESTORE returned, in its own transaction.
    assert_eq!(got.verification_ts, Some(next_tso));
    let sent = tidb.statements_of(FIRST_CONNECTION_ID);
    assert_eq!(
        sent[3..],
        [
            format!(
                "RESTORE DATABASE `sales`, `we``ird` FROM {} CHECKSUM = FALSE",
                uri_literal()
            ),
            "BEGIN".to_string(),
            "SELECT @@tidb_current_ts".to_string(),
            "ROLLBACK".to_string(),
        ]
    );

    // Older TiDB: 5 columns, BackupTS held the restore TS.
    tidb.with(|s| s.restore_six_columns = false);
    let got = restore(&tidb.opts(), &[], &uri(), &opts, &Interrupt::never())
        .await
        .unwrap();
    assert_eq!(got.backup_ts, 0);
    assert_eq!(got.cluster_ts, Some(restore_ts));
    assert_eq!(got.verification_ts, Some(next_tso + (1 << 18)));
}

#[tokio::test]
async fn server_errors_keep_their_code_and_never_carry_secrets() {
    let tidb = FakeTidb::start().await;
    // unistore / mocktikv: a plain error (1105) from the executor builder.
    tidb.with(|s| {
        s.backup = Outcome::Fail {
            code: 1105,
            state: "HY000".into(),
            message: "BACKUP requires tikv store, not unistore".into(),
        }
    });
    let e = backup(
        &tidb.opts(),
        &[],
        &uri(),
        &BrOptions::default(),
        &Interrupt::never(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.server_code(), Some(1105));
    assert!(
        e.to_string().contains("requires tikv store, not unistore"),
        "{e}"
    );

    // A storage error whose message echoes the URI, secrets and all (8124, Backup failed).
    tidb.with(|s| {
        s.backup = Outcome::Fail {
            code: ER_BRIE_BACKUP_FAILED,
            state: "HY000".into(),
            message: "Backup failed: [BR:ExternalStorage:ErrStorageInvalidConfig] cannot \
                      access {uri}: AccessDenied"
                .into(),
        }
    });
    let e = backup(
        &tidb.opts(),
        &[],
        &uri(),
        &BrOptions::default(),
        &Interrupt::never(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.server_code(), Some(ER_BRIE_BACKUP_FAILED));
    let text = e.to_string();
    assert_no_secret(&text);
    assert_no_secret(&format!("{e:?}"));
    assert!(
        text.contains("cannot access s3://backup/it's: AccessDenied"),
        "{text}"
    );
    // The statement in the error is the redacted one.
    assert!(
        text.contains("(sql: BACKUP DATABASE * TO 's3://backup/it''s' CHECKSUM = TRUE)"),
        "{text}"
    );

    tidb.with(|s| {
        s.restore = Outcome::Fail {
            code: ER_BRIE_RESTORE_FAILED,
            state: "HY000".into(),
            message: format!("Restore failed: secret-access-key={SECRET} rejected"),
        }
    });
    let e = restore(
        &tidb.opts(),
        &[],
        &uri(),
        &BrOptions::default(),
        &Interrupt::never(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.server_code(), Some(ER_BRIE_RESTORE_FAILED));
    assert_no_secret(&e.to_string());
    assert!(
        e.to_string().contains("secret-access-key=*** rejected"),
        "{e}"
    );
}

#[tokio::test]
async fn a_result_without_a_row_is_refused() {
    let tidb = FakeTidb::start().await;
    tidb.with(|s| s.backup = Outcome::Empty);
    let e = backup(
        &tidb.opts(),
        &[],
        &uri(),
        &BrOptions::default(),
        &Interrupt::never(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, Error::Br(BrError::EmptyResult { statement, .. }) if statement == "BACKUP"),
        "{e:?}"
    );
}

#[tokio::test]
async fn interrupt_kills_the_running_backup_from_a_second_connection() {
    let tidb = FakeTidb::start().await;
    tidb.with(|s| s.backup = Outcome::Hold);
    let (interrupt, fire) = Interrupt::manual();
    let opts = tidb.opts();
    let job = tokio::spawn(async move {
        backup(&opts, &schemas(), &uri(), &BrOptions::default(), &interrupt).await
    });
    let held = tidb.wait_for_held(Duration::from_secs(5)).await;
    assert_eq!(held, FIRST_CONNECTION_ID);
    // The job blocks: nothing comes back while TiDB works.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!job.is_finished());

    let fired = Instant::now();
    fire(Signal::Interrupt);
    let outcome = tokio::time::timeout(Duration::from_secs(1), job)
        .await
        .expect("interrupted within a second")
        .unwrap();
    assert!(
        matches!(
            outcome,
            Err(Error::Interrupted {
                signal: Signal::Interrupt
            })
        ),
        "{outcome:?}"
    );
    assert!(fired.elapsed() < Duration::from_secs(1));
    // KILL went out on a second connection and named the first one's full 64-bit ID (its
    // handshake carried only the low 32 bits).
    assert_eq!(
        tidb.statements_of(FIRST_CONNECTION_ID + 1),
        [format!("KILL TIDB QUERY {FIRST_CONNECTION_ID}")]
    );
    assert!(FIRST_CONNECTION_ID > u64::from(u32::MAX));
    assert_eq!(tidb.with(|s| s.killed_at.len()), 1);
    // TiDB lists the job as canceled.
    let mut conn = mysql_async::Conn::new(tidb.opts()).await.unwrap();
    let jobs = show_backups(&mut conn).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].state, "Backup Canceled");
    assert_eq!(jobs[0].connection, Some(FIRST_CONNECTION_ID));
}

#[tokio::test]
async fn an_interrupt_before_the_statement_sends_nothing() {
    let tidb = FakeTidb::start().await;
    let (interrupt, fire) = Interrupt::manual();
    fire(Signal::Terminate);
    let e = backup(&tidb.opts(), &[], &uri(), &BrOptions::default(), &interrupt)
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 143);
    assert!(tidb.statements().is_empty());
}

#[tokio::test]
async fn show_backups_lists_jobs_by_column_name_without_url_parameters() {
    let tidb = FakeTidb::start().await;
    backup(
        &tidb.opts(),
        &[],
        &uri(),
        &BrOptions::default(),
        &Interrupt::never(),
    )
    .await
    .unwrap();
    tidb.with(|s| {
        s.backup = Outcome::Fail {
            code: ER_BRIE_BACKUP_FAILED,
            state: "HY000".into(),
            message: "Backup failed: {uri} is not writable".into(),
        }
    });
    backup(
        &tidb.opts(),
        &[],
        &uri(),
        &BrOptions::default(),
        &Interrupt::never(),
    )
    .await
    .unwrap_err();
    let mut conn = mysql_async::Conn::new(tidb.opts()).await.unwrap();
    let jobs = show_backups(&mut conn).await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0].id, Some(1));
    assert_eq!(jobs[0].destination, "s3://backup/it's");
    assert_eq!(jobs[0].state, "Checksum");
    assert_eq!(jobs[0].progress, 100.0);
    assert_eq!(jobs[0].connection, Some(FIRST_CONNECTION_ID));
    assert_eq!(jobs[0].message, None);
    assert_eq!(jobs[1].connection, Some(FIRST_CONNECTION_ID + 1));
    // A job's error message echoing the URI: its secret parameters are masked.
    let message = jobs[1].message.clone().unwrap();
    assert!(message.contains("is not writable"), "{message}");
    assert_no_secret(&message);

    // Older TiDB without the Id column.
    tidb.with(|s| s.show_id = false);
    let jobs = show_backups(&mut conn).await.unwrap();
    assert_eq!(jobs[0].id, None);
    assert_eq!(jobs[0].destination, "s3://backup/it's");
}

#[tokio::test]
async fn fresh_tso_reads_the_transaction_start_ts_and_rolls_back() {
    let tidb = FakeTidb::start().await;
    let next = tidb.with(|s| s.next_tso);
    let mut conn = mysql_async::Conn::new(tidb.opts()).await.unwrap();
    assert_eq!(fresh_tso(&mut conn).await.unwrap(), next);
    assert_eq!(fresh_tso(&mut conn).await.unwrap(), next + (1 << 18));
    assert_eq!(
        tidb.statements_of(FIRST_CONNECTION_ID),
        ["BEGIN", "SELECT @@tidb_current_ts", "ROLLBACK"].repeat(2)
    );
}

const CLUSTER: u64 = 7_103_425_125_213_437_001;

#[tokio::test]
async fn gc_hold_sets_the_service_safepoint_and_release_removes_it() {
    let pd = MockPd::start(CLUSTER, SAMPLE - 1_000_000).await;
    let addrs = vec![pd.addr.to_string()];
    let service = "syncgate_dr_primary-to-secondary";
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let hold = hold_gc(&addrs, service, SAMPLE, DEFAULT_GC_HOLD_TTL_SECS)
        .await
        .unwrap();
    assert_eq!(hold.service_id, service);
    assert_eq!(hold.safe_point, SAMPLE);
    assert!(
        (before + 86_400..=before + 86_402).contains(&hold.expires_at_unix),
        "{hold:?}"
    );
    assert_eq!(
        pd.calls(),
        [
            Call::GetMembers { cluster_id: 0 },
            update(CLUSTER, service, 86_400, SAMPLE)
        ]
    );
    assert_eq!(
        pd.with(|s| s.services.get(service).copied()),
        Some((SAMPLE, 86_400))
    );
    // Held again (a rerun): the same hold, renewed.
    hold_gc(&addrs, service, SAMPLE, 600).await.unwrap();
    assert_eq!(
        pd.with(|s| s.services.get(service).copied()),
        Some((SAMPLE, 600))
    );

    release_gc(&addrs, service).await.unwrap();
    assert_eq!(pd.calls().last().unwrap(), &update(CLUSTER, service, 0, 0));
    assert_eq!(pd.with(|s| s.services.get(service).copied()), None);
    // Releasing what is not held succeeds.
    release_gc(&addrs, service).await.unwrap();
}

#[tokio::test]
async fn gc_hold_behind_the_gc_safe_point_is_refused() {
    // GC has already passed the requested point (tiflow #1048, #1839).
    let floor = SAMPLE + 5_000_000;
    let pd = MockPd::start(CLUSTER, floor).await;
    let addrs = vec![pd.url()];
    let e = hold_gc(&addrs, "syncgate_dr", SAMPLE, 3600)
        .await
        .unwrap_err();
    let Error::Br(br) = &e else {
        panic!("expected a BR error, got {e:?}");
    };
    match br {
        BrError::GcPassed {
            safe_point,
            gc_safe_point,
            holder,
            ..
        } => {
            assert_eq!(*safe_point, Tso(SAMPLE));
            assert_eq!(*gc_safe_point, Tso(floor));
            assert_eq!(holder, "gc_worker");
        }
        other => panic!("expected GcPassed, got {other:?}"),
    }
    assert!(e.to_string().contains("GC has already passed it"), "{e}");
    assert_eq!(pd.with(|s| s.services.len()), 0);
}

#[tokio::test]
async fn gc_hold_refuses_unusable_arguments_before_asking_pd() {
    let pd = MockPd::start(CLUSTER, 1).await;
    let addrs = vec![pd.addr.to_string()];
    for (service, ts, ttl) in [
        ("syncgate_dr", SAMPLE, 0),
        ("syncgate_dr", 0, 60),
        ("", SAMPLE, 60),
        ("gc_worker", SAMPLE, 60),
    ] {
        let e = hold_gc(&addrs, service, ts, ttl).await.unwrap_err();
        assert!(matches!(e, Error::Br(BrError::Pd { .. })), "{e:?}");
    }
    assert!(hold_gc(&["https://pd:2379".to_string()], "s", SAMPLE, 60)
        .await
        .is_err());
    assert!(hold_gc(&[], "s", SAMPLE, 60).await.is_err());
    assert!(pd.calls().is_empty());
}
