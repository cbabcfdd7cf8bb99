//! Direct call channels: an AigisProxy plugin on a LAN host sends its calls
//! to central without the agent relaying each one.
//!
//! A relayed call wakes four processes each way (plugin, agent, sshd,
//! central); a direct one three, and skips the agent's framing. For such a
//! plugin the agent makes a listening socket, `<dir>/calls/<plugin>` in
//! AIGIS's 0700 dir on the host, and hands it to the shim as
//! [`CALLS_FD`], with the token central chose (`AIGIS_CALL_TOKEN`).
//! Central opens an SSH `direct-streamlocal` channel to that path and
//! sends the token first; sshd connects; the shim accepts the connection on
//! its next call, checks the token, and from then on sends its proxy calls
//! there (`proxy.DirectCalls`). The control socket (fd 3) stays for
//! everything else, and for calls whenever there is no direct channel:
//! before central opened it, and after the SSH connection dropped (sshd
//! closes the socket; the calls in flight on it fail in the plugin, as
//! they do on fd 3).
//!
//! Invariants:
//! - The socket is in the agent's own dir, under a name the plugin's name
//!   gives only when it is a plain file name; never anywhere else.
//! - Only central, which knows the token, is taken for central by the shim.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// Where the shim finds its listening socket.
pub const CALLS_FD: i32 = 4;

/// The longest path a Unix socket address holds (`sun_path`, less its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Where the socket of `plugin`'s direct calls is under the agent dir
/// `dir`; `None` when the name is not a plain file name or the path is too
/// long for a socket address (the plugin's calls then all go through the
/// agent). Central asks the same function, so both ends agree.
pub fn socket_path(dir: &Path, plugin: &str) -> Option<PathBuf> {
    let plain = !plugin.is_empty()
        && !plugin.starts_with('.')
        && plugin
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    let path = dir.join("calls").join(plugin);
    (plain && path.as_os_str().len() <= MAX_SOCKET_PATH).then_some(path)
}

/// Makes `plugin`'s listening socket, replacing one a previous run left;
/// `None` when it has no [`socket_path`].
pub fn listen(dir: &Path, plugin: &str) -> std::io::Result<Option<UnixListener>> {
    use std::os::unix::fs::DirBuilderExt;
    let Some(path) = socket_path(dir, plugin) else {
        return Ok(None);
    };
    let calls = dir.join("calls");
    match std::fs::DirBuilder::new().mode(0o700).create(&calls) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    // A socket a previous run of this plugin left (or anything by its
    // name: this dir is ours alone).
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    listener.set_nonblocking(true)?;
    Ok(Some(listener))
}

/// Removes `plugin`'s socket once it stopped.
pub fn forget(dir: &Path, plugin: &str) {
    if let Some(path) = socket_path(dir, plugin) {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_take_plain_names_only_and_fit_an_address() {
        let dir = Path::new("/home/u/.aigis/c-0123456789ab");
        assert_eq!(
            socket_path(dir, "web-cam_2.x"),
            Some(dir.join("calls/web-cam_2.x"))
        );
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "ü"] {
            assert_eq!(socket_path(dir, bad), None, "{bad:?}");
        }
        assert_eq!(socket_path(dir, &"p".repeat(80)), None);
    }

    #[test]
    fn a_new_run_replaces_the_socket_of_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let first = listen(dir.path(), "p").unwrap().unwrap();
        let path = socket_path(dir.path(), "p").unwrap();
        drop(first);
        let second = listen(dir.path(), "p").unwrap().unwrap();
        let _client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        assert!(second.accept().is_ok());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("calls"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        forget(dir.path(), "p");
        assert!(!path.exists());
    }
}
