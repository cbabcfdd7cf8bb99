//! The agent of a LAN host: a daemon that outlives SSH connections.
//!
//! Central runs `aigis-agent attach --dir D` over an SSH exec channel.
//! `attach` hands its stdin/stdout (sshd's end of the channel) to the
//! daemon over its socket `D/agent.sock` (`SCM_RIGHTS`), starting the
//! daemon (`aigis-agent daemon --dir D`, in its own session) when none
//! runs, and waits; no process relays the bytes. When the connection
//! drops, the link ends and `attach` exits: the
//! daemon keeps the plugins running, buffers their output (see `outbox`),
//! and the next `attach` of the same central run gets it all. `Shutdown`
//! from central stops every plugin and the daemon.
//!
//! A daemon of another build (an AIGIS upgraded since it started, whose
//! protocol this central may not speak) is stopped by `attach` (SIGTERM:
//! it stops its plugins, which the new central run would stop anyway) and
//! replaced, rather than handed a link it cannot serve.

use crate::agent::{serve_link, AgentState, LinkEnd};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};

pub async fn daemon(dir: &Path) -> anyhow::Result<()> {
    private_place(dir)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("agent.lock"))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Ok(()); // another daemon serves this dir
    }
    let path = dir.join("agent.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;

    crate::python::keep_shim_in(dir);
    let state = AgentState::in_dir(dir);
    let mut term = signal(SignalKind::terminate())?;
    let mut current: Option<tokio::task::JoinHandle<anyhow::Result<LinkEnd>>> = None;
    loop {
        tokio::select! {
            conn = listener.accept() => {
                let Ok((stream, _)) = conn else { continue };
                // A new link replaces a stale one (its connection died unseen).
                if let Some(old) = current.take() {
                    old.abort();
                    state.detach_link().await;
                }
                let link_state = state.clone();
                current = Some(tokio::spawn(async move { serve_attached(&link_state, stream).await }));
            }
            end = async { current.as_mut().expect("guarded").await }, if current.is_some() => {
                current = None;
                match end {
                    Ok(Ok(LinkEnd::Shutdown)) => break,
                    Ok(Ok(LinkEnd::Terminated)) => { state.stop_all().await; break }
                    _ => {} // gone: keep the plugins, wait for central
                }
            }
            _ = term.recv() => { state.stop_all().await; break }
        }
    }
    let _ = std::fs::remove_file(&path);
    crate::python::remove_shim_dir();
    drop(lock);
    Ok(())
}

/// Serves the link of one `attach`: its SSH channel's stdin and stdout,
/// handed over on `conn`, which stays open while the link lasts (closing
/// it lets `attach`, and so the SSH session, end).
async fn serve_attached(state: &AgentState, conn: UnixStream) -> anyhow::Result<LinkEnd> {
    let fds = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            conn.readable().await?;
            match conn.try_io(Interest::READABLE, || crate::fdpass::recv(&conn, 1)) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                other => break other,
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("attach sent no descriptors"))??;
    let (tag, mut fds) = fds;
    if tag != ATTACH || fds.len() != 2 {
        anyhow::bail!("attach sent {} descriptors with {tag:?}", fds.len());
    }
    let output = fds.pop().expect("two");
    let input = fds.pop().expect("two");
    let end = serve_link(
        state,
        crate::stdio::reader(input),
        crate::stdio::writer(output),
    )
    .await;
    drop(conn);
    end
}

/// `attach`'s one message.
const ATTACH: &[u8] = b"A";

/// Hands this process's stdin and stdout (the SSH channel) to the daemon
/// of `dir`, starting it if needed, and waits until the daemon is done
/// with them: the daemon then reads and writes sshd's pipes itself.
pub async fn attach(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join("agent.sock");
    let stream = match UnixStream::connect(&path).await {
        Ok(s) => match other_build(&s) {
            None => s,
            Some((pid, exe)) => {
                drop(s);
                retire(pid, &exe, dir).await?;
                start_daemon(dir, &path).await?
            }
        },
        Err(_) => start_daemon(dir, &path).await?,
    };
    let mut stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    crate::fdpass::send(&stream, ATTACH, &[0, 1])?;
    // Until the daemon closes its end; nothing else is ever sent.
    let _ = std::io::Read::read(&mut stream, &mut [0u8; 1]);
    Ok(())
}

/// Starts the daemon of `dir` and connects to it at `path`.
async fn start_daemon(dir: &Path, path: &Path) -> anyhow::Result<UnixStream> {
    spawn_daemon(dir)?;
    // The daemon is up within a few ms; every start of a central waits for
    // it (a failed connect costs microseconds).
    const LOOK_EVERY: Duration = Duration::from_millis(2);
    let mut waited = Duration::ZERO;
    loop {
        if let Ok(s) = UnixStream::connect(path).await {
            return Ok(s);
        }
        if waited > Duration::from_secs(10) {
            anyhow::bail!(
                "the agent daemon did not start (see {})",
                dir.join("agent.log").display()
            );
        }
        tokio::time::sleep(LOOK_EVERY).await;
        waited += LOOK_EVERY;
    }
}

/// The pid and program of the daemon at the other end of `conn` when it is
/// not this build (its program is not this one; programs are named by their
/// hash). `None` when it is, or when that cannot be told (then it is used).
fn other_build(conn: &UnixStream) -> Option<(i32, String)> {
    let pid = conn.peer_cred().ok()?.pid()?;
    let theirs = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let ours = std::env::current_exe().ok()?;
    let program = |p: &Path| {
        let shown = p.to_string_lossy();
        // A program replaced or removed since it started.
        shown
            .strip_suffix(" (deleted)")
            .unwrap_or(&shown)
            .to_string()
    };
    let theirs = program(&theirs);
    (theirs != program(&ours)).then_some((pid, theirs))
}

/// How long a daemon of another build gets to stop its plugins and go.
const RETIRE_WITHIN: Duration = Duration::from_secs(20);

/// Stops the daemon `pid` (running `exe`) of another build and waits until
/// it is gone.
async fn retire(pid: i32, exe: &str, dir: &Path) -> anyhow::Result<()> {
    let notice = format!(
        "aigis-agent: stopping the agent daemon of another build that serves {} \
         (pid {pid}, {exe}); its plugins stop with it\n",
        dir.display()
    );
    // On the channel's stderr, and in the daemons' log for whoever looks
    // on the host later.
    eprint!("{notice}");
    if let Ok(mut log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("agent.log"))
    {
        let _ = std::io::Write::write_all(&mut log, notice.as_bytes());
    }
    // SAFETY: a plain signal to the process at the other end of our own
    // socket, in AIGIS's 0700 dir.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let started = std::time::Instant::now();
    while running(pid) {
        if started.elapsed() > RETIRE_WITHIN {
            anyhow::bail!(
                "the agent daemon of another build (pid {pid}, {exe}) that serves {} did not \
                 stop within {} s: stop it, and its plugins, by hand",
                dir.display(),
                RETIRE_WITHIN.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// The process is there and has not exited (a zombie has).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                .map(|state| state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// This central's place on the host: its own user's, others may pass
/// through it (to a plugin's tree given to its user) but not list or
/// read it (0711).
fn private_place(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
}

fn spawn_daemon(dir: &Path) -> anyhow::Result<()> {
    private_place(dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(dir.join("agent.log"))?;
    // One an older agent made may be open to others.
    log.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("daemon")
        .arg("--dir")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; the daemon leaves the SSH
    // session so the connection's end does not take it along.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn()?;
    Ok(())
}
