//! Parsing and validation of AIGIS's two config formats: the central TOML file
//! that lists plugins, and each plugin's `AIGIS/AIGIS.config`.
//!
//! Invariants:
//! - Nothing here executes plugin code: `AIGIS.config` is Python *syntax*,
//!   read by a small literal parser ([`pylit`]), never run.
//! - No I/O beyond reading the file it is asked to read; no network.
//! - Every error is a [`ConfigError`] naming the plugin, file, line, column
//!   and option, and what was expected.

// A config error is built once per failed load and carries file, line,
// option and message by value; boxing it would buy nothing.
#![allow(clippy::result_large_err)]

mod central;
mod error;
mod host;
mod plugin;
pub mod pylit;

pub use central::{load_central, parse_central, AigisSettings, CentralConfig, PluginEntry, Source};
pub use error::ConfigError;
pub use host::HostSpec;
pub use plugin::{
    parse_plugin, shell_quote, CoreAccess, Launch, PluginSpec, PythonLaunch, Requirements,
    SecretSpec,
};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    Core,
    InternalLocal,
    InternalRemote,
    External,
}

impl PluginKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            PluginKind::Core => "core",
            PluginKind::InternalLocal => "internal-local",
            PluginKind::InternalRemote => "internal-remote",
            PluginKind::External => "external",
        }
    }
}

/// 1-based line and column of byte offset `at` in `text`.
pub(crate) fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = &text[..text.floor_char_boundary_compat(at)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, at: usize) -> usize;
}

impl FloorCharBoundary for str {
    fn floor_char_boundary_compat(&self, mut at: usize) -> usize {
        while at > 0 && !self.is_char_boundary(at) {
            at -= 1;
        }
        at
    }
}
