//! One task per plugin process: start it, relay its output, restart it after
//! unexpected exits, stop it on request.
//!
//! Invariants:
//! - Every plugin runs in its own process group, and in its own cgroup or
//!   process tree ([`crate::contain`]); stopping means SIGTERM to all of its
//!   processes, [`STOP_GRACE`] for the leader to exit, then SIGKILL to every
//!   one left, also to those that left its group or session. The child is
//!   always waited for, so no zombie is left.
//! - `RESTART = N` allows at most N restarts after exits nobody asked for, with
//!   a delay that doubles from [`FIRST_RESTART_DELAY`] up to [`MAX_RESTART_DELAY`].
//!   A run that lasted [`HEALTHY_RUN`] refills the budget and resets the delay.
//! - Output lines of one run are all sent before the state change that ends it.

use crate::calls::ShimRead;
use crate::contain::{Jail, Own};
use crate::desk::Desk;
use crate::output::relay;
use crate::python;
use crate::quiet::Replies;
use proto::{Backoff, Event, FromAgent, LaunchSpec, OutputStream, ProcessState, Program};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub const STOP_GRACE: Duration = Duration::from_secs(5);
pub const FIRST_RESTART_DELAY: Duration = Duration::from_millis(500);
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
/// A run at least this long refills the restart budget and resets the delay.
pub const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How long output readers may keep going after the process exited (a
/// grandchild that left the group can hold the pipe open).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// The handle the agent keeps for a supervised plugin.
pub struct Supervised {
    stop: mpsc::Sender<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    /// False once the plugin failed for good (no process, no restart due).
    active: Arc<std::sync::atomic::AtomicBool>,
}

impl Supervised {
    /// Starts `spec` and supervises it until stopped. Resolves once the first
    /// start succeeded (with the pid) or failed.
    pub async fn start(
        spec: LaunchSpec,
        events: mpsc::Sender<FromAgent>,
        desk: Arc<Desk>,
        calls_dir: Option<PathBuf>,
    ) -> Result<(Supervised, u32), String> {
        let (started_tx, started_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = mpsc::channel(1);
        let active = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let task = tokio::spawn(supervise(
            spec,
            events,
            Wiring { desk, calls_dir },
            stop_rx,
            started_tx,
            active.clone(),
        ));
        match started_rx.await {
            Ok(Ok(pid)) => Ok((
                Supervised {
                    stop: stop_tx,
                    task,
                    active,
                },
                pid,
            )),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("supervisor ended before the plugin started".into()),
        }
    }

    /// A process runs or a restart is due; false once it failed for good.
    pub fn is_active(&self) -> bool {
        !self.task.is_finished() && self.active.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops the plugin (if it still runs) and waits until it is gone.
    pub async fn stop(self) {
        let (done_tx, done_rx) = oneshot::channel();
        if self.stop.send(done_tx).await.is_ok() {
            let _ = done_rx.await;
        }
        let _ = self.task.await;
    }
}

fn state(plugin: &str, state: ProcessState) -> FromAgent {
    FromAgent::Event(Event::State {
        plugin: plugin.to_string(),
        state,
    })
}

/// Where a plugin's calls go besides its output.
struct Wiring {
    desk: Arc<Desk>,
    /// A LAN host's agent dir (see [`crate::direct`]).
    calls_dir: Option<PathBuf>,
}

async fn supervise(
    spec: LaunchSpec,
    events: mpsc::Sender<FromAgent>,
    wiring: Wiring,
    mut stop: mpsc::Receiver<oneshot::Sender<()>>,
    started: oneshot::Sender<Result<u32, String>>,
    active: Arc<std::sync::atomic::AtomicBool>,
) {
    let inactive = || active.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut started = Some(started);
    let mut restarts_left = spec.restart;
    let forever = spec.restart == Some(proto::RESTART_ALWAYS);
    // A plugin restarted without a limit waits up to 5 minutes, jittered:
    // it is never given up on, nor does it spin.
    let mut backoff = if forever {
        Backoff::new(FIRST_RESTART_DELAY, proto::MAX_ALWAYS_DELAY).jittered()
    } else {
        Backoff::new(FIRST_RESTART_DELAY, MAX_RESTART_DELAY)
    };
    loop {
        let started_at = std::time::Instant::now();
        let Run {
            mut child,
            readers,
            mut jail,
            own: _own,
        } = match spawn(&spec, &events, &wiring) {
            Ok(c) => c,
            Err(msg) => {
                match started.take() {
                    Some(tx) => {
                        let _ = tx.send(Err(msg));
                    }
                    None => {
                        let _ = events
                            .send(state(&spec.plugin, ProcessState::Failed { exit: msg }))
                            .await;
                    }
                }
                inactive();
                return wait_for_stop(stop).await;
            }
        };
        let pid = child.id().unwrap_or(0);
        if let Some(tx) = started.take() {
            let _ = tx.send(Ok(pid));
        }
        let _ = events
            .send(state(
                &spec.plugin,
                ProcessState::Running { pid, restarts_left },
            ))
            .await;

        tokio::select! {
            status = child.wait() => {
                // What it left behind, in its group or not, goes with it.
                jail.kill().await;
                drain(readers).await;
                let succeeded = status.as_ref().is_ok_and(|s| s.success());
                let exit = describe(status);
                if succeeded && spec.restart_on_failure {
                    // `on-failure`: a plugin that finished is done.
                    let _ = events.send(state(&spec.plugin, ProcessState::Stopped)).await;
                    inactive();
                    return wait_for_stop(stop).await;
                }
                if started_at.elapsed() >= HEALTHY_RUN {
                    // A healthy run earns the whole budget back, like
                    // systemd's StartLimitIntervalSec: a plugin that
                    // crashes once a week is not dead after N weeks.
                    restarts_left = spec.restart;
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                match restarts_left {
                    Some(n) if n > 0 => {
                        // Without a limit, nothing is used up.
                        let left = if forever { n } else { n - 1 };
                        restarts_left = Some(left);
                        let _ = events.send(state(&spec.plugin, ProcessState::Restarting {
                            exit,
                            delay_ms: delay.as_millis() as u64,
                            restarts_left: left,
                        })).await;
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            done = stop.recv() => {
                                let _ = events.send(state(&spec.plugin, ProcessState::Stopped)).await;
                                if let Some(done) = done { let _ = done.send(()); }
                                return;
                            }
                        }
                    }
                    _ => {
                        let _ = events.send(state(&spec.plugin, ProcessState::Failed { exit })).await;
                        inactive();
                        return wait_for_stop(stop).await;
                    }
                }
            }
            done = stop.recv() => {
                terminate(&mut child, &mut jail).await;
                drain(readers).await;
                let _ = events.send(state(&spec.plugin, ProcessState::Stopped)).await;
                if let Some(done) = done { let _ = done.send(()); }
                return;
            }
        }
    }
}

/// After the process is gone for good, the task stays until asked to stop so
/// that `stop` of a failed plugin is answered like any other.
async fn wait_for_stop(mut stop: mpsc::Receiver<oneshot::Sender<()>>) {
    if let Some(done) = stop.recv().await {
        let _ = done.send(());
    }
}

/// One run of a plugin: its process, the tasks reading its output, and
/// where all its processes are.
struct Run {
    child: Child,
    readers: Vec<JoinHandle<()>>,
    jail: Jail,
    own: Own,
}

fn spawn(
    spec: &LaunchSpec,
    events: &mpsc::Sender<FromAgent>,
    wiring: &Wiring,
) -> Result<Run, String> {
    let user = crate::user::resolve(&spec.plugin, spec.user.as_deref())?;
    let mut readable = Vec::new();
    let (argv, mut env, control, listener) = match &spec.program {
        Program::Command(argv) => (argv.clone(), Vec::new(), None, None),
        Program::Python {
            launch,
            core_plugins,
            proxy,
            direct,
        } => {
            let python::ShimCommand { argv, env, dir } = python::command(
                &spec.plugin,
                launch,
                &spec.cwd,
                core_plugins,
                *proxy,
                user.as_ref(),
                spec.python_env.as_deref(),
            )?;
            readable.push(dir);
            let pair = std::os::unix::net::UnixStream::pair()
                .map_err(|e| format!("cannot make the control socket: {e}"))?;
            let listener = match (direct, &wiring.calls_dir) {
                (Some(token), Some(dir)) if *proxy => direct_calls(&spec.plugin, dir, events)
                    .map(|listener| (listener, token.clone())),
                _ => None,
            };
            (argv, env, Some(pair), listener)
        }
    };
    if let Some((_, token)) = &listener {
        env.push(("AIGIS_CALLS_FD".into(), crate::direct::CALLS_FD.to_string()));
        env.push(("AIGIS_CALL_TOKEN".into(), token.0.clone()));
    }
    let (program, args) = argv.split_first().ok_or("LAUNCH is empty")?;
    let mut user_env = crate::user::clean_env(user.as_ref());
    if let Some(dir) = &spec.python_env {
        user_env.extend(crate::venv::vars(dir));
    }
    let switch = user.as_ref().and_then(|u| u.switch());
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(
            user_env
                .iter()
                .chain(&spec.env)
                .chain(env.iter())
                .map(|(k, v)| (k, v)),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // Above the descriptors they go to, so that putting one in place
    // never overwrites the other.
    let control = control
        .map(|(ours, theirs)| {
            Ok::<_, String>((ours, above(theirs.into(), python::CONTROL_FD + 1)?))
        })
        .transpose()?;
    let listener = listener
        .map(|(l, _)| above(l.into(), crate::direct::CALLS_FD + 1))
        .transpose()?;
    let control_fd = control.as_ref().map(|(_, theirs)| theirs.as_raw_fd());
    let listener_fd = listener.as_ref().map(|l| l.as_raw_fd());
    let (mut jail, cgroup) = Jail::prepare(&spec.plugin)?;
    let cgroup_fd = cgroup.as_ref().map(|fd| fd.as_raw_fd());
    let sandbox = match &spec.confine {
        Some(confine) => crate::confine::prepare(confine, &readable)?,
        None => None,
    };
    let sandbox_fd = sandbox.as_ref().map(crate::confine::Sandbox::fd);
    // SAFETY: only async-signal-safe calls between fork and exec. The
    // cgroup is joined first, so everything the plugin starts is in it;
    // then the plugin's user, if it has one. dup2 leaves the new descriptor
    // without FD_CLOEXEC, so the shim gets it; PR_SET_PDEATHSIG (after the
    // user change, which clears it) makes the plugin die with an agent that
    // was killed before it could stop it (no orphan keeps running
    // unsupervised).
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = cgroup_fd {
                crate::contain::join(fd)?;
            }
            // Confined before the user changes: nothing the plugin runs
            // ever is unconfined.
            if let Some(fd) = sandbox_fd {
                crate::confine::enter(fd)?;
            }
            if let Some(switch) = &switch {
                switch.apply()?;
            }
            #[cfg(target_os = "linux")]
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if let Some(fd) = control_fd {
                if libc::dup2(fd, python::CONTROL_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(fd) = listener_fd {
                if libc::dup2(fd, crate::direct::CALLS_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let as_user = user
        .as_ref()
        .map(|u| format!(" as user `{}`", u.name))
        .unwrap_or_default();
    let (mut child, own) = crate::contain::spawn(&mut cmd).map_err(|e| {
        format!(
            "could not start {argv:?} in {}{as_user}: {e}",
            spec.cwd.display()
        )
    })?;
    drop(cgroup);
    drop(listener); // the shim's now
    jail.started(child.id().unwrap_or(0));
    let mut readers = Vec::with_capacity(3);
    if let Some(out) = child.stdout.take() {
        readers.push(relay(out, OutputStream::Stdout, &spec.plugin, events));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(relay(err, OutputStream::Stderr, &spec.plugin, events));
    }
    if let Some((ours, theirs)) = control {
        drop(theirs);
        // On the central host, central answers on this socket itself.
        if !crate::lane::hand_over(&spec.plugin, &ours) {
            match relay_control(ours, &spec.plugin, events, &wiring.desk) {
                Ok(task) => readers.push(task),
                Err(e) => warn_plugin(&spec.plugin, events, e),
            }
        }
    }
    Ok(Run {
        child,
        readers,
        jail,
        own,
    })
}

/// The listening socket of `plugin`'s direct calls in the agent dir `dir`;
/// `None` (its calls go through the agent, said in its log) when it cannot
/// be made.
fn direct_calls(
    plugin: &str,
    dir: &Path,
    events: &mpsc::Sender<FromAgent>,
) -> Option<std::os::unix::net::UnixListener> {
    match crate::direct::listen(dir, plugin) {
        Ok(listener) => listener,
        Err(e) => {
            note_plugin(
                plugin,
                events,
                format!("its calls go through the agent: cannot make their socket: {e}"),
            );
            None
        }
    }
}

/// `fd` as a descriptor numbered `floor` or above (close-on-exec, as the
/// original was): a descriptor below the ones a child gets by `dup2`
/// could be overwritten by another before its own turn.
fn above(fd: OwnedFd, floor: i32) -> Result<OwnedFd, String> {
    if fd.as_raw_fd() >= floor {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC of a descriptor we own; the new one is ours.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, floor) };
    if new < 0 {
        return Err(format!(
            "cannot place a plugin's socket: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `new` was just made and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn warn_plugin(plugin: &str, events: &mpsc::Sender<FromAgent>, e: std::io::Error) {
    note_plugin(plugin, events, format!("the control socket failed: {e}"));
}

/// A line of the agent's own in the plugin's stderr.
fn note_plugin(plugin: &str, events: &mpsc::Sender<FromAgent>, line: String) {
    let note = crate::output::agent_note(plugin, OutputStream::Stderr, &line);
    let _ = events.try_send(FromAgent::Event(note));
}

/// Passes the shim's control messages to central and central's answers back.
///
/// A message over [`proto::control_limit`] (the shim refuses to send one;
/// this is for a shim that does not) is read and dropped in bounded chunks,
/// never held whole, and an AigisProxy call among them is answered with an
/// error: it fails alone, the link goes on.
fn relay_control(
    sock: std::os::unix::net::UnixStream,
    plugin: &str,
    events: &mpsc::Sender<FromAgent>,
    desk: &Arc<Desk>,
) -> std::io::Result<JoinHandle<()>> {
    let (rd, replies) = crate::quiet::split(sock)?;
    // A call's length and body come in one read.
    let mut rd = tokio::io::BufReader::with_capacity(64 * 1024, rd);
    let replies = Arc::new(replies);
    let open = OpenControl::new(plugin, desk, replies.clone());
    let limit = proto::control_limit(plugin);
    let plugin = plugin.to_string();
    let events = events.clone();
    let desk = desk.clone();
    Ok(tokio::spawn(async move {
        let _open = open;
        loop {
            let payload = match crate::calls::read_shim_frame(&mut rd, limit).await {
                Ok(Some(ShimRead::Frame(payload))) => payload,
                Ok(Some(ShimRead::TooBig {
                    len,
                    call: Some(id),
                })) => {
                    replies.send(crate::calls::too_big_call(&id, len, limit));
                    continue;
                }
                Ok(Some(ShimRead::TooBig { len, call: None })) => {
                    note_plugin(
                        &plugin,
                        &events,
                        format!(
                            "skipped a control message of {len} bytes from the plugin: \
                             at most {limit} may cross to central"
                        ),
                    );
                    continue;
                }
                Ok(None) | Err(_) => break,
            };
            let call = match crate::calls::from_shim(payload) {
                Ok(call) => call,
                Err(e) => {
                    warn_plugin(&plugin, &events, std::io::Error::other(e));
                    continue;
                }
            };
            desk.call(&plugin, call).await;
        }
    }))
}

/// A plugin's control socket known to the desk, with the task that writes
/// what waits for it; both go when the relay ends or is aborted.
struct OpenControl {
    plugin: String,
    desk: Arc<Desk>,
    replies: Arc<Replies>,
    flusher: JoinHandle<()>,
}

impl OpenControl {
    fn new(plugin: &str, desk: &Arc<Desk>, replies: Arc<Replies>) -> OpenControl {
        desk.open(plugin, replies.clone());
        let flusher = tokio::spawn({
            let replies = replies.clone();
            async move { replies.flush().await }
        });
        OpenControl {
            plugin: plugin.to_string(),
            desk: desk.clone(),
            replies,
            flusher,
        }
    }
}

impl Drop for OpenControl {
    fn drop(&mut self) {
        self.flusher.abort();
        self.desk.close(&self.plugin, &self.replies);
    }
}

async fn drain(readers: Vec<JoinHandle<()>>) {
    for mut r in readers {
        if tokio::time::timeout(DRAIN_TIMEOUT, &mut r).await.is_err() {
            r.abort();
        }
    }
}

/// SIGTERM to every process of the plugin, up to [`STOP_GRACE`] for the
/// leader to exit, then SIGKILL to every one left (also the stragglers of
/// a leader that exited in time).
async fn terminate(child: &mut Child, jail: &mut Jail) {
    jail.signal(libc::SIGTERM);
    let exited = tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok();
    jail.kill().await;
    if !exited {
        let _ = child.wait().await;
    }
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => "exited".to_string(),
        },
        Err(e) => format!("could not be waited for: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(payload);
        out
    }

    fn read_frame(sock: &mut std::os::unix::net::UnixStream) -> Vec<u8> {
        let mut len = [0u8; 4];
        sock.read_exact(&mut len).unwrap();
        let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
        sock.read_exact(&mut payload).unwrap();
        payload
    }

    /// A frame over the limit is skipped and answered; the link goes on.
    #[tokio::test]
    async fn an_oversized_control_frame_fails_alone() {
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let (events_tx, mut events) = mpsc::channel(16);
        let desk = Arc::new(Desk::default());
        let (link_tx, mut link) = mpsc::channel(16);
        desk.attach(link_tx);
        let task = relay_control(ours, "big", &events_tx, &desk).unwrap();

        let shim = std::thread::spawn(move || {
            let mut call = b"C".to_vec();
            call.extend_from_slice(&42u64.to_be_bytes());
            call.resize(9 * 1024 * 1024, 0x55);
            theirs.write_all(&frame(&call)).unwrap();
            let json = vec![b' '; 9 * 1024 * 1024];
            theirs.write_all(&frame(&json)).unwrap();
            theirs
                .write_all(&frame(b"C\0\0\0\0\0\0\0\x07small"))
                .unwrap();
            let reply = read_frame(&mut theirs);
            (reply, theirs)
        });

        // The small call after the two oversized frames reaches central's
        // link; the oversized JSON request (no id to answer) was noted in the
        // plugin's log before it.
        let got: crate::outbox::Outgoing =
            tokio::time::timeout(Duration::from_secs(10), link.recv())
                .await
                .expect("the small call was not relayed")
                .unwrap();
        match &*got {
            FromAgent::Event(Event::Call {
                plugin,
                call: proto::Call::Proxy(payload),
            }) => {
                assert_eq!(plugin, "big");
                assert_eq!(payload, b"C\0\0\0\0\0\0\0\x07small");
            }
            other => panic!("unexpected {other:?}"),
        }
        let mut warned = Vec::new();
        while let Ok(FromAgent::Event(Event::Output { lines, .. })) = events.try_recv() {
            warned.extend(lines.iter().map(String::from))
        }
        assert_eq!(
            warned,
            [format!(
                "aigis-agent: skipped a control message of {} bytes from the plugin: \
                 at most {} may cross to central",
                9 * 1024 * 1024,
                proto::MAX_CONTROL
            )]
        );
        let (reply, mut theirs) = tokio::task::spawn_blocking(move || shim.join())
            .await
            .unwrap()
            .unwrap();
        // The oversized call got an error reply with its id.
        assert_eq!(&reply[..10], b"R\0\0\0\0\0\0\0\x2a\x01");
        let info: serde_json::Value = serde_json::from_slice(&reply[10..]).unwrap();
        assert_eq!(info["type"], "ValueError");
        assert_eq!(
            info["message"],
            format!(
                "the call's arguments are {} bytes pickled; at most {} may cross to central",
                9 * 1024 * 1024 - 9,
                proto::MAX_CONTROL - 9
            )
        );
        // Nothing else was sent to the shim (no answer to the JSON request,
        // which was skipped before the small call was relayed).
        theirs.set_nonblocking(true).unwrap();
        let more = theirs.read(&mut [0u8; 1]);
        assert!(
            matches!(&more, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "{more:?}"
        );
        drop(theirs);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the relay did not end with the socket")
            .unwrap();
    }
}
