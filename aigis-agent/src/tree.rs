//! A plugin's tree as central fetched it, put on this host: only the files
//! that differ cross the link, by content hash.
//!
//! Central sends the manifest (`Request::Sync`); the agent answers with the
//! files it lacks (missing, other size, mode or SHA-256). Central streams
//! those in pieces (`Request::Stage`) into a staging directory beside the
//! destination, then `Request::Apply` moves each into place. Files the
//! plugin made itself (secrets, a virtualenv, its state) are left alone;
//! files an earlier sync shipped that are no longer in the manifest are
//! removed, so the host runs exactly the tree central read.
//!
//! Only regular files and symlinks that stay inside the tree cross (a link
//! as a link, never as what it points to), and no mode bit above `0o777`:
//! a setuid file in a repository does not become a setuid file here.

use proto::TreeFile;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// `rel` as a path inside a tree: relative, no `..`, no root.
fn inside(root: &Path, rel: &str) -> io::Result<PathBuf> {
    let p = Path::new(rel);
    if rel.is_empty()
        || p.is_absolute()
        || p.components().any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refused `{rel}`: a path must stay inside the plugin"),
        ));
    }
    Ok(root.join(p))
}

/// Makes the directories of `rel`'s parent inside `dest`, one at a time,
/// following no link: the tree central sends has only files and
/// directories, so a link (or a file) where one of its directories goes
/// was made on this host, by the plugin, which may run as a user of its
/// own and must not get this agent to write where it points. Refused,
/// naming it. Returns the parent.
fn parent_inside(dest: &Path, rel: &str) -> io::Result<PathBuf> {
    let mut dir = dest.to_path_buf();
    let parents = Path::new(rel).parent().map(Path::components);
    for step in parents.into_iter().flatten() {
        dir.push(step);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                    "refused `{rel}`: {} is a link or a file, where central's tree has a directory",
                    dir.display()
                ),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
    Ok(dir)
}

/// True when no directory of `rel`'s parent inside `dest` is a link.
fn no_link_above(dest: &Path, rel: &str) -> bool {
    let mut dir = dest.to_path_buf();
    let parents = Path::new(rel).parent().map(Path::components);
    parents.into_iter().flatten().all(|step| {
        dir.push(step);
        fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir())
    })
}

fn sibling(dest: &Path, what: &str) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());
    dest.with_file_name(format!(".{name}.aigis-{what}"))
}

/// Where streamed files wait before [`apply`] puts them in place.
fn staging(dest: &Path) -> PathBuf {
    sibling(dest, "staging")
}

/// The list of files the last [`apply`] put into `dest`.
fn shipped(dest: &Path) -> PathBuf {
    sibling(dest, "shipped")
}

/// The permission bits that cross: no setuid, setgid or sticky bit.
pub const MODE_BITS: u32 = 0o777;

/// The SHA-256 of a regular file's contents. Anything else (a FIFO, a
/// device, a link to one) is an error, never opened for reading: a FIFO
/// would block the open and `/dev/zero` would never end.
pub fn sha256_file(path: &Path) -> io::Result<[u8; 32]> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buf[..n]);
    }
}

fn same(path: &Path, want: &TreeFile) -> bool {
    match (fs::symlink_metadata(path), &want.link) {
        (Ok(m), Some(target)) if m.file_type().is_symlink() => {
            fs::read_link(path).is_ok_and(|t| t.as_os_str() == target.as_str())
        }
        (Ok(m), None) if m.is_file() => {
            m.len() == want.size
                && m.permissions().mode() & 0o7777 == want.mode & MODE_BITS
                && sha256_file(path).is_ok_and(|h| h == want.sha256)
        }
        _ => false,
    }
}

/// `f`'s link target, refused unless it stays inside the tree.
fn link_of(f: &TreeFile) -> io::Result<Option<&str>> {
    match &f.link {
        Some(target) if !proto::link_stays_inside(&f.path, target) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refused the link `{}`: it leads outside the plugin", f.path),
        )),
        other => Ok(other.as_deref()),
    }
}

/// Makes (or replaces) the link at `target` pointing to `to`: made under a
/// temporary name beside it, then renamed over, so a reader never finds
/// the path missing.
fn place_link(target: &Path, to: &str) -> io::Result<()> {
    let tmp = sibling(target, "link");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(to, &tmp)?;
    fs::rename(&tmp, target)
}

/// The paths of `files` that `dest` does not hold as they are.
pub fn missing(dest: &Path, files: &[TreeFile]) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        link_of(f)?;
        if !same(&inside(dest, &f.path)?, f) {
            out.push(f.path.clone());
        }
    }
    Ok(out)
}

/// Writes one piece of a file into the staging directory of `dest`;
/// `first` starts a new upload.
pub fn stage(
    dest: &Path,
    first: bool,
    rel: &str,
    mode: u32,
    offset: u64,
    contents: &[u8],
) -> io::Result<()> {
    let dir = staging(dest);
    if first && dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    let path = inside(&dir, rel)?;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut file = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(offset == 0)
        .open(&path)?;
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(contents)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode & MODE_BITS))
}

/// The list of files this sync has applied so far (see [`apply`]).
fn shipping(dest: &Path) -> PathBuf {
    sibling(dest, "shipping")
}

/// Puts every staged file of `files` (one chunk of the manifest) into
/// `dest`, each by rename so a reader never sees half a file, and checks
/// each against what central sent. `first` starts a sync; after the
/// `last` chunk, what an earlier sync shipped that no chunk listed is
/// removed, so `dest` holds the manifest exactly.
pub fn apply(dest: &Path, files: &[TreeFile], first: bool, last: bool) -> io::Result<()> {
    let dir = staging(dest);
    fs::create_dir_all(dest)?;
    for f in files {
        let staged = inside(&dir, &f.path)?;
        let target = inside(dest, &f.path)?;
        let link = link_of(f)?;
        if staged.is_file() || (link.is_some() && !same(&target, f)) {
            parent_inside(dest, &f.path)?;
            if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                fs::remove_dir_all(&target)?;
            }
            match link {
                Some(to) => place_link(&target, to)?,
                None => fs::rename(&staged, &target)?,
            }
        }
        if !same(&target, f) {
            return Err(io::Error::other(format!(
                "{} is not what central sent (size, mode or content differ)",
                target.display()
            )));
        }
    }
    let mut list = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(!first)
        .truncate(first)
        .open(shipping(dest))?;
    let chunk: String = files.iter().map(|f| format!("{}\n", f.path)).collect();
    list.write_all(chunk.as_bytes())?;
    drop(list);
    if !last {
        return Ok(());
    }
    // The tree is its owner's alone: another plugin's user (or another
    // central's plugin) on this host reads none of it.
    fs::set_permissions(dest, fs::Permissions::from_mode(0o700))?;
    let _ = fs::remove_dir_all(&dir);
    let now = fs::read_to_string(shipping(dest))?;
    let now: std::collections::HashSet<&str> = now.lines().collect();
    let before = fs::read_to_string(shipped(dest)).unwrap_or_default();
    for old in before.lines().filter(|old| !now.contains(old)) {
        if let Ok(path) = inside(dest, old) {
            if no_link_above(dest, old) {
                let _ = fs::remove_file(path);
            }
        }
    }
    fs::rename(shipping(dest), shipped(dest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, mode: u32, contents: &[u8]) -> TreeFile {
        TreeFile {
            path: path.into(),
            mode,
            size: contents.len() as u64,
            sha256: Sha256::digest(contents).into(),
            link: None,
        }
    }

    fn link(path: &str, target: &str) -> TreeFile {
        TreeFile {
            link: Some(target.into()),
            ..file(path, 0o777, b"")
        }
    }

    /// A link crosses as a link; one that leaves the tree is refused by
    /// name; a setuid bit is dropped on the way.
    #[test]
    fn links_cross_as_links_and_setuid_does_not_cross() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("ext/p");
        let v1 = vec![file("bin/id", 0o4755, b"ELF"), link("lib/id", "../bin/id")];
        assert_eq!(missing(&dest, &v1).unwrap(), ["bin/id", "lib/id"]);
        stage(&dest, true, "bin/id", 0o4755, 0, b"ELF").unwrap();
        apply(&dest, &v1, true, true).unwrap();
        assert_eq!(
            fs::metadata(dest.join("bin/id")).unwrap().mode() & 0o7777,
            0o755
        );
        assert_eq!(
            fs::read_link(dest.join("lib/id")).unwrap(),
            Path::new("../bin/id")
        );
        assert!(missing(&dest, &v1).unwrap().is_empty());
        // A link that changed target is replaced; one that left is refused.
        let v2 = vec![file("bin/id", 0o755, b"ELF"), link("lib/id", "../bin")];
        assert_eq!(missing(&dest, &v2).unwrap(), ["lib/id"]);
        apply(&dest, &v2, true, true).unwrap();
        assert_eq!(
            fs::read_link(dest.join("lib/id")).unwrap(),
            Path::new("../bin")
        );
        for bad in [link("k", "/root/.ssh/id_ed25519"), link("lib/k", "../../x")] {
            let err = missing(&dest, std::slice::from_ref(&bad)).unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{}`", bad.path)),
                "{err}"
            );
            assert!(apply(&dest, &[bad], true, true).is_err());
        }
    }

    #[test]
    fn only_what_differs_is_sent_and_old_files_go() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("ext/p");
        let v1 = vec![
            file("run.sh", 0o755, b"echo 1\n"),
            file("lib/a.py", 0o644, b"A"),
        ];
        assert_eq!(missing(&dest, &v1).unwrap(), ["run.sh", "lib/a.py"]);
        stage(&dest, true, "run.sh", 0o755, 0, b"echo ").unwrap();
        stage(&dest, false, "run.sh", 0o755, 5, b"1\n").unwrap();
        stage(&dest, false, "lib/a.py", 0o644, 0, b"A").unwrap();
        apply(&dest, &v1, true, true).unwrap();
        assert!(missing(&dest, &v1).unwrap().is_empty());
        // The plugin's own files stay; a file central no longer has goes.
        fs::write(dest.join("state.json"), "{}").unwrap();
        let v2 = vec![file("run.sh", 0o755, b"echo 2\n")];
        assert_eq!(missing(&dest, &v2).unwrap(), ["run.sh"]);
        stage(&dest, true, "run.sh", 0o755, 0, b"echo 2\n").unwrap();
        apply(&dest, &v2, true, true).unwrap();
        assert_eq!(fs::read_to_string(dest.join("run.sh")).unwrap(), "echo 2\n");
        assert!(!dest.join("lib/a.py").exists());
        assert!(dest.join("state.json").exists());
        // A changed mode alone is a difference.
        let v3 = vec![file("run.sh", 0o700, b"echo 2\n")];
        assert_eq!(missing(&dest, &v3).unwrap(), ["run.sh"]);
        // Nothing leaves the tree.
        assert!(missing(&dest, &[file("../x", 0o644, b"")]).is_err());
        assert!(stage(&dest, false, "/abs", 0o644, 0, b"x").is_err());
        // Apply refuses a tree that does not match what was announced.
        assert!(apply(&dest, &[file("run.sh", 0o755, b"other")], true, true).is_err());
    }

    /// A link the plugin made where central's tree has a directory is not
    /// written through, nor are files removed through it.
    #[test]
    fn a_link_in_place_of_a_directory_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("ext/p");
        let elsewhere = tmp.path().join("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        let v1 = vec![file("lib/a.py", 0o644, b"A")];
        stage(&dest, true, "lib/a.py", 0o644, 0, b"A").unwrap();
        apply(&dest, &v1, true, true).unwrap();
        // The plugin swaps lib/ for a link to elsewhere, with an a.py there.
        fs::remove_dir_all(dest.join("lib")).unwrap();
        fs::write(elsewhere.join("a.py"), "theirs").unwrap();
        std::os::unix::fs::symlink(&elsewhere, dest.join("lib")).unwrap();
        let v2 = vec![file("lib/b.py", 0o644, b"B")];
        stage(&dest, true, "lib/b.py", 0o644, 0, b"B").unwrap();
        let err = apply(&dest, &v2, true, true).unwrap_err();
        assert!(err.to_string().contains("is a link or a file"), "{err}");
        assert!(!elsewhere.join("b.py").exists());
        // Removing what is no longer shipped does not reach through it either.
        stage(&dest, true, "run.sh", 0o644, 0, b"x").unwrap();
        apply(&dest, &[file("run.sh", 0o644, b"x")], true, true).unwrap();
        assert_eq!(
            fs::read_to_string(elsewhere.join("a.py")).unwrap(),
            "theirs"
        );
    }
}
