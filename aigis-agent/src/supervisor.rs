//! One task per plugin process: start it, relay its output, restart it after
//! unexpected exits, stop it on request.
//!
//! Invariants:
//! - Every plugin runs in its own process group; stopping means SIGTERM to the
//!   group, [`STOP_GRACE`], then SIGKILL to the group. The child is always
//!   waited for, so no zombie is left.
//! - `RESTART = N` allows at most N restarts after exits nobody asked for, with
//!   a delay that doubles from [`FIRST_RESTART_DELAY`] up to [`MAX_RESTART_DELAY`].
//! - Output lines of one run are all sent before the state change that ends it.

use crate::output::relay_lines;
use proto::{Event, FromAgent, LaunchSpec, OutputStream, ProcessState};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub const STOP_GRACE: Duration = Duration::from_secs(5);
pub const FIRST_RESTART_DELAY: Duration = Duration::from_millis(500);
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
/// How long output readers may keep going after the process exited (a
/// grandchild that left the group can hold the pipe open).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// The handle the agent keeps for a supervised plugin.
pub struct Supervised {
    stop: mpsc::Sender<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Supervised {
    /// Starts `spec` and supervises it until stopped. Resolves once the first
    /// start succeeded (with the pid) or failed.
    pub async fn start(
        spec: LaunchSpec,
        events: mpsc::Sender<FromAgent>,
    ) -> Result<(Supervised, u32), String> {
        let (started_tx, started_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = mpsc::channel(1);
        let task = tokio::spawn(supervise(spec, events, stop_rx, started_tx));
        match started_rx.await {
            Ok(Ok(pid)) => Ok((
                Supervised {
                    stop: stop_tx,
                    task,
                },
                pid,
            )),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("supervisor ended before the plugin started".into()),
        }
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
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

async fn supervise(
    spec: LaunchSpec,
    events: mpsc::Sender<FromAgent>,
    mut stop: mpsc::Receiver<oneshot::Sender<()>>,
    started: oneshot::Sender<Result<u32, String>>,
) {
    let mut started = Some(started);
    let mut restarts_left = spec.restart;
    let mut delay = FIRST_RESTART_DELAY;
    loop {
        let (mut child, readers) = match spawn(&spec, &events) {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("could not start {:?}: {e}", spec.argv);
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
                kill_group(pid, libc::SIGKILL);
                drain(readers).await;
                let exit = describe(status);
                match restarts_left {
                    Some(n) if n > 0 => {
                        restarts_left = Some(n - 1);
                        let _ = events.send(state(&spec.plugin, ProcessState::Restarting {
                            exit,
                            delay_ms: delay.as_millis() as u64,
                            restarts_left: n - 1,
                        })).await;
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            done = stop.recv() => {
                                let _ = events.send(state(&spec.plugin, ProcessState::Stopped)).await;
                                if let Some(done) = done { let _ = done.send(()); }
                                return;
                            }
                        }
                        delay = (delay * 2).min(MAX_RESTART_DELAY);
                    }
                    _ => {
                        let _ = events.send(state(&spec.plugin, ProcessState::Failed { exit })).await;
                        return wait_for_stop(stop).await;
                    }
                }
            }
            done = stop.recv() => {
                terminate(&mut child, pid).await;
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

fn spawn(
    spec: &LaunchSpec,
    events: &mpsc::Sender<FromAgent>,
) -> std::io::Result<(Child, Vec<JoinHandle<()>>)> {
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty LAUNCH"))?;
    let mut child = Command::new(program)
        .args(args)
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let mut readers = Vec::with_capacity(2);
    if let Some(out) = child.stdout.take() {
        readers.push(relay(out, OutputStream::Stdout, &spec.plugin, events));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(relay(err, OutputStream::Stderr, &spec.plugin, events));
    }
    Ok((child, readers))
}

/// Relays one of a process's output streams as `Output` events.
pub fn relay<R>(
    stream: R,
    which: OutputStream,
    plugin: &str,
    events: &mpsc::Sender<FromAgent>,
) -> JoinHandle<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let plugin = plugin.to_string();
    let events = events.clone();
    tokio::spawn(async move {
        relay_lines(stream, |line| {
            let msg = FromAgent::Event(Event::Output {
                plugin: plugin.clone(),
                stream: which,
                line,
            });
            let events = events.clone();
            async move {
                let _ = events.send(msg).await;
            }
        })
        .await
    })
}

async fn drain(readers: Vec<JoinHandle<()>>) {
    for mut r in readers {
        if tokio::time::timeout(DRAIN_TIMEOUT, &mut r).await.is_err() {
            r.abort();
        }
    }
}

/// SIGTERM to the group, up to [`STOP_GRACE`] for the leader to exit, then
/// SIGKILL to the group (which also takes any stragglers).
async fn terminate(child: &mut Child, pid: u32) {
    kill_group(pid, libc::SIGTERM);
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        kill_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
    } else {
        kill_group(pid, libc::SIGKILL);
    }
}

fn kill_group(pgid: u32, signal: i32) {
    if pgid > 1 {
        // SAFETY: killpg has no memory-safety preconditions; ESRCH (group
        // already gone) is the expected outcome after a clean exit.
        unsafe {
            libc::killpg(pgid as libc::pid_t, signal);
        }
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
