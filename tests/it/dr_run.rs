//! `syncgate dr run`: backup → restore (gate 1) → replicate (gate 2) in one command, under
//! writes, killed with SIGKILL in three different steps and run again after each kill.

use crate::dr_backup::{rows_on, signal, wait_running, wait_uploading, writes, Flow};
use crate::replica_fence::scalar;
use crate::scenario::describe;
use std::time::Duration;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Killed midway through the backup's upload, the restore's load and the replicate step,
/// each time run again: every rerun takes the unfinished step over (a restore replaces what
/// its killed attempt wrote; a replica its killed attempt started is taken as is), never
/// repeats a finished one, and the last ends with gates 1 and 2 equal and replication
/// running. `--dry-run` changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_run_killed_in_three_steps_ends_with_every_gate_equal() {
    let flow = Flow::new(2, 60_000, None).await;
    let load = writes(&flow.primary, 2, 50);

    let out = flow.run("run", &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(stdout(&out).contains("== backup"), "{}", describe(&out));
    assert!(
        !flow.out().join("flow.json").exists(),
        "a dry run records nothing"
    );

    // 1. In the backup's upload.
    let mut child = flow.command("run", &[]).spawn().unwrap();
    wait_uploading(&flow, &mut child);
    signal(&child, "-9");
    let _ = child.wait();

    // 2. In the restore's load (the backup finished first).
    let mut child = flow.command("run", &[]).spawn().unwrap();
    wait_running(&flow, "restore", &mut child);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while rows_on(&flow.secondary, "sbtest.sbtest1").await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the restore never loaded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(&child, "-9");
    let _ = child.wait();
    let state = flow.flow_state();
    assert_eq!(state["steps"]["backup"]["status"], "done", "{state:#}");
    let backup_id = state["steps"]["backup"]["backup_id"].clone();
    assert_eq!(state["steps"]["restore"]["status"], "running", "{state:#}");

    // 3. In the replicate step (the restore and gate 1 finished first).
    let mut child = flow.command("run", &[]).spawn().unwrap();
    wait_running(&flow, "replicate", &mut child);
    signal(&child, "-9");
    let _ = child.wait();
    let state = flow.flow_state();
    assert_eq!(state["steps"]["restore"]["status"], "done", "{state:#}");
    assert_eq!(
        state["steps"]["restore"]["gate"]["result"], "equal",
        "{state:#}"
    );
    eprintln!(
        "killed with the replicate step {}",
        state["steps"]["replicate"]["status"]
    );

    // The last run: what is done is skipped, the rest finishes, gate 2 is equal.
    let out = flow.run("run", &[]);
    let text = describe(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("backup: done earlier"), "{text}");
    assert!(text.contains("restore: done earlier"), "{text}");
    assert!(text.contains("gate 2: equal"), "{text}");
    let state = flow.flow_state();
    assert_eq!(
        state["steps"]["backup"]["backup_id"], backup_id,
        "not backed up again"
    );
    assert_eq!(state["steps"]["replicate"]["status"], "done", "{state:#}");
    let io = scalar(
        &flow.secondary,
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Slave%'",
    )
    .await;
    assert!(
        io.parse::<u32>().unwrap() >= 2,
        "IO and SQL threads run: {io}"
    );

    // Run again: nothing to do but gate 2, still equal under writes.
    let out = flow.run("run", &[]);
    let text = describe(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("replicate: done earlier"), "{text}");
    assert!(text.contains("gate 2: equal"), "{text}");
    let stats = load.stop().await.expect("the load ran without errors");
    assert!(stats.transactions > 20, "{stats:?}");
}
