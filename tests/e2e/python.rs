//! The Python core: core plugins in central's embedded CPython, and an
//! internal-local plugin that uses them through its copied core.

use aigis_e2e::plugins::{core_plugin, plugin};
use aigis_e2e::process::{alive, wait_until, write, Daemon};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn core_skills_reach_an_internal_local_plugin_through_its_copied_core() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");

    core_plugin(
        &base.join("src/alpha"),
        "import os\nimport alpha_impl as a\n\nSKILLS = ['a.x', 'a.VERSION']\n\n\
         def cleanup():\n    with open(os.path.join(os.path.dirname(__file__), '..', 'cleanups.txt'), 'a') as f:\n        f.write('cleanup\\n')\n",
        &[(
            "alpha_impl.py",
            "VERSION = 42\n\ndef x(n, logger):\n    logger.info('alpha-x-log %s', n)\n    return n * 2\n",
        )],
    );
    core_plugin(
        &base.join("src/beta"),
        "import aigis\nimport beta_impl as a\n\nSKILLS = ['a.y', 'a.kw']\n\n\
         # Core plugins may call skills of plugins loaded before them.\naigis.a.x(5)\n",
        &[(
            "beta_impl.py",
            "def y(s):\n    return s.upper()\n\ndef kw(**kwargs):\n    return sorted(kwargs)\n",
        )],
    );
    core_plugin(
        &base.join("src/broken"),
        "import does_not_exist_anywhere\nSKILLS = []\n",
        &[],
    );
    core_plugin(
        &base.join("src/clash"),
        "import beta_impl as a\nSKILLS = ['a.y']\n",
        &[("beta_impl.py", "def y(s):\n    return s\n")],
    );

    let user = base.join("src/user");
    write(
        &user,
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'internal-local'\nENTRYPOINT = '{root}'\nLAUNCH = 'main.py'\n",
    );
    write(
        &user,
        "main.py",
        r#"import json
import os
import time

import aigis


def launch(log):
    results = {
        "x": aigis.a.x(21),
        "y": aigis.a.y("hi"),
        "version": aigis.a.VERSION,
        "kw": aigis.a.kw(k=1),
        "pid": os.getpid(),
    }
    with open("results.json", "w") as f:
        json.dump(results, f)
    log.info("internal-marker %s", results["x"])
    print("printed-marker", flush=True)
    if not os.path.exists("reloaded"):
        open("reloaded", "w").close()
        aigis.AIGISReload("alpha")
    while True:
        time.sleep(1)
"#,
    );

    write(
        base,
        "aigis.toml",
        "[core]\nalpha = \"src/alpha\"\nbeta = \"src/beta\"\nbroken = \"src/broken\"\nclash = \"src/clash\"\n\
         [internal]\nuser = \"src/user\"\n",
    );
    let mut daemon = Daemon::start(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
    );
    daemon.expect_output("internal-marker 42", PATIENCE);
    daemon.expect_output("printed-marker", PATIENCE);

    let results: String = std::fs::read_to_string(home.join("ext/user/results.json")).unwrap();
    assert!(results.contains("\"x\": 42"), "{results}");
    assert!(results.contains("\"y\": \"HI\""), "{results}");
    assert!(results.contains("\"version\": 42"), "{results}");
    assert!(results.contains("\"kw\": [\"k\", \"logger\"]"), "{results}");

    let out = daemon.output();
    let tagged = |needle: &str, plugin: &str| {
        out.lines()
            .any(|l| l.contains(needle) && l.contains(&format!("[{plugin}]")))
    };
    // In central, the skill's logger is alpha's; in the copy, the record is relayed as user's output.
    assert!(tagged("alpha-x-log 5", "alpha"), "{out}");
    assert!(tagged("alpha-x-log 21", "user"), "{out}");
    assert!(tagged("internal-marker 42", "user"), "{out}");
    assert!(tagged("skills: aigis.a.y, aigis.a.kw", "beta"), "{out}");
    // A broken core plugin is reported with its traceback; the others load.
    assert!(tagged("ModuleNotFoundError", "broken"), "{out}");
    assert!(out.contains("does_not_exist_anywhere"), "{out}");
    assert!(tagged("already exposed by `beta`", "clash"), "{out}");
    assert!(wait_until(PATIENCE, || {
        std::fs::read_to_string(home.join("log/user.log"))
            .unwrap_or_default()
            .contains("internal-marker 42")
    }));

    // AIGISReload("alpha") from the plugin: cleanup ran, skills loaded again.
    let cleanups = || {
        std::fs::read_to_string(home.join("ext/alpha/cleanups.txt"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert!(
        wait_until(PATIENCE, || cleanups() == 1),
        "{}",
        daemon.output()
    );
    assert!(wait_until(PATIENCE, || daemon
        .output()
        .matches("skills: aigis.a.x, aigis.a.VERSION")
        .count()
        == 2));

    let pid: u32 = std::fs::read_to_string(home.join("ext/user/results.json"))
        .unwrap()
        .split("\"pid\": ")
        .nth(1)
        .and_then(|s| s.trim_end_matches('}').trim().parse().ok())
        .unwrap();
    assert!(alive(pid));
    daemon.signal(libc::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("aigis exits");
    assert!(status.success());
    assert!(!alive(pid));
    // cleanup() ran again at shutdown.
    assert_eq!(cleanups(), 2, "{}", daemon.output());
}

#[test]
fn an_internal_plugin_without_python3_on_the_host_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    let user = base.join("src/user");
    write(
        &user,
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = 'main.py'\n",
    );
    write(&user, "main.py", "def launch(log):\n    pass\n");
    // A PATH with a shell and git but no python3.
    let bin = base.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["sh", "git"] {
        let found = std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
            .unwrap();
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    write(base, "aigis.toml", "[internal]\nuser = \"src/user\"\n");
    let daemon = Daemon::start_with_env(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
        &[("PATH", bin.to_str().unwrap())],
    );
    daemon.expect_output("python3 is not installed on this host", PATIENCE);
    let out = daemon.output();
    assert!(
        out.lines()
            .any(|l| l.contains("[user]") && l.contains("Python 3.8 or newer")),
        "{out}"
    );
}

/// The shim's modules are compiled once, not by every run: the local agent
/// keeps them in `<home>/run/agent`, so the bytecode Python writes beside
/// them in one run is still good in the next, and Python leaves it alone.
#[test]
fn the_shim_is_compiled_once_not_at_every_run() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    plugin(
        &base.join("src/user"),
        "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = 'main.py'\n",
        &[(
            "main.py",
            "import time\n\ndef launch(log):\n    open('started', 'w').close()\n    time.sleep(600)\n",
        )],
    );
    write(base, "aigis.toml", "[internal]\nuser = \"src/user\"\n");
    let started = home.join("ext/user/started");
    let compiled = || -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
        let mut found = Vec::new();
        for dir in std::fs::read_dir(home.join("run/agent")).unwrap() {
            let cache = dir.unwrap().path().join("__pycache__");
            for pyc in std::fs::read_dir(&cache).into_iter().flatten() {
                let pyc = pyc.unwrap().path();
                let written = std::fs::metadata(&pyc).unwrap().modified().unwrap();
                found.push((pyc, written));
            }
        }
        found.sort();
        found
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let _ = std::fs::remove_file(&started);
        let mut command = Daemon::command(
            base,
            &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
        );
        // Python writes bytecode unless told not to, as a host's is.
        command.env_remove("PYTHONDONTWRITEBYTECODE");
        let mut daemon = Daemon::spawn(command);
        assert!(
            wait_until(PATIENCE, || started.exists()),
            "{}",
            daemon.output()
        );
        daemon.signal(libc::SIGTERM);
        assert!(daemon.wait_exit(PATIENCE).is_some(), "{}", daemon.output());
        runs.push(compiled());
    }
    let names: Vec<_> = runs[0]
        .iter()
        .filter_map(|(p, _)| p.file_name()?.to_str().map(str::to_owned))
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("proxy.")),
        "no bytecode of proxy.py after the first run: {names:?}"
    );
    assert_eq!(runs[0], runs[1], "the second run compiled the shim again");
}
