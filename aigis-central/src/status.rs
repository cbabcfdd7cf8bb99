//! What `aigis status` shows, typed: the daemon builds it, the client reads
//! it, and both share these definitions (never state strings compared on
//! two sides).

use config::PluginKind;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A plugin's life: `pending → fetching → installing → starting → running`,
/// then `restarting`, `stopped` (on request) or `failed` (with the reason).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum State {
    Pending,
    Fetching,
    Installing,
    Starting,
    Running,
    Restarting {
        reason: String,
    },
    /// A load step that can heal by itself failed (a fetch, a clone, the
    /// requirements step, an unreachable host): tried again
    /// `retry_in_s` seconds after it entered this state.
    Retrying {
        reason: String,
        retry_in_s: u64,
    },
    Stopped,
    Failed {
        reason: String,
    },
}

impl State {
    pub fn word(&self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Fetching => "fetching",
            State::Installing => "installing",
            State::Starting => "starting",
            State::Running => "running",
            State::Restarting { .. } => "restarting",
            State::Retrying { .. } => "retrying",
            State::Stopped => "stopped",
            State::Failed { .. } => "failed",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            State::Restarting { reason }
            | State::Failed { reason }
            | State::Retrying { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// Nothing runs: `start` may load it (now, for one waiting to retry).
    pub fn is_down(&self) -> bool {
        matches!(
            self,
            State::Pending | State::Stopped | State::Failed { .. } | State::Retrying { .. }
        )
    }

    /// The state as a person reads it, `in_state_s` seconds into it:
    /// `retrying in 25s`, else its word.
    pub fn headline(&self, in_state_s: u64) -> String {
        match self {
            State::Retrying { retry_in_s, .. } => {
                format!("retrying in {}s", retry_in_s.saturating_sub(in_state_s))
            }
            other => other.word().to_string(),
        }
    }
}

/// One row of `aigis status`; with a NAME, also what takes a look at the
/// plugin's files or the core (`commit`, `skills`).
///
/// Fields added since the first version are `#[serde(default)]`: a client
/// reads the answer of an older daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginStatus {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: PluginKind,
    /// Where it runs ("local" or the `HOST`), known once its config is read.
    pub host: String,
    /// Where its files come from, as the central config says (a directory,
    /// or a git URL with its `#ref`).
    #[serde(default)]
    pub source: String,
    /// The commit its files are at (git sources; `aigis status NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(flatten)]
    pub state: State,
    /// How far the current step is, e.g. `43%` of a git fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// When it entered its state, RFC 3339 (UTC, to the millisecond).
    #[serde(default)]
    pub since: String,
    /// Since when its host's link is down (RFC 3339); `state` is then the
    /// last state central knew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_since: Option<String>,
    pub pid: Option<u32>,
    pub restarts_left: Option<u32>,
    /// Seconds in the current state.
    pub in_state_s: u64,
    /// Its log file on this machine.
    #[serde(default)]
    pub log_file: PathBuf,
    /// What it exposes in the core, as `aigis.<name>` (`aigis status NAME`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_daemons_row_still_reads() {
        let row: PluginStatus = serde_json::from_str(
            r#"{"name":"a","type":"external","host":"local","state":"running",
                "pid":7,"restarts_left":null,"in_state_s":3}"#,
        )
        .unwrap();
        assert_eq!((row.source.as_str(), row.skills.len()), ("", 0));
    }
}
