//! `aigis shell`: a control connection turned into an AigisProxy channel,
//! so that an operator's REPL reaches the live core as an internal
//! plugin's `import aigis` does.
//!
//! After its `{"cmd":"shell"}` line is answered, the connection carries
//! frames exactly like a shim's fd 3: a 4-byte big-endian length, then
//! `b"C" + id + pickle((path, args, kwargs))` from the shell and
//! `b"R" + id + ...` back (see `python/proxy.py`). Each call is answered by
//! `PythonCore::serve_call`: the restricted unpickler, the reach rule and
//! the size limits a plugin's calls get. Bounded like a plugin's link: a
//! frame is at most `proto::MAX_CONTROL` bytes, at most
//! [`CALLS_PER_PLUGIN`] calls of one shell run at once, and at most
//! [`MAX_SHELLS`] shells are open, so they never take every control slot.

use crate::callpool::CALLS_PER_PLUGIN;
use crate::core::PythonCore;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// Shells open at once; the control socket serves 64 connections.
pub const MAX_SHELLS: usize = 8;

static SHELLS: Semaphore = Semaphore::const_new(MAX_SHELLS);

/// A slot for one more shell, or why there is none.
pub fn admit() -> Result<tokio::sync::SemaphorePermit<'static>, String> {
    SHELLS.try_acquire().map_err(|_| {
        format!("{MAX_SHELLS} shells are open already; close one (Ctrl-D) and try again")
    })
}

/// Answers the shell's call frames until it closes the connection.
pub async fn serve<R, W>(mut rd: R, wr: W, core: PythonCore) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let wr = Arc::new(Mutex::new(wr));
    // Its fair share in the call pool, apart from every plugin's.
    static SHELLS: AtomicU64 = AtomicU64::new(0);
    let key = format!("aigis shell {}", SHELLS.fetch_add(1, Ordering::Relaxed));
    let calls = Arc::new(Semaphore::new(CALLS_PER_PLUGIN));
    // Calls in flight end with the connection.
    let mut running = JoinSet::new();
    loop {
        // A slot first: a shell with many slow calls waits here, unread.
        let permit: OwnedSemaphorePermit = match calls.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return Ok(()),
        };
        let mut len = [0u8; 4];
        match rd.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes(len) as usize;
        if !(9..=proto::MAX_CONTROL).contains(&len) {
            // Not the shell of `aigis shell`, which checks sizes first.
            return Ok(());
        }
        let mut frame = vec![0u8; len];
        rd.read_exact(&mut frame).await?;
        if frame[0] != b'C' {
            return Ok(());
        }
        let (core, wr, key) = (core.clone(), wr.clone(), key.clone());
        running.spawn(async move {
            let reply = core.serve_call(&key, frame).await;
            let mut wr = wr.lock().await;
            let len = u32::try_from(reply.len()).unwrap_or(u32::MAX).to_be_bytes();
            if wr.write_all(&len).await.is_ok() {
                let _ = wr.write_all(&reply).await;
                let _ = wr.flush().await;
            }
            drop(permit);
        });
        // Forget the calls that are done.
        while running.try_join_next().is_some() {}
    }
}
