//! The agent's stdin and stdout, polled by the async reactor.
//!
//! `tokio::io::stdin()`/`stdout()` read and write on the blocking-thread
//! pool: every frame in either direction would cost a hand-off between
//! threads. The agent's stdio is a pipe (the local agent, a child of
//! central), and a LAN host's daemon gets sshd's pipes or sockets from
//! `attach`, so both can be registered with the reactor directly; anything
//! else (a terminal) falls back to the blocking pool.

use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWrite};

pub type Reader = Pin<Box<dyn AsyncRead + Send>>;
pub type Writer = Pin<Box<dyn AsyncWrite + Send>>;

enum Kind {
    Pipe,
    Socket,
    Other,
}

fn kind(fd: &OwnedFd) -> Kind {
    // SAFETY: fstat on a descriptor we own, into a zeroed plain struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    use std::os::fd::AsRawFd;
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Kind::Other;
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO => Kind::Pipe,
        libc::S_IFSOCK => Kind::Socket,
        _ => Kind::Other,
    }
}

/// Stdin as an async reader.
pub fn stdin() -> Reader {
    match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => reader(fd),
        Err(_) => Box::pin(tokio::io::stdin()),
    }
}

/// Stdout as an async writer (a duplicate: the original stays for
/// anything that writes to it by itself).
pub fn stdout() -> Writer {
    match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => writer(fd),
        Err(_) => Box::pin(tokio::io::stdout()),
    }
}

/// A pipe or socket to read from on the reactor; anything else is read on
/// the blocking pool.
pub fn reader(fd: OwnedFd) -> Reader {
    match kind(&fd) {
        Kind::Pipe => match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
            Ok(r) => Box::pin(r),
            Err(_) => Box::pin(tokio::io::empty()),
        },
        Kind::Socket => match socket(fd) {
            Ok(s) => Box::pin(s),
            Err(_) => Box::pin(tokio::io::empty()),
        },
        Kind::Other => Box::pin(tokio::fs::File::from_std(std::fs::File::from(fd))),
    }
}

/// A pipe or socket to write to on the reactor; anything else is written on
/// the blocking pool.
pub fn writer(fd: OwnedFd) -> Writer {
    match kind(&fd) {
        Kind::Pipe => match tokio::net::unix::pipe::Sender::from_owned_fd(fd) {
            Ok(w) => Box::pin(w),
            Err(_) => Box::pin(tokio::io::sink()),
        },
        Kind::Socket => match socket(fd) {
            Ok(s) => Box::pin(s),
            Err(_) => Box::pin(tokio::io::sink()),
        },
        Kind::Other => Box::pin(tokio::fs::File::from_std(std::fs::File::from(fd))),
    }
}

fn socket(fd: OwnedFd) -> std::io::Result<tokio::net::UnixStream> {
    let std = std::os::unix::net::UnixStream::from(fd);
    std.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(std)
}
