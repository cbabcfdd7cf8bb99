//! LAN hosts: one SSH connection and one agent per host, connected on first
//! use under that host's own lock (a slow host never holds up another), and
//! linked again whenever the connection drops.
//!
//! The agent daemon on the host outlives the SSH connection: when the link
//! drops, [`RemoteAgent`] reconnects with backoff and jitter and attaches to
//! the same running plugins, whose output waited on the host. If the agent
//! itself was replaced (killed, host rebooted), its plugins are gone: the
//! daemon hears of it through `lost` and fails or reloads them.

use super::{direct, lock};
use crate::callpool::CallPool;
use crate::deploy::{self, RemoteSettings};
use crate::hostlane::HostLane;
use crate::link::{AgentLink, Delivery, Received};
use crate::logs::LogSink;
use crate::ssh::{self, Connection};
use crate::tasks::Tasks;
use config::HostSpec;
use proto::{Backoff, CallToken};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

/// What a remote agent needs from the daemon.
#[derive(Clone)]
pub struct Wiring {
    pub settings: RemoteSettings,
    pub local_agent: PathBuf,
    pub inbox: mpsc::Sender<Delivery>,
    /// Hosts whose agent was replaced while linked away.
    pub lost: mpsc::Sender<String>,
    /// Hosts whose link is down now (shown in status).
    pub down: super::state::DownHosts,
    pub log: LogSink,
    pub tasks: Tasks,
}

/// The agent on a LAN host, and the connection it runs over; both are
/// replaced when the link drops and comes back.
pub struct RemoteAgent {
    host: HostSpec,
    /// The remote dir on that host, absolute.
    pub base: PathBuf,
    agent: PathBuf,
    link: RwLock<Arc<AgentLink>>,
    connection: tokio::sync::Mutex<Connection>,
    received: Arc<Received>,
    wiring: Wiring,
    /// The runtime the connection and everything over it run on, and the
    /// threads that answer its direct calls.
    lane: HostLane,
    /// The direct call channels kept open (see `direct.rs`), by plugin,
    /// with when each was asked for.
    direct: Mutex<HashMap<String, (CancellationToken, Instant)>>,
    /// Bytes of calls those channels handed to the call pool, unanswered.
    call_budget: Arc<Semaphore>,
}

impl RemoteAgent {
    /// The current link (requests fail while the host is away).
    pub fn link(&self) -> Arc<AgentLink> {
        self.link
            .read()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Keeps a direct call channel open to `plugin`, an AigisProxy plugin
    /// just started there with `token`, until [`RemoteAgent::close_direct`].
    pub fn open_direct(self: &Arc<Self>, plugin: &str, token: CallToken, calls: CallPool) {
        let stop = CancellationToken::new();
        let opened = (stop.clone(), Instant::now());
        if let Some((old, _)) = lock(&self.direct).insert(plugin.to_string(), opened) {
            old.cancel();
        }
        let task = direct::keep_open(
            Arc::downgrade(self),
            plugin.to_string(),
            token,
            direct::Answering {
                calls,
                lane: self.lane.clone(),
                budget: self.call_budget.clone(),
            },
        );
        self.wiring
            .tasks
            .spawn_cancellable_on(self.lane.handle(), async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = task => {}
                }
            });
    }

    /// `plugin` stopped: its direct call channel is not opened again.
    pub fn close_direct(&self, plugin: &str) {
        if let Some((stop, _)) = lock(&self.direct).remove(plugin) {
            stop.cancel();
        }
    }

    /// As [`RemoteAgent::close_direct`], for a channel asked for before
    /// `at` only: news from the agent that `plugin` stopped is about the
    /// run it had then, not one started since.
    pub fn close_direct_opened_before(&self, plugin: &str, at: Instant) {
        let mut direct = lock(&self.direct);
        if direct.get(plugin).is_some_and(|(_, opened)| *opened < at) {
            if let Some((stop, _)) = direct.remove(plugin) {
                stop.cancel();
            }
        }
    }

    /// A channel to `plugin`'s direct call socket, over the connection of
    /// the moment (see `direct.rs`).
    pub(super) async fn open_direct_channel(
        &self,
        plugin: &str,
    ) -> Result<russh::Channel<russh::client::Msg>, String> {
        let path = aigis_agent::direct::socket_path(&self.base, plugin)
            .ok_or("its name or the remote dir is too long for a socket")?;
        if self.link().is_closed() {
            return Err(format!("{} is away", self.host));
        }
        self.connection.lock().await.open_socket(&path).await
    }

    /// Stops every plugin there and the agent.
    pub async fn shutdown(&self, limit: Duration) {
        self.link().shutdown(limit).await;
        self.connection.lock().await.close().await;
    }

    /// Links again whenever the link drops, until shutdown.
    fn keep_linked(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let tasks = self.wiring.tasks.clone();
        self.wiring.tasks.spawn_cancellable(async move {
            loop {
                let Some(agent) = me.upgrade() else { return };
                let link = agent.link();
                drop(agent);
                link.closed().await;
                if tasks.is_cancelled() {
                    return;
                }
                let Some(agent) = me.upgrade() else { return };
                agent.relink().await;
            }
        });
    }

    async fn relink(&self) {
        let log = &self.wiring.log;
        let host = &self.host;
        crate::lock(&self.wiring.down).insert(host.to_string(), std::time::SystemTime::now());
        log.warn(
            "aigis",
            format!("{host}: link lost; its plugins keep running there; reconnecting"),
        )
        .await;
        let mut backoff =
            Backoff::new(Duration::from_millis(500), Duration::from_secs(30)).jittered();
        loop {
            match self.open().await {
                Ok((connection, link)) => {
                    let replaced = link.replaced;
                    *self.connection.lock().await = connection;
                    if let Ok(mut l) = self.link.write() {
                        *l = Arc::new(link);
                    }
                    crate::lock(&self.wiring.down).remove(&host.to_string());
                    if replaced {
                        log.warn("aigis", format!("{host}: reconnected to a new agent; the plugins that ran there are gone")).await;
                        let _ = self.wiring.lost.send(host.to_string()).await;
                    } else {
                        log.info("aigis", format!("{host}: reconnected to the running agent"))
                            .await;
                    }
                    return;
                }
                Err(e) => {
                    let wait = backoff.next_delay();
                    log.warn(
                        "aigis",
                        format!(
                            "{host}: reconnect failed ({e}); next try in {:.1}s",
                            wait.as_secs_f64()
                        ),
                    )
                    .await;
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// A fresh connection and link to the (running or new) agent daemon,
    /// on the host's runtime.
    async fn open(&self) -> Result<(Connection, AgentLink), String> {
        let (host, received, wiring) = (
            self.host.clone(),
            self.received.clone(),
            self.wiring.clone(),
        );
        let attach = deploy::attach_command(&self.agent, &self.base);
        self.lane
            .spawn(async move {
                let connection = ssh::connect(&ssh::resolve(&host))
                    .await
                    .map_err(|e| e.to_string())?;
                let stream = connection.stream(&attach).await?;
                let link = link(stream, &host, received, &wiring).await?;
                Ok((connection, link))
            })
            .await
            .map_err(|e| format!("{}: the connection's task failed: {e}", self.host))?
    }
}

/// Starts the link over an agent's SSH stream (see `deploy::agent`).
async fn link(
    stream: deploy::Stream,
    host: &HostSpec,
    received: Arc<Received>,
    wiring: &Wiring,
) -> Result<AgentLink, String> {
    let (rd, wr) = tokio::io::split(stream);
    AgentLink::start(
        host.to_string(),
        rd,
        wr,
        wiring.inbox.clone(),
        received,
        &wiring.tasks,
    )
    .await
    .map_err(|e| format!("{host}: {e:#}"))
}

/// Why a host could not be used.
#[derive(Debug)]
pub enum HostError {
    /// No answer (down, no route, timed out): worth trying again.
    Unreachable(String),
    /// It answered and refused, or we refused it (a host key that is
    /// unknown or changed, no key accepted, no agent for its platform):
    /// trying again changes nothing until the operator acts.
    Refused(String),
}

/// Connects to `host`, makes sure its agent is there, and starts it; all
/// of it on the host's own runtime.
async fn connect(host: &HostSpec, wiring: &Wiring) -> Result<Arc<RemoteAgent>, HostError> {
    let lane = HostLane::start(&host.to_string())
        .map_err(|e| HostError::Refused(format!("{host}: cannot start its runtime: {e}")))?;
    let (h, w) = (host.clone(), wiring.clone());
    let (connection, deployed, link, received) = lane
        .spawn(async move {
            let (host, wiring) = (&h, &w);
            let connection = ssh::connect(&ssh::resolve(host))
                .await
                .map_err(|e| match e {
                    ssh::SshError::Connect { .. } => HostError::Unreachable(e.to_string()),
                    other => HostError::Refused(other.to_string()),
                })?;
            let (deployed, stream) = deploy::agent(
                &connection,
                host,
                &wiring.settings,
                &wiring.local_agent,
                &wiring.log,
            )
            .await
            .map_err(HostError::Refused)?;
            let received = Arc::new(Received::default());
            let link = link(stream, host, received.clone(), wiring)
                .await
                .map_err(HostError::Unreachable)?;
            Ok((connection, deployed, link, received))
        })
        .await
        .map_err(|e| HostError::Refused(format!("{host}: the connection's task failed: {e}")))??;
    let remote = Arc::new(RemoteAgent {
        host: host.clone(),
        base: deployed.base,
        agent: deployed.agent,
        link: RwLock::new(Arc::new(link)),
        connection: tokio::sync::Mutex::new(connection),
        received,
        wiring: wiring.clone(),
        lane,
        direct: Mutex::default(),
        call_budget: Arc::new(Semaphore::new(crate::link::LINK_BUDGET)),
    });
    remote.keep_linked();
    Ok(remote)
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<RemoteAgent>>>>;

/// Every LAN host's agent, each behind its own lock.
#[derive(Default)]
pub struct HostPool {
    slots: Mutex<HashMap<String, Slot>>,
    connected: Mutex<Vec<Arc<RemoteAgent>>>,
    /// Why an early connection (see [`HostPool::warm`]) failed, for the
    /// first plugin that asks: it is not tried twice in a row.
    failed_early: Mutex<HashMap<String, HostError>>,
}

impl HostPool {
    /// The agent on `host`: connected, deployed and started on first use,
    /// then shared by every plugin there.
    pub async fn agent(
        &self,
        host: &HostSpec,
        wiring: &Wiring,
    ) -> Result<Arc<RemoteAgent>, HostError> {
        let slot: Slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(host.to_string())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(agent) = slot.as_ref() {
            return Ok(agent.clone()); // it relinks by itself after a drop
        }
        if let Some(e) = lock(&self.failed_early).remove(&host.to_string()) {
            return Err(e);
        }
        let agent = connect(host, wiring).await?;
        *slot = Some(agent.clone());
        self.connected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(agent.clone());
        Ok(agent)
    }

    /// Connects to `host` ahead of the plugin that needs it; a failure is
    /// kept for that plugin's load.
    pub async fn warm(&self, host: &HostSpec, wiring: &Wiring) {
        if let Err(e) = self.agent(host, wiring).await {
            lock(&self.failed_early).insert(host.to_string(), e);
        }
    }

    /// Every connected agent (for shutdown).
    pub fn all(&self) -> Vec<Arc<RemoteAgent>> {
        self.connected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
