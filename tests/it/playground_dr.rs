//! `playground up` with its local S3 server and the generated DR config, end to end: the
//! README's DR commands run on the config as written (backup while `playground load`
//! writes, restore with `--overwrite`, gate 1 equal, status), `playground status` shows the
//! S3 server and `playground down` stops it; `--no-s3` keeps backups in the playground dir;
//! a fixed S3 port that is taken is refused before anything starts.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use syncgate::config::Config;
use syncgate::local::{self, DetachedS3, S3Credentials};
use syncgate::playground::{self, PlaygroundOptions, S3Options};

use crate::harness_smoke::{playground_options, PlaygroundGuard};
use crate::scenario::describe;
use crate::signals::{finish, send};
use crate::support;

/// `syncgate args…` run in `cwd` (the DR config's `./dr-output` lands there).
fn run_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .output()
        .expect("run syncgate")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// A playground in `tmp/pg` whose S3 server takes a free port.
fn options_with_s3(tmp: &Path) -> (PlaygroundOptions, u16) {
    let mut opts = playground_options(tmp, &tmp.join("pg"));
    let port = loop {
        let p = local::free_port().unwrap();
        if ![opts.upstream_port, opts.downstream_port].contains(&p) {
            break p;
        }
    };
    opts.s3 = Some(S3Options {
        program: PathBuf::from(env!("CARGO_BIN_EXE_syncgate")),
        port: Some(port),
    });
    (opts, port)
}

/// The DR config holds the S3 server's location and the playground's own key pair, loads,
/// and is private, as is the key pair's file.
fn assert_dr_config(dr_config: &Path, dir: &Path, port: u16) {
    let config = Config::from_file(dr_config).unwrap();
    let dr = config.dr.as_ref().unwrap();
    assert_eq!(config.data_sources["primary"].port, {
        let state = playground::read_state(dir).unwrap().unwrap();
        state.upstream.port
    });
    let creds_path = DetachedS3::credentials_path(&dir.join("s3"));
    let creds = S3Credentials::read(&creds_path).unwrap();
    assert_eq!(creds.secret_key.len(), 40);
    assert!(
        dr.backup_storage.starts_with("s3://backup/playground?")
            && dr
                .backup_storage
                .contains(&format!("endpoint=http://127.0.0.1:{port}&"))
            && dr.backup_storage.contains(&creds.secret_key),
        "{dr:?}"
    );
    assert_eq!(mode(dr_config), 0o600);
    assert_eq!(mode(&creds_path), 0o600);
    assert!(dir.join("s3/data/backup").is_dir(), "bucket made up front");
}

/// Gone: no process (reaped or not) and the port can be bound again.
async fn assert_stopped(pid: u32, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
    };
    while alive() || !local::port_is_free(port) {
        assert!(
            Instant::now() < deadline,
            "S3 server pid {pid} / port {port} still up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playground_dr_flow_over_its_s3_server() {
    support::require_mariadbd();
    let tmp = tempfile::tempdir().unwrap();
    let (opts, port) = options_with_s3(tmp.path());
    let dir = opts.dir.clone();
    let _guard = PlaygroundGuard(dir.clone());
    let report = playground::up(&opts).await.unwrap();
    let dr_config = tmp.path().join("configs/playground-dr.toml");
    assert_eq!(report.dr_config_path.as_deref(), Some(dr_config.as_path()));
    assert_dr_config(&dr_config, &dir, port);
    let s3 = playground::read_state(&dir).unwrap().unwrap().s3.unwrap();
    assert_eq!(s3.port, port);

    let (d, c, cwd) = (
        dir.to_str().unwrap(),
        dr_config.to_str().unwrap(),
        tmp.path(),
    );
    let out = run_in(cwd, &["playground", "status", "--dir", d]);
    let want = format!("s3          running  port {port}  pid {}", s3.pid);
    assert!(stdout(&out).contains(&want), "{}", describe(&out));

    // The README's sequence, with the load running throughout.
    let load = Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args(["playground", "load", "--dir", d, "--tps", "50"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let backup = run_in(cwd, &["dr", "backup", "-C", c]);
    let restore = run_in(cwd, &["dr", "restore", "-C", c, "--overwrite"]);
    send(&load, "INT");
    let (load_out, _) = finish(load, Duration::from_secs(10));
    assert_eq!(backup.status.code(), Some(0), "{}", describe(&backup));
    assert!(stdout(&backup).contains("stored in s3://backup/playground"));
    assert_eq!(restore.status.code(), Some(0), "{}", describe(&restore));
    assert!(
        stdout(&restore).contains("gate 1: equal"),
        "{}",
        describe(&restore)
    );
    assert!(
        stdout(&load_out).contains("0 errors"),
        "{}",
        describe(&load_out)
    );
    assert!(tmp.path().join("dr-output/restore/gate.txt").is_file());

    let status = run_in(cwd, &["dr", "status", "-C", c]);
    assert_eq!(status.status.code(), Some(0), "{}", describe(&status));
    assert!(
        stdout(&status).contains("backups: 1 complete"),
        "{}",
        describe(&status)
    );

    let down = run_in(cwd, &["playground", "down", "--dir", d]);
    assert_eq!(down.status.code(), Some(0), "{}", describe(&down));
    assert!(stdout(&down).contains("s3"), "{}", describe(&down));
    assert_stopped(s3.pid, port).await;
    let out = run_in(cwd, &["playground", "status", "--dir", d]);
    let want = format!("s3          stopped  port {port}");
    assert!(stdout(&out).contains(&want), "{}", describe(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_s3_backups_stay_in_the_playground_dir() {
    support::require_mariadbd();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pg");
    let _guard = PlaygroundGuard(dir.clone());
    let report = playground::up(&playground_options(tmp.path(), &dir))
        .await
        .unwrap();
    assert_eq!(report.status.s3, None);
    let dr_config = report.dr_config_path.unwrap();
    let config = Config::from_file(&dr_config).unwrap();
    assert_eq!(
        config.dr.unwrap().backup_storage,
        format!("local://{}/backups", dir.display())
    );
    let c = dr_config.to_str().unwrap();
    let backup = run_in(tmp.path(), &["dr", "backup", "-C", c]);
    assert_eq!(backup.status.code(), Some(0), "{}", describe(&backup));
    assert!(dir.join("backups/flow.json").is_file());

    playground::down(&dir, true).await.unwrap();
    assert!(!dir.exists(), "purge leaves nothing behind");
}

#[tokio::test]
async fn a_taken_s3_port_is_refused_before_anything_starts() {
    support::require_mariadbd();
    let tmp = tempfile::tempdir().unwrap();
    let (mut opts, _) = options_with_s3(tmp.path());
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    opts.s3.as_mut().unwrap().port = Some(port);
    let err = playground::up(&opts).await.unwrap_err().to_string();
    assert_eq!(
        err,
        format!("s3: port {port} is already in use on 127.0.0.1; stop what uses it or choose another port")
    );
    assert!(!opts.dir.exists(), "nothing started");
}

/// `up --dr`: a third, empty server for the reseed, named `spare` in the DR config and
/// listed by `status`; `down` stops it and a `dr archive` running on the playground's DR
/// config (SIGTERM: it writes what is complete and exits 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_dr_adds_a_spare_and_down_stops_it_and_the_archiver() {
    support::require_mariadbd();
    let tmp = tempfile::tempdir().unwrap();
    let (mut opts, s3_port) = options_with_s3(tmp.path());
    let spare_port = loop {
        let p = local::free_port().unwrap();
        if ![opts.upstream_port, opts.downstream_port, s3_port].contains(&p) {
            break p;
        }
    };
    opts.spare_port = Some(spare_port);
    let dir = opts.dir.clone();
    let _guard = PlaygroundGuard(dir.clone());
    let report = playground::up(&opts).await.unwrap();
    let dr_config = report.dr_config_path.unwrap();
    let config = Config::from_file(&dr_config).unwrap();
    assert_eq!(config.data_sources["spare"].port, spare_port);
    let spare = playground::read_state(&dir)
        .unwrap()
        .unwrap()
        .spare
        .unwrap();
    assert_eq!(spare.port, spare_port);
    let (d, c, cwd) = (
        dir.to_str().unwrap(),
        dr_config.to_str().unwrap(),
        tmp.path(),
    );
    let out = run_in(cwd, &["playground", "status", "--dir", d]);
    assert!(
        stdout(&out).contains(&format!("{spare_port}")) && stdout(&out).contains("spare"),
        "{}",
        describe(&out)
    );

    let backup = run_in(cwd, &["dr", "backup", "-C", c]);
    assert_eq!(backup.status.code(), Some(0), "{}", describe(&backup));
    let log = tmp.path().join("archive.log");
    let mut archiver = Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args(["dr", "archive", "-C", c])
        .current_dir(cwd)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        archiver.try_wait().unwrap().is_none(),
        "the archiver runs: {}",
        read_log()
    );

    let down = run_in(cwd, &["playground", "down", "--dir", d]);
    assert_eq!(down.status.code(), Some(0), "{}", describe(&down));
    let text = stdout(&down);
    assert!(
        text.contains("spare") && text.contains("dr archive (1)"),
        "{text}"
    );
    let status = archiver.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM: the archiver exits 0: {}",
        read_log()
    );
    assert!(local::port_is_free(spare_port), "the spare is stopped");
}
