//! The AIGIS home directory: `ext/` (plugins as fetched), `work/` (working
//! copies of plugins with a user of their own), `secrets/`, `log/`, `run/`.
//!
//! Chosen, first match wins, from `--home`, `$AIGIS_HOME`, `[aigis] home` in
//! the config, or the current directory.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    pub fn resolve(flag: Option<&Path>, from_config: Option<&Path>) -> anyhow::Result<Home> {
        let chosen = match (flag, std::env::var_os("AIGIS_HOME"), from_config) {
            (Some(p), _, _) => p.to_path_buf(),
            (None, Some(env), _) if !env.is_empty() => PathBuf::from(env),
            (None, _, Some(p)) => p.to_path_buf(),
            _ => std::env::current_dir()?,
        };
        let absolute = if chosen.is_absolute() {
            chosen
        } else {
            std::env::current_dir()?.join(chosen)
        };
        // `examples/.` reads better as `examples` in every message.
        let root = absolute
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        Ok(Home { root })
    }

    /// Creates the directories central writes to. `log/` holds what
    /// plugins print, `secrets/` every plugin's secrets and `run/agent/`
    /// code that plugins run, so they are the
    /// daemon user's alone (0700), also when an older AIGIS left them open:
    /// a plugin running as its own user reads its secrets where they were
    /// installed for it, never here.
    pub fn prepare(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        for (dir, private) in [
            (self.ext(), false),
            (self.work(), false),
            (self.envs(), false),
            (self.secrets(), true),
            (self.log(), true),
            (self.run(), false),
            (self.agent(), true),
        ] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(if private { 0o700 } else { 0o777 })
                .create(&dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
            if private {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| anyhow::anyhow!("cannot make {} private: {e}", dir.display()))?;
            }
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn ext(&self) -> PathBuf {
        self.root.join("ext")
    }
    /// Working copies of the plugins that run as a user of their own:
    /// theirs to write, while central reads only `ext/`.
    pub fn work(&self) -> PathBuf {
        self.root.join("work")
    }
    /// Python environments of the plugins that run on this host, one per
    /// plugin (`aigis_agent::venv`).
    pub fn envs(&self) -> PathBuf {
        self.root.join("envs")
    }
    /// The core's Python environment: core plugins' requirements, which
    /// the embedded interpreter imports.
    pub fn core_env(&self) -> PathBuf {
        self.root.join("core-env")
    }
    pub fn secrets(&self) -> PathBuf {
        self.root.join("secrets")
    }
    pub fn log(&self) -> PathBuf {
        self.root.join("log")
    }
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }
    /// The local agent's own directory (`aigis-agent --dir`), where it
    /// keeps the Python shim of internal plugins across runs.
    pub fn agent(&self) -> PathBuf {
        self.run().join("agent")
    }
}
