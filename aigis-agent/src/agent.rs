//! The agent's link loop: read requests from central, do the work on this
//! host, send replies and events back.
//!
//! [`AgentState`] (the supervised plugins) outlives any one link. Everything
//! the agent says goes through its [`Outbox`]: to the current link while
//! there is one (a bounded queue, so a slow link slows the plugins' output
//! readers instead of growing memory), into a bounded buffer while there is
//! none, replayed when central comes back.
//!
//! A link ends with `Shutdown` (stop everything, `Bye`), or by going away.
//! Stdio mode (the local agent, [`serve`]) treats going away as central's
//! death and stops every plugin; the daemon of a LAN host
//! (`daemon.rs`) keeps them running for the next link.

use crate::desk::Desk;
use crate::install::install;
use crate::outbox::{Outbox, Outgoing};
use crate::supervisor::Supervised;
use proto::{
    FrameError, FrameReader, FrameWriter, FromAgent, Reply, Request, ToAgent, PROTOCOL_VERSION,
};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, Mutex};

const LINK_QUEUE: usize = 1024;

type Plugins = Arc<Mutex<HashMap<String, Supervised>>>;

/// What an agent keeps across links.
#[derive(Clone)]
pub struct AgentState {
    plugins: Plugins,
    /// Plugins' calls and central's answers (events go to the outbox).
    desk: Arc<Desk>,
    pub outbox: Outbox,
    /// The central run these plugins belong to.
    session: Arc<std::sync::Mutex<Option<u64>>>,
    /// Set by `Shutdown`: a `Start` that arrives after it is refused.
    closing: Arc<std::sync::atomic::AtomicBool>,
    /// This central run was told that its plugins run as root.
    warned_root: Arc<std::sync::atomic::AtomicBool>,
    /// A LAN host's agent dir, where AigisProxy plugins get the socket of
    /// their direct calls (`direct.rs`); `None` for the local agent, whose
    /// plugins' calls central answers on their control sockets.
    calls_dir: Option<std::path::PathBuf>,
}

impl AgentState {
    pub fn new() -> AgentState {
        AgentState {
            plugins: Arc::default(),
            desk: Arc::default(),
            outbox: Outbox::start(),
            session: Arc::default(),
            closing: Arc::default(),
            warned_root: Arc::default(),
            calls_dir: None,
        }
    }

    /// The state of a LAN host's agent daemon, whose dir is `dir`.
    pub fn in_dir(dir: &std::path::Path) -> AgentState {
        AgentState {
            calls_dir: Some(dir.to_path_buf()),
            ..AgentState::new()
        }
    }

    /// The link went (or was replaced): calls it carried fail in their
    /// plugins, events wait for the next one.
    pub async fn detach_link(&self) {
        self.desk.detach();
        self.outbox.detach().await;
    }

    pub async fn stop_all(&self) {
        stop_all(&self.plugins).await;
    }
}

impl Default for AgentState {
    fn default() -> Self {
        AgentState::new()
    }
}

/// How a link ended.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkEnd {
    /// Central asked to stop everything; `Bye` has been queued.
    Shutdown,
    /// The stream ended or broke.
    Gone,
    /// This process got SIGTERM.
    Terminated,
}

/// Serves one link until it ends. Does not stop plugins (the caller decides).
pub async fn serve_link<R, W>(state: &AgentState, input: R, output: W) -> anyhow::Result<LinkEnd>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut reader = FrameReader::new(input);
    let (link_tx, link_rx) = mpsc::channel::<Outgoing>(LINK_QUEUE);
    // Buffered: a batch of frames goes out in one write, then one flush.
    let writer = tokio::spawn(write_loop(
        FrameWriter::new(tokio::io::BufWriter::with_capacity(64 * 1024, output)),
        link_rx,
    ));

    let (session, resume) = match reader.next::<ToAgent>().await? {
        Some(ToAgent::Hello {
            version,
            session,
            resume,
        }) if version == PROTOCOL_VERSION => (session, resume),
        Some(ToAgent::Hello { version, .. }) => anyhow::bail!(
            "central speaks protocol version {version}, this agent speaks {PROTOCOL_VERSION}"
        ),
        other => anyhow::bail!("expected Hello from central, got {other:?}"),
    };
    let previous = state
        .session
        .lock()
        .ok()
        .and_then(|mut s| s.replace(session));
    if previous.is_some_and(|p| p != session) {
        // A new central run: what the old one started is stale.
        state.stop_all().await;
        state.outbox.clear().await;
        state
            .warned_root
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
    link_tx
        .send(std::sync::Arc::new(FromAgent::Hello {
            version: PROTOCOL_VERSION,
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
            instance: state.outbox.instance,
        }))
        .await?;
    state.desk.attach(link_tx.clone());
    state.outbox.attach(link_tx, resume).await;

    let tx = state.outbox.sender();
    let mut term = signal(SignalKind::terminate())?;
    let end = loop {
        let msg = tokio::select! {
            msg = reader.next::<ToAgent>() => msg,
            _ = term.recv() => break Ok(LinkEnd::Terminated),
        };
        match msg {
            Ok(Some(ToAgent::Request { id, request })) => {
                let state = state.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let result = bounded(handle(*request, &tx, &state).await);
                    let _ = tx.send(FromAgent::Reply { id, result }).await;
                });
            }
            Ok(Some(ToAgent::Answer { plugin, answer })) => state.desk.answer(&plugin, answer),
            Ok(Some(ToAgent::Ack { seq })) => state.outbox.ack(seq).await,
            Ok(Some(ToAgent::Shutdown)) => break Ok(LinkEnd::Shutdown),
            Ok(Some(ToAgent::Hello { .. })) => {}
            Ok(None) => break Ok(LinkEnd::Gone),
            // A frame this agent cannot read (it was read whole): said, a
            // request among them answered, and the link goes on.
            Err(FrameError::Corrupt { reason, head }) => {
                eprintln!("aigis-agent: refused a frame from central: corrupt frame: {reason}");
                if let Some(id) = ToAgent::request_id(&head) {
                    let result = Err(format!(
                        "the agent on this host could not read the request (corrupt frame: {reason})"
                    ));
                    let _ = tx.send(FromAgent::Reply { id, result }).await;
                }
            }
            Err(e) => {
                eprintln!("aigis-agent: the link from central broke: {e}");
                break Ok(LinkEnd::Gone);
            }
        }
    };
    if end.as_ref().is_ok_and(|e| *e == LinkEnd::Shutdown) {
        state
            .closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        state.stop_all().await;
        let _ = tx.send(FromAgent::Bye).await;
        state.outbox.drain().await;
    }
    state.detach_link().await;
    let _ = writer.await;
    end
}

/// Stdio mode: one link, and when it ends for any reason every plugin stops.
pub async fn serve<R, W>(input: R, output: W) -> anyhow::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let state = AgentState::new();
    let end = serve_link(&state, input, output).await;
    state.stop_all().await;
    crate::python::remove_shim_dir();
    end.map(|_| ())
}

/// Longest error a reply carries: an error may quote what it was given
/// (a 4 MB argument of a command that could not start).
const MAX_ERROR: usize = 64 * 1024;

/// A reply that fits in a frame: a long error is cut (saying how much),
/// and a reply too large to send becomes an error that says so. A reply
/// that could not go would mute the link for every plugin.
fn bounded(result: Result<Reply, String>) -> Result<Reply, String> {
    match result {
        Err(mut e) if e.len() > MAX_ERROR => {
            let mut cut = MAX_ERROR;
            while !e.is_char_boundary(cut) {
                cut -= 1;
            }
            let dropped = e.len() - cut;
            e.truncate(cut);
            e.push_str(&format!("… ({dropped} more bytes)"));
            Err(e)
        }
        Ok(reply) => match proto::encoded_len(&reply) {
            Ok(n) if n + 64 <= proto::MAX_FRAME => Ok(reply),
            Ok(n) => Err(format!(
                "the agent's reply is {n} bytes, more than a frame carries ({} bytes)",
                proto::MAX_FRAME
            )),
            Err(e) => Err(format!("the agent's reply cannot be sent: {e}")),
        },
        other => other,
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut out: FrameWriter<W>,
    mut rx: mpsc::Receiver<Outgoing>,
) {
    while let Some(msg) = rx.recv().await {
        // Whatever is already queued goes in the same write.
        let sent = out
            .send_batch::<_, FromAgent>(msg, || rx.try_recv().ok())
            .await;
        match sent {
            Ok(()) => {}
            // One message that cannot be a frame is dropped, said; the
            // link carries on for everything else.
            Err(e @ (FrameError::TooLarge(_) | FrameError::Encode(_))) => {
                eprintln!("aigis-agent: a message to central was dropped: {e}");
            }
            Err(_) => break,
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
    // What no plugin could be found to own (an orphan that changed its
    // environment) is still in the agent's tree or cgroup: it goes too.
    let _ = tokio::task::spawn_blocking(crate::contain::sweep).await;
}

async fn handle(
    request: Request,
    events: &mpsc::Sender<FromAgent>,
    state: &AgentState,
) -> Result<Reply, String> {
    match request {
        Request::Sync { dest, files } => {
            blocking(move || {
                crate::tree::missing(&dest, &files).map(|paths| Reply::Missing { paths })
            })
            .await
        }
        Request::Stage { dest, first, piece } => {
            blocking(move || {
                crate::tree::stage(
                    &dest,
                    first,
                    &piece.path,
                    piece.mode,
                    piece.offset,
                    &piece.contents,
                )
                .map(|()| Reply::Staged)
            })
            .await
        }
        Request::Apply {
            dest,
            files,
            first,
            last,
        } => {
            blocking(move || {
                crate::tree::apply(&dest, &files, first, last).map(|()| Reply::Applied)
            })
            .await
        }
        Request::Install(spec) => install(spec).await.map(|()| Reply::Installed),
        Request::Requirements(spec) => crate::install::requirements(spec, events.clone())
            .await
            .map(|()| Reply::Installed),
        Request::Start(spec) => {
            let name = spec.plugin.clone();
            let mut map = state.plugins.lock().await;
            if state.closing.load(std::sync::atomic::Ordering::SeqCst) {
                return Err("the agent is stopping".into());
            }
            if map.get(&name).is_some_and(Supervised::is_active) {
                return Err(format!("plugin `{name}` is already running"));
            }
            // A plugin that failed for good is started afresh.
            if let Some(old) = map.remove(&name) {
                old.stop().await;
            }
            warn_if_root(&spec, events, state).await;
            let (handle, pid) = Supervised::start(
                spec,
                events.clone(),
                state.desk.clone(),
                state.calls_dir.clone(),
            )
            .await?;
            map.insert(name, handle);
            Ok(Reply::Started { pid })
        }
        Request::Stop { plugin } => {
            let handle = state.plugins.lock().await.remove(&plugin);
            if let Some(h) = handle {
                h.stop().await;
            }
            if let Some(dir) = &state.calls_dir {
                crate::direct::forget(dir, &plugin);
            }
            Ok(Reply::Stopped)
        }
    }
}

/// Once per central run: plugins without a user of their own run as root
/// here. Said in the first such plugin's log.
async fn warn_if_root(
    spec: &proto::LaunchSpec,
    events: &mpsc::Sender<FromAgent>,
    state: &AgentState,
) {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if spec.user.is_none()
        && root
        && !state
            .warned_root
            .swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        let note = crate::output::agent_note(
            &spec.plugin,
            proto::OutputStream::Stderr,
            "plugins run as root; set [aigis] users to give each its own user",
        );
        let _ = events.send(FromAgent::Event(note)).await;
    }
}

/// Runs file work off the async threads; an error is the operator's message.
async fn blocking<F>(work: F) -> Result<Reply, String>
where
    F: FnOnce() -> std::io::Result<Reply> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("file task failed: {e}"))?
        .map_err(|e| e.to_string())
}
