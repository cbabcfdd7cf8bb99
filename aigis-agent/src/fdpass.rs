//! Descriptors handed between processes over a Unix socket (`SCM_RIGHTS`).
//!
//! `attach` gives the agent daemon the SSH channel's own stdin and stdout
//! this way, so the daemon reads and writes sshd's pipes itself and no
//! process relays the bytes; the local agent gives central the control
//! socket of each internal plugin it starts (`lane.rs`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Descriptors one message carries at most.
const MAX_FDS: usize = 4;

/// Room for one SCM_RIGHTS header carrying `payload` bytes of descriptors.
fn control_buffer(payload: u32) -> Vec<u8> {
    // SAFETY: CMSG_SPACE is a pure size computation.
    vec![0u8; unsafe { libc::CMSG_SPACE(payload) } as usize]
}

/// A message of one buffer and a control buffer; both must outlive its use.
fn message(iov: &mut libc::iovec, control: &mut [u8]) -> libc::msghdr {
    // SAFETY: msghdr is plain data, valid zeroed.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() as _;
    msg
}

/// Sends `data` (at least one byte) with `fds` attached, in one message.
pub fn send(sock: &impl AsRawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    assert!(fds.len() <= MAX_FDS && !data.is_empty());
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let payload = std::mem::size_of_val(fds) as u32;
    let mut control = control_buffer(payload);
    let msg = message(&mut iov, &mut control);
    // SAFETY: every pointer in `msg` points into locals that outlive the
    // sendmsg call, and the control buffer is CMSG_SPACE bytes, room for
    // exactly one header with `fds`.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast(), fds.len());
        loop {
            let sent = libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL);
            if sent == data.len() as isize {
                return Ok(());
            }
            if sent >= 0 {
                return Err(io::Error::other("the message was cut short"));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Receives one message of at most `max` bytes (on a stream socket, what
/// arrived with the descriptors) and the descriptors it carried (owned,
/// close-on-exec). `WouldBlock` on a non-blocking socket with nothing to
/// read; `UnexpectedEof` when the peer closed.
pub fn recv(sock: &impl AsRawFd, max: usize) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut data = vec![0u8; max.max(1)];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut control = control_buffer((MAX_FDS * std::mem::size_of::<RawFd>()) as u32);
    let mut msg = message(&mut iov, &mut control);
    // SAFETY: as in `send`; the kernel writes at most `msg_controllen`
    // bytes of headers, which are walked with the CMSG macros, and every
    // descriptor in an SCM_RIGHTS header is new and ours to own.
    unsafe {
        let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut fds = Vec::new();
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if msg.msg_flags & (libc::MSG_CTRUNC | libc::MSG_TRUNC) != 0 {
            return Err(io::Error::other("a longer message than expected"));
        }
        data.truncate(n as usize);
        Ok((data, fds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn descriptors_cross_and_still_work() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut keep, give) = UnixStream::pair().unwrap();
        send(&a, b"plugin", &[give.as_raw_fd()]).unwrap();
        drop(give);
        let (data, fds) = recv(&b, 64).unwrap();
        assert_eq!(data, b"plugin");
        assert_eq!(fds.len(), 1);
        let mut got = UnixStream::from(fds.into_iter().next().unwrap());
        got.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        keep.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        drop(a);
        assert_eq!(
            recv(&b, 64).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
