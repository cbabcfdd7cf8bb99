//! The plugin lifecycle as central sees it: the [`Registry`] of every
//! plugin's state, and [`load`], which takes one configured plugin through
//! fetching, reading its `AIGIS.config`, secrets, installing and starting.
//!
//! A failure at any step fails that plugin only, with a message that names
//! it; the caller goes on with the next plugin.

use crate::core::{core_file, PythonCore};
use crate::home::Home;
use crate::link::{AgentLink, Controls};
use crate::logs::LogSink;
use crate::remote::{self, upload_dir, RemoteAgent, RemoteSettings};
use aigis_agent::fetch::plugin_file;
use config::{CoreAccess, HostSpec, Launch, PluginEntry, PluginKind, PythonLaunch, Source};
use proto::{
    CorePlugin, Event, FetchSource, InstallSpec, LaunchSpec, ProcessState, Program, PythonEntry,
    Reply, Request,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;

/// States a user can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Fetching,
    Installing,
    Starting,
    Running,
    Restarting,
    Stopped,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Fetching => "fetching",
            State::Installing => "installing",
            State::Starting => "starting",
            State::Running => "running",
            State::Restarting => "restarting",
            State::Stopped => "stopped",
            State::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Status {
    pub kind: PluginKind,
    pub host: String,
    pub state: State,
    pub reason: Option<String>,
    pub pid: Option<u32>,
    pub restarts_left: Option<u32>,
    pub since: Instant,
}

/// Every plugin's current status; the one place state changes are logged.
#[derive(Clone)]
pub struct Registry {
    table: Arc<Mutex<BTreeMap<String, Status>>>,
    log: LogSink,
}

impl Registry {
    pub fn new(log: LogSink) -> Registry {
        Registry {
            table: Arc::default(),
            log,
        }
    }

    pub fn log(&self) -> &LogSink {
        &self.log
    }

    pub fn snapshot(&self) -> Vec<(String, Status)> {
        self.table
            .lock()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Marks every live plugin on `host` failed, with `reason`.
    pub async fn fail_host(&self, host: &str, reason: &str) {
        let live: Vec<String> = self
            .snapshot()
            .into_iter()
            .filter(|(_, s)| {
                s.host == host
                    && !matches!(s.state, State::Stopped | State::Failed)
                    && s.kind != PluginKind::Core
            })
            .map(|(n, _)| n)
            .collect();
        for name in live {
            self.set(&name, State::Failed, Some(reason.to_string()))
                .await;
        }
    }

    pub fn set_host(&self, plugin: &str, host: &str) {
        self.update(plugin, |s| s.host = host.to_string());
    }

    /// The plugin's state as a word (`"unknown"` for a name not configured).
    pub fn state_of(&self, plugin: &str) -> &'static str {
        self.table
            .lock()
            .ok()
            .and_then(|t| t.get(plugin).map(|s| s.state.as_str()))
            .unwrap_or("unknown")
    }

    pub fn add(&self, entry: &PluginEntry) {
        if let Ok(mut t) = self.table.lock() {
            t.insert(
                entry.name.clone(),
                Status {
                    kind: entry.section,
                    host: "local".into(),
                    state: State::Pending,
                    reason: None,
                    pid: None,
                    restarts_left: None,
                    since: Instant::now(),
                },
            );
        }
    }

    /// Records a state change and logs it (errors for `Failed`).
    pub async fn set(&self, plugin: &str, state: State, reason: Option<String>) {
        self.update(plugin, |s| {
            s.state = state;
            s.reason = reason.clone();
            if !matches!(state, State::Running) {
                s.pid = None;
            }
        });
        let text = match &reason {
            Some(r) => format!("{}: {r}", state.as_str()),
            None => state.as_str().to_string(),
        };
        if state == State::Failed {
            self.log.error(plugin, text).await;
        } else {
            self.log.info(plugin, text).await;
        }
    }

    fn update(&self, plugin: &str, f: impl FnOnce(&mut Status)) {
        if let Ok(mut t) = self.table.lock() {
            if let Some(s) = t.get_mut(plugin) {
                f(s);
                s.since = Instant::now();
            }
        }
    }

    /// What an agent reports on its own.
    pub async fn agent_event(&self, event: Event) {
        match event {
            // One record per batch; the log writer splits it into lines.
            Event::Output {
                plugin,
                stream,
                lines,
            } => self.log.output(&plugin, stream.as_str(), lines).await,
            Event::Control { .. } => {} // answered by the link itself
            Event::State { plugin, state } => match state {
                ProcessState::Running { pid, restarts_left } => {
                    self.update(&plugin, |s| {
                        s.pid = Some(pid);
                        s.restarts_left = restarts_left;
                    });
                    self.set(&plugin, State::Running, Some(format!("pid {pid}")))
                        .await;
                }
                ProcessState::Restarting {
                    exit,
                    delay_ms,
                    restarts_left,
                } => {
                    self.update(&plugin, |s| s.restarts_left = Some(restarts_left));
                    let reason = format!(
                        "{exit}; restarting in {:.1}s ({restarts_left} restart(s) left after this one)",
                        delay_ms as f64 / 1000.0
                    );
                    self.set(&plugin, State::Restarting, Some(reason)).await;
                }
                ProcessState::Stopped => self.set(&plugin, State::Stopped, None).await,
                ProcessState::Failed { exit } => self.set(&plugin, State::Failed, Some(exit)).await,
            },
        }
    }
}

/// What loading needs from the daemon.
pub struct LoadContext {
    pub home: Home,
    pub agent: Arc<AgentLink>,
    pub registry: Registry,
    /// The embedded interpreter, or why it is not available.
    pub core: Result<PythonCore, String>,
    /// Plugins whose `AIGIS.core` is in the central core, in load order: what
    /// an internal-local plugin copies into its own process.
    pub cores: Mutex<Vec<CorePlugin>>,
    pub entries: Vec<PluginEntry>,
    /// How LAN hosts are reached and set up.
    pub remote: RemoteSettings,
    pub agent_binary: PathBuf,
    pub controls: Controls,
    /// One agent per LAN host, by `HOST`.
    pub remotes: tokio::sync::Mutex<HashMap<String, Arc<RemoteAgent>>>,
    /// Plugins waiting for their host to become reachable.
    pub retries: Mutex<Vec<String>>,
    /// Which agent runs each plugin (`None`: the local one).
    pub placements: Mutex<HashMap<String, Option<Arc<RemoteAgent>>>>,
}

impl LoadContext {
    /// The agent on `host`: connected, deployed and started on first use,
    /// then shared by every plugin there.
    pub async fn remote_agent(&self, host: &HostSpec) -> Result<Arc<RemoteAgent>, String> {
        let key = host.to_string();
        let mut remotes = self.remotes.lock().await;
        if let Some(r) = remotes.get(&key) {
            return Ok(r.clone()); // it reconnects by itself after a drop
        }
        let agent = remote::start(
            host,
            &self.remote,
            &self.agent_binary,
            self.registry.clone(),
            self.controls.clone(),
        )
        .await?;
        remotes.insert(key, agent.clone());
        Ok(agent)
    }

    /// Every remote agent (for shutdown).
    pub async fn remote_agents(&self) -> Vec<Arc<RemoteAgent>> {
        self.remotes.lock().await.values().cloned().collect()
    }

    fn python(&self) -> Result<&PythonCore, String> {
        self.core.as_ref().map_err(Clone::clone)
    }

    fn entry(&self, name: &str) -> Option<&PluginEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Stops the plugin's process, or for a core plugin runs its `cleanup()`
    /// and removes its skills. Other plugins are untouched.
    pub async fn stop(&self, name: &str) {
        let remote = self
            .placements
            .lock()
            .ok()
            .and_then(|p| p.get(name).cloned())
            .flatten();
        let link = match &remote {
            Some(r) => r.link(),
            None => self.agent.clone(),
        };
        let _ = link
            .request(Request::Stop {
                plugin: name.to_string(),
            })
            .await;
        let was_core = self
            .cores
            .lock()
            .map(|mut c| {
                let before = c.len();
                c.retain(|p| p.name != name);
                before != c.len()
            })
            .unwrap_or(false);
        if was_core {
            if let Ok(core) = self.python() {
                if let Err(e) = core.unload(name).await {
                    self.registry.log().error(name, e).await;
                }
            }
        }
        if self.registry.state_of(name) != State::Stopped.as_str() {
            self.registry.set(name, State::Stopped, None).await;
        }
    }

    /// Loads a plugin that is not running (stopped or failed).
    pub async fn start(&self, name: &str) -> Result<&'static str, String> {
        let entry = self
            .entry(name)
            .ok_or_else(|| format!("no plugin named `{name}`"))?;
        let state = self.registry.state_of(name);
        if !matches!(state, "stopped" | "failed" | "pending") {
            return Err(format!("{name} is {state}; stop it first or use reload"));
        }
        load(entry, self).await;
        Ok(self.registry.state_of(name))
    }

    /// Stops the plugin, drops its skills, and loads it again from its
    /// source (re-fetch, re-read its config): `aigis reload` and
    /// `aigis.AIGISReload(name)`.
    pub async fn reload(&self, name: &str) {
        let Some(entry) = self.entry(name) else {
            tracing::warn!("reload of unknown plugin `{name}` ignored");
            return;
        };
        self.registry.log().info(name, "reloading").await;
        self.stop(name).await;
        load(entry, self).await;
    }
}

/// Fetches, configures, installs and starts one plugin. On error the plugin
/// is marked failed with the message; the caller continues with the next.
pub async fn load(entry: &PluginEntry, ctx: &LoadContext) {
    if let Err(reason) = try_load(entry, ctx).await {
        let unreachable = reason.starts_with(UNREACHABLE);
        ctx.registry
            .set(&entry.name, State::Failed, Some(reason))
            .await;
        if unreachable {
            if let Ok(mut r) = ctx.retries.lock() {
                r.push(entry.name.clone());
            }
        }
    }
}

/// Marks a failure to reach the plugin's host: the load is tried again.
const UNREACHABLE: &str = "host unreachable";

impl LoadContext {
    /// Loads again every plugin whose host could not be reached, with a
    /// growing pause between rounds; runs until the daemon stops.
    pub async fn retry_unreachable(&self) {
        let mut pause = Duration::from_secs(2);
        loop {
            tokio::time::sleep(pause).await;
            let names: Vec<String> = self
                .retries
                .lock()
                .map(|mut r| std::mem::take(&mut *r))
                .unwrap_or_default();
            if names.is_empty() {
                pause = Duration::from_secs(2);
                continue;
            }
            for name in names {
                // An operator's `aigis stop` meanwhile wins over the retry.
                if self.registry.state_of(&name) != State::Failed.as_str() {
                    continue;
                }
                if let Some(entry) = self.entry(&name) {
                    self.registry
                        .log()
                        .info(&name, "trying its host again")
                        .await;
                    load(entry, self).await;
                }
            }
            pause = (pause * 2).min(Duration::from_secs(60));
        }
    }
}

/// Asks `link` to fetch `source` into `dest`; returns the plugin's config
/// text, or `None` when a streamed upload (`FetchSource::Staged`) has to be
/// sent first.
async fn fetch(
    name: &str,
    link: &AgentLink,
    source: FetchSource,
    dest: &Path,
    log: &LogSink,
) -> Result<Option<String>, String> {
    let reply = link
        .request(Request::Fetch {
            plugin: name.to_string(),
            source,
            dest: dest.to_path_buf(),
        })
        .await
        .map_err(|e| format!("fetch failed: {e}"))?;
    if reply == Reply::NothingStaged {
        return Ok(None);
    }
    let Reply::Fetched {
        outcome,
        warning,
        config,
    } = reply
    else {
        return Err(format!("unexpected reply to fetch: {reply:?}"));
    };
    log.info(name, format!("source {outcome} ({})", link.host))
        .await;
    if let Some(w) = warning {
        log.warn(name, format!("not updated: {w}; loading what is on disk"))
            .await;
    }
    config
        .map(Some)
        .map_err(|e| format!("cannot read the plugin config: {e}"))
}

/// `fetch` for sources that are never streamed.
async fn fetch_here(
    name: &str,
    link: &AgentLink,
    source: FetchSource,
    dest: &Path,
    log: &LogSink,
) -> Result<String, String> {
    fetch(name, link, source, dest, log).await?.ok_or_else(|| {
        format!(
            "the agent on {} asked for an upload that was not sent",
            link.host
        )
    })
}

async fn try_load(entry: &PluginEntry, ctx: &LoadContext) -> Result<(), String> {
    let name = &entry.name;
    let log = ctx.registry.log();
    let root = ctx.home.ext().join(name);

    // Always fetched here first: the plugin's own config says where it runs.
    ctx.registry.set(name, State::Fetching, None).await;
    let source = match &entry.source {
        Source::LocalDir(p) => FetchSource::LocalDir(p.clone()),
        Source::Git { url, reference } => FetchSource::Git {
            url: url.clone(),
            reference: reference.clone(),
        },
    };
    let text = fetch_here(name, &ctx.agent, source, &root, log).await?;
    let config_file = root.join("AIGIS").join("AIGIS.config");
    let local_spec =
        config::parse_plugin(entry, &root, &config_file, &text).map_err(|e| e.to_string())?;
    for w in &local_spec.warnings {
        log.warn(name, w.clone()).await;
    }

    // A LAN host fetches git sources itself and gets local directories sent.
    let remote = match local_spec.remote_host() {
        Some(host) => Some(ctx.remote_agent(host).await.map_err(|e| {
            format!("{UNREACHABLE}: {e}; the other plugins run, this one is retried")
        })?),
        None => None,
    };
    let (link, spec) = match &remote {
        None => (ctx.agent.clone(), local_spec.clone()),
        Some(remote) => {
            let remote_root = remote.base.join("ext").join(name);
            let link = remote.link();
            let text = match &entry.source {
                // The host clones git sources itself.
                Source::Git { url, reference } => {
                    let source = FetchSource::Git {
                        url: url.clone(),
                        reference: reference.clone(),
                    };
                    fetch_here(name, &link, source, &remote_root, log).await?
                }
                // A local directory is streamed there, unless it is there already.
                Source::LocalDir(_) => {
                    match fetch(name, &link, FetchSource::Staged, &remote_root, log).await? {
                        Some(text) => text,
                        None => {
                            upload_dir(&link, &root, &remote_root).await?;
                            fetch_here(name, &link, FetchSource::Staged, &remote_root, log).await?
                        }
                    }
                }
            };
            let file = remote_root.join("AIGIS").join("AIGIS.config");
            let spec = config::parse_plugin(entry, &remote_root, &file, &text)
                .map_err(|e| e.to_string())?;
            (remote.link(), spec)
        }
    };
    ctx.registry.set_host(name, &link.host);
    if let Ok(mut p) = ctx.placements.lock() {
        p.insert(name.clone(), remote.clone());
    }

    let wanted: Vec<_> = spec
        .secrets
        .iter()
        .map(|s| (s.key.clone(), s.dest.clone()))
        .collect();
    let secret_files = secrets::collect(name, &ctx.home.secrets().join(name), &spec.root, &wanted)
        .map_err(|e| e.to_string())?;

    ctx.registry.set(name, State::Installing, None).await;
    link.request(Request::Install(InstallSpec {
        plugin: name.clone(),
        root: spec.root.clone(),
        entrypoint: spec.entrypoint.clone(),
        system_requirements: spec.system_requirements.clone(),
        requirements: spec.requirements.as_ref().map(|r| r.shell_line()),
        secrets: secret_files,
    }))
    .await
    .map_err(|e| format!("install failed: {e}"))?;

    ctx.registry.set(name, State::Starting, None).await;
    let core_file = core_file(&root);
    if core_file.is_some() && spec.kind == PluginKind::External {
        log.warn(
            name,
            "AIGIS/AIGIS.core ignored: only core and internal plugins add to the core",
        )
        .await;
    } else if spec.kind == PluginKind::Core || core_file.is_some() {
        core_file
            .ok_or_else(|| format!("{} is missing", root.join("AIGIS/AIGIS.core").display()))?;
        // Imported by Python, whose errors quote it: it must be the plugin's own.
        let file = plugin_file(name, &root, "AIGIS.core")?;
        let skills = ctx
            .python()?
            .load(name, &local_spec.entrypoint, &file)
            .await?;
        if let Ok(mut cores) = ctx.cores.lock() {
            cores.push(CorePlugin {
                name: name.clone(),
                entrypoint: local_spec.entrypoint.clone(),
                core_file: file,
            });
        }
        let exposed = skills
            .iter()
            .map(|s| format!("aigis.{s}"))
            .collect::<Vec<_>>()
            .join(", ");
        log.info(name, format!("skills: {exposed}")).await;
    }
    let program = match &spec.launch {
        Launch::None => {
            ctx.registry
                .set(name, State::Running, Some("core skills loaded".into()))
                .await;
            return Ok(());
        }
        Launch::Command(argv) => Program::Command(argv.clone()),
        Launch::Python(launch) => {
            let proxy = spec.core != Some(CoreAccess::Copy);
            Program::Python {
                launch: python_entry(launch),
                core_plugins: if proxy {
                    Vec::new()
                } else {
                    ctx.cores.lock().map(|c| c.clone()).unwrap_or_default()
                },
                proxy,
            }
        }
    };
    link.request(Request::Start(LaunchSpec {
        plugin: name.clone(),
        program,
        cwd: spec.entrypoint.clone(),
        env: vec![
            ("AIGIS_PLUGIN".into(), name.clone()),
            ("AIGIS_ROOT".into(), spec.root.display().to_string()),
            ("PYTHONUNBUFFERED".into(), "1".into()),
        ],
        restart: spec.restart,
    }))
    .await
    .map_err(|e| format!("start failed: {e}"))?;
    Ok(())
}

/// An internal plugin's `LAUNCH` as the agent's shim takes it.
pub fn python_entry(launch: &PythonLaunch) -> PythonEntry {
    match launch {
        PythonLaunch::Module(m) => PythonEntry::Module(m.clone()),
        PythonLaunch::File(f) => PythonEntry::File(f.clone()),
    }
}
