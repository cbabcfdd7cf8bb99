//! The agent's stdin and stdout, polled by the async reactor.
//!
//! `tokio::io::stdin()`/`stdout()` read and write on the blocking-thread
//! pool: every frame in either direction would cost a hand-off between
//! threads. The agent's stdio is a pipe (the local agent, a child of
//! central) or a socket or pipe from sshd (`attach`), so both can be
//! registered with the reactor directly; anything else (a terminal) falls
//! back to tokio's blocking stdio.

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

/// A duplicate of descriptor 0 or 1 (the original stays for anything that
/// writes to stdout by itself).
fn dup(which: std::os::fd::BorrowedFd<'_>) -> Option<OwnedFd> {
    which.try_clone_to_owned().ok()
}

/// Stdin as an async reader.
pub fn stdin() -> Reader {
    let fd = dup(std::io::stdin().as_fd());
    match fd.as_ref().map(kind) {
        Some(Kind::Pipe) => {
            if let Some(r) =
                fd.and_then(|fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok())
            {
                return Box::pin(r);
            }
        }
        Some(Kind::Socket) => {
            if let Some(s) = fd.and_then(socket) {
                return Box::pin(s);
            }
        }
        _ => {}
    }
    Box::pin(tokio::io::stdin())
}

/// Stdout as an async writer.
pub fn stdout() -> Writer {
    let fd = dup(std::io::stdout().as_fd());
    match fd.as_ref().map(kind) {
        Some(Kind::Pipe) => {
            if let Some(w) =
                fd.and_then(|fd| tokio::net::unix::pipe::Sender::from_owned_fd(fd).ok())
            {
                return Box::pin(w);
            }
        }
        Some(Kind::Socket) => {
            if let Some(s) = fd.and_then(socket) {
                return Box::pin(s);
            }
        }
        _ => {}
    }
    Box::pin(tokio::io::stdout())
}

fn socket(fd: OwnedFd) -> Option<tokio::net::UnixStream> {
    let std = std::os::unix::net::UnixStream::from(fd);
    std.set_nonblocking(true).ok()?;
    tokio::net::UnixStream::from_std(std).ok()
}
