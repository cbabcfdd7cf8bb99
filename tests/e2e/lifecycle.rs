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
