//! What agents report, checked and routed. A link hands every event here
//! with its [`Origin`]; nothing from a LAN host is trusted:
//!
//! - an event is accepted only for a plugin central placed on that link
//!   (a host cannot write another host's logs or states, and no name it
//!   made up ever becomes a file name);
//! - AigisProxy calls go to the core's call pool (`callpool.rs`), which
//!   gives each plugin a fair share, so one plugin's flood of slow calls
//!   never starves another's;
//! - a reload asked by a plugin is allowed for itself, core plugins, and
//!   what `[aigis] may_reload` grants.

use super::{lock, Daemon};
use crate::link::{Delivery, Origin};
use aigis_agent::calls::{call_id, error_reply, fit_reply};
use proto::{Answer, Call, Event, ProcessState, ToAgent};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Routes deliveries until every link has ended (`links_done`).
pub(super) async fn run(
    daemon: Arc<Daemon>,
    mut inbox: mpsc::Receiver<Delivery>,
    links_done: CancellationToken,
) {
    let mut router = Router {
        daemon,
        refused: HashMap::new(),
    };
    loop {
        tokio::select! {
            biased;
            delivery = inbox.recv() => match delivery {
                Some(d) => router.route(d).await,
                None => break,
            },
            _ = links_done.cancelled() => {
                // What the links handed over before they ended still counts.
                while let Ok(d) = inbox.try_recv() {
                    router.route(d).await;
                }
                break;
            }
        }
    }
}

struct Router {
    daemon: Arc<Daemon>,
    /// Events refused per host, reported once per host and then counted.
    refused: HashMap<String, u64>,
}

impl Router {
    async fn route(&mut self, delivery: Delivery) {
        let Delivery {
            origin,
            event,
            budget,
            received,
        } = delivery;
        let plugin = match &event {
            Event::Output { plugin, .. }
            | Event::State { plugin, .. }
            | Event::Call { plugin, .. } => plugin.clone(),
        };
        if !self.placed_there(&plugin, &origin.host) {
            self.refuse(&origin.host, &plugin).await;
            return;
        }
        let daemon = &self.daemon;
        match event {
            // One record per batch; the log writer splits it into lines.
            Event::Output { stream, lines, .. } => {
                daemon
                    .log
                    .output(&plugin, stream.as_str(), lines, Some(budget))
                    .await
            }
            Event::State { state, .. } => {
                if matches!(state, ProcessState::Failed { .. } | ProcessState::Stopped) {
                    // Not tried again every few seconds for nothing (each
                    // try an error in the host's sshd log).
                    self.let_go_of_direct_calls(&plugin, received);
                }
                daemon.registry.process(&plugin, state).await
            }
            Event::Call {
                call: Call::Proxy(frame),
                ..
            } => match daemon.core.as_ref() {
                // Answered on a core worker thread; the link's bytes come
                // back once the answer is on its way.
                Ok(core) => core.calls.submit(
                    &plugin.clone(),
                    frame,
                    Box::new(move |reply| {
                        let reply = fit_reply(&plugin, reply);
                        let answer = ToAgent::Answer {
                            plugin,
                            answer: Answer::Proxy(reply),
                        };
                        let _ = origin.answers.blocking_send(answer);
                        drop(budget);
                    }),
                ),
                Err(_) => {
                    let reply = error_reply(
                        &call_id(&frame),
                        "RuntimeError",
                        "the AIGIS core is not running in central",
                    );
                    answer(&origin, plugin, Answer::Proxy(reply)).await;
                }
            },
            Event::Call {
                call: Call::Reload { id, target },
                ..
            } => self.reload_for(origin, plugin, id, target).await,
        }
    }

    /// `plugin` stopped for good on its host: its direct call channel, if
    /// it has one from before `at`, is closed.
    fn let_go_of_direct_calls(&self, plugin: &str, at: Instant) {
        if let Some(remote) = self.daemon.placement(plugin).and_then(|p| p.remote) {
            remote.close_direct_opened_before(plugin, at);
        }
    }

    /// The plugin is one central placed on this link.
    fn placed_there(&self, plugin: &str, host: &str) -> bool {
        lock(&self.daemon.placed)
            .get(plugin)
            .is_some_and(|p| p.host == host)
    }

    async fn refuse(&mut self, host: &str, plugin: &str) {
        let n = self.refused.entry(host.to_string()).or_default();
        *n += 1;
        if *n == 1 || n.is_power_of_two() {
            // The name is the host's claim, not ours: shown escaped, never
            // used for a file.
            self.daemon
                .log
                .warn(
                    "aigis",
                    format!(
                        "{host}: refused an event for {plugin:?}, which does not run there ({n} refused so far)"
                    ),
                )
                .await;
        }
    }

    /// A reload a plugin asked for, if it may. Another plugin's reload is
    /// answered once it is done, so the caller sees the new code right
    /// after `AIGISReload` returns; its own is answered first (it is about
    /// to be stopped).
    async fn reload_for(&self, origin: Origin, caller: String, id: u64, target: String) {
        let daemon = &self.daemon;
        let refusal = if daemon.entry(&target).is_none() {
            Some(format!("no plugin named `{target}`"))
        } else if !daemon.may_reload(&caller, &target) {
            Some(format!(
                "`{caller}` may reload itself and core plugins; reloading `{target}` needs \
                 [aigis] may_reload = {{ \"{caller}\" = [\"{target}\"] }} in the central config"
            ))
        } else {
            None
        };
        if let Some(e) = refusal {
            return answer(&origin, caller, Answer::Reload { id, result: Err(e) }).await;
        }
        let own = caller == target;
        if own {
            let result = Ok(());
            answer(&origin, caller.clone(), Answer::Reload { id, result }).await;
        }
        let daemon = daemon.clone();
        self.daemon.tasks.spawn_cancellable(async move {
            let result = daemon.reload(&target).await.map(|_| ());
            if let Err(e) = &result {
                daemon.log.warn(&target, format!("reload: {e}")).await;
            }
            if !own {
                answer(&origin, caller, Answer::Reload { id, result }).await;
            }
        });
    }
}

async fn answer(origin: &Origin, plugin: String, answer: Answer) {
    let _ = origin
        .answers
        .send(ToAgent::Answer { plugin, answer })
        .await;
}
