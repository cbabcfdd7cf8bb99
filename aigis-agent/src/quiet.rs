//! A plugin's control socket on the reactor without needless wake-ups.
//!
//! Tokio registers a socket for input and output at once, and the kernel
//! wakes a Unix socket's waiters whenever its send buffer frees: every time
//! the plugin read a reply, the agent woke up for nothing, once per call.
//! Here the socket is registered for input only; replies are written
//! straight away, and only a write that would block registers (briefly)
//! for output.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, Interest, ReadBuf};

/// The socket's two halves: input on the reactor, output written directly.
pub fn split(sock: std::os::unix::net::UnixStream) -> io::Result<(InputOnly, DirectWriter)> {
    sock.set_nonblocking(true)?;
    let out: OwnedFd = sock.try_clone()?.into();
    Ok((
        InputOnly(register(sock.into(), Interest::READABLE)?),
        DirectWriter(out),
    ))
}

/// `fd` on the reactor for `interest` only.
fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is a valid open descriptor, closed only when the
    // AsyncFd (its owner from here on) is dropped; its raw value never
    // changes.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}

/// The reading half, woken only when there is input.
pub struct InputOnly(AsyncFd<OwnedFd>);

impl AsyncRead for InputOnly {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let read = guard.try_io(|fd| {
                // SAFETY: read(2) into the unfilled part of `buf`, which is
                // initialized and `unfilled.len()` bytes long.
                let n = unsafe {
                    libc::read(fd.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len())
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match read {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

/// The writing half: writes at once, waits for room only when it must.
pub struct DirectWriter(OwnedFd);

impl DirectWriter {
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            // SAFETY: write(2) of `data`, a live slice, on our descriptor;
            // MSG_NOSIGNAL: a plugin that is gone is an error, not SIGPIPE.
            let n = unsafe {
                libc::send(
                    self.0.as_raw_fd(),
                    data.as_ptr().cast(),
                    data.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n >= 0 {
                data = &data[n as usize..];
                continue;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => {
                    // The plugin is not reading: wait for room, then
                    // unregister again.
                    let room = register(self.0.try_clone()?, Interest::WRITABLE)?;
                    room.writable().await?.clear_ready();
                }
                _ => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn frames_cross_both_ways_even_when_the_peer_reads_late() {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let (mut input, output) = split(ours).unwrap();
        // More than the socket buffers hold: the writer must wait for room.
        let big = vec![7u8; 4 << 20];
        let reader = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut theirs = theirs;
            std::thread::sleep(std::time::Duration::from_millis(100));
            let mut got = vec![0u8; 4 << 20];
            theirs.read_exact(&mut got).unwrap();
            theirs.write_all(b"back").unwrap();
            got
        });
        output.write_all(&big).await.unwrap();
        let mut back = [0u8; 4];
        input.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"back");
        assert_eq!(reader.join().unwrap(), big);
    }
}
