//! The control socket's server: one task per connection, one request each
//! (the protocol and the client are in `crate::control`).

use super::Daemon;
use crate::control::{done, failure, Request, Response};
use crate::home::Home;
use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, Semaphore};

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

/// Serves requests until shutdown.
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
pub(super) async fn serve(listener: UnixListener, daemon: Arc<Daemon>) {
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
        let served = daemon.clone();
        let idle = idle.clone();
        daemon.tasks.spawn_cancellable(async move {
            let _ = answer(stream, &served, &idle).await;
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
    daemon: &Arc<Daemon>,
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
                    Ok(Request::Shell) => return shell(limited, wr, daemon).await,
                    Ok(request) => handle(request, daemon).await,
                    Err(e) => failure(format!("bad request: {e}")),
                }
            }
        }
    };
    send(&mut wr, &response).await
}

async fn send(
    wr: &mut (impl tokio::io::AsyncWrite + Unpin),
    response: &Response,
) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(response).unwrap_or_default();
    out.push(b'\n');
    wr.write_all(&out).await
}

/// `aigis shell`: answers the request line, then serves the connection as
/// an AigisProxy channel (see `shell.rs`) until the shell closes it.
async fn shell(
    rd: BufReader<tokio::io::Take<tokio::net::unix::OwnedReadHalf>>,
    mut wr: tokio::net::unix::OwnedWriteHalf,
    daemon: &Arc<Daemon>,
) -> std::io::Result<()> {
    let admitted = daemon
        .python()
        .map_err(|e| format!("the core is not available: {e}"))
        .and_then(|core| Ok((core.clone(), super::shell::admit()?)));
    let (core, _slot) = match admitted {
        Ok(ready) => ready,
        Err(e) => return send(&mut wr, &failure(e)).await,
    };
    let plugins = daemon.skills().await.map(|s| s.len()).unwrap_or(0);
    let hello = done(format!(
        "the live core of {}: {plugins} core plugin(s); calls get the reach rule a plugin's do",
        daemon.home.root().display()
    ));
    send(&mut wr, &hello).await?;
    // What the client sent after its line is already in the buffer; the
    // 64 KiB bound was for the request line only.
    let buffered = rd.buffer().to_vec();
    let rest = rd.into_inner().into_inner();
    super::shell::serve(
        tokio::io::AsyncReadExt::chain(&buffered[..], rest),
        wr,
        core,
    )
    .await
}

async fn handle(request: Request, daemon: &Arc<Daemon>) -> Response {
    let (plugin, verb) = match request {
        Request::Status { plugin } => {
            return match daemon.status(plugin.as_deref()).await {
                Ok(plugins) => Response {
                    ok: true,
                    plugins,
                    ..Response::default()
                },
                Err(e) => failure(e),
            }
        }
        Request::Skills => {
            return match daemon.skills().await {
                Ok(skills) => Response {
                    ok: true,
                    skills,
                    ..Response::default()
                },
                Err(e) => failure(e),
            }
        }
        // Answered in `answer`: it keeps the connection.
        Request::Shell => return failure("`shell` is not a one-line request".into()),
        Request::Reread => {
            return match daemon.reread().await {
                Ok(done) => crate::control::done(done),
                Err(e) => failure(e),
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
