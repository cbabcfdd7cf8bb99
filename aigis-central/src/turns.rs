//! Threads that take turns at waiting for work, and do what they got
//! themselves: the shape of central's answers to proxy calls where they
//! arrive one at a time (a plugin's control socket in `lane.rs`, a LAN
//! host's SSH session in `hostlane.rs`).
//!
//! The thread with the turn waits for the next piece of work (reads a
//! socket, drives a runtime); once it has one it leaves the turn vacant and
//! does the work (with the GIL), then takes the turn again. So a call costs
//! central no hand-off between threads: the thread that was woken for it
//! answers it. When work runs long, the ticker (`ticker.rs`) gives the
//! vacant turn to another thread after [`crate::ticker::HAND_ON_AFTER`],
//! so a slow call never holds up the next.
//!
//! Invariants:
//! - At most one thread has the turn; at most `max` threads exist (past
//!   that, work waits until one is done).
//! - A thread without a turn for [`IDLE`] ends; one always stays, until
//!   [`Taker::take`] says there is no more work, when they all end.
//! - Every thread keeps its Python thread state for its whole life and
//!   holds the GIL only while it works.

use pyo3::prelude::*;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A thread without a turn for this long ends (one always stays).
pub const IDLE: Duration = Duration::from_secs(30);

/// Where the work comes from and what is done with it.
pub trait Taker: Send + Sync + 'static {
    type Work: Send;

    /// With the turn (and without the GIL): waits for the next piece of
    /// work; `None` when there will be no more.
    fn take(&self) -> Option<Self::Work>;

    /// Without the turn, with the GIL: does one piece of work.
    fn work(&self, py: Python<'_>, work: Self::Work);

    /// Its threads' name, and who they work for (in an error message).
    fn names(&self) -> (&'static str, String);
}

/// The threads of one [`Taker`].
pub struct Turns<T: Taker> {
    taker: T,
    max: usize,
    turn: Mutex<Turn>,
    wake: Condvar,
}

#[derive(Default)]
struct Turn {
    /// A thread has the turn (and may be blocked waiting in it).
    taken: bool,
    /// Nobody has the turn since then: the last taker is working.
    vacant_since: Option<Instant>,
    idle: usize,
    threads: usize,
    /// `take` said there is no more work.
    closed: bool,
}

impl<T: Taker> Turns<T> {
    /// Starts the first thread, which takes the turn at once.
    pub fn start(taker: T, max: usize) -> Arc<Turns<T>> {
        let turns = Arc::new(Turns {
            taker,
            max: max.max(1),
            turn: Mutex::new(Turn {
                threads: 1,
                ..Turn::default()
            }),
            wake: Condvar::new(),
        });
        turns.spawn_thread();
        turns
    }

    pub fn taker(&self) -> &T {
        &self.taker
    }

    fn lock(&self) -> MutexGuard<'_, Turn> {
        crate::lock(&self.turn)
    }

    fn spawn_thread(self: &Arc<Self>) {
        let turns = self.clone();
        let (name, _) = self.taker.names();
        let started = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || turns.run());
        if let Err(e) = started {
            let (_, whose) = self.taker.names();
            tracing::error!("cannot start a thread for {whose}: {e}");
            self.lock().threads -= 1;
        }
    }

    /// One thread: take the turn, wait for work, do it, again. It attaches
    /// to Python at its first piece of work (a host's runtime is driven
    /// before the core is up) and keeps its thread state from then on.
    fn run(self: &Arc<Self>) {
        let Some(first) = self.next() else { return };
        Python::attach(|py| {
            self.taker.work(py, first);
            while let Some(work) = py.detach(|| self.next()) {
                self.taker.work(py, work);
            }
        });
    }

    /// Waits for this thread's turn, waits for work in it, and leaves the
    /// turn vacant while the work is done: the thread takes it again when
    /// done, unless the work took long enough for the ticker to give it to
    /// another. `None` when this thread should end.
    fn next(self: &Arc<Self>) -> Option<T::Work> {
        let mut turn = self.lock();
        while turn.taken && !turn.closed {
            turn.idle += 1;
            let (guard, waited) = self
                .wake
                .wait_timeout(turn, IDLE)
                .unwrap_or_else(|p| p.into_inner());
            turn = guard;
            turn.idle -= 1;
            if waited.timed_out() && turn.taken && turn.threads > 1 {
                turn.threads -= 1;
                return None;
            }
        }
        if turn.closed {
            turn.threads -= 1;
            return None;
        }
        turn.taken = true;
        turn.vacant_since = None;
        drop(turn);

        let work = self.taker.take();

        let mut turn = self.lock();
        turn.taken = false;
        let Some(work) = work else {
            turn.closed = true;
            turn.threads -= 1;
            drop(turn);
            self.wake.notify_all();
            return None;
        };
        turn.vacant_since = Some(Instant::now());
        drop(turn);
        crate::ticker::watch(self.clone());
        Some(work)
    }
}

impl<T: Taker> crate::ticker::Watched for Turns<T> {
    /// Gives the turn to another thread when it has been vacant for at
    /// least `after` (work is taking that long). True while it is still
    /// vacant and younger, so the ticker looks again.
    fn hand_on(self: Arc<Self>, after: Duration) -> bool {
        let mut turn = self.lock();
        let Some(since) = turn.vacant_since.filter(|_| !turn.taken && !turn.closed) else {
            return false;
        };
        if since.elapsed() < after {
            return true;
        }
        turn.vacant_since = None;
        if turn.idle > 0 {
            drop(turn);
            self.wake.notify_one();
        } else if turn.threads < self.max {
            turn.threads += 1;
            drop(turn);
            self.spawn_thread();
        }
        false
    }
}
