//! The cancellation spine: every task central spawns is tracked here, and
//! learns of shutdown the same way (mini-redis's `Shutdown`, with
//! tokio-util's `CancellationToken` and `TaskTracker`).
//!
//! Shutdown is one ordered sequence (see `daemon::run`): cancel, so no load
//! or reload starts and every waiting task gives up; agents stop their
//! plugins; the tracked tasks finish (links end when their agent says
//! `Bye`); core `cleanup()`; logs flushed.

use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Tasks {
    pub fn new() -> Tasks {
        Tasks::default()
    }

    /// Spawns a tracked task that runs until it ends by itself.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// Spawns a tracked task that is dropped at its next `.await` once
    /// shutdown begins.
    pub fn spawn_cancellable<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = task => {}
            }
        });
    }

    /// As [`Tasks::spawn_cancellable`], on the runtime of `handle` (a LAN
    /// host's own, see `hostlane.rs`).
    pub fn spawn_cancellable_on<F>(&self, handle: &tokio::runtime::Handle, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        self.tracker.spawn_on(
            async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = task => {}
                }
            },
            handle,
        );
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Begins shutdown: no new work starts, waiting tasks give up.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Waits up to `limit` for every tracked task; false if some did not end.
    pub async fn wait(&self, limit: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(limit, self.tracker.wait())
            .await
            .is_ok()
    }
}
