//! Loader, error-message and validation tests on whole configuration texts.

use std::path::{Path, PathBuf};

use super::*;

/// The config from the seed document (TiDB guide, "Check data").
const SEED: &str = r#"# Diff Configuration.
######################### Global config #########################
check-thread-count = 4
export-fix-sql = true
check-struct-only = false

######################### Datasource config #########################
[data-sources]
[data-sources.upstream]
        host = "172.16.6.123" # Replace it with the IP address of your upstream cluster
        port = 4000
        user = "root"
        password = ""
        snapshot = "431434047157698561" # Set snapshot to the actual backup time
[data-sources.downstream]
        host = "172.16.6.124" # Replace the value with the IP address of your downstream cluster
        port = 4000
        user = "root"
        password = ""
        snapshot = "431434141450371074" # Set snapshot to the actual restore time

######################### Task config #########################
[task]
        output-dir = "./output"
        source-instances = ["upstream"]
        target-instance = "downstream"
        target-check-tables = ["*.*"]
"#;

/// A small valid config that tests extend with extra text.
const BASE: &str = r#"
[data-sources.up]
port = 3307

[data-sources.down]
port = 3308

[task]
source-instances = ["up"]
target-instance = "down"
target-check-tables = ["*.*"]
"#;

fn load(text: &str) -> Result<Config> {
    Config::from_toml_str(text, "config.toml")
}

fn load_err(text: &str) -> String {
    let err = load(text).expect_err("config should be rejected");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let message = err.to_string();
    assert!(!message.contains('\n'), "not one line: {message}");
    message
}

/// BASE with `global` prepended and `extra` appended.
fn with(global: &str, extra: &str) -> String {
    format!("{global}\n{BASE}\n{extra}")
}

#[test]
fn seed_config_parses_with_its_values() {
    let c = load(SEED).unwrap();
    assert_eq!(c.check_thread_count, 4);
    assert!(c.export_fix_sql);
    assert!(!c.check_struct_only);
    assert!(!c.check_data_only);
    assert!(!c.skip_non_existing_table);
    assert_eq!(c.splitter_strategy, SplitterStrategy::Auto);
    assert_eq!(c.data_sources.len(), 2);
    let up = &c.data_sources["upstream"];
    assert_eq!(up.host, "172.16.6.123");
    assert_eq!(up.port, 4000);
    assert_eq!(up.user, "root");
    assert_eq!(up.password, "");
    assert_eq!(up.snapshot, "431434047157698561");
    assert!(up.route_rules.is_empty() && up.session.is_empty() && up.security.is_none());
    let down = c.target().unwrap();
    assert_eq!(down.host, "172.16.6.124");
    assert_eq!(down.snapshot, "431434141450371074");
    assert_eq!(c.task.output_dir, PathBuf::from("./output"));
    assert_eq!(c.task.source_instances, ["upstream"]);
    assert_eq!(c.task.target_instance, "downstream");
    assert_eq!(c.task.target_check_tables, ["*.*"]);
    assert!(c.task.target_configs.is_empty());
    assert_eq!(c.task.syncpoint_changefeed, None);
    let sources = c.sources().unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0].0, "upstream");
    assert!(c.check_filter().unwrap().matches("app", "t"));
}

#[test]
fn defaults_apply() {
    let c = load(BASE).unwrap();
    assert_eq!(c.check_thread_count, 4);
    assert!(c.export_fix_sql);
    let up = &c.data_sources["up"];
    assert_eq!(up.host, "127.0.0.1");
    assert_eq!(up.user, "root");
    assert_eq!(up.password, "");
    assert_eq!(up.snapshot, "");
    assert_eq!(up.sql_mode, None);
    assert_eq!(c.task.output_dir, PathBuf::from("./output"));
    // `DataSource::default()` agrees with the serde defaults.
    let defaulted = load("[data-sources.x]\n[data-sources.y]\n[task]\nsource-instances=['x']\ntarget-instance='y'\ntarget-check-tables=['a.b']\n").unwrap();
    assert_eq!(defaulted.data_sources["x"], DataSource::default());
}

#[test]
fn every_key_parses() {
    let text = with(
        r#"
check-thread-count = 8
export-fix-sql = false
check-struct-only = true
skip-non-existing-table = true
splitter-strategy = "limit"
"#,
        r#"
[data-sources.up.session]
max_execution_time = 1000
tidb_opt_prefer_range_scan = true
ratio = 0.5
time_zone = "+00:00"

[data-sources.up.security]
ca-path = "/ca.pem"
cert-bytes = "CERT"
key-bytes = "KEY"

[routes.r1]
schema-pattern = "shard_*"
table-pattern = "t_?"
target-schema = "merged"
target-table = "t"

[table-configs.c1]
target-tables = ["merged.t"]
range = "id > 10"
index-fields = ["id"]
ignore-columns = ["ts", "note"]
chunk-size = 1000
collation = "utf8mb4_bin"
"#,
    )
    .replace(
        "port = 3307",
        "port = 3307\nsql-mode = \"ANSI_QUOTES\"\nsql-hint-use-index = \"auto\"\nroute-rules = [\"r1\"]\npassword = \"pw\"",
    )
    .replace(
        "target-check-tables = [\"*.*\"]",
        "target-check-tables = [\"*.*\"]\ntarget-configs = [\"c1\"]\noutput-dir = \"/tmp/out\"",
    );
    let c = load(&text).unwrap();
    assert_eq!(c.check_thread_count, 8);
    assert!(!c.export_fix_sql && c.check_struct_only && c.skip_non_existing_table);
    assert_eq!(c.splitter_strategy, SplitterStrategy::Limit);
    let up = &c.data_sources["up"];
    assert_eq!(up.password, "pw");
    assert_eq!(up.sql_mode.as_deref(), Some("ANSI_QUOTES"));
    assert_eq!(up.sql_hint_use_index.as_deref(), Some("auto"));
    assert_eq!(up.route_rules, ["r1"]);
    assert_eq!(
        up.session["max_execution_time"],
        SessionValue::Integer(1000)
    );
    assert_eq!(
        up.session["tidb_opt_prefer_range_scan"],
        SessionValue::Bool(true)
    );
    assert_eq!(up.session["ratio"], SessionValue::Float(0.5));
    assert_eq!(up.session["time_zone"].to_sql_literal(), "'+00:00'");
    let sec = up.security.as_ref().unwrap();
    assert_eq!(sec.ca_path.as_deref(), Some("/ca.pem"));
    assert_eq!(sec.cert_bytes.as_deref(), Some("CERT"));
    assert_eq!(sec.key_bytes.as_deref(), Some("KEY"));
    let route = &c.routes["r1"];
    assert_eq!(route.table_pattern.as_deref(), Some("t_?"));
    assert_eq!(route.target_table.as_deref(), Some("t"));
    let tc = &c.table_configs["c1"];
    assert_eq!(tc.range.as_deref(), Some("id > 10"));
    assert_eq!(tc.index_fields, ["id"]);
    assert_eq!(tc.ignore_columns, ["ts", "note"]);
    assert_eq!(tc.chunk_size, Some(1000));
    assert_eq!(tc.collation.as_deref(), Some("utf8mb4_bin"));
    assert_eq!(c.task.output_dir, PathBuf::from("/tmp/out"));
    assert_eq!(
        c.route_rules("up").unwrap().route("shard_1", "t_1"),
        ("merged".to_string(), "t".to_string())
    );
    assert!(c.route_rules("down").unwrap().is_empty());

    // The password is in the model but never in Debug output.
    assert!(!format!("{c:?}").contains("\"pw\""));
    // Serializing (for fingerprints) works and redacts too.
    let json = serde_json::to_string(&c).unwrap();
    assert!(!json.contains("\"pw\"") && json.contains(REDACTED));
}

#[test]
fn unknown_key_is_one_line_with_position() {
    let text = with(
        "",
        "[table-configs.c1]\ntarget-tables = [\"a.b\"]\n    chunk-sizee = 10\n",
    );
    let line = text
        .lines()
        .position(|l| l.contains("chunk-sizee"))
        .unwrap()
        + 1;
    let err = load_err(&text);
    assert!(
        err.starts_with(&format!(
            "config.toml:{line}:5: unknown key 'chunk-sizee' in [table-configs.c1] (expected one of 'target-tables', "
        )),
        "{err}"
    );
    assert!(err.contains("did you mean 'chunk-size'?"), "{err}");

    let err = load_err(&format!("check-thread-countt = 3\n{BASE}"));
    assert!(
        err.starts_with("config.toml:1:1: unknown key 'check-thread-countt' (expected one of "),
        "{err}"
    );

    let err = load_err(&format!("use-checksum = true\n{BASE}"));
    assert!(err.contains("v1 key"), "{err}");

    let err = load_err(&BASE.replace("port = 3307", "port = 3307\nportt = 1"));
    assert!(
        err.starts_with("config.toml:4:1: unknown key 'portt' in [data-sources.up]"),
        "{err}"
    );
}

#[test]
fn wrong_type_is_one_line_with_position() {
    let err = load_err(&format!("\n\ncheck-thread-count = \"4\"\n{BASE}"));
    assert_eq!(
        err,
        "config.toml:3:22: invalid type for 'check-thread-count': expected an integer, found a string"
    );

    let err = load_err(&BASE.replace("port = 3307", "port = \"3307\""));
    assert_eq!(
        err,
        "config.toml:3:8: invalid type for 'port' in [data-sources.up]: expected an integer, found a string"
    );

    let err = load_err(&BASE.replace("port = 3307", "port = 70000"));
    assert_eq!(
        err,
        "config.toml:3:8: invalid value for 'port' in [data-sources.up]: expected an integer between 0 and 65535, found 70000"
    );

    let err = load_err(&format!("check-thread-count = -1\n{BASE}"));
    assert!(
        // At least 1, as validation says of 0 (it said "at least 0" here before).
        err.starts_with("config.toml:1:22: invalid value for 'check-thread-count': expected an integer of at least 1, found -1"),
        "{err}"
    );

    let err = load_err(&format!("export-fix-sql = \"yes\"\n{BASE}"));
    assert_eq!(
        err,
        "config.toml:1:18: invalid type for 'export-fix-sql': expected a boolean, found a string"
    );

    let err = load_err(&BASE.replace("[\"up\"]", "\"up\""));
    assert!(
        err.contains(
            "invalid type for 'source-instances' in [task]: expected an array, found a string"
        ),
        "{err}"
    );

    // An element of the wrong type in a multi-line array points at the element.
    let err = load_err(&BASE.replace("[\"*.*\"]", "[\n  \"a.*\",\n  5,\n]"));
    assert!(
        err.contains(":13:3: invalid type for 'target-check-tables' in [task]: expected a string, found an integer"),
        "{err}"
    );

    let err = load_err(&format!("splitter-strategy = \"fast\"\n{BASE}"));
    assert_eq!(
        err,
        "config.toml:1:21: invalid value for 'splitter-strategy': expected one of 'auto', 'random', 'limit', found 'fast'"
    );
    let err = load_err(&format!("splitter-strategy = 1\n{BASE}"));
    assert!(
        err.contains("invalid type for 'splitter-strategy': expected a string, found an integer"),
        "{err}"
    );

    let err = load_err(&format!("{BASE}\n[data-sources.up.session]\nx = [1]\n"));
    assert!(
        err.contains("invalid type for 'x' in [data-sources.up.session]: expected a string, integer, float or boolean, found an array"),
        "{err}"
    );

    let err = load_err(
        "data-sources = 5\n[task]\nsource-instances=['a']\ntarget-instance='b'\ntarget-check-tables=['*.*']\n",
    );
    assert!(
        err.starts_with(
            "config.toml:1:16: invalid type for 'data-sources': expected a table, found an integer"
        ),
        "{err}"
    );
}

#[test]
fn missing_keys_and_syntax_errors() {
    let err = load_err("check-thread-count = 4\n");
    assert_eq!(err, "config.toml: missing [task] table");

    let err = load_err(&BASE.replace("target-instance = \"down\"\n", ""));
    assert!(
        err.contains(": missing key 'target-instance' in [task]"),
        "{err}"
    );

    let err = load_err(&format!("{BASE}\n[routes.r]\nschema-pattern = 'a'\n"));
    assert!(
        err.contains("missing key 'target-schema' in [routes.r]"),
        "{err}"
    );

    let err = load_err("a = = 1\n");
    assert!(err.starts_with("config.toml:1:5: invalid TOML: "), "{err}");
    let err = load_err("[task\n");
    assert!(err.starts_with("config.toml:1:"), "{err}");
    let err = load_err(&format!("{BASE}\ncheck-thread-count = 1\n[task]\n"));
    assert!(err.contains("invalid TOML: duplicate key 'task'"), "{err}");
}

#[test]
fn validation_errors_name_key_and_line() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "check-thread-count = 0",
            "",
            "check-thread-count must be at least 1",
        ),
        (
            "check-struct-only = true\ncheck-data-only = true",
            "",
            "check-struct-only and check-data-only cannot both be true",
        ),
        (
            "dm-addr = 'http://127.0.0.1:8261'",
            "",
            "dm-addr is not supported",
        ),
        ("dm-task = 'task'", "", "dm-task is not supported"),
        (
            "",
            "[routes.r]\nschema-pattern = 'a.b'\ntarget-schema = 'x'",
            "[routes.r] schema-pattern: invalid pattern 'a.b'",
        ),
        (
            "",
            "[table-configs.c]\ntarget-tables = ['nodot']",
            "[table-configs.c] target-tables: invalid table pattern 'nodot': missing '.'",
        ),
        (
            "",
            "[table-configs.c]\ntarget-tables = []",
            "[table-configs.c] target-tables must list at least one table pattern",
        ),
    ];
    for (global, extra, expected) in cases {
        let err = load_err(&with(global, extra));
        assert!(err.contains(expected), "{expected}: {err}");
        assert!(err.starts_with("config.toml:"), "{err}");
    }

    let err = load_err(&BASE.replace(
        "source-instances = [\"up\"]",
        "source-instances = [\"up\", \"nope\"]",
    ));
    assert_eq!(
        err,
        "config.toml:9:27: [task] source-instances: 'nope' is not defined in [data-sources]"
    );
    let err = load_err(&BASE.replace("source-instances = [\"up\"]", "source-instances = []"));
    assert!(
        err.contains("source-instances must list at least one data source"),
        "{err}"
    );
    let err = load_err(&BASE.replace(
        "source-instances = [\"up\"]",
        "source-instances = [\"up\", \"up\"]",
    ));
    assert!(err.contains("'up' is listed twice"), "{err}");

    let err = load_err(&BASE.replace("target-instance = \"down\"", "target-instance = \"dwn\""));
    assert_eq!(
        err,
        "config.toml:10:19: [task] target-instance: 'dwn' is not defined in [data-sources]"
    );
    let err = load_err(&BASE.replace("target-instance = \"down\"", "target-instance = \"up\""));
    assert!(
        err.contains("target-instance 'up' is also listed in source-instances"),
        "{err}"
    );

    let err = load_err(&BASE.replace("[\"*.*\"]", "[]"));
    assert!(
        err.contains("target-check-tables must list at least one table pattern"),
        "{err}"
    );
    let err = load_err(&BASE.replace("[\"*.*\"]", "[\"\", \"# only a comment\"]"));
    assert!(
        err.contains("target-check-tables has only blank or comment entries"),
        "{err}"
    );
    let err = load_err(&BASE.replace("[\"*.*\"]", "[\"*.*\", \"db.t[\"]"));
    assert!(
        err.contains("[task] target-check-tables: invalid table pattern 'db.t['"),
        "{err}"
    );

    let err = load_err(&format!("{BASE}target-configs = [\"missing\"]\n"));
    assert!(
        err.contains("[task] target-configs: 'missing' is not defined in [table-configs]"),
        "{err}"
    );

    let err = load_err(&BASE.replace("port = 3307", "port = 3307\nroute-rules = [\"r9\"]"));
    assert_eq!(
        err,
        "config.toml:4:16: [data-sources.up] route-rules: 'r9' is not defined in [routes]"
    );

    let err = load_err(&BASE.replace("port = 3307", "port = 0"));
    assert!(
        err.contains("[data-sources.up] port must not be 0"),
        "{err}"
    );
    let err = load_err(&BASE.replace("port = 3307", "port = 3307\nsnapshot = \"atuo\""));
    assert!(
        err.contains("[data-sources.up] snapshot 'atuo' is not valid"),
        "{err}"
    );
    let err = load_err(&BASE.replace("port = 3307", "port = 3307\nsql-hint-use-index = \"yes\""));
    assert!(
        err.contains("sql-hint-use-index 'yes' is not valid"),
        "{err}"
    );
    let err = load_err(&format!(
        "{BASE}\n[data-sources.up.security]\ncert-path = 'c.pem'\n"
    ));
    assert!(
        err.contains("[data-sources.up.security] a client certificate needs"),
        "{err}"
    );
    let err = load_err(&format!(
        "{BASE}\n[data-sources.up.security]\nca-path = 'a'\nca-bytes = 'b'\n"
    ));
    assert!(
        err.contains("set either ca-path or ca-bytes, not both"),
        "{err}"
    );

    let err = load_err(&format!(
        "{BASE}\n[data-sources.up.session]\n\"x; DROP\" = 1\n"
    ));
    assert!(
        err.contains(":14:13: [data-sources.up.session] 'x; DROP' is not a valid variable name"),
        "{err}"
    );

    // `validate` alone gives the same message without a position.
    let mut c = load(BASE).unwrap();
    c.check_thread_count = 0;
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "check-thread-count must be at least 1"
    );
}

#[test]
fn auto_snapshot_and_syncpoint_changefeed() {
    let auto_both = BASE
        .replace("port = 3307", "port = 3307\nsnapshot = \"auto\"")
        .replace("port = 3308", "port = 3308\nsnapshot = \"auto\"");
    load(&auto_both).unwrap();
    let with_cf = format!("{auto_both}syncpoint-changefeed = \"default/cf1\"\n");
    let c = load(&with_cf).unwrap();
    assert_eq!(c.task.syncpoint_changefeed.as_deref(), Some("default/cf1"));

    let err = load_err(&format!("{BASE}syncpoint-changefeed = \"default/cf1\"\n"));
    assert!(
        err.contains("[task] syncpoint-changefeed 'default/cf1' needs snapshot = \"auto\""),
        "{err}"
    );

    let source_only = BASE.replace("port = 3307", "port = 3307\nsnapshot = \"auto\"");
    let err = load_err(&source_only);
    assert!(
        err.contains("requires snapshot = \"auto\" on the target 'down'"),
        "{err}"
    );

    let target_only = BASE.replace("port = 3308", "port = 3308\nsnapshot = \"auto\"");
    let err = load_err(&target_only);
    assert!(
        err.contains("requires exactly one source instance"),
        "{err}"
    );
}

fn config_with_table_configs() -> Config {
    load(&format!(
        r#"{BASE}target-configs = ["orders", "logs", "all-shop"]

[table-configs.orders]
target-tables = ["shop.orders"]
chunk-size = 100

[table-configs.logs]
target-tables = ["*.log_*", "!archive.*"]

[table-configs.all-shop]
target-tables = ["shop.*", "!shop.orders"]

[table-configs.unused]
target-tables = ["*.*"]
"#
    ))
    .unwrap()
}

#[test]
fn table_config_lookup() {
    let c = config_with_table_configs();
    let orders = c.table_config_for("shop", "orders").unwrap().unwrap();
    assert_eq!(orders.chunk_size, Some(100));
    assert_eq!(
        c.table_config_for("SHOP", "Orders")
            .unwrap()
            .unwrap()
            .chunk_size,
        Some(100)
    );
    assert!(c.table_config_for("app", "log_2024").unwrap().is_some());
    assert!(c.table_config_for("archive", "log_2024").unwrap().is_none());
    assert!(c.table_config_for("app", "users").unwrap().is_none());
    // `unused` matches everything but is not listed in target-configs.
    assert!(c.table_config_for("other", "x").unwrap().is_none());
}

#[test]
fn table_config_ambiguity_names_both() {
    let c = config_with_table_configs();
    let err = c.table_config_for("shop", "log_1").unwrap_err();
    assert!(matches!(err, Error::Config(_)));
    let message = err.to_string();
    assert_eq!(
        message,
        "table `shop`.`log_1` matches both [table-configs.logs] and [table-configs.all-shop]; a table may match only one table config"
    );
}

#[test]
fn unreadable_file_is_config_read() {
    let missing = Path::new("/definitely/not/here/syncgate.toml");
    match Config::from_file(missing) {
        Err(Error::ConfigRead { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected ConfigRead, got {other:?}"),
    }
}

#[test]
fn from_file_uses_the_path_in_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, format!("check-thread-count = \"x\"\n{BASE}")).unwrap();
    let err = Config::from_file(&path).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}:1:22: invalid type", path.display())),
        "{err}"
    );
}

/// Every example under configs/ loads and validates (except the generated playground one).
#[test]
fn example_configs_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut loaded = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.extension().is_none_or(|e| e != "toml") || name == "playground.toml" {
            continue;
        }
        if let Err(e) = Config::from_file(&path) {
            panic!("{e}");
        }
        loaded.push(name);
    }
    loaded.sort();
    for expected in [
        "dr-example.toml",
        "full-reference.toml",
        "mariadb-pair.toml",
        "sync-diff-example.toml",
    ] {
        assert!(
            loaded.iter().any(|n| n == expected),
            "{expected} not found in {loaded:?}"
        );
    }

    // The verbatim seed example carries the seed's values.
    let example = Config::from_file(&dir.join("sync-diff-example.toml")).unwrap();
    assert_eq!(example, load(SEED).unwrap());

    let pair = Config::from_file(&dir.join("mariadb-pair.toml")).unwrap();
    assert_eq!(pair.data_sources["up"].port, 3307);
    assert_eq!(pair.data_sources["down"].port, 3308);
    let tc = pair.table_config_for("shop", "orders").unwrap().unwrap();
    assert!(tc.range.is_some() && !tc.ignore_columns.is_empty() && tc.chunk_size > Some(0));
}

/// Secrets from the environment or a file: replaced on load, redacted like any other, the
/// fingerprint unchanged when only their value changes; a missing one names its key.
#[test]
fn secrets_from_the_environment_or_a_file() {
    let var = format!("SG_CONFIG_TEST_{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.pem");
    std::fs::write(&key_file, "-----BEGIN PRIVATE KEY-----\nAAAA\n").unwrap();
    let text = with(
        "",
        &format!(
            "[dr]\nprimary = \"up\"\nsecondary = \"down\"\n\
             backup-storage = \"s3://b/p?access-key=AK&secret-access-key=${{env:{var}}}\"\n\
             replication-password = \"${{env:{var}}}\"\n"
        ),
    )
    .replacen(
        "port = 3307",
        &format!(
            "port = 3307\npassword = \"${{env:{var}}}\"\n\
             [data-sources.up.security]\ncert-path = \"/c.pem\"\n\
             key-bytes = \"${{file:{}}}\"",
            key_file.display()
        ),
        1,
    );
    // The variable's name is unique to this test, so setting it races with nothing.
    std::env::set_var(&var, "s3cr+t/1");
    let c = Config::from_toml_str(&text, "c.toml").unwrap();
    assert_eq!(c.data_sources["up"].password, "s3cr+t/1");
    let key = c.data_sources["up"].security.as_ref().unwrap();
    assert_eq!(
        key.key_bytes.as_deref(),
        Some("-----BEGIN PRIVATE KEY-----\nAAAA")
    );
    let dr = c.dr.as_ref().unwrap();
    assert!(dr
        .backup_storage
        .ends_with("secret-access-key=s3cr%2Bt%2F1"));
    assert_eq!(dr.replication_password.as_deref(), Some("s3cr+t/1"));
    assert!(!format!("{c:?}").contains("s3cr"));
    let fp = |c: &Config| {
        crate::checkpoint::fingerprint(c, &Default::default())
            .unwrap()
            .hash
    };
    let before = fp(&c);
    std::env::set_var(&var, "another");
    let c2 = Config::from_toml_str(&text, "c.toml").unwrap();
    assert_eq!(c2.data_sources["up"].password, "another");
    assert_eq!(fp(&c2), before, "only a secret's value changed");

    std::env::remove_var(&var);
    let err = Config::from_toml_str(&text, "c.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("environment variable {var} is not set")),
        "{err}"
    );
    let line = text
        .lines()
        .position(|l| l.starts_with("password"))
        .unwrap()
        + 1;
    assert!(err.starts_with(&format!("c.toml:{line}:")), "{err}");
}

/// The example configs shipped in `configs/`.
const EXAMPLES: [(&str, &str); 3] = [
    (
        "full-reference.toml",
        include_str!("../../configs/full-reference.toml"),
    ),
    (
        "mariadb-pair.toml",
        include_str!("../../configs/mariadb-pair.toml"),
    ),
    (
        "sync-diff-example.toml",
        include_str!("../../configs/sync-diff-example.toml"),
    ),
];

/// `(line index, key, value)` of every `key = value` line outside `.session` tables (whose
/// keys are server variables of any type, so no mutation there is an error).
fn mutable_lines(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut in_session = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            in_session = t.ends_with(".session]");
            continue;
        }
        if in_session || t.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = t.split_once('=') {
            let v = v.split(" #").next().unwrap_or(v).trim();
            out.push((i, k.trim().to_string(), v.to_string()));
        }
    }
    out
}

/// A value of another type than `value`'s.
fn swapped_type(value: &str) -> &'static str {
    match value.chars().next() {
        Some('"') => "12345",
        Some('[') => "7",
        Some('t' | 'f') => "\"yes\"",
        _ => "\"text\"",
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// Random mutations of the example configs (a key misspelt, a value of another type, an
    /// integer out of range) never panic and are always one `Error::Config` line (exit 2)
    /// that names the key.
    #[test]
    fn mutated_example_configs_are_one_line_naming_the_key(
        example in 0..EXAMPLES.len(),
        pick in proptest::prelude::any::<proptest::sample::Index>(),
        kind in 0..3u8,
        huge in proptest::prelude::any::<bool>(),
    ) {
        let (name, text) = EXAMPLES[example];
        let lines = mutable_lines(text);
        let (at, key, value) = &lines[pick.index(lines.len())];
        let integer = value.chars().next().is_some_and(|c| c.is_ascii_digit() || c == '-');
        let (new_line, needle) = match kind {
            0 => (format!("{key}x = {value}"), format!("{key}x")),
            2 if integer => {
                let v = if huge { "99999999999999999999999" } else { "-5" };
                (format!("{key} = {v}"), key.clone())
            }
            _ => (format!("{key} = {}", swapped_type(value)), key.clone()),
        };
        let mutated: String = text
            .lines()
            .enumerate()
            .map(|(i, l)| if i == *at { new_line.clone() } else { l.to_string() })
            .collect::<Vec<_>>()
            .join("\n");
        let result = std::panic::catch_unwind(|| Config::from_toml_str(&mutated, name));
        proptest::prop_assert!(result.is_ok(), "panicked on {new_line:?} in {name}");
        let err = match result.unwrap() {
            Ok(_) => return Err(proptest::test_runner::TestCaseError::fail(format!(
                "{new_line:?} in {name} was accepted"
            ))),
            Err(e) => e,
        };
        proptest::prop_assert!(matches!(err, Error::Config(_)), "{err:?}");
        proptest::prop_assert_eq!(err.exit_code(), 2);
        let message = err.to_string();
        proptest::prop_assert!(!message.contains('\n'), "not one line: {message}");
        proptest::prop_assert!(
            message.contains(&needle),
            "{new_line:?} in {name}: {message:?} does not name {needle:?}"
        );
    }
}

/// `[""]` is sync-diff-inspector's "not set" for `index-fields` and `ignore-columns`; an
/// empty name among real ones is still refused, naming the list.
#[test]
fn a_list_of_one_empty_name_is_unset() {
    let text = with(
        "",
        "target-configs = [\"t\"]\n[table-configs.t]\ntarget-tables = [\"a.b\"]\n\
         index-fields = [\"\"]\nignore-columns = [\"\"]\n",
    );
    let c = load(&text).unwrap();
    let t = &c.table_configs["t"];
    assert!(
        t.index_fields.is_empty() && t.ignore_columns.is_empty(),
        "{t:?}"
    );

    let bad = text.replace("ignore-columns = [\"\"]", "ignore-columns = [\"x\", \"\"]");
    let err = load_err(&bad);
    assert!(err.contains("ignore-columns: empty column name"), "{err}");
}
