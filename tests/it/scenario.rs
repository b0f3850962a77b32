//! Fixture scenarios (`fixtures/<name>/{schema,seed,drift}.sql`, `expected.json`) loaded into
//! a database pair, plus helpers to run the `syncgate` binary against them.

use crate::support::TestDb;
use std::path::{Path, PathBuf};
use std::process::Output;

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
        let text = format!(
            r#"check-thread-count = 4
export-fix-sql = true

[data-sources.up]
host = "127.0.0.1"
port = {}
user = "root"
password = ""

[data-sources.down]
host = "127.0.0.1"
port = {}
user = "root"
password = ""

[task]
output-dir = "{}"
source-instances = ["up"]
target-instance = "down"
target-check-tables = ["{}.*"]
{extra}
"#,
            self.up.port(),
            self.down.port(),
            self.output_dir().display(),
            self.up.name(),
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
        let dir = self.output_dir().join("fix-on-down");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|it| it.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for f in &files {
            let sql = std::fs::read_to_string(f).expect("read fix sql");
            self.down.exec(&sql).await;
        }
        files.len()
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
