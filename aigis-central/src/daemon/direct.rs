//! Direct call channels, central's end (the agent's end, and why, are in
//! `aigis_agent::direct`): for each AigisProxy plugin on a LAN host, an SSH
//! `direct-streamlocal` channel to the socket its agent made for it, kept
//! open while the plugin runs. Its calls are answered by the call pool and
//! the replies written back on the same channel, by the worker that
//! answered (no task in between).
//!
//! Invariants:
//! - What a channel brings is taken as its plugin's proxy calls, checked
//!   like any: the frame limit, the call pool's share per plugin. Anything
//!   else ends the channel (the plugin's calls go through its agent again).
//! - What a host's channels handed to the call pool and was not answered
//!   yet is bounded in bytes ([`crate::link::LINK_BUDGET`] per host, shared).
//! - A channel that ends is opened again with backoff, until the plugin
//!   stops or aigis does; one that cannot be opened (forwarding refused by
//!   the host's sshd) leaves the calls to the agent.

use super::hosts::RemoteAgent;
use crate::callpool::CallPool;
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

/// Keeps `plugin`'s direct channel on `host` open (see the module doc)
/// until the task is dropped or the host's agent is gone.
pub async fn keep_open(
    host: Weak<RemoteAgent>,
    plugin: String,
    token: CallToken,
    calls: CallPool,
    budget: Arc<Semaphore>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        let Some(agent) = host.upgrade() else { return };
        let opened = agent.open_direct_channel(&plugin).await;
        drop(agent);
        match opened {
            Ok(channel) => {
                let opened = Instant::now();
                let ended = serve(channel, &plugin, &token, &calls, &budget).await;
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
    calls: &CallPool,
    budget: &Arc<Semaphore>,
) -> Result<(), String> {
    let (mut read, write) = channel.split();
    let write = Arc::new(write);
    send(&write, token.0.as_bytes().to_vec())
        .await
        .map_err(|e| format!("cannot send the token: {e}"))?;
    let limit = proto::control_limit(plugin);
    // A call's length and body come in one read.
    let mut input = tokio::io::BufReader::with_capacity(64 * 1024, read.make_reader());
    let runtime = tokio::runtime::Handle::current();
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
        let Ok(permit) = budget.clone().acquire_many_owned(cost).await else {
            return Ok(());
        };
        let (write, runtime, name) = (write.clone(), runtime.clone(), plugin.to_string());
        calls.submit(
            plugin,
            frame,
            Box::new(move |reply| {
                // From the worker straight to the SSH session.
                runtime.block_on(async {
                    let reply = fit_reply(&name, reply);
                    let sent = tokio::time::timeout(WRITE_LIMIT, send(&write, reply)).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        let _ = write.close().await;
                    }
                });
                drop(permit);
            }),
        );
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
