//! Internal plugins: the shim that runs them and the copied core it loads.
//!
//! The shim and the SKILLS loader are plain Python files kept in the repo's
//! `python/` directory and compiled into this binary, so an agent on any host
//! carries the exact code central uses. They are written once per agent
//! process into a private directory and run with the host's `python3`.

use crate::install::find_on_path;
use proto::{CorePlugin, PythonEntry};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

const LOADER: &str = include_str!("../../python/loader.py");
const SHIM: &str = include_str!("../../python/shim.py");
const PROXY: &str = include_str!("../../python/proxy.py");

/// The fd number the control socket has in the plugin process.
pub const CONTROL_FD: i32 = 3;

/// The agent's own directory (a LAN host's daemon's dir, or the local
/// agent's `--dir`), where the shim of plugins that run as the agent's own
/// user is kept across agent runs (see [`kept_dir`]); unset when the agent
/// has none.
static KEEP_IN: OnceLock<PathBuf> = OnceLock::new();

/// Keeps the shim in `agent_dir` (the agent's own, AIGIS's alone) rather
/// than in a new temporary directory per agent process.
pub fn keep_shim_in(agent_dir: &Path) {
    let _ = KEEP_IN.set(agent_dir.to_path_buf());
}

/// The shim directories made so far, by the uid they belong to (`None`:
/// the agent's own).
static SHIM_DIRS: Mutex<Vec<(Option<u32>, tempfile::TempDir)>> = Mutex::new(Vec::new());

/// The directory holding `shim.py` and `loader.py` for plugins running as
/// `owner` (uid, gid; `None`: as the agent), written on first use.
///
/// Its name is random and it is created here, mode 0700, never reused: a
/// predictable name (it was `aigis-agent-<pid>`) could be created in
/// advance by another user, and anything they put in it would be imported
/// by the shim (`python3 shim.py` puts this directory on `sys.path`) and
/// run as this agent's user. A plugin with its own user gets a directory
/// of its own, given to that user once written: it must read the shim,
/// and it may not read another user's. Kept for the agent's lifetime,
/// removed by [`remove_shim_dir`]. Plugins of the agent's own user get
/// the directory [`kept_dir`] keeps in the agent's dir instead, when it
/// has one.
fn shim_dir(owner: Option<(u32, u32)>) -> Result<PathBuf, String> {
    if let (None, Some(agent_dir)) = (owner, KEEP_IN.get()) {
        // A cache: when it cannot be kept, a temporary one does the job.
        if let Ok(dir) = kept_dir(agent_dir) {
            return Ok(dir);
        }
    }
    let mut dirs = crate::lock(&SHIM_DIRS);
    let uid = owner.map(|(uid, _)| uid);
    if let Some((_, dir)) = dirs.iter().find(|(u, _)| *u == uid) {
        return Ok(dir.path().to_path_buf());
    }
    let tmp = std::env::temp_dir();
    let dir = tempfile::Builder::new()
        .prefix("aigis-agent-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(&tmp)
        .map_err(|e| {
            format!(
                "cannot create a private directory for the Python shim in {}: {e}",
                tmp.display()
            )
        })?;
    write_files(dir.path(), owner).map_err(|e| {
        format!(
            "cannot write the Python shim into {}: {e}",
            dir.path().display()
        )
    })?;
    let path = dir.path().to_path_buf();
    dirs.push((uid, dir));
    Ok(path)
}

/// The shim's directory under the agent's own dir, named by its content,
/// written once and then reused by every agent of this build.
///
/// Python keeps a module's bytecode beside it (`__pycache__`) and trusts
/// it while the source's size and mtime are those it was compiled from.
/// A new temporary directory per agent run has every run compile
/// `proxy.py` and `loader.py` again (about 30 ms of the first plugin's
/// start); here they are written only when they are not there as this
/// build has them, so their mtime, and the bytecode, last.
///
/// The agent's dir is AIGIS's alone (a LAN host's is made under
/// `umask 077`, as `direct.rs` relies on too; central makes the local
/// agent's 0700). Even so a kept directory is used only when it is a real
/// directory of this user, mode 0700, holding exactly our texts; anything
/// else by that name, and the directories of other builds, are removed
/// and the files written afresh, into a temporary name renamed in place.
///
/// Plugins start at once: one check and write at a time, or one start's
/// sweep would remove the directory another has just been given.
fn kept_dir(agent_dir: &Path) -> std::io::Result<PathBuf> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    static NAME: OnceLock<String> = OnceLock::new();
    let _one = crate::lock(&ONE_AT_A_TIME);
    let name = NAME.get_or_init(|| {
        use sha2::{Digest, Sha256};
        let mut digest = Sha256::new();
        for (name, text) in FILES {
            digest.update(name.as_bytes());
            digest.update([0]);
            digest.update(text.as_bytes());
            digest.update([0]);
        }
        format!("python-{}", proto::hex(&digest.finalize()[..8]))
    });
    let dir = agent_dir.join(name);
    if is_ours(&dir) {
        return Ok(dir);
    }
    for entry in std::fs::read_dir(agent_dir)? {
        let entry = entry?;
        let other = entry.file_name();
        let other = other.to_string_lossy();
        if other.starts_with("python-") || other.starts_with(".python-") {
            let path = entry.path();
            let gone = match entry.file_type()?.is_dir() {
                true => std::fs::remove_dir_all(&path),
                false => std::fs::remove_file(&path),
            };
            gone?;
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix(".python-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(agent_dir)?;
    write_files(tmp.path(), None)?;
    std::fs::rename(tmp.path(), &dir)?;
    let _ = tmp.keep();
    Ok(dir)
}

/// Whether `dir` is a kept shim directory as [`kept_dir`] writes it.
fn is_ours(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return false;
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    meta.is_dir()
        && meta.uid() == me
        && meta.mode() & 0o777 == 0o700
        && FILES.iter().all(|(name, text)| {
            let path = dir.join(name);
            std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.uid() == me)
                && std::fs::read(&path).is_ok_and(|bytes| bytes == text.as_bytes())
        })
}

/// The files of a shim directory, by name.
const FILES: [(&str, &str); 3] = [
    ("loader.py", LOADER),
    ("shim.py", SHIM),
    ("proxy.py", PROXY),
];

/// Writes our files into `dir`, which this process has just created; a
/// file already there (it cannot be) is an error, never overwritten. With
/// `owner`, the files and then the directory are given to it.
fn write_files(dir: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    for (name, text) in FILES {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join(name))?;
        f.write_all(text.as_bytes())?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
    }
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// Removes the shim directories (at agent exit).
pub fn remove_shim_dir() {
    let dirs = crate::lock(&SHIM_DIRS);
    for (_, dir) in dirs.iter() {
        let _ = std::fs::remove_dir_all(dir.path());
    }
}

/// How to run an internal plugin: argv and the extra environment.
pub struct ShimCommand {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The shim's directory, which a confined plugin must read.
    pub dir: PathBuf,
}

/// Finds an internal plugin's `LAUNCH` (a module in `cwd`, its `ENTRYPOINT`,
/// or a file, already resolved against it by the config) before
/// anything starts, so a missing one fails the start with a message that
/// names what was tried. `aigis check` calls the same function.
pub fn resolve_launch(launch: &PythonEntry, cwd: &Path) -> Result<PathBuf, String> {
    match launch {
        PythonEntry::File(file) => {
            if file.is_file() {
                Ok(file.clone())
            } else {
                Err(format!("LAUNCH file {} does not exist", file.display()))
            }
        }
        PythonEntry::Module(module) => {
            let base = cwd.join(module.replace('.', "/"));
            let tried = [base.with_extension("py"), base.join("__init__.py")];
            tried.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
                format!(
                    "LAUNCH module `{module}` is not in ENTRYPOINT {}: tried {} and {}",
                    cwd.display(),
                    tried[0].display(),
                    tried[1].display()
                )
            })
        }
    }
}

/// The first `python3` on `PATH` that the plugin's user may run (a
/// pyenv under root's home is no use to another user).
fn python_for(user: Option<&crate::user::User>) -> Result<PathBuf, String> {
    let missing =
        "python3 is not installed on this host (internal plugins need Python 3.8 or newer)";
    let Some(user) = user else {
        return find_on_path("python3").ok_or_else(|| missing.to_string());
    };
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found: Vec<PathBuf> = std::env::split_paths(&path)
        .map(|dir| dir.join("python3"))
        .filter(|p| find_on_path(&p.to_string_lossy()).is_some())
        .collect();
    if let Some(p) = found.iter().find(|p| user.can_run(p)) {
        return Ok(p.clone());
    }
    match found.first() {
        None => Err(missing.to_string()),
        Some(p) => Err(format!(
            "{} cannot be run by the plugin's user `{}` (nor any other python3 on PATH): \
             let it reach one",
            p.display(),
            user.name
        )),
    }
}

/// Compiles the kept shim's modules with `python`, once: a confined
/// plugin may read the shim's directory but not write its bytecode there
/// (nor should one plugin write what the next imports), so the agent does
/// it for them. Nothing when bytecode is there already, or the host says
/// not to write any (`PYTHONDONTWRITEBYTECODE`).
fn precompile(dir: &Path, python: &Path) {
    let compiled = std::fs::read_dir(dir.join("__pycache__")).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("proxy."))
    });
    if compiled || std::env::var_os("PYTHONDONTWRITEBYTECODE").is_some_and(|v| !v.is_empty()) {
        return;
    }
    let _ = std::process::Command::new(python)
        .args(["-m", "compileall", "-q"])
        .arg(dir)
        .env_remove("PYTHONPYCACHEPREFIX")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// The command that runs `launch` under the shim.
pub fn command(
    plugin: &str,
    launch: &PythonEntry,
    cwd: &Path,
    core_plugins: &[CorePlugin],
    proxy: bool,
    user: Option<&crate::user::User>,
    env: Option<&Path>,
) -> Result<ShimCommand, String> {
    resolve_launch(launch, cwd)?;
    let python = match env {
        Some(env) => crate::venv::python(env),
        None => python_for(user)?,
    };
    let dir = shim_dir(user.map(|u| (u.uid, u.gid)))?;
    if KEEP_IN.get().is_some_and(|keep| dir.starts_with(keep)) {
        precompile(&dir, &python);
    }
    let shim = dir.join("shim.py");
    let cores: Vec<serde_json::Value> = core_plugins
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.name,
                "entrypoint": c.entrypoint.to_string_lossy(),
                "core_file": c.core_file.to_string_lossy(),
            })
        })
        .collect();
    let argv = vec![
        python.to_string_lossy().into_owned(),
        "-u".into(),
        shim.to_string_lossy().into_owned(),
    ];
    let launch = match launch {
        PythonEntry::Module(m) => ("AIGIS_LAUNCH_MODULE", m.clone()),
        PythonEntry::File(f) => ("AIGIS_LAUNCH", f.to_string_lossy().into_owned()),
    };
    let env = vec![
        ("AIGIS_PLUGIN".into(), plugin.to_string()),
        (launch.0.into(), launch.1),
        (
            "AIGIS_ENTRYPOINT".into(),
            cwd.to_string_lossy().into_owned(),
        ),
        (
            "AIGIS_CORE_PLUGINS".into(),
            serde_json::Value::Array(cores).to_string(),
        ),
        ("AIGIS_CONTROL_FD".into(), CONTROL_FD.to_string()),
        (
            "AIGIS_MODE".into(),
            if proxy { "proxy" } else { "copy" }.to_string(),
        ),
    ];
    Ok(ShimCommand { argv, env, dir })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mtimes(dir: &Path) -> Vec<i64> {
        FILES
            .iter()
            .map(|(name, _)| {
                let meta = std::fs::metadata(dir.join(name)).unwrap();
                meta.mtime() * 1_000_000_000 + meta.mtime_nsec()
            })
            .collect()
    }

    #[test]
    fn the_kept_shim_is_written_once_and_then_left_as_it_is() {
        let agent_dir = tempfile::tempdir().unwrap();
        let first = kept_dir(agent_dir.path()).unwrap();
        assert_eq!(std::fs::metadata(&first).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            std::fs::read_to_string(first.join("proxy.py")).unwrap(),
            PROXY
        );
        let written = mtimes(&first);
        // Python's bytecode beside it, as an earlier plugin left it.
        std::fs::create_dir(first.join("__pycache__")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));

        let again = kept_dir(agent_dir.path()).unwrap();
        assert_eq!(again, first);
        assert_eq!(mtimes(&again), written, "a kept file was written again");
        assert!(again.join("__pycache__").is_dir());
    }

    #[test]
    fn plugins_starting_at_once_all_get_the_kept_shim() {
        for _ in 0..20 {
            let agent_dir = tempfile::tempdir().unwrap();
            let start = std::sync::Barrier::new(8);
            std::thread::scope(|s| {
                let starts: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            let dir = kept_dir(agent_dir.path()).unwrap();
                            // What the plugin's python3 then reads.
                            std::fs::read_to_string(dir.join("shim.py"))
                        })
                    })
                    .collect();
                for started in starts {
                    assert_eq!(started.join().unwrap().unwrap(), SHIM);
                }
            });
        }
    }

    #[test]
    fn a_kept_shim_that_is_not_exactly_ours_is_written_afresh() {
        let agent_dir = tempfile::tempdir().unwrap();
        let dir = kept_dir(agent_dir.path()).unwrap();
        let older = agent_dir.path().join("python-0123456789abcdef");
        std::fs::create_dir(&older).unwrap();
        std::fs::write(agent_dir.path().join(".python-left"), b"").unwrap();
        std::fs::write(dir.join("shim.py"), b"import evil\n").unwrap();

        let again = kept_dir(agent_dir.path()).unwrap();
        assert_eq!(again, dir);
        assert_eq!(
            std::fs::read_to_string(again.join("shim.py")).unwrap(),
            SHIM
        );
        let left: Vec<_> = std::fs::read_dir(agent_dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![dir.file_name().unwrap().to_owned()]);

        // Open to others: not used as it is either.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let third = kept_dir(agent_dir.path()).unwrap();
        assert_eq!(std::fs::metadata(&third).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn a_plugin_with_a_user_of_its_own_gets_a_fresh_private_temporary_shim() {
        // SAFETY: getuid and getgid have no preconditions.
        let me = unsafe { (libc::getuid(), libc::getgid()) };
        // What another user could prepare: the name the agent once used.
        let predictable = std::env::temp_dir().join(format!("aigis-agent-{}", std::process::id()));
        let dir = shim_dir(Some(me)).unwrap();
        assert_eq!(dir.parent(), Some(std::env::temp_dir().as_path()));
        assert_ne!(dir, predictable);
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("aigis-agent-"), "{name}");
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        assert_eq!(meta.uid(), me.0);
        assert_eq!(std::fs::read_to_string(dir.join("shim.py")).unwrap(), SHIM);
        assert_eq!(shim_dir(Some(me)).unwrap(), dir, "one per user and agent");
        remove_shim_dir();
        assert!(!dir.exists());
    }
}
