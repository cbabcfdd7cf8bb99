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
use std::sync::Mutex;

const LOADER: &str = include_str!("../../python/loader.py");
const SHIM: &str = include_str!("../../python/shim.py");
const PROXY: &str = include_str!("../../python/proxy.py");

/// The fd number the control socket has in the plugin process.
pub const CONTROL_FD: i32 = 3;

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
/// removed by [`remove_shim_dir`].
fn shim_dir(owner: Option<(u32, u32)>) -> Result<PathBuf, String> {
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

/// Writes our files into `dir`, which this process has just created; a
/// file already there (it cannot be) is an error, never overwritten. With
/// `owner`, the files and then the directory are given to it.
fn write_files(dir: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    for (name, text) in [
        ("loader.py", LOADER),
        ("shim.py", SHIM),
        ("proxy.py", PROXY),
    ] {
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

/// The command that runs `launch` under the shim.
pub fn command(
    plugin: &str,
    launch: &PythonEntry,
    cwd: &Path,
    core_plugins: &[CorePlugin],
    proxy: bool,
    user: Option<&crate::user::User>,
) -> Result<ShimCommand, String> {
    resolve_launch(launch, cwd)?;
    let python = python_for(user)?;
    let shim = shim_dir(user.map(|u| (u.uid, u.gid)))?.join("shim.py");
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
    Ok(ShimCommand { argv, env })
}
