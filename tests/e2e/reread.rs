//! SIGHUP (and `aigis reload` without a name) reads the central config
//! again and applies the difference: new plugins start, removed ones stop,
//! changed ones restart, untouched ones keep running.

use aigis_e2e::plugins::{external_config, shell_plugin};
use aigis_e2e::process::{alive, bin, read_pid, wait_until, Daemon};
use std::process::Command;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn sighup_applies_the_difference_and_keeps_the_rest_running() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    let home_s = home.to_str().unwrap();
    let looping = |word: &str| format!("while true; do echo {word}; sleep 0.2; done\n");
    for (dir, word) in [
        ("keep", "keep-says"),
        ("gone", "gone-says"),
        ("moved", "moved-old"),
        ("moved2", "moved-new"),
        ("new", "new-says"),
    ] {
        shell_plugin(&base.join("src").join(dir), &looping(word));
    }
    let entry = |n: &str, d: &str| (n.to_string(), format!("src/{d}"));
    external_config(
        base,
        &[
            entry("keep", "keep"),
            entry("gone", "gone"),
            entry("moved", "moved"),
        ],
    );
    let mut daemon = Daemon::start(base, &["run", "-c", "aigis.toml", "--home", home_s]);
    daemon.expect_output("moved-old", PATIENCE);
    daemon.expect_output("gone-says", PATIENCE);
    let pid = |name: &str| read_pid(&home.join("ext").join(name).join("pid.txt")).unwrap();
    let (keep, gone) = (pid("keep"), pid("gone"));

    external_config(
        base,
        &[
            entry("new", "new"),
            entry("keep", "keep"),
            entry("moved", "moved2"),
        ],
    );
    daemon.signal(libc::SIGHUP);
    daemon.expect_output(
        "config read again: 1 added, 1 removed, 1 changed, 1 unchanged",
        PATIENCE,
    );
    daemon.expect_output("new-says", PATIENCE);
    assert!(
        wait_until(PATIENCE, || !alive(gone)),
        "a removed plugin still runs"
    );
    assert!(alive(keep), "an untouched plugin was restarted");
    assert_eq!(pid("keep"), keep);
    // `moved` now runs its new source; its old copy is kept aside.
    assert!(wait_until(PATIENCE, || std::fs::read_to_string(
        home.join("log/moved.log")
    )
    .unwrap_or_default()
    .contains("moved-new")));
    assert!(home.join("ext/moved.old").is_dir());
    let out = Command::new(bin("aigis"))
        .args(["status", "--home", home_s])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout).into_owned();
    let names: Vec<&str> = status
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, ["new", "keep", "moved"], "{status}");

    // `aigis reload` without a name does the same; nothing changed now.
    let out = Command::new(bin("aigis"))
        .args(["reload", "--home", home_s])
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("0 added, 0 removed, 0 changed, 3 unchanged"),
        "{said}"
    );
    assert!(alive(keep));
    daemon.signal(libc::SIGTERM);
    assert!(daemon
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    assert!(daemon.output().contains("aigis stopped"));
}

/// `[aigis] may_reload` read again by SIGHUP applies to the next request of
/// a plugin that is running: no restart of `aigis` or of the plugin.
#[test]
fn sighup_applies_a_new_may_reload_to_running_plugins() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    aigis_e2e::process::write(
        &base.join("src/caller"),
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = 'main'\n",
    );
    aigis_e2e::process::write(
        &base.join("src/caller"),
        "main.py",
        r#"import os, time
import aigis

def launch():
    print("caller-up", flush=True)
    while True:
        for name in sorted(os.listdir(".")):
            if name.startswith("go-"):
                os.remove(name)
                try:
                    aigis.AIGISReload("target")
                    print(name, "reload allowed", flush=True)
                except RuntimeError as e:
                    print(name, "reload refused:", e, flush=True)
        time.sleep(0.05)
"#,
    );
    shell_plugin(&base.join("src/target"), "sleep 100\n");
    let config = |grant: &str| {
        aigis_e2e::process::write(
            base,
            "aigis.toml",
            &format!(
                "[aigis]\n{grant}\n[internal]\ncaller = \"src/caller\"\n\
                 [external]\ntarget = \"src/target\"\n"
            ),
        )
    };
    config("");
    let daemon = Daemon::start(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
    );
    daemon.expect_output("caller-up", PATIENCE);
    daemon.expect_output("[target] running", PATIENCE);
    aigis_e2e::process::write(&home.join("ext/caller"), "go-1", "");
    daemon.expect_output("go-1 reload refused", PATIENCE);

    config("may_reload = { caller = [\"target\"] }");
    daemon.signal(libc::SIGHUP);
    daemon.expect_output("config read again", PATIENCE);
    aigis_e2e::process::write(&home.join("ext/caller"), "go-2", "");
    daemon.expect_output("go-2 reload allowed", PATIENCE);
    daemon.expect_output("[target] reloading", PATIENCE);
}

/// A plugin removed from the config while its load ran used to be
/// started anyway, then missing from `status` and out of `aigis stop`'s
/// reach; a source changed during a load was never applied. Both now
/// take effect once the load ends.
#[test]
fn a_change_made_while_a_plugin_loads_takes_effect_when_the_load_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    let home_s = home.to_str().unwrap();
    for (dir, word) in [
        ("slow", "slow-runs"),
        ("slow2", "slow-new"),
        ("later", "later-runs"),
    ] {
        aigis_e2e::process::write(
            &base.join("src").join(dir),
            "AIGIS/AIGIS.config",
            "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n\
             REQUIREMENTS_COMMAND = 'sleep 3'\n",
        );
        aigis_e2e::process::write(
            &base.join("src").join(dir),
            "run.sh",
            &format!("echo $$ > pid.txt\nwhile true; do echo {word}; sleep 0.2; done\n"),
        );
    }
    let entry = |n: &str, d: &str| (n.to_string(), format!("src/{d}"));
    external_config(base, &[entry("gone", "slow"), entry("moved", "later")]);
    let daemon = Daemon::start(base, &["run", "-c", "aigis.toml", "--home", home_s]);
    daemon.expect_output("[gone] installing", PATIENCE);
    daemon.expect_output("[moved] installing", PATIENCE);
    // Both are in their 3 s requirements step: one removed, one moved.
    external_config(base, &[entry("moved", "slow2")]);
    daemon.signal(libc::SIGHUP);
    daemon.expect_output("applied once the operation under way ends", PATIENCE);
    daemon.expect_output("[moved] slow-new", PATIENCE);
    daemon.expect_output(
        "removed from the config: stopped once its load ended",
        PATIENCE,
    );
    if let Some(pid) = read_pid(&home.join("ext/gone/pid.txt")) {
        assert!(
            wait_until(PATIENCE, || !alive(pid)),
            "the removed plugin (pid {pid}) still runs"
        );
    }
    let (ok, table) = aigis_e2e::process::aigis(base, &["status", "--home", home_s]);
    assert!(ok, "{table}");
    assert!(!table.lines().any(|l| l.starts_with("gone")), "{table}");
}
