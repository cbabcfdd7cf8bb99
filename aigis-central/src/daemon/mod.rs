//! `aigis run`: the daemon. [`run`] is the whole life of it, one step at a
//! time: start the log, the core and the local agent; serve the control
//! socket; load every plugin; wait for the shutdown signal; stop in order.
//!
//! Rooms:
//! - `state.rs`: every plugin's [`State`](state::State) and the `Registry`.
//! - `load.rs`: one plugin from its entry to a running process: resolve
//!   (fetch here, read its config once), place (local or its host, the
//!   tree sent there), install, start; and stop, start, reload.
//! - `hosts.rs`: the agents on LAN hosts, one lock per host.
//! - `dispatch.rs`: what agents report, checked and routed (logs, states,
//!   calls to the core, reloads).
//! - `control.rs`: the control socket's requests; `report.rs`: what
//!   `status` and `skills` answer; `shell.rs`: `aigis shell`'s calls.
//! - `reread.rs`: SIGHUP and `aigis reload` without a name: the config
//!   read again and the difference applied.

mod control;
mod direct;
mod dispatch;
mod hosts;
mod load;
mod report;
mod reread;
mod shell;
pub mod state;

pub use load::python_entry;

use crate::core::{Control, PythonCore};
use crate::deploy::RemoteSettings;
use crate::home::Home;
use crate::link::{AgentLink, Delivery};
use crate::lock;
use crate::logs::{ConsoleLimits, LogSink, Rotation};
use crate::tasks::Tasks;
use config::{CentralConfig, PluginEntry, PluginKind};
use hosts::{HostPool, RemoteAgent, Wiring};
use proto::CorePlugin;
use state::Registry;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long agents get to stop every plugin (their own grace is 5 s).
const AGENT_SHUTDOWN: Duration = Duration::from_millis(5_800);

/// Where a plugin runs, once placed.
#[derive(Clone)]
pub struct Placement {
    /// "local", or the `HOST` as written.
    pub host: String,
    pub kind: PluginKind,
    remote: Option<Arc<RemoteAgent>>,
    /// `RESTART` from its config, for a plugin whose agent was replaced.
    restart: Option<u32>,
}

/// Where each plugin runs; the lane asks it too.
type Placed = Arc<Mutex<HashMap<String, Placement>>>;

/// What the daemon owns; shared by its tasks.
pub struct Daemon {
    pub home: Home,
    /// The central config file, read again on SIGHUP.
    config_path: PathBuf,
    /// The plugins of the config as last read, in load order.
    entries: std::sync::RwLock<Vec<PluginEntry>>,
    pub registry: Registry,
    log: LogSink,
    /// The embedded interpreter, or why it is not available.
    core: Result<PythonCore, String>,
    /// Plugins whose `AIGIS.core` is in the central core, in load order:
    /// what a plugin with the copied core loads into its own process.
    cores: Mutex<Vec<CorePlugin>>,
    local: Arc<AgentLink>,
    hosts: Arc<HostPool>,
    wiring: Wiring,
    placed: Placed,
    /// Plugins a load, stop or reload is working on right now.
    busy: Mutex<HashSet<String>>,
    /// Plugins waiting for their host to become reachable.
    /// Plugins whose load is tried again, with their backoff.
    retrying: Mutex<HashMap<String, load::Retry>>,
    /// Where `settle` plans a retry: (plugin, plan, when), run by
    /// `retry_loads`.
    retry_due: mpsc::UnboundedSender<(String, u64, tokio::time::Instant)>,
    /// `[aigis]` as last read (SIGHUP reads it again): who each plugin runs
    /// as at its next start, and who may reload whom.
    settings: std::sync::RwLock<config::AigisSettings>,
    tasks: Tasks,
}

/// Runs the daemon until `shutdown` resolves (to the name of what asked).
pub async fn run(
    config: CentralConfig,
    home: Home,
    shutdown: impl Future<Output = &'static str>,
) -> anyhow::Result<()> {
    // Before `prepare` makes its directories: a home that has them ran
    // an AIGIS before, whose identity it keeps.
    let central_id = crate::deploy::central_id(home.root());
    home.prepare()?;
    let _lock = crate::control::lock_home(&home)?;
    // From now on SIGHUP re-reads the config instead of ending the daemon.
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tracing::info!(
        "aigis {} starting: config {}, home {}, {} plugin(s)",
        env!("CARGO_PKG_VERSION"),
        config.path.display(),
        home.root().display(),
        config.plugins.len()
    );
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let defaults = Rotation::default();
    let rotation = Rotation {
        max_bytes: config.aigis.log_max_bytes.unwrap_or(defaults.max_bytes),
        keep: config.aigis.log_keep.unwrap_or(defaults.keep),
    };
    let limits = ConsoleLimits {
        lines_per_s: config
            .aigis
            .console_lines_per_s
            .unwrap_or(ConsoleLimits::default().lines_per_s),
        quiet: config.aigis.quiet.clone(),
    };
    let (log, log_task) = LogSink::start(home.log(), rotation, limits);
    let tasks = Tasks::new();
    let (control_tx, control_rx) = mpsc::channel::<Control>(64);
    let (inbox_tx, inbox_rx) = mpsc::channel::<Delivery>(256);
    let (lost_tx, lost_rx) = mpsc::channel::<String>(16);
    let agent_binary = agent_binary()?;
    let registry = Registry::new(log.clone(), &config.plugins);
    let wiring = Wiring {
        settings: RemoteSettings {
            remote_dir: config.aigis.remote_dir.clone(),
            agents: config.aigis.agents.clone(),
            central_id,
        },
        local_agent: agent_binary.clone(),
        inbox: inbox_tx.clone(),
        lost: lost_tx,
        down: registry.down_hosts(),
        log: log.clone(),
        tasks: tasks.clone(),
    };
    let hosts = Arc::new(HostPool::default());
    connect_early(&config.plugins, &home, &hosts, &wiring);
    let core = PythonCore::start(log.clone(), control_tx).map_err(|e| format!("{e:#}"));
    if let Err(e) = &core {
        tracing::error!("{e}; core and internal plugins will fail to load");
    }
    // Internal plugins on this host call the core over a lane of their own.
    let placed = Placed::default();
    let lane = match &core {
        Ok(core) => start_lane(core, &inbox_tx, &placed),
        Err(_) => None,
    };
    let local = Arc::new(
        AgentLink::spawn_local(&agent_binary, &home.agent(), inbox_tx, &tasks, lane).await?,
    );
    let (retry_due, retries_planned) = mpsc::unbounded_channel();
    let daemon = Arc::new(Daemon {
        registry,
        entries: std::sync::RwLock::new(config.plugins.clone()),
        config_path: config.path.clone(),
        settings: std::sync::RwLock::new(config.aigis.clone()),
        wiring,
        home,
        log: log.clone(),
        core,
        cores: Mutex::default(),
        local,
        hosts,
        placed,
        busy: Mutex::default(),
        retrying: Mutex::default(),
        retry_due,
        tasks: tasks.clone(),
    });

    let links_done = CancellationToken::new();
    tasks.spawn(dispatch::run(daemon.clone(), inbox_rx, links_done.clone()));
    tasks.spawn_cancellable(daemon.clone().watch_local_agent());
    tasks.spawn_cancellable(daemon.clone().serve_core_requests(control_rx));
    tasks.spawn_cancellable(daemon.clone().serve_lost_hosts(lost_rx));
    tasks.spawn_cancellable(daemon.clone().retry_loads(retries_planned));
    let listener = control::bind(&daemon.home)?;
    tasks.spawn_cancellable(control::serve(listener, daemon.clone()));
    tasks.spawn_cancellable(daemon.clone().load_all());
    tasks.spawn_cancellable(daemon.clone().reread_on_sighup(hup));

    let signal = shutdown.await;
    tracing::info!("{signal} received: stopping every plugin");
    // 1. Cancel: no load, reload or request starts any more.
    tasks.cancel();
    let _ = std::fs::remove_file(control::socket_path(&daemon.home));
    // 2. Every agent, local and remote, stops its plugins at the same time.
    let mut stops = tokio::task::JoinSet::new();
    for remote in daemon.hosts.all() {
        stops.spawn(async move { remote.shutdown(AGENT_SHUTDOWN).await });
    }
    let local = daemon.local.clone();
    stops.spawn(async move { local.shutdown(AGENT_SHUTDOWN).await });
    while stops.join_next().await.is_some() {}
    // 3. Tracked tasks finish (links end with their agents).
    links_done.cancel();
    if !tasks.wait(Duration::from_secs(3)).await {
        tracing::warn!("some tasks did not finish within 3 s of the agents stopping");
    }
    // 4. cleanup() of every core plugin, bounded: a hung cleanup must not
    // keep the daemon from exiting.
    if let Ok(core) = &daemon.core {
        core.calls.stop();
        match tokio::time::timeout(Duration::from_secs(5), core.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("core shutdown: {e}"),
            Err(_) => tracing::error!("core plugins' cleanup() did not finish within 5 s"),
        }
    }
    // 5. Logs flushed. The Python thread keeps a sink of its own: flush
    // rather than wait for every sender to go away.
    drop(daemon);
    let _ = tokio::time::timeout(Duration::from_secs(1), log.flush()).await;
    drop(log);
    drop(log_task);
    tracing::info!("aigis stopped");
    Ok(())
}

/// Starts connecting, right away, to the LAN hosts that plugins ran on
/// last time (their config as it is on disk: a local source, or the copy
/// central fetched before), while the core and the local agent start:
/// each host costs an SSH handshake and a login shell, and they need not
/// wait for each other. Loading takes the same connection (`HostPool`
/// keeps it); a host that turns out not to be wanted is only connected.
fn connect_early(entries: &[PluginEntry], home: &Home, hosts: &Arc<HostPool>, wiring: &Wiring) {
    let mut seen = std::collections::HashSet::new();
    for entry in entries {
        let root = match &entry.source {
            config::Source::LocalDir(dir) => dir.clone(),
            config::Source::Git { .. } => home.ext().join(&entry.name),
        };
        // Read as loading reads it: never through a link out of the plugin.
        let Ok(file) = aigis_agent::fetch::plugin_file(&entry.name, &root, "AIGIS.config") else {
            continue;
        };
        let Ok(text) = load::read_config(&entry.name, &file) else {
            continue;
        };
        let Ok(spec) = config::parse_plugin(entry, &root, &file, &text) else {
            continue;
        };
        let Some(host) = spec.remote_host().cloned() else {
            continue;
        };
        if !seen.insert(host.to_string()) {
            continue;
        }
        let (hosts, wiring) = (hosts.clone(), wiring.clone());
        wiring.tasks.clone().spawn_cancellable(async move {
            hosts.warm(&host, &wiring).await;
        });
    }
}

/// The lane's two ends: central serves one, the local agent gets the other
/// (returned). `None` (the agent then relays calls over its link) when the
/// socket cannot be made.
fn start_lane(
    core: &PythonCore,
    inbox: &mpsc::Sender<Delivery>,
    placed: &Placed,
) -> Option<OwnedFd> {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills two descriptors we then own.
    let made = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if made != 0 {
        tracing::warn!(
            "no lane for local internal plugins: {}",
            std::io::Error::last_os_error()
        );
        return None;
    }
    // SAFETY: both are new descriptors, owned by nothing else.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let placed = placed.clone();
    let wiring = crate::lane::Wiring {
        calls: core.calls.clone(),
        inbox: inbox.clone(),
        runtime: tokio::runtime::Handle::current(),
        // Only an internal plugin central placed here has a lane.
        placed_here: Arc::new(move |plugin: &str| {
            lock(&placed).get(plugin).is_some_and(|p| {
                p.remote.is_none()
                    && matches!(
                        p.kind,
                        PluginKind::InternalLocal | PluginKind::InternalRemote
                    )
            })
        }),
    };
    match crate::lane::serve(ours, wiring) {
        Ok(()) => Some(theirs),
        Err(e) => {
            tracing::warn!("no lane for local internal plugins: {e}");
            None
        }
    }
}

impl Daemon {
    fn entry(&self, name: &str) -> Option<PluginEntry> {
        self.entries().into_iter().find(|e| e.name == name)
    }

    fn entries(&self) -> Vec<PluginEntry> {
        self.entries
            .read()
            .map(|e| e.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The user `plugin` runs as (`[aigis] user`, `users`); `None`: the agent's.
    fn user_of(&self, plugin: &str) -> Option<String> {
        let settings = self.settings.read().unwrap_or_else(|p| p.into_inner());
        settings.user_for(plugin).map(str::to_string)
    }

    /// Whether `plugin` installs with its host's Python, not an
    /// environment of its own (`[aigis] system_python`).
    fn system_python(&self, plugin: &str) -> bool {
        let settings = self.settings.read().unwrap_or_else(|p| p.into_inner());
        settings.system_python_for(plugin)
    }

    /// Whether `plugin` runs without Landlock (`[aigis] unconfined`).
    fn unconfined(&self, plugin: &str) -> bool {
        let settings = self.settings.read().unwrap_or_else(|p| p.into_inner());
        settings.unconfined.contains(plugin)
    }

    fn python(&self) -> Result<&PythonCore, String> {
        self.core.as_ref().map_err(Clone::clone)
    }

    fn placement(&self, plugin: &str) -> Option<Placement> {
        lock(&self.placed).get(plugin).cloned()
    }

    /// The link to the agent that runs `plugin` (the local one before it
    /// was placed).
    fn link_of(&self, plugin: &str) -> Arc<AgentLink> {
        match self.placement(plugin).and_then(|p| p.remote) {
            Some(remote) => remote.link(),
            None => self.local.clone(),
        }
    }

    /// Marks `plugin` as worked on; `None` if another operation already is.
    fn claim(self: &Arc<Self>, plugin: &str) -> Option<Claim> {
        lock(&self.busy).insert(plugin.to_string()).then(|| Claim {
            daemon: self.clone(),
            plugin: plugin.to_string(),
        })
    }

    /// Plugin `caller` may reload `target`: itself, a core plugin, or what
    /// `[aigis] may_reload` grants it.
    fn may_reload(&self, caller: &str, target: &str) -> bool {
        caller == target
            || self
                .entry(target)
                .is_some_and(|e| self.kind_of(&e.name) == PluginKind::Core)
            || self
                .settings
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .may_reload
                .iter()
                .any(|(who, whom)| who == caller && whom.iter().any(|t| t == "*" || t == target))
    }

    fn kind_of(&self, plugin: &str) -> PluginKind {
        match self.placement(plugin) {
            Some(p) => p.kind,
            None => self
                .entry(plugin)
                .map_or(PluginKind::External, |e| e.section),
        }
    }

    /// The local agent died: its plugins died with it (PR_SET_PDEATHSIG).
    async fn watch_local_agent(self: Arc<Self>) {
        self.local.closed().await;
        self.registry
            .fail_host(
                "local",
                "the local agent died; restart aigis to run its plugins again",
            )
            .await;
    }

    /// Reloads that Python code in central asks for (`aigis.AIGISReload`
    /// called by a core plugin).
    async fn serve_core_requests(self: Arc<Self>, mut requests: mpsc::Receiver<Control>) {
        while let Some(Control::Reload(name)) = requests.recv().await {
            let daemon = self.clone();
            self.tasks.spawn_cancellable(async move {
                if let Err(e) = daemon.reload(&name).await {
                    tracing::warn!("reload of `{name}` requested by the core: {e}");
                }
            });
        }
    }

    /// A host's agent was replaced: what ran there is gone. Plugins with
    /// `RESTART` are loaded again; the others are marked failed.
    async fn serve_lost_hosts(self: Arc<Self>, mut lost: mpsc::Receiver<String>) {
        while let Some(host) = lost.recv().await {
            let gone: Vec<(String, Placement)> = lock(&self.placed)
                .iter()
                .filter(|(_, p)| p.host == host)
                .map(|(n, p)| (n.clone(), p.clone()))
                .collect();
            self.registry
                .fail_host(
                    &host,
                    &format!("the agent on {host} was replaced (killed or the host restarted); its plugins stopped with it"),
                )
                .await;
            for (name, placement) in gone {
                if let Some(remote) = &placement.remote {
                    remote.close_direct(&name);
                }
                if placement.restart.is_some_and(|n| n > 0) {
                    let daemon = self.clone();
                    self.tasks.spawn_cancellable(async move {
                        let _ = daemon.start(&name).await;
                    });
                }
            }
        }
    }
}

/// A plugin claimed for one operation; released when dropped.
pub struct Claim {
    daemon: Arc<Daemon>,
    plugin: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        lock(&self.daemon.busy).remove(&self.plugin);
    }
}

/// The `aigis-agent` binary installed beside `aigis`.
fn agent_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let agent = exe.with_file_name("aigis-agent");
    if agent.is_file() {
        Ok(agent)
    } else {
        anyhow::bail!(
            "the agent binary {} is missing: install aigis-agent beside aigis (cargo build builds both)",
            agent.display()
        )
    }
}
