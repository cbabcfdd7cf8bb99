//! The agent's link loop: read requests from central, do the work on this
//! host, send replies and events back.
//!
//! One writer task owns the output stream; everything else sends it messages
//! over a bounded channel, so a slow link slows the plugins' output readers
//! (and so the plugins) instead of growing memory or dropping lines.
//!
//! When the link ends (central closed it, or died) or the agent gets SIGTERM,
//! every plugin is stopped before the agent exits: nothing is left running.

use crate::fetch::{copy_local, fetch_git, unpack_files, FetchOutcome};
use crate::install::install;
use crate::supervisor::{Controls, Supervised};
use proto::{
    FetchSource, FrameReader, FrameWriter, FromAgent, Reply, Request, ToAgent, PROTOCOL_VERSION,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, Mutex};

const EVENT_QUEUE: usize = 1024;

type Plugins = Arc<Mutex<HashMap<String, Supervised>>>;

/// Serves one link until it ends; returns once every plugin has stopped.
pub async fn serve<R, W>(input: R, output: W) -> anyhow::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut reader = FrameReader::new(input);
    let (tx, rx) = mpsc::channel::<FromAgent>(EVENT_QUEUE);
    let writer = tokio::spawn(write_loop(FrameWriter::new(output), rx));

    match reader.next::<ToAgent>().await? {
        Some(ToAgent::Hello { version }) if version == PROTOCOL_VERSION => {}
        Some(ToAgent::Hello { version }) => anyhow::bail!(
            "central speaks protocol version {version}, this agent speaks {PROTOCOL_VERSION}"
        ),
        other => anyhow::bail!("expected Hello from central, got {other:?}"),
    }
    tx.send(FromAgent::Hello {
        version: PROTOCOL_VERSION,
        os: std::env::consts::OS.to_string(),
        arch: std::env::consts::ARCH.to_string(),
    })
    .await?;

    let plugins: Plugins = Arc::default();
    let controls: Controls = Arc::default();
    let mut term = signal(SignalKind::terminate())?;
    let result = loop {
        let msg = tokio::select! {
            msg = reader.next::<ToAgent>() => msg,
            _ = term.recv() => break Ok(false),
        };
        match msg {
            Ok(Some(ToAgent::Request { id, request })) => {
                let tx = tx.clone();
                let plugins = plugins.clone();
                let controls = controls.clone();
                tokio::spawn(async move {
                    let result = handle(request, &tx, &plugins, controls).await;
                    let _ = tx.send(FromAgent::Reply { id, result }).await;
                });
            }
            Ok(Some(ToAgent::ControlReply { plugin, payload })) => {
                let to = controls.lock().ok().and_then(|m| m.get(&plugin).cloned());
                if let Some(to) = to {
                    let _ = to.try_send(payload);
                }
            }
            Ok(Some(ToAgent::Shutdown)) => break Ok(true),
            Ok(Some(ToAgent::Hello { .. })) => {}
            Ok(None) => break Ok(false),
            Err(e) => break Err(e),
        }
    };

    stop_all(&plugins).await;
    crate::python::remove_shim_dir();
    if matches!(result, Ok(true)) {
        let _ = tx.send(FromAgent::Bye).await;
    }
    drop(tx);
    let _ = writer.await;
    result.map(|_| ()).map_err(Into::into)
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut out: FrameWriter<W>,
    mut rx: mpsc::Receiver<FromAgent>,
) {
    while let Some(msg) = rx.recv().await {
        if out.send_unflushed(&msg).await.is_err() {
            break;
        }
        // Batch whatever is already queued, then flush once.
        while let Ok(msg) = rx.try_recv() {
            if out.send_unflushed(&msg).await.is_err() {
                return;
            }
        }
        if out.flush().await.is_err() {
            break;
        }
    }
    let _ = out.shutdown().await;
}

async fn stop_all(plugins: &Plugins) {
    let all: Vec<Supervised> = plugins.lock().await.drain().map(|(_, s)| s).collect();
    let stops: Vec<_> = all.into_iter().map(|s| tokio::spawn(s.stop())).collect();
    for s in stops {
        let _ = s.await;
    }
}

async fn handle(
    request: Request,
    events: &mpsc::Sender<FromAgent>,
    plugins: &Plugins,
    controls: Controls,
) -> Result<Reply, String> {
    match request {
        Request::Fetch {
            plugin: _,
            source,
            dest,
        } => fetch(source, dest).await,
        Request::Install(spec) => install(spec, events.clone())
            .await
            .map(|()| Reply::Installed),
        Request::Start(spec) => {
            let name = spec.plugin.clone();
            let mut map = plugins.lock().await;
            if let Some(old) = map.get(&name) {
                if !old.is_finished() {
                    return Err(format!("plugin `{name}` is already supervised"));
                }
            }
            let (handle, pid) = Supervised::start(spec, events.clone(), controls).await?;
            map.insert(name, handle);
            Ok(Reply::Started { pid })
        }
        Request::Stop { plugin } => {
            let handle = plugins.lock().await.remove(&plugin);
            if let Some(h) = handle {
                h.stop().await;
            }
            Ok(Reply::Stopped)
        }
    }
}

async fn fetch(source: FetchSource, dest: PathBuf) -> Result<Reply, String> {
    let fetch_dest = dest.clone();
    let outcome = tokio::task::spawn_blocking(move || match &source {
        FetchSource::Git { url, reference } => {
            fetch_git(url, reference.as_deref(), &fetch_dest).map_err(|e| e.to_string())
        }
        FetchSource::LocalDir(src) => copy_local(src, &fetch_dest).map_err(|e| e.to_string()),
        FetchSource::Files(files) => unpack_files(
            files
                .iter()
                .map(|f| (f.path.as_str(), f.mode, f.contents.as_slice())),
            &fetch_dest,
        )
        .map_err(|e| e.to_string()),
    })
    .await
    .map_err(|e| format!("fetch task failed: {e}"))??;
    let (outcome, warning) = match outcome {
        FetchOutcome::Cloned { commit } => (format!("cloned at {commit}"), None),
        FetchOutcome::Updated { from, to } => (format!("updated {from} -> {to}"), None),
        FetchOutcome::UpToDate { commit } => (format!("up to date at {commit}"), None),
        FetchOutcome::Copied => ("copied".to_string(), None),
        FetchOutcome::Kept { reason } => ("kept what is on disk".to_string(), Some(reason)),
    };
    Ok(Reply::Fetched {
        outcome,
        warning,
        config: read_plugin_config(&dest),
    })
}

fn read_plugin_config(root: &Path) -> Result<String, String> {
    let path = root.join("AIGIS").join("AIGIS.config");
    std::fs::read(&path)
        .map_err(|e| format!("{}: {e}", path.display()))
        .and_then(|bytes| {
            String::from_utf8(bytes).map_err(|_| format!("{}: not valid UTF-8", path.display()))
        })
}
