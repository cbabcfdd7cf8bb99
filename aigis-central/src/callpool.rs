//! AigisProxy calls answered on Python worker threads, with a fair share
//! per plugin.
//!
//! A call is handed over once ([`CallPool::submit`]) and answered by a
//! worker thread that keeps its Python thread state for its whole life:
//! it waits for work with the GIL released and runs `proxy.serve` with it
//! held, so a call costs one thread wake-up in central, not a task spawn,
//! a blocking-pool hop and a thread state made and freed per call.
//!
//! Invariants:
//! - At most [`CALLS_PER_PLUGIN`] calls of one plugin run at once; waiting
//!   plugins take turns (round robin), so one plugin's flood of slow calls
//!   never starves another's.
//! - A call waits for a busy worker at most about
//!   [`crate::ticker::HAND_ON_AFTER`]: while calls are short, the worker
//!   that finished one takes the next (a worker woken only to wait for the
//!   GIL would cost two wake-ups for nothing); when no call was taken for
//!   that long, the ticker wakes an idle worker or starts one (up to
//!   [`MAX_WORKERS`]). Workers end after [`IDLE`] without work; one stays.
//! - Every submitted call is answered exactly once, unless the pool stops
//!   first: then its answer is dropped with it (no one is left to read it).

use pyo3::prelude::*;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Proxy calls of one plugin that run in the core at the same time.
pub const CALLS_PER_PLUGIN: usize = 8;
/// Worker threads at most: calls that wait on I/O release the GIL, so many
/// plugins' slow calls can be in flight at once.
pub const MAX_WORKERS: usize = 256;
/// A worker without work for this long ends (the last one stays).
const IDLE: Duration = Duration::from_secs(30);

/// Where a call's reply frame goes; called once, on the worker thread.
pub type Sink = Box<dyn FnOnce(Vec<u8>) + Send>;

/// Answers one call frame with the GIL held (`proxy.serve` in practice).
pub type Serve = Box<dyn Fn(Python<'_>, &[u8]) -> Vec<u8> + Send + Sync>;

#[derive(Clone)]
pub struct CallPool {
    inner: Arc<Inner>,
}

struct Inner {
    serve: Serve,
    queue: Mutex<Queue>,
    work: Condvar,
}

#[derive(Default)]
struct Queue {
    plugins: HashMap<String, Waiting>,
    /// Plugins with a call waiting and a free slot, in turn order.
    turns: VecDeque<String>,
    workers: usize,
    idle: usize,
    /// Calls submitted and not yet taken by a worker.
    waiting: usize,
    /// Since when a call in `turns` has waited with no call taken; set
    /// while the ticker watches the pool.
    waiting_since: Option<Instant>,
    stopped: bool,
}

#[derive(Default)]
struct Waiting {
    calls: VecDeque<(Vec<u8>, Sink)>,
    running: usize,
    /// In `turns` now.
    queued: bool,
}

impl Queue {
    /// Gives `plugin` a turn if it has a call waiting and a free slot.
    fn offer(&mut self, plugin: &str) {
        let Some(w) = self.plugins.get_mut(plugin) else {
            return;
        };
        if !w.queued && !w.calls.is_empty() && w.running < CALLS_PER_PLUGIN {
            w.queued = true;
            self.turns.push_back(plugin.to_string());
        } else if w.calls.is_empty() && w.running == 0 {
            self.plugins.remove(plugin);
        }
    }

    /// The next call to run, in turn order.
    fn next(&mut self) -> Option<(String, Vec<u8>, Sink)> {
        while let Some(plugin) = self.turns.pop_front() {
            let Some(w) = self.plugins.get_mut(&plugin) else {
                continue;
            };
            w.queued = false;
            let Some((frame, sink)) = w.calls.pop_front() else {
                continue;
            };
            w.running += 1;
            self.waiting -= 1;
            self.offer(&plugin);
            if self.waiting_since.is_some() {
                self.waiting_since = (!self.turns.is_empty()).then(Instant::now);
            }
            return Some((plugin, frame, sink));
        }
        None
    }
}

impl CallPool {
    pub fn new(serve: Serve) -> CallPool {
        CallPool {
            inner: Arc::new(Inner {
                serve,
                queue: Mutex::default(),
                work: Condvar::new(),
            }),
        }
    }

    /// Queues one call of `plugin`; `sink` gets its reply frame.
    pub fn submit(&self, plugin: &str, frame: Vec<u8>, sink: Sink) {
        let mut q = self.inner.lock();
        if q.stopped {
            return;
        }
        q.plugins
            .entry(plugin.to_string())
            .or_default()
            .calls
            .push_back((frame, sink));
        q.waiting += 1;
        q.offer(plugin);
        if q.turns.is_empty() {
            return; // the plugin's calls all run: one ending offers it again
        }
        // A busy worker takes it when done, unless that takes long; and an
        // idle one woken for it may be taken by a call before it (two calls
        // in a row wake the same idle worker): the ticker looks, unless
        // every waiting call has an idle worker of its own coming.
        let watch = (q.workers != q.idle || q.waiting > q.idle) && q.waiting_since.is_none();
        if watch {
            q.waiting_since = Some(Instant::now());
        }
        if q.workers == q.idle {
            self.inner.hand_on_now(q);
        } else {
            drop(q);
        }
        if watch {
            crate::ticker::watch(self.inner.clone());
        }
    }

    /// Answers one call on this thread, which holds the GIL (for callers
    /// with threads of their own, such as `lane.rs`).
    pub fn serve(&self, py: Python<'_>, frame: &[u8]) -> Vec<u8> {
        (self.inner.serve)(py, frame)
    }

    /// Answers one call and waits for its reply (for callers that are
    /// async themselves, such as `aigis shell`'s connection).
    pub async fn call(&self, plugin: &str, frame: Vec<u8>) -> Option<Vec<u8>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(
            plugin,
            frame,
            Box::new(move |reply| {
                let _ = tx.send(reply);
            }),
        );
        rx.await.ok()
    }

    /// Drops every call not yet started; workers end once idle.
    pub fn stop(&self) {
        let mut q = self.inner.lock();
        q.stopped = true;
        q.plugins.clear();
        q.turns.clear();
        q.waiting = 0;
        drop(q);
        self.inner.work.notify_all();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        crate::lock(&self.queue)
    }

    /// Gets a worker for what waits: an idle one, or a new one.
    fn hand_on_now(self: &Arc<Self>, mut q: MutexGuard<'_, Queue>) {
        if q.idle > 0 {
            drop(q);
            self.work.notify_one();
        } else if q.workers < MAX_WORKERS {
            q.workers += 1;
            drop(q);
            self.spawn_worker();
        }
    }

    fn spawn_worker(self: &Arc<Self>) {
        let inner = self.clone();
        let started = std::thread::Builder::new()
            .name("aigis-call".into())
            .spawn(move || Python::attach(|py| inner.work_loop(py)));
        if let Err(e) = started {
            tracing::error!("cannot start a thread for core calls: {e}");
            self.lock().workers -= 1;
        }
    }

    /// One worker: the GIL is held only while a call runs.
    fn work_loop(&self, py: Python<'_>) {
        loop {
            let job = py.detach(|| self.wait_for_work());
            let Some((plugin, frame, sink)) = job else {
                return;
            };
            let reply = (self.serve)(py, &frame);
            drop(frame);
            py.detach(|| {
                // A sink that panics loses its reply, not this worker nor
                // the plugin's share of them.
                let delivered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    sink(reply);
                }));
                if delivered.is_err() {
                    tracing::error!(%plugin, "the reply to a core call was lost on its way back");
                }
                let mut q = self.lock();
                if let Some(w) = q.plugins.get_mut(&plugin) {
                    w.running -= 1;
                }
                q.offer(&plugin);
            });
        }
    }

    /// The next call, or `None` when this worker should end.
    fn wait_for_work(&self) -> Option<(String, Vec<u8>, Sink)> {
        let mut q = self.lock();
        loop {
            if let Some(job) = q.next() {
                return Some(job);
            }
            if q.stopped {
                q.workers -= 1;
                return None;
            }
            q.idle += 1;
            let (guard, waited) = self
                .work
                .wait_timeout(q, IDLE)
                .unwrap_or_else(|p| p.into_inner());
            q = guard;
            q.idle -= 1;
            if waited.timed_out() && q.turns.is_empty() && q.workers > 1 {
                q.workers -= 1;
                return None;
            }
        }
    }
}

impl crate::ticker::Watched for Inner {
    /// Wakes or starts a worker when no call was taken for `after`.
    fn hand_on(self: Arc<Self>, after: Duration) -> bool {
        let mut q = self.lock();
        let waiting = q
            .waiting_since
            .filter(|_| !q.turns.is_empty() && !q.stopped);
        let Some(since) = waiting else {
            q.waiting_since = None;
            return false;
        };
        if since.elapsed() >= after {
            q.waiting_since = Some(Instant::now());
            self.hand_on_now(q);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    /// A pool whose "serve" sleeps for the frame's first byte in ms and
    /// answers the frame itself.
    fn sleeping_pool() -> CallPool {
        crate::core::start_interpreter().unwrap();
        CallPool::new(Box::new(|py, frame| {
            let ms = u64::from(frame[0]);
            py.detach(|| std::thread::sleep(Duration::from_millis(ms)));
            frame.to_vec()
        }))
    }

    fn to(tx: &mpsc::Sender<(String, Vec<u8>)>, who: &str) -> Sink {
        let (tx, who) = (tx.clone(), who.to_string());
        Box::new(move |reply| {
            let _ = tx.send((who, reply));
        })
    }

    #[test]
    fn every_call_is_answered_once_with_its_own_reply() {
        let pool = sleeping_pool();
        let (tx, rx) = mpsc::channel();
        for i in 0..200u8 {
            pool.submit(&format!("p{}", i % 7), vec![0, i], to(&tx, "x"));
        }
        let mut got: Vec<u8> = (0..200)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap().1[1])
            .collect();
        got.sort();
        assert_eq!(got, (0..200).collect::<Vec<u8>>());
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    }

    /// A reply whose sink panics is lost alone: the worker and the
    /// plugin's share of workers live on, and its next call is answered.
    #[test]
    fn a_sink_that_panics_costs_its_reply_only() {
        let pool = sleeping_pool();
        for _ in 0..CALLS_PER_PLUGIN * 2 {
            pool.submit("p", vec![0], Box::new(|_| panic!("this sink fails")));
        }
        let (tx, rx) = mpsc::channel();
        pool.submit("p", vec![0, 7], to(&tx, "p"));
        let (_, reply) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(reply, vec![0, 7]);
    }

    /// Two calls in a row while one worker is idle: both wake that worker,
    /// which takes the first, a slow one; the second still gets a worker
    /// within a few ms.
    #[test]
    fn two_calls_for_one_idle_worker_do_not_queue_behind_each_other() {
        let pool = sleeping_pool();
        let (tx, rx) = mpsc::channel();
        pool.submit("warm", vec![0], to(&tx, "warm"));
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(wait_for_idle(&pool, 1));
        let asked = Instant::now();
        pool.submit("slow", vec![250], to(&tx, "slow"));
        pool.submit("quick", vec![0], to(&tx, "quick"));
        quick_answered_first(&rx, asked);
    }

    /// `quick` is answered within 150 ms of `asked`, and `slow` after it.
    fn quick_answered_first(rx: &mpsc::Receiver<(String, Vec<u8>)>, asked: Instant) {
        let (who, _) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(who, "quick");
        assert!(
            asked.elapsed() < Duration::from_millis(150),
            "{:?}",
            asked.elapsed()
        );
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap().0, "slow");
    }

    fn wait_for_idle(pool: &CallPool, n: usize) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if pool.inner.lock().idle >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    /// A call behind a slow one gets a worker of its own within a few ms.
    #[test]
    fn a_call_behind_a_slow_one_does_not_wait_for_it() {
        let pool = sleeping_pool();
        let (tx, rx) = mpsc::channel();
        pool.submit("slow", vec![250], to(&tx, "slow"));
        std::thread::sleep(Duration::from_millis(20));
        let asked = Instant::now();
        pool.submit("quick", vec![0], to(&tx, "quick"));
        quick_answered_first(&rx, asked);
    }

    #[test]
    fn a_flood_of_slow_calls_from_one_plugin_leaves_the_others_a_turn() {
        let pool = sleeping_pool();
        let (tx, rx) = mpsc::channel();
        // 80 calls of 200 ms from `flood`: ten rounds of 8 at most at once.
        for _ in 0..80 {
            pool.submit("flood", vec![200], to(&tx, "flood"));
        }
        std::thread::sleep(Duration::from_millis(50));
        let asked = Instant::now();
        pool.submit("quiet", vec![1], to(&tx, "quiet"));
        let mut flood_done = 0;
        loop {
            let (who, _) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            if who == "quiet" {
                break;
            }
            flood_done += 1;
        }
        assert!(
            asked.elapsed() < Duration::from_millis(150),
            "{:?}",
            asked.elapsed()
        );
        assert_eq!(flood_done, 0, "quiet waited for flood's calls");
        // The flood never ran more than its share at once.
        let started = Instant::now();
        for _ in 0..80 {
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        assert!(started.elapsed() >= Duration::from_millis(1500));
    }

    #[test]
    fn calls_not_started_when_the_pool_stops_are_dropped() {
        let pool = sleeping_pool();
        let (tx, rx) = mpsc::channel();
        for _ in 0..16 {
            pool.submit("p", vec![100], to(&tx, "p"));
        }
        std::thread::sleep(Duration::from_millis(20));
        pool.stop();
        pool.submit("p", vec![0], to(&tx, "late"));
        let answered: Vec<String> = std::iter::from_fn(|| {
            rx.recv_timeout(Duration::from_millis(500))
                .ok()
                .map(|(w, _)| w)
        })
        .collect();
        assert_eq!(answered.len(), CALLS_PER_PLUGIN, "{answered:?}");
    }
}
