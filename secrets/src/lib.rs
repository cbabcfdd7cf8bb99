//! A plugin's secret files: found under `<home>/secrets/<plugin>/` on the
//! central host, checked, packaged as [`proto::SecretFile`]s, and written on
//! the plugin's host with mode 0600.
//!
//! Invariants:
//! - A plugin's config comes from its repository, so it is not trusted: a key
//!   may not leave `secrets/<plugin>/` (no `..`, no absolute path, no symlink
//!   out) and a destination may not leave the plugin's root.
//! - Secret contents never appear in an error or a `Debug` string.

use proto::SecretFile;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("plugin `{plugin}`: missing secret file(s) in {}: {}", dir.display(), keys.join(", "))]
    Missing {
        plugin: String,
        dir: PathBuf,
        keys: Vec<String>,
    },
    #[error("plugin `{plugin}`: secret `{key}` refused: {reason}")]
    BadKey {
        plugin: String,
        key: String,
        reason: &'static str,
    },
    #[error("plugin `{plugin}`: secret `{key}` refused: destination {} is outside the plugin root {}", dest.display(), root.display())]
    BadDest {
        plugin: String,
        key: String,
        dest: PathBuf,
        root: PathBuf,
    },
    #[error("plugin `{plugin}`: secret `{key}`: {} : {source}", path.display())]
    Io {
        plugin: String,
        key: String,
        path: PathBuf,
        source: io::Error,
    },
}

/// Reads and checks every secret a plugin asks for.
///
/// `dir` is `<home>/secrets/<plugin>`; `wanted` pairs a key with its
/// destination (already `{root}`-substituted). All missing keys are reported
/// together; any refused key or destination fails the whole set.
pub fn collect(
    plugin: &str,
    dir: &Path,
    root: &Path,
    wanted: &[(String, PathBuf)],
) -> Result<Vec<SecretFile>, SecretsError> {
    let mut missing = Vec::new();
    let mut files = Vec::new();
    for (key, dest) in wanted {
        check_key(plugin, key)?;
        let dest_is_dir = dest.as_os_str().as_encoded_bytes().ends_with(b"/");
        let dest = normalize(dest);
        if !dest.starts_with(normalize(root)) {
            return Err(SecretsError::BadDest {
                plugin: plugin.into(),
                key: key.clone(),
                dest,
                root: root.into(),
            });
        }
        let path = dir.join(key);
        if !path.is_file() {
            missing.push(key.clone());
            continue;
        }
        let io_err = |source| SecretsError::Io {
            plugin: plugin.into(),
            key: key.clone(),
            path: path.clone(),
            source,
        };
        // A symlink inside the secrets dir must not reach another plugin's secrets.
        let real = fs::canonicalize(&path).map_err(io_err)?;
        let real_dir = fs::canonicalize(dir).map_err(io_err)?;
        if !real.starts_with(&real_dir) {
            return Err(SecretsError::BadKey {
                plugin: plugin.into(),
                key: key.clone(),
                reason: "it resolves to a file outside the plugin's secrets directory",
            });
        }
        let contents = fs::read(&real).map_err(io_err)?;
        files.push(SecretFile {
            key: key.clone(),
            dest,
            dest_is_dir,
            contents,
        });
    }
    if !missing.is_empty() {
        return Err(SecretsError::Missing {
            plugin: plugin.into(),
            dir: dir.into(),
            keys: missing,
        });
    }
    Ok(files)
}

fn check_key(plugin: &str, key: &str) -> Result<(), SecretsError> {
    let bad = |reason| {
        Err(SecretsError::BadKey {
            plugin: plugin.into(),
            key: key.into(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("the key is empty");
    }
    let path = Path::new(key);
    if path.is_absolute() {
        return bad("the key is an absolute path; keys name files under secrets/<plugin>/");
    }
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return bad("the key may not contain `..` or `.`; keys name files under secrets/<plugin>/");
    }
    Ok(())
}

/// Resolves `.` and `..` without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Where a secret lands on its host: `dest/<file name of key>` when `dest`
/// names a directory (trailing `/` or an existing directory), else `dest`.
pub fn destination(file: &SecretFile) -> PathBuf {
    if file.dest_is_dir || file.dest.is_dir() {
        let name = Path::new(&file.key)
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(&file.key));
        file.dest.join(name)
    } else {
        file.dest.clone()
    }
}

/// Writes one secret on this host, mode 0600, atomically (temp file + rename).
///
/// The destination's missing directories are made one at a time, each
/// step checked first: a symlink in the plugin's tree that leads out of
/// `root` is refused before anything is created on its far side.
/// Returns the path written.
pub fn install(file: &SecretFile, root: &Path) -> io::Result<PathBuf> {
    install_owned(file, root, None)
}

/// [`install`], the file owned by `owner` (uid, gid): the user the plugin
/// runs as. It is given away before it takes the final name, so it never
/// lies there with another owner.
pub fn install_owned(
    file: &SecretFile,
    root: &Path,
    owner: Option<(u32, u32)>,
) -> io::Result<PathBuf> {
    let target = destination(file);
    let parent = target
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no parent directory", target.display())))?;
    let real_parent = dirs_inside(parent, root)?;
    let name = target
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} has no file name", target.display())))?;
    let tmp = real_parent.join(format!(".{}.aigis-tmp", name.to_string_lossy()));
    let _ = fs::remove_file(&tmp);
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    out.write_all(&file.contents)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&out, Some(uid), Some(gid))?;
    }
    out.sync_all()?;
    drop(out);
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    let final_path = real_parent.join(name);
    fs::rename(&tmp, &final_path)?;
    Ok(final_path)
}

/// Makes directory `dir` (and what is missing above it) inside `root`,
/// never outside it: every existing step is resolved and checked before
/// the next one is created. Returns `dir`'s real path.
fn dirs_inside(dir: &Path, root: &Path) -> io::Result<PathBuf> {
    let outside = || {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} resolves outside the plugin root {}",
                dir.display(),
                root.display()
            ),
        )
    };
    let real_root = fs::canonicalize(root)?;
    let rel = normalize(dir)
        .strip_prefix(normalize(root))
        .map_err(|_| outside())?
        .to_path_buf();
    let mut real = real_root.clone();
    for step in rel.components() {
        let next = real.join(step);
        real = match fs::symlink_metadata(&next) {
            // Already there (a directory, or a link to be resolved): where
            // does it really lead?
            Ok(_) => fs::canonicalize(&next)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match fs::create_dir(&next) {
                    Ok(()) => next,
                    // Made meanwhile: resolve it like any existing step.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => fs::canonicalize(&next)?,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        if !real.starts_with(&real_root) {
            return Err(outside());
        }
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        _tmp: tempfile::TempDir,
        dir: PathBuf,
        root: PathBuf,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("secrets/web");
        let root = tmp.path().join("ext/web");
        fs::create_dir_all(&dir).unwrap();
        fs::create_dir_all(&root).unwrap();
        fs::write(dir.join("a.secret"), "hunter2").unwrap();
        fs::write(tmp.path().join("secrets/other.secret"), "not yours").unwrap();
        Fixture {
            _tmp: tmp,
            dir,
            root,
        }
    }

    fn want(pairs: &[(&str, &Path)]) -> Vec<(String, PathBuf)> {
        pairs
            .iter()
            .map(|(k, d)| (k.to_string(), d.to_path_buf()))
            .collect()
    }

    #[test]
    fn collects_and_installs_with_mode_0600() {
        let f = fixture();
        let dest = PathBuf::from(format!("{}/src/db/", f.root.display()));
        let files = collect("web", &f.dir, &f.root, &want(&[("a.secret", &dest)])).unwrap();
        assert_eq!(files.len(), 1);
        let written = install(&files[0], &f.root).unwrap();
        assert_eq!(
            written,
            fs::canonicalize(&f.root).unwrap().join("src/db/a.secret")
        );
        assert_eq!(fs::read_to_string(&written).unwrap(), "hunter2");
        let mode = fs::metadata(&written).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A second install replaces the file and keeps the mode.
        install(&files[0], &f.root).unwrap();
        assert_eq!(fs::read_to_string(&written).unwrap(), "hunter2");
    }

    #[test]
    fn every_missing_secret_is_listed_once() {
        let f = fixture();
        let err = collect(
            "web",
            &f.dir,
            &f.root,
            &want(&[
                ("x.secret", &f.root),
                ("a.secret", &f.root.join("a")),
                ("y.secret", &f.root),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("x.secret, y.secret"), "{err}");
        assert!(err.contains("plugin `web`"), "{err}");
    }

    #[test]
    fn keys_that_leave_the_secrets_dir_are_refused() {
        let f = fixture();
        for key in ["../other.secret", "/etc/passwd", "./a.secret", ""] {
            let err = collect("web", &f.dir, &f.root, &want(&[(key, &f.root)])).unwrap_err();
            assert!(matches!(err, SecretsError::BadKey { .. }), "{key}: {err}");
        }
        std::os::unix::fs::symlink(f.dir.join("../other.secret"), f.dir.join("link.secret"))
            .unwrap();
        let err = collect("web", &f.dir, &f.root, &want(&[("link.secret", &f.root)])).unwrap_err();
        assert!(
            err.to_string().contains("outside the plugin's secrets"),
            "{err}"
        );
        assert!(!err.to_string().contains("not yours"));
    }

    #[test]
    fn destinations_outside_root_are_refused() {
        let f = fixture();
        let outside = f.root.join("../../etc/x");
        let err = collect("web", &f.dir, &f.root, &want(&[("a.secret", &outside)])).unwrap_err();
        assert!(matches!(err, SecretsError::BadDest { .. }), "{err}");
        assert!(!err.to_string().contains("hunter2"));
        let err = collect(
            "web",
            &f.dir,
            &f.root,
            &want(&[("a.secret", Path::new("/tmp/"))]),
        )
        .unwrap_err();
        assert!(matches!(err, SecretsError::BadDest { .. }), "{err}");
    }

    #[test]
    fn install_refuses_a_symlinked_directory_that_leaves_root() {
        let f = fixture();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), f.root.join("escape")).unwrap();
        let files = collect(
            "web",
            &f.dir,
            &f.root,
            &want(&[("a.secret", &f.root.join("escape/"))]),
        )
        .unwrap();
        let err = install(&files[0], &f.root).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        assert!(fs::read_dir(elsewhere.path()).unwrap().next().is_none());
    }

    #[test]
    fn install_creates_nothing_outside_root_before_refusing() {
        let f = fixture();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), f.root.join("escape")).unwrap();
        let files = collect(
            "web",
            &f.dir,
            &f.root,
            &want(&[("a.secret", &f.root.join("escape/made/by/aigis/"))]),
        )
        .unwrap();
        let err = install(&files[0], &f.root).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        assert!(!err.to_string().contains("hunter2"));
        let made: Vec<_> = fs::read_dir(elsewhere.path()).unwrap().collect();
        assert!(made.is_empty(), "created outside the root: {made:?}");
        // Directories inside the root are still made as needed.
        let files = collect(
            "web",
            &f.dir,
            &f.root,
            &want(&[("a.secret", &f.root.join("inside/deep/er/"))]),
        )
        .unwrap();
        let written = install(&files[0], &f.root).unwrap();
        assert!(written.ends_with("inside/deep/er/a.secret"), "{written:?}");
    }
}
