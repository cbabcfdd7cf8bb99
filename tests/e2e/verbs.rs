//! The operator's verbs against a daemon that is still loading: plugins are
//! fetched and installed side by side and start in config order; a verb on
//! a plugin that waits for its turn says so instead of loading it twice;
//! a verb that fails exits non-zero.

use aigis_e2e::plugins::{external_config, plugin};
use aigis_e2e::process::{aigis, wait_until, Daemon};
use std::path::Path;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

/// An external plugin whose requirements step takes `install_s` seconds.
fn slow_to_install(dir: &Path, word: &str, install_s: u32) {
    plugin(
        dir,
        &format!(
            "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{{root}}'\nLAUNCH = ['sh', 'run.sh']\n\
             REQUIREMENTS_COMMAND = 'sleep {install_s}'\n"
        ),
        &[(
            "run.sh",
            &format!("echo $$ >> pids.txt\necho {word}-up\nwhile true; do sleep 0.2; done\n"),
        )],
    );
}

#[test]
fn loading_runs_side_by_side_and_verbs_on_waiting_plugins_say_why() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    let home_s = home.to_str().unwrap();
    slow_to_install(&base.join("src/slow"), "slow", 5);
    let mut plugins = vec![("slow".to_string(), "src/slow".to_string())];
    for i in 1..=3 {
        let name = format!("quick{i}");
        slow_to_install(&base.join("src").join(&name), &name, 2);
        plugins.push((name.clone(), format!("src/{name}")));
    }
    plugin(
        &base.join("src/broken"),
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['./no-such-program']\n",
        &[],
    );
    plugins.push(("broken".into(), "src/broken".into()));
    external_config(base, &plugins);

    let daemon = Daemon::start(base, &["run", "-c", "aigis.toml", "--home", home_s]);
    // While `slow` installs, quick1 waits for its turn: a start says why.
    assert!(wait_until(PATIENCE, || daemon
        .output()
        .contains("[quick1] installing")));
    let (ok, out) = aigis(base, &["start", "quick1", "--home", home_s]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("another operation on it is under way"),
        "{out}"
    );

    daemon.expect_output("quick3-up", PATIENCE);
    let out = daemon.output();
    // Side by side: the others installed while `slow` still did.
    let at = |w: &str| out.find(w).unwrap_or_else(|| panic!("{w}: {out}"));
    assert!(at("[quick3] installing") < at("[slow] starting"), "{out}");
    // Started in config order (what they print may interleave).
    let order: Vec<usize> = ["slow", "quick1", "quick2", "quick3"]
        .iter()
        .map(|w| at(&format!("[{w}] running")))
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "not in config order: {out}"
    );
    // quick1 was started once.
    let pids = std::fs::read_to_string(home.join("ext/quick1/pids.txt")).unwrap();
    assert_eq!(pids.lines().count(), 1, "{pids}");

    // A failing verb exits non-zero and says why.
    daemon.expect_output("[broken] failed", PATIENCE);
    let (ok, out) = aigis(base, &["reload", "broken", "--home", home_s]);
    assert!(!ok, "{out}");
    assert!(out.contains("broken failed"), "{out}");
    let (ok, out) = aigis(base, &["start", "broken", "--home", home_s]);
    assert!(!ok, "{out}");
}

/// A git fetch tells how far it is: in the log every quarter, and in status.
#[test]
fn a_git_fetch_says_how_far_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    let repo = aigis_e2e::git::TestRepo::new(&base.join("repos"), "gitplug");
    for i in 0..40 {
        repo.write(&format!("data/f{i}.txt"), &format!("file {i}\n"));
    }
    repo.write(
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', '-c', 'echo git-up; sleep 100']\n",
    );
    repo.commit("many files");
    aigis_e2e::process::write(
        base,
        "aigis.toml",
        &format!("[external]\ngitplug = \"{}\"\n", repo.file_url()),
    );
    let daemon = Daemon::start(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
    );
    daemon.expect_output("git-up", PATIENCE);
    let out = daemon.output();
    assert!(out.contains("[gitplug] fetching 100%"), "{out}");
}

/// `RESTART` as systemd's StartLimitIntervalSec: a run of 60 s or more
/// earns the whole budget back, so a plugin that crashes now and then is
/// never dead for good. (A minute-long test: the rule is about a minute.)
#[test]
fn a_healthy_run_refills_the_restart_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    // Run 1 crashes at once (budget 1 -> 0); run 2 lives 61 s, then crashes:
    // without the refill it would stay down; run 3 stays up.
    plugin(
        &base.join("src/wobbly"),
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\nRESTART = 1\n",
        &[(
            "run.sh",
            "n=$(cat runs 2>/dev/null || echo 0); n=$((n+1)); echo $n > runs\n\
             echo run-$n\n\
             case $n in 1) exit 1;; 2) sleep 61; exit 1;; *) echo third-run; sleep 100;; esac\n",
        )],
    );
    external_config(base, &[("wobbly".into(), "src/wobbly".into())]);
    let daemon = Daemon::start(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
    );
    daemon.expect_output("third-run", Duration::from_secs(120));
    let out = daemon.output();
    assert!(!out.contains("[wobbly] failed"), "{out}");
}
