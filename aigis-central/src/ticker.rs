//! The one thread that notices a core call running long, for the lane and
//! the call pool alike.
//!
//! Both answer calls on threads that hold the GIL in turn, and both would
//! rather not wake a second thread for every call: while calls are short,
//! the thread that finished one takes the next itself, and a thread that
//! is woken only to wait for the GIL costs two wake-ups for nothing. So
//! they wake another thread only when work has waited [`HAND_ON_AFTER`]
//! (a call is taking that long), and this ticker is what looks: every
//! millisecond while something is watched, never while nothing is.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// After how long work that waits for a busy thread gets another thread.
pub const HAND_ON_AFTER: Duration = Duration::from_millis(1);
/// How long the ticker keeps ticking after the last watch before it sleeps
/// until the next.
const TICKER_LINGER: Duration = Duration::from_millis(200);

/// What the ticker looks at.
pub trait Watched: Send + Sync {
    /// Called every tick while watched: hands waiting work on to another
    /// thread once it has waited at least `after`. True to be looked at
    /// again at the next tick.
    fn hand_on(self: Arc<Self>, after: Duration) -> bool;
}

/// Looks at `what` from the next tick on, until its `hand_on` says done.
pub fn watch<W: Watched + 'static>(what: Arc<W>) {
    ticker().watch(what);
}

struct Ticker {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    watched: Vec<Weak<dyn Watched>>,
    asleep: bool,
}

fn ticker() -> &'static Ticker {
    static TICKER: std::sync::OnceLock<&'static Ticker> = std::sync::OnceLock::new();
    TICKER.get_or_init(|| {
        let ticker: &'static Ticker = Box::leak(Box::new(Ticker {
            state: Mutex::default(),
            wake: Condvar::new(),
        }));
        let started = std::thread::Builder::new()
            .name("aigis-ticker".into())
            .spawn(move || ticker.run());
        if let Err(e) = started {
            tracing::error!("cannot start the ticker (slow calls will hold up others): {e}");
        }
        ticker
    })
}

impl Ticker {
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::lock(&self.state)
    }

    fn watch<W: Watched + 'static>(&self, what: Arc<W>) {
        let what: Arc<dyn Watched> = what;
        let mut state = self.lock();
        if !state
            .watched
            .iter()
            .any(|w| std::ptr::addr_eq(w.as_ptr(), Arc::as_ptr(&what)))
        {
            state.watched.push(Arc::downgrade(&what));
        }
        if state.asleep {
            state.asleep = false;
            drop(state);
            self.wake.notify_one();
        }
    }

    fn run(&self) {
        let mut quiet_since = Instant::now();
        loop {
            let mut state = self.lock();
            if state.watched.is_empty() && quiet_since.elapsed() >= TICKER_LINGER {
                state.asleep = true;
                while state.asleep {
                    state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                }
            }
            drop(state);
            std::thread::sleep(HAND_ON_AFTER);
            let watched = std::mem::take(&mut self.lock().watched);
            if !watched.is_empty() {
                quiet_since = Instant::now();
            }
            let still: Vec<Weak<dyn Watched>> = watched
                .into_iter()
                .filter(|w| w.upgrade().is_some_and(|w| w.hand_on(HAND_ON_AFTER)))
                .collect();
            self.lock().watched.extend(still);
        }
    }
}
