//! A LAN host's own async runtime, and the threads that answer the calls
//! that arrive over it.
//!
//! Everything of one host's SSH connection runs on a single-threaded tokio
//! runtime of its own: russh's session, the agent link's tasks, the
//! plugins' direct call channels (`daemon/direct.rs`). Threads take turns
//! driving it (`turns.rs`): the one with the turn runs the runtime until a
//! call is ready, then leaves the turn and answers the call itself, holding
//! the GIL, and writes the reply by driving the runtime again. So a call
//! from a LAN host wakes one thread of central, the one its bytes woke,
//! instead of handing the call to a worker and the reply back to the
//! session. A call that runs long (the ticker sees the turn vacant for
//! [`crate::ticker::HAND_ON_AFTER`]) gets another thread to drive the
//! runtime meanwhile, so the host's other traffic waits at most that long.
//!
//! Invariants:
//! - Python never runs while the runtime is driven by the same thread.
//! - At most [`MAX_THREADS`] threads per host; jobs are bounded by their
//!   senders (a plugin's calls, a host's call budget).

use crate::turns::{Taker, Turns};
use pyo3::prelude::*;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Threads of one host at most (the calls of all its plugins).
pub const MAX_THREADS: usize = 64;
/// Jobs waiting for a thread.
const QUEUE: usize = 1024;

/// Work with the GIL on a host thread: an answer to a call, given the
/// host's runtime to write it with.
pub type Job = Box<dyn FnOnce(Python<'_>, &Runtime) + Send>;

/// A host's runtime and its threads.
#[derive(Clone)]
pub struct HostLane {
    handle: Handle,
    jobs: mpsc::Sender<Job>,
    _turns: Arc<Turns<Driver>>,
}

struct Driver {
    host: String,
    runtime: ManuallyDrop<Runtime>,
    jobs: Mutex<mpsc::Receiver<Job>>,
}

impl Drop for Driver {
    /// Whichever thread lets go of the lane last, an async one included:
    /// a runtime dropped the usual way waits for its tasks.
    fn drop(&mut self) {
        // SAFETY: taken once, here, and never used again.
        unsafe { ManuallyDrop::take(&mut self.runtime) }.shutdown_background();
    }
}

impl HostLane {
    /// The runtime of `host`, driven from now on.
    pub fn start(host: &str) -> std::io::Result<HostLane> {
        // Sockets and timers only: the daemon's runtime reaps children and
        // takes signals, and a driver for them here would be polled on
        // every turn for nothing.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let handle = runtime.handle().clone();
        let (jobs, waiting) = mpsc::channel(QUEUE);
        let turns = Turns::start(
            Driver {
                host: host.to_string(),
                runtime: ManuallyDrop::new(runtime),
                jobs: Mutex::new(waiting),
            },
            MAX_THREADS,
        );
        Ok(HostLane {
            handle,
            jobs,
            _turns: turns,
        })
    }

    /// Runs `task` on the host's runtime.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(task)
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Queues `job` for the next thread to take; false when no thread is
    /// left to (never while the lane lives).
    pub async fn push(&self, job: Job) -> bool {
        self.jobs.send(job).await.is_ok()
    }
}

impl Taker for Driver {
    type Work = Job;

    /// Drives the runtime until a job is ready.
    fn take(&self) -> Option<Job> {
        let mut jobs = crate::lock(&self.jobs);
        self.runtime.block_on(jobs.recv())
    }

    fn work(&self, py: Python<'_>, job: Job) {
        job(py, &self.runtime);
    }

    fn names(&self) -> (&'static str, String) {
        ("aigis-host", format!("the calls from {}", self.host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A job answers on the thread that drove the runtime to it; a slow
    /// job gets the runtime another driver, so the next job does not wait.
    #[test]
    fn jobs_run_on_the_driving_thread_and_a_slow_one_hands_the_runtime_on() {
        crate::core::start_interpreter().unwrap();
        let lane = HostLane::start("test").unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<(String, Instant)>();
        let job = |ms: u64, what: &'static str| -> Job {
            let tx = tx.clone();
            Box::new(move |py: Python<'_>, rt: &Runtime| {
                py.detach(|| std::thread::sleep(Duration::from_millis(ms)));
                // The reply is written by driving the runtime again.
                rt.block_on(tokio::task::yield_now());
                let name = std::thread::current().name().unwrap_or("").to_string();
                let _ = tx.send((format!("{what} on {name}"), Instant::now()));
            })
        };
        let start = Instant::now();
        let (slow, quick) = (job(500, "slow"), job(0, "quick"));
        let l = lane.clone();
        lane.spawn(async move {
            assert!(l.push(slow).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(l.push(quick).await);
        });
        let (first, at) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(first, "quick on aigis-host");
        assert!(at - start < Duration::from_millis(300), "{:?}", at - start);
        let (second, _) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(second, "slow on aigis-host");
    }
}
