//! `aigis run`: the daemon. Loads every plugin in order, then waits for
//! SIGINT/SIGTERM and stops everything: one signal, fanned out, awaited.

use crate::control;
use crate::core::{Control, PythonCore};
use crate::home::Home;
use crate::link::{AgentLink, Controls};
use crate::logs::{LogSink, Rotation};
use crate::plugins::{load, LoadContext, Registry, State};
use crate::remote::RemoteSettings;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// How long the agent gets to stop every plugin (its own grace is 5 s).
const AGENT_SHUTDOWN: Duration = Duration::from_millis(5_800);

pub async fn run(config_path: &Path, home_flag: Option<&Path>) -> anyhow::Result<()> {
    let config = config::load_central(config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let home = Home::resolve(home_flag, config.aigis.home.as_deref())?;
    home.prepare()?;
    let _lock = control::lock_home(&home)?;
    tracing::info!(
        "aigis {} starting: config {}, home {}, {} plugin(s)",
        env!("CARGO_PKG_VERSION"),
        config_path.display(),
        home.root().display(),
        config.plugins.len()
    );
    for w in &config.warnings {
        tracing::warn!("{w}");
    }

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;

    let defaults = Rotation::default();
    let rotation = Rotation {
        max_bytes: config.aigis.log_max_bytes.unwrap_or(defaults.max_bytes),
        keep: config.aigis.log_keep.unwrap_or(defaults.keep),
    };
    let (log, log_task) = LogSink::start(home.log(), rotation);
    let registry = Registry::new(log.clone());
    let (control_tx, mut control_rx) = tokio::sync::mpsc::channel::<Control>(64);
    let core = PythonCore::start(log.clone(), control_tx.clone()).map_err(|e| format!("{e:#}"));
    if let Err(e) = &core {
        tracing::error!("{e}; core and internal plugins will fail to load");
    }
    let controls = Controls {
        daemon: control_tx,
        core: core.as_ref().ok().cloned(),
    };
    let agent_binary = agent_binary()?;
    let agent =
        Arc::new(AgentLink::spawn_local(&agent_binary, registry.clone(), controls.clone()).await?);
    for entry in &config.plugins {
        registry.add(entry);
    }
    let ctx = Arc::new(LoadContext {
        home: home.clone(),
        agent: agent.clone(),
        registry: registry.clone(),
        core: core.clone(),
        cores: Default::default(),
        entries: config.plugins.clone(),
        remote: RemoteSettings {
            remote_dir: config.aigis.remote_dir.clone(),
            agents: config.aigis.agents.clone(),
        },
        agent_binary,
        controls,
        remotes: Default::default(),
        placements: Default::default(),
        retries: Default::default(),
    });
    let retries = {
        let ctx = ctx.clone();
        tokio::spawn(async move { ctx.retry_unreachable().await })
    };
    let reloads = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            while let Some(Control::Reload(name)) = control_rx.recv().await {
                let ctx = ctx.clone();
                tokio::spawn(async move { ctx.reload(&name).await });
            }
        })
    };
    let server = control::serve(&home, ctx.clone())?;
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch_local = {
        let (agent, registry, stopping) = (agent.clone(), registry.clone(), stopping.clone());
        tokio::spawn(async move {
            agent.closed().await;
            if !stopping.load(std::sync::atomic::Ordering::SeqCst) {
                // Its plugins died with it (PR_SET_PDEATHSIG); say so.
                registry
                    .fail_host(
                        "local",
                        "the local agent died; restart aigis to run its plugins again",
                    )
                    .await;
            }
        })
    };
    let ctx_for_shutdown = ctx.clone();
    let summary = registry.clone();
    let loader = tokio::spawn(async move {
        for entry in &ctx.entries {
            load(entry, &ctx).await;
        }
        let table = summary.snapshot();
        let states = table
            .iter()
            .map(|(n, s)| {
                format!(
                    "{n} ({} on {}): {}",
                    s.kind.as_str(),
                    s.host,
                    s.state.as_str()
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let log = summary.log();
        log.info(
            "aigis",
            format!("{} plugin(s) loaded: {states}", table.len()),
        )
        .await;
        let failed: Vec<&str> = table
            .iter()
            .filter(|(_, s)| s.state == State::Failed)
            .map(|(n, _)| n.as_str())
            .collect();
        if !failed.is_empty() {
            log.warn("aigis", format!("failed to load: {}", failed.join(", ")))
                .await;
        }
    });

    let signal_name = tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
    };
    tracing::info!("{signal_name} received: stopping every plugin");
    stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    watch_local.abort();
    loader.abort();
    reloads.abort();
    retries.abort();
    server.abort();
    let _ = std::fs::remove_file(control::socket_path(&home));
    // Every agent, local and remote, stops its plugins at the same time.
    let mut remote_stops = tokio::task::JoinSet::new();
    for remote in ctx_for_shutdown.remote_agents().await {
        remote_stops.spawn(async move {
            remote.shutdown(AGENT_SHUTDOWN).await;
        });
    }
    agent.shutdown(AGENT_SHUTDOWN).await;
    while remote_stops.join_next().await.is_some() {}
    if let Ok(core) = &core {
        // cleanup() of every core plugin, bounded: a hung cleanup must not
        // keep the daemon from exiting.
        match tokio::time::timeout(Duration::from_secs(5), core.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("core shutdown: {e}"),
            Err(_) => tracing::error!("core plugins' cleanup() did not finish within 5 s"),
        }
    }
    drop(agent);
    drop(registry);
    // The Python thread keeps a sink of its own: flush rather than wait for
    // every sender to go away.
    let _ = tokio::time::timeout(Duration::from_secs(1), log.flush()).await;
    drop(log);
    drop(log_task);
    tracing::info!("aigis stopped");
    Ok(())
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
