//! Running the real `aigis` binary in tests: capture its output, wait for
//! lines, signal it, and check which processes are still alive.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A binary of this workspace, built next to the test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built; run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

/// Polls `cond` every 50 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True when `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            state != Some("Z")
        }
        Err(_) => false,
    }
}

/// Direct children of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) {
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(pid) {
                out.push(child);
            }
        }
    }
    out
}

pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A running `aigis` process whose stdout and stderr are collected.
pub struct Daemon {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Daemon {
    /// Starts `aigis ARGS...` in `cwd`.
    pub fn start(cwd: &Path, args: &[&str]) -> Daemon {
        Self::start_with_env(cwd, args, &[])
    }

    pub fn start_with_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Self::command(cwd, args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn(cmd)
    }

    /// The command [`Daemon::start`] runs, for a test that needs to change
    /// it before it starts (resource limits, environment).
    pub fn command(cwd: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("aigis"));
        cmd.args(args)
            .current_dir(cwd)
            .env_remove("AIGIS_HOME")
            .env("AIGIS_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        cmd
    }

    /// Starts `cmd` (made by [`Daemon::command`]) and collects its output.
    pub fn spawn(mut cmd: Command) -> Daemon {
        let mut child = cmd.spawn().expect("start aigis");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            std::thread::spawn(move || collect(stream, output));
        }
        Daemon { child, output }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Waits until the output contains `needle`; panics with the output if not.
    pub fn expect_output(&self, needle: &str, limit: Duration) {
        if !wait_until(limit, || self.output().contains(needle)) {
            panic!(
                "aigis did not print {needle:?} within {limit:?}; output so far:\n{}",
                self.output()
            );
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain syscall on a pid this test started.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }

    /// Waits for exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // A failed test must not leave a daemon behind: SIGTERM first so
            // it stops its plugins, SIGKILL if that does not work.
            self.signal(libc::SIGTERM);
            if self.wait_exit(Duration::from_secs(8)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

fn collect(mut stream: Box<dyn Read + Send>, output: Arc<Mutex<String>>) {
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Ok(mut o) = output.lock() {
                    o.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        }
    }
}

/// Writes `contents` to `dir/rel`, creating parent directories.
pub fn write(dir: &Path, rel: &str, contents: &str) -> PathBuf {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create dirs");
    }
    std::fs::write(&path, contents).expect("write file");
    path
}

/// `aigis ARGS...` in `cwd`, for at most a minute; (success, stdout + stderr).
pub fn aigis(cwd: &Path, args: &[&str]) -> (bool, String) {
    aigis_within(cwd, args, Duration::from_secs(60)).expect("aigis did not finish within a minute")
}

/// Runs `aigis ARGS...` in `cwd` to completion, for at most `limit` (then
/// it is killed and `None` returned); returns (success, stdout + stderr).
pub fn aigis_within(cwd: &Path, args: &[&str], limit: Duration) -> Option<(bool, String)> {
    let mut child = Command::new(bin("aigis"))
        .args(args)
        .current_dir(cwd)
        .env_remove("AIGIS_HOME")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run aigis");
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let out = child.wait_with_output().expect("collect aigis output");
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    ))
}
