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

/// Stdin as an async reader.
pub fn stdin() -> Reader {
    match reactor_fd(std::io::stdin().as_fd()) {
        Some(Registered::Pipe(fd)) => {
            if let Ok(r) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
                return Box::pin(r);
            }
        }
        Some(Registered::Socket(s)) => return Box::pin(s),
        None => {}
    }
    Box::pin(tokio::io::stdin())
}

/// Stdout as an async writer.
pub fn stdout() -> Writer {
    match reactor_fd(std::io::stdout().as_fd()) {
        Some(Registered::Pipe(fd)) => {
            if let Ok(w) = tokio::net::unix::pipe::Sender::from_owned_fd(fd) {
                return Box::pin(w);
            }
        }
        Some(Registered::Socket(s)) => return Box::pin(s),
        None => {}
    }
    Box::pin(tokio::io::stdout())
}

enum Registered {
    Pipe(OwnedFd),
    Socket(tokio::net::UnixStream),
}

/// A duplicate of `which` (the original stays for anything that writes to
/// it by itself) that the reactor can poll, when it is a pipe or a socket.
fn reactor_fd(which: std::os::fd::BorrowedFd<'_>) -> Option<Registered> {
    let fd = which.try_clone_to_owned().ok()?;
    match kind(&fd) {
        Kind::Pipe => Some(Registered::Pipe(fd)),
        Kind::Socket => socket(fd).map(Registered::Socket),
        Kind::Other => None,
    }
}

fn socket(fd: OwnedFd) -> Option<tokio::net::UnixStream> {
    let std = std::os::unix::net::UnixStream::from(fd);
    std.set_nonblocking(true).ok()?;
    tokio::net::UnixStream::from_std(std).ok()
}
