//! What `aigis status` shows, typed: the daemon builds it, the client reads
//! it, and both share these definitions (never state strings compared on
//! two sides).

use config::PluginKind;
use serde::{Deserialize, Serialize};

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
    Restarting { reason: String },
    Stopped,
    Failed { reason: String },
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
            State::Stopped => "stopped",
            State::Failed { .. } => "failed",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            State::Restarting { reason } | State::Failed { reason } => Some(reason),
            _ => None,
        }
    }

    /// Nothing runs and nothing is due: `start` may load it.
    pub fn is_down(&self) -> bool {
        matches!(self, State::Pending | State::Stopped | State::Failed { .. })
    }
}

/// One row of `aigis status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginStatus {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: PluginKind,
    /// Where it runs ("local" or the `HOST`), known once its config is read.
    pub host: String,
    #[serde(flatten)]
    pub state: State,
    pub pid: Option<u32>,
    pub restarts_left: Option<u32>,
    /// Seconds in the current state.
    pub in_state_s: u64,
}
