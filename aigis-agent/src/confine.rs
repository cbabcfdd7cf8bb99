//! Confining a plugin's processes with Landlock (Linux 5.13+, no root
//! needed): a plugin cannot read or write what AIGIS keeps on its host
//! (other plugins' trees, secrets and environments, the logs, central's
//! config) nor the agent user's `~/.ssh`, beyond its own tree and
//! environment, while the rest of the filesystem stays as the agent's
//! user sees it.
//!
//! Landlock only allows: once a ruleset handles an access right, every
//! path not granted it is denied. So the hidden paths are left out by
//! granting everything around them: each entry of each directory on the
//! way from `/` to a hidden path, but for that path (and the next step
//! towards it). Symlinks there are not granted (a rule follows a link to
//! its target, which might be hidden); what they lead to is granted, or
//! not, where it is. Then the plugin's own paths inside are granted.
//!
//! The ruleset is built here, before the fork; the child only enters it
//! ([`enter`]: two syscalls, async-signal-safe). A kernel without Landlock
//! builds none, and the plugin runs unconfined (`aigis check` says so).

use landlock::{
    path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetError,
    ABI,
};
use proto::Confine;
use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// The newest Landlock ABI whose filesystem rights AIGIS asks for; an
/// older kernel enforces what it knows (best effort).
const ABI_WANTED: ABI = ABI::V5;

/// A ruleset ready for a child to enter.
#[derive(Debug)]
pub struct Sandbox {
    ruleset: OwnedFd,
}

impl Sandbox {
    pub fn fd(&self) -> RawFd {
        self.ruleset.as_raw_fd()
    }
}

/// Whether this kernel enforces Landlock.
pub fn supported() -> bool {
    Ruleset::default()
        .handle_access(AccessFs::from_all(ABI_WANTED))
        .and_then(|r| r.create())
        .map(|created| Option::<OwnedFd>::from(created).is_some())
        .unwrap_or(false)
}

/// The ruleset for `confine`, with `readable` (the shim's directory) also
/// granted for reading. `None` where the kernel has no Landlock.
pub fn prepare(confine: &Confine, readable: &[PathBuf]) -> Result<Option<Sandbox>, String> {
    let mut hidden: Vec<PathBuf> = confine.hidden.clone();
    if let Some(home) = std::env::var_os("HOME") {
        hidden.push(Path::new(&home).join(".ssh"));
    }
    let hidden: BTreeSet<PathBuf> = hidden
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    let around = around(&hidden);
    let own = confine.writable.iter().filter(|p| p.exists());
    let read = confine
        .readable
        .iter()
        .chain(readable)
        .filter(|p| p.exists());
    build(&around, own, read).map_err(|e| format!("cannot confine the plugin (Landlock): {e}"))
}

fn build<'a>(
    around: &[PathBuf],
    own: impl Iterator<Item = &'a PathBuf>,
    read: impl Iterator<Item = &'a PathBuf>,
) -> Result<Option<Sandbox>, RulesetError> {
    let all = AccessFs::from_all(ABI_WANTED);
    let created = Ruleset::default()
        .handle_access(all)?
        .create()?
        .add_rules(path_beneath_rules(around, all))?
        .add_rules(path_beneath_rules(own, all))?
        .add_rules(path_beneath_rules(read, AccessFs::from_read(ABI_WANTED)))?;
    Ok(Option::<OwnedFd>::from(created).map(|ruleset| Sandbox { ruleset }))
}

/// Everything to grant so that only `hidden` (resolved paths) is left out:
/// each entry of each directory on the way to a hidden path, but for the
/// hidden paths, the directories on the way, and symlinks.
fn around(hidden: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
    let on_the_way: BTreeSet<PathBuf> = hidden
        .iter()
        .flat_map(|h| h.ancestors().skip(1).map(Path::to_path_buf))
        .collect();
    let mut grant = Vec::new();
    for dir in &on_the_way {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let link = entry.file_type().is_ok_and(|t| t.is_symlink());
            if link || hidden.contains(&path) || on_the_way.contains(&path) {
                continue;
            }
            grant.push(path);
        }
    }
    grant
}

/// In the child, between fork and exec: no new privileges (a setuid
/// program could not be more than the plugin), then the ruleset. Only
/// syscalls: async-signal-safe.
pub fn enter(ruleset: RawFd) -> std::io::Result<()> {
    // SAFETY: prctl and the landlock_restrict_self syscall with plain
    // integer arguments; `ruleset` is a descriptor the parent keeps open
    // until the child has exec'd.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Around a hidden path: its siblings and its ancestors' other
    /// entries, never the path itself, the way to it, or a link.
    #[test]
    fn everything_around_the_hidden_is_granted_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        let home = root.join("home");
        for d in ["home/ext/a", "home/ext/b", "home/secrets", "other"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("home/notes.txt"), "n").unwrap();
        std::os::unix::fs::symlink(home.join("secrets"), root.join("sneaky")).unwrap();
        let hidden: BTreeSet<PathBuf> = [home.join("ext"), home.join("secrets")].into();
        let grant = around(&hidden);
        assert!(grant.contains(&home.join("notes.txt")));
        assert!(grant.contains(&root.join("other")));
        for never in [
            home.join("ext"),
            home.join("secrets"),
            home.clone(),
            root.clone(),
            root.join("sneaky"),
        ] {
            assert!(!grant.contains(&never), "{}", never.display());
        }
        assert!(grant.iter().all(|p| !p.starts_with(home.join("ext"))));
    }
}
