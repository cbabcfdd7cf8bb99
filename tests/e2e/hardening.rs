//! Attacks on a running AIGIS, played with the real binaries, real files
//! and real sockets: each test does what an attacker (or an accident) would
//! and checks that AIGIS holds.

use aigis_e2e::git::TestRepo;
use aigis_e2e::process::{aigis_within, wait_until, write, Daemon};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(60);

/// An external plugin that prints `word N` forever.
fn looping(dir: &Path, word: &str) {
    write(
        dir,
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n",
    );
    write(
        dir,
        "run.sh",
        &format!("i=0\nwhile true; do i=$((i+1)); echo \"{word} $i\"; sleep 0.2; done\n"),
    );
}

/// Descriptors `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Starts `aigis run` with its descriptor limit (soft and hard) at `nofile`.
fn daemon_with_nofile(base: &Path, args: &[&str], nofile: libc::rlim_t) -> Daemon {
    let mut cmd = Daemon::command(base, args);
    // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Daemon::spawn(cmd)
}

/// Makes sure this test process may hold `wanted` more descriptors.
fn allow_fds(wanted: libc::rlim_t) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < wanted + 256 {
            limit.rlim_cur = limit.rlim_max.min(wanted + 256);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Many idle connections from the daemon's own user (a stuck script, a
/// hostile plugin) used to exhaust the daemon's descriptors; the accept
/// loop then ended for good and every `aigis status` after it was refused.
/// Played twice: with room for more connections than the bound (the bound
/// holds), and with less (accept fails with EMFILE and must recover).
#[test]
fn idle_connections_do_not_take_the_control_socket_down() {
    const FLOOD: usize = 200;
    allow_fds(FLOOD as libc::rlim_t);
    for nofile in [128, 48] {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let home = base.join("home");
        let home_s = home.to_str().unwrap();
        looping(&base.join("src/tick"), "tick-says");
        write(base, "aigis.toml", "[external]\ntick = \"src/tick\"\n");
        let daemon =
            daemon_with_nofile(base, &["run", "-c", "aigis.toml", "--home", home_s], nofile);
        daemon.expect_output("tick-says 1", PATIENCE);
        let status = || aigis_within(base, &["status", "--home", home_s], Duration::from_secs(3));
        assert!(
            wait_until(PATIENCE, || status().is_some_and(|(ok, _)| ok)),
            "status never answered:\n{}",
            daemon.output()
        );
        let baseline = open_fds(daemon.pid());

        // The flood: connections that never send a request, all held open.
        let sock = home.join("run/aigis.sock");
        let mut held = Vec::new();
        let mut refused = 0;
        for _ in 0..FLOOD {
            match std::os::unix::net::UnixStream::connect(&sock) {
                Ok(s) => held.push(s),
                Err(_) => refused += 1,
            }
        }

        // While they are held, status still answers, promptly.
        let started = Instant::now();
        let answer = status();
        assert!(
            matches!(&answer, Some((true, out)) if out.contains("tick") && out.contains("running")),
            "limit {nofile}: with {} idle connection(s) held ({refused} refused), status gave \
             {answer:?} after {:?}; daemon output:\n{}",
            held.len(),
            started.elapsed(),
            daemon.output()
        );
        assert_eq!(refused, 0, "limit {nofile}: connections were refused");

        // Idle connections are dropped by the daemon after a few seconds,
        // even though this side still holds them.
        assert!(
            wait_until(Duration::from_secs(15), || open_fds(daemon.pid())
                <= baseline + 2),
            "limit {nofile}: the daemon still holds {} descriptors (baseline {baseline})",
            open_fds(daemon.pid())
        );
        let answer = status();
        assert!(
            matches!(&answer, Some((true, _))),
            "limit {nofile}: {answer:?}"
        );
        drop(held);
        if nofile == 48 {
            // Running out of descriptors is said, once, not in a flood.
            let said = daemon.output().matches("out of file descriptors").count();
            assert_eq!(said, 1, "limit {nofile}:\n{}", daemon.output());
        }
        // The plugin was never disturbed.
        let (ok, out) = status().unwrap_or_default();
        assert!(ok && out.contains("running"), "{out}");
    }
}

/// The agent used to write its Python shim into `$TMPDIR/aigis-agent-<pid>`
/// and accept that directory if it already existed: another user could
/// create it in advance and put a module there that the shim imports
/// (`python3 shim.py` puts the script's directory first on `sys.path`),
/// and it ran as the agent's user. Here that directory is prepared for
/// every pid the agent can get; the planted code must never run, and the
/// shim's directory must be a private one of AIGIS's own. (A plugin with a
/// user of its own gets a fresh temporary one: `python.rs` tests that.)
#[test]
fn the_agent_never_runs_code_from_a_prepared_shim_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    let tmpdir = base.join("tmp");
    std::fs::create_dir_all(&tmpdir).unwrap();
    let marker = base.join("planted-code-ran");

    write(
        &base.join("src/probe"),
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'internal-local'\nENTRYPOINT = '{root}'\nLAUNCH = 'main.py'\n",
    );
    write(
        &base.join("src/probe"),
        "main.py",
        r#"import os
import sys
import time


def launch(log):
    here = os.path.dirname(os.path.abspath(sys.modules["__main__"].__file__))
    with open("shim-dir.txt", "w") as f:
        f.write("%s\n%o\n%d\n" % (here, os.stat(here).st_mode & 0o777, os.getppid()))
    print("probe-ready", flush=True)
    while True:
        time.sleep(1)
"#,
    );
    write(
        base,
        "aigis.toml",
        "[internal-local]\nprobe = \"src/probe\"\n",
    );

    // The next pids: the daemon, its threads and the agent come from here.
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768);
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("read /proc/sys/kernel/ns_last_pid");
    const AHEAD: u32 = 3000;
    let planted_pids: Vec<u32> = (1..=AHEAD)
        .map(|i| (last + i) % pid_max)
        .filter(|p| *p > 1)
        .collect();
    let planted = format!(
        "open({:?}, 'a').write('ran\\n')\n",
        marker.to_str().unwrap()
    );
    for pid in &planted_pids {
        let dir = tmpdir.join(format!("aigis-agent-{pid}"));
        std::fs::create_dir(&dir).unwrap();
        // Modules the shim imports, and the shim itself.
        for module in ["json.py", "inspect.py", "shim.py"] {
            std::fs::write(dir.join(module), &planted).unwrap();
        }
    }

    let home_s = home.to_str().unwrap();
    let mut daemon = Daemon::start_with_env(
        base,
        &["run", "-c", "aigis.toml", "--home", home_s],
        &[("TMPDIR", tmpdir.to_str().unwrap())],
    );
    let ready = wait_until(PATIENCE, || {
        marker.exists() || daemon.output().contains("probe-ready")
    });
    assert!(
        !marker.exists(),
        "code planted in a predictable shim dir ran as the agent's user:\n{}",
        daemon.output()
    );
    assert!(ready, "the probe never ran:\n{}", daemon.output());

    let report = std::fs::read_to_string(home.join("ext/probe/shim-dir.txt")).unwrap();
    let mut lines = report.lines();
    let (dir, mode, agent_pid) = (
        Path::new(lines.next().unwrap()).to_path_buf(),
        lines.next().unwrap().to_string(),
        lines.next().unwrap().parse::<u32>().unwrap(),
    );
    assert!(
        planted_pids.contains(&agent_pid),
        "the agent (pid {agent_pid}) got a pid outside the prepared range; the attack was not played"
    );
    // Its plugins' shim is kept in the home's agent dir, private, as this
    // build wrote it (`python.rs`, `kept_dir`), never in the shared TMPDIR.
    assert_eq!(
        dir.parent(),
        Some(home.join("run/agent").as_path()),
        "the shim is not in the local agent's own dir"
    );
    let name = dir.file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("python-"), "{name}");
    assert_eq!(mode, "700", "the shim dir is not private");
    use std::os::unix::fs::PermissionsExt;
    let agent_dir = std::fs::metadata(home.join("run/agent")).unwrap();
    assert_eq!(agent_dir.permissions().mode() & 0o777, 0o700);
    // What was prepared for the agent's pid is untouched.
    let prepared = tmpdir.join(format!("aigis-agent-{agent_pid}"));
    assert_eq!(
        std::fs::read_to_string(prepared.join("shim.py")).unwrap(),
        planted
    );
    assert!(!prepared.join("loader.py").exists());

    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit(Duration::from_secs(20)).is_some());
    assert!(!marker.exists());
}

/// Files under `dir` (symlinks not followed) whose contents hold `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => found.extend(files_containing(&path, needle)),
            Ok(t)
                if t.is_file()
                    && std::fs::read(&path)
                        .is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle)) =>
            {
                found.push(path)
            }
            _ => {}
        }
    }
    found
}

/// The daemon's line that says `plugin` failed, if any.
fn failure_of(output: &str, plugin: &str) -> Option<String> {
    let tag = format!("[{plugin}] failed");
    output.lines().find(|l| l.contains(&tag)).map(String::from)
}

/// A local-directory plugin with a symlink into AIGIS's home used to be
/// copied following it: another plugin's secret landed in the plugin's own
/// tree (and went on to a LAN host with it). Links into the home are
/// refused; links inside the plugin, and to elsewhere, still work.
#[test]
fn a_local_plugin_cannot_copy_the_home_through_a_symlink() {
    use std::os::unix::fs::PermissionsExt;
    const SECRET: &str = "VICTIM-TOKEN-5d1e";
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    // `shared/` is public, as `/usr/share` is: a link there is followed.
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = base.join("home");
    write(&home, "secrets/victim/token", SECRET);

    let thief = base.join("src/thief");
    looping(&thief, "thief-running");
    std::fs::create_dir_all(thief.join("conf")).unwrap();
    std::os::unix::fs::symlink(
        "../../../home/secrets/victim/token",
        thief.join("conf/leak.txt"),
    )
    .unwrap();
    let thief_dir = base.join("src/thief_dir");
    looping(&thief_dir, "thief-dir-running");
    std::os::unix::fs::symlink(home.join("secrets/victim"), thief_dir.join("stolen")).unwrap();

    let fine = base.join("src/fine");
    write(
        &fine,
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n",
    );
    write(
        &fine,
        "run.sh",
        "echo \"fine $(cat inner.txt) $(cat shared.txt) $(cat datalink/real.txt)\"\n\
         while true; do sleep 1; done\n",
    );
    write(&fine, "data/real.txt", "inner-content");
    write(base, "shared/readme.txt", "shared-content");
    std::os::unix::fs::symlink("data/real.txt", fine.join("inner.txt")).unwrap();
    std::os::unix::fs::symlink(base.join("shared/readme.txt"), fine.join("shared.txt")).unwrap();
    std::os::unix::fs::symlink("data", fine.join("datalink")).unwrap();

    write(
        base,
        "aigis.toml",
        "[external]\nthief = \"src/thief\"\nthief_dir = \"src/thief_dir\"\nfine = \"src/fine\"\n",
    );
    let home_s = home.to_str().unwrap();
    let daemon = Daemon::start(base, &["run", "-c", "aigis.toml", "--home", home_s]);
    daemon.expect_output("fine inner-content shared-content inner-content", PATIENCE);
    daemon.expect_output("plugin(s) loaded", PATIENCE);
    let output = daemon.output();

    let failed =
        failure_of(&output, "thief").unwrap_or_else(|| panic!("thief was not refused:\n{output}"));
    assert!(
        failed.contains("conf/leak.txt") && failed.contains("home"),
        "the error does not name the link and why: {failed}"
    );
    let failed = failure_of(&output, "thief_dir")
        .unwrap_or_else(|| panic!("thief_dir was not refused:\n{output}"));
    assert!(failed.contains("stolen"), "{failed}");
    assert!(!home.join("ext/thief").exists() && !home.join("ext/thief_dir").exists());
    let leftovers: Vec<_> = std::fs::read_dir(home.join("ext"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers, ["fine"], "half-made copies were left behind");
    assert!(!output.contains(SECRET), "{output}");
    assert_eq!(
        files_containing(&home.join("ext"), SECRET),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(
        files_containing(&home.join("log"), SECRET),
        Vec::<std::path::PathBuf>::new()
    );
    // Links inside the plugin and to outside the home are followed: copies.
    let inner = std::fs::symlink_metadata(home.join("ext/fine/inner.txt")).unwrap();
    assert!(inner.file_type().is_file());
}

/// A git plugin can carry a symlink to anywhere. A secret destination
/// through it used to create its directories outside the plugin's root
/// before the check refused the write; now nothing is created there.
#[test]
fn a_secret_through_a_symlink_creates_nothing_outside_the_plugin() {
    const SECRET: &str = "SNEAKY-TOKEN-9c2b";
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    let outside = base.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    write(&home, "secrets/sneaky/api.token", SECRET);

    let repo = TestRepo::new(&base.join("repos"), "sneaky");
    repo.write(
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n\
         SECRETS = {'api.token': '{root}/conf/made/by/aigis/'}\n",
    );
    repo.write(
        "run.sh",
        "echo sneaky-running\nwhile true; do sleep 1; done\n",
    );
    std::os::unix::fs::symlink(&outside, repo.dir.join("conf")).unwrap();
    repo.commit("a link out");
    write(
        base,
        "aigis.toml",
        &format!("[external]\nsneaky = \"{}\"\n", repo.file_url()),
    );
    let home_s = home.to_str().unwrap();
    let daemon = Daemon::start(base, &["run", "-c", "aigis.toml", "--home", home_s]);
    daemon.expect_output("plugin(s) loaded", PATIENCE);
    let output = daemon.output();
    let failed = failure_of(&output, "sneaky")
        .unwrap_or_else(|| panic!("sneaky was not refused:\n{output}"));
    assert!(failed.contains("outside the plugin root"), "{failed}");
    let created: Vec<_> = std::fs::read_dir(&outside).unwrap().flatten().collect();
    assert!(
        created.is_empty(),
        "created outside the plugin: {created:?}"
    );
    assert!(!output.contains(SECRET));
    assert_eq!(
        files_containing(&home.join("log"), SECRET),
        Vec::<std::path::PathBuf>::new()
    );
}

/// The mode bits of `path`, without following a final symlink.
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Log files carry what plugins print (tokens in debug output, URLs with
/// passwords): `<home>/log/` is the daemon user's alone, 0700, and every
/// file in it 0600, rotated ones too, also in a home an older AIGIS
/// left with 0755 and 0644.
#[test]
fn log_files_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    // What an older AIGIS left behind.
    write(&home, "log/chatty.log", "an old line\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(home.join("log"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        home.join("log/chatty.log"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();

    looping(
        &base.join("src/chatty"),
        "chatty-says-something-long-enough",
    );
    write(
        &base.join("src/fresh"),
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n",
    );
    write(
        &base.join("src/fresh"),
        "run.sh",
        "echo fresh-says-hello\nwhile true; do sleep 1; done\n",
    );
    write(
        base,
        "aigis.toml",
        "[aigis]\nlog_max_bytes = 1000\nlog_keep = 2\n\n\
         [external]\nchatty = \"src/chatty\"\nfresh = \"src/fresh\"\n",
    );
    let home_s = home.to_str().unwrap();
    let daemon = Daemon::start(base, &["run", "-c", "aigis.toml", "--home", home_s]);
    daemon.expect_output("fresh-says-hello", PATIENCE);
    // 1000 bytes hold about ten lines: wait for two rotations.
    daemon.expect_output("chatty-says-something-long-enough 30", PATIENCE);
    assert!(wait_until(PATIENCE, || home
        .join("log/chatty.log.2")
        .exists()));

    let log = home.join("log");
    assert_eq!(mode_of(&log), 0o700, "{}", log.display());
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&log).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert_eq!(mode_of(&entry.path()), 0o600, "{name}");
        seen.push(name);
    }
    seen.sort();
    for wanted in ["chatty.log", "chatty.log.1", "chatty.log.2", "fresh.log"] {
        assert!(seen.iter().any(|s| s == wanted), "{wanted} not in {seen:?}");
    }
}

/// `AIGIS.config` (and `AIGIS.core`) as a symlink to a file that is not
/// the plugin's: its parse error used to quote the target's first line,
/// which printed a secret into the console and the logs. Such a link is
/// refused, naming the link and quoting nothing of its target, by `run`
/// (local copy, git clone, the core) and by `check`.
#[test]
fn a_plugin_config_that_links_elsewhere_is_never_quoted() {
    const SECRET: &str = "ghp_OtherTokenMarker7f3a";
    const ELSEWHERE: &str = "ElsewhereMarker41bd";
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    let token = home.join("secrets/other/token");
    write(&home, "secrets/other/token", SECRET);
    write(base, "elsewhere/notes.txt", ELSEWHERE);
    let external = "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n";
    let link_config = |dir: &Path, to: &Path| {
        write(dir, "run.sh", "while true; do sleep 1; done\n");
        std::fs::create_dir_all(dir.join("AIGIS")).unwrap();
        std::os::unix::fs::symlink(to, dir.join("AIGIS/AIGIS.config")).unwrap();
    };
    // Local directories: a link into the home, and one to elsewhere.
    link_config(&base.join("src/local_link"), &token);
    link_config(
        &base.join("src/outside_link"),
        &base.join("elsewhere/notes.txt"),
    );
    // A git clone keeps its links as links.
    let repos = base.join("repos");
    let git_link = TestRepo::new(&repos, "git_link");
    link_config(&git_link.dir, &token);
    git_link.commit("config elsewhere");
    let core_link = TestRepo::new(&repos, "core_link");
    core_link.write(
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'core'\nENTRYPOINT = '{root}'\n",
    );
    std::os::unix::fs::symlink(&token, core_link.dir.join("AIGIS/AIGIS.core")).unwrap();
    core_link.commit("core elsewhere");
    // And one plugin that is fine, to know the daemon got that far.
    write(&base.join("src/fine"), "AIGIS/AIGIS.config", external);
    write(
        &base.join("src/fine"),
        "run.sh",
        "echo fine-runs\nwhile true; do sleep 1; done\n",
    );
    write(
        base,
        "aigis.toml",
        &format!(
            "[core]\ncore_link = \"{}\"\n\n[external]\nlocal_link = \"src/local_link\"\n\
             outside_link = \"src/outside_link\"\ngit_link = \"{}\"\nfine = \"src/fine\"\n",
            core_link.file_url(),
            git_link.file_url()
        ),
    );
    let home_s = home.to_str().unwrap();
    let check = |when: &str| {
        let (ok, out) = aigis_within(
            base,
            &["check", "-c", "aigis.toml", "--home", home_s],
            PATIENCE,
        )
        .expect("aigis check finished");
        assert!(!ok, "{when}: check passed:\n{out}");
        assert!(
            !out.contains(SECRET) && !out.contains(ELSEWHERE),
            "{when}:\n{out}"
        );
        for plugin in ["local_link", "outside_link", "git_link"] {
            assert!(
                out.lines()
                    .any(|l| l.contains(&format!("plugin `{plugin}`"))
                        && l.contains("AIGIS.config")
                        && l.contains("symlink")),
                "{when}: no reason for {plugin}:\n{out}"
            );
        }
    };
    check("before run");

    let daemon = Daemon::start(base, &["run", "-c", "aigis.toml", "--home", home_s]);
    daemon.expect_output("fine-runs", PATIENCE);
    daemon.expect_output("plugin(s) loaded", PATIENCE);
    let output = daemon.output();
    assert!(
        !output.contains(SECRET) && !output.contains(ELSEWHERE),
        "{output}"
    );
    for (plugin, file) in [
        ("local_link", "AIGIS.config"),
        ("outside_link", "AIGIS.config"),
        ("git_link", "AIGIS.config"),
        ("core_link", "AIGIS.core"),
    ] {
        let failed = failure_of(&output, plugin)
            .unwrap_or_else(|| panic!("{plugin} was not refused:\n{output}"));
        assert!(
            failed.contains(file) && failed.contains("symlink"),
            "{plugin}: the error does not say why: {failed}"
        );
    }
    for dir in ["log", "ext"] {
        assert_eq!(
            files_containing(&home.join(dir), SECRET),
            Vec::<std::path::PathBuf>::new()
        );
        assert_eq!(
            files_containing(&home.join(dir), ELSEWHERE),
            Vec::<std::path::PathBuf>::new()
        );
    }
    // With the clones now in ext/, check reads those: still nothing quoted.
    check("after run");
}

/// A hostile tree for a LAN host: a git repository with a link to the
/// identity central logs in with (`k -> ~/.ssh/…`), and a local directory
/// with a setuid copy of `id`. Tree sync used to follow the link (the key
/// arrived on the host) and keep `mode & 0o7777` (a setuid-root `id` on
/// central and on the host). Now the key never leaves: the plugin fails
/// naming the link, never its target; the setuid bit is dropped on both
/// sides; a link that stays inside its tree arrives as a link.
#[test]
fn a_hostile_tree_carries_no_key_and_no_setuid_bit_to_a_lan_host() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let lan = aigis_e2e::sshd::lan(base);
    let key = lan.hosts[0].client_key.clone();
    let key_line = std::fs::read_to_string(&key)
        .unwrap()
        .lines()
        .nth(1)
        .expect("a key body")
        .to_string();
    let external = |host: &str| {
        format!(
            "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{{root}}'\nLAUNCH = ['sh', 'run.sh']\nHOST = '{host}'\n"
        )
    };
    let repos = base.join("repos");
    let thief = TestRepo::new(&repos, "thief");
    thief.write("AIGIS/AIGIS.config", &external("lan1"));
    thief.write(
        "run.sh",
        "echo thief-running\nwhile true; do sleep 1; done\n",
    );
    std::os::unix::fs::symlink(&key, thief.dir.join("k")).unwrap();
    thief.commit("a key");
    let linked = TestRepo::new(&repos, "linked");
    linked.write("AIGIS/AIGIS.config", &external("lan1"));
    linked.write(
        "real.sh",
        "echo linked-running\nwhile true; do sleep 1; done\n",
    );
    std::os::unix::fs::symlink("real.sh", linked.dir.join("run.sh")).unwrap();
    linked.commit("a link inside");
    let suid = base.join("src/suid");
    write(&suid, "AIGIS/AIGIS.config", &external("lan1"));
    write(
        &suid,
        "run.sh",
        "echo suid-running\nwhile true; do sleep 1; done\n",
    );
    std::fs::copy("/usr/bin/id", suid.join("id")).unwrap();
    std::fs::set_permissions(suid.join("id"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    write(
        base,
        "aigis.toml",
        &format!(
            "[aigis]\nremote_dir = \"{}/{{host}}\"\n[external]\nthief = \"{}\"\n\
             linked = \"{}\"\nsuid = \"src/suid\"\n",
            base.join("hosts").display(),
            thief.file_url(),
            linked.file_url()
        ),
    );
    let home = base.join("home");
    let daemon = Daemon::start_with_env(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
        &[("HOME", lan.user_home.to_str().unwrap())],
    );
    daemon.expect_output("suid-running", PATIENCE);
    daemon.expect_output("linked-running", PATIENCE);
    daemon.expect_output("plugin(s) loaded", PATIENCE);
    let output = daemon.output();
    let failed =
        failure_of(&output, "thief").unwrap_or_else(|| panic!("thief was not refused:\n{output}"));
    assert!(failed.contains("refused to send k:"), "{failed}");
    assert!(!failed.contains(key.to_str().unwrap()), "{failed}");
    assert!(!output.contains("thief-running"), "{output}");
    assert_eq!(
        files_containing(&base.join("hosts"), &key_line),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(
        files_containing(&home, &key_line),
        Vec::<std::path::PathBuf>::new()
    );

    let place = aigis_e2e::sshd::central_place(&base.join("hosts/lan1"), &home);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&home.join("ext/suid/id")), 0o755, "central's copy");
    assert_eq!(mode(&place.join("ext/suid/id")), 0o755, "the host's copy");
    let there = place.join("ext/linked/run.sh");
    assert_eq!(std::fs::read_link(&there).unwrap(), Path::new("real.sh"));
    // The place and the trees are private on the host.
    let bits = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(bits(&place), 0o711, "the place: passable, not readable");
    assert_eq!(bits(&place.join("ext/suid")), 0o700, "a plugin's tree");
    assert_eq!(bits(&place.join("agent.log")), 0o600, "the agent's log");
}

/// A manifest over a frame (2,700 files under a 3,400-byte path: 9.5 MB)
/// used to end the host link's writer for good: later requests vanished
/// and `aigis stop` said `stopped` while the process kept running. It now
/// goes in chunks: the plugin runs there, and stopping it stops it.
#[test]
fn a_tree_whose_manifest_is_larger_than_a_frame_syncs_and_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let lan = aigis_e2e::sshd::lan(base);
    let wide = base.join("src/wide");
    write(
        &wide,
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\nHOST = 'lan1'\n",
    );
    write(
        &wide,
        "run.sh",
        "echo $$ > pid.txt\necho wide-running $(find . -type f | wc -l)\nexec sleep 1000\n",
    );
    let deep: std::path::PathBuf = (0..17).map(|i| format!("{i:0>200}")).collect();
    let dir = wide.join(&deep);
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..2700 {
        std::fs::write(dir.join(format!("f{i}")), i.to_string()).unwrap();
    }
    write(
        base,
        "aigis.toml",
        &format!(
            "[aigis]\nremote_dir = \"{}/{{host}}\"\n[external]\nwide = \"src/wide\"\n",
            base.join("hosts").display()
        ),
    );
    let home = base.join("home");
    let home_s = home.to_str().unwrap();
    let daemon = Daemon::start_with_env(
        base,
        &["run", "-c", "aigis.toml", "--home", home_s],
        &[("HOME", lan.user_home.to_str().unwrap())],
    );
    // run.sh, pid.txt (maybe), the config and the 2,700.
    daemon.expect_output("wide-running 270", PATIENCE);
    let place = aigis_e2e::sshd::central_place(&base.join("hosts/lan1"), &home);
    let pid_file = place.join("ext/wide/pid.txt");
    let pid = aigis_e2e::process::read_pid(&pid_file).expect("the plugin's pid");
    assert!(aigis_e2e::process::alive(pid));
    let (ok, out) = aigis_within(base, &["stop", "wide", "--home", home_s], PATIENCE)
        .expect("aigis stop finishes");
    assert!(ok, "{out}");
    assert!(
        wait_until(Duration::from_secs(10), || !aigis_e2e::process::alive(pid)),
        "aigis stop said {out:?}, but the plugin (pid {pid}) still runs"
    );
}

/// A request or a reply larger than a frame used to end the link for
/// good: a plugin with a 20 MB `LAUNCH` argument killed the local agent
/// (every local plugin failed for good), and a failed start whose error
/// quoted a 4 MB argument muted it. Each now fails that plugin alone,
/// saying why, and the others run and stop as before.
#[test]
fn a_request_or_reply_too_large_for_a_frame_fails_its_plugin_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    looping(&base.join("src/calm"), "calm-running");
    for (name, size) in [("huge", 20_000_000usize), ("quoted", 4_000_000)] {
        write(
            &base.join("src").join(name),
            "AIGIS/AIGIS.config",
            &format!(
                "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{{root}}'\n\
                 LAUNCH = ['./no-such-program', '{}']\n",
                "x".repeat(size)
            ),
        );
    }
    write(
        base,
        "aigis.toml",
        "[external]\nhuge = \"src/huge\"\nquoted = \"src/quoted\"\ncalm = \"src/calm\"\n",
    );
    let home = base.join("home");
    let home_s = home.to_str().unwrap();
    let daemon = Daemon::start(base, &["run", "-c", "aigis.toml", "--home", home_s]);
    daemon.expect_output("calm-running 3", PATIENCE);
    daemon.expect_output("plugin(s) loaded", PATIENCE);
    let output = daemon.output();
    let huge =
        failure_of(&output, "huge").unwrap_or_else(|| panic!("huge did not fail:\n{output:.4000}"));
    assert!(
        huge.contains("more than a frame to the agent carries"),
        "{huge:.2000}"
    );
    let quoted = failure_of(&output, "quoted")
        .unwrap_or_else(|| panic!("quoted did not fail:\n{output:.4000}"));
    assert!(quoted.contains("no-such-program"), "{quoted:.2000}");
    assert!(
        quoted.len() < 200_000,
        "the error was not cut: {} bytes",
        quoted.len()
    );
    assert!(!output.contains("the local agent died"), "{output:.4000}");
    // The agent still serves: calm stops when asked, and prints no more.
    let (ok, out) = aigis_within(base, &["stop", "calm", "--home", home_s], PATIENCE)
        .expect("aigis stop finishes");
    assert!(ok && out.contains("stopped"), "{out}");
}

/// Every plugin used to inherit central's whole environment: a credential
/// given to central (a systemd unit's `Environment=`) reached every
/// plugin and requirements command. They now start with a clean one:
/// `PATH`, `HOME`, the locale and AIGIS's own variables.
#[test]
fn plugins_do_not_inherit_centrals_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    write(
        &base.join("src/nosy"),
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n\
         REQUIREMENTS_COMMAND = 'echo install-sees ${CENTRAL_TOKEN:-nothing}'\n",
    );
    write(
        &base.join("src/nosy"),
        "run.sh",
        "echo nosy-sees ${CENTRAL_TOKEN:-nothing} home=${HOME:+set} path=${PATH:+set} \
         plugin=$AIGIS_PLUGIN\nexec sleep 100\n",
    );
    write(base, "aigis.toml", "[external]\nnosy = \"src/nosy\"\n");
    let home = base.join("home");
    let daemon = Daemon::start_with_env(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
        &[("CENTRAL_TOKEN", "tok-7d3e")],
    );
    daemon.expect_output("nosy-sees nothing home=set path=set plugin=nosy", PATIENCE);
    daemon.expect_output("install-sees nothing", PATIENCE);
    assert!(!daemon.output().contains("tok-7d3e"), "{}", daemon.output());
}
