//! A compromised LAN host: its agent speaks `proto` and lies. Central
//! accepts events only for the plugins it placed on that host's link, never
//! builds a file name from a name it did not check, and a plugin there may
//! not reload another host's plugin.

use aigis_e2e::plugins::shell_plugin;
use aigis_e2e::process::{bin, read_pid, wait_until, write, Daemon};
use aigis_e2e::sshd::lan;
use std::process::Command;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn a_lying_agent_cannot_write_other_logs_forge_states_or_exhaust_central() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let lan = lan(base);
    let home = base.join("home");
    let hosts = base.join("hosts");

    // The host already "has" our agent: a hostile binary under its name.
    let real = bin("aigis-agent");
    let sum = Command::new("sha256sum").arg(&real).output().unwrap();
    let hash = String::from_utf8_lossy(&sum.stdout)[..16].to_string();
    let planted = hosts.join(format!("lan1/bin/aigis-agent-{hash}"));
    std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
    std::fs::copy(bin("hostile-agent"), &planted).unwrap();

    shell_plugin(
        &base.join("src/victim"),
        "i=0; while true; do i=$((i+1)); echo victim-says $i; sleep 0.2; done\n",
    );
    write(
        base,
        "src/hostile/AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['true']\nHOST = 'lan1'\n",
    );
    write(
        base,
        "aigis.toml",
        &format!(
            "[aigis]\nremote_dir = \"{}/{{host}}\"\n[external]\nvictim = \"src/victim\"\nhostile = \"src/hostile\"\n",
            hosts.display()
        ),
    );
    let home_s = home.to_str().unwrap();
    let daemon = Daemon::start_with_env(
        base,
        &["run", "-c", "aigis.toml", "--home", home_s],
        &[("HOME", lan.user_home.to_str().unwrap())],
    );
    daemon.expect_output("victim-says 2", PATIENCE);
    daemon.expect_output("hostile-done", PATIENCE);

    // No file outside the log directory, none for made-up names.
    assert!(!base.join("escape.log").exists());
    let logs: Vec<_> = std::fs::read_dir(home.join("log"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        logs.iter().all(|n| n.starts_with("victim.log")
            || n.starts_with("hostile.log")
            || n.starts_with("aigis")),
        "{logs:?}"
    );
    // The victim's log and state are its own.
    let victim_log = std::fs::read_to_string(home.join("log/victim.log")).unwrap();
    assert!(!victim_log.contains("forged-line"), "{victim_log}");
    let out = daemon.output();
    assert!(!out.contains("forged-line"), "{out}");
    assert!(
        out.contains("lan1: refused an event for \"../../escape\""),
        "{out}"
    );
    assert!(!out.contains("[victim] reloading"), "{out}");
    let status = Command::new(bin("aigis"))
        .args(["status", "--json", "--home", home_s])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    let pid = read_pid(&home.join("ext/victim/pid.txt")).unwrap();
    assert!(status.contains(&format!("\"pid\": {pid}")), "{status}");
    assert!(!status.contains("\"pid\": 1,"), "{status}");
    // Central still has descriptors to spare and answers.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", daemon.pid()))
        .unwrap()
        .count();
    assert!(fds < 200, "central holds {fds} descriptors");
    assert!(wait_until(PATIENCE, || daemon
        .output()
        .contains("victim-says 10")));
}

/// An `[external]` repository cannot add code to the core: its
/// `AIGIS/AIGIS.core` is ignored with a warning, never imported.
#[test]
fn an_external_plugins_aigis_core_is_never_imported() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    let marker = base.join("imported-into-central");
    shell_plugin(&base.join("src/ext"), "echo ext-up; sleep 100\n");
    write(
        base,
        "src/ext/AIGIS/AIGIS.core",
        &format!(
            "open({:?}, 'w').write('ran in central')\nSKILLS = []\n",
            marker.display().to_string()
        ),
    );
    write(base, "aigis.toml", "[external]\next = \"src/ext\"\n");
    let daemon = Daemon::start(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
    );
    daemon.expect_output("ext-up", PATIENCE);
    daemon.expect_output("AIGIS/AIGIS.core ignored", PATIENCE);
    assert!(
        !marker.exists(),
        "an external plugin's AIGIS.core ran in central"
    );
}
