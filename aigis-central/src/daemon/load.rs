//! One plugin from its config entry to a running process, in four steps:
//!
//! 1. **resolve**: central fetches it into `<home>/ext/<name>` (git clone or
//!    fetch, or a copy of a local directory) and reads its `AIGIS.config`
//!    once. Everything later uses that one reading.
//! 2. **place**: the local agent, or the agent on its `HOST`, which gets the
//!    tree central fetched (only the files that differ): a LAN host runs
//!    exactly what central read and needs no access to the git server.
//! 3. **install**: secrets, `SYSTEM_REQUIREMENTS`, the requirements command.
//! 4. **start**: skills into the core; the process under its agent.
//!
//! A failure fails that plugin only, as a [`LoadError`] whose kind decides
//! whether the load is tried again (an unreachable host is).

use super::hosts::HostError;
use super::state::State;
use super::{lock, Daemon, Placement};
use crate::core::core_file;
use crate::deploy;
use aigis_agent::fetch::plugin_file;
use config::{CoreAccess, Launch, PluginEntry, PluginKind, PluginSpec, PythonLaunch, Source};
use proto::{
    Backoff, CallToken, Confine, CorePlugin, InstallSpec, LaunchSpec, Program, PythonEntry,
    PythonEnv, Request,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Why a load failed.
#[derive(Debug)]
pub enum LoadError {
    /// The plugin's host could not be reached: tried again later.
    Unreachable(String),
    /// Its host refused (or was refused: a host key not known to match);
    /// not retried until the operator acts.
    Refused(String),
    /// Its source could not be fetched (a clone, a fetch, a directory not
    /// there yet): tried again later.
    Fetch(String),
    /// Its requirements step failed: tried again later (the network, a
    /// package index, a missing system package may come).
    Install(String),
    /// Its `AIGIS.config` (or `AIGIS.core`) is wrong.
    Config(String),
    Secrets(String),
    /// Its agent failed a step (sync, install, start).
    Agent(String),
    /// The core could not take its skills.
    Core(String),
}

impl LoadError {
    /// Whether it can heal by itself, and is tried again. A config error
    /// cannot: it waits for a reload.
    fn retry(&self) -> bool {
        matches!(
            self,
            LoadError::Unreachable(_) | LoadError::Fetch(_) | LoadError::Install(_)
        )
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Unreachable(e) => write!(
                f,
                "host unreachable: {e}; the other plugins run, this one is retried"
            ),
            LoadError::Refused(e) => write!(
                f,
                "host refused: {e}; fix it, then `aigis start` this plugin"
            ),
            LoadError::Fetch(e)
            | LoadError::Install(e)
            | LoadError::Config(e)
            | LoadError::Secrets(e)
            | LoadError::Agent(e)
            | LoadError::Core(e) => f.write_str(e),
        }
    }
}

/// A plugin fetched and read: the one reading every later step uses.
struct Resolved {
    /// Its files here, in `<home>/ext/<name>`.
    root: std::path::PathBuf,
    text: String,
    spec: PluginSpec,
}

/// A plugin fetched, placed and installed: ready for its turn to start.
struct Prepared {
    resolved: Resolved,
    placement: Placement,
    spec: PluginSpec,
}

/// How long the plugins after one on a LAN host wait for it to be ready
/// before they take their turn.
const HOST_PATIENCE: Duration = Duration::from_secs(3);

/// Plugins fetched and installed at the same time at start-up.
const PREPARE_AT_ONCE: usize = 4;

/// How long an agent may take for each step.
const INSTALL_LIMIT: Duration = Duration::from_secs(30 * 60);
const START_LIMIT: Duration = Duration::from_secs(60);
const STOP_LIMIT: Duration = Duration::from_secs(30);

impl Daemon {
    /// Loads every configured plugin; runs once, at start-up. Fetching and
    /// installing run [`PREPARE_AT_ONCE`] at a time, so a slow requirements
    /// step holds up no one; core plugins still join the core in config
    /// order, and each plugin starts in config order as soon as its turn
    /// and its install are both done. Every plugin is claimed from the
    /// start, so a verb on one that waits for its turn says so instead of
    /// loading it twice.
    pub(super) async fn load_all(self: Arc<Self>) {
        let gate = Arc::new(tokio::sync::Semaphore::new(PREPARE_AT_ONCE));
        let mut queue = Vec::new();
        for entry in &self.entries() {
            // An operator's `aigis start` may have been quicker.
            if self.registry.state(&entry.name) != Some(State::Pending) {
                continue;
            }
            let Some(claim) = self.claim(&entry.name) else {
                continue;
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            let (daemon, gate, job) = (self.clone(), gate.clone(), entry.clone());
            self.tasks.spawn_cancellable(async move {
                let Ok(_turn) = gate.acquire_owned().await else {
                    return;
                };
                let _ = tx.send(daemon.prepare(&job).await);
            });
            queue.push((entry.clone(), claim, rx));
        }
        for (entry, claim, mut prepared) in queue {
            let waited = std::time::Instant::now();
            let ready = loop {
                match tokio::time::timeout(Duration::from_millis(250), &mut prepared).await {
                    Ok(Ok(ready)) => break Some(ready),
                    Ok(Err(_)) => return, // shutting down
                    Err(_) if self.waits_on_its_host(&entry.name, waited) => break None,
                    Err(_) => {}
                }
            };
            let Some(ready) = ready else {
                // Its host is slow to answer: the others take their turn,
                // and it starts when its host has answered.
                let daemon = self.clone();
                self.tasks.spawn_cancellable(async move {
                    let Ok(prepared) = prepared.await else { return };
                    daemon.start_prepared(&entry, prepared).await;
                    drop(claim);
                });
                continue;
            };
            self.start_prepared(&entry, ready).await;
            drop(claim);
        }
        self.summarize().await;
    }

    /// Step 4 for a plugin steps 1 to 3 prepared (or failed), and its end.
    async fn start_prepared(
        self: &Arc<Self>,
        entry: &PluginEntry,
        prepared: Result<Prepared, LoadError>,
    ) {
        let result = match prepared {
            Ok(p) => self.start_plugin(&p.placement, &p.resolved, &p.spec).await,
            Err(e) => Err(e),
        };
        self.settle(entry, result).await;
    }

    /// Whether a plugin whose turn to start has come, and which has been
    /// waited for since `since`, still waits on a LAN host (to connect,
    /// take its tree or install it) past [`HOST_PATIENCE`]: a silent host
    /// delays only its own plugins. A plugin on this host keeps its turn,
    /// so plugins here start in config order.
    fn waits_on_its_host(&self, name: &str, since: std::time::Instant) -> bool {
        since.elapsed() >= HOST_PATIENCE && self.registry.host(name).is_some_and(|h| h != "local")
    }

    async fn summarize(&self) {
        let table = self.registry.snapshot();
        let states = table
            .iter()
            .map(|s| {
                format!(
                    "{} ({} on {}): {}",
                    s.name,
                    s.kind.as_str(),
                    s.host,
                    s.state.word()
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        self.log
            .info(
                "aigis",
                format!("{} plugin(s) loaded: {states}", table.len()),
            )
            .await;
        let failed: Vec<&str> = table
            .iter()
            .filter(|s| matches!(s.state, State::Failed { .. }))
            .map(|s| s.name.as_str())
            .collect();
        if !failed.is_empty() {
            self.log
                .warn("aigis", format!("failed to load: {}", failed.join(", ")))
                .await;
        }
    }

    /// Fetches, configures, installs and starts one plugin; a failure marks
    /// it failed (and queues a retry for an unreachable host). The caller
    /// holds its claim.
    pub(super) async fn load(self: &Arc<Self>, entry: &PluginEntry) {
        if self.tasks.is_cancelled() {
            return;
        }
        let result = match self.prepare(entry).await {
            Ok(p) => self.start_plugin(&p.placement, &p.resolved, &p.spec).await,
            Err(e) => Err(e),
        };
        self.settle(entry, result).await;
    }

    /// Steps 1 to 3: everything before the plugin's turn to start.
    async fn prepare(&self, entry: &PluginEntry) -> Result<Prepared, LoadError> {
        let resolved = self.resolve(entry).await?;
        let (placement, spec) = self.place(entry, &resolved).await?;
        self.install(&placement, &spec).await?;
        Ok(Prepared {
            resolved,
            placement,
            spec,
        })
    }

    /// A load's end: a failure that can heal by itself is tried again
    /// after the plugin's next backoff (`retrying in 8s: …`), any other
    /// marks it failed. Retries do not spend its `RESTART` budget.
    async fn settle(self: &Arc<Self>, entry: &PluginEntry, result: Result<(), LoadError>) {
        let name = &entry.name;
        let e = match result {
            Ok(()) => {
                lock(&self.retrying).remove(name);
                return;
            }
            Err(e) => e,
        };
        if !e.retry() || self.tasks.is_cancelled() {
            lock(&self.retrying).remove(name);
            let reason = e.to_string();
            return self.registry.set(name, State::Failed { reason }).await;
        }
        let (delay, generation) = {
            let mut retrying = lock(&self.retrying);
            let plan = retrying.entry(name.clone()).or_insert_with(|| Retry {
                backoff: LOAD_RETRY.jittered(),
                generation: 0,
            });
            plan.generation += 1;
            (plan.backoff.next_delay(), plan.generation)
        };
        let state = State::Retrying {
            reason: e.to_string(),
            retry_in_s: delay.as_secs_f64().round() as u64,
        };
        self.registry.set(name, state).await;
        let due = tokio::time::Instant::now() + delay;
        let _ = self.retry_due.send((name.clone(), generation, due));
    }

    /// Runs the retries `settle` plans, each when it is due; until the
    /// daemon stops.
    pub(super) async fn retry_loads(
        self: Arc<Self>,
        mut planned: tokio::sync::mpsc::UnboundedReceiver<(String, u64, tokio::time::Instant)>,
    ) {
        let mut queue: Vec<(String, u64, tokio::time::Instant)> = Vec::new();
        loop {
            let next = queue.iter().map(|(_, _, due)| *due).min();
            let wait = async {
                match next {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                plan = planned.recv() => match plan {
                    Some(plan) => queue.push(plan),
                    None => return,
                },
                () = wait => {
                    let now = tokio::time::Instant::now();
                    let (ready, later) = queue.into_iter().partition(|(_, _, due)| *due <= now);
                    queue = later;
                    // Each on its own: one slow load holds up no other.
                    for (name, generation, _) in ready {
                        let daemon = self.clone();
                        self.tasks.spawn_cancellable(async move {
                            daemon.retry_load(&name, generation).await;
                        });
                    }
                }
            }
        }
    }

    /// The retry `settle` planned, unless something came between: an
    /// operator's start, stop or reload, or a newer plan.
    async fn retry_load(self: &Arc<Self>, name: &str, generation: u64) {
        let current = lock(&self.retrying)
            .get(name)
            .is_some_and(|p| p.generation == generation);
        let waiting = matches!(self.registry.state(name), Some(State::Retrying { .. }));
        if !current || !waiting {
            return;
        }
        let (Some(entry), Some(claim)) = (self.entry(name), self.claim(name)) else {
            return;
        };
        self.log.info(name, "trying again").await;
        self.load(&entry).await;
        drop(claim);
    }

    /// Step 1: fetch into `<home>/ext/<name>` and read the config once.
    async fn resolve(&self, entry: &PluginEntry) -> Result<Resolved, LoadError> {
        let name = &entry.name;
        self.registry.set(name, State::Fetching).await;
        let root = self.home.ext().join(name);
        self.reclaim(name, &root).await?;
        let (source, dest, plugin) = (entry.source.clone(), root.clone(), name.clone());
        // A git fetch reports how far it is: in status, and every quarter in the log.
        let (tell, mut told) = tokio::sync::mpsc::unbounded_channel::<u8>();
        let fetching = tokio::task::spawn_blocking(move || {
            fetch(&plugin, &source, &dest, &mut |pct| {
                let _ = tell.send(pct);
            })
        });
        while let Some(pct) = told.recv().await {
            self.registry.progress(name, pct).await;
        }
        let outcome = fetching
            .await
            .map_err(|e| LoadError::Fetch(format!("fetch task failed: {e}")))??;
        self.log
            .info(name, format!("source {} (local)", outcome.0))
            .await;
        if let Some(w) = outcome.1 {
            self.log
                .warn(name, format!("not updated: {w}; loading what is on disk"))
                .await;
        }
        // Only the plugin's own file: a parse error quotes it.
        let config_file = plugin_file(name, &root, "AIGIS.config").map_err(LoadError::Config)?;
        let text = read_config(name, &config_file).map_err(LoadError::Config)?;
        let spec = config::parse_plugin(entry, &root, &config_file, &text)
            .map_err(|e| LoadError::Config(e.to_string()))?;
        for w in &spec.warnings {
            self.log.warn(name, w.clone()).await;
        }
        Ok(Resolved { root, text, spec })
    }

    /// An `ext/<name>` that is not central's own (an earlier AIGIS gave
    /// the whole tree to the plugin's user, who may have changed its
    /// config or `AIGIS.core`) is never read: it becomes the plugin's
    /// working copy, keeping what the plugin wrote there, and the fetch
    /// takes a fresh one.
    async fn reclaim(&self, name: &str, root: &Path) -> Result<(), LoadError> {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::symlink_metadata(root) else {
            return Ok(());
        };
        if meta.is_dir() && meta.uid() == rustix::process::geteuid().as_raw() {
            return Ok(());
        }
        let work = self.home.work().join(name);
        let moved = if meta.is_dir() && !work.exists() {
            std::fs::rename(root, &work)
        } else if meta.is_dir() {
            std::fs::remove_dir_all(root)
        } else {
            std::fs::remove_file(root)
        };
        moved.map_err(|e| {
            LoadError::Fetch(format!(
                "{} is not AIGIS's own (uid {}) and could not be moved aside: {e}",
                root.display(),
                meta.uid()
            ))
        })?;
        self.log
            .warn(
                name,
                format!(
                    "{} belonged to uid {}, not to AIGIS: it is never read again; fetching afresh",
                    root.display(),
                    meta.uid()
                ),
            )
            .await;
        Ok(())
    }

    /// Step 2: the agent that runs it; a LAN host gets the tree first.
    async fn place(
        &self,
        entry: &PluginEntry,
        resolved: &Resolved,
    ) -> Result<(Placement, PluginSpec), LoadError> {
        let name = &entry.name;
        let spec = &resolved.spec;
        let (remote, spec) = match spec.remote_host() {
            None if spec.kind == PluginKind::Core || self.user_of(name).is_none() => {
                (None, spec.clone())
            }
            // Its own user gets a copy: central reads and imports only
            // `ext/<name>`, which that user cannot write.
            None => {
                let work = self.home.work().join(name);
                let there = self
                    .send_tree(entry, resolved, &self.local, &work, "its working copy")
                    .await?;
                (None, there)
            }
            Some(host) => {
                // Known from now on: status shows where it waits, and its
                // turn to start does not hold the others while it does.
                self.registry.place(name, spec.kind, &host.to_string());
                let remote = self
                    .hosts
                    .agent(host, &self.wiring)
                    .await
                    .map_err(|e| match e {
                        HostError::Unreachable(e) => LoadError::Unreachable(e),
                        HostError::Refused(e) => LoadError::Refused(e),
                    })?;
                let remote_root = remote.base.join("ext").join(name);
                let there = self
                    .send_tree(
                        entry,
                        resolved,
                        &remote.link(),
                        &remote_root,
                        &host.to_string(),
                    )
                    .await?;
                (Some(remote), there)
            }
        };
        let placement = Placement {
            host: spec
                .remote_host()
                .map_or_else(|| "local".to_string(), ToString::to_string),
            kind: spec.kind,
            remote,
            restart: restarts(&spec).0,
        };
        self.registry.place(name, spec.kind, &placement.host);
        lock(&self.placed).insert(name.clone(), placement.clone());
        Ok((placement, spec))
    }

    /// Puts the tree central fetched at `dest` behind `link` (only what
    /// changed) and reads the same config text again for where it runs
    /// there. `to` names the destination in the log.
    async fn send_tree(
        &self,
        entry: &PluginEntry,
        resolved: &Resolved,
        link: &crate::link::AgentLink,
        dest: &Path,
        to: &str,
    ) -> Result<PluginSpec, LoadError> {
        let name = &entry.name;
        let sent = deploy::tree(link, &resolved.root, dest)
            .await
            .map_err(|e| LoadError::Agent(format!("sending the plugin to {to}: {e}")))?;
        self.log
            .info(name, format!("{sent} changed file(s) sent to {to}"))
            .await;
        let file = dest.join("AIGIS").join("AIGIS.config");
        config::parse_plugin(entry, dest, &file, &resolved.text)
            .map_err(|e| LoadError::Config(e.to_string()))
    }

    /// Step 3: secrets, system requirements, the requirements command.
    async fn install(&self, placement: &Placement, spec: &PluginSpec) -> Result<(), LoadError> {
        let name = &spec.name;
        let wanted: Vec<_> = spec
            .secrets
            .iter()
            .map(|s| (s.key.clone(), s.dest.clone()))
            .collect();
        let secret_files =
            secrets::collect(name, &self.home.secrets().join(name), &spec.root, &wanted)
                .map_err(|e| LoadError::Secrets(e.to_string()))?;
        self.registry.set(name, State::Installing).await;
        let mut install = InstallSpec {
            plugin: name.clone(),
            root: spec.root.clone(),
            entrypoint: spec.entrypoint.clone(),
            system_requirements: spec.system_requirements.clone(),
            requirements: spec.requirements.as_ref().map(|r| r.shell_line()),
            secrets: secret_files,
            user: self.user_of(name),
            python_env: self.python_env(placement, spec),
            confine: self.confine(placement, spec),
        };
        let link = self.link_for(placement);
        link.request(Request::Install(install.clone()), INSTALL_LIMIT)
            .await
            .map_err(|e| LoadError::Agent(format!("install failed: {e}")))?;
        if install.requirements.is_none() {
            return Ok(());
        }
        // The secrets are in place: only the command goes again.
        install.secrets.clear();
        link.request(Request::Requirements(install), INSTALL_LIMIT)
            .await
            .map_err(|e| LoadError::Install(format!("install failed: {e}")))?;
        Ok(())
    }

    /// How the plugin's processes are confined on their host (Landlock),
    /// unless the operator left it unconfined: AIGIS's own there is hidden
    /// (this home's entries and the central config, or this central's
    /// place on a LAN host; the agent adds its user's `~/.ssh`), but for
    /// the plugin's tree and Python environment, and what a copied core
    /// reads.
    fn confine(&self, placement: &Placement, spec: &PluginSpec) -> Option<Confine> {
        if self.unconfined(&spec.name) {
            return None;
        }
        let mut writable = vec![spec.root.clone()];
        writable.extend(self.python_env(placement, spec).map(|e| e.dir));
        let home = &self.home;
        let hidden = match &placement.remote {
            Some(remote) => vec![remote.base.clone()],
            None => vec![
                home.ext(),
                home.work(),
                home.envs(),
                home.core_env(),
                home.secrets(),
                home.log(),
                home.run(),
                home.root().join("central-id"),
                std::fs::canonicalize(&self.config_path)
                    .unwrap_or_else(|_| self.config_path.clone()),
            ],
        };
        let mut readable = Vec::new();
        if spec.core == Some(CoreAccess::Copy) {
            for core in lock(&self.cores).iter() {
                readable.push(core.entrypoint.clone());
                readable.push(core.core_file.clone());
            }
            readable.push(home.core_env());
        }
        Some(Confine {
            hidden,
            writable,
            readable,
        })
    }

    /// The plugin's Python environment on its host, when its requirements
    /// command is a Python one (and the operator did not opt it out): in
    /// this central's place there, `envs/<name>`.
    ///
    /// Core plugins share the core's environment, made from the Python
    /// central embeds, whose packages the core imports.
    fn python_env(&self, placement: &Placement, spec: &PluginSpec) -> Option<PythonEnv> {
        let requirements = spec.requirements.as_ref()?;
        if !aigis_agent::venv::is_python_command(&requirements.command)
            || self.system_python(&spec.name)
        {
            return None;
        }
        let (dir, python) = match &placement.remote {
            _ if spec.kind == PluginKind::Core => {
                (self.home.core_env(), Some(crate::core::embedded_python()?))
            }
            Some(remote) => (remote.base.join("envs").join(&spec.name), None),
            None => (self.home.envs().join(&spec.name), None),
        };
        Some(PythonEnv {
            dir,
            python,
            requirements_file: requirements.file.clone(),
        })
    }

    /// Step 4: skills into the core, then the process.
    async fn start_plugin(
        &self,
        placement: &Placement,
        resolved: &Resolved,
        spec: &PluginSpec,
    ) -> Result<(), LoadError> {
        let name = &spec.name;
        self.registry.set(name, State::Starting).await;
        self.add_skills(resolved, spec).await?;
        let mut direct = None;
        let program = match &spec.launch {
            Launch::None => {
                self.registry.set(name, State::Running).await;
                return Ok(());
            }
            Launch::Command(argv) => Program::Command(argv.clone()),
            Launch::Python(launch) => {
                let proxy = spec.core != Some(CoreAccess::Copy);
                // An AigisProxy plugin on a LAN host calls central directly.
                direct = (proxy && placement.remote.is_some())
                    .then(call_token)
                    .transpose()
                    .map_err(|e| LoadError::Agent(format!("cannot make a call token: {e}")))?;
                Program::Python {
                    launch: python_entry(launch),
                    core_plugins: if proxy {
                        Vec::new()
                    } else {
                        lock(&self.cores).clone()
                    },
                    proxy,
                    direct: direct.clone(),
                }
            }
        };
        let (restart, restart_on_failure) = restarts(spec);
        self.link_for(placement)
            .request(
                Request::Start(LaunchSpec {
                    plugin: name.clone(),
                    program,
                    cwd: spec.entrypoint.clone(),
                    env: vec![
                        ("AIGIS_PLUGIN".into(), name.clone()),
                        ("AIGIS_ROOT".into(), spec.root.display().to_string()),
                        ("PYTHONUNBUFFERED".into(), "1".into()),
                    ],
                    restart,
                    restart_on_failure,
                    user: self.user_of(name),
                    python_env: self.python_env(placement, spec).map(|e| e.dir),
                    confine: self.confine(placement, spec),
                }),
                START_LIMIT,
            )
            .await
            .map_err(|e| LoadError::Agent(format!("start failed: {e}")))?;
        if let (Some(token), Some(remote), Ok(core)) = (direct, &placement.remote, self.python()) {
            remote.open_direct(name, token, core.calls.clone());
        }
        Ok(())
    }

    /// A core plugin's (or an internal plugin's) `AIGIS.core` joins the
    /// core; an external plugin's is ignored: only core and internal
    /// plugins may add to the core.
    async fn add_skills(&self, resolved: &Resolved, spec: &PluginSpec) -> Result<(), LoadError> {
        let name = &spec.name;
        let core_file = core_file(&resolved.root);
        match (spec.kind, core_file) {
            (PluginKind::External, Some(_)) => {
                self.log
                    .warn(
                        name,
                        "AIGIS/AIGIS.core ignored: only core and internal plugins add to the core",
                    )
                    .await;
                return Ok(());
            }
            (PluginKind::Core, None) => {
                return Err(LoadError::Config(format!(
                    "{} is missing",
                    resolved.root.join("AIGIS/AIGIS.core").display()
                )))
            }
            (_, None) => return Ok(()),
            (_, Some(_)) => {
                // Imported by Python, whose errors quote it: it must be the plugin's own.
                let file =
                    plugin_file(name, &resolved.root, "AIGIS.core").map_err(LoadError::Config)?;
                if self.tasks.is_cancelled() {
                    return Err(LoadError::Core("aigis is stopping".into()));
                }
                let core = self.python().map_err(LoadError::Core)?;
                if self.home.core_env().is_dir() {
                    core.see_packages(&self.home.core_env())
                        .await
                        .map_err(LoadError::Core)?;
                }
                let skills = core
                    .load(name, &resolved.spec.entrypoint, &file)
                    .await
                    .map_err(LoadError::Core)?;
                lock(&self.cores).push(CorePlugin {
                    name: name.clone(),
                    entrypoint: resolved.spec.entrypoint.clone(),
                    core_file: file,
                });
                let exposed = skills
                    .iter()
                    .map(|s| format!("aigis.{s}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.log.info(name, format!("skills: {exposed}")).await;
            }
        }
        Ok(())
    }

    fn link_for(&self, placement: &Placement) -> Arc<crate::link::AgentLink> {
        match &placement.remote {
            Some(r) => r.link(),
            None => self.local.clone(),
        }
    }

    /// Stops the plugin's process, or for a core plugin runs its `cleanup()`
    /// and removes its skills. Other plugins are untouched.
    pub(super) async fn stop_plugin(&self, name: &str) {
        if let Some(remote) = self.placement(name).and_then(|p| p.remote) {
            remote.close_direct(name);
        }
        let _ = self
            .link_of(name)
            .request(
                Request::Stop {
                    plugin: name.to_string(),
                },
                STOP_LIMIT,
            )
            .await;
        let was_core = {
            let mut cores = lock(&self.cores);
            let before = cores.len();
            cores.retain(|p| p.name != name);
            before != cores.len()
        };
        if was_core {
            if let Ok(core) = self.python() {
                if let Err(e) = core.unload(name).await {
                    self.log.error(name, e).await;
                }
            }
        }
        if self.registry.state(name) != Some(State::Stopped) {
            self.registry.set(name, State::Stopped).await;
        }
    }

    /// `aigis stop NAME`.
    pub(super) async fn stop(self: &Arc<Self>, name: &str) -> Result<State, String> {
        let _claim = self.claim_for(name, "stop")?;
        self.stop_plugin(name).await;
        Ok(self.registry.state(name).unwrap_or(State::Stopped))
    }

    /// `aigis start NAME`: loads a plugin that is not running.
    pub(super) async fn start(self: &Arc<Self>, name: &str) -> Result<State, String> {
        let entry = self
            .entry(name)
            .ok_or_else(|| format!("no plugin named `{name}`"))?;
        let _claim = self.claim_for(name, "start")?;
        let state = self.registry.state(name).unwrap_or(State::Pending);
        if !state.is_down() {
            return Err(format!(
                "{name} is {}; stop it first or use reload",
                state.word()
            ));
        }
        self.load(&entry).await;
        self.outcome(name).await
    }

    /// Stops the plugin, drops its skills, and loads it again from its
    /// source (re-fetch, re-read its config): `aigis reload` and
    /// `aigis.AIGISReload(name)`.
    pub(super) async fn reload(self: &Arc<Self>, name: &str) -> Result<State, String> {
        let entry = self
            .entry(name)
            .ok_or_else(|| format!("no plugin named `{name}`"))?;
        let _claim = self.claim_for(name, "reload")?;
        self.log.info(name, "reloading").await;
        self.stop_plugin(name).await;
        self.load(&entry).await;
        self.outcome(name).await
    }

    fn claim_for(self: &Arc<Self>, name: &str, verb: &str) -> Result<super::Claim, String> {
        if self.tasks.is_cancelled() {
            return Err(format!("aigis is stopping; {name} is not {verb}ed"));
        }
        self.claim(name).ok_or_else(|| {
            let state = self.registry.state(name).map_or("busy", |s| s.word());
            format!("{name} is {state}: another operation on it is under way; try again when it is done")
        })
    }

    /// The state a start or reload ended in, as the verb's result: once
    /// the agent reports the process running (or gone), up to a few seconds.
    async fn outcome(&self, name: &str) -> Result<State, String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.registry.state(name) == Some(State::Starting)
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match self.registry.state(name) {
            Some(State::Failed { reason }) => Err(format!("{name} failed: {reason}")),
            Some(state) => Ok(state),
            None => Err(format!("no plugin named `{name}`")),
        }
    }
}

/// How a load that can heal by itself is tried again: 2 s, doubling, at
/// most every 5 minutes, jittered, per plugin.
const LOAD_RETRY: Backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(300));

/// A plugin's planned load retries (see `Daemon::settle`).
pub(super) struct Retry {
    backoff: Backoff,
    /// Which plan is current: a retry of an older one does nothing.
    generation: u64,
}

/// Fetches `source` into `dest` here; the outcome for the log, and a
/// warning when what is on disk was kept. What the network or a mount
/// may yet bring is a `Fetch` error (tried again); what the plugin's
/// files say (a link into the home) is a `Config` one.
fn fetch(
    plugin: &str,
    source: &Source,
    dest: &Path,
    progress: &mut dyn FnMut(u8),
) -> Result<(String, Option<String>), LoadError> {
    use aigis_agent::fetch::{copy_local, fetch_git_with_progress, FetchError, FetchOutcome};
    let outcome = match source {
        Source::Git { url, reference } => {
            fetch_git_with_progress(url, reference.as_deref(), dest, progress)
        }
        Source::LocalDir(src) => copy_local(plugin, src, dest),
    }
    .map_err(|e| match e {
        FetchError::Clone { .. }
        | FetchError::NoSuchRef { .. }
        | FetchError::NoSource(_)
        | FetchError::Copy { .. }
        | FetchError::Io { .. } => LoadError::Fetch(e.to_string()),
        _ => LoadError::Config(e.to_string()),
    })?;
    Ok(match outcome {
        FetchOutcome::Cloned { commit } => (format!("cloned at {commit}"), None),
        FetchOutcome::Updated { from, to } => (format!("updated {from} -> {to}"), None),
        FetchOutcome::UpToDate { commit } => (format!("up to date at {commit}"), None),
        FetchOutcome::Copied => ("copied".to_string(), None),
        FetchOutcome::Kept { reason } => ("kept what is on disk".to_string(), Some(reason)),
    })
}

/// A plugin's `AIGIS.config`, as text (a bad byte is named by line).
pub(super) fn read_config(plugin: &str, path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read the plugin config: {}: {e}", path.display()))?;
    config::decode_utf8(path, &bytes).map_err(|e| format!("plugin `{plugin}`: {e}"))
}

/// A plugin's `RESTART` as its agent takes it: how many restarts
/// ([`proto::RESTART_ALWAYS`]: no limit), and whether only failures are.
fn restarts(spec: &PluginSpec) -> (Option<u32>, bool) {
    match spec.restart {
        None => (None, false),
        Some(config::Restart::Times(n)) => (Some(n), false),
        Some(config::Restart::Always) => (Some(proto::RESTART_ALWAYS), false),
        Some(config::Restart::OnFailure) => (Some(proto::RESTART_ALWAYS), true),
    }
}

/// An internal plugin's `LAUNCH` as the agent's shim takes it.
pub fn python_entry(launch: &PythonLaunch) -> PythonEntry {
    match launch {
        PythonLaunch::Module(m) => PythonEntry::Module(m.clone()),
        PythonLaunch::File(f) => PythonEntry::File(f.clone()),
    }
}

/// What central proves itself with on a plugin's direct call channel
/// (`daemon/direct.rs`): 128 bits from the system's random source.
fn call_token() -> std::io::Result<CallToken> {
    use std::io::Read;
    let mut bits = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bits)?;
    Ok(CallToken(proto::hex(&bits)))
}
