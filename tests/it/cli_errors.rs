//! Bad input gives one clear line on stderr and exit code 2, never a panic.

use crate::scenario::{describe, syncgate, Scenario};

/// Exit code 2, no panic, and an `error:` line mentioning every needle.
fn assert_clean_error(out: &std::process::Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", describe(out));
    assert!(!stderr.contains("panicked"), "{}", describe(out));
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one line on stderr: {}",
        describe(out)
    );
    assert!(lines[0].starts_with("error: "), "{}", describe(out));
    for n in needles {
        assert!(
            lines[0].contains(n),
            "stderr lacks {n:?}: {}",
            describe(out)
        );
    }
}

fn write(dir: &tempfile::TempDir, text: &str) -> String {
    let p = dir.path().join("c.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

const GOOD: &str = r#"
[data-sources.up]
host = "127.0.0.1"
port = PORT_UP

[data-sources.down]
host = "127.0.0.1"
port = PORT_DOWN
PASSWORD

[task]
output-dir = "OUT"
source-instances = ["up"]
target-instance = "down"
target-check-tables = ["TABLES"]
"#;

fn config(up: u16, down: u16, out: &str, tables: &str, password: &str) -> String {
    GOOD.replace("PORT_UP", &up.to_string())
        .replace("PORT_DOWN", &down.to_string())
        .replace("OUT", out)
        .replace("TABLES", tables)
        .replace("PASSWORD", password)
}

#[test]
fn unreadable_config() {
    let out = syncgate(&["check", "-C", "/nonexistent/syncgate.toml"]);
    assert_clean_error(&out, &["/nonexistent/syncgate.toml"]);
}

#[test]
fn unknown_key_names_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = config(1, 2, "/tmp/x", "a.*", "").replace("[task]", "[task]\nchunk-sizee = 5");
    let path = write(&dir, &text);
    let out = syncgate(&["check", "-C", &path]);
    let line = text
        .lines()
        .position(|l| l.starts_with("chunk-sizee"))
        .unwrap()
        + 1;
    assert_clean_error(&out, &["chunk-sizee", &format!(":{line}:")]);
}

#[test]
fn thread_count_bounds_and_huge_integers_read_as_one_rule() {
    let dir = tempfile::tempdir().unwrap();
    for (value, needle) in [
        ("-3", "expected an integer of at least 1, found -3"),
        ("0", "check-thread-count must be at least 1"),
        (
            "99999999999999999999999",
            "99999999999999999999999 is out of range (expected an integer of at least 1)",
        ),
    ] {
        let text = format!(
            "check-thread-count = {value}\n{}",
            config(1, 2, "/tmp/x", "a.*", "")
        );
        let out = syncgate(&["check", "-C", &write(&dir, &text)]);
        assert_clean_error(&out, &["check-thread-count", ":1:", needle]);
    }
}

#[test]
fn non_utf8_config_states_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, b"\xff\xfe not text\n").unwrap();
    let out = syncgate(&["check", "-C", path.to_str().unwrap()]);
    assert_clean_error(&out, &["cannot read config", "valid UTF-8"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("valid UTF-8").count(), 1, "{stderr}");
}

#[test]
fn wrong_type_names_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "check-thread-count = \"four\"\n{}",
        config(1, 2, "/tmp/x", "a.*", "")
    );
    let path = write(&dir, &text);
    let out = syncgate(&["check", "-C", &path]);
    assert_clean_error(&out, &["check-thread-count", ":1:"]);
}

#[test]
fn unreachable_host() {
    let dir = tempfile::tempdir().unwrap();
    let port = syncgate::local::free_port().unwrap();
    let out_dir = dir.path().join("out");
    let path = write(
        &dir,
        &config(port, port, out_dir.to_str().unwrap(), "a.*", ""),
    );
    let out = syncgate(&["check", "-C", &path]);
    assert_clean_error(&out, &["cannot connect", "'up'", &port.to_string()]);
}

#[tokio::test]
async fn wrong_password_and_missing_table() {
    let s = Scenario::load("basic_drift", false).await;
    let out_dir = s.output_dir();
    let out_dir = out_dir.to_str().unwrap();

    let path = write(
        &s.dir,
        &config(
            s.up.port(),
            s.down.port(),
            out_dir,
            "x.y",
            "password = \"wrong\"",
        ),
    );
    let out = syncgate(&["check", "-C", &path]);
    assert_clean_error(&out, &["cannot connect", "'down'", "Access denied"]);

    let missing = format!("{}.no_such_table", s.up.name());
    let path = write(
        &s.dir,
        &config(s.up.port(), s.down.port(), out_dir, &missing, ""),
    );
    let out = syncgate(&["check", "-C", &path]);
    assert_clean_error(&out, &["no_such_table", "does not exist"]);

    // Present upstream only: an error unless skip-non-existing-table.
    s.up.exec(
        "CREATE TABLE only_up (id INT PRIMARY KEY); INSERT INTO only_up VALUES (1), (2), (3)",
    )
    .await;
    let only_up = format!("{}.only_up", s.up.name());
    let path = write(
        &s.dir,
        &config(s.up.port(), s.down.port(), out_dir, &only_up, ""),
    );
    let out = syncgate(&["check", "-C", &path]);
    assert_clean_error(&out, &["only_up", "downstream"]);
    let out = syncgate(&["check", "-C", &path, "--skip-non-existing-table"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let summary = crate::scenario::summary(&s.output_dir());
    assert_eq!(summary["tables"][0]["result"], "skipped");
    // As sync-diff-inspector: the existing side's rows are counted, as missing downstream.
    assert_eq!(summary["tables"][0]["rows_upstream"], 3);
    assert_eq!(summary["tables"][0]["rows_missing"], 3);
    assert_eq!(summary["tables"][0]["rows_extra"], 0);

    // Present downstream only: its rows are extra.
    s.down
        .exec("CREATE TABLE only_down (id INT PRIMARY KEY); INSERT INTO only_down VALUES (7), (8)")
        .await;
    let only_down = format!("{}.only_down", s.down.name());
    let path = write(
        &s.dir,
        &config(s.up.port(), s.down.port(), out_dir, &only_down, ""),
    );
    let out = syncgate(&["check", "-C", &path, "--skip-non-existing-table"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let t = &crate::scenario::summary(&s.output_dir())["tables"][0];
    assert_eq!(t["result"], "skipped", "{t:#}");
    assert_eq!(
        (&t["rows_downstream"], &t["rows_extra"]),
        (&2.into(), &2.into()),
        "{t:#}"
    );
    assert_eq!(t["rows_missing"], 0);
}

/// A password read from the environment (`${env:NAME}`) or a file (`${file:PATH}`) connects;
/// a variable that is not set is one line naming the key and the variable, not an empty
/// password.
#[tokio::test]
async fn password_from_the_environment_or_a_file() {
    let s = Scenario::load("basic_drift", false).await;
    let user = format!("sg_{}", s.down.name());
    let secret = "pa$s w/rd+'\"";
    s.down
        .exec(&format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY 'pa$s w/rd+''\"'; \
             GRANT SELECT, SHOW VIEW, RELOAD, REPLICATION CLIENT ON *.* TO '{user}'@'%'"
        ))
        .await;
    let out_dir = s.output_dir();
    let out_dir = out_dir.to_str().unwrap();
    let tables = format!("{}.*", s.up.name());
    let var = format!("SG_TEST_PW_{}", std::process::id());
    let secret_file = s.dir.path().join("pw");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let with_password = |password: &str| {
        let text = config(
            s.up.port(),
            s.down.port(),
            out_dir,
            &tables,
            &format!("user = \"{user}\"\npassword = \"{password}\""),
        );
        write(&s.dir, &text)
    };
    let run = |path: &str, env: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_syncgate"));
        cmd.args(["check", "-C", path]).env_remove(&var);
        if let Some(v) = env {
            cmd.env(&var, v);
        }
        cmd.output().unwrap()
    };

    let from_env = with_password(&format!("${{env:{var}}}"));
    let out = run(&from_env, Some(secret));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = run(&from_env, Some("wrong"));
    assert_clean_error(&out, &["cannot connect", "Access denied"]);
    let out = run(&from_env, None);
    assert_clean_error(&out, &["password", &var, "is not set"]);

    let from_file = with_password(&format!("${{file:{}}}", secret_file.display()));
    let out = run(&from_file, None);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    for file in ["summary.json", "summary.txt", "syncgate.log"] {
        let text = std::fs::read_to_string(s.output_dir().join(file)).unwrap_or_default();
        assert!(!text.contains(secret), "{file} holds the secret");
    }
    std::fs::remove_file(&secret_file).unwrap();
    let out = run(&from_file, None);
    assert_clean_error(&out, &["password", "cannot read secret file"]);
}

/// Least privilege: a SELECT-only user checks in live mode; the modes that need more say
/// which privilege is missing, in one line, and nothing is written to a source.
#[tokio::test]
async fn a_select_only_user_checks_live_and_is_told_what_else_needs() {
    let s = Scenario::load("basic_drift", true).await;
    let user = format!("ro_{}", s.down.name());
    for db in [&s.up, &s.down] {
        db.exec(&format!(
            "CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY 'ro'; \
             GRANT SELECT ON *.* TO '{user}'@'%'"
        ))
        .await;
    }
    let out_dir = s.output_dir();
    let out_dir = out_dir.to_str().unwrap();
    let tables = format!("{}.*", s.up.name());
    let cfg = |snapshot: &str| {
        let text = config(s.up.port(), s.down.port(), out_dir, &tables, "").replace(
            "[data-sources.down]",
            &format!("user = \"{user}\"\npassword = \"ro\"\n{snapshot}\n[data-sources.down]"),
        );
        let text = text.replacen(
            "[task]",
            &format!("user = \"{user}\"\npassword = \"ro\"\n{snapshot}\n\n[task]"),
            1,
        );
        write(&s.dir, &text)
    };
    let live = cfg("");
    let out = syncgate(&["check", "-C", &live]);
    assert_eq!(out.status.code(), Some(1), "live works: {}", describe(&out));

    let consistent = cfg("snapshot = \"consistent\"");
    let fresh = s.dir.path().join("out-consistent");
    let out = syncgate(&[
        "check",
        "-C",
        &consistent,
        "--output-dir",
        fresh.to_str().unwrap(),
    ]);
    // (Also a warning that the user cannot tell whether the downstream is a replica.)
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("RELOAD privilege"), "{stderr}");

    // (The same file, rewritten live.)
    let live = cfg("");
    let out = syncgate(&["check", "-C", &live, "--apply-fix"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let text = describe(&out);
    assert!(text.contains("command denied to user"), "{text}");
    // Nothing was written: the drift is still all there.
    let out = syncgate(&["check", "-C", &live]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
}
