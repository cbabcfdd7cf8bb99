//! The control socket's protocol and its client end: how `aigis
//! status|logs|stop|start|reload|skills|shell` talk to a running daemon
//! (the server is `daemon/control.rs`).
//!
//! `<home>/run/aigis.sock`, a Unix socket with mode 0600 (only the daemon's
//! user may steer it; no TCP port is ever opened). One request per
//! connection: a JSON line in, a JSON line out. `shell` alone goes on after
//! its answer: the connection then carries AigisProxy frames, as an
//! internal plugin's fd 3 does (see `daemon/shell.rs`). Connections are bounded in
//! number, time and size (see [`serve`]), and nothing a client does ends
//! the accept loop. `<home>/run/aigis.lock`,
//! held with `flock` for the daemon's lifetime, makes a second `aigis run`
//! on the same home fail instead of fighting over plugins.

use crate::home::Home;
pub use crate::status::PluginStatus;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// Every plugin; with `plugin`, that one with everything about it.
    Status {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plugin: Option<String>,
    },
    /// What the core exposes, by plugin.
    Skills,
    /// Turns this connection into an AigisProxy channel to the live core.
    Shell,
    Logs {
        plugin: String,
    },
    Stop {
        plugin: String,
    },
    Start {
        plugin: String,
    },
    Reload {
        plugin: String,
    },
    /// Read the central config again and apply the difference.
    Reread,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<PluginStatus>,
    /// For `logs`: the plugin's log file, which the client reads itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file: Option<PathBuf>,
    /// For `skills`: each core plugin's skills, in load order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<PluginSkills>,
}

/// What one plugin exposes in the core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginSkills {
    pub plugin: String,
    /// Full names: `aigis.weather.forecast`.
    pub skills: Vec<String>,
}

pub fn failure(error: String) -> Response {
    Response {
        error: Some(error),
        ..Response::default()
    }
}

pub fn done(message: String) -> Response {
    Response {
        ok: true,
        message: Some(message),
        ..Response::default()
    }
}

pub fn socket_path(home: &Home) -> PathBuf {
    home.run().join("aigis.sock")
}

/// Holds the home for this daemon; dropped (and so released) at exit.
pub struct HomeLock {
    _file: File,
}

/// Takes `<home>/run/aigis.lock`, or says which daemon holds it.
pub fn lock_home(home: &Home) -> anyhow::Result<HomeLock> {
    let path = home.run().join("aigis.lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        anyhow::bail!(
            "another `aigis run` (pid {}) already owns the home {}; stop it first or use another --home",
            holder.trim(),
            home.root().display()
        );
    }
    file.set_len(0)?;
    write!(file, "{}", std::process::id())?;
    Ok(HomeLock { _file: file })
}

/// Sends one request to the daemon of `home` and returns its answer.
pub async fn request(home: &Home, request: &Request) -> anyhow::Result<Response> {
    let path = socket_path(home);
    let stream = UnixStream::connect(&path).await.map_err(|e| {
        anyhow::anyhow!(
            "no aigis daemon is running for home {} ({}: {e}); start one with `aigis run -c FILE`",
            home.root().display(),
            path.display()
        )
    })?;
    let (rd, mut wr) = stream.into_split();
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    wr.write_all(&line).await?;
    let mut answer = String::new();
    BufReader::new(rd).read_line(&mut answer).await?;
    if answer.is_empty() {
        anyhow::bail!("the daemon closed the connection without answering");
    }
    Ok(serde_json::from_str(&answer)?)
}
