//! Least privilege, mode by mode: users holding exactly the grants README's "Privileges"
//! table lists can run each check mode on a real primary/replica pair; with one of those
//! grants taken away the run stops with one line naming the privilege; and no run writes
//! to the upstream.

use crate::replica_fence::{exec, replicate, scalar};
use crate::scenario::{counts, describe, summary, syncgate};
use crate::support::start_server;
use syncgate::local::LocalServer;

/// Create `user` (password `pw`) on `server` only (not replicated) with `grants`.
async fn user(server: &LocalServer, user: &str, grants: &str) {
    exec(
        server,
        &format!(
            "SET SESSION sql_log_bin = 0; CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'; \
             GRANT {grants} ON *.* TO '{user}'@'%'"
        ),
    )
    .await;
}

/// A check of `app.*` with these users and snapshot mode on each side.
fn config(
    dir: &std::path::Path,
    (up, down): (&LocalServer, &LocalServer),
    (up_user, down_user): (&str, &str),
    snapshot: &str,
    name: &str,
) -> String {
    let text = format!(
        "check-thread-count = 2\n\
         [data-sources.primary]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{up_user}\"\n\
         password = \"pw\"\nsnapshot = \"{snapshot}\"\n\
         [data-sources.replica]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{down_user}\"\n\
         password = \"pw\"\nsnapshot = \"{snapshot}\"\n\
         [task]\noutput-dir = \"{}\"\nsource-instances = [\"primary\"]\n\
         target-instance = \"replica\"\ntarget-check-tables = [\"app.*\"]\n\
         fix-sql-binlog = \"keep\"\n",
        up.port(),
        down.port(),
        dir.join(format!("out-{name}")).display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// The run stopped (exit 2) with one error line that names `privilege`.
fn refused_naming(out: &std::process::Output, privilege: &str) {
    assert_eq!(out.status.code(), Some(2), "{}", describe(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{}", describe(out));
    assert!(errors[0].contains(privilege), "{}", describe(out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_grants_suffice_per_mode_and_one_less_is_named() {
    let primary = start_server(41).await;
    let replica = start_server(42).await;
    replicate(&primary, &replica).await;
    exec(
        &primary,
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20)); \
         SET SESSION max_recursive_iterations = 100000; \
         INSERT INTO app.t WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r \
         WHERE n < 3000) SELECT n, CONCAT('v', n) FROM r",
    )
    .await;
    let pos = scalar(&primary, "SELECT @@gtid_binlog_pos").await;
    let waited = scalar(&replica, &format!("SELECT MASTER_GTID_WAIT('{pos}', 60)")).await;
    assert_eq!(waited, "0");
    // A divergence on the replica that replication does not see.
    exec(
        &replica,
        "SET SESSION sql_log_bin = 0; UPDATE app.t SET v = 'diverged' WHERE id = 5",
    )
    .await;
    let (p, r) = (&primary, &replica);
    user(p, "live", "SELECT").await;
    user(r, "live", "SELECT").await;
    user(p, "cons", "SELECT, RELOAD").await;
    user(r, "cons", "SELECT, RELOAD").await;
    user(p, "fence", "SELECT, RELOAD").await;
    user(
        r,
        "fence",
        "SELECT, RELOAD, REPLICATION SLAVE ADMIN, SLAVE MONITOR",
    )
    .await;
    user(r, "fence_no_rsa", "SELECT, RELOAD, SLAVE MONITOR").await;
    user(r, "fix", "SELECT, INSERT, UPDATE, DELETE").await;
    let before = scalar(&primary, "SELECT @@gtid_binlog_pos").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Each mode with exactly its documented grants finds the divergence.
    for (users, snapshot, name) in [
        (("live", "live"), "", "live"),
        (("cons", "cons"), "consistent", "consistent"),
        (("fence", "fence"), "auto", "fence"),
    ] {
        let cfg = config(d, (p, r), users, snapshot, name);
        let out = syncgate(&["check", "-C", &cfg]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", describe(&out));
        let s = summary(&d.join(format!("out-{name}")));
        assert_eq!(counts(&s, "t"), (0, 0, 1), "{name}: {s:#}");
        assert_eq!(
            s["upstream"][0]["pinned"],
            !snapshot.is_empty(),
            "{name}: {s:#}"
        );
    }
    // The fence left replication running.
    let io = scalar(
        &replica,
        "SELECT 1 FROM information_schema.PROCESSLIST WHERE COMMAND = 'Slave_IO'",
    )
    .await;
    assert_eq!(io, "1", "the replica's IO thread runs again");

    // One grant less: the missing privilege is named.
    let cfg = config(d, (p, r), ("live", "fence"), "auto", "no-reload-up");
    refused_naming(&syncgate(&["check", "-C", &cfg]), "RELOAD");
    let cfg = config(d, (p, r), ("fence", "fence_no_rsa"), "auto", "no-rsa");
    refused_naming(&syncgate(&["check", "-C", &cfg]), "REPLICATION SLAVE ADMIN");
    let cfg = config(d, (p, r), ("live", "live"), "consistent", "no-reload");
    refused_naming(&syncgate(&["check", "-C", &cfg]), "RELOAD");

    // --apply-fix: the live mode's grants plus INSERT, UPDATE, DELETE downstream repair it.
    let cfg = config(d, (p, r), ("live", "fix"), "", "fix");
    let out = syncgate(&["check", "-C", &cfg, "--apply-fix"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let v = scalar(&replica, "SELECT v FROM app.t WHERE id = 5").await;
    assert_eq!(v, "v5");

    // No run wrote to the upstream.
    let after = scalar(&primary, "SELECT @@gtid_binlog_pos").await;
    assert_eq!(before, after, "the primary's binlog did not move");
}

/// `dr backup` on the primary, `dr restore` (with gate 1) on the secondary, then `dr
/// replicate`, `dr verify` (gate 2, the fence) and `dr archive`, each as users holding
/// exactly the grants README lists for the step; one grant less is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_backup_and_restore_run_with_their_documented_grants() {
    let flow = crate::dr_backup::Flow::new(2, 1_000, None).await;
    user(&flow.primary, "bk", BACKUP_GRANTS).await;
    user(&flow.primary, "repl", "REPLICATION SLAVE").await;
    exec(
        &flow.secondary,
        &format!(
            "CREATE USER 'rs'@'%' IDENTIFIED BY 'pw'; GRANT ALL ON sbtest.* TO 'rs'@'%'; \
             GRANT {RESTORE_GLOBAL_GRANTS} ON *.* TO 'rs'@'%'"
        ),
    )
    .await;
    let text = std::fs::read_to_string(&flow.config).unwrap();
    let mut users = ["bk", "rs"].into_iter();
    let text = text
        .split('\n')
        .map(|l| match l {
            "user = \"root\"" => format!("user = \"{}\"\npassword = \"pw\"", users.next().unwrap()),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let redo = flow.dir.path().join("redo");
    std::fs::create_dir_all(&redo).unwrap();
    let text = text.replace(
        "[dr]\n",
        &format!(
            "[dr]\nreplication-user = \"repl\"\nreplication-password = \"pw\"\n\
             redo-storage = \"local://{}\"\nflush-interval = 0.2\n",
            redo.display()
        ),
    );
    std::fs::write(&flow.config, &text).unwrap();

    let out = flow.run("backup", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = flow.run("restore", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("gate 1: equal"),
        "{}",
        describe(&out)
    );

    // Replication from the backup point, and gate 2 at a GTID fence.
    let out = flow.run("replicate", &[]);
    let text = describe(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("gate 2: equal"), "{text}");
    let out = flow.run("verify", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    // dr archive as a user holding only what README lists for it.
    user(&flow.primary, "arch", ARCHIVE_GRANTS).await;
    let arch_config = flow.dir.path().join("archive.toml");
    let text = std::fs::read_to_string(&flow.config).unwrap();
    std::fs::write(
        &arch_config,
        text.replacen("user = \"bk\"", "user = \"arch\"", 1),
    )
    .unwrap();
    let log = std::fs::File::create(flow.dir.path().join("archive.log")).unwrap();
    let archiver = std::process::Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args(["dr", "archive", "-L", "info", "-C"])
        .arg(&arch_config)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    exec(
        &flow.primary,
        "UPDATE sbtest.sbtest1 SET k = k + 1 WHERE id <= 10; \
         UPDATE sbtest.sbtest2 SET k = k + 1 WHERE id <= 10",
    )
    .await;
    let end = crate::dr_failover::settle_and_stop(&flow, archiver).await;
    let primary = crate::replica_fence::scalar(&flow.primary, "SELECT @@gtid_binlog_pos").await;
    assert_eq!(
        end.to_string(),
        primary,
        "the archive reached the primary's position"
    );

    // One grant less on the secondary: gate 2's fence names it.
    exec(
        &flow.secondary,
        "REVOKE REPLICATION SLAVE ADMIN ON *.* FROM 'rs'@'%'",
    )
    .await;
    refused_naming(&flow.run("verify", &[]), "REPLICATION SLAVE ADMIN");

    // One grant less on the primary: the backup names it.
    exec(&flow.primary, "REVOKE RELOAD ON *.* FROM 'bk'@'%'").await;
    let out = flow.run("backup", &["--again"]);
    refused_naming(&out, "RELOAD");
}

/// README "Privileges", `dr archive` (primary).
const ARCHIVE_GRANTS: &str = "REPLICATION SLAVE, BINLOG MONITOR";
/// README "Privileges", `dr backup` (primary).
const BACKUP_GRANTS: &str = "SELECT, SHOW VIEW, TRIGGER, EVENT, RELOAD, BINLOG MONITOR";
/// README "Privileges", `dr restore`, `dr replicate` and gate 2 (secondary), beyond all
/// privileges on the schemas.
const RESTORE_GLOBAL_GRANTS: &str = "RELOAD, BINLOG ADMIN, REPLICATION SLAVE ADMIN, SLAVE MONITOR";
