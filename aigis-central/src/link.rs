//! `AgentLink`: central's end of the conversation with one agent.
//!
//! The link is transport-agnostic: it takes any byte stream pair, so the local
//! agent (a child on stdin/stdout) and a remote one (an SSH exec channel) are
//! driven by the same code. Requests carry ids and are answered out of order;
//! events (plugin output, state changes) are handed to the [`Registry`].

use crate::core::{Control, PythonCore};
use crate::plugins::Registry;
use proto::{
    Event, FrameReader, FrameWriter, FromAgent, Reply, Request, ToAgent, PROTOCOL_VERSION,
};
use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Reply, String>>>>>;

/// Where a link sends what plugins' shims ask for.
#[derive(Clone)]
pub struct Controls {
    /// Requests for the daemon (reload).
    pub daemon: mpsc::Sender<Control>,
    /// The core that answers AigisProxy calls, when it runs.
    pub core: Option<PythonCore>,
}

pub struct AgentLink {
    /// Where the agent runs, for messages ("local", later a host name).
    pub host: String,
    tx: mpsc::Sender<ToAgent>,
    pending: Pending,
    next_id: AtomicU64,
    /// Becomes true once the agent has said `Bye` or the stream has ended.
    closed: watch::Receiver<bool>,
    child: tokio::sync::Mutex<Option<Child>>,
}

impl AgentLink {
    /// Starts the agent binary as a local child and shakes hands with it.
    pub async fn spawn_local(
        agent: &Path,
        registry: Registry,
        control: Controls,
    ) -> anyhow::Result<AgentLink> {
        let mut child = Command::new(agent)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: a Ctrl-C in the terminal reaches central, which
            // then stops the agent in order, instead of killing it mid-flight.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start the agent {}: {e}", agent.display()))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            anyhow::bail!("the agent's stdio was not captured");
        };
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!(agent = "local", "{line}");
            }
        });
        let link = AgentLink::start(
            "local".into(),
            stdout,
            stdin,
            registry,
            control,
            Arc::default(),
        )
        .await?;
        *link.child.lock().await = Some(child);
        Ok(link)
    }

    /// Shakes hands over an established byte stream and starts the reader.
    pub async fn start<R, W>(
        host: String,
        input: R,
        output: W,
        registry: Registry,
        control: Controls,
        received: Arc<Received>,
    ) -> anyhow::Result<AgentLink>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let mut reader = FrameReader::new(input);
        let mut writer = FrameWriter::new(output);
        writer
            .send(&ToAgent::Hello {
                version: PROTOCOL_VERSION,
                session: session_id(),
                resume: received.resume(),
            })
            .await?;
        let hello = tokio::time::timeout(Duration::from_secs(30), reader.next::<FromAgent>())
            .await
            .map_err(|_| anyhow::anyhow!("agent on {host} did not answer the handshake"))??;
        match hello {
            Some(FromAgent::Hello {
                version,
                os,
                arch,
                instance,
            }) if version == PROTOCOL_VERSION => {
                tracing::debug!(%host, %os, %arch, "agent ready");
                received.meet(instance);
            }
            Some(FromAgent::Hello { version, .. }) => anyhow::bail!(
                "agent on {host} speaks protocol {version}, central speaks {PROTOCOL_VERSION}"
            ),
            other => anyhow::bail!("agent on {host} sent {other:?} instead of Hello"),
        }

        let (tx, mut rx) = mpsc::channel::<ToAgent>(256);
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                if writer.send(&msg).await.is_err() {
                    break;
                }
            }
        });

        let pending: Pending = Arc::default();
        let (closed_tx, closed) = watch::channel(false);
        let reader_pending = pending.clone();
        let reader_host = host.clone();
        let replies = tx.clone();
        tokio::spawn(async move {
            let mut unacked = 0u32;
            let mut last_ack = std::time::Instant::now();
            loop {
                let event = match reader.next::<FromAgent>().await {
                    Ok(Some(FromAgent::Numbered { seq, event })) => {
                        if !received.take(seq) {
                            continue; // had it before the link broke
                        }
                        // Acknowledge in batches: the agent keeps what is
                        // not acknowledged, for the next link.
                        unacked += 1;
                        if unacked >= 256 || last_ack.elapsed() >= Duration::from_millis(250) {
                            let _ = replies.send(ToAgent::Ack { seq }).await;
                            unacked = 0;
                            last_ack = std::time::Instant::now();
                        }
                        Ok(Some(FromAgent::Event(event)))
                    }
                    other => other,
                };
                match event {
                    Ok(Some(FromAgent::Reply { id, result })) => {
                        let waiter = reader_pending.lock().ok().and_then(|mut p| p.remove(&id));
                        if let Some(w) = waiter {
                            let _ = w.send(result);
                        }
                    }
                    Ok(Some(FromAgent::Event(Event::Control { plugin, payload }))) => {
                        if payload.first() == Some(&b'C') {
                            // An AigisProxy call: answered concurrently.
                            let replies = replies.clone();
                            let core = control.core.clone();
                            tokio::spawn(async move {
                                let id = call_id(&payload);
                                let payload = match core {
                                    Some(core) => core.serve_call(payload).await,
                                    None => no_core_reply(id),
                                };
                                let payload = fit_reply(&plugin, id, payload);
                                let _ = replies
                                    .send(ToAgent::ControlReply { plugin, payload })
                                    .await;
                            });
                        } else {
                            let payload = answer_control(&payload, &control.daemon);
                            let _ = replies
                                .send(ToAgent::ControlReply { plugin, payload })
                                .await;
                        }
                    }
                    Ok(Some(FromAgent::Event(event))) => registry.agent_event(event).await,
                    Ok(Some(FromAgent::Bye)) | Ok(None) => break,
                    Ok(Some(FromAgent::Hello { .. })) | Ok(Some(FromAgent::Numbered { .. })) => {}
                    Err(e) => {
                        tracing::error!(host = %reader_host, "link to the agent broke: {e}");
                        break;
                    }
                }
            }
            // Nobody will answer what is still pending.
            if let Ok(mut p) = reader_pending.lock() {
                for (_, w) in p.drain() {
                    let _ = w.send(Err(format!("the agent on {reader_host} went away")));
                }
            }
            let _ = closed_tx.send(true);
        });

        Ok(AgentLink {
            host,
            tx,
            pending,
            next_id: AtomicU64::new(1),
            closed,
            child: tokio::sync::Mutex::new(None),
        })
    }

    /// Resolves once the agent said `Bye` or its stream ended.
    pub async fn closed(&self) {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|c| *c).await;
    }

    /// Sends a request and waits for its reply.
    pub async fn request(&self, request: Request) -> Result<Reply, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, tx);
        }
        if *self.closed.borrow()
            || self
                .tx
                .send(ToAgent::Request { id, request })
                .await
                .is_err()
        {
            if let Ok(mut p) = self.pending.lock() {
                p.remove(&id);
            }
            return Err(format!("the agent on {} is not running", self.host));
        }
        rx.await
            .unwrap_or_else(|_| Err(format!("the agent on {} went away", self.host)))
    }

    /// Asks the agent to stop every plugin and exit; waits up to `limit`,
    /// then kills a local agent that did not finish.
    pub async fn shutdown(&self, limit: Duration) {
        let _ = self.tx.send(ToAgent::Shutdown).await;
        let mut closed = self.closed.clone();
        let done = tokio::time::timeout(limit, closed.wait_for(|c| *c))
            .await
            .map(|r| r.is_ok());
        if let Some(child) = self.child.lock().await.as_mut() {
            let remaining = if done.is_ok() {
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

    /// A different agent process numbers from the start again.
    fn meet(&self, instance: u64) {
        if self.instance.swap(instance, Ordering::SeqCst) != instance {
            self.seq.store(0, Ordering::SeqCst);
        }
    }

    /// True for an event not seen before.
    fn take(&self, seq: u64) -> bool {
        self.seq.fetch_max(seq, Ordering::SeqCst) < seq
    }
}

/// This central run's identity for agents (see `ToAgent::Hello`).
fn session_id() -> u64 {
    static SESSION: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SESSION.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        nanos ^ (u64::from(std::process::id()) << 32)
    })
}

/// The id of an AigisProxy call frame (`b"C" + id + pickle`).
pub fn call_id(call: &[u8]) -> [u8; 8] {
    call.get(1..9)
        .and_then(|id| id.try_into().ok())
        .unwrap_or([0; 8])
}

/// An error reply to the call `id`, raised in the plugin as `exc_type`
/// (see `python/proxy.py`).
pub fn error_reply(id: [u8; 8], exc_type: &str, message: &str) -> Vec<u8> {
    let mut out = b"R".to_vec();
    out.extend_from_slice(&id);
    out.push(1);
    let body = serde_json::json!({
        "type": exc_type,
        "builtin": exc_type,
        "message": message,
        "args": [message],
        "traceback": "",
    });
    out.extend_from_slice(body.to_string().as_bytes());
    out
}

/// The answer to a proxy call when central has no Python core.
fn no_core_reply(id: [u8; 8]) -> Vec<u8> {
    error_reply(
        id,
        "RuntimeError",
        "the AIGIS core is not running in central",
    )
}

/// A reply the agent can take: one too big for a frame would end the
/// whole link (every plugin of that agent), so it becomes an error for
/// this call alone. `proxy.serve` already keeps results under the limit.
fn fit_reply(plugin: &str, id: [u8; 8], reply: Vec<u8>) -> Vec<u8> {
    let limit = proto::control_limit(plugin);
    if reply.len() <= limit {
        return reply;
    }
    let message = format!(
        "the reply is {} bytes; at most {limit} may cross back to the plugin",
        reply.len()
    );
    error_reply(id, "ValueError", &message)
}

/// Answers one control message of a plugin's shim (JSON, see
/// `python/shim.py`): `{"id", "op": "reload", "plugin"}`. The reload runs
/// after the answer, so a plugin may reload itself.
fn answer_control(payload: &[u8], control: &mpsc::Sender<Control>) -> Vec<u8> {
    let request: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    let id = request.get("id").cloned().unwrap_or_default();
    let op = request
        .get("op")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let plugin = request.get("plugin").and_then(|v| v.as_str());
    let answer = match (op, plugin) {
        ("reload", Some(name)) => match control.try_send(Control::Reload(name.to_string())) {
            Ok(()) => serde_json::json!({"id": id, "ok": true, "result": true}),
            Err(_) => {
                serde_json::json!({"id": id, "ok": false, "error": "central is busy; try again"})
            }
        },
        _ => {
            serde_json::json!({"id": id, "ok": false, "error": format!("unknown control request {op:?}")})
        }
    };
    answer.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_too_big_for_a_frame_becomes_an_error_for_its_call() {
        let id = 7u64.to_be_bytes();
        let small = b"R\0\0\0\0\0\0\0\x07\0ok".to_vec();
        assert_eq!(fit_reply("p", id, small.clone()), small);
        let fits = vec![b'R'; proto::MAX_CONTROL];
        assert_eq!(fit_reply("p", id, fits.clone()), fits);

        let reply = fit_reply("p", id, vec![b'R'; proto::MAX_CONTROL + 1]);
        assert_eq!(&reply[..10], b"R\0\0\0\0\0\0\0\x07\x01");
        let info: serde_json::Value = serde_json::from_slice(&reply[10..]).unwrap();
        assert_eq!(info["type"], "ValueError");
        assert_eq!(
            info["message"],
            format!(
                "the reply is {} bytes; at most {} may cross back to the plugin",
                proto::MAX_CONTROL + 1,
                proto::MAX_CONTROL
            )
        );
        // What is sent always fits in one frame.
        let long_name = "p".repeat(100_000);
        let reply = fit_reply(&long_name, id, fits);
        let msg = proto::ToAgent::ControlReply {
            plugin: long_name,
            payload: reply,
        };
        assert!(proto::encode_frame(&msg).is_ok());
    }

    #[test]
    fn call_ids_are_read_from_the_frame() {
        assert_eq!(
            call_id(b"C\0\0\0\0\0\0\x01\x02rest"),
            [0, 0, 0, 0, 0, 0, 1, 2]
        );
        assert_eq!(call_id(b"C\x01"), [0; 8]);
    }
}
