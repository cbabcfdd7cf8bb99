//! The lane: internal plugins on the central host call the core over
//! their own control socket, answered by central directly.
//!
//! The local agent hands central its end of each internal plugin's control
//! socket (see `aigis_agent::lane`). Central serves it with a few threads
//! of that plugin's own that take turns reading (`turns.rs`): the thread
//! that reads a call answers it itself. A call costs the plugin's wake-up
//! of central and central's wake-up of the plugin, as a pipe to `cat`
//! does, instead of hops through the agent, the link and a worker pool.
//!
//! Invariants:
//! - At most [`CALLS_PER_PLUGIN`] calls of one plugin run at once (its
//!   threads); past that, its socket is not read until one is answered.
//! - A frame over the plugin's control limit is skipped in bounded chunks,
//!   never held whole; a call among them is answered with an error.
//! - Reload requests go to the dispatcher like any agent's, from host
//!   `local`: the same placement and permission checks.
//! - The lane's threads end when the plugin's socket closes (it stopped).
//! - A socket is served only for an internal plugin central placed on this
//!   host, and at most [`LANES_PER_PLUGIN`] at once for one plugin (a run
//!   and its restart): names the agent sends cost no thread or descriptor
//!   before they are checked.

use crate::callpool::{CallPool, CALLS_PER_PLUGIN};
use crate::link::{Delivery, Origin};
use crate::turns::{Taker, Turns};
use aigis_agent::calls::{ShimFrame, ShimRead};
use proto::{Call, Event, ToAgent};
use pyo3::prelude::*;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, Weak};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, Semaphore};

/// What a reload request in the dispatcher costs against the lane's budget.
const RELOAD_COST: u32 = 128;

/// Sockets of one plugin served at once: its run, and a restart's while
/// the old one's threads end.
pub const LANES_PER_PLUGIN: usize = 2;

/// What every plugin's lane needs from the daemon.
#[derive(Clone)]
pub struct Wiring {
    pub calls: CallPool,
    pub inbox: mpsc::Sender<Delivery>,
    pub runtime: Handle,
    /// Whether central placed this internal plugin on this host.
    pub placed_here: Arc<dyn Fn(&str) -> bool + Send + Sync>,
}

/// Lanes served now, by plugin.
type Live = Arc<Mutex<std::collections::HashMap<String, usize>>>;

/// One live lane of a plugin, counted while it is served.
struct Counted {
    plugin: String,
    live: Live,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut live = crate::lock(&self.live);
        if let Some(n) = live.get_mut(&self.plugin) {
            *n -= 1;
            if *n == 0 {
                live.remove(&self.plugin);
            }
        }
    }
}

/// Takes plugin sockets from the local agent's lane until it closes.
pub fn serve(lane: OwnedFd, wiring: Wiring) -> std::io::Result<()> {
    let live = Live::default();
    let mut refused = 0u64;
    std::thread::Builder::new()
        .name("aigis-lane".into())
        .spawn(move || loop {
            match aigis_agent::fdpass::recv(&lane, 1024) {
                Ok((name, fds)) => {
                    let plugin = String::from_utf8_lossy(&name).into_owned();
                    for fd in fds {
                        match admit(&plugin, &wiring, &live) {
                            Some(counted) => PluginLane::start(
                                plugin.clone(),
                                UnixStream::from(fd),
                                &wiring,
                                counted,
                            ),
                            None => {
                                refused += 1;
                                if refused.is_power_of_two() {
                                    tracing::warn!(
                                        "the local agent's lane: refused a socket for {:?} \
                                         (not an internal plugin placed here, or it has {} \
                                         already); {refused} refused so far",
                                        plugin.escape_debug().to_string(),
                                        LANES_PER_PLUGIN
                                    );
                                }
                            }
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        })
        .map(|_| ())
}

/// A place among `plugin`'s lanes, if it may have one more.
fn admit(plugin: &str, wiring: &Wiring, live: &Live) -> Option<Counted> {
    if !(wiring.placed_here)(plugin) {
        return None;
    }
    let mut counts = crate::lock(live);
    let n = counts.entry(plugin.to_string()).or_default();
    if *n >= LANES_PER_PLUGIN {
        return None;
    }
    *n += 1;
    Some(Counted {
        plugin: plugin.to_string(),
        live: live.clone(),
    })
}

/// One plugin's control socket, served by its threads (`turns.rs`).
struct PluginLane {
    plugin: String,
    /// Counts this lane among its plugin's while it is served.
    _counted: Counted,
    sock: UnixStream,
    /// Whole frames only: held for one reply's write.
    write: Mutex<()>,
    wiring: Wiring,
    origin: Origin,
    budget: Arc<Semaphore>,
}

impl PluginLane {
    fn start(plugin: String, sock: UnixStream, wiring: &Wiring, counted: Counted) {
        let (answers, mut answered) = mpsc::channel::<ToAgent>(16);
        let lane = PluginLane {
            _counted: counted,
            origin: Origin {
                host: "local".into(),
                answers,
            },
            plugin,
            sock,
            write: Mutex::default(),
            wiring: wiring.clone(),
            budget: Arc::new(Semaphore::new(CALLS_PER_PLUGIN * RELOAD_COST as usize)),
        };
        let turns = Turns::start(lane, CALLS_PER_PLUGIN);
        // Reload answers come back from the dispatcher; weak, so the lane
        // ends with its threads.
        let weak: Weak<Turns<PluginLane>> = Arc::downgrade(&turns);
        wiring.runtime.spawn(async move {
            while let Some(msg) = answered.recv().await {
                let (ToAgent::Answer { answer, .. }, Some(turns)) = (msg, weak.upgrade()) else {
                    continue;
                };
                let frame = aigis_agent::calls::to_shim(answer);
                tokio::task::spawn_blocking(move || turns.taker().send(&frame));
            }
        });
    }

    /// The next frame, read as `aigis_agent::calls::read_shim_frame` reads
    /// one (this socket is blocking).
    fn read_frame(&self) -> std::io::Result<ShimRead> {
        wait_readable(&self.sock)?;
        let mut sock = &self.sock;
        let mut len = [0u8; 4];
        sock.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        let limit = proto::control_limit(&self.plugin);
        if len <= limit {
            let mut payload = vec![0u8; len];
            sock.read_exact(&mut payload)?;
            return Ok(ShimRead::Frame(payload));
        }
        let mut head = vec![0u8; len.min(9)];
        sock.read_exact(&mut head)?;
        let rest = (len - head.len()) as u64;
        let skipped = std::io::copy(&mut sock.take(rest), &mut std::io::sink())?;
        if skipped != rest {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(ShimRead::too_big(len, &head))
    }

    /// Writes one frame to the plugin; a plugin that is gone is not an error.
    fn send(&self, payload: &[u8]) {
        let _whole = crate::lock(&self.write);
        let mut sock = &self.sock;
        let _ = match aigis_agent::calls::shim_frame(payload) {
            ShimFrame::Whole(frame) => sock.write_all(&frame),
            ShimFrame::Split(len, payload) => {
                sock.write_all(&len).and_then(|()| sock.write_all(payload))
            }
        };
    }

    /// A reload request, to the dispatcher as from the local agent.
    fn reload(&self, call: Call) {
        let rt = &self.wiring.runtime;
        let Ok(budget) = rt.block_on(self.budget.clone().acquire_many_owned(RELOAD_COST)) else {
            return;
        };
        let delivery = Delivery {
            origin: self.origin.clone(),
            event: Event::Call {
                plugin: self.plugin.clone(),
                call,
            },
            budget,
            received: std::time::Instant::now(),
        };
        let _ = self.wiring.inbox.blocking_send(delivery);
    }
}

/// Blocks until `sock` has something to read (or was closed). A thread
/// blocked in `read` itself would also wake whenever the plugin reads a
/// reply (the kernel wakes a socket's waiters when its send buffer frees);
/// `poll` for input only wakes for input.
fn wait_readable(sock: &UnixStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, for a descriptor `sock` keeps open.
        if unsafe { libc::poll(&mut fd, 1, -1) } >= 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl Taker for PluginLane {
    type Work = ShimRead;

    /// The next frame; `None` once the socket closed (the plugin stopped).
    fn take(&self) -> Option<ShimRead> {
        self.read_frame().ok()
    }

    /// Answers what was read.
    fn work(&self, py: Python<'_>, frame: ShimRead) {
        let limit = proto::control_limit(&self.plugin);
        match frame {
            ShimRead::Frame(payload) => match aigis_agent::calls::from_shim(payload) {
                Ok(Call::Proxy(call)) => {
                    let reply = self.wiring.calls.serve(py, &call);
                    py.detach(|| self.send(&reply));
                }
                Ok(call @ Call::Reload { .. }) => py.detach(|| self.reload(call)),
                Err(e) => tracing::warn!(plugin = %self.plugin, "{e}"),
            },
            ShimRead::TooBig {
                len,
                call: Some(id),
            } => {
                let reply = aigis_agent::calls::too_big_call(&id, len, limit);
                py.detach(|| self.send(&reply));
            }
            ShimRead::TooBig { len, call: None } => tracing::warn!(
                plugin = %self.plugin,
                "skipped a control message of {len} bytes: at most {limit} may cross to central"
            ),
        }
    }

    fn names(&self) -> (&'static str, String) {
        (
            "aigis-lane-call",
            format!("the calls of plugin {}", self.plugin),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(payload);
        f
    }

    fn read_reply(sock: &mut UnixStream) -> Vec<u8> {
        let mut len = [0u8; 4];
        sock.read_exact(&mut len).unwrap();
        let mut reply = vec![0u8; u32::from_be_bytes(len) as usize];
        sock.read_exact(&mut reply).unwrap();
        reply
    }

    /// A call is `C` + id + the milliseconds to take (one byte); the reply
    /// is `R` + id + the most calls that were running at once.
    #[test]
    fn a_plugins_calls_run_eight_at_once_and_oversized_frames_fail_alone() {
        crate::core::start_interpreter().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (r, m) = (running.clone(), most.clone());
        let calls = CallPool::new(Box::new(move |py, call| {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            let ms = u64::from(call[9]);
            py.detach(|| std::thread::sleep(Duration::from_millis(ms)));
            r.fetch_sub(1, Ordering::SeqCst);
            let mut reply = b"R".to_vec();
            reply.extend_from_slice(&call[1..9]);
            reply
        }));
        let (inbox, _deliveries) = mpsc::channel(4);
        let wiring = Wiring {
            calls,
            inbox,
            runtime: runtime.handle().clone(),
            placed_here: Arc::new(|p: &str| p == "p"),
        };
        let (ours, mut plugin) = UnixStream::pair().unwrap();
        let counted = admit("p", &wiring, &Live::default()).unwrap();
        PluginLane::start("p".into(), ours, &wiring, counted);

        let started = Instant::now();
        for id in 0..16u64 {
            let mut call = b"C".to_vec();
            call.extend_from_slice(&id.to_be_bytes());
            call.push(200);
            plugin.write_all(&frame(&call)).unwrap();
        }
        let mut ids: Vec<u64> = (0..16)
            .map(|_| u64::from_be_bytes(read_reply(&mut plugin)[1..9].try_into().unwrap()))
            .collect();
        ids.sort();
        assert_eq!(ids, (0..16).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), CALLS_PER_PLUGIN);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(2),
            "{took:?}"
        );

        // Over the limit: skipped unread and answered; the next call works.
        let limit = proto::control_limit("p");
        let mut big = b"C".to_vec();
        big.extend_from_slice(&99u64.to_be_bytes());
        big.resize(limit + 1, 0);
        plugin.write_all(&frame(&big)).unwrap();
        let reply = read_reply(&mut plugin);
        assert_eq!(&reply[..10], b"R\0\0\0\0\0\0\0\x63\x01");
        assert!(String::from_utf8_lossy(&reply).contains("at most"));
        let mut call = b"C".to_vec();
        call.extend_from_slice(&7u64.to_be_bytes());
        call.push(0);
        plugin.write_all(&frame(&call)).unwrap();
        assert_eq!(&read_reply(&mut plugin)[1..9], &7u64.to_be_bytes());
        drop(plugin);
    }

    /// A name the agent sends costs nothing unless central placed that
    /// internal plugin here, and one plugin has at most two lanes at once.
    #[test]
    fn only_plugins_placed_here_get_a_lane_and_only_two_at_once() {
        crate::core::start_interpreter().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (inbox, _deliveries) = mpsc::channel(4);
        let wiring = Wiring {
            calls: CallPool::new(Box::new(|_, call| call.to_vec())),
            inbox,
            runtime: runtime.handle().clone(),
            placed_here: Arc::new(|p: &str| p == "p"),
        };
        let live = Live::default();
        for ghost in (0..1232).map(|i| format!("made-up-{i}")) {
            assert!(admit(&ghost, &wiring, &live).is_none());
        }
        assert!(crate::lock(&live).is_empty());
        let first = admit("p", &wiring, &live).unwrap();
        let _second = admit("p", &wiring, &live).unwrap();
        assert!(admit("p", &wiring, &live).is_none(), "a third at once");
        drop(first);
        assert!(
            admit("p", &wiring, &live).is_some(),
            "room again once one ends"
        );
    }
}
