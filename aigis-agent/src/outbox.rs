//! Everything the agent says passes through one outbox task: to the current
//! link when there is one, into a bounded buffer when there is none.
//!
//! Invariants:
//! - Order is kept: buffered messages are replayed before anything newer.
//! - The buffer is bounded ([`BUFFER_BYTES`]). Past it, plugin output lines
//!   are dropped and counted per plugin, and the count is reported as a line
//!   of that plugin's output on the next link: never silently. Replies and
//!   state changes are always kept (they are few).

use proto::{Event, FromAgent, OutputStream};
use std::collections::{BTreeMap, VecDeque};
use tokio::sync::{mpsc, oneshot};

/// How much plugin output may wait for central while the link is down.
pub const BUFFER_BYTES: usize = 64 * 1024 * 1024;
const QUEUE: usize = 1024;

enum Cmd {
    Attach(mpsc::Sender<FromAgent>),
    Detach(oneshot::Sender<()>),
    Clear(oneshot::Sender<()>),
    Drain(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<FromAgent>,
    cmd: mpsc::Sender<Cmd>,
}

impl Outbox {
    pub fn start() -> Outbox {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (cmd, cmd_rx) = mpsc::channel(8);
        tokio::spawn(run(rx, cmd_rx));
        Outbox { tx, cmd }
    }

    /// Where plugins' output, state changes and replies are sent.
    pub fn sender(&self) -> mpsc::Sender<FromAgent> {
        self.tx.clone()
    }

    /// From now on messages go to `link`, after everything buffered.
    pub async fn attach(&self, link: mpsc::Sender<FromAgent>) {
        let _ = self.cmd.send(Cmd::Attach(link)).await;
    }

    pub async fn detach(&self) {
        self.ask(Cmd::Detach).await
    }

    /// Forgets what was buffered (a new central run does not want it).
    pub async fn clear(&self) {
        self.ask(Cmd::Clear).await
    }

    /// Waits until everything sent so far has been handed on.
    pub async fn drain(&self) {
        self.ask(Cmd::Drain).await
    }

    async fn ask(&self, make: impl FnOnce(oneshot::Sender<()>) -> Cmd) {
        let (done, wait) = oneshot::channel();
        if self.cmd.send(make(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

#[derive(Default)]
struct Buffer {
    queue: VecDeque<FromAgent>,
    bytes: usize,
    dropped: BTreeMap<String, u64>,
}

impl Buffer {
    fn push(&mut self, msg: FromAgent) {
        if let FromAgent::Event(Event::Output { plugin, lines, .. }) = &msg {
            let size: usize = lines.iter().map(String::len).sum();
            if self.bytes + size > BUFFER_BYTES {
                *self.dropped.entry(plugin.clone()).or_default() += lines.len() as u64;
                return;
            }
            self.bytes += size;
        }
        self.queue.push_back(msg);
    }

    /// What to send on a new link: drop notices, then the buffered messages.
    fn take(&mut self) -> Vec<FromAgent> {
        let mut out: Vec<FromAgent> = std::mem::take(&mut self.dropped)
            .into_iter()
            .map(|(plugin, n)| {
                FromAgent::Event(Event::Output {
                    plugin,
                    stream: OutputStream::Stderr,
                    lines: vec![format!(
                        "aigis-agent: {n} line(s) of output dropped while central was unreachable \
                         (more than {} MiB waited)",
                        BUFFER_BYTES / (1024 * 1024)
                    )],
                })
            })
            .collect();
        out.extend(self.queue.drain(..));
        self.bytes = 0;
        out
    }
}

async fn run(mut rx: mpsc::Receiver<FromAgent>, mut cmd: mpsc::Receiver<Cmd>) {
    let mut buffer = Buffer::default();
    let mut link: Option<mpsc::Sender<FromAgent>> = None;
    loop {
        tokio::select! {
            biased;
            c = cmd.recv() => match c {
                None => return,
                Some(Cmd::Attach(new)) => {
                    link = Some(new);
                    for msg in buffer.take() {
                        forward(&mut link, &mut buffer, msg).await;
                    }
                }
                Some(Cmd::Detach(done)) => {
                    link = None;
                    let _ = done.send(());
                }
                Some(Cmd::Clear(done)) => {
                    buffer = Buffer::default();
                    let _ = done.send(());
                }
                Some(Cmd::Drain(done)) => {
                    while let Ok(msg) = rx.try_recv() {
                        forward(&mut link, &mut buffer, msg).await;
                    }
                    let _ = done.send(());
                }
            },
            msg = rx.recv() => match msg {
                Some(msg) => forward(&mut link, &mut buffer, msg).await,
                None => return,
            },
        }
    }
}

async fn forward(link: &mut Option<mpsc::Sender<FromAgent>>, buffer: &mut Buffer, msg: FromAgent) {
    match link {
        Some(l) => {
            if let Err(mpsc::error::SendError(msg)) = l.send(msg).await {
                *link = None;
                buffer.push(msg);
            }
        }
        None => buffer.push(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize) -> FromAgent {
        FromAgent::Event(Event::Output {
            plugin: "p".into(),
            stream: OutputStream::Stdout,
            lines: vec![format!("{n}")],
        })
    }

    #[tokio::test]
    async fn buffers_while_detached_and_replays_in_order() {
        let outbox = Outbox::start();
        let tx = outbox.sender();
        for n in 0..100 {
            tx.send(line(n)).await.unwrap();
        }
        outbox.drain().await;
        let (link, mut rx) = mpsc::channel(1000);
        outbox.attach(link).await;
        tx.send(line(100)).await.unwrap();
        for n in 0..=100 {
            assert_eq!(rx.recv().await.unwrap(), line(n));
        }
    }

    #[test]
    fn overflow_is_counted_and_reported() {
        let mut b = Buffer::default();
        let big = "x".repeat(BUFFER_BYTES / 2 + 1);
        for _ in 0..3 {
            b.push(FromAgent::Event(Event::Output {
                plugin: "p".into(),
                stream: OutputStream::Stdout,
                lines: vec![big.clone()],
            }));
        }
        b.push(FromAgent::Bye);
        let out = b.take();
        assert_eq!(out.len(), 3, "notice + one line + Bye");
        let FromAgent::Event(Event::Output { lines, .. }) = &out[0] else {
            panic!("{:?}", out[0]);
        };
        assert!(
            lines[0].contains("2 line(s) of output dropped"),
            "{lines:?}"
        );
        assert_eq!(out[2], FromAgent::Bye);
    }
}
