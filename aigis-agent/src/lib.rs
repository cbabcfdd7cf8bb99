//! `aigis-agent`: the small per-host program that fetches, installs and
//! supervises plugins for central. It speaks the `proto` protocol on its
//! stdin/stdout: a local child of `aigis`, or an SSH exec channel.

pub mod agent;
pub mod calls;
pub mod confine;
pub mod contain;
pub mod daemon;
pub mod desk;
pub mod direct;
pub mod fdpass;
pub mod fetch;
pub mod group;
pub mod install;
pub mod lane;
pub mod outbox;
pub mod output;
pub mod python;
pub mod quiet;
pub mod stdio;
pub mod supervisor;
pub mod tree;
pub mod user;
pub mod venv;

pub use agent::serve;

/// A mutex's guard; a panic while it was held does not make it unusable
/// (what the agent keeps under a lock is valid between statements).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
