//! Every plugin's state as central sees it: the [`Registry`], the one place
//! state changes are made and logged. The types it hands out, `State` and
//! `PluginStatus`, are shared with the client (`crate::status`).

use crate::logs::LogSink;
pub use crate::status::{PluginStatus, State};
use config::{PluginEntry, PluginKind, Source};
use proto::ProcessState;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

struct Row {
    name: String,
    kind: PluginKind,
    host: String,
    source: String,
    state: State,
    /// How far the current step is (`43%` of a fetch); cleared on a change.
    progress: Option<String>,
    pid: Option<u32>,
    restarts_left: Option<u32>,
    /// When it entered its state: for durations, and for the clock.
    since: Instant,
    since_wall: SystemTime,
}

/// LAN hosts whose link is down, with since when: their plugins show as
/// unreachable (their last known state beside it) until it is back.
pub type DownHosts = Arc<Mutex<std::collections::HashMap<String, SystemTime>>>;

/// Every plugin's current status, in load order.
#[derive(Clone)]
pub struct Registry {
    rows: Arc<Mutex<Vec<Row>>>,
    log: LogSink,
    down: DownHosts,
}

impl Registry {
    pub fn new(log: LogSink, entries: &[PluginEntry]) -> Registry {
        let registry = Registry {
            rows: Arc::default(),
            log,
            down: DownHosts::default(),
        };
        registry.sync(entries);
        registry
    }

    /// Where a host's link says it went down, and came back.
    pub fn down_hosts(&self) -> DownHosts {
        self.down.clone()
    }

    pub fn snapshot(&self) -> Vec<PluginStatus> {
        let down = crate::lock(&self.down).clone();
        self.with_rows(|rows| {
            rows.iter()
                .map(|r| PluginStatus {
                    name: r.name.clone(),
                    kind: r.kind,
                    host: r.host.clone(),
                    source: r.source.clone(),
                    commit: None,
                    state: r.state.clone(),
                    progress: r.progress.clone(),
                    since: crate::logs::rfc3339(r.since_wall),
                    unreachable_since: down
                        .get(&r.host)
                        .filter(|_| !r.state.is_down())
                        .map(|t| crate::logs::rfc3339(*t)),
                    pid: r.pid,
                    restarts_left: r.restarts_left,
                    in_state_s: r.since.elapsed().as_secs(),
                    log_file: Default::default(),
                    skills: Vec::new(),
                })
                .collect()
        })
    }

    /// Rows for exactly `entries`, in their order: a kept plugin keeps its
    /// state, a new one is `pending`, a removed one is gone.
    pub fn sync(&self, entries: &[PluginEntry]) {
        self.with_rows(|rows| {
            let mut old = std::mem::take(rows);
            for e in entries {
                let mut row = match old.iter().position(|r| r.name == e.name) {
                    Some(i) => old.remove(i),
                    None => Row {
                        name: e.name.clone(),
                        kind: e.section,
                        host: "local".into(),
                        source: String::new(),
                        state: State::Pending,
                        progress: None,
                        pid: None,
                        restarts_left: None,
                        since: Instant::now(),
                        since_wall: SystemTime::now(),
                    },
                };
                row.source = source_text(&e.source);
                rows.push(row);
            }
        })
    }

    /// Where the plugin runs, as far as is known ("local" until its config
    /// names a host).
    pub fn host(&self, plugin: &str) -> Option<String> {
        self.with_rows(|rows| {
            rows.iter()
                .find(|r| r.name == plugin)
                .map(|r| r.host.clone())
        })
    }

    /// The plugin's state (`None` for a name not configured).
    pub fn state(&self, plugin: &str) -> Option<State> {
        self.with_rows(|rows| {
            rows.iter()
                .find(|r| r.name == plugin)
                .map(|r| r.state.clone())
        })
    }

    /// Where and as what the plugin runs, once its config is read.
    pub fn place(&self, plugin: &str, kind: PluginKind, host: &str) {
        self.with_row(plugin, |r| {
            r.kind = kind;
            r.host = host.to_string();
        });
    }

    /// Records a state change and logs it (an error for `failed`).
    pub async fn set(&self, plugin: &str, state: State) {
        self.set_with(plugin, state, None).await
    }

    async fn set_with(&self, plugin: &str, state: State, note: Option<String>) {
        let text = match state.reason().or(note.as_deref()) {
            Some(r) => format!("{}: {r}", state.headline(0)),
            None => state.headline(0),
        };
        let failed = matches!(state, State::Failed { .. });
        self.with_row(plugin, |r| {
            if state != State::Running {
                r.pid = None;
            }
            r.state = state;
            r.progress = None;
            r.since = Instant::now();
            r.since_wall = SystemTime::now();
        });
        if failed {
            self.log.error(plugin, text).await;
        } else {
            self.log.info(plugin, text).await;
        }
    }

    /// How far the current step is; every quarter is also said in the log.
    pub async fn progress(&self, plugin: &str, percent: u8) {
        let mut said = None;
        self.with_row(plugin, |r| {
            let before = r
                .progress
                .as_deref()
                .and_then(|p| p.trim_end_matches('%').parse::<u8>().ok());
            if before.is_none_or(|b| b / 25 != percent / 25) {
                said = Some(format!("{} {percent}%", r.state.word()));
            }
            r.progress = Some(format!("{percent}%"));
        });
        if let Some(text) = said {
            self.log.info(plugin, text).await;
        }
    }

    /// What the plugin's agent reports about its process.
    pub async fn process(&self, plugin: &str, state: ProcessState) {
        match state {
            ProcessState::Running { pid, restarts_left } => {
                self.with_row(plugin, |r| {
                    r.restarts_left = restarts_left;
                });
                self.set_with(plugin, State::Running, Some(format!("pid {pid}")))
                    .await;
                self.with_row(plugin, |r| r.pid = Some(pid));
            }
            ProcessState::Restarting {
                exit,
                delay_ms,
                restarts_left,
            } => {
                self.with_row(plugin, |r| r.restarts_left = Some(restarts_left));
                let reason = format!(
                    "{exit}; restarting in {:.1}s ({restarts_left} restart(s) left after this one)",
                    delay_ms as f64 / 1000.0
                );
                self.set(plugin, State::Restarting { reason }).await;
            }
            ProcessState::Stopped => self.set(plugin, State::Stopped).await,
            ProcessState::Failed { exit } => self.set(plugin, State::Failed { reason: exit }).await,
        }
    }

    /// Marks every live non-core plugin on `host` failed, with `reason`.
    pub async fn fail_host(&self, host: &str, reason: &str) {
        let live: Vec<String> = self.with_rows(|rows| {
            rows.iter()
                .filter(|r| r.host == host && !r.state.is_down() && r.kind != PluginKind::Core)
                .map(|r| r.name.clone())
                .collect()
        });
        for name in live {
            self.set(
                &name,
                State::Failed {
                    reason: reason.to_string(),
                },
            )
            .await;
        }
    }

    fn with_rows<R>(&self, f: impl FnOnce(&mut Vec<Row>) -> R) -> R {
        match self.rows.lock() {
            Ok(mut rows) => f(&mut rows),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn with_row(&self, plugin: &str, f: impl FnOnce(&mut Row)) {
        self.with_rows(|rows| {
            if let Some(r) = rows.iter_mut().find(|r| r.name == plugin) {
                f(r);
            }
        })
    }
}

/// A source as the central config gives it: a directory, or a git URL
/// with its `#ref`.
pub fn source_text(source: &Source) -> String {
    match source {
        Source::LocalDir(dir) => dir.display().to_string(),
        Source::Git {
            url,
            reference: Some(r),
        } => format!("{url}#{r}"),
        Source::Git { url, .. } => url.clone(),
    }
}
