//! Everything the agent says passes through one outbox task. Events get a
//! sequence number and stay in the outbox until central acknowledges them;
//! a link that breaks mid-flight loses nothing, because the next link
//! replays everything central has not confirmed (central drops repeats).
//!
//! Invariants:
//! - Order is kept: replayed events come before anything newer.
//! - While no link is attached, retained plugin output is bounded
//!   ([`BUFFER_BYTES`]). Past it, output lines are dropped and counted per
//!   plugin, and the count is reported as a line of that plugin's output on
//!   the next link: never silently. State changes are always kept.
//! - Replies and `Bye` are not retained: they answer requests of a link,
//!   and a broken link has already failed its requests.
//! - Calls from plugins do not come here: they go straight to the link
//!   (`desk`), and are never kept, so never run late by a replay.

use proto::{Event, FromAgent, OutputStream, Resume};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// How much plugin output may wait for central while the link is down.
pub const BUFFER_BYTES: usize = 64 * 1024 * 1024;
const QUEUE: usize = 1024;
/// Output of one plugin's stream already waiting in the queue is sent as
/// one event up to this many bytes (see [`gather`]).
const GATHER_BYTES: usize = 256 * 1024;

/// What a link's writer sends: shared, so a retained event is not copied.
pub type Outgoing = Arc<FromAgent>;

enum Cmd {
    Attach(mpsc::Sender<Outgoing>, u64),
    Ack(u64),
    Detach(oneshot::Sender<()>),
    Clear(oneshot::Sender<()>),
    Drain(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<FromAgent>,
    cmd: mpsc::Sender<Cmd>,
    /// Random per agent process (see `FromAgent::Hello`).
    pub instance: u64,
}

impl Outbox {
    /// Starts the outbox task.
    pub fn start() -> Outbox {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (cmd, cmd_rx) = mpsc::channel(64);
        tokio::spawn(run(rx, cmd_rx));
        Outbox {
            tx,
            cmd,
            instance: instance_id(),
        }
    }

    /// Where plugins' output, state changes and replies are sent.
    pub fn sender(&self) -> mpsc::Sender<FromAgent> {
        self.tx.clone()
    }

    /// From now on messages go to `link`, after every retained event that
    /// central has not had (`resume` says what it has).
    pub async fn attach(&self, link: mpsc::Sender<Outgoing>, resume: Resume) {
        let from = if resume.instance == self.instance {
            resume.seq
        } else {
            0
        };
        let _ = self.cmd.send(Cmd::Attach(link, from)).await;
    }

    /// Central has every event up to `seq`.
    pub async fn ack(&self, seq: u64) {
        let _ = self.cmd.send(Cmd::Ack(seq)).await;
    }

    pub async fn detach(&self) {
        self.ask(Cmd::Detach).await
    }

    /// Forgets what was retained (a new central run does not want it).
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

fn instance_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (nanos ^ (u64::from(std::process::id()) << 40)).max(1)
}

fn output_size(event: &Event) -> usize {
    match event {
        Event::Output { lines, .. } => lines.bytes(),
        _ => 0,
    }
}

#[derive(Default)]
struct State {
    next_seq: u64,
    /// Numbered events central has not acknowledged, oldest first.
    retained: VecDeque<(u64, Outgoing, usize)>,
    bytes: usize,
    dropped: BTreeMap<String, u64>,
    link: Option<mpsc::Sender<Outgoing>>,
}

impl State {
    fn number(&mut self, event: Event) -> (u64, Outgoing) {
        self.next_seq += 1;
        let seq = self.next_seq;
        (seq, Arc::new(FromAgent::Numbered { seq, event }))
    }

    async fn take(&mut self, msg: FromAgent) {
        let FromAgent::Event(event) = msg else {
            // Replies and Bye only make sense on the link that asked.
            if let Some(link) = &self.link {
                if link.send(Arc::new(msg)).await.is_err() {
                    self.link = None;
                }
            }
            return;
        };
        let size = output_size(&event);
        if self.link.is_none() && size > 0 && self.bytes + size > BUFFER_BYTES {
            if let Event::Output { plugin, lines, .. } = &event {
                *self.dropped.entry(plugin.clone()).or_default() += lines.count() as u64;
            }
            return;
        }
        let (seq, out) = self.number(event);
        self.retained.push_back((seq, out.clone(), size));
        self.bytes += size;
        self.send(out).await;
    }

    async fn send(&mut self, out: Outgoing) {
        if let Some(link) = &self.link {
            if link.send(out).await.is_err() {
                self.link = None;
            }
        }
    }

    fn ack(&mut self, seq: u64) {
        while self.retained.front().is_some_and(|(s, _, _)| *s <= seq) {
            if let Some((_, _, size)) = self.retained.pop_front() {
                self.bytes -= size;
            }
        }
    }

    async fn attach(&mut self, link: mpsc::Sender<Outgoing>, from: u64) {
        self.ack(from);
        self.link = Some(link);
        let replay: Vec<Outgoing> = self.retained.iter().map(|(_, o, _)| o.clone()).collect();
        for out in replay {
            self.send(out).await;
        }
        for (plugin, n) in std::mem::take(&mut self.dropped) {
            let notice = crate::output::agent_note(
                &plugin,
                OutputStream::Stderr,
                &format!(
                    "{n} line(s) of output dropped while central was unreachable \
                     (more than {} MiB waited)",
                    BUFFER_BYTES / (1024 * 1024)
                ),
            );
            let (seq, out) = self.number(notice);
            self.retained.push_back((seq, out.clone(), 0));
            self.send(out).await;
        }
    }
}

async fn run(mut rx: mpsc::Receiver<FromAgent>, mut cmd: mpsc::Receiver<Cmd>) {
    let mut state = State::default();
    loop {
        tokio::select! {
            biased;
            c = cmd.recv() => match c {
                None => return,
                Some(Cmd::Attach(link, from)) => state.attach(link, from).await,
                Some(Cmd::Ack(seq)) => state.ack(seq),
                Some(Cmd::Detach(done)) => {
                    state.link = None;
                    let _ = done.send(());
                }
                Some(Cmd::Clear(done)) => {
                    let next_seq = state.next_seq;
                    state = State { next_seq, ..State::default() };
                    let _ = done.send(());
                }
                Some(Cmd::Drain(done)) => {
                    while let Ok(msg) = rx.try_recv() {
                        state.take(msg).await;
                    }
                    let _ = done.send(());
                }
            },
            msg = rx.recv() => match msg {
                Some(msg) => {
                    let (msg, after) = gather(msg, &mut rx);
                    state.take(msg).await;
                    if let Some(after) = after {
                        state.take(after).await;
                    }
                }
                None => return,
            },
        }
    }
}

/// `first`, with the output of the same plugin and stream that already
/// waits behind it appended (up to [`GATHER_BYTES`]), and the message that
/// ended the gathering. A plugin printing faster than the link carries
/// then costs one event per link write, not one per read of its pipe:
/// one frame, one wake-up of central's dispatcher and of its log writer.
/// Nothing waits for more to come.
fn gather(first: FromAgent, rx: &mut mpsc::Receiver<FromAgent>) -> (FromAgent, Option<FromAgent>) {
    let FromAgent::Event(Event::Output {
        plugin,
        stream,
        mut lines,
    }) = first
    else {
        return (first, None);
    };
    let mut after = None;
    while lines.bytes() < GATHER_BYTES {
        match rx.try_recv() {
            Ok(FromAgent::Event(Event::Output {
                plugin: p,
                stream: s,
                lines: more,
            })) if p == plugin && s == stream && lines.bytes() + more.bytes() <= GATHER_BYTES => {
                lines.append(more)
            }
            Ok(other) => {
                after = Some(other);
                break;
            }
            Err(_) => break,
        }
    }
    let gathered = FromAgent::Event(Event::Output {
        plugin,
        stream,
        lines,
    });
    (gathered, after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::Lines;

    /// Line `n`, on stdout and stderr in turn (so none are gathered).
    fn line(n: usize) -> FromAgent {
        FromAgent::Event(Event::Output {
            plugin: "p".into(),
            stream: if n.is_multiple_of(2) {
                OutputStream::Stdout
            } else {
                OutputStream::Stderr
            },
            lines: Lines::one(&n.to_string()),
        })
    }

    #[tokio::test]
    async fn output_waiting_in_the_queue_goes_as_one_event_in_order() {
        let outbox = Outbox::start();
        let tx = outbox.sender();
        let out = |plugin: &str, text: &str| {
            FromAgent::Event(Event::Output {
                plugin: plugin.into(),
                stream: OutputStream::Stdout,
                lines: Lines::one(text),
            })
        };
        // Queued before the outbox task can run (it has not yet).
        for (plugin, text) in [("p", "a"), ("p", "b"), ("q", "c"), ("p", "d"), ("p", "e")] {
            tx.try_send(out(plugin, text)).unwrap();
        }
        let (link, mut got) = mpsc::channel(100);
        outbox.attach(link, Resume::default()).await;
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let o = got.recv().await.unwrap();
            let FromAgent::Numbered {
                seq,
                event: Event::Output { plugin, lines, .. },
            } = &*o
            else {
                panic!("{o:?}");
            };
            seen.push((
                *seq,
                plugin.clone(),
                lines.iter().collect::<Vec<_>>().join(","),
            ));
        }
        assert_eq!(
            seen,
            [
                (1, "p".into(), "a,b".into()),
                (2, "q".into(), "c".into()),
                (3, "p".into(), "d,e".into())
            ]
        );
    }

    fn seq_of(o: &Outgoing) -> u64 {
        match &**o {
            FromAgent::Numbered { seq, .. } => *seq,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn unacknowledged_events_are_replayed_on_the_next_link() {
        let outbox = Outbox::start();
        let tx = outbox.sender();
        let (first, mut got) = mpsc::channel(1000);
        outbox.attach(first, Resume::default()).await;
        for n in 0..10 {
            tx.send(line(n)).await.unwrap();
        }
        for want in 1..=10 {
            assert_eq!(seq_of(&got.recv().await.unwrap()), want);
        }
        outbox.ack(4).await;
        outbox.detach().await;
        for n in 10..15 {
            tx.send(line(n)).await.unwrap();
        }
        outbox.drain().await;
        // Central says it has up to 6 (acks in flight were lost).
        let (second, mut got) = mpsc::channel(1000);
        let resume = Resume {
            instance: outbox.instance,
            seq: 6,
        };
        outbox.attach(second, resume).await;
        for want in 7..=15 {
            assert_eq!(seq_of(&got.recv().await.unwrap()), want);
        }
        // Another agent instance's resume point means nothing here: all again.
        let (third, mut got) = mpsc::channel(1000);
        outbox
            .attach(
                third,
                Resume {
                    instance: 1,
                    seq: 12,
                },
            )
            .await;
        assert_eq!(seq_of(&got.recv().await.unwrap()), 7);
    }

    #[tokio::test]
    async fn overflow_while_detached_is_counted_and_reported() {
        let outbox = Outbox::start();
        let tx = outbox.sender();
        let big = "x".repeat(BUFFER_BYTES / 2 + 1);
        for _ in 0..3 {
            tx.send(FromAgent::Event(Event::Output {
                plugin: "p".into(),
                stream: OutputStream::Stdout,
                lines: Lines::one(&big),
            }))
            .await
            .unwrap();
        }
        outbox.drain().await;
        let (link, mut got) = mpsc::channel(10);
        outbox.attach(link, Resume::default()).await;
        let first = got.recv().await.unwrap();
        assert_eq!(seq_of(&first), 1);
        let notice = got.recv().await.unwrap();
        let FromAgent::Numbered {
            event: Event::Output { lines, .. },
            ..
        } = &*notice
        else {
            panic!("{notice:?}");
        };
        assert!(
            lines
                .iter()
                .next()
                .unwrap()
                .contains("2 line(s) of output dropped"),
            "{lines:?}"
        );
    }
}
