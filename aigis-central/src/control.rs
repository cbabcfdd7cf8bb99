//! The control socket: how `aigis status|logs|stop|start|reload` talk to a
//! running daemon.
//!
//! `<home>/run/aigis.sock`, a Unix socket with mode 0600 (only the daemon's
//! user may steer it; no TCP port is ever opened). One request per
//! connection: a JSON line in, a JSON line out. `<home>/run/aigis.lock`,
//! held with `flock` for the daemon's lifetime, makes a second `aigis run`
//! on the same home fail instead of fighting over plugins.

use crate::home::Home;
use crate::plugins::{LoadContext, Status};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    Logs { plugin: String },
    Stop { plugin: String },
    Start { plugin: String },
    Reload { plugin: String },
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<PluginStatus>,
    /// For `logs`: the plugin's log file, which the client reads itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file: Option<PathBuf>,
}

/// One row of `aigis status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginStatus {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub host: String,
    pub state: String,
    pub reason: Option<String>,
    pub pid: Option<u32>,
    pub restarts_left: Option<u32>,
    /// Seconds in the current state.
    pub uptime_s: u64,
}

impl PluginStatus {
    fn from(name: &str, s: &Status) -> PluginStatus {
        PluginStatus {
            name: name.to_string(),
            kind: s.kind.as_str().to_string(),
            host: s.host.clone(),
            state: s.state.as_str().to_string(),
            reason: s.reason.clone(),
            pid: s.pid,
            restarts_left: s.restarts_left,
            uptime_s: s.since.elapsed().as_secs(),
        }
    }
}

fn failure(error: String) -> Response {
    Response {
        error: Some(error),
        ..Response::default()
    }
}

fn done(message: String) -> Response {
    Response {
        ok: true,
        message: Some(message),
        ..Response::default()
    }
}

pub fn socket_path(home: &Home) -> PathBuf {
    home.run().join("aigis.sock")
}

/// Holds the home for this daemon; dropped (and so released) at exit.
pub struct HomeLock {
    _file: File,
}

/// Takes `<home>/run/aigis.lock`, or says which daemon holds it.
pub fn lock_home(home: &Home) -> anyhow::Result<HomeLock> {
    let path = home.run().join("aigis.lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        anyhow::bail!(
            "another `aigis run` (pid {}) already owns the home {}; stop it first or use another --home",
            holder.trim(),
            home.root().display()
        );
    }
    file.set_len(0)?;
    write!(file, "{}", std::process::id())?;
    Ok(HomeLock { _file: file })
}

/// Binds the socket (mode 0600) and serves requests until the task is dropped.
pub fn serve(home: &Home, ctx: Arc<LoadContext>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let path = socket_path(home);
    // Only reached with the home lock held: a socket file left here is stale.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let _ = answer(stream, &ctx).await;
            });
        }
    }))
}

async fn answer(stream: UnixStream, ctx: &LoadContext) -> std::io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    // One request line; a client that sends more than 64 KiB is not ours.
    let mut limited = BufReader::new(tokio::io::AsyncReadExt::take(rd, 64 * 1024));
    limited.read_line(&mut line).await?;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(request) => handle(request, ctx).await,
        Err(e) => failure(format!("bad request: {e}")),
    };
    let mut out = serde_json::to_vec(&response).unwrap_or_default();
    out.push(b'\n');
    wr.write_all(&out).await
}

async fn handle(request: Request, ctx: &LoadContext) -> Response {
    let known = |name: &str| ctx.entries.iter().any(|e| e.name == name);
    let unknown = |name: &str| failure(format!("no plugin named `{name}` in the config"));
    match request {
        Request::Status => Response {
            ok: true,
            plugins: ctx
                .registry
                .snapshot()
                .iter()
                .map(|(n, s)| PluginStatus::from(n, s))
                .collect(),
            ..Response::default()
        },
        Request::Logs { plugin } if known(&plugin) => Response {
            ok: true,
            log_file: Some(ctx.home.log().join(format!("{plugin}.log"))),
            ..Response::default()
        },
        Request::Stop { plugin } if known(&plugin) => {
            ctx.stop(&plugin).await;
            done(format!("{plugin} stopped"))
        }
        Request::Start { plugin } if known(&plugin) => match ctx.start(&plugin).await {
            Ok(state) => done(format!("{plugin} {state}")),
            Err(e) => failure(e),
        },
        Request::Reload { plugin } if known(&plugin) => {
            ctx.reload(&plugin).await;
            let state = ctx.registry.state_of(&plugin);
            done(format!("{plugin} reloaded: {state}"))
        }
        Request::Logs { plugin }
        | Request::Stop { plugin }
        | Request::Start { plugin }
        | Request::Reload { plugin } => unknown(&plugin),
    }
}

/// Sends one request to the daemon of `home` and returns its answer.
pub async fn request(home: &Home, request: &Request) -> anyhow::Result<Response> {
    let path = socket_path(home);
    let stream = UnixStream::connect(&path).await.map_err(|e| {
        anyhow::anyhow!(
            "no aigis daemon is running for home {} ({}: {e}); start one with `aigis run -c FILE`",
            home.root().display(),
            path.display()
        )
    })?;
    let (rd, mut wr) = stream.into_split();
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    wr.write_all(&line).await?;
    let mut answer = String::new();
    BufReader::new(rd).read_line(&mut answer).await?;
    if answer.is_empty() {
        anyhow::bail!("the daemon closed the connection without answering");
    }
    Ok(serde_json::from_str(&answer)?)
}
