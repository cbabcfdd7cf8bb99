//! Where plugins' calls meet the link to central, and central's answers
//! meet the plugins.
//!
//! A plugin's relay task sends each call through here straight onto the
//! current link's writer, and the link's reader writes each answer straight
//! into the plugin's socket ([`Replies`]): no task in between, so a call
//! costs the agent one wake-up each way. Events (output, states) take the
//! other road, through the `outbox`, which numbers and keeps them.
//!
//! Invariants:
//! - A call goes out on the link there is, or fails at once in its plugin.
//! - A call still unanswered when its link goes fails in its plugin, once:
//!   whoever takes it out of `in_flight` answers it.
//! - Calls are never kept for a later link, so never run late by a replay.

use crate::lock;
use crate::outbox::Outgoing;
use crate::quiet::Replies;
use proto::{Answer, Call, Event, FromAgent};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::{self, error::TrySendError};

const NO_LINK: &str = "central is unreachable right now; the call did not run";
/// Why a relayed call fails whose link dropped while it was in flight
/// (`proxy.DROPPED_IN_FLIGHT` says the same of a direct one).
pub const DROPPED: &str =
    "the link to central dropped while this call was in flight; it may or may not have run";

/// See the module documentation.
#[derive(Default)]
pub struct Desk {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The current link's writer.
    link: Option<mpsc::Sender<Outgoing>>,
    /// Calls sent on the current link and not answered yet.
    in_flight: Vec<Pending>,
    /// Each running plugin's control socket.
    plugins: HashMap<String, Arc<Replies>>,
}

/// A call in flight: enough to fail it in its plugin.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Pending {
    plugin: String,
    id: u64,
    reload: bool,
}

impl Pending {
    fn of_call(plugin: &str, call: &Call) -> Pending {
        let (id, reload) = match call {
            Call::Proxy(frame) => (u64::from_be_bytes(crate::calls::call_id(frame)), false),
            Call::Reload { id, .. } => (*id, true),
        };
        Pending {
            plugin: plugin.to_string(),
            id,
            reload,
        }
    }

    fn of_answer(plugin: &str, answer: &Answer) -> Pending {
        let (id, reload) = match answer {
            Answer::Proxy(frame) => (u64::from_be_bytes(crate::calls::call_id(frame)), false),
            Answer::Reload { id, .. } => (*id, true),
        };
        Pending {
            plugin: plugin.to_string(),
            id,
            reload,
        }
    }

    /// The answer that fails this call in its plugin, saying `why`.
    fn failure(&self, why: &str) -> Answer {
        if self.reload {
            Answer::Reload {
                id: self.id,
                result: Err(why.to_string()),
            }
        } else {
            Answer::Proxy(crate::calls::error_reply(
                &self.id.to_be_bytes(),
                "ConnectionError",
                why,
            ))
        }
    }
}

impl Desk {
    /// `plugin`'s answers go to `replies` from now on.
    pub fn open(&self, plugin: &str, replies: Arc<Replies>) {
        lock(&self.inner)
            .plugins
            .insert(plugin.to_string(), replies);
    }

    /// `plugin`'s control socket `replies` is closed (unless a newer run of
    /// the plugin has replaced it already).
    pub fn close(&self, plugin: &str, replies: &Arc<Replies>) {
        let mut inner = lock(&self.inner);
        if inner
            .plugins
            .get(plugin)
            .is_some_and(|r| Arc::ptr_eq(r, replies))
        {
            inner.plugins.remove(plugin);
        }
    }

    /// Calls go out on `link` from now on. Calls still in flight on a link
    /// before it (one replaced without [`Desk::detach`]) fail: their answers
    /// would come on a link that is gone.
    pub fn attach(&self, link: mpsc::Sender<Outgoing>) {
        self.switch(Some(link));
    }

    /// The link went: every call it carried and that was not answered fails.
    pub fn detach(&self) {
        self.switch(None);
    }

    fn switch(&self, link: Option<mpsc::Sender<Outgoing>>) {
        let lost = {
            let mut inner = lock(&self.inner);
            inner.link = link;
            std::mem::take(&mut inner.in_flight)
        };
        for pending in lost {
            self.fail(&pending, DROPPED);
        }
    }

    /// Sends `plugin`'s call to central on the current link, or fails it.
    pub async fn call(&self, plugin: &str, call: Call) {
        let pending = Pending::of_call(plugin, &call);
        let link = {
            let mut inner = lock(&self.inner);
            let link = inner.link.clone();
            if link.is_some() {
                inner.in_flight.push(pending.clone());
            }
            link
        };
        let Some(link) = link else {
            return self.fail(&pending, NO_LINK);
        };
        let out = Arc::new(FromAgent::Event(Event::Call {
            plugin: plugin.to_string(),
            call,
        }));
        let sent = match link.try_send(out) {
            Ok(()) => true,
            Err(TrySendError::Full(out)) => link.send(out).await.is_ok(),
            Err(TrySendError::Closed(_)) => false,
        };
        if !sent && self.forget(&pending) {
            self.fail(&pending, NO_LINK);
        }
    }

    /// Central's answer to one of `plugin`'s calls: to the plugin.
    pub fn answer(&self, plugin: &str, answer: Answer) {
        let pending = Pending::of_answer(plugin, &answer);
        let replies = {
            let mut inner = lock(&self.inner);
            if let Some(at) = inner.in_flight.iter().position(|p| *p == pending) {
                inner.in_flight.swap_remove(at);
            }
            inner.plugins.get(plugin).cloned()
        };
        if let Some(replies) = replies {
            replies.send(crate::calls::to_shim(answer));
        }
    }

    /// Takes `pending` out of the calls in flight; false when it was not
    /// there (answered, or already failed by [`Desk::detach`]).
    fn forget(&self, pending: &Pending) -> bool {
        let mut inner = lock(&self.inner);
        match inner.in_flight.iter().position(|p| p == pending) {
            Some(at) => {
                inner.in_flight.swap_remove(at);
                true
            }
            None => false,
        }
    }

    fn fail(&self, pending: &Pending, why: &str) {
        let replies = lock(&self.inner).plugins.get(&pending.plugin).cloned();
        if let Some(replies) = replies {
            replies.send(crate::calls::to_shim(pending.failure(why)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    /// A plugin `p` on the desk, and the shim's end of its socket.
    fn plugin(desk: &Desk) -> (UnixStream, tokio::task::JoinHandle<()>) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (_input, replies) = crate::quiet::split(ours).unwrap();
        let replies = Arc::new(replies);
        desk.open("p", replies.clone());
        let flusher = tokio::spawn(async move { replies.flush().await });
        theirs
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        (theirs, flusher)
    }

    fn proxy_call(id: u64) -> Call {
        let mut frame = b"C".to_vec();
        frame.extend_from_slice(&id.to_be_bytes());
        frame.extend_from_slice(b"args");
        Call::Proxy(frame)
    }

    fn read_frame(from: &mut UnixStream) -> Vec<u8> {
        let mut len = [0u8; 4];
        from.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        from.read_exact(&mut body).unwrap();
        body
    }

    /// A proxy reply's call id, whether it is an error, and the rest.
    fn reply_of(body: &[u8]) -> (u64, bool, String) {
        let id = u64::from_be_bytes(body[1..9].try_into().unwrap());
        (
            id,
            body[9] == 1,
            String::from_utf8_lossy(&body[10..]).into(),
        )
    }

    /// The next frame the shim reads, as a proxy reply.
    fn read_reply(from: &mut UnixStream) -> (u64, bool, String) {
        reply_of(&read_frame(from))
    }

    fn nothing_more(from: &mut UnixStream) {
        from.set_nonblocking(true).unwrap();
        let more = from.read(&mut [0u8; 1]);
        assert!(
            matches!(&more, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "{more:?}"
        );
        from.set_nonblocking(false).unwrap();
    }

    #[tokio::test]
    async fn a_call_without_a_link_fails_at_once_in_its_plugin() {
        let desk = Desk::default();
        let (mut shim, _flusher) = plugin(&desk);
        desk.call("p", proxy_call(3)).await;
        let (id, error, text) = read_reply(&mut shim);
        assert_eq!((id, error), (3, true));
        assert!(text.contains("the call did not run"), "{text}");
    }

    #[tokio::test]
    async fn calls_in_flight_fail_once_when_their_link_goes_and_answered_ones_do_not() {
        let desk = Desk::default();
        let (mut shim, _flusher) = plugin(&desk);
        let (link, mut central) = mpsc::channel(16);
        desk.attach(link);
        for id in [1, 2, 3] {
            desk.call("p", proxy_call(id)).await;
        }
        desk.call(
            "p",
            Call::Reload {
                id: 4,
                target: "q".into(),
            },
        )
        .await;
        for _ in 0..4 {
            assert!(matches!(
                &*central.recv().await.unwrap(),
                FromAgent::Event(Event::Call { .. })
            ));
        }
        // Central answers call 2; the link goes with 1, 3 and the reload open.
        let mut answer = b"R".to_vec();
        answer.extend_from_slice(&2u64.to_be_bytes());
        answer.extend_from_slice(b"\0ok");
        desk.answer("p", Answer::Proxy(answer));
        assert_eq!(read_reply(&mut shim), (2, false, "ok".into()));
        desk.detach();
        let mut failed = Vec::new();
        let mut reloads = Vec::new();
        for _ in 0..3 {
            let body = read_frame(&mut shim);
            if body.starts_with(b"{") {
                reloads.push(serde_json::from_slice::<serde_json::Value>(&body).unwrap());
            } else {
                failed.push(reply_of(&body));
            }
        }
        failed.sort();
        assert_eq!(
            failed.iter().map(|f| (f.0, f.1)).collect::<Vec<_>>(),
            [(1, true), (3, true)]
        );
        assert!(failed[0].2.contains("may or may not have run"));
        // The reload's failure is the shim's JSON reply.
        assert_eq!(reloads.len(), 1);
        assert_eq!(
            (reloads[0]["id"].as_u64(), reloads[0]["ok"].as_bool()),
            (Some(4), Some(false))
        );
        // A second detach fails nothing twice; a late answer still reaches
        // the plugin (it knows which of its calls are open).
        desk.detach();
        nothing_more(&mut shim);
        drop(central);
        // With the link's writer gone, a call fails at once.
        let (link, central) = mpsc::channel(16);
        desk.attach(link);
        drop(central);
        desk.call("p", proxy_call(5)).await;
        let (id, error, text) = read_reply(&mut shim);
        assert_eq!((id, error), (5, true));
        assert!(text.contains("did not run"), "{text}");
        desk.detach();
        nothing_more(&mut shim);
    }

    /// A link replaced without a detach (the daemon takes a new attach while
    /// the old link's end went unseen): its calls in flight fail too.
    #[tokio::test]
    async fn a_new_link_fails_the_calls_of_the_one_it_replaces() {
        let desk = Desk::default();
        let (mut shim, _flusher) = plugin(&desk);
        let (old, _old_central) = mpsc::channel(16);
        desk.attach(old);
        desk.call("p", proxy_call(1)).await;
        let (new, mut central) = mpsc::channel(16);
        desk.attach(new);
        let (id, error, text) = read_reply(&mut shim);
        assert_eq!((id, error), (1, true));
        assert!(text.contains("may or may not have run"), "{text}");
        // The new link carries the next call, which is not failed.
        desk.call("p", proxy_call(2)).await;
        assert!(matches!(
            &*central.recv().await.unwrap(),
            FromAgent::Event(Event::Call { .. })
        ));
        nothing_more(&mut shim);
    }

    #[tokio::test]
    async fn a_restarted_plugin_keeps_its_new_socket_when_the_old_relay_closes() {
        let desk = Desk::default();
        let (ours, _old_shim) = UnixStream::pair().unwrap();
        let old = Arc::new(crate::quiet::split(ours).unwrap().1);
        desk.open("p", old.clone());
        let (mut shim, _flusher) = plugin(&desk);
        desk.close("p", &old);
        desk.call("p", proxy_call(9)).await;
        assert_eq!(read_reply(&mut shim).0, 9);
    }
}
