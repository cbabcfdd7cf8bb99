//! The daemon's life as one spine: whatever is in flight when SIGTERM
//! arrives (a reload waiting on a slow requirements step, a hundred
//! plugins running), the daemon stops every plugin and exits in seconds,
//! leaving nothing running.

use aigis_e2e::plugins::{external_config, plugin, shell_plugin};
use aigis_e2e::process::{alive, bin, read_pid, wait_until, Daemon};
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(90);

#[test]
fn sigterm_with_a_reload_in_flight_and_100_plugins_exits_in_under_3_s() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    let mut plugins = Vec::new();
    for i in 0..100 {
        let name = format!("p{i:03}");
        shell_plugin(
            &base.join("src").join(&name),
            "while true; do sleep 0.2; done\n",
        );
        plugins.push((name.clone(), format!("src/{name}")));
    }
    // A plugin whose requirements step takes long the second time: its
    // reload is still installing when SIGTERM comes.
    plugin(
        &base.join("src/slow"),
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n\
         REQUIREMENTS_COMMAND = 'sh install.sh'\n",
        &[
            ("run.sh", "echo slow-up\nwhile true; do sleep 0.2; done\n"),
            (
                "install.sh",
                "if [ -e installed ]; then echo installing-again; sleep 30; fi\ntouch installed\n",
            ),
        ],
    );
    plugins.push(("slow".into(), "src/slow".into()));
    external_config(base, &plugins);

    let home_s = home.to_str().unwrap();
    let mut daemon = Daemon::start(base, &["run", "-c", "aigis.toml", "--home", home_s]);
    daemon.expect_output("101 plugin(s) loaded", PATIENCE);
    daemon.expect_output("slow-up", PATIENCE);
    let pids: Vec<u32> = plugins
        .iter()
        .filter(|(n, _)| n != "slow")
        .map(|(n, _)| read_pid(&home.join("ext").join(n).join("pid.txt")).unwrap())
        .collect();
    assert!(pids.iter().all(|p| alive(*p)));

    // `aigis reload slow` in the background: it waits on the slow step.
    let mut reload = std::process::Command::new(bin("aigis"))
        .args(["reload", "slow", "--home", home_s])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    daemon.expect_output("installing-again", PATIENCE);

    let start = Instant::now();
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit(Duration::from_secs(10));
    let took = start.elapsed();
    assert!(status.is_some_and(|s| s.success()), "{}", daemon.output());
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    assert!(
        wait_until(Duration::from_secs(2), || pids.iter().all(|p| !alive(*p))),
        "plugins left running"
    );
    // The reload's client is told, it does not hang.
    assert!(wait_until(Duration::from_secs(5), || reload
        .try_wait()
        .unwrap()
        .is_some()));
    let out = daemon.output();
    assert!(out.contains("aigis stopped"), "{out}");
}

/// `RESTART = "always"` used to be refused, and after N failures a plugin
/// stayed down until someone noticed. It now restarts after every exit,
/// waiting longer each time (0.5 s doubling), never giving up; and
/// `"on-failure"` leaves a plugin that finished with success alone.
#[test]
fn restart_always_backs_off_and_on_failure_leaves_a_success_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    let home_s = home.to_str().unwrap();
    aigis_e2e::plugins::plugin(
        &base.join("src/crashy"),
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\nRESTART = 'always'\n",
        &[("run.sh", "echo crash-at $(date +%s%N)\nexit 1\n")],
    );
    aigis_e2e::plugins::plugin(
        &base.join("src/oneshot"),
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\nRESTART = 'on-failure'\n",
        &[("run.sh", "echo oneshot-done\nexit 0\n")],
    );
    aigis_e2e::process::write(
        base,
        "aigis.toml",
        "[external]\ncrashy = \"src/crashy\"\noneshot = \"src/oneshot\"\n",
    );
    let daemon = Daemon::start(base, &["run", "-c", "aigis.toml", "--home", home_s]);
    let crashes = || {
        daemon
            .output()
            .lines()
            .filter_map(|l| l.split("crash-at ").nth(1)?.trim().parse::<u128>().ok())
            .collect::<Vec<u128>>()
    };
    // 0.5, 1, 2 and 4 s (each ±20 %): five runs in about 7.5 s.
    assert!(
        aigis_e2e::process::wait_until(Duration::from_secs(60), || crashes().len() >= 5),
        "{}",
        daemon.output()
    );
    let at = crashes();
    let gaps: Vec<f64> = at.windows(2).map(|w| (w[1] - w[0]) as f64 / 1e9).collect();
    assert!(gaps[0] > 0.3 && gaps[0] < 1.5, "{gaps:?}");
    assert!(gaps[3] > 2.5, "the delay did not grow: {gaps:?}");
    assert!(gaps[3] > gaps[0] * 3.0, "{gaps:?}");
    let (ok, status) = aigis_e2e::process::aigis(base, &["status", "crashy", "--home", home_s]);
    assert!(ok && status.contains("unlimited"), "{status}");
    // The one that finished well was not started again.
    let out = daemon.output();
    assert_eq!(out.matches("oneshot-done").count(), 1, "{out}");
    assert!(!out.contains("[oneshot] restarting"), "{out}");
}
