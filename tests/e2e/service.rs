//! AIGIS as a system service runs it: systemd starts it with an empty
//! environment, `PATH=/usr/sbin:/usr/bin:/sbin:/bin` (the system's
//! `python3` first, PEP 668-managed on Debian, Ubuntu and Raspberry Pi OS)
//! and the service account's `HOME`.

use aigis_e2e::plugins::{core_plugin, plugin, tiny_wheels};
use aigis_e2e::process::{write, Daemon};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);
/// systemd's default `PATH` for a system service.
const SERVICE_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// `aigis ARGS` as systemd would start it: nothing of this shell's
/// environment (no pyenv on `PATH`), `HOME` the service account's.
fn as_a_service(cwd: &Path, home: &Path, args: &[&str]) -> Command {
    let mut cmd = Daemon::command(cwd, args);
    cmd.env_clear()
        .env("PATH", SERVICE_PATH)
        .env("HOME", home)
        .env("AIGIS_LOG", "info")
        .env("NO_COLOR", "1");
    cmd
}

/// The embedded interpreter used to take its standard library from the
/// first `python3` on `PATH`: started as a service, Debian's stdlib under
/// the build's libpython (`No module named '_struct'`), every core plugin
/// failed and every internal plugin's call raised. Now the core runs with
/// the Python it was built against, a plugin inherits no `PYTHONHOME`,
/// and `aigis check` starts the core once to say so.
#[test]
fn central_started_as_a_service_runs_its_core_and_its_plugins_reach_it() {
    if !Path::new("/usr/bin/python3").is_file() {
        eprintln!("skipped: the system's /usr/bin/python3 is needed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let account = base.join("var-lib-aigis");
    std::fs::create_dir_all(&account).unwrap();
    core_plugin(
        &base.join("src/weather"),
        "import weather\nSKILLS = ['weather.forecast']\n",
        &[(
            "weather.py",
            "import struct, json\n\ndef forecast():\n    \
             return json.dumps(['sunny', struct.calcsize('<i')])\n",
        )],
    );
    plugin(
        &base.join("src/asker"),
        "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = 'main'\n",
        &[(
            "main.py",
            "import os, sys, time\nimport aigis\n\ndef launch():\n    \
             print('home:', os.environ.get('PYTHONHOME'), 'python:', sys.version_info[:2], flush=True)\n    \
             print('asked:', aigis.weather.forecast(), flush=True)\n    \
             while True:\n        time.sleep(1)\n",
        )],
    );
    write(
        base,
        "config.aigis",
        "[core]\nweather = \"src/weather\"\n[internal]\nasker = \"src/asker\"\n",
    );
    let home = base.join("home");
    let home_s = home.to_str().unwrap();
    let check = as_a_service(
        base,
        &account,
        &["check", "-c", "config.aigis", "--home", home_s],
    )
    .output()
    .expect("aigis check");
    let said = String::from_utf8_lossy(&check.stdout).to_string()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{said}");

    let mut daemon = Daemon::spawn(as_a_service(
        base,
        &account,
        &["run", "-c", "config.aigis", "--home", home_s],
    ));
    daemon.expect_output("asked: [\"sunny\", 4]", PATIENCE);
    daemon.expect_output("home: None", PATIENCE);
    let out = daemon.output();
    assert!(!out.contains("[weather] failed"), "{out}");
    daemon.signal(libc::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(15))
        .expect("aigis exits");
    assert!(status.success(), "{status:?}\n{}", daemon.output());
}

/// An internal plugin in the original's dialect (a docstring,
/// `LAUNCH = "main"`, `def launch():`, `REQUIREMENT_COMMAND = "pip3 install
/// --user -r"`) needing `tinypkg==version`, printing `word` and what it
/// imported.
fn dialect_plugin(dir: &Path, word: &str, version: &str, wheels: &Path, host: Option<&str>) {
    let host = host
        .map(|h| format!("HOST = \"{h}\"\n"))
        .unwrap_or_default();
    plugin(
        dir,
        &format!(
            "\"\"\"{word}: an AIGIS plugin as they were written for the original.\"\"\"\n\
             PLUGIN_TYPE = \"internal\"\nENTRYPOINT = \"{{root}}\"\nLAUNCH = \"main\"\n{host}\
             REQUIREMENT_COMMAND = \"pip3 install --user -r\"\n\
             REQUIREMENT_FILE = \"{{root}}/requirements.txt\"\n"
        ),
        &[
            (
                "requirements.txt",
                &format!("--no-index\n--find-links {}\ntinypkg=={version}\n", wheels.display()),
            ),
            (
                "main.py",
                &format!(
                    "import time\nimport tinypkg\nimport aigis\n\ndef launch():\n    \
                     print('{word} has tinypkg', tinypkg.VERSION, 'from', tinypkg.__file__, flush=True)\n    \
                     print('{word} asked the core for', aigis.tiny.version(), flush=True)\n    \
                     while True:\n        time.sleep(1)\n"
                ),
            ),
        ],
    );
}

/// On a PEP 668 host, every real plugin's `pip install --user` was refused
/// (`externally-managed-environment`), and plugins shared one set of
/// packages. Now each plugin with Python requirements gets an environment
/// of its own on the host that runs it, central's and a LAN host's alike:
/// its command runs there unmodified, two plugins import two versions of
/// one package, core plugins share the core's environment (the embedded
/// interpreter imports from it), nothing lands in `~/.local` or the
/// system's site-packages, and a second start with unchanged requirements
/// installs nothing.
#[test]
fn each_plugin_installs_into_an_environment_of_its_own_on_a_pep_668_host() {
    let managed = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .any(|d| d.path().join("EXTERNALLY-MANAGED").is_file());
    let venv_ok = Command::new("/usr/bin/python3")
        .args(["-c", "import ensurepip, venv"])
        .status()
        .is_ok_and(|s| s.success());
    if !managed || !venv_ok {
        eprintln!("skipped: needs the system's PEP 668-managed /usr/bin/python3 with venv");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let lan = aigis_e2e::sshd::lan(base);
    let account = lan.user_home.clone();
    let wheels = base.join("wheels");
    tiny_wheels(&wheels);
    dialect_plugin(&base.join("src/old"), "old", "1.0", &wheels, None);
    dialect_plugin(&base.join("src/far"), "far", "1.0", &wheels, Some("lan1"));
    plugin(
        &base.join("src/new"),
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['python3', 'main.py']\n\
         REQUIREMENTS_COMMAND = 'python3 -m pip install --user -r'\n\
         REQUIREMENTS_FILE = '{root}/requirements.txt'\n",
        &[
            (
                "requirements.txt",
                &format!("--no-index\n--find-links {}\ntinypkg==2.0\n", wheels.display()),
            ),
            (
                "main.py",
                "import time, tinypkg\nprint('new has tinypkg', tinypkg.VERSION, 'from', tinypkg.__file__, flush=True)\n\
                 while True:\n    time.sleep(1)\n",
            ),
        ],
    );
    // A command naming a Python this host lacks: made from its python3,
    // said, and `pip3.7` is a name in the environment.
    plugin(
        &base.join("src/seven"),
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['python3', 'main.py']\n\
         REQUIREMENTS_COMMAND = 'pip3.7 install --user -r'\n\
         REQUIREMENTS_FILE = '{root}/requirements.txt'\n",
        &[
            (
                "requirements.txt",
                &format!("--no-index\n--find-links {}\ntinypkg==2.0\n", wheels.display()),
            ),
            (
                "main.py",
                "import time, tinypkg\nprint('seven has tinypkg', tinypkg.VERSION, 'from', tinypkg.__file__, flush=True)\n\
                 while True:\n    time.sleep(1)\n",
            ),
        ],
    );
    // A core plugin: its requirements go to the core's environment, which
    // the embedded interpreter imports from.
    plugin(
        &base.join("src/tiny"),
        "PLUGIN_TYPE = 'core'\nENTRYPOINT = '{root}'\n\
         REQUIREMENTS_COMMAND = 'pip install --user -r'\n\
         REQUIREMENTS_FILE = '{root}/requirements.txt'\n",
        &[
            (
                "requirements.txt",
                &format!(
                    "--no-index\n--find-links {}\ntinypkg==2.0\n",
                    wheels.display()
                ),
            ),
            (
                "tiny.py",
                "import tinypkg\n\ndef version():\n    return tinypkg.VERSION\n",
            ),
            (
                "AIGIS/AIGIS.core",
                "import tiny\nSKILLS = ['tiny.version']\n",
            ),
        ],
    );
    write(
        base,
        "config.aigis",
        &format!(
            "[aigis]\nremote_dir = \"{}/{{host}}\"\n[core]\ntiny = \"src/tiny\"\n\
             [internal]\nold = \"src/old\"\nfar = \"src/far\"\n[external]\nnew = \"src/new\"\nseven = \"src/seven\"\n",
            base.join("hosts").display()
        ),
    );
    let home = base.join("home");
    let home_s = home.to_str().unwrap();
    let place = aigis_e2e::sshd::central_place(&base.join("hosts/lan1"), &home);
    let run = || {
        Daemon::spawn(as_a_service(
            base,
            &account,
            &["run", "-c", "config.aigis", "--home", home_s],
        ))
    };
    let expect = |daemon: &Daemon| {
        for (word, version, env) in [
            ("old", "1.0", home.join("envs/old")),
            ("new", "2.0", home.join("envs/new")),
            ("seven", "2.0", home.join("envs/seven")),
            ("far", "1.0", place.join("envs/far")),
        ] {
            let line = format!(
                "{word} has tinypkg {version} from {}/lib/python3",
                env.display()
            );
            daemon.expect_output(&line, PATIENCE);
        }
        daemon.expect_output("old asked the core for 2.0", PATIENCE);
        daemon.expect_output("far asked the core for 2.0", PATIENCE);
    };
    let mut daemon = run();
    expect(&daemon);
    let first = daemon.output();
    assert_eq!(
        first.matches("Successfully installed tinypkg").count(),
        5,
        "{first}"
    );
    assert!(!first.contains("externally-managed-environment"), "{first}");
    let has_3_7 = SERVICE_PATH
        .split(':')
        .any(|d| Path::new(d).join("python3.7").exists());
    if !has_3_7 {
        assert!(
            first.contains("[seven] (install) aigis-agent: the requirements command names Python 3.7, which this host does not have"),
            "{first}"
        );
    }
    daemon.signal(libc::SIGTERM);
    assert!(daemon
        .wait_exit(Duration::from_secs(15))
        .is_some_and(|s| s.success()));

    // Nothing outside the environments.
    assert!(
        !account.join(".local").exists(),
        "something went to ~/.local"
    );
    for system in [
        "/usr/lib/python3/dist-packages",
        "/usr/local/lib/python3.11/dist-packages",
    ] {
        assert!(!Path::new(system).join("tinypkg").exists(), "{system}");
    }

    // Unchanged requirements: kept, nothing installed.
    let mut daemon = run();
    expect(&daemon);
    let second = daemon.output();
    assert_eq!(
        second
            .matches("the Python environment is kept as it is")
            .count(),
        5,
        "{second}"
    );
    assert!(!second.contains("Successfully installed"), "{second}");
    daemon.signal(libc::SIGTERM);
    assert!(daemon
        .wait_exit(Duration::from_secs(15))
        .is_some_and(|s| s.success()));
}

/// Debian and Ubuntu ship Python's venv module apart (`python3-venv`): on
/// a host without it, `aigis check` says which package to install before
/// anything runs, and `run` fails that plugin alone with the same words.
#[test]
fn a_host_without_venv_is_told_which_package_to_install() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    // A python3 as Debian's is without python3-venv.
    let bin = base.join("bin");
    write(
        &bin,
        "python3",
        "#!/bin/sh\necho 'The virtual environment was not created successfully because ensurepip is not\n\
         available.  On Debian/Ubuntu systems, you need to install the python3-venv package' >&2\nexit 1\n",
    );
    std::fs::set_permissions(bin.join("python3"), std::fs::Permissions::from_mode(0o755)).unwrap();
    plugin(
        &base.join("src/needy"),
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', '-c', 'echo needy-up; sleep 100']\n\
         REQUIREMENTS_COMMAND = 'pip3 install --user -r'\nREQUIREMENTS_FILE = '{root}/requirements.txt'\n",
        &[("requirements.txt", "tinypkg\n")],
    );
    plugin(
        &base.join("src/plain"),
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', '-c', 'echo plain-up; sleep 100']\n",
        &[],
    );
    write(
        base,
        "config.aigis",
        "[external]\nneedy = \"src/needy\"\nplain = \"src/plain\"\n",
    );
    let home = base.join("home");
    let home_s = home.to_str().unwrap();
    let path = format!("{}:{SERVICE_PATH}", bin.display());
    let mut check = as_a_service(
        base,
        base,
        &["check", "-c", "config.aigis", "--home", home_s],
    );
    check.env("PATH", &path);
    let out = check.output().expect("aigis check");
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("problem: plugin `needy`: python3 cannot make a Python environment")
            && said.contains("apt-get install python3-venv"),
        "{said}"
    );
    let mut run = as_a_service(base, base, &["run", "-c", "config.aigis", "--home", home_s]);
    run.env("PATH", &path);
    let mut daemon = Daemon::spawn(run);
    daemon.expect_output("plain-up", PATIENCE);
    // Tried again: installing python3-venv heals it.
    daemon.expect_output("[needy] retrying in", PATIENCE);
    let out = daemon.output();
    assert!(out.contains("apt-get install python3-venv"), "{out}");
    daemon.signal(libc::SIGTERM);
    assert!(daemon
        .wait_exit(Duration::from_secs(15))
        .is_some_and(|s| s.success()));
}
