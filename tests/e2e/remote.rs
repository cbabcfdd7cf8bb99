//! LAN hosts over SSH: two real `sshd`s on 127.0.0.2 and 127.0.0.3 play the
//! hosts. The agent is uploaded once and reused; a remote external plugin
//! (local-directory source, with a secret) and an internal-remote plugin
//! (git source, calling the central core through the AigisProxy) run there;
//! SIGTERM leaves nothing running on any host.

use aigis_e2e::git::TestRepo;
use aigis_e2e::plugins::core_plugin;
use aigis_e2e::process::{alive, read_pid, wait_until, write, Daemon};
use aigis_e2e::sshd::{central_place, lan, Sshd};
use std::path::Path;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

/// Processes whose executable lives under `dir` (the remote agents).
fn running_from(dir: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) {
            if exe.starts_with(dir) && alive(pid) {
                out.push(pid);
            }
        }
    }
    out
}

#[test]
fn plugins_on_lan_hosts_run_with_their_secrets_and_reach_the_core() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let lan = lan(base);
    let home = base.join("home");
    let hosts_dir = base.join("hosts");

    let store = base.join("src/store");
    core_plugin(
        &store,
        "import store_impl as store\nSKILLS = ['store.get', 'store.LIMIT', 'store.fail']\n",
        &[(
            "store_impl.py",
            "LIMIT = 10\n\ndef get(key):\n    return {'key': key}\n\ndef fail():\n    raise ValueError('no such record')\n",
        )],
    );

    // An external plugin from a local directory, on lan1, with a secret.
    let ticker = base.join("src/ticker");
    write(
        &ticker,
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\nHOST = 'lan1'\n\
         SECRETS = {'token.secret': '{root}/conf/'}\n",
    );
    write(
        &ticker,
        "run.sh",
        "echo $$ > pid.txt\npwd > cwd.txt\nstat -c %a conf/token.secret > mode.txt\n\
         i=0\nwhile true; do i=$((i+1)); echo \"tick $i\"; sleep 0.2; done\n",
    );
    write(&home, "secrets/ticker/token.secret", "remote-secret-value");
    // Bigger than a frame's piece: streamed in several pieces.
    let blob: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(ticker.join("blob.bin"), &blob).unwrap();
    write(&home, "secrets/caller/api.key", "0123456789");

    // An internal-remote plugin from git, on lan2, calling the core.
    let repo = TestRepo::new(&base.join("repos"), "caller");
    repo.write(
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = 'main.py'\nHOST = 'lan2'\n\
         SECRETS = {'api.key': '{root}/conf/api.key'}\n",
    );
    repo.write(
        "main.py",
        r#"import json
import os
import time

import aigis


def launch(log):
    out = {"get": aigis.store.get("k1"), "limit": aigis.store.LIMIT(), "pid": os.getpid()}
    out["secret_mode"] = oct(os.stat("conf/api.key").st_mode & 0o777)
    out["secret_len"] = len(open("conf/api.key").read())
    try:
        aigis.store.fail()
    except ValueError as e:
        out["fail"] = str(e)
        out["fail_tb"] = e.remote_traceback
    with open("results.json", "w") as f:
        json.dump(out, f)
    log.info("caller-marker ok")
    while True:
        time.sleep(1)
"#,
    );
    repo.commit("caller");

    write(
        base,
        "aigis.toml",
        &format!(
            "[aigis]\nremote_dir = \"{}/{{host}}\"\n[core]\nstore = \"src/store\"\n\
             [internal-remote]\ncaller = \"{}\"\n[external]\nticker = \"src/ticker\"\n",
            hosts_dir.display(),
            repo.file_url()
        ),
    );
    let home_s = home.to_str().unwrap();
    let user_home = lan.user_home.to_str().unwrap();
    let env = [("HOME", user_home)];

    // An older copy of the caller from an earlier run on its host.
    write(
        &central_place(&hosts_dir.join("lan2"), &home).join("ext/caller"),
        "main.py",
        "raise SystemExit('the stale copy ran')\n",
    );
    let mut daemon =
        Daemon::start_with_env(base, &["run", "-c", "aigis.toml", "--home", home_s], &env);
    daemon.expect_output("[ticker] tick 2", PATIENCE);
    daemon.expect_output("caller-marker ok", PATIENCE);
    let out = daemon.output();
    assert!(out.contains("lan1: uploaded agent"), "{out}");
    assert!(out.contains("lan2: uploaded agent"), "{out}");

    // The plugins run in their roots on their hosts, the secret is 0600 there.
    let ticker_root = central_place(&hosts_dir.join("lan1"), &home).join("ext/ticker");
    assert!(wait_until(PATIENCE, || ticker_root
        .join("mode.txt")
        .exists()));
    assert_eq!(
        std::fs::read_to_string(ticker_root.join("mode.txt"))
            .unwrap()
            .trim(),
        "600"
    );
    assert_eq!(
        std::fs::read_to_string(ticker_root.join("cwd.txt"))
            .unwrap()
            .trim(),
        ticker_root.to_str().unwrap()
    );
    let results = std::fs::read_to_string(
        central_place(&hosts_dir.join("lan2"), &home).join("ext/caller/results.json"),
    )
    .unwrap();
    // The host got the tree central fetched, not a clone of its own: it
    // needs no access to the git server, and an older copy it held (written
    // below before the run) was replaced by what central read.
    assert!(!central_place(&hosts_dir.join("lan2"), &home)
        .join("ext/caller/.git")
        .exists());
    assert_eq!(
        std::fs::read_to_string(
            central_place(&hosts_dir.join("lan2"), &home).join("ext/caller/main.py")
        )
        .unwrap(),
        std::fs::read_to_string(home.join("ext/caller/main.py")).unwrap()
    );
    assert!(results.contains("\"get\": {\"key\": \"k1\"}"), "{results}");
    assert!(results.contains("\"limit\": 10"), "{results}");
    assert!(
        results.contains("\"secret_mode\": \"0o600\", \"secret_len\": 10"),
        "{results}"
    );
    assert!(
        results.contains("\"fail\": \"no such record\"") && results.contains("store_impl.py"),
        "{results}"
    );
    assert!(!out.contains("remote-secret-value"));
    assert!(wait_until(PATIENCE, || {
        std::fs::read_to_string(home.join("log/ticker.log"))
            .unwrap_or_default()
            .contains("tick 3")
    }));

    // SIGTERM: nothing left on either host.
    let mut pids = vec![
        read_pid(&ticker_root.join("pid.txt")).unwrap(),
        results
            .split("\"pid\": ")
            .nth(1)
            .and_then(|s| s.split([',', '}']).next())
            .and_then(|s| s.trim().parse().ok())
            .unwrap(),
    ];
    let agents = running_from(&hosts_dir);
    // Per host: the agent daemon and the `attach` relay of this connection.
    assert_eq!(
        agents.len(),
        4,
        "expected a daemon and a relay per host: {agents:?}"
    );
    pids.extend(agents);
    daemon.signal(libc::SIGTERM);
    assert!(daemon
        .wait_exit(Duration::from_secs(10))
        .expect("aigis exits")
        .success());
    assert!(
        wait_until(Duration::from_secs(3), || pids.iter().all(|&p| !alive(p))),
        "left running: {pids:?}"
    );

    // The next start finds the agent already on the hosts.
    let mut again =
        Daemon::start_with_env(base, &["run", "-c", "aigis.toml", "--home", home_s], &env);
    again.expect_output("[ticker] tick 2", PATIENCE);
    let out = again.output();
    assert!(
        out.contains("lan1: agent") && out.contains("is already there"),
        "{out}"
    );
    assert!(!out.contains("uploaded agent"), "{out}");
    again.signal(libc::SIGTERM);
    assert!(again.wait_exit(Duration::from_secs(10)).is_some());
    assert!(wait_until(Duration::from_secs(3), || running_from(
        &hosts_dir
    )
    .is_empty()));
}

/// A host whose `head` is not GNU's (it may read ahead of the bytes asked
/// for) gets the agent by an upload of its own, then `attach`: the first
/// command only looks. Its plugin runs as on any host.
#[test]
fn a_host_without_gnu_head_gets_the_agent_in_commands_of_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let fake = base.join("fake-bin");
    let asked = base.join("head-asked");
    write(
        &fake,
        "head",
        &format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo asked >> {asked}; \
             echo 'BusyBox v1.36.1 multi-call binary.'; exit 0; fi\nexec /usr/bin/head \"$@\"\n",
            asked = asked.display()
        ),
    );
    std::fs::set_permissions(
        fake.join("head"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        fake.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let host = Sshd::start_with(
        &base.join("sshd"),
        "127.0.0.2",
        &format!("SetEnv PATH={path}\n"),
    );
    let user = base.join("user");
    write(&user, ".ssh/config", &host.config_entry("lan1"));
    write(&user, ".ssh/known_hosts", &host.known_hosts_line);
    far_and_near(base, "lan1", "echo far-ok; sleep 100");
    let daemon = run_for(base, &user);
    daemon.expect_output("far-ok", PATIENCE);
    daemon.expect_output("near-ok", PATIENCE);
    let out = daemon.output();
    assert!(out.contains("lan1: uploaded agent"), "{out}");
    assert!(
        std::fs::read_to_string(&asked).is_ok_and(|a| a.contains("asked")),
        "the probe did not ask the host's head: {out}"
    );
}

/// A host where the agent cannot be written (its remote dir is under a
/// file): the plugin placed there fails, saying so, and the others run.
#[test]
fn a_host_where_the_agent_cannot_be_written_fails_its_plugin_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let lan = lan(base);
    far_and_near(base, "lan1", "echo far-ok; sleep 100");
    // The remote dirs are `hosts/{host}`: under a file, none can be made.
    std::fs::write(base.join("hosts"), "a file, not a directory\n").unwrap();
    let daemon = run_for(base, &lan.user_home);
    daemon.expect_output("near-ok", PATIENCE);
    daemon.expect_output("[far] failed", PATIENCE);
    let out = daemon.output();
    assert!(
        out.contains("lan1: uploading the agent") && out.contains("the host could not write it"),
        "{out}"
    );
    assert!(!out.contains("far-ok"), "{out}");
}

/// `aigis run` on `base/aigis.toml` (home `base/home`) for a user whose
/// home (and `~/.ssh`) is `user_home`.
fn run_for(base: &Path, user_home: &Path) -> Daemon {
    run_with(base, user_home, &[])
}

/// As [`run_for`], with more of central's environment.
fn run_with(base: &Path, user_home: &Path, env: &[(&str, &str)]) -> Daemon {
    let mut env = env.to_vec();
    env.push(("HOME", user_home.to_str().unwrap()));
    Daemon::start_with_env(
        base,
        &[
            "run",
            "-c",
            "aigis.toml",
            "--home",
            base.join("home").to_str().unwrap(),
        ],
        &env,
    )
}

/// A config with `far` (running `script` on `host`) and `near` (local,
/// printing `near-ok`).
fn far_and_near(base: &Path, host: &str, script: &str) {
    write(
        &base.join("src/far"),
        "AIGIS/AIGIS.config",
        &format!("PLUGIN_TYPE = 'external'\nENTRYPOINT = '{{root}}'\nLAUNCH = ['sh', '-c', '{script}']\nHOST = '{host}'\n"),
    );
    write(
        &base.join("src/near"),
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', '-c', 'echo near-ok; sleep 100']\n",
    );
    write(
        base,
        "aigis.toml",
        &format!(
            "[aigis]\nremote_dir = \"{}/{{host}}\"\n[external]\nfar = \"src/far\"\nnear = \"src/near\"\n",
            base.join("hosts").display()
        ),
    );
}

#[test]
fn a_wrong_host_key_refuses_the_plugin_and_the_others_run() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let lan = lan(base);
    // lan1's recorded key is lan2's: a changed key.
    let known = std::fs::read_to_string(lan.user_home.join(".ssh/known_hosts")).unwrap();
    let lines: Vec<&str> = known.lines().collect();
    let lan1_addr = lines[0].split_whitespace().next().unwrap();
    let lan2_key: Vec<&str> = lines[1].split_whitespace().skip(1).collect();
    write(
        &lan.user_home,
        ".ssh/known_hosts",
        &format!("{lan1_addr} {}\n{}\n", lan2_key.join(" "), lines[1]),
    );
    far_and_near(base, "lan1", "true");
    let daemon = run_for(base, &lan.user_home);
    daemon.expect_output("near-ok", PATIENCE);
    daemon.expect_output("host key of lan1 has CHANGED", PATIENCE);
    assert!(
        !base.join("hosts/lan1").exists(),
        "something was uploaded to a host with a wrong key"
    );
    // A refusal is not an outage: said as such, and not retried.
    std::thread::sleep(Duration::from_secs(3));
    let out = daemon.output();
    assert!(
        out.contains("[far] failed: host refused: host key of lan1 has CHANGED"),
        "{out}"
    );
    assert!(!out.contains("host unreachable"), "{out}");
    assert!(!out.contains("trying its host again"), "{out}");
}

#[test]
fn a_dropped_ssh_connection_loses_no_line_and_restarts_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let lan = lan(base);
    let home = base.join("home");
    let hosts_dir = base.join("hosts");
    write(
        &base.join("src/counter"),
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'count.sh']\nHOST = 'lan1'\nRESTART = 3\n",
    );
    write(
        &base.join("src/counter"),
        "count.sh",
        "echo $$ > pid.txt\ni=0\nwhile [ $i -lt 100000 ]; do i=$((i+1)); echo \"count $i\"; sleep 0.01; done\n",
    );
    write(
        base,
        "aigis.toml",
        &format!(
            "[aigis]\nremote_dir = \"{}/{{host}}\"\n[external]\ncounter = \"src/counter\"\n",
            hosts_dir.display()
        ),
    );
    let daemon = Daemon::start_with_env(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
        &[("HOME", lan.user_home.to_str().unwrap())],
    );
    daemon.expect_output("count 50\n", PATIENCE);
    let pid = read_pid(&central_place(&hosts_dir.join("lan1"), &home).join("ext/counter/pid.txt"))
        .unwrap();

    // Cut the connection and keep the host unreachable for 3 seconds.
    let cut = lan.hosts[0].cut_connections(true);
    assert!(cut >= 1, "no SSH connection to cut");
    std::thread::sleep(Duration::from_secs(3));
    lan.hosts[0].resume();
    daemon.expect_output("lan1: reconnected", PATIENCE);

    // Lines printed while away arrive; then the count goes on.
    let log = home.join("log/counter.log");
    let last = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.rsplit("count ").next()?.trim().parse::<u32>().ok())
            .max()
            .unwrap_or(0)
    };
    let seen = last();
    assert!(
        wait_until(PATIENCE, || last() > seen + 200),
        "the count stalled at {}",
        last()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let counts: Vec<u32> = text
        .lines()
        .filter(|l| l.contains("stdout"))
        .filter_map(|l| l.rsplit("count ").next()?.trim().parse().ok())
        .collect();
    let expected: Vec<u32> = (1..=*counts.last().unwrap()).collect();
    assert_eq!(counts, expected, "lines lost, repeated or out of order");
    assert!(
        counts.len() > 300,
        "the test did not run long enough: {}",
        counts.len()
    );
    assert_eq!(
        read_pid(&central_place(&hosts_dir.join("lan1"), &home).join("ext/counter/pid.txt")),
        Some(pid)
    );
    assert!(alive(pid));
    assert!(!text.contains("restarting"), "the plugin was restarted");
    assert!(daemon.output().contains("link lost"), "{}", daemon.output());
}

#[test]
fn a_host_down_at_start_is_retried_while_the_others_run() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let port = Sshd::reserve_port("127.0.0.4");
    let user_home = base.join("user");
    let sshd_dir = base.join("sshd-late");
    write(
        &user_home,
        ".ssh/config",
        &format!(
            "Host late\n    HostName 127.0.0.4\n    Port {port}\n    User root\n    IdentityFile {}\n",
            sshd_dir.join("client_key").display()
        ),
    );
    far_and_near(base, "late", "echo far-ok; sleep 100");
    let daemon = run_for(base, &user_home);
    daemon.expect_output("near-ok", PATIENCE);
    daemon.expect_output("host unreachable", PATIENCE);
    // The host comes up; the plugin follows without a restart of aigis.
    let sshd = Sshd::start_on(&sshd_dir, "127.0.0.4", port);
    write(&user_home, ".ssh/known_hosts", &sshd.known_hosts_line);
    daemon.expect_output("far-ok", PATIENCE);
}

/// The agent daemon on a host is killed (`kill -9`, an OOM kill, a reboot):
/// central learns it when it links again, marks the plugins that ran there
/// failed with the reason, and starts those with `RESTART` again.
#[test]
fn a_killed_agent_daemon_on_a_host_is_noticed_and_its_plugins_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let lan = lan(base);
    far_and_near(
        base,
        "lan1",
        "echo far-pid $$; while true; do sleep 0.2; done",
    );
    // RESTART for the far plugin.
    let config = base.join("src/far/AIGIS/AIGIS.config");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}RESTART = 2\n")).unwrap();
    let daemon = run_for(base, &lan.user_home);
    daemon.expect_output("far-pid", PATIENCE);
    let hosts = base.join("hosts");
    let agent_daemon = running_from(&hosts)
        .into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("daemon"))
        })
        .expect("the agent daemon on lan1");
    // SAFETY: a process this test's daemon started on its own test host.
    unsafe { libc::kill(agent_daemon as i32, libc::SIGKILL) };
    daemon.expect_output("the agent on lan1 was replaced", PATIENCE);
    assert!(wait_until(PATIENCE, || daemon
        .output()
        .matches("far-pid")
        .count()
        >= 2));
    let out = daemon.output();
    assert!(
        out.contains("[far] failed: the agent on lan1 was replaced"),
        "{out}"
    );
}

/// Two centrals (two homes) with plugins on the same host: each has its own
/// place and agent daemon there, neither link flaps, and stopping one
/// central stops only its own plugins.
#[test]
fn two_centrals_on_one_host_never_disturb_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let lan = lan(base);
    far_and_near(
        base,
        "lan1",
        "echo $$ > pid.txt; while true; do echo far-ok; sleep 0.2; done",
    );
    let hosts_dir = base.join("hosts");
    let start = |home: &Path| {
        Daemon::start_with_env(
            base,
            &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
            &[("HOME", lan.user_home.to_str().unwrap())],
        )
    };
    let (home1, home2) = (base.join("home1"), base.join("home2"));
    let mut one = start(&home1);
    one.expect_output("far-ok", PATIENCE);
    let two = start(&home2);
    two.expect_output("far-ok", PATIENCE);
    std::thread::sleep(Duration::from_secs(3));
    for d in [&one, &two] {
        assert!(!d.output().contains("link lost"), "{}", d.output());
    }
    let place1 = central_place(&hosts_dir.join("lan1"), &home1);
    let place2 = central_place(&hosts_dir.join("lan1"), &home2);
    assert_ne!(place1, place2);
    let pid1 = read_pid(&place1.join("ext/far/pid.txt")).unwrap();
    let pid2 = read_pid(&place2.join("ext/far/pid.txt")).unwrap();
    assert!(alive(pid1) && alive(pid2));

    one.signal(libc::SIGTERM);
    assert!(one.wait_exit(Duration::from_secs(15)).is_some());
    assert!(wait_until(Duration::from_secs(5), || !alive(pid1)));
    assert!(
        alive(pid2),
        "stopping one central stopped the other's plugin"
    );
    let before = two.output().matches("far-ok").count();
    assert!(wait_until(PATIENCE, || two
        .output()
        .matches("far-ok")
        .count()
        > before + 3));
    assert!(!two.output().contains("link lost"), "{}", two.output());
}

/// Two LAN hosts: `lan1` forwards to sockets (a proxy plugin there calls
/// central directly), `lan2` refuses to (its calls go through the agent);
/// the user's home with both, and a core plugin `svc` (`ping(x)`,
/// `slow(t)`).
fn forwarding_and_walled(base: &Path) -> (Sshd, Sshd, std::path::PathBuf) {
    let open = Sshd::start(&base.join("sshd1"), "127.0.0.2");
    let walled = Sshd::start_with(
        &base.join("sshd2"),
        "127.0.0.3",
        "AllowStreamLocalForwarding no\n",
    );
    let user = base.join("user");
    write(
        &user,
        ".ssh/config",
        &(open.config_entry("lan1") + &walled.config_entry("lan2")),
    );
    write(
        &user,
        ".ssh/known_hosts",
        &(open.known_hosts_line.clone() + &walled.known_hosts_line),
    );
    core_plugin(
        &base.join("src/svc"),
        "import svc_impl as svc\nSKILLS = ['svc.ping', 'svc.slow']\n",
        &[(
            "svc_impl.py",
            "import time\n\ndef ping(x=''):\n    return ('pong %s' % x).strip()\n\n\
             def slow(t):\n    time.sleep(t)\n    return 'slept'\n",
        )],
    );
    (open, walled, user)
}

/// An internal plugin `name` on `host` running `main`, and the config with
/// `svc` and those plugins.
fn callers(base: &Path, plugins: &[(&str, &str)], main: &str) {
    let mut internal = String::new();
    for (name, host) in plugins {
        write(
            &base.join("src").join(name),
            "AIGIS/AIGIS.config",
            &format!("PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{{root}}'\nLAUNCH = 'main'\nHOST = '{host}'\n"),
        );
        write(&base.join("src").join(name), "main.py", main);
        internal.push_str(&format!("{name} = \"src/{name}\"\n"));
    }
    write(
        base,
        "aigis.toml",
        &format!(
            "[aigis]\nremote_dir = \"{}/{{host}}\"\n[core]\nsvc = \"src/svc\"\n[internal]\n{internal}",
            base.join("hosts").display()
        ),
    );
}

/// Python for a caller: `settle()` calls until its calls go direct (for up
/// to `secs`) and says which way they go.
const SETTLE: &str = r#"import os, time
import aigis

NAME = os.environ["AIGIS_PLUGIN"]

def settle(secs):
    calls, start, n = aigis.__dict__["_link"], time.time(), 0
    while calls._direct is None and time.time() - start < secs:
        n += 1
        assert aigis.svc.ping(n) == "pong %d" % n
        time.sleep(0.01)
    return "direct" if calls._direct is not None else "through-the-agent"
"#;

/// An AigisProxy plugin on a LAN host calls central over its direct
/// channel, not through the agent; on a host whose sshd refuses to forward
/// to a socket, the same plugin's calls go through the agent and work.
#[test]
fn proxy_calls_go_straight_to_central_where_the_host_forwards_them() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let (_open, _walled, user) = forwarding_and_walled(base);
    let main = format!(
        "{SETTLE}\ndef launch():\n    first = aigis.svc.ping(0)\n    way = settle(5)\n    \
         print(NAME, way, aigis.svc.ping('last'), first, flush=True)\n    \
         while True:\n        time.sleep(1)\n"
    );
    callers(base, &[("near", "lan1"), ("walled", "lan2")], &main);
    let daemon = run_for(base, &user);
    daemon.expect_output("near direct pong last pong 0", PATIENCE);
    daemon.expect_output("walled through-the-agent pong last pong 0", PATIENCE);
}

/// A plugin on a LAN host that exits for good has its direct call channel
/// let go: central stops asking the host's sshd to connect to a socket the
/// agent removed (every try an error in the host's sshd log).
#[test]
fn a_plugin_that_failed_for_good_has_its_direct_channel_let_go() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let (_open, _walled, user) = forwarding_and_walled(base);
    let main = format!(
        "{SETTLE}\ndef launch():\n    print(NAME, settle(5), flush=True)\n    raise SystemExit(3)\n"
    );
    callers(base, &[("quitter", "lan1")], &main);
    let daemon = run_with(
        base,
        &user,
        &[("AIGIS_LOG", "info,aigis::daemon::direct=debug")],
    );
    daemon.expect_output("quitter direct", PATIENCE);
    daemon.expect_output("[quitter] failed", PATIENCE);
    // Tries back off from 100 ms: without letting go, this sees several.
    std::thread::sleep(Duration::from_secs(3));
    let out = daemon.output();
    let after = out.split("[quitter] failed").nth(1).unwrap_or_default();
    let tries = after.matches("no direct call channel").count();
    assert_eq!(tries, 0, "{out}");
}

/// A slow core call from a LAN host holds up nothing else that host
/// sends: another plugin's calls there are answered meanwhile, as is the
/// same plugin's next call from another thread.
#[test]
fn a_slow_call_from_a_host_holds_up_none_of_its_other_calls() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let (_open, _walled, user) = forwarding_and_walled(base);
    let main = SETTLE.to_string()
        + r#"
import threading

def launch():
    settle(5)
    if NAME == "sleeper":
        print(NAME, "ready", flush=True)
        threads = [threading.Thread(target=aigis.svc.slow, args=(4,)) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(1)
        t0 = time.time()
        aigis.svc.ping("mine")
        print(NAME, "own quick call while slow ones run: %.2f s" % (time.time() - t0), flush=True)
    else:
        while not os.path.exists(os.environ["AIGIS_ROOT"] + "/../../go"):
            time.sleep(0.01)
        worst = 0.0
        for i in range(100):
            t0 = time.time()
            aigis.svc.ping(i)
            worst = max(worst, time.time() - t0)
            time.sleep(0.01)
        print(NAME, "worst call while slow ones run: %.2f s" % worst, flush=True)
    while True:
        time.sleep(1)
"#;
    callers(base, &[("sleeper", "lan1"), ("busy", "lan1")], &main);
    let daemon = run_for(base, &user);
    daemon.expect_output("sleeper ready", PATIENCE);
    std::thread::sleep(Duration::from_millis(300));
    let go = central_place(&base.join("hosts/lan1"), &base.join("home")).join("go");
    std::fs::write(&go, "go").unwrap();
    daemon.expect_output("busy worst call while slow ones run:", PATIENCE);
    daemon.expect_output("sleeper own quick call while slow ones run:", PATIENCE);
    let out = daemon.output();
    for what in ["busy worst call", "sleeper own quick call"] {
        let secs: f64 = out
            .lines()
            .find_map(|l| l.split(&format!("{what} while slow ones run: ")).nth(1))
            .and_then(|v| v.trim_end_matches(" s").trim().parse().ok())
            .unwrap_or_else(|| panic!("{what}: {out}"));
        assert!(secs < 1.0, "{what}: {secs} s\n{out}");
    }
}

/// A proxy call in flight when the SSH connection dies fails at once with a
/// clear error (it may or may not have run, so it is not run again), and
/// calls work again once the link is back: a direct call as one relayed by
/// the agent. The direct channel comes back too.
#[test]
fn a_call_in_flight_when_the_link_drops_fails_clearly_and_the_next_works() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let (open, walled, user) = forwarding_and_walled(base);
    let main = SETTLE.to_string()
        + r#"
def launch():
    print(NAME, "ready", settle(5), flush=True)
    while not os.path.exists(os.environ["GO"]):
        time.sleep(0.05)
    t = time.time()
    try:
        aigis.svc.slow(10)
        print(NAME, "slow-returned", flush=True)
    except ConnectionError as e:
        print(NAME, "slow-failed after %.1f s: %s" % (time.time() - t, e), flush=True)
    while True:
        try:
            print(NAME, "after:", aigis.svc.ping(), flush=True)
            break
        except ConnectionError:
            time.sleep(0.5)
    print(NAME, "then", settle(30), flush=True)
    while True:
        time.sleep(1)
"#;
    let go = base.join("go");
    let main = main.replace(
        r#"os.environ["GO"]"#,
        &format!("{:?}", go.display().to_string()),
    );
    callers(base, &[("near", "lan1"), ("walled", "lan2")], &main);
    let daemon = run_for(base, &user);
    daemon.expect_output("near ready direct", PATIENCE);
    daemon.expect_output("walled ready through-the-agent", PATIENCE);
    // Both slow calls start, then the links drop under them.
    std::fs::write(&go, "go").unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    for host in [&open, &walled] {
        let cut = host.cut_connections(true);
        assert!(cut >= 1, "no SSH connection to cut");
    }
    std::thread::sleep(Duration::from_secs(2));
    open.resume();
    walled.resume();
    for name in ["near", "walled"] {
        daemon.expect_output(&format!("{name} after: pong"), PATIENCE);
    }
    daemon.expect_output("near then direct", PATIENCE);
    daemon.expect_output("walled then through-the-agent", PATIENCE);
    let out = daemon.output();
    for name in ["near", "walled"] {
        assert!(
            out.lines()
                .any(|l| l.contains(&format!("{name} slow-failed after"))
                    && l.contains("dropped while this call was in flight")),
            "{out}"
        );
        assert!(!out.contains(&format!("{name} slow-returned")), "{out}");
    }
}

/// An agent daemon of another build (an AIGIS upgraded since it started)
/// serves this central's place on the host and would take the link without
/// speaking its protocol: `attach` stops it and starts its own, and the
/// plugin runs.
#[test]
fn an_agent_daemon_of_another_build_is_replaced_not_handed_the_link() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let lan = lan(base);
    far_and_near(base, "lan1", "echo far-ok; sleep 100");
    let place = central_place(&base.join("hosts/lan1"), &base.join("home"));
    std::fs::create_dir_all(&place).unwrap();
    let socket = place.join("agent.sock");
    // Takes the link's descriptors and never answers, as a daemon of an
    // older protocol does.
    let old = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import socket, sys\n\
             s = socket.socket(socket.AF_UNIX)\n\
             s.bind(sys.argv[1])\n\
             s.listen(8)\n\
             held = []\n\
             while True:\n    held.append(s.accept())\n",
        )
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut old = Reaped(old);
    assert!(wait_until(PATIENCE, || socket.exists()));
    let daemon = run_for(base, &lan.user_home);
    daemon.expect_output("far-ok", PATIENCE);
    assert!(
        wait_until(PATIENCE, || old.0.try_wait().unwrap().is_some()),
        "the daemon of another build still runs"
    );
    let agents = running_from(&base.join("hosts"));
    assert!(!agents.is_empty(), "no agent of this build runs on lan1");
    let log = std::fs::read_to_string(place.join("agent.log")).unwrap_or_default();
    assert!(
        log.contains("stopping the agent daemon of another build"),
        "{log}"
    );
}

/// A child the test started, killed (if still running) and reaped however
/// the test ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A LAN host that takes the connection and then never answers used to
/// hold every plugin listed after it (plugins start in config order and
/// waited for it). A plugin on such a host now delays only itself: the
/// others take their turn, and the daemon still stops at once.
#[test]
fn a_silent_host_delays_only_its_own_plugins() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    // Logs in, then runs nothing AIGIS asks: the probe never answers.
    let silent = Sshd::start_with(
        &base.join("sshd-silent"),
        "127.0.0.5",
        "ForceCommand sleep 600\n",
    );
    let user_home = base.join("user");
    write(&user_home, ".ssh/config", &silent.config_entry("lan1"));
    write(&user_home, ".ssh/known_hosts", &silent.known_hosts_line);
    far_and_near(base, "lan1", "echo far-ok; sleep 100");
    // `far` comes first in the config.
    let config = std::fs::read_to_string(base.join("aigis.toml")).unwrap();
    assert!(config.find("far =") < config.find("near ="), "{config}");
    let mut daemon = run_for(base, &user_home);
    let started = std::time::Instant::now();
    daemon.expect_output("near-ok", PATIENCE);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "near waited {:?} for the silent host:\n{}",
        started.elapsed(),
        daemon.output()
    );
    assert!(!daemon.output().contains("far-ok"));
    daemon.signal(libc::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(15))
        .expect("aigis exits");
    assert!(status.success(), "{status:?}\n{}", daemon.output());
}

/// During an outage `aigis status` showed a lost host's plugins
/// `running`; only the console said the link was lost. They now show as
/// unreachable since the link went, with their last known state, until it
/// is back.
#[test]
fn a_lost_hosts_plugins_show_as_unreachable_until_it_is_back() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let lan = lan(base);
    far_and_near(base, "lan1", "echo far-ok; sleep 100");
    let daemon = run_for(base, &lan.user_home);
    daemon.expect_output("far-ok", PATIENCE);
    daemon.expect_output("near-ok", PATIENCE);
    let home = base.join("home");
    let home_s = home.to_str().unwrap();
    let row = |name: &str| {
        let (ok, table) = aigis_e2e::process::aigis(base, &["status", "--home", home_s]);
        assert!(ok, "{table}");
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(!row("far").contains("unreachable"), "{}", row("far"));

    assert!(
        lan.hosts[0].cut_connections(true) >= 1,
        "no SSH connection to cut"
    );
    daemon.expect_output("lan1: link lost", PATIENCE);
    let far = row("far");
    assert!(
        far.contains("unreachable since") && far.contains("(last: running"),
        "{far}"
    );
    assert!(!row("near").contains("unreachable"), "{}", row("near"));
    let (_, json) = aigis_e2e::process::aigis(base, &["status", "far", "--json", "--home", home_s]);
    assert!(json.contains("\"unreachable_since\""), "{json}");

    lan.hosts[0].resume();
    daemon.expect_output("lan1: reconnected", PATIENCE);
    assert!(
        wait_until(PATIENCE, || !row("far").contains("unreachable")),
        "{}",
        row("far")
    );
    assert!(row("far").contains("running"), "{}", row("far"));
}
