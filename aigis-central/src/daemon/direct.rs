//! Direct call channels, central's end (the agent's end, and why, are in
//! `aigis_agent::direct`): for each AigisProxy plugin on a LAN host, an SSH
//! `direct-streamlocal` channel to the socket its agent made for it, kept
//! open while the plugin runs. Its calls are answered on the host's own
//! threads (`hostlane.rs`): the thread whose drive of the host's runtime
//! read a call answers it and writes the reply back on the same channel.
//!
//! Invariants:
//! - What a channel brings is taken as its plugin's proxy calls, checked
//!   like any: the frame limit, [`CALLS_PER_PLUGIN`] at once. Anything else
//!   ends the channel (the plugin's calls go through its agent again).
//! - What a host's channels read and did not answer yet is bounded in
//!   bytes ([`crate::link::LINK_BUDGET`] per host, shared).
//! - A channel that ends is opened again with backoff, until the plugin
//!   stops (central stopped it, or its agent says it stopped for good) or
//!   aigis does; one that cannot be opened (forwarding refused by
//!   the host's sshd) leaves the calls to the agent.

use super::hosts::RemoteAgent;
use crate::callpool::{CallPool, CALLS_PER_PLUGIN};
use crate::hostlane::{HostLane, Job};
use aigis_agent::calls::{
    fit_reply, read_shim_frame, shim_frame, too_big_call, ShimFrame, ShimRead,
};
use bytes::Bytes;
use proto::{Backoff, CallToken};
use russh::client::Msg;
use russh::{Channel, ChannelWriteHalf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How long a reply may take to go out (the plugin reads nothing): the
/// worker that answered gives up on it, and the channel ends.
const WRITE_LIMIT: Duration = Duration::from_secs(60);
/// A channel that served this long was working: a new one is tried soon.
const WORKED: Duration = Duration::from_secs(1);

/// What answers a host's direct calls.
pub struct Answering {
    /// Its `Answerer` (`CallPool::serve`).
    pub calls: CallPool,
    /// The host's runtime and threads.
    pub lane: HostLane,
    /// Bytes of calls read and not yet answered, for all of the host.
    pub budget: Arc<Semaphore>,
}

/// Keeps `plugin`'s direct channel on `host` open (see the module doc)
/// until the task is dropped or the host's agent is gone.
pub async fn keep_open(host: Weak<RemoteAgent>, plugin: String, token: CallToken, with: Answering) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        let Some(agent) = host.upgrade() else { return };
        let opened = agent.open_direct_channel(&plugin).await;
        drop(agent);
        match opened {
            Ok(channel) => {
                let opened = Instant::now();
                let ended = serve(channel, &plugin, &token, &with).await;
                tracing::debug!(%plugin, "direct call channel ended: {ended:?}");
                if opened.elapsed() >= WORKED {
                    backoff.reset();
                }
            }
            Err(e) => tracing::debug!(%plugin, "no direct call channel: {e}"),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Serves one channel until it ends: the token first, then call after call.
async fn serve(
    channel: Channel<Msg>,
    plugin: &str,
    token: &CallToken,
    with: &Answering,
) -> Result<(), String> {
    let (mut read, write) = channel.split();
    let write = Arc::new(write);
    send(&write, token.0.as_bytes().to_vec())
        .await
        .map_err(|e| format!("cannot send the token: {e}"))?;
    let limit = proto::control_limit(plugin);
    let running = Arc::new(Semaphore::new(CALLS_PER_PLUGIN));
    // A call's length and body come in one read.
    let mut input = tokio::io::BufReader::with_capacity(64 * 1024, read.make_reader());
    loop {
        let frame = match read_shim_frame(&mut input, limit).await {
            Ok(Some(ShimRead::Frame(frame))) if frame.first() == Some(&b'C') => frame,
            Ok(Some(ShimRead::Frame(_))) => {
                return Err("the plugin sent something other than a call".into())
            }
            Ok(Some(ShimRead::TooBig {
                len,
                call: Some(id),
            })) => {
                send(&write, too_big_call(&id, len, limit))
                    .await
                    .map_err(|e| e.to_string())?;
                continue;
            }
            Ok(Some(ShimRead::TooBig { len, call: None })) => {
                return Err(format!("the plugin sent {len} bytes that are not a call"))
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        let cost = (frame.len() + 64).clamp(1, crate::link::LINK_BUDGET) as u32;
        let (Ok(bytes), Ok(slot)) = (
            with.budget.clone().acquire_many_owned(cost).await,
            running.clone().acquire_owned().await,
        ) else {
            return Ok(());
        };
        let (write, calls, name) = (write.clone(), with.calls.clone(), plugin.to_string());
        let answer: Job = Box::new(move |py, runtime| {
            let reply = fit_reply(&name, calls.serve(py, &frame));
            drop(frame);
            // Written by driving the host's runtime: the session encrypts
            // and sends it on this thread.
            py.detach(|| {
                runtime.block_on(async {
                    let sent = tokio::time::timeout(WRITE_LIMIT, send(&write, reply)).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        let _ = write.close().await;
                    }
                })
            });
            drop((bytes, slot));
        });
        if !with.lane.push(answer).await {
            return Ok(());
        }
    }
}

/// Writes `payload` as the shim reads it: behind its 4-byte length, in
/// one piece when small, without a copy when large (see `shim_frame`).
async fn send(write: &ChannelWriteHalf<Msg>, payload: Vec<u8>) -> Result<(), russh::Error> {
    let small = match shim_frame(&payload) {
        ShimFrame::Whole(frame) => Ok(Bytes::from(frame)),
        ShimFrame::Split(len, _) => Err(len),
    };
    match small {
        Ok(frame) => write.data_bytes(frame).await,
        Err(len) => {
            write.data_bytes(Bytes::copy_from_slice(&len)).await?;
            write.data_bytes(Bytes::from(payload)).await
        }
    }
}
