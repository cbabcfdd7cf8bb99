//! The control socket's server: one task per connection, one request each
//! (the protocol and the client are in `crate::control`).

use super::Daemon;
use crate::control::{done, failure, Request, Response};
use crate::home::Home;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

pub use crate::control::socket_path;

/// Binds `<home>/run/aigis.sock` with mode 0600.
pub(super) fn bind(home: &Home) -> anyhow::Result<UnixListener> {
    let path = socket_path(home);
    // Only reached with the home lock held: a socket file left here is stale.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves requests until shutdown.
pub(super) async fn serve(listener: UnixListener, daemon: Arc<Daemon>) {
    while let Ok((stream, _)) = listener.accept().await {
        let daemon2 = daemon.clone();
        daemon.tasks.spawn_cancellable(async move {
            let _ = answer(stream, &daemon2).await;
        });
    }
}

async fn answer(stream: UnixStream, daemon: &Arc<Daemon>) -> std::io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    // One request line; a client that sends more than 64 KiB is not ours.
    let mut limited = BufReader::new(tokio::io::AsyncReadExt::take(rd, 64 * 1024));
    limited.read_line(&mut line).await?;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(request) => handle(request, daemon).await,
        Err(e) => failure(format!("bad request: {e}")),
    };
    let mut out = serde_json::to_vec(&response).unwrap_or_default();
    out.push(b'\n');
    wr.write_all(&out).await
}

async fn handle(request: Request, daemon: &Arc<Daemon>) -> Response {
    let (plugin, verb) = match request {
        Request::Status => {
            return Response {
                ok: true,
                plugins: daemon.registry.snapshot(),
                ..Response::default()
            }
        }
        Request::Logs { plugin } => (plugin, Verb::Logs),
        Request::Stop { plugin } => (plugin, Verb::Stop),
        Request::Start { plugin } => (plugin, Verb::Start),
        Request::Reload { plugin } => (plugin, Verb::Reload),
    };
    if daemon.entry(&plugin).is_none() {
        return failure(format!("no plugin named `{plugin}` in the config"));
    }
    let result = match verb {
        Verb::Logs => {
            return Response {
                ok: true,
                log_file: Some(daemon.home.log().join(format!("{plugin}.log"))),
                ..Response::default()
            }
        }
        Verb::Stop => daemon.stop(&plugin).await.map(|_| "stopped".to_string()),
        Verb::Start => daemon.start(&plugin).await.map(|s| s.word().to_string()),
        Verb::Reload => daemon
            .reload(&plugin)
            .await
            .map(|s| format!("reloaded: {}", s.word())),
    };
    match result {
        Ok(what) => done(format!("{plugin} {what}")),
        Err(e) => failure(e),
    }
}

enum Verb {
    Logs,
    Stop,
    Start,
    Reload,
}
