//! `aigis shell`, the client end: a Python REPL whose `aigis` is the live
//! core, through the AigisProxy, over the control socket (never a TCP
//! port). The daemon's end is `daemon/shell.rs`.
//!
//! The request is made here, so that "no daemon", "no core" and "too many
//! shells" read like every other verb's errors; then `python3 -q -i
//! shell.py` replaces this process, with the connection as
//! `AIGIS_SHELL_FD`. `shell.py` and `proxy.py` go into a private directory
//! (random name, 0700, files 0600, as the agent's shim directory), which
//! `shell.py` removes once it has loaded them.

use crate::control::{socket_path, Response};
use crate::home::Home;
use aigis_agent::install::find_on_path;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;

const SHELL: &str = include_str!("../../python/shell.py");
const PROXY: &str = include_str!("../../python/proxy.py");

/// The longest answer line read before the frames start.
const MAX_ANSWER: usize = 64 * 1024;

/// Opens the shell; returns only if it could not.
pub fn run(home: &Home) -> anyhow::Result<()> {
    let python = find_on_path("python3")
        .ok_or_else(|| anyhow::anyhow!("aigis shell needs python3 on PATH (3.8 or newer)"))?;
    let path = socket_path(home);
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        anyhow::anyhow!(
            "no aigis daemon is running for home {} ({}: {e}); start one with `aigis run -c FILE`",
            home.root().display(),
            path.display()
        )
    })?;
    stream.write_all(b"{\"cmd\":\"shell\"}\n")?;
    let answer: Response = serde_json::from_slice(&answer_line(&mut stream)?)?;
    if !answer.ok {
        anyhow::bail!(
            "{}",
            answer.error.unwrap_or_else(|| "the daemon refused".into())
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("aigis-shell-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()?;
    for (name, text) in [("shell.py", SHELL), ("proxy.py", PROXY)] {
        write_new(&dir.path().join(name), text)?;
    }
    // The connection crosses into python3: not closed on exec.
    let fd = stream.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function owns.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
        anyhow::bail!(
            "cannot pass the connection to python3: {}",
            std::io::Error::last_os_error()
        );
    }
    let error = std::process::Command::new(python)
        .arg("-q")
        .arg("-i")
        .arg(dir.path().join("shell.py"))
        .env("AIGIS_SHELL_FD", fd.to_string())
        .env("AIGIS_SHELL_HELLO", answer.message.unwrap_or_default())
        .exec();
    // Only here if python3 could not be started; `dir` is removed on drop.
    anyhow::bail!("cannot start python3: {error}")
}

/// The daemon's answer line, read a byte at a time: what follows it is
/// for python3.
fn answer_line(stream: &mut UnixStream) -> anyhow::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < MAX_ANSWER {
        if stream.read(&mut byte)? == 0 {
            anyhow::bail!("the daemon closed the connection without answering");
        }
        if byte[0] == b'\n' {
            return Ok(line);
        }
        line.push(byte[0]);
    }
    anyhow::bail!("the daemon's answer is longer than {MAX_ANSWER} bytes")
}

fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(text.as_bytes())
}
