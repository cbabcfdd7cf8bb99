//! The lane: how internal plugins on the central host reach the core
//! without a hop through the agent.
//!
//! Central starts the local agent with a `SOCK_SEQPACKET` socket on the
//! descriptor named by `AIGIS_LANE_FD`. For every internal plugin it
//! starts, the agent sends central the agent's end of the plugin's control
//! socket over it (the plugin's name as the message, the socket attached,
//! see `fdpass.rs`), and central answers the plugin's calls on that socket
//! itself. Without a lane (a LAN host, or a central without a core), or if
//! handing over fails, the agent relays the socket over the link as before.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

/// The variable that names the lane's descriptor.
pub const LANE_FD: &str = "AIGIS_LANE_FD";

static LANE: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Takes the lane central passed, if any. Call once, first thing in `main`
/// (before any thread starts): the variable is removed, and the descriptor
/// made close-on-exec, so no plugin inherits either.
pub fn init_from_env() {
    let Some(fd) = std::env::var(LANE_FD)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    std::env::remove_var(LANE_FD);
    // SAFETY: fcntl on a descriptor number; F_GETFD fails on one that is
    // not open, and then the lane is not used.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return;
    }
    // SAFETY: as above; central passed this descriptor to us alone.
    unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
    // SAFETY: the descriptor is open (F_GETFD succeeded) and nothing else in
    // this process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    *crate::lock(&LANE) = Some(owned);
}

/// Hands `control` (the agent's end of `plugin`'s control socket) to
/// central. False when there is no lane or it failed: then the caller
/// relays the socket itself.
pub fn hand_over(plugin: &str, control: &impl AsRawFd) -> bool {
    let mut lane = crate::lock(&LANE);
    let Some(fd) = lane.as_ref() else {
        return false;
    };
    match crate::fdpass::send(fd, plugin.as_bytes(), &[control.as_raw_fd()]) {
        Ok(()) => true,
        Err(_) => {
            // Central's end is gone; relay from now on.
            *lane = None;
            false
        }
    }
}
