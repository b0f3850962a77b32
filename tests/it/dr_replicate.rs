//! `syncgate dr replicate`, gate 2 (`dr verify`) and `dr status` on real MariaDB servers
//! (binlogs on), after a real `dr backup` / `dr restore`, with the primary under writes.

use std::process::Output;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use syncgate::local::LocalServer;

use crate::dr_backup::{writes, Flow};
use crate::scenario::describe;
use crate::support::purge_binlogs;
use syncgate::dr::binlog::GtidPos;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn exec(server: &LocalServer, sql: &str) {
    let mut c = server.conn().await.unwrap();
    c.query_drop(sql)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
}

async fn scalar(server: &LocalServer, sql: &str) -> String {
    let mut c = server.conn().await.unwrap();
    let v: Option<String> = c.query_first(sql).await.unwrap();
    v.unwrap_or_default()
}

/// Backup and restore (gate 1 equal) with writes on the primary.
async fn restored(flow: &Flow) {
    let out = flow.run("backup", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = flow.run("restore", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

fn add_to_dr_section(flow: &Flow, lines: &str) {
    let text = std::fs::read_to_string(&flow.config).unwrap();
    std::fs::write(
        &flow.config,
        text.replace("[dr]\n", &format!("[dr]\n{lines}\n")),
    )
    .unwrap();
}

/// The whole path: refused without a restore; backup → restore → replicate under ~100 TPS;
/// gate 2 equal three times while writes go on; status shows replication and lag; a second
/// replicate is refused; a row changed on the secondary outside replication makes gate 2
/// fail and name it; SIGINT during the fence exits 130 and leaves replication running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicate_then_verify_under_writes() {
    let flow = Flow::new(2, 2_000, None).await;
    let load = writes(&flow.primary, 2, 100);

    let out = flow.run("replicate", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("no restored backup in the flow"),
        "{}",
        describe(&out)
    );
    let out = flow.run("verify", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("run `dr replicate`"),
        "{}",
        describe(&out)
    );

    restored(&flow).await;
    let backup_gtid = flow.flow_state()["steps"]["restore"]["point"]["gtid"]
        .as_str()
        .unwrap()
        .to_string();

    // --dry-run says what it would change and changes nothing.
    let out = flow.run("replicate", &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).contains(&format!("SET GLOBAL gtid_slave_pos = '{backup_gtid}'")),
        "{}",
        describe(&out)
    );
    assert_eq!(scalar(&flow.secondary, "SHOW SLAVE STATUS").await, "");

    let out = flow.run("replicate", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = stdout(&out);
    assert!(text.contains("replication runs"), "{text}");
    assert!(text.contains("gate 2: equal"), "{text}");
    let state = flow.flow_state();
    assert_eq!(state["steps"]["replicate"]["status"], "done");
    assert_eq!(state["steps"]["replicate"]["point"]["gtid"], backup_gtid);
    assert_eq!(
        state["steps"]["replicate"]["source"],
        format!("127.0.0.1:{}", flow.primary.port())
    );

    for i in 0..3 {
        let out = flow.run("verify", &["--json"]);
        assert_eq!(out.status.code(), Some(0), "run {i}: {}", describe(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["result"], "equal", "{doc}");
        assert!(doc["compared_rows"].as_u64().unwrap() >= 4_000, "{doc}");
        assert!(doc["fence"].as_str().unwrap().contains("0-1-"), "{doc}");
    }
    let history = flow.flow_state()["gate_history"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(history.len(), 4, "replicate's own gate and three verifies");

    let out = flow.run("status", &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rep = &st["replication"]["status"];
    assert_eq!(rep["io_running"], "Yes", "{st}");
    assert_eq!(rep["sql_running"], "Yes", "{st}");
    assert!(rep["seconds_behind"].is_u64(), "{st}");
    assert!(st["replication"]["lag_transactions"]["0"].is_u64(), "{st}");
    assert_eq!(st["steps"]["replicate"]["status"], "done");
    assert_eq!(st["gate_history"].as_array().unwrap().len(), 4);
    let out = flow.run("status", &[]);
    assert!(
        stdout(&out).contains("IO thread Yes, SQL thread Yes"),
        "{}",
        describe(&out)
    );

    // Replicating already: refused, saying from where.
    let out = flow.run("replicate", &["--again"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains(&format!(
            "already replicates from 127.0.0.1:{}",
            flow.primary.port()
        )),
        "{}",
        describe(&out)
    );

    // A row on the secondary that replication never saw (an id the load never reaches, so
    // replication itself keeps applying).
    exec(
        &flow.secondary,
        "SET sql_log_bin = 0; INSERT INTO sbtest.sbtest2 (id, k, c, pad) \
         VALUES (9000077, 1, 'diverged', 'x')",
    )
    .await;
    let out = flow.run("verify", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let fix_dir = flow.out().join("verify");
    let fixes = read_all(&fix_dir);
    assert!(
        fixes.contains("9000077"),
        "the fix SQL names the row:\n{fixes}"
    );
    assert!(
        stdout(&out).contains("sbtest.sbtest2") || fixes.contains("sbtest2"),
        "{}",
        describe(&out)
    );
    assert_eq!(flow.flow_state()["gate_history"][4]["result"], "different");
    exec(
        &flow.secondary,
        "SET sql_log_bin = 0; DELETE FROM sbtest.sbtest2 WHERE id = 9000077",
    )
    .await;
    let stats = load.stop().await.expect("the load ran without errors");
    assert!(stats.transactions > 100, "{stats:?}");

    // SIGINT while the fence holds the replica: exit 130, replication runs again.
    exec(
        &flow.secondary,
        "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 3600; START SLAVE",
    )
    .await;
    exec(
        &flow.primary,
        "UPDATE sbtest.sbtest1 SET k = k + 1 WHERE id = 1",
    )
    .await;
    let child = flow
        .command("verify", &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let waiting = "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                   WHERE INFO LIKE 'SELECT MASTER_GTID_WAIT%'";
    let deadline = Instant::now() + Duration::from_secs(60);
    while scalar(&flow.secondary, waiting).await == "0" {
        assert!(Instant::now() < deadline, "the fence never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", describe(&out));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = flow.run("status", &["--json"]);
        let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let rep = &st["replication"]["status"];
        if rep["io_running"] == "Yes" && rep["sql_running"] == "Yes" {
            assert!(st["lock"].is_null(), "the lock was released: {st}");
            let last = st["gate_history"]
                .as_array()
                .unwrap()
                .last()
                .unwrap()
                .clone();
            assert_eq!(last["result"], "interrupted", "{st}");
            break;
        }
        assert!(Instant::now() < deadline, "replication not restarted: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn read_all(dir: &std::path::Path) -> String {
    let mut s = String::new();
    for e in walk(dir) {
        if let Ok(t) = std::fs::read_to_string(&e) {
            s.push_str(&t);
        }
    }
    s
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Binlogs purged on the primary after the backup: the 1236 line, exit 2, and the failed
/// step leaves no replication running (a retry is not refused as "already replicating").
/// The purge is awaited until the server really did it (see `purge_binlogs`): a PURGE right
/// after the FLUSH may keep the file with the backup's next transaction, and then the
/// replica connects and this test cannot fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_binlogs_give_the_1236_line() {
    let flow = Flow::new(1, 500, None).await;
    restored(&flow).await;
    let backup_gtid = flow.flow_state()["steps"]["restore"]["point"]["gtid"]
        .as_str()
        .unwrap()
        .to_string();
    exec(
        &flow.primary,
        "INSERT INTO sbtest.sbtest1 (k, c, pad) VALUES (1, 'a', 'b'); FLUSH BINARY LOGS; \
         INSERT INTO sbtest.sbtest1 (k, c, pad) VALUES (1, 'a', 'b')",
    )
    .await;
    let left = purge_binlogs(&flow.primary).await;
    // The binlog left starts after the backup's next transaction: the replica's start is gone.
    let starts = scalar(
        &flow.primary,
        &format!("SELECT BINLOG_GTID_POS('{left}', 4)"),
    )
    .await;
    let needed = GtidPos::parse(&backup_gtid).unwrap();
    assert!(
        !needed.covers(&GtidPos::parse(&starts).unwrap()),
        "{left} starts at {starts}, the backup is at {backup_gtid}"
    );
    let out = flow.run("replicate", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.contains("error 1236"), "{err}");
    assert!(err.contains("purged"), "{err}");
    assert!(err.contains("take a new backup"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let text = stdout(&out);
    assert!(
        !text.contains("replication runs") && !text.contains("gate 2: "),
        "no replication, no gate: {text}"
    );
    let state = flow.flow_state();
    assert_eq!(state["steps"]["replicate"]["status"], "failed");
    assert!(
        state["steps"]["replicate"]["error"]
            .as_str()
            .unwrap()
            .contains("1236"),
        "{state}"
    );
    let threads = scalar(
        &flow.secondary,
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE \
         VARIABLE_NAME = 'SLAVE_RUNNING'",
    )
    .await;
    assert_eq!(threads, "OFF");
    // The failed start left nothing running: a retry is refused for the purge again, not
    // as "already replicating".
    let out = flow.run("replicate", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(stderr(&out).contains("error 1236"), "{}", describe(&out));
}

/// A wrong replication password: its clear line, and the password appears nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_replication_password_gives_the_credentials_line() {
    let flow = Flow::new(1, 500, None).await;
    restored(&flow).await;
    add_to_dr_section(&flow, "replication-password = \"Wr0ngPassw0rd\"");
    let out = flow.run("replicate", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("refused the replication user's credentials"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let everything = format!(
        "{}{}{}",
        describe(&out),
        std::fs::read_to_string(flow.out().join("flow.json")).unwrap(),
        std::fs::read_to_string(flow.out().join("dr.log")).unwrap_or_default()
    );
    assert!(!everything.contains("Wr0ngPassw0rd"), "{everything}");
    // Retried after the fix: done.
    let text = std::fs::read_to_string(&flow.config).unwrap();
    std::fs::write(
        &flow.config,
        text.replace("replication-password = \"Wr0ngPassw0rd\"\n", ""),
    )
    .unwrap();
    let out = flow.run("replicate", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

/// `dr replicate --with-archive`: replication and gate 2 as without it, and `dr archive` as
/// a child process that follows the writes into redo-storage while replicate waits. SIGTERM
/// to replicate stops the child cleanly (exit 0, everything the primary committed is
/// archived) and then replicate (exit 0); replication goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicate_with_archive_runs_the_archiver_as_a_child() {
    // Backups and the archive on a real S3 server.
    let s3_root = tempfile::tempdir().unwrap();
    let s3 = syncgate::local::LocalS3::start(s3_root.path(), "sgkey", "sgsecret/1")
        .await
        .unwrap();
    s3.create_bucket("backup").unwrap();
    let uri = |prefix: &str| {
        format!(
            "s3://backup/{prefix}?access-key=sgkey&secret-access-key={}&endpoint={}\
             &force-path-style=true",
            syncgate::storage::encode_query_value("sgsecret/1"),
            s3.endpoint()
        )
    };
    let redo = uri("redo");
    let flow = Flow::new(1, 500, Some(uri("flow"))).await;
    add_to_dr_section(
        &flow,
        &format!("redo-storage = \"{redo}\"\nflush-interval = 0.2"),
    );
    restored(&flow).await;
    let backup_gtid = flow.flow_state()["steps"]["restore"]["point"]["gtid"]
        .as_str()
        .unwrap()
        .to_string();
    let load = writes(&flow.primary, 1, 50);
    let mut child = flow
        .command("replicate", &["--with-archive"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its stdout, line by line, as it comes.
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let stdout_thread = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in reader.lines().map_while(|l| l.ok()) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !seen.iter().any(|l: &String| l.starts_with("waiting:")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!("no `waiting:` line: {seen:?}\n{}", stderr(&out));
            }
        }
    }
    let text = seen.join("\n");
    assert!(text.contains("replication runs"), "{text}");
    assert!(text.contains("gate 2: equal"), "{text}");
    assert!(!text.contains("sgsecret"), "{text}");
    let archiver: u32 = text
        .split("dr archive runs as pid ")
        .nth(1)
        .and_then(|t| t.split(',').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no archiver pid: {text}"));
    let alive = |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    assert!(alive(archiver), "{text}");

    // The archive follows the writes while replicate waits.
    let status = |flow: &Flow| -> serde_json::Value {
        let out = flow.run("status", &["--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while status(&flow)["archive"]["segments"].as_u64().unwrap_or(0) < 2 {
        assert!(Instant::now() < deadline, "{}", status(&flow));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = load.stop().await.expect("load");
    assert!(stats.transactions > 20, "{stats:?}");
    let end = scalar(&flow.primary, "SELECT @@gtid_binlog_pos").await;

    crate::signals::send(&child, "TERM");
    let out = child.wait_with_output().unwrap();
    stdout_thread.join().unwrap();
    let rest: Vec<String> = lines.try_iter().collect();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{rest:?}\n{err}");
    assert!(
        rest.iter().any(|l| l.starts_with(&format!(
            "dr archive (pid {archiver}) stopped (exit status: 0)"
        ))),
        "{rest:?}\n{err}"
    );
    assert!(!alive(archiver), "the archiver is gone");
    // Stopped by its stdin closing (not a signal), then as on SIGTERM.
    assert!(
        err.contains("its parent `dr replicate --with-archive` ended"),
        "{err}"
    );
    assert!(err.contains("dr archive stopped by SIGTERM"), "{err}");

    // Everything the primary committed after the backup is archived, once each.
    let store = syncgate::storage::open(&syncgate::storage::StorageUri::parse(&redo).unwrap())
        .await
        .unwrap();
    let index = syncgate::dr::archive::load_index(store.as_ref())
        .await
        .unwrap();
    let from = GtidPos::parse(&backup_gtid).unwrap();
    let end = GtidPos::parse(&end).unwrap();
    let mut seqs = Vec::new();
    for e in syncgate::dr::archive::plan(&index, &from).unwrap() {
        let bytes = store.get(&e.segment).await.unwrap().unwrap();
        seqs.extend(
            syncgate::dr::binlog::transactions(&bytes)
                .unwrap()
                .iter()
                .map(|g| g.seq),
        );
    }
    assert_eq!(
        seqs,
        (from.0[&0].seq + 1..=end.0[&0].seq).collect::<Vec<_>>()
    );
    // Replication still runs.
    let st = status(&flow);
    assert_eq!(st["replication"]["status"]["io_running"], "Yes", "{st}");
    assert_eq!(st["replication"]["status"]["sql_running"], "Yes", "{st}");
}
