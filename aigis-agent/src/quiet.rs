//! A plugin's control socket on the reactor without needless wake-ups.
//!
//! Tokio registers a socket for input and output at once, and the kernel
//! wakes a Unix socket's waiters whenever its send buffer frees: every time
//! the plugin read a reply, the agent woke up for nothing, once per call.
//! Here the socket is registered for input only; replies are written
//! straight away, and only a write that would block registers (briefly)
//! for output.

use crate::lock;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{ready, Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, Interest, ReadBuf};
use tokio::sync::Notify;

/// The socket's two halves: input on the reactor, output written directly.
pub fn split(sock: std::os::unix::net::UnixStream) -> io::Result<(InputOnly, Replies)> {
    sock.set_nonblocking(true)?;
    let out: OwnedFd = sock.try_clone()?.into();
    Ok((
        InputOnly(register(sock.into(), Interest::READABLE)?),
        Replies {
            fd: out,
            waiting: Mutex::default(),
            more: Notify::new(),
        },
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

/// How many frames may wait for a plugin that is not reading; past it a
/// frame is dropped (the plugin is not reading its answers anyway).
pub const MAX_WAITING: usize = 16;

/// The writing half: frames for the plugin, in order. Whoever has one
/// writes it at once when none is waiting (no hand-over to another task,
/// so no wake-up); what the plugin has no room for waits for
/// [`Replies::flush`].
pub struct Replies {
    fd: OwnedFd,
    waiting: Mutex<Waiting>,
    more: Notify,
}

#[derive(Default)]
struct Waiting {
    frames: VecDeque<Frame>,
    /// The plugin is gone: nothing more is written.
    closed: bool,
}

/// A 4-byte big-endian length and the payload, written as two pieces of
/// one `sendmsg` (no copy, one wake-up of the shim).
struct Frame {
    len: [u8; 4],
    payload: Vec<u8>,
    sent: usize,
}

impl Replies {
    /// Sends `payload` as one frame, now or once the plugin makes room.
    /// False when the plugin is gone or [`MAX_WAITING`] frames wait.
    pub fn send(&self, payload: Vec<u8>) -> bool {
        let mut waiting = lock(&self.waiting);
        if waiting.closed || waiting.frames.len() >= MAX_WAITING {
            return false;
        }
        let mut frame = Frame {
            len: (payload.len() as u32).to_be_bytes(),
            payload,
            sent: 0,
        };
        if waiting.frames.is_empty() {
            match frame.write(&self.fd) {
                Ok(true) => return true,
                Ok(false) => {}
                Err(_) => {
                    waiting.closed = true;
                    return false;
                }
            }
        }
        waiting.frames.push_back(frame);
        drop(waiting);
        self.more.notify_one();
        true
    }

    /// Writes what waits as the plugin makes room; returns when it is gone.
    pub async fn flush(&self) {
        loop {
            self.more.notified().await;
            loop {
                let blocked = {
                    let mut waiting = lock(&self.waiting);
                    let Some(front) = waiting.frames.front_mut() else {
                        break;
                    };
                    match front.write(&self.fd) {
                        Ok(true) => {
                            waiting.frames.pop_front();
                            false
                        }
                        Ok(false) => true,
                        Err(_) => {
                            *waiting = Waiting {
                                closed: true,
                                ..Waiting::default()
                            };
                            return;
                        }
                    }
                };
                if blocked && self.room().await.is_err() {
                    lock(&self.waiting).closed = true;
                    return;
                }
            }
        }
    }

    /// Waits until the socket has room, registered for output only
    /// meanwhile.
    async fn room(&self) -> io::Result<()> {
        let room = register(self.fd.try_clone()?, Interest::WRITABLE)?;
        room.writable().await?.clear_ready();
        Ok(())
    }
}

impl Frame {
    /// Writes what is left of the frame without blocking: true when all of
    /// it is out, false when the socket is full.
    fn write(&mut self, fd: &OwnedFd) -> io::Result<bool> {
        let total = 4 + self.payload.len();
        while self.sent < total {
            let (head, tail): (&[u8], &[u8]) = if self.sent < 4 {
                (&self.len[self.sent..], &self.payload)
            } else {
                (&self.payload[self.sent - 4..], &[])
            };
            let iov = [
                libc::iovec {
                    iov_base: head.as_ptr() as *mut libc::c_void,
                    iov_len: head.len(),
                },
                libc::iovec {
                    iov_base: tail.as_ptr() as *mut libc::c_void,
                    iov_len: tail.len(),
                },
            ];
            // SAFETY: an all-zero msghdr is valid (no name, no control).
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = if tail.is_empty() { 1 } else { 2 };
            // SAFETY: sendmsg(2) of two live slices on our descriptor;
            // MSG_NOSIGNAL: a plugin that is gone is an error, not SIGPIPE.
            let n = unsafe {
                libc::sendmsg(
                    fd.as_raw_fd(),
                    &msg,
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if n >= 0 {
                self.sent += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => return Ok(false),
                _ => return Err(e),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn read_frame(from: &mut std::os::unix::net::UnixStream) -> Vec<u8> {
        use std::io::Read;
        let mut len = [0u8; 4];
        from.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        from.read_exact(&mut body).unwrap();
        body
    }

    #[tokio::test]
    async fn frames_reach_a_late_reader_whole_and_in_order() {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let (mut input, output) = split(ours).unwrap();
        let output = std::sync::Arc::new(output);
        let flusher = tokio::spawn({
            let output = output.clone();
            async move { output.flush().await }
        });
        // More than the socket buffers hold: frames must wait for room, and
        // the ones after them must not overtake them.
        let frames = vec![
            b"first".to_vec(),
            vec![7u8; 4 << 20],
            b"third".to_vec(),
            vec![9u8; 300_000],
            Vec::new(),
        ];
        let count = frames.len();
        let reader = std::thread::spawn(move || {
            use std::io::Write;
            let mut theirs = theirs;
            std::thread::sleep(std::time::Duration::from_millis(100));
            let got: Vec<Vec<u8>> = (0..count).map(|_| read_frame(&mut theirs)).collect();
            theirs.write_all(b"back").unwrap();
            got
        });
        for f in &frames {
            assert!(output.send(f.clone()));
        }
        let mut back = [0u8; 4];
        input.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"back");
        assert!(reader.join().unwrap() == frames, "frames differ");
        flusher.abort();
    }

    #[tokio::test]
    async fn a_plugin_that_does_not_read_holds_at_most_max_waiting_frames() {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let (_input, output) = split(ours).unwrap();
        let output = std::sync::Arc::new(output);
        let flusher = tokio::spawn({
            let output = output.clone();
            async move { output.flush().await }
        });
        // The first fills the socket and waits; MAX_WAITING in all may wait.
        assert!(output.send(vec![1u8; 4 << 20]));
        for _ in 1..MAX_WAITING {
            assert!(output.send(b"small".to_vec()));
        }
        assert!(!output.send(b"one too many".to_vec()));
        // The plugin goes: the flusher ends, and nothing more is taken.
        drop(theirs);
        tokio::time::timeout(std::time::Duration::from_secs(10), flusher)
            .await
            .expect("the flusher did not notice the plugin was gone")
            .unwrap();
        assert!(!output.send(b"late".to_vec()));
    }
}
