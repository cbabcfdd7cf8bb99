//! A Python environment per plugin, made and kept on the host that runs it.
//!
//! The hosts of a home network run Debian, Ubuntu and Raspberry Pi OS, whose
//! Python is PEP 668 "externally managed": the `pip install --user -r` that
//! every real plugin's requirements command says is refused there. So a
//! plugin whose requirements command is a Python one gets an environment of
//! its own (`<place>/envs/<plugin>`), and the command runs in it unmodified:
//!
//! - the environment is a venv that sees the system's site-packages, and
//!   `PYTHONUSERBASE` is the environment itself, so `pip install --user`
//!   installs into the environment's own site-packages (the user scheme
//!   and a venv lay out alike), never into `~/.local` or the system, and
//!   pip, inside a venv, never meets `EXTERNALLY-MANAGED`;
//! - the interpreter and pip names the command uses (`python3.10`,
//!   `pip3.7`) are names in the environment's `bin`, first on `PATH`;
//! - made from the interpreter the command names when the host has it,
//!   else from the host's `python3` (with a warning that says so); with
//!   `uv` where the host has it, else `python3 -m venv`;
//! - kept while the interpreter is unchanged and the environment whole,
//!   and a plugin's install kept while its command and the requirements
//!   file's contents are unchanged (content keys in the environment), so a
//!   restart installs nothing. The core's environment is shared by the
//!   core plugins, each with its own install key.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// Where the key of the interpreter an environment was made from is kept.
const PYTHON_KEY: &str = ".aigis-python";

/// Where the key of what a plugin installed into an environment is kept.
fn install_key_file(dir: &Path, plugin: &str) -> PathBuf {
    dir.join(format!(".aigis-installed-{plugin}"))
}

/// One environment is made or changed at a time: core plugins share one,
/// and their installs run side by side.
async fn hold(dir: &Path) -> tokio::sync::OwnedMutexGuard<()> {
    type Gate = std::sync::Arc<tokio::sync::Mutex<()>>;
    static HELD: std::sync::Mutex<Vec<(PathBuf, Gate)>> = std::sync::Mutex::new(Vec::new());
    let gate = {
        let mut held = crate::lock(&HELD);
        match held.iter().find(|(d, _)| d == dir) {
            Some((_, gate)) => gate.clone(),
            None => {
                let gate = Gate::default();
                held.push((dir.to_path_buf(), gate.clone()));
                gate
            }
        }
    };
    gate.lock_owned().await
}

/// The names in a requirements command that say it is a Python one:
/// `pip`, `pip3`, `pip3.7`, `python`, `python3`, `python3.10` (also as a
/// path's last part), and `uv`.
pub fn python_tools(line: &str) -> Vec<String> {
    line.split(|c: char| c.is_whitespace() || ";&|()`".contains(c))
        .filter_map(|word| word.rsplit('/').next())
        .filter(|name| {
            let stem = name
                .strip_prefix("python")
                .or_else(|| name.strip_prefix("pip"));
            *name == "uv" || stem.is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        })
        .map(str::to_string)
        .collect()
}

/// Whether a requirements command is a Python one (gets an environment).
pub fn is_python_command(line: &str) -> bool {
    !python_tools(line).is_empty()
}

/// The Python version a tool name asks for: `3.10` of `python3.10` or
/// `pip3.10`; `None` for the unversioned names.
fn version_named(tool: &str) -> Option<&str> {
    let v = tool
        .strip_prefix("python")
        .or_else(|| tool.strip_prefix("pip"))?;
    v.contains('.').then_some(v)
}

/// An environment ready for a plugin's requirements command; held (no
/// other install changes it) until dropped.
#[derive(Debug)]
pub struct Ready {
    pub dir: PathBuf,
    /// False when its install was kept as it was: nothing needs installing.
    pub fresh: bool,
    /// Whether the environment itself was made now.
    pub made: bool,
    /// What the operator should know (an interpreter the host lacks).
    pub warnings: Vec<String>,
    /// The plugin's install key, written by [`Ready::installed`].
    key: String,
    plugin: String,
    _held: tokio::sync::OwnedMutexGuard<()>,
}

impl Ready {
    /// The requirements command succeeded: the install is kept from now
    /// on while nothing it was made from changes.
    pub fn installed(&self) -> std::io::Result<()> {
        std::fs::write(install_key_file(&self.dir, &self.plugin), &self.key)
    }
}

/// Makes (or keeps) the environment at `dir` for `plugin`'s requirements
/// command `line`, whose file is `file`. `python` is the interpreter to
/// make it from when the caller decides (the core's: the Python central
/// embeds).
pub async fn prepare(
    dir: &Path,
    plugin: &str,
    line: &str,
    file: Option<&Path>,
    python: Option<&Path>,
) -> Result<Ready, String> {
    let held = hold(dir).await;
    let mut warnings = Vec::new();
    let base = match python {
        Some(p) => p.to_path_buf(),
        None => base_interpreter(line, &mut warnings)?,
    };
    let python_key = interpreter_key(&base);
    let key = requirements_key(line, file);
    let whole = std::fs::read_to_string(dir.join(PYTHON_KEY)).is_ok_and(|k| k == python_key)
        && dir.join("bin/python3").exists();
    if !whole {
        make(dir, &base).await?;
        std::fs::write(dir.join(PYTHON_KEY), &python_key)
            .map_err(|e| format!("cannot write into {}: {e}", dir.display()))?;
    }
    for tool in python_tools(line) {
        alias(dir, &tool);
    }
    let fresh =
        !whole || std::fs::read_to_string(install_key_file(dir, plugin)).map_or(true, |k| k != key);
    if fresh {
        // Until the command succeeds, this install is not kept.
        let _ = std::fs::remove_file(install_key_file(dir, plugin));
    }
    Ok(Ready {
        dir: dir.to_path_buf(),
        fresh,
        made: !whole,
        warnings,
        key,
        plugin: plugin.to_string(),
        _held: held,
    })
}

/// The interpreter the command names (`python3.10`, `pip3.7`) when this
/// host has it, else its `python3`.
fn base_interpreter(line: &str, warnings: &mut Vec<String>) -> Result<PathBuf, String> {
    let python3 = || {
        crate::install::find_on_path("python3").ok_or_else(|| {
            "python3 is not installed on this host; the requirements command needs it".to_string()
        })
    };
    let Some(version) = python_tools(line)
        .iter()
        .find_map(|t| version_named(t).map(str::to_string))
    else {
        return python3();
    };
    if let Some(found) = crate::install::find_on_path(&format!("python{version}")) {
        return Ok(found);
    }
    let fallback = python3()?;
    warnings.push(format!(
        "the requirements command names Python {version}, which this host does not have; \
         its environment is made from {} instead",
        fallback.display()
    ));
    Ok(fallback)
}

/// What an install is kept by: the command and the requirements file's
/// contents.
fn requirements_key(line: &str, file: Option<&Path>) -> String {
    let mut h = Sha256::new();
    h.update(line.as_bytes());
    h.update([0]);
    if let Some(contents) = file.and_then(|f| std::fs::read(f).ok()) {
        h.update(&contents);
    }
    proto::hex(&h.finalize())
}

/// What an environment is kept by: its interpreter (real path, size and
/// time: an upgraded Python makes it afresh).
fn interpreter_key(base: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut h = Sha256::new();
    let real = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
    h.update(real.as_os_str().as_encoded_bytes());
    if let Ok(m) = std::fs::metadata(&real) {
        h.update(m.size().to_le_bytes());
        h.update(m.mtime().to_le_bytes());
    }
    proto::hex(&h.finalize())
}

/// A new environment at `dir` from `base`: with `uv` where the host has
/// it, else `python -m venv`. Anything at `dir` before is removed.
async fn make(dir: &Path, base: &Path) -> Result<(), String> {
    if std::fs::symlink_metadata(dir).is_ok() {
        std::fs::remove_dir_all(dir)
            .map_err(|e| format!("cannot remove the old environment {}: {e}", dir.display()))?;
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let mut cmd = match crate::install::find_on_path("uv") {
        Some(uv) => {
            let mut c = Command::new(uv);
            c.args([
                "venv",
                "--quiet",
                "--seed",
                "--system-site-packages",
                "--python",
            ])
            .arg(base)
            .arg(dir);
            c
        }
        None => {
            let mut c = Command::new(base);
            c.args(["-m", "venv", "--system-site-packages"]).arg(dir);
            c
        }
    };
    let out = cmd
        .env_remove("VIRTUAL_ENV")
        .env_remove("PYTHONHOME")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", base.display()))?;
    if out.status.success() && dir.join("bin/python3").exists() {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(dir);
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    if said.contains("ensurepip") || said.contains("No module named venv") {
        return Err(no_venv(&base.display().to_string()));
    }
    Err(format!(
        "making a Python environment in {} with {} failed ({}): {}",
        dir.display(),
        base.display(),
        out.status,
        said.trim()
    ))
}

/// What a host whose `python` cannot make an environment (and that has
/// no `uv`) is told.
pub fn no_venv(python: &str) -> String {
    format!(
        "{python} cannot make a Python environment: its venv module is not installed; \
         install it (Debian, Ubuntu, Raspberry Pi OS: apt-get install python3-venv) or install uv"
    )
}

/// A shell test that prints `VENV_MISSING` when this host can make no
/// Python environment: no `uv`, and `python3` without venv and ensurepip.
pub const VENV_PROBE: &str = "command -v uv >/dev/null 2>&1 || \
     python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || echo VENV_MISSING";

/// Makes `tool` (`pip3.7`, `python3.10`) a name of the environment's own
/// pip or python, when the environment has no such name.
fn alias(dir: &Path, tool: &str) {
    let bin = dir.join("bin");
    let target = if tool.starts_with("pip") {
        "pip"
    } else {
        "python3"
    };
    if tool == "uv" || bin.join(tool).exists() || !bin.join(target).exists() {
        return;
    }
    let _ = std::os::unix::fs::symlink(target, bin.join(tool));
}

/// The environment a plugin's processes (and its requirements command)
/// run with: its `bin` first on `PATH`, `VIRTUAL_ENV`, and
/// `PYTHONUSERBASE` at the environment, where `pip install --user` then
/// installs.
pub fn vars(dir: &Path) -> Vec<(String, String)> {
    let bin = dir.join("bin");
    let path = match std::env::var_os("PATH") {
        Some(rest) if !rest.is_empty() => {
            format!("{}:{}", bin.display(), rest.to_string_lossy())
        }
        _ => format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display()),
    };
    vec![
        ("PATH".into(), path),
        ("VIRTUAL_ENV".into(), dir.display().to_string()),
        ("PYTHONUSERBASE".into(), dir.display().to_string()),
    ]
}

/// The interpreter an internal plugin with an environment runs with.
pub fn python(dir: &Path) -> PathBuf {
    dir.join("bin/python3")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_commands_are_told_by_their_tools() {
        for (line, tools) in [
            ("pip install --user -r req.txt", vec!["pip"]),
            ("pip3 install --user -r", vec!["pip3"]),
            ("pip3.7 install --user -r", vec!["pip3.7"]),
            (
                "python3.10 -m pip install --user -r",
                vec!["python3.10", "pip"],
            ),
            ("/usr/bin/python3 -m pip install -r", vec!["python3", "pip"]),
            ("cd src && python -m pip install .", vec!["python", "pip"]),
            ("uv pip install -r", vec!["uv", "pip"]),
            ("npm install", vec![]),
            ("./pipeline.sh && make", vec![]),
            ("pipx install x", vec![]),
        ] {
            assert_eq!(python_tools(line), tools, "{line}");
        }
        assert_eq!(version_named("pip3.7"), Some("3.7"));
        assert_eq!(version_named("python3.10"), Some("3.10"));
        assert_eq!(version_named("python3"), None);
    }

    /// The command and the file's contents key an install, the
    /// interpreter an environment; nothing else.
    #[test]
    fn the_keys_change_with_what_they_are_made_from() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("req.txt");
        std::fs::write(&file, "tinypkg==1.0\n").unwrap();
        let one = requirements_key("pip install -r", Some(&file));
        assert_eq!(one, requirements_key("pip install -r", Some(&file)));
        assert_ne!(one, requirements_key("pip3 install -r", Some(&file)));
        std::fs::write(&file, "tinypkg==2.0\n").unwrap();
        assert_ne!(one, requirements_key("pip install -r", Some(&file)));
        let sh = interpreter_key(Path::new("/bin/sh"));
        assert_eq!(sh, interpreter_key(Path::new("/bin/sh")));
        assert_ne!(sh, interpreter_key(Path::new("/bin/ls")));
    }
}
