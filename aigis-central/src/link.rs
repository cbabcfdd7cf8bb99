//! `AgentLink`: central's end of one agent connection. It only carries:
//! requests out and their replies back (by id, with a timeout), and every
//! event the agent reports handed, with where it came from, to the daemon's
//! dispatcher. It knows nothing of plugins or policy.
//!
//! The link is transport-agnostic: the local agent (a child on
//! stdin/stdout) and a remote one (an SSH exec channel) use the same code.
//!
//! Invariants:
//! - What a link has handed to the dispatcher and not yet handled is
//!   bounded in bytes ([`LINK_BUDGET`]): a flood from one agent waits in
//!   that agent's outbox (slowing its plugins), never in central's memory.
//! - A request is answered, fails when the link ends, or times out.

use crate::lock;
use crate::tasks::Tasks;
use proto::{
    Call, Event, FrameError, FrameReader, FrameWriter, FromAgent, Reply, Request, ToAgent,
    PROTOCOL_VERSION,
};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

/// The descriptor the local agent finds its lane on.
const LANE_FD_IN_AGENT: i32 = 3;

/// Bytes of events one link may have in the dispatcher at once.
pub const LINK_BUDGET: usize = 32 * 1024 * 1024;

/// Where an event came from, and how to answer the plugin that sent it.
#[derive(Clone)]
pub struct Origin {
    /// "local", or the `HOST` as written.
    pub host: String,
    pub answers: mpsc::Sender<ToAgent>,
}

/// One event for the dispatcher; `budget` returns to the link once dropped.
pub struct Delivery {
    pub origin: Origin,
    pub event: Event,
    pub budget: OwnedSemaphorePermit,
    /// When central read it off its link.
    pub received: Instant,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Reply, String>>>>>;

pub struct AgentLink {
    pub host: String,
    tx: mpsc::Sender<ToAgent>,
    pending: Pending,
    next_id: AtomicU64,
    /// Becomes true once the agent has said `Bye` or the stream has ended.
    closed: watch::Receiver<bool>,
    child: tokio::sync::Mutex<Option<Child>>,
    /// The agent is not the one the previous link talked to: whatever ran
    /// under the old one is gone.
    pub replaced: bool,
}

impl AgentLink {
    /// Starts the agent binary as a local child and shakes hands with it.
    /// `dir` is the agent's own (`Home::agent`). With `lane`, the agent
    /// gets that socket as its lane to central (see `lane.rs`).
    pub async fn spawn_local(
        agent: &Path,
        dir: &Path,
        inbox: mpsc::Sender<Delivery>,
        tasks: &Tasks,
        lane: Option<OwnedFd>,
    ) -> anyhow::Result<AgentLink> {
        let mut command = Command::new(agent);
        command.arg("--dir").arg(dir);
        if let Some(lane) = &lane {
            let fd = lane.as_raw_fd();
            command.env(aigis_agent::lane::LANE_FD, LANE_FD_IN_AGENT.to_string());
            // SAFETY: between fork and exec only dup2/fcntl, which are
            // async-signal-safe; `lane` stays open in the parent until
            // spawn has returned, after the child's exec.
            unsafe {
                command.pre_exec(move || {
                    if fd == LANE_FD_IN_AGENT {
                        let flags = libc::fcntl(fd, libc::F_GETFD);
                        libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                    } else if libc::dup2(fd, LANE_FD_IN_AGENT) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: a Ctrl-C in the terminal reaches central, which
            // then stops the agent in order, instead of killing it mid-flight.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start the agent {}: {e}", agent.display()))?;
        // The child has its copy once spawn returned (after its exec).
        drop(lane);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            anyhow::bail!("the agent's stdio was not captured");
        };
        tasks.spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!(agent = "local", "{line}");
            }
        });
        let link =
            AgentLink::start("local".into(), stdout, stdin, inbox, Arc::default(), tasks).await?;
        *link.child.lock().await = Some(child);
        Ok(link)
    }

    /// Shakes hands over an established byte stream and starts carrying.
    pub async fn start<R, W>(
        host: String,
        input: R,
        output: W,
        inbox: mpsc::Sender<Delivery>,
        received: Arc<Received>,
        tasks: &Tasks,
    ) -> anyhow::Result<AgentLink>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let mut reader = FrameReader::new(input);
        // Buffered: answers and acks that are ready together leave in one
        // write (see `FrameWriter::send_batch`).
        let mut writer = FrameWriter::new(tokio::io::BufWriter::with_capacity(64 * 1024, output));
        let replaced = handshake(&host, &mut reader, &mut writer, &received).await?;

        let (tx, mut rx) = mpsc::channel::<ToAgent>(256);
        let pending: Pending = Arc::default();
        let (closed_tx, closed) = watch::channel(false);
        let mut ended = closed.clone();
        let writer_host = host.clone();
        tasks.spawn(async move {
            loop {
                let msg = tokio::select! {
                    msg = rx.recv() => msg,
                    _ = ended.wait_for(|c| *c) => None,
                };
                let Some(msg) = msg else { break };
                let sent = writer
                    .send_batch::<_, ToAgent>(msg, || rx.try_recv().ok())
                    .await;
                match sent {
                    Ok(()) => {}
                    // Requests are measured before they are queued; one
                    // other message that cannot be a frame is dropped,
                    // said, and the link carries on.
                    Err(e @ (FrameError::TooLarge(_) | FrameError::Encode(_))) => {
                        tracing::error!(host = %writer_host, "a message to the agent was dropped: {e}");
                    }
                    Err(_) => break,
                }
            }
        });
        let carrier = Carrier {
            origin: Origin {
                host: host.clone(),
                answers: tx.clone(),
            },
            pending: pending.clone(),
            inbox,
            received,
            budget: Arc::new(Semaphore::new(LINK_BUDGET)),
        };
        tasks.spawn(async move {
            carrier.carry(reader).await;
            let _ = closed_tx.send(true);
        });
        Ok(AgentLink {
            host,
            tx,
            pending,
            next_id: AtomicU64::new(1),
            closed,
            child: tokio::sync::Mutex::new(None),
            replaced,
        })
    }

    /// Resolves once the agent said `Bye` or its stream ended.
    pub async fn closed(&self) {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|c| *c).await;
    }

    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Sends a request and waits up to `limit` for its reply.
    /// A request too large for one frame fails here, said, and never
    /// reaches the link.
    pub async fn request(&self, request: Request, limit: Duration) -> Result<Reply, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = ToAgent::Request {
            id,
            request: Box::new(request),
        };
        match proto::encoded_len(&request) {
            Ok(n) if n <= proto::MAX_FRAME => {}
            Ok(n) => {
                return Err(format!(
                    "the request is {n} bytes, more than a frame to the agent carries ({} bytes)",
                    proto::MAX_FRAME
                ))
            }
            Err(e) => return Err(format!("the request cannot be sent: {e}")),
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        if self.is_closed() || self.tx.send(request).await.is_err() {
            lock(&self.pending).remove(&id);
            return Err(format!("the agent on {} is not running", self.host));
        }
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(format!("the agent on {} went away", self.host)),
            Err(_) => {
                lock(&self.pending).remove(&id);
                Err(format!(
                    "the agent on {} did not answer within {} s",
                    self.host,
                    limit.as_secs()
                ))
            }
        }
    }

    /// Asks the agent to stop every plugin and exit; waits up to `limit`,
    /// then kills a local agent that did not finish.
    pub async fn shutdown(&self, limit: Duration) {
        let _ = self.tx.send(ToAgent::Shutdown).await;
        let mut closed = self.closed.clone();
        let done = tokio::time::timeout(limit, closed.wait_for(|c| *c))
            .await
            .is_ok();
        if let Some(child) = self.child.lock().await.as_mut() {
            let remaining = if done {
                Duration::from_secs(1)
            } else {
                Duration::ZERO
            };
            if tokio::time::timeout(remaining, child.wait()).await.is_err() {
                tracing::error!(host = %self.host, "agent did not stop in time; killing it");
                let _ = child.kill().await;
            }
        }
    }
}

async fn handshake<R, W>(
    host: &str,
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    received: &Received,
) -> anyhow::Result<bool>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    writer
        .send(&ToAgent::Hello {
            version: PROTOCOL_VERSION,
            session: session_id(),
            resume: received.resume(),
        })
        .await?;
    let hello = tokio::time::timeout(Duration::from_secs(30), reader.next::<FromAgent>())
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "agent on {host} did not answer the handshake (an `aigis-agent daemon` left \
                 running there by an older AIGIS cannot take this one's link: stop it)"
            )
        })??;
    match hello {
        Some(FromAgent::Hello {
            version,
            os,
            arch,
            instance,
        }) if version == PROTOCOL_VERSION => {
            tracing::debug!(%host, %os, %arch, "agent ready");
            Ok(received.meet(instance))
        }
        Some(FromAgent::Hello { version, .. }) => anyhow::bail!(
            "agent on {host} speaks protocol {version}, central speaks {PROTOCOL_VERSION}"
        ),
        other => anyhow::bail!("agent on {host} sent {other:?} instead of Hello"),
    }
}

/// The reading half of a link.
struct Carrier {
    origin: Origin,
    pending: Pending,
    inbox: mpsc::Sender<Delivery>,
    received: Arc<Received>,
    budget: Arc<Semaphore>,
}

impl Carrier {
    async fn carry<R: AsyncRead + Unpin>(self, mut reader: FrameReader<R>) {
        let host = &self.origin.host;
        let mut unacked = 0u32;
        let mut last_ack = Instant::now();
        loop {
            match reader.next::<FromAgent>().await {
                Ok(Some(FromAgent::Numbered { seq, event })) => {
                    if !self.received.take(seq) {
                        continue; // had it before the link broke
                    }
                    if !self.deliver(event).await {
                        break;
                    }
                    // Acknowledge in batches: the agent keeps what is not
                    // acknowledged, for the next link.
                    unacked += 1;
                    if unacked >= 256 || last_ack.elapsed() >= Duration::from_millis(250) {
                        let _ = self.origin.answers.send(ToAgent::Ack { seq }).await;
                        unacked = 0;
                        last_ack = Instant::now();
                    }
                }
                Ok(Some(FromAgent::Event(event))) => {
                    if !self.deliver(event).await {
                        break;
                    }
                }
                Ok(Some(FromAgent::Reply { id, result })) => {
                    if let Some(w) = lock(&self.pending).remove(&id) {
                        let _ = w.send(result);
                    }
                }
                Ok(Some(FromAgent::Bye)) | Ok(None) => break,
                Ok(Some(FromAgent::Hello { .. })) => {}
                Err(e) => {
                    tracing::error!(%host, "link to the agent broke: {e}");
                    break;
                }
            }
        }
        // Nobody will answer what is still pending.
        for (_, w) in lock(&self.pending).drain() {
            let _ = w.send(Err(format!("the agent on {host} went away")));
        }
    }

    /// Hands one event to the dispatcher once the link's budget has room.
    async fn deliver(&self, event: Event) -> bool {
        let cost = event_bytes(&event).clamp(1, LINK_BUDGET) as u32;
        let Ok(budget) = self.budget.clone().acquire_many_owned(cost).await else {
            return false;
        };
        self.inbox
            .send(Delivery {
                origin: self.origin.clone(),
                event,
                budget,
                received: Instant::now(),
            })
            .await
            .is_ok()
    }
}

/// What an event costs in memory until it is handled.
fn event_bytes(event: &Event) -> usize {
    match event {
        Event::Output { lines, .. } => lines.bytes() + 24 * lines.count() + 64,
        Event::Call {
            call: Call::Proxy(frame),
            ..
        } => frame.len() + 64,
        Event::Call { .. } | Event::State { .. } => 128,
    }
}

/// What central has received from one agent, kept across its links: which
/// agent process, and the last numbered event (see `FromAgent::Numbered`).
#[derive(Debug, Default)]
pub struct Received {
    instance: AtomicU64,
    seq: AtomicU64,
}

impl Received {
    fn resume(&self) -> proto::Resume {
        proto::Resume {
            instance: self.instance.load(Ordering::SeqCst),
            seq: self.seq.load(Ordering::SeqCst),
        }
    }

    /// A different agent process numbers from the start again. True when
    /// an agent central knew was replaced by another (its plugins died with
    /// it).
    fn meet(&self, instance: u64) -> bool {
        let before = self.instance.swap(instance, Ordering::SeqCst);
        if before != instance {
            self.seq.store(0, Ordering::SeqCst);
        }
        before != 0 && before != instance
    }

    /// True for an event not seen before.
    fn take(&self, seq: u64) -> bool {
        self.seq.fetch_max(seq, Ordering::SeqCst) < seq
    }
}

/// This central run's identity for agents (see `ToAgent::Hello`).
fn session_id() -> u64 {
    static SESSION: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SESSION.get_or_init(|| fastrand::u64(1..))
}
