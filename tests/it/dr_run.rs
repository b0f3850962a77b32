//! `syncgate dr run`: backup → restore (gate 1) → replicate (gate 2) in one command, under
//! writes, killed with SIGKILL in each of three steps and run again.

use crate::dr_backup::{rows_on, signal, wait_running, wait_uploading, writes, Flow};
use crate::replica_fence::scalar;
use crate::scenario::describe;
use std::time::Duration;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where the first `dr run` is killed.
#[derive(Clone, Copy, Debug)]
enum KillIn {
    /// The backup's upload.
    Backup,
    /// The restore's load (the backup finished first).
    Restore,
    /// The replicate step (restore and gate 1 finished first).
    Replicate,
}

/// One `dr run` under writes, killed with SIGKILL in `step`; then run again, which must take
/// the unfinished step over, never repeat a finished one, and end with gates 1 and 2 equal
/// and replication running.
async fn killed_then_rerun(step: KillIn) {
    let flow = Flow::new(2, 60_000, None).await;
    let load = writes(&flow.primary, 2, 50);
    let mut child = flow.command("run", &[]).spawn().unwrap();
    match step {
        KillIn::Backup => wait_uploading(&flow, &mut child),
        KillIn::Restore => {
            wait_running(&flow, "restore", &mut child);
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while rows_on(&flow.secondary, "sbtest.sbtest1").await == 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the restore never loaded"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        KillIn::Replicate => wait_running(&flow, "replicate", &mut child),
    }
    signal(&child, "-9");
    let _ = child.wait();
    let before = flow.flow_state();
    let backup_id = before["steps"]["backup"]["backup_id"].clone();

    let out = flow.run("run", &[]);
    let text = describe(&out);
    assert_eq!(out.status.code(), Some(0), "{step:?}: {text}");
    assert!(
        text.contains("gate 1: equal") || text.contains("restore: done earlier"),
        "{text}"
    );
    assert!(text.contains("gate 2: equal"), "{step:?}: {text}");
    let state = flow.flow_state();
    for s in ["backup", "restore", "replicate"] {
        assert_eq!(
            state["steps"][s]["status"], "done",
            "{step:?} {s}: {state:#}"
        );
    }
    assert_eq!(
        state["steps"]["restore"]["gate"]["result"], "equal",
        "{state:#}"
    );
    match step {
        KillIn::Backup => assert!(!text.contains("backup: done earlier"), "{text}"),
        KillIn::Restore | KillIn::Replicate => {
            assert!(text.contains("backup: done earlier"), "{text}");
            assert_eq!(
                state["steps"]["backup"]["backup_id"], backup_id,
                "not backed up again"
            );
        }
    }
    if let KillIn::Replicate = step {
        assert!(text.contains("restore: done earlier"), "{text}");
    }
    let threads = scalar(
        &flow.secondary,
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Slave%'",
    )
    .await;
    assert!(
        threads.parse::<u32>().unwrap() >= 2,
        "IO and SQL threads run: {threads}"
    );

    // Again: nothing left but gate 2, still equal under writes.
    let out = flow.run("run", &[]);
    let text = describe(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("replicate: done earlier"), "{text}");
    assert!(text.contains("gate 2: equal"), "{text}");
    let stats = load.stop().await.expect("the load ran without errors");
    assert!(stats.transactions > 20, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_run_killed_in_the_backup_then_rerun_ends_with_every_gate_equal() {
    killed_then_rerun(KillIn::Backup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_run_killed_in_the_restore_then_rerun_ends_with_every_gate_equal() {
    killed_then_rerun(KillIn::Restore).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_run_killed_in_replicate_then_rerun_ends_with_every_gate_equal() {
    killed_then_rerun(KillIn::Replicate).await;
}

/// `--dry-run` prints every step's plan and records nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_run_dry_run_changes_nothing() {
    let flow = Flow::new(1, 1_000, None).await;
    let out = flow.run("run", &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = stdout(&out);
    assert!(
        text.contains("== backup") && text.contains("== restore"),
        "{text}"
    );
    assert!(
        !flow.out().join("flow.json").exists(),
        "a dry run records nothing"
    );
}
