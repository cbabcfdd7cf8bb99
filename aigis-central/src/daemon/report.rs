//! What the daemon tells about its plugins and its core: `aigis status`
//! (every plugin, or one whole) and `aigis skills`.

use super::Daemon;
use crate::control::PluginSkills;
use crate::status::PluginStatus;
use aigis_agent::fetch::plugin_file;
use config::{PluginKind, Source};
use pyo3::prelude::*;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// How long a question to the core may wait: the Python thread may be busy
/// loading or unloading a plugin, and `status` must still answer.
const CORE_PATIENCE: Duration = Duration::from_secs(3);

/// The longest `AIGIS.config` read to tell where a plugin will run.
const MAX_CONFIG: u64 = 1 << 20;

impl Daemon {
    /// Every plugin, in load order; with `only`, that one plugin with what
    /// takes a look at its files and the core (its commit, its skills).
    pub(super) async fn status(
        self: &Arc<Self>,
        only: Option<&str>,
    ) -> Result<Vec<PluginStatus>, String> {
        let mut rows = self.registry.snapshot();
        if let Some(name) = only {
            rows.retain(|r| r.name == name);
            if rows.is_empty() {
                return Err(format!("no plugin named `{name}` in the config"));
            }
        }
        let daemon = self.clone();
        let detail = only.is_some();
        let mut rows = tokio::task::spawn_blocking(move || {
            for row in &mut rows {
                row.log_file = daemon.home.log().join(format!("{}.log", row.name));
                // Until it is placed (its host reached), the registry knows
                // only its section; its files may already say more.
                if daemon.placement(&row.name).is_none() {
                    if let Some((kind, host)) = daemon.configured_place(&row.name) {
                        row.kind = kind;
                        row.host = host;
                    }
                }
            }
            if let (Some(row), true) = (rows.first_mut(), detail) {
                row.commit = daemon.commit_of(&row.name);
            }
            rows
        })
        .await
        .map_err(|e| format!("status task failed: {e}"))?;
        if let (Some(row), Some(name)) = (rows.first_mut(), only) {
            row.skills = self.skills_of(name).await;
        }
        Ok(rows)
    }

    /// Kind and host as the plugin's fetched `AIGIS.config` says, if it
    /// was fetched and reads.
    fn configured_place(&self, name: &str) -> Option<(PluginKind, String)> {
        let entry = self.entry(name)?;
        let root = self.home.ext().join(name);
        let file = plugin_file(name, &root, "AIGIS.config").ok()?;
        let mut bytes = Vec::new();
        std::fs::File::open(&file)
            .ok()?
            .take(MAX_CONFIG)
            .read_to_end(&mut bytes)
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let spec = config::parse_plugin(&entry, &root, &file, &text).ok()?;
        let host = spec
            .remote_host()
            .map_or_else(|| "local".to_string(), ToString::to_string);
        Some((spec.kind, host))
    }

    /// The commit a git plugin's files are at (its clone in `ext/`).
    fn commit_of(&self, name: &str) -> Option<String> {
        let Some(Source::Git { .. }) = self.entry(name).map(|e| e.source) else {
            return None;
        };
        aigis_agent::fetch::git_ready();
        let repo = git2::Repository::open(self.home.ext().join(name)).ok()?;
        let commit = repo.head().ok()?.peel_to_commit().ok()?;
        Some(commit.id().to_string())
    }

    /// What `plugin` exposes in the core now (nothing if the core is busy
    /// for longer than [`CORE_PATIENCE`]).
    async fn skills_of(&self, plugin: &str) -> Vec<String> {
        let Ok(core) = self.python() else {
            return Vec::new();
        };
        let plugin = plugin.to_string();
        let asked = core.run(move |_, core| {
            core.call_method1("skills", (plugin,))
                .and_then(|names| names.extract::<Vec<String>>())
                .unwrap_or_default()
        });
        match tokio::time::timeout(CORE_PATIENCE, asked).await {
            Ok(Ok(names)) => names.into_iter().map(|n| format!("aigis.{n}")).collect(),
            _ => Vec::new(),
        }
    }

    /// Every core plugin's skills, in load order (`aigis skills`).
    pub(super) async fn skills(&self) -> Result<Vec<PluginSkills>, String> {
        let core = self.python()?;
        let asked = core.run(|py, core| -> Result<Vec<PluginSkills>, String> {
            let described = |e: PyErr| crate::core::describe(py, &e);
            let plugins: Vec<String> = core
                .call_method0("plugins")
                .and_then(|p| p.extract())
                .map_err(described)?;
            plugins
                .into_iter()
                .map(|plugin| {
                    let names: Vec<String> = core
                        .call_method1("skills", (plugin.as_str(),))
                        .and_then(|n| n.extract())
                        .map_err(described)?;
                    Ok(PluginSkills {
                        plugin,
                        skills: names.into_iter().map(|n| format!("aigis.{n}")).collect(),
                    })
                })
                .collect()
        });
        match tokio::time::timeout(CORE_PATIENCE, asked).await {
            Ok(answer) => answer?,
            Err(_) => Err(format!(
                "the core did not answer within {} s (it is loading or unloading a plugin); try again",
                CORE_PATIENCE.as_secs()
            )),
        }
    }
}
