//! Fixture scenarios (`fixtures/<name>/{schema,seed,drift}.sql`, `expected.json`) loaded into
//! a database pair, plus helpers to run the `syncgate` binary against them.

use crate::support::TestDb;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Config text comparing database `db` on two local servers, data sources `up` and `down`;
/// `extra` (TOML) goes at the end of `[task]`, so it may set `target-configs` and add tables.
pub fn pair_config(
    up_port: u16,
    down_port: u16,
    db: &str,
    out: &Path,
    threads: usize,
    extra: &str,
) -> String {
    format!(
        r#"check-thread-count = {threads}
export-fix-sql = true

[data-sources.up]
host = "127.0.0.1"
port = {up_port}
user = "root"
password = ""

[data-sources.down]
host = "127.0.0.1"
port = {down_port}
user = "root"
password = ""

[task]
output-dir = "{}"
source-instances = ["up"]
target-instance = "down"
target-check-tables = ["{db}.*"]
{extra}
"#,
        out.display(),
    )
}

/// Run a check in process (no binary), panicking on configuration or run errors.
pub async fn run_in_process(config_text: &str) -> syncgate::report::RunReport {
    let config = syncgate::config::Config::from_toml_str(config_text, "test.toml")
        .unwrap_or_else(|e| panic!("config: {e}\n{config_text}"));
    let job =
        syncgate::job::job_from_config(&config, &syncgate::job::Overrides::default()).expect("job");
    syncgate::check::run_check(job, syncgate::report::progress::Progress::hidden())
        .await
        .unwrap_or_else(|e| panic!("run_check: {e}"))
}

/// Execute every fix SQL file of `out/fix-on-down` on `down`, in name order, as a user piping
/// them into the client would; their paths and texts.
pub async fn apply_fix_dir(down: &TestDb, out: &Path) -> Vec<(PathBuf, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(out.join("fix-on-down"))
        .map(|it| it.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    let mut applied = Vec::new();
    for f in files {
        let sql = std::fs::read_to_string(&f).expect("read fix sql");
        down.exec(&sql).await;
        applied.push((f, sql));
    }
    applied
}

/// Text of `fixtures/<scenario>/<file>`.
pub fn fixture(scenario: &str, file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(scenario)
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// An upstream/downstream database pair holding a scenario.
pub struct Scenario {
    pub up: TestDb,
    pub down: TestDb,
    pub dir: tempfile::TempDir,
}

impl Scenario {
    /// Load `schema.sql` and `seed.sql` on both sides, and `drift.sql` downstream if asked.
    pub async fn load(name: &str, drift: bool) -> Scenario {
        let (up, down) = TestDb::pair().await;
        for db in [&up, &down] {
            db.exec(&fixture(name, "schema.sql")).await;
            db.exec(&fixture(name, "seed.sql")).await;
        }
        if drift {
            down.exec(&fixture(name, "drift.sql")).await;
        }
        Scenario {
            up,
            down,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// An empty database pair; the test creates its own tables.
    pub async fn empty() -> Scenario {
        let (up, down) = TestDb::pair().await;
        Scenario {
            up,
            down,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn output_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Write a config comparing the pair's databases; `extra` is appended (TOML).
    pub fn config(&self, extra: &str) -> PathBuf {
        let text = pair_config(
            self.up.port(),
            self.down.port(),
            self.up.name(),
            &self.output_dir(),
            4,
            extra,
        );
        let path = self.dir.path().join("config.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// The parsed `summary.json` of the last run.
    pub fn summary(&self) -> serde_json::Value {
        summary(&self.output_dir())
    }

    /// Execute every fix SQL file on the downstream, as a user piping it into the client would.
    pub async fn apply_fix_files(&self) -> usize {
        apply_fix_dir(&self.down, &self.output_dir()).await.len()
    }
}

/// Run the `syncgate` binary.
pub fn syncgate(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run syncgate")
}

/// Exit code, stdout and stderr of a run, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn summary(dir: &Path) -> serde_json::Value {
    let path = dir.join("summary.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("summary.json parses")
}

/// `(missing, extra, changed)` of table `name` in a summary.
pub fn counts(summary: &serde_json::Value, name: &str) -> (u64, u64, u64) {
    let t = summary["tables"]
        .as_array()
        .expect("tables array")
        .iter()
        .find(|t| t["table"] == name)
        .unwrap_or_else(|| panic!("table {name} not in summary: {summary:#}"));
    (
        t["rows_missing"].as_u64().unwrap(),
        t["rows_extra"].as_u64().unwrap(),
        t["rows_changed"].as_u64().unwrap(),
    )
}
