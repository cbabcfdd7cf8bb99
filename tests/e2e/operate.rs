//! Operating a running daemon: the control socket and the CLI around it
//! (status, logs, stop, start, reload), `check`, and `new`.

use aigis_e2e::git::TestRepo;
use aigis_e2e::process::{aigis, bin, wait_until, write, Daemon};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

fn status(base: &Path, home: &str) -> Vec<(String, String, Option<u64>)> {
    let (ok, out) = aigis(base, &["status", "--json", "--home", home]);
    if !ok {
        return Vec::new(); // not up yet; callers wait for a state
    }
    // A tiny reader for the fields we need; the output is pretty JSON.
    let mut rows = Vec::new();
    let (mut name, mut state, mut pid) = (String::new(), String::new(), None);
    for line in out.lines().map(str::trim) {
        let value = |l: &str| {
            l.split_once(": ")
                .map(|(_, v)| v.trim_end_matches(',').trim_matches('"').to_string())
        };
        if line.starts_with("\"name\"") {
            name = value(line).unwrap_or_default();
        } else if line.starts_with("\"state\"") {
            state = value(line).unwrap_or_default();
        } else if line.starts_with("\"pid\"") {
            pid = value(line).and_then(|v| v.parse().ok());
        } else if line.starts_with('}') {
            rows.push((
                std::mem::take(&mut name),
                std::mem::take(&mut state),
                pid.take(),
            ));
        }
    }
    rows
}

/// True when there are plugins and every one of them runs.
fn all_running(rows: &[(String, String, Option<u64>)]) -> bool {
    !rows.is_empty() && rows.iter().all(|(_, s, _)| s == "running")
}

fn state_of(base: &Path, home: &str, plugin: &str) -> (String, Option<u64>) {
    status(base, home)
        .into_iter()
        .find(|(n, _, _)| n == plugin)
        .map(|(_, s, p)| (s, p))
        .unwrap_or_default()
}

fn looping(dir: &Path, word: &str) {
    write(
        dir,
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n",
    );
    write(
        dir,
        "run.sh",
        &format!("i=0\nwhile true; do i=$((i+1)); echo \"{word} $i $(cat version 2>/dev/null)\"; sleep 0.05; done\n"),
    );
}

#[test]
fn status_stop_start_reload_and_logs_through_the_control_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    let home_s = home.to_str().unwrap();

    looping(&base.join("src/one"), "one-says");
    looping(&base.join("src/two"), "two-says");
    let repo = TestRepo::new(&base.join("repos"), "gitplug");
    looping(&repo.dir, "git-says");
    repo.write("version", "v1");
    repo.commit("v1");
    write(
        base,
        "aigis.toml",
        &format!(
            "[external]\none = \"src/one\"\ntwo = \"src/two\"\ngitplug = \"{}\"\n",
            repo.file_url()
        ),
    );

    // No daemon yet: a clear message.
    let (ok, out) = aigis(base, &["status", "--home", home_s]);
    assert!(!ok);
    assert!(out.contains("no aigis daemon is running"), "{out}");

    let daemon = Daemon::start(base, &["run", "-c", "aigis.toml", "--home", home_s]);
    daemon.expect_output("git-says 1 v1", PATIENCE);
    daemon.expect_output("two-says 1", PATIENCE);
    assert!(wait_until(PATIENCE, || all_running(&status(base, home_s))));
    let rows = status(base, home_s);
    assert_eq!(rows.len(), 3, "{rows:?}");

    // A second daemon on the same home is refused.
    let (ok, out) = aigis(base, &["run", "-c", "aigis.toml", "--home", home_s]);
    assert!(!ok);
    assert!(out.contains("already owns the home"), "{out}");

    // The socket is for the daemon's user only.
    let mode = std::fs::metadata(home.join("run/aigis.sock")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);

    // stop then start one plugin; the other keeps its process.
    let (_, two_pid) = state_of(base, home_s, "two");
    let (ok, out) = aigis(base, &["stop", "one", "--home", home_s]);
    assert!(ok, "{out}");
    assert_eq!(state_of(base, home_s, "one").0, "stopped");
    assert_eq!(
        state_of(base, home_s, "two"),
        ("running".to_string(), two_pid)
    );
    let (ok, out) = aigis(base, &["start", "one", "--home", home_s]);
    assert!(ok, "{out}");
    assert!(wait_until(PATIENCE, || state_of(base, home_s, "one").0 == "running"));
    assert_eq!(
        state_of(base, home_s, "two"),
        ("running".to_string(), two_pid)
    );
    let (ok, out) = aigis(base, &["start", "two", "--home", home_s]);
    assert!(!ok && out.contains("two is running"), "{out}");
    let (ok, out) = aigis(base, &["stop", "nosuch", "--home", home_s]);
    assert!(!ok && out.contains("no plugin named `nosuch`"), "{out}");

    // reload picks up a new commit of the git plugin.
    repo.write("version", "v2");
    repo.commit("v2");
    let (ok, out) = aigis(base, &["reload", "gitplug", "--home", home_s]);
    assert!(ok, "{out}");
    daemon.expect_output("git-says 1 v2", PATIENCE);

    // logs -n: the last lines of the plugin's log, nothing else.
    std::thread::sleep(Duration::from_millis(300));
    let (ok, out) = aigis(base, &["logs", "two", "-n", "3", "--home", home_s]);
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines.iter().all(|l| l.contains("two-says")), "{out}");
    let file = std::fs::read_to_string(home.join("log/two.log")).unwrap();
    let pos = file.find(lines[0]).expect("line is from the log file");
    assert!(file[pos..].lines().count() >= 3);
}

#[test]
fn check_reports_each_problem_and_passes_a_good_config() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    looping(&base.join("src/good"), "good");
    write(
        &base.join("src/needs"),
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['true']\nSECRETS = {'db.token': '{root}/'}\n",
    );
    write(
        &base.join("src/typo"),
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'externl'\nENTRYPOINT = '{root}'\nLAUNCH = ['true']\n",
    );
    write(base, "good.toml", "[external]\ngood = \"src/good\"\n");
    write(
        base,
        "bad.toml",
        "[external]\ngood = \"src/good\"\nneeds = \"src/needs\"\ntypo = \"src/typo\"\n",
    );
    let home = base.join("home");
    let home_s = home.to_str().unwrap();

    let (ok, out) = aigis(base, &["check", "-c", "good.toml", "--home", home_s]);
    assert!(ok, "{out}");
    assert!(out.contains("no problems"), "{out}");

    let (ok, out) = aigis(base, &["check", "-c", "bad.toml", "--home", home_s]);
    assert!(!ok, "{out}");
    let problems: Vec<&str> = out.lines().filter(|l| l.starts_with("problem:")).collect();
    assert_eq!(problems.len(), 2, "{out}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("plugin `needs`") && p.contains("db.token")),
        "{out}"
    );
    assert!(
        problems.iter().any(|p| p.contains("plugin `typo`")
            && p.contains("AIGIS.config:1:15")
            && p.contains("unknown plugin type \"externl\"")),
        "{out}"
    );
    // Nothing was started or fetched into the home.
    assert!(!home.join("ext").exists());

    // Once the secret is there, only the type problem is left.
    write(&home, "secrets/needs/db.token", "t");
    let (ok, out) = aigis(base, &["check", "-c", "bad.toml", "--home", home_s]);
    assert!(!ok);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("problem:")).count(),
        1,
        "{out}"
    );
}

#[test]
fn new_writes_plugins_that_check_accepts_and_that_run() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    std::fs::create_dir_all(base.join("conf")).unwrap();
    // The config is not in the current directory: `-c` names it, and the
    // printed lines go into it as they are.
    let mut config = String::new();
    for (kind, name) in [
        ("core", "greet"),
        ("internal-local", "watcher"),
        ("internal-remote", "remote"),
        ("external", "tool"),
    ] {
        let (ok, out) = aigis(
            base,
            &[
                "new",
                "--type",
                kind,
                name,
                "--dir",
                "plugins",
                "-c",
                "conf/aigis.toml",
            ],
        );
        assert!(ok, "{out}");
        assert!(out.contains("add it to conf/aigis.toml:"), "{out}");
        let snippet = &out[out.find(&format!("[{kind}]\n")).expect("a section line")..];
        assert_eq!(
            snippet,
            format!("[{kind}]\n{name} = \"../plugins/{name}\"\n"),
            "{out}"
        );
        config.push_str(snippet);
    }
    write(base, "conf/aigis.toml", &config);
    let (ok, out) = aigis(
        base,
        &["new", "--type", "external", "tool", "--dir", "plugins"],
    );
    assert!(!ok && out.contains("already exists"), "{out}");
    let remote = std::fs::read_to_string(base.join("plugins/remote/AIGIS/AIGIS.config")).unwrap();
    assert!(remote.contains("HOST = "), "{remote}");

    // Without -c: the line is for a config file in the current directory.
    let (ok, out) = aigis(
        &base.join("conf"),
        &["new", "--type", "external", "spare", "--dir", "../plugins"],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("config file in the current directory"),
        "{out}"
    );
    assert!(out.ends_with("spare = \"../plugins/spare\"\n"), "{out}");

    let home = base.join("home");
    let home_s = home.to_str().unwrap();
    let (ok, out) = aigis(base, &["check", "-c", "conf/aigis.toml", "--home", home_s]);
    assert!(ok, "{out}");

    let daemon = Daemon::start(base, &["run", "-c", "conf/aigis.toml", "--home", home_s]);
    daemon.expect_output("skills: aigis.greet.hello, aigis.greet.GREETING", PATIENCE);
    daemon.expect_output("INFO [watcher] (stderr) started", PATIENCE);
    daemon.expect_output("tool started in", PATIENCE);
    daemon.expect_output("INFO [remote] (stderr) started", PATIENCE);
    assert!(wait_until(PATIENCE, || {
        all_running(&status(base, home_s))
    }));
}

#[test]
fn json_log_format_and_completions() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    looping(&base.join("src/one"), "json-says");
    write(base, "aigis.toml", "[external]\none = \"src/one\"\n");
    let home = base.join("home");
    let daemon = Daemon::start(
        base,
        &[
            "run",
            "-c",
            "aigis.toml",
            "--home",
            home.to_str().unwrap(),
            "--log-format",
            "json",
        ],
    );
    daemon.expect_output("json-says 2", PATIENCE);
    let out = daemon.output();
    let line = out.lines().find(|l| l.contains("json-says 2")).unwrap();
    assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    assert!(line.contains("\"plugin\":\"one\""), "{line}");
    assert!(line.contains("\"message\":\"json-says 2 \""), "{line}");
    assert!(
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| l.starts_with('{')),
        "{out}"
    );

    for shell in ["bash", "zsh", "fish"] {
        let (ok, out) = aigis(base, &["completions", shell]);
        assert!(ok, "{out}");
        assert!(
            out.contains("reload") && out.contains("status"),
            "{shell}: {out}"
        );
    }
}

#[test]
fn check_verifies_ssh_host_keys_against_known_hosts() {
    use aigis_e2e::sshd::Sshd;
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let sshd = Sshd::start(&base.join("sshd"), "127.0.0.2");
    let user_home = base.join("user");
    write(&user_home, ".ssh/config", &sshd.config_entry("lanbox"));
    write(
        &base.join("src/remote"),
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['true']\nHOST = 'lanbox'\n\
         SYSTEM_REQUIREMENTS = ['sh']\n",
    );
    write(base, "aigis.toml", "[external]\nremote = \"src/remote\"\n");
    let check_with_agent = |agent: Option<&Path>| {
        let mut cmd = Command::new(bin("aigis"));
        cmd.args([
            "check",
            "-c",
            "aigis.toml",
            "--home",
            base.join("home").to_str().unwrap(),
        ])
        .current_dir(base)
        .env("HOME", &user_home)
        .env_remove("SSH_AUTH_SOCK");
        if let Some(sock) = agent {
            cmd.env("SSH_AUTH_SOCK", sock);
        }
        let out = cmd.output().expect("run aigis check");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let check = || check_with_agent(None);

    // Unknown host key: refused, and the message says how to add it.
    let (ok, out) = check();
    assert!(!ok);
    let fix = format!("ssh-keyscan -p {} {}", sshd.port, sshd.addr);
    assert!(
        out.contains("host key of lanbox is unknown") && out.contains(&fix),
        "{out}"
    );

    // A different key on record: refused as changed.
    let other = Sshd::start(&base.join("other"), "127.0.0.3");
    let wrong = other.known_hosts_line.replace(
        &format!("[{}]:{}", other.addr, other.port),
        &format!("[{}]:{}", sshd.addr, sshd.port),
    );
    write(&user_home, ".ssh/known_hosts", &wrong);
    let (ok, out) = check();
    assert!(!ok);
    assert!(out.contains("host key of lanbox has CHANGED"), "{out}");
    drop(other);

    // The right key: connected and logged in; nothing left to report.
    write(&user_home, ".ssh/known_hosts", &sshd.known_hosts_line);
    let (ok, out) = check();
    assert!(ok, "{out}");
    assert!(out.contains("no problems"), "{out}");

    // Hashed known_hosts entries (ssh-keygen -H) work the same.
    let known = user_home.join(".ssh/known_hosts");
    let hashed = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&known)
        .output()
        .unwrap();
    assert!(hashed.status.success());
    assert!(std::fs::read_to_string(&known).unwrap().starts_with("|1|"));
    let (ok, out) = check();
    assert!(ok, "hashed known_hosts: {out}");

    // Keys from ssh-agent: no IdentityFile, the key only in the agent.
    write(
        &user_home,
        ".ssh/config",
        &format!(
            "Host lanbox\n    HostName {}\n    Port {}\n    User root\n",
            sshd.addr, sshd.port
        ),
    );
    let (ok, out) = check();
    assert!(!ok && out.contains("no key was accepted"), "{out}");
    let sock = base.join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent");
    assert!(wait_until(Duration::from_secs(5), || sock.exists()));
    let added = Command::new("ssh-add")
        .arg(&sshd.client_key)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let (ok, out) = check_with_agent(Some(&sock));
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(ok, "ssh-agent key: {out}");

    // SYSTEM_REQUIREMENTS are looked up on the plugin's host.
    write(
        &base.join("src/remote"),
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['true']\nHOST = 'lanbox'\n\
         SYSTEM_REQUIREMENTS = ['sh', 'surely-not-installed-aigis']\n",
    );
    write(&user_home, ".ssh/config", &sshd.config_entry("lanbox"));
    let (ok, out) = check();
    assert!(!ok);
    assert!(
        out.contains("missing system requirement(s) on PATH on lanbox: surely-not-installed-aigis"),
        "{out}"
    );
}

#[test]
fn logs_follow_prints_new_lines_as_they_come() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    looping(&base.join("src/one"), "follow-says");
    write(base, "aigis.toml", "[external]\none = \"src/one\"\n");
    let home = base.join("home");
    let home_s = home.to_str().unwrap();
    let daemon = Daemon::start(base, &["run", "-c", "aigis.toml", "--home", home_s]);
    daemon.expect_output("follow-says 3", PATIENCE);
    let mut follow = Command::new(bin("aigis"))
        .args(["logs", "one", "-f", "-n", "1", "--home", home_s])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let first: u32 = lines
        .next()
        .unwrap()
        .unwrap()
        .split("follow-says ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    // Lines written after `logs -f` started keep arriving, in order.
    let mut seen = Vec::new();
    for line in lines.by_ref().take(20) {
        let line = line.unwrap();
        if let Some(n) = line
            .split("follow-says ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        {
            seen.push(n);
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(seen.len() >= 10, "{seen:?}");
    assert!(
        seen[0] > first && seen.windows(2).all(|w| w[1] == w[0] + 1),
        "{first} then {seen:?}"
    );
    drop(daemon);
}

#[test]
fn start_brings_back_a_plugin_that_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    write(
        &base.join("src/flaky"),
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n",
    );
    // Fails the first time, runs the second.
    write(
        &base.join("src/flaky"),
        "run.sh",
        "if [ ! -e tried ]; then touch tried; echo first-fails; exit 1; fi\necho second-runs\nexec sleep 100\n",
    );
    write(base, "aigis.toml", "[external]\nflaky = \"src/flaky\"\n");
    let home = base.join("home");
    let home_s = home.to_str().unwrap();
    let daemon = Daemon::start(base, &["run", "-c", "aigis.toml", "--home", home_s]);
    assert!(wait_until(PATIENCE, || state_of(base, home_s, "flaky").0 == "failed"));
    let (ok, out) = aigis(base, &["start", "flaky", "--home", home_s]);
    assert!(ok, "{out}");
    daemon.expect_output("second-runs", PATIENCE);
    assert!(wait_until(PATIENCE, || state_of(base, home_s, "flaky").0 == "running"));
}

/// A pipe: (read end, write end), both close-on-exec.
fn pipe() -> (std::fs::File, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors that we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors are fresh and owned by nobody else.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    }
}

/// The numbers `word N` in a log file's lines, in file order.
fn numbers(text: &str, word: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| {
            l.split(&format!("{word} "))
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// `aigis run ... 2>&1 | head -3`, then Ctrl-C: the console is gone but
/// the plugin's log file keeps growing, and the daemon stops in seconds.
#[test]
fn a_closed_console_stops_neither_the_logs_nor_the_shutdown() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    looping(&base.join("src/chatty"), "chatty-says");
    write(base, "aigis.toml", "[external]\nchatty = \"src/chatty\"\n");
    let home = base.join("home");
    let home_s = home.to_str().unwrap();
    let log = home.join("log/chatty.log");
    let logged = || {
        numbers(
            &std::fs::read_to_string(&log).unwrap_or_default(),
            "chatty-says",
        )
    };
    for attempt in 0..5 {
        let (reader, writer) = pipe();
        let mut cmd = Daemon::command(base, &["run", "-c", "aigis.toml", "--home", home_s]);
        cmd.stdout(writer.try_clone().unwrap()).stderr(writer);
        let mut daemon = Daemon::spawn(cmd);
        // `head -3`: three lines, then the reader is gone.
        let mut console = BufReader::new(reader);
        for _ in 0..3 {
            let mut line = String::new();
            assert!(
                console.read_line(&mut line).unwrap() > 0,
                "console ended early"
            );
        }
        drop(console);
        // The plugin runs and its lines keep reaching its file.
        assert!(
            wait_until(PATIENCE, || !logged().is_empty()),
            "attempt {attempt}: the plugin never logged"
        );
        std::thread::sleep(Duration::from_millis(300));
        let closed_at = *logged().last().unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || logged()
                .last()
                .is_some_and(|n| *n >= closed_at + 10)),
            "attempt {attempt}: the log file stopped at chatty-says {closed_at} once the console closed"
        );
        let sig = if attempt % 2 == 0 {
            libc::SIGINT
        } else {
            libc::SIGTERM
        };
        daemon.signal(sig);
        let status = daemon.wait_exit(Duration::from_secs(8));
        assert!(
            status.is_some(),
            "attempt {attempt}: signal {sig} with a closed console: aigis did not exit within 8 s"
        );
        assert!(status.unwrap().success(), "attempt {attempt}: {status:?}");
    }
}

/// `aigis completions zsh | head -1`, `aigis check ... | head -1`: the
/// reader leaving is not an error (it was a panic, exit 101).
#[test]
fn completions_and_check_into_a_closed_pipe_exit_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    looping(&base.join("src/good"), "good");
    write(base, "good.toml", "[external]\ngood = \"src/good\"\n");
    let home = base.join("home");
    for args in [
        &["completions", "zsh"][..],
        &["completions", "bash"],
        &["check", "-c", "good.toml", "--home", home.to_str().unwrap()],
    ] {
        let (reader, writer) = pipe();
        drop(reader);
        let status = Command::new(bin("aigis"))
            .args(args)
            .current_dir(base)
            .env_remove("AIGIS_HOME")
            .stdout(writer)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{args:?}: {status:?}");
    }
}

/// A plugin printing numbered lines fast into a log that rotates many times
/// a second: `logs -f` shows every line, in order, across the rotations;
/// and once the daemon is gone, `logs -n` still reads the files.
#[test]
fn logs_follow_across_rotation_and_read_without_a_daemon() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    write(
        &base.join("src/fast"),
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n",
    );
    // Bursts of 100 lines (about 4.5 KB), then a short pause: the log file
    // of 20000 bytes rotates several times a second.
    write(
        &base.join("src/fast"),
        "run.sh",
        "i=0\nwhile true; do\n  j=0\n  while [ $j -lt 100 ]; do i=$((i+1)); j=$((j+1)); echo \"fast-says $i\"; done\n  sleep 0.02\ndone\n",
    );
    write(
        base,
        "aigis.toml",
        "[aigis]\nlog_max_bytes = 20000\nlog_keep = 20\n[external]\nfast = \"src/fast\"\n",
    );
    let home = base.join("home");
    let home_s = home.to_str().unwrap();
    let mut daemon = Daemon::start(base, &["run", "-c", "aigis.toml", "--home", home_s]);
    assert!(
        wait_until(PATIENCE, || home.join("log/fast.log.2").exists()),
        "the log never rotated twice"
    );

    let mut follow = Command::new(bin("aigis"))
        .args(["logs", "fast", "-f", "-n", "0", "--home", home_s])
        .current_dir(base)
        .env_remove("AIGIS_HOME")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = std::time::Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < Duration::from_secs(4) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.extend(numbers(&line, "fast-says"));
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    drop(rx);
    let _ = reader.join();
    let rotations = (1..=20)
        .filter(|n| home.join(format!("log/fast.log.{n}")).exists())
        .count();
    assert!(rotations >= 5, "only {rotations} rotated files");
    assert!(seen.len() >= 2000, "only {} lines followed", seen.len());
    let gaps: Vec<(u64, u64)> = seen
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect();
    assert!(
        gaps.is_empty(),
        "{} gaps (after, next) in {} lines followed: {gaps:?}",
        gaps.len(),
        seen.len()
    );

    // The daemon is gone: the files are still there to read.
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit(Duration::from_secs(15)).is_some());
    let (ok, out) = aigis(base, &["logs", "fast", "-n", "5", "--home", home_s]);
    assert!(ok, "{out}");
    let file = std::fs::read_to_string(home.join("log/fast.log")).unwrap();
    let last: Vec<&str> = file
        .lines()
        .rev()
        .take(5)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), last, "{out}");
    // No file for that name, or not a plugin's name at all: said plainly.
    let (ok, out) = aigis(base, &["logs", "nosuch", "--home", home_s]);
    assert!(
        !ok && out.contains("no log file for plugin `nosuch`"),
        "{out}"
    );
    let (ok, out) = aigis(base, &["logs", "../fast", "--home", home_s]);
    assert!(!ok && out.contains("not a plugin name"), "{out}");
}

/// A libpython of another version than the one `aigis` was built for (here
/// an `LD_PRELOAD`ed `Py_GetVersion` saying 3.99): `run` refuses to start,
/// naming both versions and the library, and `check` reports it.
#[test]
fn run_refuses_a_libpython_of_another_version() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let c = write(
        base,
        "fakepy.c",
        "const char *Py_GetVersion(void) { return \"3.99.1 (a test's libpython)\"; }\n",
    );
    let lib = base.join("libfakepy.so");
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&c)
        .output()
        .expect("cc (a C compiler is needed to build AIGIS too)");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    looping(&base.join("src/one"), "one-says");
    write(base, "aigis.toml", "[external]\none = \"src/one\"\n");
    let home = base.join("home");
    let run = |verb: &str| {
        let mut cmd = Daemon::command(
            base,
            &[verb, "-c", "aigis.toml", "--home", home.to_str().unwrap()],
        );
        cmd.env("LD_PRELOAD", &lib);
        let mut aigis = Daemon::spawn(cmd);
        let status = aigis.wait_exit(Duration::from_secs(20));
        // Its last output, collected by threads that end with the pipes.
        std::thread::sleep(Duration::from_millis(200));
        (status, aigis.output())
    };
    let (status, out) = run("run");
    assert!(
        status.is_some_and(|s| !s.success()),
        "aigis run started with libpython 3.99: {status:?}\n{out}"
    );
    assert!(
        out.contains("aigis was built for Python 3.")
            && out.contains(&format!("but loaded libpython 3.99 from {}", lib.display()))
            && out.contains("rebuild with PYO3_PYTHON="),
        "{out}"
    );
    assert!(!home.join("ext").exists(), "it started something: {out}");
    let (status, out) = run("check");
    assert!(status.is_some_and(|s| !s.success()), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("problem: aigis was built for Python 3.")),
        "{out}"
    );
}

/// What is not there yet at boot (a git server, a package index, a
/// mount) used to leave its plugin `failed` for good, even with
/// `RESTART`. A failed clone and a failed requirements step are now tried
/// again with backoff (`retrying in 2s: …` in status) until they work; a
/// config error is not (it cannot heal by itself).
#[test]
fn a_source_or_requirements_that_come_later_are_tried_again() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let repos = base.join("repos");
    let late_url = format!("file://{}", repos.join("late").display());
    let ready = base.join("index-is-up");
    write(
        &base.join("src/needs"),
        "AIGIS/AIGIS.config",
        &format!(
            "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{{root}}'\nLAUNCH = ['sh', '-c', 'echo needs-up; sleep 100']\n\
             REQUIREMENTS_COMMAND = 'test -f {}'\n",
            ready.display()
        ),
    );
    write(
        &base.join("src/broken"),
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['true'\n",
    );
    write(
        base,
        "aigis.toml",
        &format!(
            "[external]\nlate = \"{late_url}\"\nneeds = \"src/needs\"\nbroken = \"src/broken\"\n"
        ),
    );
    let home = base.join("home");
    let home_s = home.to_str().unwrap();
    let daemon = Daemon::start(base, &["run", "-c", "aigis.toml", "--home", home_s]);
    daemon.expect_output("[late] retrying in", PATIENCE);
    daemon.expect_output("[needs] retrying in", PATIENCE);
    let (ok, table) = aigis(base, &["status", "--home", home_s]);
    assert!(ok, "{table}");
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row("late").contains("retrying in"), "{table}");
    assert!(row("needs").contains("retrying in"), "{table}");
    assert!(row("broken").contains("failed"), "{table}");

    // The git server and the package index come up.
    let repo = TestRepo::new(&repos, "late");
    repo.write(
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', '-c', 'echo late-up; sleep 100']\n",
    );
    repo.commit("at last");
    std::fs::write(&ready, "").unwrap();
    daemon.expect_output("late-up", PATIENCE);
    daemon.expect_output("needs-up", PATIENCE);
    let out = daemon.output();
    assert!(!out.contains("[broken] trying again"), "{out}");
    assert!(out.contains("[broken] failed"), "{out}");
}
