//! Putting a plugin's files in place: a git clone (kept up to date by fetch +
//! fast-forward) or a copy of a local directory.
//!
//! Invariants:
//! - A fresh clone or copy is built in a temporary directory beside the
//!   destination and renamed into place: a failure leaves nothing half-written.
//! - What is already on disk is never clobbered: a local copy is not
//!   overwritten, a clone with local modifications or a diverged branch is not
//!   moved. Those cases, and a failed fetch, are `Kept`: a warning, and the
//!   load goes on with what is there (the spec's behaviour).
//!
//! - A clone's `.git` is opened only while it is a directory (not a link)
//!   owned by this process's user: a plugin with a user of its own
//!   (`[aigis] users`) owns the tree around it and could put another there.
//!
//! These functions block; the agent runs them on a blocking thread.

use git2::build::{CheckoutBuilder, RepoBuilder};
use git2::{AutotagOption, FetchOptions, Oid, RemoteCallbacks, Repository, StatusOptions};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    Cloned {
        commit: String,
    },
    Updated {
        from: String,
        to: String,
    },
    UpToDate {
        commit: String,
    },
    Copied,
    /// Not an error: the load goes on with what is on disk.
    Kept {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot clone {url} into {}: {source}", dest.display())]
    Clone {
        url: String,
        dest: PathBuf,
        source: git2::Error,
    },
    #[error("{url} has no branch, tag or commit `{reference}`")]
    NoSuchRef { url: String, reference: String },
    #[error("source directory {} does not exist or is not a directory", .0.display())]
    NoSource(PathBuf),
    #[error("cannot copy {} to {}: {source}", src.display(), dest.display())]
    Copy {
        src: PathBuf,
        dest: PathBuf,
        source: io::Error,
    },
    #[error("cannot prepare {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "plugin `{plugin}`: refused to copy {}: the symlink {} leads into AIGIS's home {}; \
         a local plugin's links must stay inside its directory or lead outside the home",
        src.display(), link.display(), home.display()
    )]
    LinkIntoHome {
        plugin: String,
        src: PathBuf,
        link: PathBuf,
        home: PathBuf,
    },
    #[error(
        "plugin `{plugin}`: refused to copy {}: the symlink {} leads to what not every user \
         of this host may read; a local plugin's links must stay inside its directory or \
         lead to public files",
        src.display(), link.display()
    )]
    LinkToPrivate {
        plugin: String,
        src: PathBuf,
        link: PathBuf,
    },
    #[error(
        "plugin `{plugin}`: refused to copy {}: it is not a regular file or a directory \
         (a FIFO, a socket or a device, or a link to one)",
        path.display()
    )]
    NotRegular { plugin: String, path: PathBuf },
    /// An `AIGIS.config` or `AIGIS.core` that is not the plugin's own.
    #[error("{0}")]
    NotOwnFile(String),
    #[error(
        "plugin `{plugin}`: refused to copy {}: it contains AIGIS's home {}",
        src.display(), home.display()
    )]
    SourceHoldsHome {
        plugin: String,
        src: PathBuf,
        home: PathBuf,
    },
}

/// Clones `url` into `dest`, or updates the clone already there.
///
/// `reference` is a branch, tag or commit; without it the remote's default
/// branch (where its HEAD points) is used.
pub fn fetch_git(
    url: &str,
    reference: Option<&str>,
    dest: &Path,
) -> Result<FetchOutcome, FetchError> {
    fetch_git_with_progress(url, reference, dest, &mut |_| {})
}

/// [`fetch_git`], telling `progress` the percentage of objects received
/// whenever it changes.
pub fn fetch_git_with_progress(
    url: &str,
    reference: Option<&str>,
    dest: &Path,
    progress: &mut dyn FnMut(u8),
) -> Result<FetchOutcome, FetchError> {
    git_ready();
    if dest.exists() {
        return Ok(update(url, reference, dest, progress)
            .unwrap_or_else(|reason| FetchOutcome::Kept { reason }));
    }
    let tmp = sibling(dest, "clone")?;
    let result = clone_into(url, reference, &tmp, progress).map_err(|e| match e {
        // Name the destination the operator knows, not the temporary one.
        FetchError::Clone { url, source, .. } => FetchError::Clone {
            url,
            dest: dest.to_path_buf(),
            source,
        },
        other => other,
    });
    match result {
        Ok(commit) => {
            fs::rename(&tmp, dest).map_err(|source| FetchError::Io {
                path: dest.to_path_buf(),
                source,
            })?;
            Ok(FetchOutcome::Cloned { commit })
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Fetch options that report transfer progress as a percentage.
fn with_progress(progress: &mut dyn FnMut(u8)) -> FetchOptions<'_> {
    let mut last = None;
    let mut callbacks = RemoteCallbacks::new();
    callbacks.transfer_progress(move |p| {
        let total = p.total_objects().max(1);
        let pct = (p.received_objects() * 100 / total).min(100) as u8;
        if last != Some(pct) {
            last = Some(pct);
            progress(pct);
        }
        true
    });
    let mut fetch = FetchOptions::new();
    fetch.remote_callbacks(callbacks);
    fetch.download_tags(AutotagOption::All);
    fetch
}

fn clone_into(
    url: &str,
    reference: Option<&str>,
    into: &Path,
    progress: &mut dyn FnMut(u8),
) -> Result<String, FetchError> {
    let fetch = with_progress(progress);
    let repo = RepoBuilder::new()
        .fetch_options(fetch)
        .clone(url, into)
        .map_err(|source| FetchError::Clone {
            url: url.to_string(),
            dest: into.to_path_buf(),
            source,
        })?;
    if let Some(reference) = reference {
        let target = resolve(&repo, reference).ok_or_else(|| FetchError::NoSuchRef {
            url: url.to_string(),
            reference: reference.to_string(),
        })?;
        move_to(&repo, &target).map_err(|source| FetchError::Clone {
            url: url.to_string(),
            dest: into.to_path_buf(),
            source,
        })?;
    }
    head_commit(&repo).map_err(|source| FetchError::Clone {
        url: url.to_string(),
        dest: into.to_path_buf(),
        source,
    })
}

/// What a reference names after a fetch.
enum Target {
    /// A remote branch: check out a local branch of that name following it.
    Branch { name: String, oid: Oid },
    /// A tag or a commit: detached HEAD.
    Detached(Oid),
}

impl Target {
    fn oid(&self) -> Oid {
        match self {
            Target::Branch { oid, .. } | Target::Detached(oid) => *oid,
        }
    }
}

fn resolve(repo: &Repository, reference: &str) -> Option<Target> {
    if let Ok(r) = repo.find_reference(&format!("refs/remotes/origin/{reference}")) {
        let oid = r.peel_to_commit().ok()?.id();
        return Some(Target::Branch {
            name: reference.to_string(),
            oid,
        });
    }
    if let Ok(r) = repo.find_reference(&format!("refs/tags/{reference}")) {
        return Some(Target::Detached(r.peel_to_commit().ok()?.id()));
    }
    let obj = repo.revparse_single(reference).ok()?;
    Some(Target::Detached(obj.peel_to_commit().ok()?.id()))
}

/// Checks out `target` without overwriting local changes (safe checkout).
fn move_to(repo: &Repository, target: &Target) -> Result<(), git2::Error> {
    let commit = repo.find_commit(target.oid())?;
    repo.checkout_tree(commit.as_object(), Some(CheckoutBuilder::new().safe()))?;
    match target {
        Target::Branch { name, oid } => {
            let refname = format!("refs/heads/{name}");
            repo.reference(&refname, *oid, true, "aigis: fast-forward")?;
            repo.set_head(&refname)
        }
        Target::Detached(oid) => repo.set_head_detached(*oid),
    }
}

fn head_commit(repo: &Repository) -> Result<String, git2::Error> {
    Ok(short(repo.head()?.peel_to_commit()?.id()))
}

fn short(oid: Oid) -> String {
    oid.to_string().chars().take(10).collect()
}

/// libgit2, ready: every use of `git2` in AIGIS calls this first.
///
/// The first call initialises libgit2, which loads the system's CA bundle
/// (20-40 ms here, so `aigis run` starts it on a thread of its own rather
/// than before anything else), and lets libgit2 open a clone whose working
/// tree another user owns: a plugin with a user of its own owns its tree,
/// all but `.git`, which [`update`] checks itself (libgit2 would refuse the
/// whole clone, as git does for a "dubious" owner). Later calls wait until
/// the first is done.
pub fn git_ready() {
    static READY: std::sync::Once = std::sync::Once::new();
    READY.call_once(|| {
        // SAFETY: the option is a libgit2 global set without
        // synchronisation. No other use of libgit2 runs meanwhile: every
        // one calls `git_ready` first, and `Once` holds it until this is
        // done. The option takes a plain int.
        let _ = unsafe { git2::opts::set_verify_owner_validation(false) };
    });
}

/// Refuses `dest/.git` unless it is a directory (not a link) owned by this
/// process's user.
fn own_git_dir(dest: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let git = dest.join(".git");
    let Ok(meta) = fs::symlink_metadata(&git) else {
        return Err(format!("{} exists but is not a git clone", dest.display()));
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me {
        return Err(format!(
            "{} is not the clone AIGIS made (a link, or owned by uid {}); remove {} to clone afresh",
            git.display(),
            meta.uid(),
            dest.display()
        ));
    }
    Ok(())
}

/// Fetch + fast-forward of an existing clone. `Err` is the reason to keep
/// what is on disk.
fn update(
    url: &str,
    reference: Option<&str>,
    dest: &Path,
    progress: &mut dyn FnMut(u8),
) -> Result<FetchOutcome, String> {
    own_git_dir(dest)?;
    let repo = Repository::open(dest)
        .map_err(|_| format!("{} exists but is not a git clone", dest.display()))?;
    let mut remote = repo
        .find_remote("origin")
        .map_err(|e| format!("the clone has no `origin` remote: {}", e.message()))?;
    if remote.url() != Some(url) {
        return Err(format!(
            "the clone's origin is {}, not {url}; remove {} to clone afresh",
            remote.url().unwrap_or("?"),
            dest.display()
        ));
    }
    let mut opts = with_progress(progress);
    remote
        .fetch::<&str>(&[], Some(&mut opts), None)
        .map_err(|e| format!("fetch from {url} failed: {}", e.message()))?;
    // The remote's HEAD may have moved to another default branch.
    let _ = remote.disconnect();

    let head = repo.head().map_err(|e| e.message().to_string())?;
    let head_oid = head
        .peel_to_commit()
        .map_err(|e| e.message().to_string())?
        .id();
    let target = match reference {
        Some(r) => {
            resolve(&repo, r).ok_or_else(|| format!("{url} has no branch, tag or commit `{r}`"))?
        }
        None => {
            let branch = if head.is_branch() {
                head.shorthand().map(str::to_string)
            } else {
                None
            };
            let branch = match branch {
                Some(b) => b,
                None => default_branch(&repo).ok_or("cannot tell the remote's default branch")?,
            };
            resolve(&repo, &branch)
                .ok_or_else(|| format!("{url} has no branch `{branch}` any more"))?
        }
    };
    if target.oid() == head_oid && matches!(target, Target::Detached(_)) == !head.is_branch() {
        return Ok(FetchOutcome::UpToDate {
            commit: short(head_oid),
        });
    }
    if has_local_changes(&repo) {
        return Err(format!(
            "{} has local modifications; not updating it",
            dest.display()
        ));
    }
    if let Target::Branch { oid, .. } = &target {
        let same_branch = head.is_branch() && head.shorthand() == reference.or(head.shorthand());
        if same_branch
            && *oid != head_oid
            && !repo.graph_descendant_of(*oid, head_oid).unwrap_or(false)
        {
            return Err("the local branch has diverged from the remote; not updating it".into());
        }
    }
    drop(head);
    move_to(&repo, &target).map_err(|e| format!("checkout failed: {}", e.message()))?;
    Ok(FetchOutcome::Updated {
        from: short(head_oid),
        to: short(target.oid()),
    })
}

fn default_branch(repo: &Repository) -> Option<String> {
    let r = repo.find_reference("refs/remotes/origin/HEAD").ok()?;
    let target = r.symbolic_target()?;
    target
        .strip_prefix("refs/remotes/origin/")
        .map(str::to_string)
}

/// Changes to tracked files. Untracked files (secrets, files the plugin
/// writes) do not count.
fn has_local_changes(repo: &Repository) -> bool {
    let mut opts = StatusOptions::new();
    opts.include_untracked(false).include_ignored(false);
    repo.statuses(Some(&mut opts))
        .map(|s| !s.is_empty())
        .unwrap_or(true)
}

/// Copies directory `src` to `dest` like Python's `shutil.copytree`: symlinks
/// followed, permission bits kept (but never setuid, setgid or sticky: a
/// setuid file copied by root would be setuid-root). An existing `dest` is
/// left alone.
///
/// The symlink rule. `dest` is `<home>/ext/<plugin>`, so AIGIS's home is
/// its grandparent. A link whose target is inside `src` is followed. One
/// that leads outside `src` is followed only to what every user of this
/// host may read anyway (`/usr/share/...`: world-readable, through
/// world-searchable directories) and never into the home; any other
/// (`<home>/secrets/...`, central's `~/.ssh/id_ed25519`, `/etc/shadow`)
/// fails the copy, naming the link, not what it points to. Otherwise a
/// plugin directory could copy what only central's user may read into its
/// own tree, and from there to its own user or a LAN host. Only regular
/// files and directories are copied: a FIFO or a device (or a link to
/// one) fails the copy rather than blocking it or reading forever. A `src`
/// that contains the home is refused outright. When the home cannot be
/// resolved, every link that leaves `src` is refused. `AIGIS/AIGIS.config`
/// and `AIGIS/AIGIS.core` may not lead outside `src` at all ([`plugin_file`]).
pub fn copy_local(plugin: &str, src: &Path, dest: &Path) -> Result<FetchOutcome, FetchError> {
    if !src.is_dir() {
        return Err(FetchError::NoSource(src.to_path_buf()));
    }
    if let Some(kept) = keep_existing_copy(dest) {
        return Ok(kept);
    }
    for name in ["AIGIS.config", "AIGIS.core"] {
        plugin_file(plugin, src, name).map_err(FetchError::NotOwnFile)?;
    }
    let tmp = sibling(dest, "copy")?;
    let copy_err = |source| FetchError::Copy {
        src: src.to_path_buf(),
        dest: dest.to_path_buf(),
        source,
    };
    let home = dest.parent().and_then(Path::parent);
    let rules = LinkRules {
        src: fs::canonicalize(src).map_err(copy_err)?,
        home: home.and_then(|h| fs::canonicalize(h).ok()),
    };
    if let Some(real_home) = &rules.home {
        if real_home.starts_with(&rules.src) {
            return Err(FetchError::SourceHoldsHome {
                plugin: plugin.to_string(),
                src: src.to_path_buf(),
                home: home.unwrap_or(real_home.as_path()).to_path_buf(),
            });
        }
    }
    if let Err(e) = copy_tree(src, &tmp, &rules) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(match e {
            CopyFailure::Io(e) => copy_err(e),
            CopyFailure::IntoHome(link) => FetchError::LinkIntoHome {
                plugin: plugin.to_string(),
                src: src.to_path_buf(),
                link,
                home: home.unwrap_or(Path::new("?")).to_path_buf(),
            },
            CopyFailure::Private(link) => FetchError::LinkToPrivate {
                plugin: plugin.to_string(),
                src: src.to_path_buf(),
                link,
            },
            CopyFailure::NotRegular(path) => FetchError::NotRegular {
                plugin: plugin.to_string(),
                path,
            },
        });
    }
    fs::rename(&tmp, dest).map_err(copy_err)?;
    Ok(FetchOutcome::Copied)
}

/// Which symlinks a local copy follows (see [`copy_local`]).
struct LinkRules {
    /// The source, resolved.
    src: PathBuf,
    /// AIGIS's home, resolved; `None` when it cannot be.
    home: Option<PathBuf>,
}

impl LinkRules {
    /// May the copy follow `link`?
    fn check(&self, link: &Path) -> Result<(), CopyFailure> {
        let target = fs::canonicalize(link)?;
        if target.starts_with(&self.src) {
            return Ok(());
        }
        match &self.home {
            Some(home) if !target.starts_with(home) => {}
            _ => return Err(CopyFailure::IntoHome(link.to_path_buf())),
        }
        if !public(&target) {
            return Err(CopyFailure::Private(link.to_path_buf()));
        }
        Ok(())
    }
}

/// Whether every user of this host may read `path` (resolved): readable
/// (and, for a directory, searchable) by others, through directories
/// others may search.
fn public(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).map(|m| m.permissions().mode());
    let dirs_open = path
        .ancestors()
        .skip(1)
        .all(|d| mode(d).is_ok_and(|m| m & 0o001 != 0));
    let readable = fs::metadata(path).is_ok_and(|m| {
        let bits = m.permissions().mode();
        bits & 0o004 != 0 && (!m.is_dir() || bits & 0o001 != 0)
    });
    dirs_open && readable
}

enum CopyFailure {
    Io(io::Error),
    /// This link leads into the home.
    IntoHome(PathBuf),
    /// This link leads to what not every user here may read.
    Private(PathBuf),
    /// This is (or leads to) neither a regular file nor a directory.
    NotRegular(PathBuf),
}

impl From<io::Error> for CopyFailure {
    fn from(e: io::Error) -> CopyFailure {
        CopyFailure::Io(e)
    }
}

fn copy_tree(src: &Path, dest: &Path, rules: &LinkRules) -> Result<(), CopyFailure> {
    fs::create_dir(dest)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dest.join(entry.file_name());
        if entry.file_type()?.is_symlink() {
            rules.check(&from)?;
        }
        // fs::metadata follows symlinks: a link is copied as what it points to.
        let meta = fs::metadata(&from)?;
        if meta.is_dir() {
            copy_tree(&from, &to, rules)?;
        } else if meta.is_file() {
            copy_file(&from, &to)?;
        } else {
            return Err(CopyFailure::NotRegular(from));
        }
    }
    fs::set_permissions(dest, plain_mode(&fs::metadata(src)?))?;
    Ok(())
}

/// `meta`'s permission bits without setuid, setgid or sticky.
fn plain_mode(meta: &fs::Metadata) -> fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    fs::Permissions::from_mode(meta.permissions().mode() & 0o777)
}

/// Copies one regular file, opened without blocking and checked to be
/// one (it may have been swapped for a FIFO since it was looked at), its
/// mode without the bits above `0o777`.
fn copy_file(from: &Path, to: &Path) -> Result<(), CopyFailure> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(from)?;
    let meta = reader.metadata()?;
    if !meta.is_file() {
        return Err(CopyFailure::NotRegular(from.to_path_buf()));
    }
    let mut writer = fs::File::create(to)?;
    io::copy(&mut reader, &mut writer)?;
    writer.set_permissions(plain_mode(&meta))?;
    Ok(())
}

/// `root/AIGIS/<name>` (the plugin's `AIGIS.config` or `AIGIS.core`),
/// checked to be the plugin's own file: when it (or `AIGIS/`) is a symlink
/// that resolves outside `root`, it is refused. Its contents would
/// otherwise be quoted by a parse error (a config line, a Python
/// traceback): a link to a secret would print the secret. The error names
/// the link and quotes nothing of its target. A missing file is not an
/// error here; reading it says so.
pub fn plugin_file(plugin: &str, root: &Path, name: &str) -> Result<PathBuf, String> {
    let path = root.join("AIGIS").join(name);
    let Ok(real) = fs::canonicalize(&path) else {
        return Ok(path);
    };
    let inside = fs::canonicalize(root).is_ok_and(|r| real.starts_with(r));
    if inside {
        Ok(path)
    } else {
        Err(format!(
            "plugin `{plugin}`: {} is a symlink that leads outside the plugin's directory {}; \
             refused (a plugin's {name} must be its own file)",
            path.display(),
            root.display()
        ))
    }
}

/// A local-directory plugin already at `dest` is never copied over.
fn keep_existing_copy(dest: &Path) -> Option<FetchOutcome> {
    dest.exists().then(|| FetchOutcome::Kept {
        reason: format!(
            "{} already exists and a local source is never copied over it; remove it to take a fresh copy",
            dest.display()
        ),
    })
}

/// A fresh temporary path beside `dest` (same filesystem, so rename works).
fn sibling(dest: &Path, what: &str) -> Result<PathBuf, FetchError> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|source| FetchError::Io {
        path: parent.to_path_buf(),
        source,
    })?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());
    let tmp = parent.join(format!(".{name}.aigis-{what}-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|source| FetchError::Io {
            path: tmp.clone(),
            source,
        })?;
    }
    Ok(tmp)
}
