//! SIGINT and SIGTERM, sent to a real `syncgate check` against real servers: the run stops
//! with the checkpoint written, prints the `--resume` command, exits 130 / 143, leaves
//! nothing held on the servers (a replica stopped by the GTID fence is replicating again),
//! and the resumed run ends with the uninterrupted run's result.

use crate::replica_fence::{config, exec, replicate, scalar};
use crate::resume::{checkpoint_file, consistent_config, fix_sql, load, progress_of, read_json};
use crate::scenario::{describe, syncgate, Scenario};
use crate::support::start_server;
use mysql_async::prelude::Queryable;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use syncgate::local::LocalServer;

/// Start `syncgate` with `args`, capturing its output.
pub(crate) fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start syncgate")
}

/// Send a signal by name with the `kill` utility.
pub(crate) fn send(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} failed");
}

/// Wait for the child to exit (bounded) and collect its output.
pub(crate) fn finish(child: Child, within: Duration) -> (Output, Duration) {
    let t = Instant::now();
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(within) {
        Ok(out) => (out.expect("wait"), t.elapsed()),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &id.to_string()])
                .status();
            panic!("syncgate did not exit within {within:?} of the signal");
        }
    }
}

/// Wait until the checkpoint in `out` shows more progress than `after`, then send `signal`.
/// Returns the progress seen.
fn signal_after_progress(
    child: &mut Child,
    out: &Path,
    after: (usize, u64),
    signal: &str,
) -> (usize, u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(ck) = read_json(&checkpoint_file(out)) {
            let p = progress_of(&ck);
            if p.0 >= 1 && p.1 > 0 && p > after {
                send(child, signal);
                return p;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before the checkpoint passed {after:?}");
        }
        assert!(Instant::now() < deadline, "no checkpoint progress");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What an interrupted run must say: no `error:` line, the signal, and the resume command.
fn assert_stopped(out: &Output, signal: &str, code: i32, cfg: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{}", describe(out));
    assert!(
        stderr.contains(&format!("stopped by {signal}")),
        "{}",
        describe(out)
    );
    assert!(
        stderr.contains(&format!("check -C {cfg}")) && stderr.contains("--resume"),
        "the resume command is printed: {}",
        describe(out)
    );
    assert!(
        !stderr.lines().any(|l| l.starts_with("error:")),
        "an interrupt is not an error: {}",
        describe(out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_then_sigterm_then_resume_ends_with_the_uninterrupted_result() {
    let s = Scenario::empty().await;
    load(&s).await;
    let cfg = consistent_config(&s);
    let cfg = cfg.to_str().unwrap().to_string();
    let reference = s.dir.path().join("reference");
    let out = syncgate(&[
        "check",
        "-C",
        &cfg,
        "--output-dir",
        reference.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));

    let out_dir = s.output_dir();
    let args = ["check", "-C", cfg.as_str(), "--check-thread-count", "1"];
    let mut child = spawn(&args);
    let seen = signal_after_progress(&mut child, &out_dir, (0, 0), "INT");
    let (out, took) = finish(child, Duration::from_secs(30));
    assert_stopped(&out, "SIGINT", 130, &cfg);
    let saved = read_json(&checkpoint_file(&out_dir)).expect("checkpoint after SIGINT");
    let after_int = progress_of(&saved);
    assert!(after_int >= seen, "{after_int:?} < {seen:?}");
    eprintln!("SIGINT: exited in {took:?} with progress {after_int:?}");

    // The resumed run, stopped again by SIGTERM once it got further.
    let mut resumed_args = args.to_vec();
    resumed_args.push("--resume");
    let mut child = spawn(&resumed_args);
    signal_after_progress(&mut child, &out_dir, after_int, "TERM");
    let (out, took) = finish(child, Duration::from_secs(30));
    assert_stopped(&out, "SIGTERM", 143, &cfg);
    let after_term = progress_of(&read_json(&checkpoint_file(&out_dir)).expect("checkpoint"));
    assert!(after_term > after_int, "{after_term:?} <= {after_int:?}");
    eprintln!("SIGTERM: exited in {took:?} with progress {after_term:?}");

    let out = syncgate(&["check", "-C", &cfg, "--resume"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        crate::resume::results(&s.summary()),
        crate::resume::results(&crate::scenario::summary(&reference)),
        "twice-interrupted run differs from the uninterrupted one\n{}",
        describe(&out)
    );
    assert_eq!(fix_sql(&out_dir), fix_sql(&reference));
    assert!(!checkpoint_file(&out_dir).exists());
}

/// `(Slave_IO_Running, Slave_SQL_Running, Until_Condition)` of the replica.
async fn replica_threads(replica: &LocalServer) -> (String, String, String) {
    let mut c = replica.conn().await.unwrap();
    let row: mysql_async::Row = c
        .query_first("SHOW SLAVE STATUS")
        .await
        .unwrap()
        .expect("a replica");
    let get = |name: &str| -> String {
        row.get_opt::<String, _>(name)
            .and_then(|v| v.ok())
            .unwrap_or_default()
    };
    let out = (
        get("Slave_IO_Running"),
        get("Slave_SQL_Running"),
        get("Until_Condition"),
    );
    c.disconnect().await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_during_the_gtid_fence_restarts_the_stopped_replica() {
    let primary = start_server(41).await;
    let replica = start_server(42).await;
    exec(
        &primary,
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT); \
         INSERT INTO app.t VALUES (1, 1), (2, 2)",
    )
    .await;
    replicate(&primary, &replica).await;
    // Delayed replication: the fence's wait for the primary's GTID cannot finish, so the
    // signal arrives while the replica is held by the fence.
    exec(
        &replica,
        "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 3600; START SLAVE",
    )
    .await;
    exec(&primary, "INSERT INTO app.t VALUES (3, 3)").await;

    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), primary.port(), replica.port());
    let cfg = cfg.to_str().unwrap().to_string();
    let child = spawn(&["check", "-C", &cfg]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let waiting = "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                   WHERE INFO LIKE 'SELECT MASTER_GTID_WAIT%'";
    while scalar(&replica, waiting).await == "0" {
        assert!(
            Instant::now() < deadline,
            "the fence never waited on the replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, sql, until) = replica_threads(&replica).await;
    assert_eq!(
        until, "Gtid",
        "the fence holds the replica with START SLAVE UNTIL"
    );
    eprintln!("fence waiting (SQL thread {sql}, until {until}); sending SIGINT");
    send(&child, "INT");
    let (out, took) = finish(child, Duration::from_secs(20));
    assert_stopped(&out, "SIGINT", 130, &cfg);
    eprintln!("exited in {took:?}");

    // Nothing held: replication runs without an UNTIL condition, and the fence's wait
    // does not linger on the replica.
    // (The I/O thread says `Preparing`/`Connecting` for a moment after a start.)
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut threads = replica_threads(&replica).await;
    while threads.0 != "Yes" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        threads = replica_threads(&replica).await;
    }
    let (io, sql, until) = threads;
    assert_eq!(
        (io.as_str(), sql.as_str(), until.as_str()),
        ("Yes", "Yes", "None")
    );
    assert_eq!(
        scalar(&replica, waiting).await,
        "0",
        "the GTID wait was ended"
    );
    // And it replicates: without the delay the replica reaches the primary.
    exec(
        &replica,
        "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 0; START SLAVE",
    )
    .await;
    let pos = scalar(&primary, "SELECT @@gtid_binlog_pos").await;
    let waited = scalar(&replica, &format!("SELECT MASTER_GTID_WAIT('{pos}', 60)")).await;
    assert_eq!(waited, "0", "replication works after the interrupt");
    assert_eq!(scalar(&replica, "SELECT COUNT(*) FROM app.t").await, "3");
}
