//! Running a plugin as its own user (`[aigis] user`, `users` in central's
//! config, never from the plugin's repository).
//!
//! The agent looks the user up on its own host, owns the plugin's tree and
//! secret files over to it, and runs the requirements command and the
//! plugin as it (setgroups, setgid, setuid between fork and exec). Only
//! root can do that: an agent that is not root refuses a plugin with a
//! user other than its own.
//!
//! Invariants:
//! - Nothing here follows a symlink while changing owners: a plugin's tree
//!   may hold links to anywhere.
//! - A plugin's `.git` (central's clone) is never given to the plugin's
//!   user: central fetches into it as itself.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A user on this host, as the plugin's processes will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (with `gid`).
    pub groups: Vec<libc::gid_t>,
    pub home: PathBuf,
}

/// The user `plugin` runs as: `None` when none is configured. Fails when
/// there is no such user here, or when this agent (not root) cannot become
/// it.
pub fn resolve(plugin: &str, user: Option<&str>) -> Result<Option<User>, String> {
    let Some(name) = user else {
        return Ok(None);
    };
    let found = lookup(name)
        .map_err(|e| format!("plugin `{plugin}`: cannot look up its user `{name}`: {e}"))?
        .ok_or_else(|| {
            format!("plugin `{plugin}`: [aigis] users names `{name}`, but there is no such user on this host")
        })?;
    // SAFETY: geteuid has no preconditions.
    may_become(plugin, &found, unsafe { libc::geteuid() })?;
    Ok(Some(found))
}

/// An agent running as uid `me` may run `plugin` as `user`: root may,
/// anyone else only as themselves.
fn may_become(plugin: &str, user: &User, me: u32) -> Result<(), String> {
    if me != 0 && user.uid != me {
        return Err(format!(
            "plugin `{plugin}`: [aigis] users says to run it as `{}`, but this agent runs as \
             uid {me}, not root, and only root can run a plugin as another user",
            user.name
        ));
    }
    Ok(())
}

/// `getpwnam_r` and `getgrouplist`; `Ok(None)` when there is no such user.
pub fn lookup(name: &str) -> io::Result<Option<User>> {
    let c_name = CString::new(name).map_err(|_| io::Error::other("a NUL in the user name"))?;
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: zeroed passwd is a valid out-parameter; every pointer
        // getpwnam_r leaves in it points into `buf`, read before it changes.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if result.is_null() {
            return Ok(None);
        }
        // SAFETY: pw_dir is a NUL-terminated string in `buf` (or null).
        let home = if pwd.pw_dir.is_null() {
            PathBuf::from("/")
        } else {
            PathBuf::from(
                unsafe { CStr::from_ptr(pwd.pw_dir) }
                    .to_string_lossy()
                    .into_owned(),
            )
        };
        let groups = group_list(&c_name, pwd.pw_gid)?;
        return Ok(Some(User {
            name: name.to_string(),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
            groups,
            home,
        }));
    }
}

fn group_list(name: &CStr, gid: libc::gid_t) -> io::Result<Vec<libc::gid_t>> {
    let mut n: libc::c_int = 32;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let asked = n;
        // SAFETY: `groups` has room for `n` entries; getgrouplist writes at
        // most that many and sets `n` to how many there are.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n.max(0) as usize);
            return Ok(groups);
        }
        if n <= asked {
            n = asked * 2;
        }
        if n > 65536 {
            return Err(io::Error::other("too many supplementary groups"));
        }
    }
}

/// What a plugin process (and its requirements command) starts with:
/// never the agent's whole environment, which holds whatever central was
/// given (a credential in a systemd unit's `Environment=` reaches no
/// plugin). This host's `PATH`, locale, time zone and `TMPDIR`; who runs
/// (`HOME`, `USER`, `LOGNAME`: the plugin's user's, or the agent's own).
/// The caller adds AIGIS's variables and the plugin's environment.
pub fn clean_env(user: Option<&User>) -> Vec<(String, String)> {
    const KEPT: [&str; 9] = [
        "PATH",
        "LANG",
        "LANGUAGE",
        "LC_ALL",
        "LC_CTYPE",
        "LC_MESSAGES",
        "TZ",
        "TMPDIR",
        "TERM",
    ];
    const WHO: [&str; 3] = ["HOME", "USER", "LOGNAME"];
    let mut env: Vec<(String, String)> = KEPT
        .iter()
        .filter_map(|k| Some((k.to_string(), std::env::var(k).ok()?)))
        .collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    }
    match user {
        Some(user) => env.extend(user.env()),
        None => env.extend(
            WHO.iter()
                .filter_map(|k| Some((k.to_string(), std::env::var(k).ok()?))),
        ),
    }
    env
}

impl User {
    /// The environment that says who runs: `HOME`, `USER`, `LOGNAME`.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("HOME".into(), self.home.to_string_lossy().into_owned()),
            ("USER".into(), self.name.clone()),
            ("LOGNAME".into(), self.name.clone()),
        ]
    }

    /// Whether this user may run `path`: every directory on the way (to
    /// the link and to what it points to) searchable, the file executable,
    /// by the owner, group or other bits that apply to it. Root may run
    /// what has any execute bit.
    pub fn can_run(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let allows = |meta: &std::fs::Metadata| {
            let mode = meta.mode();
            if self.uid == 0 {
                return mode & 0o111 != 0 || meta.is_dir();
            }
            let bit = if meta.uid() == self.uid {
                0o100
            } else if self.groups.contains(&meta.gid()) || meta.gid() == self.gid {
                0o010
            } else {
                0o001
            };
            mode & bit != 0
        };
        let Ok(real) = std::fs::canonicalize(path) else {
            return false;
        };
        let dirs_ok = |p: &Path| {
            p.ancestors()
                .skip(1)
                .all(|d| std::fs::metadata(d).is_ok_and(|m| allows(&m)))
        };
        dirs_ok(path) && dirs_ok(&real) && std::fs::metadata(&real).is_ok_and(|m| allows(&m))
    }

    /// What the child does between fork and exec to become this user;
    /// nothing when the agent already is it.
    pub fn switch(&self) -> Option<Switch> {
        // SAFETY: geteuid has no preconditions.
        (unsafe { libc::geteuid() } != self.uid).then(|| Switch {
            uid: self.uid,
            gid: self.gid,
            groups: self.groups.clone(),
        })
    }
}

/// The ids a child takes on, prepared before the fork.
#[derive(Debug, Clone)]
pub struct Switch {
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
}

impl Switch {
    /// In the child, between fork and exec: groups, gid, then uid (after
    /// setuid nothing else could be changed). Only async-signal-safe calls.
    pub fn apply(&self) -> io::Result<()> {
        // SAFETY: plain syscalls; `groups` was allocated before the fork
        // and is only read here.
        unsafe {
            if libc::setgroups(self.groups.len() as _, self.groups.as_ptr()) != 0
                || libc::setgid(self.gid) != 0
                || libc::setuid(self.uid) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Gives `root` and everything below it to `uid`:`gid`, except a `.git`
/// directly in `root`. Never follows a link of any kind: a symlink itself
/// is changed, what it points to is not, and a linked directory is not
/// entered; a file with another name as well (a hard link: the plugin may
/// have linked a file outside its tree) keeps its owner.
pub fn own_tree(root: &Path, uid: u32, gid: u32) -> io::Result<()> {
    use rustix::fs::{openat, Mode, OFlags, CWD};
    let dir = openat(
        CWD,
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let owner = (
        rustix::process::Uid::from_raw(uid),
        rustix::process::Gid::from_raw(gid),
    );
    own_dir(&dir, owner, true)
}

type Owner = (rustix::process::Uid, rustix::process::Gid);

/// Changes `dir` (open, not through a link) and what is in it.
fn own_dir(dir: &OwnedFd, owner: Owner, top: bool) -> io::Result<()> {
    use rustix::fs::{openat, Mode, OFlags};
    rustix::fs::fchown(dir, Some(owner.0), Some(owner.1))?;
    // The directory this descriptor is, whatever its path is now.
    let entries = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if top && name == ".git" {
            continue;
        }
        // Fails for anything but a real directory.
        let as_dir = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if let Ok(sub) = openat(dir, name.as_os_str(), as_dir, Mode::empty()) {
            own_dir(&sub, owner, false)?;
            continue;
        }
        // Anything else is changed through a descriptor of the entry itself
        // (a symlink's own), so what is checked is what is changed.
        let itself = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match openat(dir, name.as_os_str(), itself, Mode::empty()) {
            Ok(fd) => fd,
            // Gone meanwhile: nothing to own.
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        let stat = rustix::fs::fstat(&fd)?;
        let regular = rustix::fs::FileType::from_raw_mode(stat.st_mode).is_file();
        if regular && stat.st_nlink > 1 {
            continue;
        }
        rustix::fs::chownat(
            &fd,
            "",
            Some(owner.0),
            Some(owner.1),
            rustix::fs::AtFlags::EMPTY_PATH | rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn root_is_found_and_nobody_is_not_invented() {
        let root = lookup("root").unwrap().expect("root exists");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0));
        assert_eq!(lookup("surely-no-such-user-aigis").unwrap(), None);
        let err = resolve("web", Some("surely-no-such-user-aigis")).unwrap_err();
        assert!(
            err.contains("plugin `web`") && err.contains("no such user"),
            "{err}"
        );
        assert_eq!(resolve("web", None).unwrap(), None);
    }

    #[test]
    fn only_root_runs_a_plugin_as_another_user() {
        let web = User {
            name: "aigis-web".into(),
            uid: 990,
            gid: 990,
            groups: vec![990],
            home: "/".into(),
        };
        assert!(may_become("web", &web, 0).is_ok());
        assert!(may_become("web", &web, 990).is_ok(), "already that user");
        let err = may_become("web", &web, 1000).unwrap_err();
        assert_eq!(
            err,
            "plugin `web`: [aigis] users says to run it as `aigis-web`, but this agent runs as \
             uid 1000, not root, and only root can run a plugin as another user"
        );
    }

    /// Owning a tree over changes symlinks, not what they point to, leaves
    /// a hard-linked file (one the plugin may have linked from outside its
    /// tree) and `.git` alone. (As root, to a uid nobody has.)
    #[test]
    fn own_tree_does_not_follow_links() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to change owners");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (root, outside) = (tmp.path().join("root"), tmp.path().join("outside"));
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join(".git/objects")).unwrap();
        std::fs::create_dir_all(outside.join("dir")).unwrap();
        std::fs::write(root.join("a/b/f"), "x").unwrap();
        std::fs::write(outside.join("file"), "x").unwrap();
        std::os::unix::fs::symlink(outside.join("file"), root.join("a/link")).unwrap();
        std::os::unix::fs::symlink(outside.join("dir"), root.join("dirlink")).unwrap();
        std::fs::write(outside.join("shadow"), "x").unwrap();
        std::fs::hard_link(outside.join("shadow"), root.join("a/hard")).unwrap();
        own_tree(&root, 54321, 54322).unwrap();
        for p in ["", "a", "a/b", "a/b/f"] {
            let m = std::fs::metadata(root.join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (54321, 54322), "{p}");
        }
        for p in ["a/link", "dirlink"] {
            assert_eq!(
                std::fs::symlink_metadata(root.join(p)).unwrap().uid(),
                54321
            );
        }
        for p in [
            outside.join("file"),
            outside.join("dir"),
            outside.join("shadow"),
            root.join(".git"),
        ] {
            assert_eq!(std::fs::metadata(&p).unwrap().uid(), 0, "{}", p.display());
        }
    }

    #[test]
    fn can_run_follows_the_modes_on_the_way() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let (open, closed) = (tmp.path().join("open"), tmp.path().join("closed"));
        for (dir, mode) in [(&open, 0o755), (&closed, 0o700)] {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("tool"), "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(dir.join("tool"), std::fs::Permissions::from_mode(0o755))
                .unwrap();
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(closed.join("tool"), open.join("link")).unwrap();
        // SAFETY: geteuid/getegid have no preconditions.
        let (me, my_gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let stranger = User {
            name: "stranger".into(),
            uid: me + 54321,
            gid: my_gid + 54321,
            groups: vec![],
            home: "/".into(),
        };
        assert!(stranger.can_run(&open.join("tool")));
        assert!(!stranger.can_run(&closed.join("tool")));
        assert!(
            !stranger.can_run(&open.join("link")),
            "a link into a closed directory"
        );
        assert!(!stranger.can_run(&open.join("missing")));
        let owner = User {
            uid: me,
            ..stranger
        };
        assert!(owner.can_run(&closed.join("tool")));
    }
}
