//! The template data dir: initialised once per MariaDB version with `mariadb-install-db`,
//! cached under the cargo target dir, and copied into every server dir (see
//! [`crate::local`], "How a server is made").

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::{LocalError, Result};
use super::process::{
    current_user, find_install_db, find_server_binary, is_root, tail_lines, LOG_TAIL_LINES,
};
use super::{lock, nanos};

/// Where the template data dir is cached: `$SYNCGATE_MARIADB_CACHE`, else `$CARGO_TARGET_DIR`,
/// else the nearest ancestor of the running executable that holds cargo's `CACHEDIR.TAG`
/// (`target/`), else the system temp dir.
pub fn template_cache_dir() -> PathBuf {
    for var in ["SYNCGATE_MARIADB_CACHE", "CARGO_TARGET_DIR"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return PathBuf::from(v);
        }
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe
            .ancestors()
            .skip(1)
            .find(|d| d.join("CACHEDIR.TAG").is_file())
        {
            return dir.to_path_buf();
        }
    }
    std::env::temp_dir()
}

/// The template data dir, initialising it if needed (blocking; call from a blocking
/// context). Safe to call concurrently from threads and processes.
pub fn ensure_template() -> Result<PathBuf> {
    static TEMPLATE: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut cached = lock(&TEMPLATE);
    if let Some(p) = cached.as_ref() {
        return Ok(p.clone());
    }
    let server = find_server_binary().ok_or(LocalError::MissingBinaries)?;
    let version = server_version(&server)?;
    let cache = template_cache_dir();
    let name = format!("syncgate-mariadb-template-{}", sanitize(&version));
    let path = init_template(&cache, &name)?;
    *cached = Some(path.clone());
    Ok(path)
}

const TEMPLATE_MARKER: &str = ".syncgate-template-complete";

fn init_template(cache: &Path, name: &str) -> Result<PathBuf> {
    let target = cache.join(name);
    if target.join(TEMPLATE_MARKER).is_file() {
        return Ok(target);
    }
    fs::create_dir_all(cache).map_err(LocalError::io("create", cache))?;
    // One process builds the template while the others wait on this lock and reuse it: several
    // bootstraps at once on a small machine made mariadb-install-db fail now and then.
    let lock_path = cache.join(format!(".{name}.lock"));
    let lock_file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(LocalError::io("open", &lock_path))?;
    lock_file
        .lock()
        .map_err(LocalError::io("lock", &lock_path))?;
    if target.join(TEMPLATE_MARKER).is_file() {
        return Ok(target);
    }
    match build_template(cache, name, &target) {
        Ok(p) => Ok(p),
        Err(first) => {
            tracing::warn!("building the MariaDB template failed, retrying once: {first}");
            build_template(cache, name, &target)
        }
    }
}

/// Copy the template into `DIR/data` (through `DIR/data.copying`, so an interrupted copy is
/// never taken for a data dir).
pub(super) async fn copy_template(template: PathBuf, dir: &Path) -> Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<()> {
        fs::create_dir_all(&dir).map_err(LocalError::io("create", &dir))?;
        let data = dir.join("data");
        let staging = dir.join("data.copying");
        let _ = fs::remove_dir_all(&staging);
        let _ = fs::remove_dir_all(&data);
        copy_dir_all(&template, &staging)
            .and_then(|()| fs::remove_file(staging.join(TEMPLATE_MARKER)))
            .and_then(|()| fs::rename(&staging, &data))
            .map_err(|error| LocalError::CopyTemplate {
                template,
                to: data,
                error,
            })
    })
    .await
    .map_err(LocalError::task("copy"))?
}

/// Run `mariadb-install-db` into a temporary dir and publish it at `target`.
fn build_template(cache: &Path, name: &str, target: &Path) -> Result<PathBuf> {
    let target = target.to_path_buf();
    sweep_stale_template_tmp(cache, name);
    let tmp = cache.join(format!(".{name}.tmp-{}-{}", std::process::id(), nanos()));
    let _ = fs::remove_dir_all(&tmp);
    let install = find_install_db().ok_or(LocalError::MissingBinaries)?;
    let started = Instant::now();
    let mut cmd = Command::new(&install);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", tmp.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg(format!(
            "--user={}",
            if is_root() {
                "root".to_string()
            } else {
                current_user()
            }
        ))
        .arg("--skip-test-db")
        .arg("--innodb-log-file-size=4M")
        .stdin(Stdio::null());
    let out = cmd.output().map_err(LocalError::io("run", &install))?;
    if !out.status.success() {
        let _ = fs::remove_dir_all(&tmp);
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        return Err(LocalError::InstallDb {
            program: install,
            status: out.status,
            output_tail: tail_lines(&text, LOG_TAIL_LINES),
        });
    }
    let marker = tmp.join(TEMPLATE_MARKER);
    fs::write(&marker, b"").map_err(LocalError::io("write", &marker))?;
    match fs::rename(&tmp, &target) {
        Ok(()) => {
            tracing::info!(
                "initialised MariaDB template {} in {:.2?}",
                target.display(),
                started.elapsed()
            );
            Ok(target)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            if target.join(TEMPLATE_MARKER).is_file() {
                // Another process won the race.
                Ok(target)
            } else {
                Err(LocalError::io("publish template", &target)(e))
            }
        }
    }
}

/// Remove template build dirs of crashed processes (older than 10 minutes).
fn sweep_stale_template_tmp(cache: &Path, name: &str) {
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let fname = entry.file_name();
        let Some(fname) = fname.to_str() else {
            continue;
        };
        if !fname.starts_with(&prefix) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(600));
        if old {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// The version token of `mariadbd --version` (e.g. `10.11.19-MariaDB-0+deb12u1`).
fn server_version(server: &Path) -> Result<String> {
    let out = Command::new(server)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(LocalError::io("run", server))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_version(&text).ok_or_else(|| LocalError::Version {
        program: server.to_path_buf(),
        output: text.into_owned(),
    })
}

fn parse_version(text: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == "Ver")?;
    words.next().map(str::to_string)
}

/// Keep `[A-Za-z0-9._-]`, map the rest to `_`.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Recursive copy preserving permissions and symlinks (`cp -a` without ownership/times).
fn copy_dir_all(src: &Path, dst: &Path) -> std::io::Result<()> {
    fs::create_dir(dst)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let to = dst.join(entry.file_name());
        if ft.is_dir() {
            copy_dir_all(&entry.path(), &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &to)?;
        } else {
            fs::copy(entry.path(), &to)?;
        }
    }
    fs::set_permissions(dst, fs::metadata(src)?.permissions())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::scratch;

    #[test]
    fn version_parsing_and_sanitizing() {
        let v = parse_version(
            "mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)\n",
        )
        .unwrap();
        assert_eq!(v, "10.11.19-MariaDB-0+deb12u1");
        assert_eq!(sanitize(&v), "10.11.19-MariaDB-0_deb12u1");
        assert_eq!(parse_version("garbage"), None);
        assert_eq!(sanitize("a/b c"), "a_b_c");
    }

    #[test]
    fn copy_dir_all_copies_tree_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let root = scratch("copy");
        let src = root.join("src");
        fs::create_dir_all(src.join("a/b")).unwrap();
        fs::write(src.join("f"), b"top").unwrap();
        fs::write(src.join("a/b/g"), b"deep").unwrap();
        fs::set_permissions(src.join("f"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::set_permissions(src.join("a"), fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("f", src.join("link")).unwrap();
        let dst = root.join("dst");
        copy_dir_all(&src, &dst).unwrap();
        assert_eq!(fs::read(dst.join("f")).unwrap(), b"top");
        assert_eq!(fs::read(dst.join("a/b/g")).unwrap(), b"deep");
        assert_eq!(fs::read_link(dst.join("link")).unwrap(), PathBuf::from("f"));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dst.join("f")), 0o640);
        assert_eq!(mode(&dst.join("a")), 0o700);
        assert!(
            copy_dir_all(&src, &dst).is_err(),
            "destination must not exist"
        );
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn template_publish_is_idempotent() {
        // Without running install-db: a published template is returned as is.
        let root = scratch("tpl");
        let t = root.join("tpl-x");
        fs::create_dir_all(&t).unwrap();
        fs::write(t.join(TEMPLATE_MARKER), b"").unwrap();
        assert_eq!(init_template(&root, "tpl-x").unwrap(), t);
        fs::remove_dir_all(root).unwrap();
    }
}
