//! Benchmark: every path a call or a line takes through AIGIS, each against
//! its floor measured in the same run on the same machine, in one table.
//!
//! Run: cargo build --release --bins && cargo bench -p aigis-e2e --bench wire
//! (needs sshd and ssh, like the end-to-end tests). Words after `--` pick
//! rows by name: `... --bench wire -- "central host" 1M`.
//!
//! One OpenSSH sshd on 127.0.0.2 plays the LAN host `lan1` (a
//! `~/.ssh/config` in a temporary HOME, given to aigis as `HOME=` and to
//! OpenSSH's `ssh` with `-F`). Every row starts its own `aigis run`, waits
//! for what it measures, and stops it; internal plugins measure their own
//! calls with `time.perf_counter()` after a warm-up and write the numbers to
//! `bench.json` in their directory (under the remote dir for remote ones).
//! Each row must finish within `ROW_LIMIT` or it is reported as failed.
//!
//! Prints one aligned table (path | measured | floor | ratio | target | met?)
//! and then every row as a JSON line, for diffing runs.

use aigis_e2e::process::{alive, children, wait_until, write, Daemon};
use aigis_e2e::sshd::{central_place, Sshd};
use russh::client;
use russh::keys::{load_secret_key, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use serde_json::{json, Value};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A row that has not finished by then fails, with what it was waiting for.
const ROW_LIMIT: Duration = Duration::from_secs(300);
const PAYLOAD: usize = 64;
const WARM_UP: usize = 200;
const SEQ_CALLS: usize = 2000;
const PARALLEL: usize = 8;
const PARALLEL_CALLS: usize = 1000;
const MIB: usize = 1 << 20;
const BLOB_WARM_UP: usize = 5;
const BLOBS: usize = 50;
const LINES: usize = 1_000_000;
/// 10 digits, a space, 50 letters: 61 bytes and the newline make 62.
const FILLER: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX";
const MANY: usize = 100;
const IDLE_WINDOW: Duration = Duration::from_secs(5);
const STARTUP_FLOOR_RUNS: usize = 5;

/// The sequential call rows' count: `AIGIS_BENCH_CALLS` raises it, to keep
/// a row running long enough for a profiler (`perf record -a`) to see it.
fn seq_calls() -> usize {
    std::env::var("AIGIS_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SEQ_CALLS)
}

// ---------------------------------------------------------------------------
// Rows and the table

/// What a row must reach.
#[derive(Clone, Copy)]
enum Target {
    /// measured / floor >= x (more is better).
    RatioAtLeast(f64),
    /// measured / floor <= x (less is better).
    RatioAtMost(f64),
    /// measured < x, in the row's unit (no floor).
    Below(f64),
    /// No target: the number says something on its own.
    Informative,
}

struct Floor {
    what: String,
    value: f64,
}

struct Row {
    path: String,
    unit: &'static str,
    measured: f64,
    floor: Option<Floor>,
    target: Target,
    /// Further numbers for the JSON line (p99, counts, ...).
    extra: Value,
}

/// A row, or why it could not be measured.
type Outcome = Result<Row, (String, String)>;

impl Row {
    fn new(path: &str, unit: &'static str, measured: f64, target: Target) -> Row {
        Row {
            path: path.to_string(),
            unit,
            measured,
            floor: None,
            target,
            extra: json!({}),
        }
    }

    fn floor(mut self, what: &str, value: f64) -> Row {
        self.floor = Some(Floor {
            what: what.to_string(),
            value,
        });
        self
    }

    fn extra(mut self, extra: Value) -> Row {
        self.extra = extra;
        self
    }

    fn ratio(&self) -> Option<f64> {
        self.floor.as_ref().map(|f| self.measured / f.value)
    }

    fn met(&self) -> Option<bool> {
        match (self.target, self.ratio()) {
            (Target::RatioAtLeast(x), Some(r)) => Some(r >= x),
            (Target::RatioAtMost(x), Some(r)) => Some(r <= x),
            (Target::Below(x), _) => Some(self.measured < x),
            _ => None,
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::RatioAtLeast(x) => format!(">= {x}x floor"),
            Target::RatioAtMost(x) => format!("<= {x}x floor"),
            Target::Below(x) => format!("< {} {}", number(x), self.unit),
            Target::Informative => "informative".into(),
        }
    }

    fn json(&self) -> Value {
        json!({
            "path": self.path,
            "unit": self.unit,
            "measured": self.measured,
            "floor": self.floor.as_ref().map(|f| f.value),
            "floor_what": self.floor.as_ref().map(|f| f.what.clone()),
            "ratio": self.ratio(),
            "target": self.target_text(),
            "met": self.met(),
            "extra": self.extra,
        })
    }
}

fn number(v: f64) -> String {
    if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn print_table(outcomes: &[Outcome]) {
    let mut cells: Vec<[String; 6]> = vec![[
        "path".into(),
        "measured".into(),
        "floor".into(),
        "ratio".into(),
        "target".into(),
        "met?".into(),
    ]];
    for o in outcomes {
        cells.push(match o {
            Ok(r) => [
                r.path.clone(),
                format!("{} {}", number(r.measured), r.unit),
                r.floor
                    .as_ref()
                    .map(|f| format!("{} {} ({})", number(f.value), r.unit, f.what))
                    .unwrap_or_else(|| "-".into()),
                r.ratio()
                    .map(|x| format!("{x:.3}x"))
                    .unwrap_or_else(|| "-".into()),
                r.target_text(),
                match r.met() {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "-".into(),
                },
            ],
            Err((path, _)) => [
                path.clone(),
                "FAILED".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "FAILED".into(),
            ],
        });
    }
    let mut width = [0usize; 6];
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |row: &[String; 6]| {
        let parts: Vec<String> = row
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("| {} |", parts.join(" | "));
    };
    line(&cells[0]);
    let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
    println!("|-{}-|", rule.join("-|-"));
    for row in &cells[1..] {
        line(row);
    }
    for o in outcomes {
        if let Err((path, why)) = o {
            println!("FAILED {path}: {why}");
        }
    }
}

// ---------------------------------------------------------------------------
// Shared helpers: time limits, statistics, processes

/// The time limit of one row.
struct Deadline {
    row: &'static str,
    end: Instant,
}

impl Deadline {
    fn new(row: &'static str) -> Deadline {
        Deadline {
            row,
            end: Instant::now() + ROW_LIMIT,
        }
    }

    fn remaining(&self) -> Duration {
        self.end.saturating_duration_since(Instant::now())
    }

    /// Waits for `cond`, or fails the row saying what did not happen.
    fn wait(&self, what: &str, daemon: Option<&Daemon>, cond: impl FnMut() -> bool) {
        if !wait_until(self.remaining(), cond) {
            self.fail(what, daemon);
        }
    }

    fn fail(&self, what: &str, daemon: Option<&Daemon>) -> ! {
        let output = daemon.map(|d| tail(&d.output(), 3000)).unwrap_or_default();
        panic!(
            "row `{}`: {what} did not finish within {} s{}",
            self.row,
            ROW_LIMIT.as_secs(),
            if output.is_empty() {
                String::new()
            } else {
                format!("; aigis said:\n{output}")
            }
        )
    }
}

fn tail(text: &str, n: usize) -> String {
    let skip = text.chars().count().saturating_sub(n);
    text.chars().skip(skip).collect()
}

struct Stats {
    calls: usize,
    per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

fn stats(mut lat_us: Vec<f64>, total_s: f64) -> Stats {
    assert!(!lat_us.is_empty(), "no latencies");
    lat_us.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| lat_us[((lat_us.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        calls: lat_us.len(),
        per_s: lat_us.len() as f64 / total_s,
        p50_us: p(0.5),
        p99_us: p(0.99),
    }
}

fn stats_json(s: &Stats) -> Value {
    json!({"calls": s.calls, "calls_per_s": s.per_s, "p50_us": s.p50_us, "p99_us": s.p99_us})
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// A child with piped stdin/stdout that is killed when the row's deadline
/// passes (so a blocked read ends) and always when dropped.
struct Piped {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    cancel: Option<mpsc::Sender<()>>,
    watchdog: Option<std::thread::JoinHandle<()>>,
}

impl Piped {
    fn spawn(mut cmd: Command, deadline: &Deadline) -> Piped {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("row `{}`: cannot start {cmd:?}: {e}", deadline.row));
        let pid = child.id() as libc::pid_t;
        let (cancel, cancelled) = mpsc::channel::<()>();
        let limit = deadline.remaining();
        let watchdog = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = cancelled.recv_timeout(limit) {
                // SAFETY: kill(2) of our own child, not yet reaped (Drop
                // cancels this thread before it waits for the child).
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        });
        Piped {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            child,
            cancel: Some(cancel),
            watchdog: Some(watchdog),
        }
    }

    fn io(&mut self) -> (&mut ChildStdin, &mut ChildStdout) {
        (
            self.stdin.as_mut().expect("stdin"),
            self.stdout.as_mut().expect("stdout"),
        )
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        self.stdin = None;
        self.stdout = None;
        self.cancel = None;
        if let Some(w) = self.watchdog.take() {
            let _ = w.join();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` to its end within the deadline; its wall time.
fn run_bounded(mut cmd: Command, deadline: &Deadline, what: &str) -> (Duration, String) {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("row `{}`: cannot start {what}: {e}", deadline.row));
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let took = start.elapsed();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            assert!(status.success(), "{what} failed ({status}): {err}");
            return (took, err);
        }
        if deadline.remaining().is_zero() {
            let _ = child.kill();
            let _ = child.wait();
            deadline.fail(what, None);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Floor helper: `n` ping-pongs of `PAYLOAD` bytes through a child that
/// echoes its stdin (after `WARM_UP` unmeasured ones).
fn ping_pong(mut cmd_child: Piped, n: usize, deadline: &Deadline, what: &str) -> Stats {
    let ping = [7u8; PAYLOAD];
    let mut pong = [0u8; PAYLOAD];
    let (stdin, stdout) = cmd_child.io();
    let mut one = || -> std::io::Result<()> {
        stdin.write_all(&ping)?;
        stdout.read_exact(&mut pong)
    };
    for _ in 0..WARM_UP {
        one().unwrap_or_else(|e| stopped(deadline, what, e));
    }
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        one().unwrap_or_else(|e| stopped(deadline, what, e));
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    assert_eq!(pong, ping, "{what} echoed something else");
    stats(lat, start.elapsed().as_secs_f64())
}

/// The floor as a plugin sees it: the same `PAYLOAD`-byte ping-pong,
/// driven by `python3` (the language internal plugins are written in)
/// through `cmd`'s pipes, `n` times after `WARM_UP`. A Python caller pays
/// its own interpreter on every round trip; so does every plugin's call.
///
/// Also the CPU each process on the floor's path used a round trip, read
/// as for a plugin's calls ([`call_path`], [`cpu_per_call`]): `python`,
/// its child (`cat`, or `ssh` and through `sshd` the session and `cat`),
/// so a row's gap can be put on the hop that makes it. The script says
/// `ready` once warm, waits for `go`, prints its figures and waits for
/// the CPU to be read again before it ends.
fn python_ping_pong(
    cmd: &Command,
    sshd: Option<u32>,
    n: usize,
    deadline: &Deadline,
    what: &str,
) -> (Stats, Value) {
    const SCRIPT: &str = r#"
import json, os, subprocess, sys, time
argv, n, warm, size = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
w, r = child.stdin.fileno(), child.stdout.fileno()
ping = b"\x07" * size
def one():
    os.write(w, ping)
    got = b""
    while len(got) < size:
        k = os.read(r, size - len(got))
        if not k:
            raise SystemExit("the child closed its output")
        got += k
    assert got == ping
for _ in range(warm):
    one()
print("ready", flush=True)
sys.stdin.readline()
lat = []
start = time.perf_counter()
for _ in range(n):
    t = time.perf_counter()
    one()
    lat.append((time.perf_counter() - t) * 1e6)
total = time.perf_counter() - start
print(json.dumps({"lat": lat, "total": total}), flush=True)
sys.stdin.readline()
child.stdin.close()
child.wait()
"#;
    let argv: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut py = Command::new("python3");
    py.args(["-c", SCRIPT])
        .arg(serde_json::to_string(&argv).expect("argv"))
        .arg(n.to_string())
        .arg(WARM_UP.to_string())
        .arg(PAYLOAD.to_string());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => py.env(k, v),
            None => py.env_remove(k),
        };
    }
    let mut script = Piped::spawn(py, deadline);
    let pid = script.child.id();
    let (stdin, stdout) = script.io();
    let mut said = std::io::BufReader::new(stdout);
    let mut line = String::new();
    let mut next_line = |line: &mut String| {
        line.clear();
        match said.read_line(line) {
            Ok(0) => panic!("row `{}`: {what} ended early", deadline.row),
            Ok(_) => {}
            Err(e) => stopped(deadline, what, e),
        }
    };
    next_line(&mut line);
    let path = call_path(("python", pid), sshd);
    let before: Vec<Option<f64>> = path.iter().map(|(_, pid)| cpu_us(*pid)).collect();
    writeln!(stdin, "go").unwrap_or_else(|e| stopped(deadline, what, e));
    next_line(&mut line);
    let cpu = cpu_per_call(&path, &before, n);
    writeln!(stdin, "done").unwrap_or_else(|e| stopped(deadline, what, e));
    let v: Value = serde_json::from_str(&line).expect("the floor's figures");
    (plugin_stats(&v), cpu)
}

fn stopped(deadline: &Deadline, what: &str, e: std::io::Error) -> ! {
    if deadline.remaining().is_zero() {
        deadline.fail(what, None)
    }
    panic!("row `{}`: {what} stopped: {e}", deadline.row)
}

// ---------------------------------------------------------------------------
// The environment every row shares

struct Ctx {
    base: PathBuf,
    sshd: Sshd,
    /// The temporary HOME with `.ssh/config` (host `lan1`) and `known_hosts`.
    user: PathBuf,
    /// Sources of the plugins, written once.
    src: PathBuf,
}

impl Ctx {
    fn new(base: &Path) -> Ctx {
        let sshd = Sshd::start(&base.join("sshd"), "127.0.0.2");
        let user = base.join("user");
        write(&user, ".ssh/config", &sshd.config_entry("lan1"));
        write(&user, ".ssh/known_hosts", &sshd.known_hosts_line);
        let src = base.join("src");
        write(
            &src.join("echo"),
            "AIGIS/AIGIS.config",
            "PLUGIN_TYPE = 'core'\nENTRYPOINT = '{root}'\n",
        );
        write(
            &src.join("echo"),
            "AIGIS/AIGIS.core",
            "import echo_impl as echo\nSKILLS = ['echo.ping', 'echo.blob']\n",
        );
        write(
            &src.join("echo"),
            "echo_impl.py",
            "import os\n\n_BLOB = os.urandom(1 << 20)  # not to measure urandom\n\n\
             def ping(x):\n    return x\n\n\
             def blob(n):\n    return _BLOB[:n] if n <= len(_BLOB) else os.urandom(n)\n",
        );
        Ctx {
            base: base.to_path_buf(),
            sshd,
            user,
            src,
        }
    }

    /// OpenSSH's client to `lan1` running `remote`: no connection sharing,
    /// no prompts, only the test's key and known_hosts.
    fn ssh(&self, remote: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F")
            .arg(self.user.join(".ssh/config"))
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.user.join(".ssh/known_hosts").display()
            ))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "ControlMaster=no",
                "-o",
                "ControlPath=none",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "LogLevel=ERROR",
                "-T",
                "lan1",
                remote,
            ])
            .env("HOME", &self.user)
            .env_remove("SSH_AUTH_SOCK");
        cmd
    }

    /// Floor: 64-byte ping-pong through `ssh lan1 cat`, from a Rust client.
    fn ssh_cat_floor(&self, deadline: &Deadline) -> Stats {
        let cat = Piped::spawn(self.ssh("cat"), deadline);
        ping_pong(cat, seq_calls(), deadline, "the `ssh lan1 cat` floor")
    }

    /// Floor: the same ping-pong from `python3`, as a plugin calls, and
    /// the CPU of each process on its path.
    fn ssh_cat_python_floor(&self, deadline: &Deadline) -> (Stats, Value) {
        let what = "the `ssh lan1 cat` floor from python3";
        let sshd = Some(self.sshd.pid());
        python_ping_pong(&self.ssh("cat"), sshd, seq_calls(), deadline, what)
    }

    /// Writes an internal plugin that calls `call` (a Python expression
    /// using `payload`) `calls` times after a warm-up and writes bench.json.
    /// With `go`, it waits for that file to exist before measuring (after
    /// writing `ready`).
    fn caller(
        &self,
        name: &str,
        host: Option<&str>,
        call: &str,
        calls: usize,
        warm_up: usize,
        go: Option<&Path>,
    ) {
        let dir = self.src.join(name);
        let host = host.map(|h| format!("HOST = '{h}'\n")).unwrap_or_default();
        write(
            &dir,
            "AIGIS/AIGIS.config",
            &format!(
                "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{{root}}'\nLAUNCH = 'main.py'\n{host}"
            ),
        );
        let go = go.map(|g| g.display().to_string()).unwrap_or_default();
        write(
            &dir,
            "main.py",
            &format!(
                r#"import json, os, time
import aigis

PAYLOAD = b"x" * {PAYLOAD}
GO = {go:?}


def call(payload):
    return {call}


def launch(log):
    first = call(PAYLOAD)
    for _ in range({warm_up}):
        call(PAYLOAD)
    if GO:
        open("ready", "w").close()
        while not os.path.exists(GO):
            time.sleep(0.001)
    lat = []
    wall_start = time.time()
    start = time.perf_counter()
    for _ in range({calls}):
        t = time.perf_counter()
        call(PAYLOAD)
        lat.append((time.perf_counter() - t) * 1e6)
    total = time.perf_counter() - start
    wall_end = time.time()
    with open("bench.tmp", "w") as f:
        json.dump({{"lat": lat, "total": total, "wall_start": wall_start,
                   "wall_end": wall_end, "first_len": len(first)}}, f)
    os.rename("bench.tmp", "bench.json")
    while True:
        time.sleep(1)
"#
            ),
        );
    }

    /// Starts `aigis run` for a row: its own directory and home, `lan1`'s
    /// remote dir under `hosts` (the agent is uploaded once per `hosts`).
    fn aigis(&self, row: &str, hosts: &str, sections: &str) -> (Daemon, PathBuf) {
        self.aigis_logging(row, hosts, sections, "warn")
    }

    /// As [`Ctx::aigis`], with `AIGIS_LOG=level` (the console's timestamps
    /// then show where start-up time goes).
    fn aigis_logging(
        &self,
        row: &str,
        hosts: &str,
        sections: &str,
        level: &str,
    ) -> (Daemon, PathBuf) {
        let dir = self.base.join("rows").join(row);
        let home = dir.join("home");
        write(
            &dir,
            "aigis.toml",
            &format!(
                "[aigis]\nremote_dir = \"{}/{{host}}\"\nlog_max_bytes = 4294967296\n\n{sections}",
                self.base.join(hosts).display()
            ),
        );
        let daemon = Daemon::start_with_env(
            &dir,
            &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
            &[("HOME", self.user.to_str().unwrap()), ("AIGIS_LOG", level)],
        );
        (daemon, home)
    }

    fn echo_section(&self) -> String {
        format!("[core]\necho = \"{}\"\n", self.src.join("echo").display())
    }

    /// Stops a row's aigis and kills (by pid, with a note) anything it left
    /// running from our directories.
    fn stop(&self, daemon: Daemon, notes: &mut Vec<String>) {
        drop(daemon);
        for pid in leftovers(&self.base, self.sshd.pid()) {
            notes.push(format!(
                "left running after aigis stopped: {}",
                describe(pid)
            ));
            // SAFETY: kill(2) of a process started (indirectly) by this bench.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

/// Processes (other than sshd) whose executable or working directory is
/// under `base`: remote agents and plugins.
fn leftovers(base: &Path, sshd: u32) -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me || pid == sshd || !alive(pid) {
            continue;
        }
        let under = |link: &str| {
            std::fs::read_link(format!("/proc/{pid}/{link}"))
                .map(|p| p.starts_with(base))
                .unwrap_or(false)
        };
        if under("exe") || under("cwd") {
            out.push(pid);
        }
    }
    out
}

fn describe(pid: u32) -> String {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default();
    format!("{pid} {}", cmd.trim())
}

/// The JSON an internal plugin wrote, once it is there.
fn plugin_result(path: &Path, deadline: &Deadline, daemon: &Daemon, what: &str) -> Value {
    deadline.wait(what, Some(daemon), || path.exists());
    let text = std::fs::read_to_string(path).expect("bench.json");
    serde_json::from_str(&text).expect("bench.json is JSON")
}

fn plugin_stats(v: &Value) -> Stats {
    let lat: Vec<f64> = v["lat"]
        .as_array()
        .expect("lat")
        .iter()
        .map(|x| x.as_f64().expect("a latency"))
        .collect();
    stats(lat, v["total"].as_f64().expect("total"))
}

fn vm_rss_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // After the command name: state is field 3, utime 14, stime 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn exe_name(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

/// CPU time `pid` has used so far, all its threads, in µs (the kernel's
/// own clock for it, not 10 ms ticks).
fn cpu_us(pid: u32) -> Option<f64> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: plain calls with out-pointers to locals.
    if unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) } != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as above.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3)
}

/// The processes a core call (or a floor's round trip) crosses, by role:
/// `root` itself, and under it or under the test `sshd`: the plugin's
/// interpreter (`shim.py`), the agents, `ssh` and `cat`, and sshd's
/// session processes (the sshd's other descendants).
fn call_path(root: (&'static str, u32), sshd: Option<u32>) -> Vec<(&'static str, u32)> {
    let mut table = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0);
        table.push((pid, ppid));
    }
    let descends = |mut pid: u32, from: u32| {
        for _ in 0..64 {
            if pid == from {
                return true;
            }
            match table.iter().find(|(p, _)| *p == pid) {
                Some((_, parent)) if *parent > 1 => pid = *parent,
                _ => return false,
            }
        }
        false
    };
    let mut out = vec![root];
    for &(pid, _) in &table {
        if pid == root.1 || Some(pid) == sshd {
            continue;
        }
        let under_sshd = sshd.is_some_and(|sshd| descends(pid, sshd));
        if !under_sshd && !descends(pid, root.1) {
            continue;
        }
        let role = match exe_name(pid).as_str() {
            _ if describe(pid).contains("shim.py") => "plugin",
            exe if exe.starts_with("aigis-agent") => "agent",
            "ssh" => "ssh",
            "cat" => "cat",
            _ if under_sshd => "sshd",
            _ => continue,
        };
        out.push((role, pid));
    }
    out
}

/// µs of CPU a call, by role, between two readings of the same processes.
fn cpu_per_call(path: &[(&'static str, u32)], before: &[Option<f64>], calls: usize) -> Value {
    let mut by_role = serde_json::Map::new();
    for ((role, pid), start) in path.iter().zip(before) {
        let (Some(start), Some(end)) = (start, cpu_us(*pid)) else {
            continue;
        };
        let slot = by_role.entry(role.to_string()).or_insert(json!(0.0));
        *slot = json!(slot.as_f64().unwrap_or(0.0) + (end - start) / calls as f64);
    }
    Value::Object(by_role)
}

/// A note line from [`cpu_per_call`]'s answer (or a floor's, from
/// [`python_ping_pong`]).
fn cpu_note(row: &str, per_call: &Value) -> String {
    let parts: Vec<String> = per_call
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(role, v)| v.as_f64().map(|v| format!("{role} {v:.1}")))
        .collect();
    format!("{row}: CPU per call (µs): {}", parts.join(", "))
}

/// Lets a [`Ctx::caller`] plugin in `dir` (started with `go`) make its
/// timed calls once warm, and reads the CPU each process on the call's path
/// used meanwhile: a steadier figure than a ratio on a shared machine.
fn timed_calls(
    ctx: &Ctx,
    daemon: &Daemon,
    dir: &Path,
    go: &Path,
    deadline: &Deadline,
) -> (Value, Value) {
    deadline.wait("the plugin's warm-up", Some(daemon), || {
        dir.join("ready").exists()
    });
    let path = call_path(("central", daemon.pid()), Some(ctx.sshd.pid()));
    let before: Vec<Option<f64>> = path.iter().map(|(_, pid)| cpu_us(*pid)).collect();
    std::fs::write(go, "go").expect("go file");
    let result = plugin_result(
        &dir.join("bench.json"),
        deadline,
        daemon,
        "the plugin's calls",
    );
    let calls = result["lat"].as_array().map_or(1, Vec::len);
    let cpu = cpu_per_call(&path, &before, calls);
    (result, cpu)
}

// ---------------------------------------------------------------------------
// The rows

/// An internal-remote plugin's sequential 64-byte calls, against a 64-byte
/// ping-pong through `ssh lan1 cat`.
fn row_remote_sequential(ctx: &Ctx, notes: &mut Vec<String>) -> Vec<Row> {
    let deadline = Deadline::new("internal-remote sequential");
    let (floor, floor_cpu) = ctx.ssh_cat_python_floor(&deadline);
    let rust_floor = ctx.ssh_cat_floor(&deadline);
    let go = ctx.base.join("rows/go-seq");
    ctx.caller(
        "seq",
        Some("lan1"),
        "aigis.echo.ping(payload)",
        seq_calls(),
        WARM_UP,
        Some(&go),
    );
    let (daemon, home) = ctx.aigis(
        "seq",
        "hosts",
        &format!(
            "{}[internal-remote]\nseq = \"{}\"\n",
            ctx.echo_section(),
            ctx.src.join("seq").display()
        ),
    );
    let dir = central_place(&ctx.base.join("hosts/lan1"), &home).join("ext/seq");
    let (result, cpu) = timed_calls(ctx, &daemon, &dir, &go, &deadline);
    ctx.stop(daemon, notes);
    notes.push(cpu_note("remote call", &cpu));
    notes.push(cpu_note("remote call's floor", &floor_cpu));
    let s = plugin_stats(&result);
    let extra = json!({"plugin": stats_json(&s), "floor": stats_json(&floor),
                       "rust_floor": stats_json(&rust_floor), "cpu_us_per_call": cpu,
                       "floor_cpu_us_per_call": floor_cpu});
    let what = "ssh lan1 cat, 64 B ping-pong from python3";
    let rust = "ssh lan1 cat, 64 B ping-pong from Rust";
    vec![
        Row::new(
            "internal-remote core call, 64 B, sequential: calls/s",
            "calls/s",
            s.per_s,
            Target::RatioAtLeast(0.75),
        )
        .floor(what, floor.per_s)
        .extra(extra.clone()),
        Row::new(
            "internal-remote core call, 64 B, sequential: p50",
            "us",
            s.p50_us,
            Target::RatioAtMost(1.5),
        )
        .floor(what, floor.p50_us)
        .extra(extra.clone()),
        Row::new(
            "  the same against a Rust client's floor: p50",
            "us",
            s.p50_us,
            Target::Informative,
        )
        .floor(rust, rust_floor.p50_us)
        .extra(extra),
    ]
}

/// An internal plugin on the central host (the AigisProxy over the local
/// agent), against a 64-byte ping-pong through a local `cat`.
fn row_local_proxy(ctx: &Ctx, notes: &mut Vec<String>) -> Vec<Row> {
    let deadline = Deadline::new("internal (central host) proxy");
    let (floor, floor_cpu) = python_ping_pong(
        &Command::new("cat"),
        None,
        seq_calls(),
        &deadline,
        "the local cat floor from python3",
    );
    let rust_floor = ping_pong(
        Piped::spawn(Command::new("cat"), &deadline),
        seq_calls(),
        &deadline,
        "the local cat floor",
    );
    let go = ctx.base.join("rows/go-local");
    ctx.caller(
        "local",
        None,
        "aigis.echo.ping(payload)",
        seq_calls(),
        WARM_UP,
        Some(&go),
    );
    let (daemon, home) = ctx.aigis(
        "local",
        "hosts",
        &format!(
            "{}[internal]\nlocal = \"{}\"\n",
            ctx.echo_section(),
            ctx.src.join("local").display()
        ),
    );
    let (result, cpu) = timed_calls(ctx, &daemon, &home.join("ext/local"), &go, &deadline);
    ctx.stop(daemon, notes);
    notes.push(cpu_note("local call", &cpu));
    notes.push(cpu_note("local call's floor", &floor_cpu));
    let s = plugin_stats(&result);
    let extra = json!({"plugin": stats_json(&s), "floor": stats_json(&floor),
                       "rust_floor": stats_json(&rust_floor), "cpu_us_per_call": cpu,
                       "floor_cpu_us_per_call": floor_cpu});
    vec![
        Row::new(
            "internal plugin on central host via AigisProxy, 64 B: calls/s",
            "calls/s",
            s.per_s,
            Target::RatioAtLeast(0.5),
        )
        .floor("local cat child, 64 B ping-pong from python3", floor.per_s)
        .extra(extra.clone()),
        Row::new(
            "  the same against a Rust client's floor",
            "calls/s",
            s.per_s,
            Target::Informative,
        )
        .floor(
            "local cat child, 64 B ping-pong from Rust",
            rust_floor.per_s,
        )
        .extra(extra),
    ]
}

/// `PARALLEL` internal-remote plugins calling at once (they start together
/// on a file), against the sequential row of this run.
fn row_remote_parallel(ctx: &Ctx, sequential: Option<f64>, notes: &mut Vec<String>) -> Vec<Row> {
    let deadline = Deadline::new("internal-remote x8 at once");
    let go = ctx.base.join("rows/go-parallel");
    let mut sections = format!("{}[internal-remote]\n", ctx.echo_section());
    for i in 0..PARALLEL {
        let name = format!("par{i}");
        ctx.caller(
            &name,
            Some("lan1"),
            "aigis.echo.ping(payload)",
            PARALLEL_CALLS,
            WARM_UP,
            Some(&go),
        );
        sections.push_str(&format!("{name} = \"{}\"\n", ctx.src.join(&name).display()));
    }
    let (daemon, home) = ctx.aigis("parallel", "hosts", &sections);
    let place = central_place(&ctx.base.join("hosts/lan1"), &home);
    let dir = |i: usize| place.join(format!("ext/par{i}"));
    deadline.wait("the warm-up of all 8 plugins", Some(&daemon), || {
        (0..PARALLEL).all(|i| dir(i).join("ready").exists())
    });
    std::fs::write(&go, "go").expect("go file");
    let results: Vec<Value> = (0..PARALLEL)
        .map(|i| {
            plugin_result(
                &dir(i).join("bench.json"),
                &deadline,
                &daemon,
                "the plugins' calls",
            )
        })
        .collect();
    ctx.stop(daemon, notes);
    let start = results
        .iter()
        .map(|r| r["wall_start"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    let end = results
        .iter()
        .map(|r| r["wall_end"].as_f64().unwrap())
        .fold(f64::NEG_INFINITY, f64::max);
    let calls = PARALLEL * PARALLEL_CALLS;
    let aggregate = calls as f64 / (end - start);
    let each: Vec<Value> = results
        .iter()
        .map(|r| stats_json(&plugin_stats(r)))
        .collect();
    let row = Row::new(
        "8 internal-remote plugins at once, 64 B: aggregate calls/s",
        "calls/s",
        aggregate,
        Target::RatioAtLeast(3.0),
    )
    .extra(json!({"calls": calls, "seconds": end - start, "each": each}));
    match sequential {
        Some(seq) => vec![row.floor("the sequential internal-remote row", seq)],
        None => panic!("needs the sequential internal-remote row, which failed or was not picked"),
    }
}

/// A remote plugin's core call returning 1 MiB, against `ssh lan1 python3`
/// writing 1 MiB per request line.
fn row_remote_blob(ctx: &Ctx, notes: &mut Vec<String>) -> Vec<Row> {
    let deadline = Deadline::new("remote 1 MiB result");
    let responder = "python3 -c 'import os, sys\n\
                     b = os.urandom(1 << 20)\n\
                     i, o = sys.stdin.buffer, sys.stdout.buffer\n\
                     while i.readline():\n    o.write(b)\n    o.flush()\n'";
    let floor = {
        let mut child = Piped::spawn(ctx.ssh(responder), &deadline);
        let (stdin, stdout) = child.io();
        let mut buf = vec![0u8; MIB];
        let mut one = || -> std::io::Result<()> {
            stdin.write_all(b"\n")?;
            stdout.read_exact(&mut buf)
        };
        let what = "the ssh python3 responder floor";
        for _ in 0..BLOB_WARM_UP {
            one().unwrap_or_else(|e| stopped(&deadline, what, e));
        }
        let mut lat = Vec::with_capacity(BLOBS);
        let start = Instant::now();
        for _ in 0..BLOBS {
            let t = Instant::now();
            one().unwrap_or_else(|e| stopped(&deadline, what, e));
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        stats(lat, start.elapsed().as_secs_f64())
    };
    ctx.caller(
        "blob",
        Some("lan1"),
        &format!("aigis.echo.blob({MIB})"),
        BLOBS,
        BLOB_WARM_UP,
        None,
    );
    let (daemon, home) = ctx.aigis(
        "blob",
        "hosts",
        &format!(
            "{}[internal-remote]\nblob = \"{}\"\n",
            ctx.echo_section(),
            ctx.src.join("blob").display()
        ),
    );
    let result = plugin_result(
        &central_place(&ctx.base.join("hosts/lan1"), &home).join("ext/blob/bench.json"),
        &deadline,
        &daemon,
        "the 1 MiB calls",
    );
    ctx.stop(daemon, notes);
    assert_eq!(
        result["first_len"].as_u64(),
        Some(MIB as u64),
        "echo.blob returned the wrong size"
    );
    let s = plugin_stats(&result);
    vec![Row::new(
        "remote core call returning 1 MiB: MiB/s",
        "MiB/s",
        s.per_s,
        Target::RatioAtLeast(0.8),
    )
    .floor("ssh lan1 python3 responder, 1 MiB per line", floor.per_s)
    .extra(json!({"plugin": stats_json(&s), "floor": stats_json(&floor)}))]
}

/// The producer of the log row: `LINES` lines of 62 bytes, numbered.
fn producer() -> String {
    format!("awk 'BEGIN {{ for (i = 1; i <= {LINES}; i++) printf \"%010d {FILLER}\\n\", i }}'")
}

/// Checks that `text` holds every producer line exactly once, in order;
/// `prefixed` lines carry the log file's timestamp and source first.
fn verify_lines(text: &str, prefixed: bool) -> Result<(), String> {
    let mut seen = vec![false; LINES + 1];
    let (mut next, mut out_of_order, mut twice, mut bad) = (1usize, 0usize, 0usize, 0usize);
    for line in text.lines() {
        if prefixed && !line.contains(" stdout ") {
            continue; // aigis's own lines about the plugin
        }
        let payload = if prefixed {
            &line[line.len().saturating_sub(61)..]
        } else {
            line
        };
        let ok = payload.len() == 61 && &payload[10..11] == " " && &payload[11..] == FILLER;
        let Some(n) = payload
            .get(..10)
            .and_then(|d| d.parse::<usize>().ok())
            .filter(|n| ok && (1..=LINES).contains(n))
        else {
            bad += 1;
            continue;
        };
        if seen[n] {
            twice += 1;
        }
        seen[n] = true;
        if n != next {
            out_of_order += 1;
        }
        next = n + 1;
    }
    let missing = seen[1..].iter().filter(|s| !**s).count();
    if missing + twice + bad + out_of_order == 0 {
        Ok(())
    } else {
        Err(format!(
            "{missing} missing, {twice} repeated, {bad} malformed, {out_of_order} out of order"
        ))
    }
}

/// True when the file at `path` ends with `last`.
fn ends_with(path: &Path, last: &[u8]) -> bool {
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(len) = f.metadata().map(|m| m.len()) else {
        return false;
    };
    if len < last.len() as u64 || f.seek(SeekFrom::Start(len - last.len() as u64)).is_err() {
        return false;
    }
    let mut buf = vec![0u8; last.len()];
    f.read_exact(&mut buf).is_ok() && buf == last
}

/// A remote external plugin printing `LINES` lines, from its first line
/// printed to its last in `<home>/log/flood.log`, against the same producer
/// through `ssh lan1 … > file` (also timed from the producer's start).
fn row_remote_log(ctx: &Ctx, notes: &mut Vec<String>) -> Vec<Row> {
    let deadline = Deadline::new("remote external log throughput");
    let last = format!("{LINES:010} {FILLER}\n");

    let floor_file = ctx.base.join("rows/floor-lines.txt");
    std::fs::create_dir_all(ctx.base.join("rows")).expect("rows dir");
    let mut cmd = ctx.ssh(&format!("date +%s.%N >&2; {}", producer()));
    cmd.stdout(std::fs::File::create(&floor_file).expect("floor file"));
    let (wall, err) = run_bounded(cmd, &deadline, "`ssh lan1 producer > file`");
    let end = now_unix();
    let started: f64 = err
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .expect("the producer's start time");
    let floor_s = end - started;
    let text = std::fs::read_to_string(&floor_file).expect("floor file");
    verify_lines(&text, false).unwrap_or_else(|e| panic!("the floor's file is wrong: {e}"));
    drop(text);
    let _ = std::fs::remove_file(&floor_file);

    let dir = ctx.src.join("flood");
    write(
        &dir,
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\nHOST = 'lan1'\n",
    );
    write(
        &dir,
        "run.sh",
        &format!(
            "touch ready\nwhile [ ! -e go ]; do sleep 0.005; done\n\
             date +%s.%N > started\n{}\nexec sleep 3600\n",
            producer()
        ),
    );
    let (daemon, home) = ctx.aigis(
        "log",
        "hosts",
        &format!("[external]\nflood = \"{}\"\n", dir.display()),
    );
    let log = home.join("log/flood.log");
    let place = central_place(&ctx.base.join("hosts/lan1"), &home).join("ext/flood");
    let started_file = place.join("started");
    // The producer starts on a go file, so the CPU each process on the
    // way uses is read around its lines and nothing else.
    deadline.wait("the plugin's start", Some(&daemon), || {
        place.join("ready").exists()
    });
    let path = call_path(("central", daemon.pid()), Some(ctx.sshd.pid()));
    let before: Vec<Option<f64>> = path.iter().map(|(_, pid)| cpu_us(*pid)).collect();
    std::fs::write(place.join("go"), "go").expect("go file");
    let start = Instant::now();
    let mut done = false;
    while !done && !deadline.remaining().is_zero() {
        done = ends_with(&log, last.as_bytes());
        if !done {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let end = now_unix();
    if !done {
        deadline.fail("the last line's arrival in the log file", Some(&daemon));
    }
    let waited = start.elapsed();
    let per_line = cpu_per_call(&path, &before, LINES);
    let ns_per_line = |role: &str| per_line[role].as_f64().map(|us| us * 1000.0);
    let cpu: serde_json::Map<String, Value> = ["central", "agent", "sshd"]
        .iter()
        .filter_map(|r| ns_per_line(r).map(|ns| (r.to_string(), json!(ns))))
        .collect();
    notes.push(format!(
        "1M lines: CPU per line (ns): {}",
        cpu.iter()
            .map(|(r, ns)| format!("{r} {:.0}", ns.as_f64().unwrap_or(0.0)))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let started: f64 = std::fs::read_to_string(&started_file)
        .expect("the plugin's start time")
        .trim()
        .parse()
        .expect("a time");
    ctx.stop(daemon, notes);
    let took = end - started;
    let text = std::fs::read_to_string(&log).expect("log file");
    let bytes = text.len();
    verify_lines(&text, true).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    vec![Row::new(
        "remote external, 1M lines of 62 B into its log file: lines/s",
        "lines/s",
        LINES as f64 / took,
        Target::RatioAtLeast(0.8),
    )
    .floor("ssh lan1 producer > file", LINES as f64 / floor_s)
    .extra(json!({
        "lines": LINES, "seconds": took, "floor_seconds": floor_s,
        "floor_wall_seconds_with_connect": wall.as_secs_f64(),
        "bench_waited_seconds": waited.as_secs_f64(), "log_bytes": bytes,
        "verified": "every line exactly once, in order",
        "cpu_ns_per_line": cpu,
    }))]
}

/// `aigis run` until a remote internal plugin's first call is answered:
/// with a fresh remote dir (the agent is uploaded), then again with the
/// same one (the agent is cached); against `ssh lan1 true`.
fn row_startup(ctx: &Ctx, notes: &mut Vec<String>) -> Vec<Row> {
    let deadline = Deadline::new("aigis run to the first remote call");
    let mut runs: Vec<f64> = (0..STARTUP_FLOOR_RUNS)
        .map(|_| {
            run_bounded(ctx.ssh("true"), &deadline, "`ssh lan1 true`")
                .0
                .as_secs_f64()
        })
        .collect();
    runs.sort_by(|a, b| a.total_cmp(b));
    let floor = runs[runs.len() / 2];

    let dir = ctx.src.join("first");
    write(
        &dir,
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = 'main.py'\nHOST = 'lan1'\n",
    );
    write(
        &dir,
        "main.py",
        "import os, time\nimport aigis\n\n\ndef launch(log):\n    aigis.echo.ping(b\"x\")\n    t = time.time()\n\
         \x20   with open(\"first.tmp\", \"w\") as f:\n        f.write(repr(t))\n\
         \x20   os.rename(\"first.tmp\", \"first.txt\")\n    while True:\n        time.sleep(1)\n",
    );
    let marker = central_place(
        &ctx.base.join("hosts-startup/lan1"),
        &ctx.base.join("rows/startup/home"),
    )
    .join("ext/first/first.txt");
    let sections = format!(
        "{}[internal-remote]\nfirst = \"{}\"\n",
        ctx.echo_section(),
        dir.display()
    );
    let mut one = |what: &str| -> f64 {
        let _ = std::fs::remove_file(&marker);
        let t0 = now_unix();
        let (daemon, _) = ctx.aigis_logging("startup", "hosts-startup", &sections, "debug");
        deadline.wait(what, Some(&daemon), || marker.exists());
        let stamp: f64 = std::fs::read_to_string(&marker)
            .expect("first.txt")
            .trim()
            .parse()
            .expect("a time");
        notes.push(format!(
            "start-up timeline, {what} (ms after `aigis run`; the first call at {:.0}):\n{}",
            (stamp - t0) * 1e3,
            timeline(&daemon.output(), t0)
        ));
        ctx.stop(daemon, notes);
        stamp - t0
    };
    let fresh = one("the first call (fresh remote dir)");
    let cached = one("the first call (agent cached)");
    let extra = json!({"ssh_true_runs_s": runs});
    vec![
        Row::new(
            "aigis run -> first remote call, fresh remote dir: s",
            "s",
            fresh,
            Target::RatioAtMost(1.5),
        )
        .floor("ssh lan1 true, median of 5", floor)
        .extra(extra.clone()),
        Row::new(
            "aigis run -> first remote call, agent cached: s",
            "s",
            cached,
            Target::RatioAtMost(1.1),
        )
        .floor("ssh lan1 true, median of 5", floor)
        .extra(extra),
    ]
}

/// The console's lines, each with its time in ms after `t0` (a Unix
/// time) instead of its timestamp (`2026-11-25T15:52:14.932Z ...`).
fn timeline(console: &str, t0: f64) -> String {
    let day_start = (t0 / 86_400.0).floor() * 86_400.0;
    console
        .lines()
        .filter(|line| {
            std::env::var_os("AIGIS_BENCH_RUSSH").is_some() || !line.contains("log.target=russh")
        })
        .filter_map(|line| {
            let clock = line.get(11..23)?; // 15:52:14.932
            let mut parts = clock.split(':');
            let h: f64 = parts.next()?.parse().ok()?;
            let m: f64 = parts.next()?.parse().ok()?;
            let sec: f64 = parts.next()?.parse().ok()?;
            let at = day_start + h * 3600.0 + m * 60.0 + sec;
            Some(format!("  {:>6.0} {}", (at - t0) * 1e3, line.get(24..)?))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `MANY` external `sleep 3600` plugins on the local agent: memory and idle
/// CPU of the agent and of central.
fn row_many_plugins(ctx: &Ctx, notes: &mut Vec<String>) -> Vec<Row> {
    let deadline = Deadline::new("100 plugins on one agent");
    let dir = ctx.src.join("sleeper");
    write(
        &dir,
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sleep', '3600']\n",
    );
    let mut sections = String::from("[external]\n");
    for i in 0..MANY {
        sections.push_str(&format!("s{i:03} = \"{}\"\n", dir.display()));
    }
    let (daemon, _) = ctx.aigis("many", "hosts", &sections);
    let central = daemon.pid();
    let mut agent = None;
    deadline.wait("the local agent's start", Some(&daemon), || {
        agent = children(central)
            .into_iter()
            .find(|p| exe_name(*p).starts_with("aigis-agent"));
        agent.is_some()
    });
    let agent = agent.expect("agent");
    deadline.wait("100 running plugins", Some(&daemon), || {
        children(agent)
            .into_iter()
            .filter(|p| exe_name(*p) == "sleep")
            .count()
            == MANY
    });
    std::thread::sleep(Duration::from_secs(2)); // let start-up settle
                                                // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let before = (cpu_ticks(agent), cpu_ticks(central));
    let t = Instant::now();
    std::thread::sleep(IDLE_WINDOW);
    let after = (cpu_ticks(agent), cpu_ticks(central));
    let window = t.elapsed().as_secs_f64();
    let mb = |kib: f64| kib * 1024.0 / 1e6;
    let (agent_rss, central_rss) = (mb(vm_rss_kib(agent)), mb(vm_rss_kib(central)));
    let cpu = |a: u64, b: u64| (b - a) as f64 / hz / window * 100.0;
    let (agent_cpu, central_cpu) = (cpu(before.0, after.0), cpu(before.1, after.1));
    ctx.stop(daemon, notes);
    let extra = json!({"plugins": MANY, "window_s": window, "clk_tck": hz});
    vec![
        Row::new(
            "100 plugins on the local agent: agent RSS",
            "MB",
            agent_rss,
            Target::Below(10.0),
        )
        .extra(extra.clone()),
        Row::new(
            "100 plugins on the local agent: central RSS",
            "MB",
            central_rss,
            Target::Below(60.0),
        )
        .extra(extra.clone()),
        Row::new(
            "100 plugins, idle 5 s: agent CPU",
            "% core",
            agent_cpu,
            Target::Below(0.5),
        )
        .extra(extra.clone()),
        Row::new(
            "100 plugins, idle 5 s: central CPU",
            "% core",
            central_cpu,
            Target::Below(0.5),
        )
        .extra(extra),
    ]
}

struct TrustOwnFixture;

impl client::Handler for TrustOwnFixture {
    type Error = russh::Error;
    // The bench talks only to the sshd it started itself on loopback.
    async fn check_server_key(&mut self, _: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// 64-byte ping-pong through russh's client to `cat` on the same sshd.
async fn russh_cat(sshd: &Sshd, n: usize) -> Result<Stats, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = Arc::new(client::Config::default());
    let mut session = client::connect(config, (sshd.addr.as_str(), sshd.port), TrustOwnFixture)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let key = load_secret_key(&sshd.client_key, None).map_err(|e| format!("key: {e}"))?;
    let auth = session
        .authenticate_publickey("root", PrivateKeyWithHashAlg::new(Arc::new(key), None))
        .await
        .map_err(|e| format!("auth: {e}"))?;
    if !auth.success() {
        return Err("auth refused".into());
    }
    let channel = session
        .channel_open_session()
        .await
        .map_err(|e| format!("channel: {e}"))?;
    channel
        .exec(true, "cat")
        .await
        .map_err(|e| format!("exec: {e}"))?;
    let mut stream = channel.into_stream();
    let ping = [7u8; PAYLOAD];
    let mut pong = [0u8; PAYLOAD];
    let mut lat = Vec::with_capacity(n);
    let mut start = Instant::now();
    for i in 0..WARM_UP + n {
        if i == WARM_UP {
            start = Instant::now();
        }
        let t = Instant::now();
        stream
            .write_all(&ping)
            .await
            .map_err(|e| format!("write: {e}"))?;
        stream.flush().await.map_err(|e| format!("flush: {e}"))?;
        stream
            .read_exact(&mut pong)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if i >= WARM_UP {
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    Ok(stats(lat, start.elapsed().as_secs_f64()))
}

/// russh's client against OpenSSH's `ssh`, both to `cat` on the same sshd:
/// what the SSH library costs.
fn row_russh(ctx: &Ctx, _: &mut Vec<String>) -> Vec<Row> {
    let deadline = Deadline::new("russh client to cat");
    let openssh = ctx.ssh_cat_floor(&deadline);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let russh = runtime
        .block_on(async {
            tokio::time::timeout(deadline.remaining(), russh_cat(&ctx.sshd, seq_calls())).await
        })
        .unwrap_or_else(|_| deadline.fail("the russh ping-pong", None))
        .unwrap_or_else(|e| panic!("russh ping-pong: {e}"));
    let extra = json!({"russh": stats_json(&russh), "openssh": stats_json(&openssh)});
    vec![
        Row::new(
            "russh client -> cat, 64 B: calls/s",
            "calls/s",
            russh.per_s,
            Target::Informative,
        )
        .floor("ssh lan1 cat, 64 B ping-pong", openssh.per_s)
        .extra(extra.clone()),
        Row::new(
            "russh client -> cat, 64 B: p50",
            "us",
            russh.p50_us,
            Target::Informative,
        )
        .floor("ssh lan1 cat, 64 B ping-pong", openssh.p50_us)
        .extra(extra),
    ]
}

// ---------------------------------------------------------------------------

/// Runs one row; a panic becomes a failed row (named `paths`) with its message.
/// Measures a row unless words given on the command line (`cargo bench
/// -p aigis-e2e --bench wire -- remote 1M`) name other rows: a row runs
/// when its first path contains one of them.
fn measure(paths: &[&str], outcomes: &mut Vec<Outcome>, row: impl FnOnce() -> Vec<Row>) {
    let words: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !words.is_empty() && !words.iter().any(|w| paths[0].contains(w.as_str())) {
        return;
    }
    let started = Instant::now();
    eprintln!("wire: measuring {} ...", paths[0]);
    match catch_unwind(AssertUnwindSafe(row)) {
        Ok(rows) => outcomes.extend(rows.into_iter().map(Ok)),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into());
            outcomes.extend(paths.iter().map(|p| Err((p.to_string(), why.clone()))));
        }
    }
    eprintln!("wire:   took {:.1} s", started.elapsed().as_secs_f64());
}

fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ctx = Ctx::new(tmp.path());
    let mut notes = Vec::new();
    let mut out: Vec<Outcome> = Vec::new();

    measure(
        &["internal-remote core call, 64 B, sequential"],
        &mut out,
        || row_remote_sequential(&ctx, &mut notes),
    );
    let sequential = out
        .first()
        .and_then(|o| o.as_ref().ok())
        .filter(|r| r.path.ends_with("calls/s"))
        .map(|r| r.measured);
    measure(
        &["internal plugin on central host via AigisProxy"],
        &mut out,
        || row_local_proxy(&ctx, &mut notes),
    );
    measure(&["8 internal-remote plugins at once"], &mut out, || {
        row_remote_parallel(&ctx, sequential, &mut notes)
    });
    measure(&["remote core call returning 1 MiB"], &mut out, || {
        row_remote_blob(&ctx, &mut notes)
    });
    measure(
        &["remote external, 1M lines into its log file"],
        &mut out,
        || row_remote_log(&ctx, &mut notes),
    );
    measure(&["aigis run -> first remote call"], &mut out, || {
        row_startup(&ctx, &mut notes)
    });
    measure(&["100 plugins on one agent"], &mut out, || {
        row_many_plugins(&ctx, &mut notes)
    });
    measure(&["russh client -> cat"], &mut out, || {
        row_russh(&ctx, &mut notes)
    });

    println!();
    print_table(&out);
    println!();
    for o in &out {
        match o {
            Ok(r) => println!("{}", r.json()),
            Err((path, why)) => println!("{}", json!({"path": path, "error": why})),
        }
    }
    for n in &notes {
        println!("note: {n}");
    }
    for pid in leftovers(tmp.path(), ctx.sshd.pid()) {
        println!("note: still running at the end, killed: {}", describe(pid));
        // SAFETY: kill(2) of a process started (indirectly) by this bench.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
    let failed = out.iter().any(|o| o.is_err());
    drop(ctx);
    drop(tmp);
    if failed {
        std::process::exit(1);
    }
}
