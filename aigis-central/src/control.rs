//! The control socket: how `aigis status|logs|stop|start|reload` talk to a
//! running daemon.
//!
//! `<home>/run/aigis.sock`, a Unix socket with mode 0600 (only the daemon's
//! user may steer it; no TCP port is ever opened). One request per
//! connection: a JSON line in, a JSON line out. Connections are bounded in
//! number, time and size (see [`serve`]), and nothing a client does ends
//! the accept loop. `<home>/run/aigis.lock`,
//! held with `flock` for the daemon's lifetime, makes a second `aigis run`
//! on the same home fail instead of fighting over plugins.

use crate::home::Home;
use crate::plugins::{LoadContext, Status};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, Semaphore};

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

/// Connections served at once. More wait for a slot; a slot held by a
/// connection that has not sent its request yet is taken back for them.
const MAX_CONNECTIONS: usize = 64;
/// A client must send its whole request line within this time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request line accepted.
const MAX_REQUEST: u64 = 64 * 1024;
/// After an accept error: the pause before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Out of descriptors is said at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Binds the socket (mode 0600) and serves requests until the task is dropped.
///
/// Bounded so that no client, or many of them, can take it down (they all
/// run as the daemon's user, but a stuck script or a hostile plugin must
/// not leave the operator without `aigis status`):
/// - at most [`MAX_CONNECTIONS`] are served at once: a permit is taken
///   before each accept and given back when the connection ends, so
///   descriptors stay bounded and a flood waits in the listen backlog;
/// - a connection has [`REQUEST_TIMEOUT`] to send one line of at most
///   [`MAX_REQUEST`] bytes;
/// - when every permit is held, the connection that has been waiting
///   longest for its request is dropped to make room for the next one, so
///   `aigis status` answers at once even while idle connections are held
///   open (a real client sends its line as soon as it connects);
/// - an accept error never ends the loop: out of descriptors (EMFILE,
///   ENFILE) is logged (at most once a minute), the oldest idle connection
///   is dropped to free one, and accepting resumes after a short pause.
pub fn serve(home: &Home, ctx: Arc<LoadContext>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let path = socket_path(home);
    // Only reached with the home lock held: a socket file left here is stale.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(tokio::spawn(accept_loop(listener, ctx)))
}

async fn accept_loop(listener: UnixListener, ctx: Arc<LoadContext>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let idle = Arc::new(IdleConnections::default());
    let mut last_warning: Option<Instant> = None;
    loop {
        // Keep one permit ready for the next client: if none is free, the
        // connection idle the longest gives its up.
        let mut evicted = false;
        let permit = loop {
            if let Ok(p) = permits.clone().try_acquire_owned() {
                break p;
            }
            if !evicted {
                evicted = idle.evict_oldest();
            }
            tokio::select! {
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => break p,
                    Err(_) => return, // closed: never happens, the semaphore is ours
                },
                // Every permit is busy with a request: wait for one, or for
                // a connection that turns out idle (not yet reading).
                _ = idle.added.notified(), if !evicted => {}
            }
        };
        let stream = loop {
            match listener.accept().await {
                Ok((stream, _)) => break stream,
                Err(e) => {
                    let out_of_fds = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                    if !matches!(last_warning, Some(t) if t.elapsed() < WARN_EVERY) {
                        last_warning = Some(Instant::now());
                        if out_of_fds {
                            tracing::warn!(
                                "control socket: out of file descriptors ({e}); dropping idle \
                                 connections and retrying (said at most once a minute)"
                            );
                        } else {
                            tracing::warn!("control socket: accept failed ({e}); retrying");
                        }
                    }
                    let backoff = if out_of_fds && idle.evict_oldest() {
                        // A descriptor is being freed: it is back as soon
                        // as that connection's task has run.
                        Duration::from_millis(1)
                    } else {
                        ACCEPT_BACKOFF
                    };
                    tokio::time::sleep(backoff).await;
                }
            }
        };
        let ctx = ctx.clone();
        let idle = idle.clone();
        tokio::spawn(async move {
            let _ = answer(stream, &ctx, &idle).await;
            drop(permit);
        });
    }
}

/// Connections that have not sent their request yet, oldest first; each
/// can be told to go.
#[derive(Default)]
struct IdleConnections {
    next_id: AtomicU64,
    waiting: Mutex<VecDeque<(u64, Arc<Notify>)>>,
    /// Told whenever a connection starts waiting for its request.
    added: Notify,
}

impl IdleConnections {
    fn add(&self) -> (u64, Arc<Notify>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let go = Arc::new(Notify::new());
        if let Ok(mut w) = self.waiting.lock() {
            w.push_back((id, go.clone()));
        }
        self.added.notify_one();
        (id, go)
    }

    fn remove(&self, id: u64) {
        if let Ok(mut w) = self.waiting.lock() {
            w.retain(|(i, _)| *i != id);
        }
    }

    /// Tells the oldest idle connection to go; false if there is none.
    fn evict_oldest(&self) -> bool {
        let oldest = self.waiting.lock().ok().and_then(|mut w| w.pop_front());
        match oldest {
            Some((_, go)) => {
                go.notify_one();
                true
            }
            None => false,
        }
    }
}

async fn answer(
    stream: UnixStream,
    ctx: &LoadContext,
    idle: &IdleConnections,
) -> std::io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    // One request line; a client that sends more than 64 KiB is not ours.
    let mut limited = BufReader::new(tokio::io::AsyncReadExt::take(rd, MAX_REQUEST));
    let (id, go) = idle.add();
    let read = tokio::select! {
        read = tokio::time::timeout(REQUEST_TIMEOUT, limited.read_line(&mut line)) => Some(read),
        _ = go.notified() => None,
    };
    idle.remove(id);
    let response = match read {
        // Dropped to make room, or silent too long: closed without an answer.
        None | Some(Err(_)) => return Ok(()),
        Some(Ok(read)) => {
            read?;
            if !line.ends_with('\n') && line.len() as u64 >= MAX_REQUEST {
                failure(format!(
                    "request refused: longer than {} KiB",
                    MAX_REQUEST / 1024
                ))
            } else {
                match serde_json::from_str::<Request>(&line) {
                    Ok(request) => handle(request, ctx).await,
                    Err(e) => failure(format!("bad request: {e}")),
                }
            }
        }
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
