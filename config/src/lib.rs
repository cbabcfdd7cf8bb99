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

pub use central::{
    load_central, parse_central, AigisSettings, CentralConfig, PluginEntry, PluginSet, Source,
};
pub use error::ConfigError;
pub use host::HostSpec;
pub use plugin::{
    parse_plugin, shell_quote, CoreAccess, Launch, PluginSpec, PythonLaunch, Requirements, Restart,
    SecretSpec,
};

use serde::{Deserialize, Serialize};
use std::path::Path;

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

/// `bytes` (a config file's contents) as text. A file that is not UTF-8 is
/// an error naming the file and the line and column of the first invalid
/// byte, which an editor can jump to.
pub fn decode_utf8(path: &Path, bytes: &[u8]) -> Result<String, ConfigError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_owned()),
        Err(e) => {
            let at = e.valid_up_to();
            let valid = String::from_utf8_lossy(&bytes[..at]);
            let (line, column) = line_col(&valid, at);
            Err(ConfigError::new(
                path,
                format!(
                    "not valid UTF-8 at line {line}, column {column} (byte 0x{:02x}); save the file as UTF-8",
                    bytes[at]
                ),
            )
            .at((line, column)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_names_line_and_column() {
        let path = Path::new("/etc/aigis/aigis.toml");
        assert_eq!(
            decode_utf8(path, "a = 'é'\n".as_bytes()).as_deref(),
            Ok("a = 'é'\n")
        );
        for (bytes, pos, byte) in [
            (&b"[core]\nx = \"/a\"\ny = \"\xff\"\n"[..], (3, 6), "0xff"),
            (&b"\xfe"[..], (1, 1), "0xfe"),
            // Columns count characters: `\xc3\xa9` is one.
            (&b"# \xc3\xa9\xc3(\n"[..], (1, 4), "0xc3"),
            // A sequence cut short by the end of the file.
            (&b"a\nbc\xe2\x82"[..], (2, 3), "0xe2"),
        ] {
            let e = decode_utf8(path, bytes).expect_err("invalid");
            assert_eq!((e.line, e.column), (Some(pos.0), Some(pos.1)), "{e}");
            let expected = format!(
                "/etc/aigis/aigis.toml:{}:{}: not valid UTF-8 at line {}, column {} (byte {byte})",
                pos.0, pos.1, pos.0, pos.1
            );
            assert!(e.to_string().starts_with(&expected), "{e}");
        }
    }
}
