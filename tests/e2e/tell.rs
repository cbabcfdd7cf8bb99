//! What the operator is told: `aigis check` finds what `run` would trip
//! over (every problem of a plugin, not only the first), `aigis status NAME`
//! shows one plugin whole, `aigis skills` and `aigis shell` open the live
//! core.

use aigis_e2e::plugins::{core_plugin, plugin};
use aigis_e2e::process::{aigis, bin, wait_until, write, Daemon};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(60);

/// The `problem:` lines of a check's output.
fn problems(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("problem:")).collect()
}

/// True when some line mentions `plugin` and every one of `words`.
fn said(lines: &[&str], plugin: &str, words: &[&str]) -> bool {
    let plugin = format!("plugin `{plugin}`");
    lines
        .iter()
        .any(|l| l.contains(&plugin) && words.iter().all(|w| l.contains(w)))
}

#[test]
fn check_lists_every_problem_of_each_plugin_and_runs_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let src = base.join("src");
    // Four wrong options, a program that is not executable, an argument
    // path that is missing; a typo'd RESTART only warned about.
    plugin(
        &src.join("many"),
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\n\
         LAUNCH = ['./server', 'conf/missing.toml', '--port', '8080', 'https://example.org/x', 'conf/here.toml']\n\
         RESTART = 'three'\nSECRETS = ['api.token']\nCORE = 5\nRESTARTS = 3\nHOST = 'nas:99999'\n",
        &[("server", "#!/bin/sh\nexec sleep 100\n"), ("conf/here.toml", "")],
    );
    // A missing required option, with the typo that explains it.
    plugin(
        &src.join("typo"),
        "PLUGIN_TYPE = 'external'\nENTRYPIONT = '{root}'\nLAUNCH = ['./nothere']\n",
        &[],
    );
    // A wrong type, and the launch program behind it is still looked at.
    plugin(
        &src.join("kind"),
        "PLUGIN_TYPE = 'externl'\nENTRYPOINT = '{root}'\nLAUNCH = ['bin/absent']\n",
        &[],
    );
    // Python that does not compile: LAUNCH and AIGIS.core.
    plugin(
        &src.join("badpy"),
        "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = '{root}/main.py'\n",
        &[("main.py", "import os\n\ndef launch(log)\n    pass\n")],
    );
    core_plugin(&src.join("badcore"), "SKILLS = [\n", &[]);
    // Good Python whose import would leave a mark: check must not run it.
    let mark = base.join("imported");
    plugin(
        &src.join("quiet"),
        "PLUGIN_TYPE = 'internal'\nENTRYPOINT = '{root}'\nLAUNCH = 'main'\n",
        &[(
            "main.py",
            &format!(
                "open({:?}, 'w').close()\n\ndef launch(log):\n    pass\n",
                mark
            ),
        )],
    );
    std::fs::set_permissions(
        src.join("many/server"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    write(
        base,
        "aigis.toml",
        "[core]\nbadcore = \"src/badcore\"\n[internal]\nbadpy = \"src/badpy\"\nquiet = \"src/quiet\"\n\
         [external]\nmany = \"src/many\"\ntypo = \"src/typo\"\nkind = \"src/kind\"\n",
    );
    let home = base.join("home");
    let (ok, out) = aigis(
        base,
        &[
            "check",
            "-c",
            "aigis.toml",
            "--home",
            home.to_str().unwrap(),
        ],
    );
    assert!(!ok, "{out}");
    let p = problems(&out);

    // Every wrong option of `many`, each with its line, then its LAUNCH.
    for (line, option) in [(4, "RESTART"), (5, "SECRETS"), (6, "CORE"), (8, "HOST")] {
        assert!(
            said(
                &p,
                "many",
                &[
                    &format!("AIGIS.config:{line}:"),
                    &format!("option `{option}`")
                ]
            ),
            "{option}:\n{out}"
        );
    }
    assert!(
        said(
            &p,
            "many",
            &["LAUNCH program `./server`", "is not executable", "chmod +x"]
        ),
        "{out}"
    );
    assert!(
        said(
            &p,
            "many",
            &["LAUNCH argument 1 `conf/missing.toml` does not exist"]
        ),
        "{out}"
    );
    assert!(
        !out.contains("example.org") && !out.contains("conf/here.toml") && !out.contains("8080"),
        "only missing paths are problems:\n{out}"
    );
    assert!(
        out.contains("unknown option `RESTARTS` ignored; did you mean `RESTART`?"),
        "{out}"
    );
    assert_eq!(
        p.iter().filter(|l| l.contains("plugin `many`")).count(),
        6,
        "{out}"
    );

    // `typo`: the missing option, the typo's hint, and its LAUNCH.
    assert!(
        said(&p, "typo", &["required option `ENTRYPOINT` is missing"]),
        "{out}"
    );
    assert!(
        out.contains("unknown option `ENTRYPIONT` ignored; did you mean `ENTRYPOINT`?"),
        "{out}"
    );
    // ENTRYPOINT is unknown, so LAUNCH paths from it are not guessed at.
    assert!(!said(&p, "typo", &["./nothere"]), "{out}");

    // `kind`: read as its section says, so its LAUNCH is still checked.
    assert!(
        said(
            &p,
            "kind",
            &["AIGIS.config:1:15", "unknown plugin type \"externl\""]
        ),
        "{out}"
    );
    assert!(
        said(&p, "kind", &["LAUNCH program `bin/absent` does not exist"]),
        "{out}"
    );

    // Python that does not compile: file, line and what is wrong.
    assert!(
        said(
            &p,
            "badpy",
            &["src/badpy/main.py:3:", "does not compile", "expected ':'"]
        ) || said(
            &p,
            "badpy",
            &["src/badpy/main.py:3:", "does not compile", "invalid syntax"]
        ),
        "{out}"
    );
    assert!(
        said(
            &p,
            "badcore",
            &["src/badcore/AIGIS/AIGIS.core:1:", "does not compile"]
        ),
        "{out}"
    );
    assert!(out.contains("ok: quiet (internal-local)"), "{out}");
    assert!(!mark.exists(), "check ran the plugin's code");
    assert!(!home.join("ext").exists(), "check fetched into the home");
}

#[test]
fn check_says_a_host_key_refusal_is_one_and_an_unreachable_host_is_another() {
    use aigis_e2e::sshd::Sshd;
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let sshd = Sshd::start(&base.join("sshd"), "127.0.0.2");
    let user_home = base.join("user");
    write(&user_home, ".ssh/config", &sshd.config_entry("lanbox"));
    let closed = Sshd::reserve_port("127.0.0.3");
    for (name, host) in [
        ("keyed", "lanbox".to_string()),
        ("down", format!("root@127.0.0.3:{closed}")),
    ] {
        plugin(
            &base.join("src").join(name),
            &format!(
                "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{{root}}'\nLAUNCH = ['true']\nHOST = '{host}'\n"
            ),
            &[],
        );
    }
    write(
        base,
        "aigis.toml",
        "[external]\nkeyed = \"src/keyed\"\ndown = \"src/down\"\n",
    );
    let out = Command::new(bin("aigis"))
        .args(["check", "-c", "aigis.toml", "--home"])
        .arg(base.join("home"))
        .current_dir(base)
        .env("HOME", &user_home)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("AIGIS_HOME")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    let p = problems(&text);
    assert!(
        said(
            &p,
            "keyed",
            &["host key of lanbox is unknown", "ssh-keyscan"]
        ),
        "{text}"
    );
    assert!(!said(&p, "keyed", &["unreachable"]), "{text}");
    assert!(
        said(
            &p,
            "down",
            &[
                &format!("HOST root@127.0.0.3:{closed} is unreachable"),
                "cannot connect"
            ]
        ),
        "{text}"
    );
}

/// `aigis ARGS...` fed `input` on stdin, at most a minute, with `TMPDIR`
/// set; (success, stdout, stderr).
fn aigis_with_input(cwd: &Path, args: &[&str], input: &str, tmp: &Path) -> (bool, String, String) {
    use std::io::{Read, Write};
    let mut child = Command::new(bin("aigis"))
        .args(args)
        .current_dir(cwd)
        .env_remove("AIGIS_HOME")
        .env("TMPDIR", tmp)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run aigis");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_string();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let collect = |mut s: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            text
        })
    };
    let out = collect(Box::new(child.stdout.take().unwrap()));
    let err = collect(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("aigis {args:?} did not finish within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = feeder.join();
    (
        status.success(),
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

/// The value of `label:` in `aigis status NAME`'s text, and the lines
/// under it.
fn fact(details: &str, label: &str) -> Vec<String> {
    let mut lines = details
        .lines()
        .skip_while(|l| !l.starts_with(&format!("{label}:")));
    let Some(first) = lines.next() else {
        return Vec::new();
    };
    let column = first.len() - first[label.len() + 1..].trim_start().len();
    std::iter::once(first[column..].to_string())
        .chain(
            lines
                .take_while(|l| l.starts_with(' '))
                .map(|l| l.trim_start().to_string()),
        )
        .collect()
}

#[test]
fn status_name_shows_one_plugin_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    // A git plugin that runs, a core plugin with skills, one whose import
    // fails with a reason of many lines, one on a host that is down.
    let repo = aigis_e2e::git::TestRepo::new(&base.join("repos"), "web");
    plugin(
        &repo.dir,
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\nRESTART = 2\n",
        &[("run.sh", "echo web-up\nexec sleep 100\n")],
    );
    let head = repo.commit("v1");
    core_plugin(
        &base.join("src/greet"),
        "GREETING = 'hello'\ndef hello(name):\n    return GREETING + ' ' + name\nSKILLS = ['hello', 'GREETING']\n",
        &[],
    );
    core_plugin(
        &base.join("src/broken"),
        "raise ValueError('the config server said no')\n",
        &[],
    );
    let closed = aigis_e2e::sshd::Sshd::reserve_port("127.0.0.3");
    let far_host = format!("root@127.0.0.3:{closed}");
    plugin(
        &base.join("src/far"),
        &format!("PLUGIN_TYPE = 'external'\nENTRYPOINT = '{{root}}'\nLAUNCH = ['true']\nHOST = '{far_host}'\n"),
        &[],
    );
    write(
        base,
        "aigis.toml",
        &format!(
            "[core]\ngreet = \"src/greet\"\nbroken = \"src/broken\"\n[external]\nweb = \"{}\"\nfar = \"src/far\"\n",
            repo.file_url()
        ),
    );
    let home = base.join("home");
    let home_s = home.to_str().unwrap();
    let daemon = Daemon::start(base, &["run", "-c", "aigis.toml", "--home", home_s]);
    daemon.expect_output("web-up", PATIENCE);
    let state = |name: &str| {
        let (_, out) = aigis(base, &["status", name, "--json", "--home", home_s]);
        serde_json::from_str::<serde_json::Value>(&out).unwrap_or_default()["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(wait_until(PATIENCE, || state("web") == "running"));
    assert!(wait_until(PATIENCE, || state("broken") == "failed"));
    // An unreachable host is tried again.
    assert!(wait_until(PATIENCE, || state("far") == "retrying"));

    // The table: load order, the HOST before it was ever reached.
    let (ok, table) = aigis(base, &["status", "--home", home_s]);
    assert!(ok, "{table}");
    let names: Vec<&str> = table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, ["greet", "broken", "web", "far"], "{table}");
    assert!(
        table.lines().next().unwrap().ends_with("IN STATE"),
        "{table}"
    );
    let far_row = table.lines().find(|l| l.starts_with("far")).unwrap();
    assert!(
        far_row.contains(&far_host) && far_row.contains("host unreachable"),
        "{table}"
    );

    // One plugin, as text: source and commit, state and since when, pid,
    // restarts left, log file.
    let (ok, web) = aigis(base, &["status", "web", "--home", home_s]);
    assert!(ok, "{web}");
    assert_eq!(fact(&web, "type"), ["external"], "{web}");
    assert_eq!(fact(&web, "host"), ["local"], "{web}");
    assert_eq!(fact(&web, "source"), [repo.file_url()], "{web}");
    assert_eq!(fact(&web, "commit"), [head.as_str()], "{web}");
    let state = fact(&web, "state").concat();
    assert!(
        state.starts_with("running for ") && state.contains("(since 20") && state.ends_with("Z)"),
        "{web}"
    );
    assert!(fact(&web, "pid").concat().parse::<u32>().is_ok(), "{web}");
    assert_eq!(fact(&web, "restarts left"), ["2"], "{web}");
    assert_eq!(
        fact(&web, "log"),
        [home.join("log/web.log").display().to_string()],
        "{web}"
    );

    // The same as JSON.
    let (ok, json) = aigis(base, &["status", "web", "--json", "--home", home_s]);
    assert!(ok, "{json}");
    let row: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(row["commit"], head.as_str(), "{json}");
    assert_eq!(row["source"], repo.file_url().as_str(), "{json}");
    assert!(
        row["since"]
            .as_str()
            .is_some_and(|s| s.len() >= 20 && s.ends_with('Z')),
        "{json}"
    );
    assert!(row["pid"].as_u64().is_some(), "{json}");

    // The full reason, every line of it; the table shows only the first.
    let (ok, broken) = aigis(base, &["status", "broken", "--home", home_s]);
    assert!(ok, "{broken}");
    let reason = fact(&broken, "reason");
    assert!(reason.len() > 2, "{broken}");
    assert!(reason[0].contains("importing"), "{broken}");
    assert!(
        reason
            .last()
            .unwrap()
            .contains("ValueError: the config server said no"),
        "{broken}"
    );
    assert!(!table.contains("the config server said no"), "{table}");

    // A core plugin's skills; the host of one that never connected.
    let (ok, greet) = aigis(base, &["status", "greet", "--home", home_s]);
    assert!(ok, "{greet}");
    assert_eq!(
        fact(&greet, "skills"),
        ["aigis.hello", "aigis.GREETING"],
        "{greet}"
    );
    let (ok, far) = aigis(base, &["status", "far", "--json", "--home", home_s]);
    assert!(ok, "{far}");
    let row: serde_json::Value = serde_json::from_str(&far).unwrap();
    assert_eq!(row["host"], far_host.as_str(), "{far}");

    let (ok, out) = aigis(base, &["status", "nosuch", "--home", home_s]);
    assert!(!ok && out.contains("no plugin named `nosuch`"), "{out}");
}

#[test]
fn skills_and_shell_reach_the_live_core() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    core_plugin(
        &base.join("src/greet"),
        "import greet\nSKILLS = ['greet.hello', 'greet.count', 'greet.GREETING']\n",
        &[(
            "greet.py",
            "import os\nGREETING = 'hello'\ncalls = []\n\
             def hello(name):\n    calls.append(name)\n    return GREETING + ' ' + name\n\
             def count():\n    return len(calls)\n",
        )],
    );
    core_plugin(
        &base.join("src/clock"),
        "import time\ndef now():\n    return time.time()\nSKILLS = ['now']\n",
        &[],
    );
    write(
        base,
        "aigis.toml",
        "[core]\ngreet = \"src/greet\"\nclock = \"src/clock\"\n",
    );
    let home = base.join("home");
    let home_s = home.to_str().unwrap();
    let scratch = base.join("tmp");
    std::fs::create_dir_all(&scratch).unwrap();

    // No daemon: said plainly, no Python started.
    let (ok, _, err) = aigis_with_input(base, &["shell", "--home", home_s], "", &scratch);
    assert!(!ok && err.contains("no aigis daemon is running"), "{err}");

    let daemon = Daemon::start(base, &["run", "-c", "aigis.toml", "--home", home_s]);
    daemon.expect_output("skills: aigis.now", PATIENCE);

    let (ok, out) = aigis(base, &["skills", "--home", home_s]);
    assert!(ok, "{out}");
    assert_eq!(
        out.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        [
            ["greet", "aigis.greet.hello"],
            ["greet", "aigis.greet.count"],
            ["greet", "aigis.greet.GREETING"],
            ["clock", "aigis.now"],
        ],
        "{out}"
    );
    let (ok, out) = aigis(base, &["skills", "--json", "--home", home_s]);
    assert!(ok, "{out}");
    let skills: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(skills[1]["plugin"], "clock", "{out}");
    assert_eq!(skills[1]["skills"][0], "aigis.now", "{out}");

    // A shell calls skills, reads constants, and is held to the reach rule.
    let (ok, out, err) = aigis_with_input(
        base,
        &["shell", "--home", home_s],
        "print('A', aigis.greet.hello('shell'))\n\
         print('B', aigis.greet.GREETING())\n\
         try:\n    aigis.greet.os.getcwd()\nexcept AttributeError as e:\n    print('C', e)\n\n\
         print('D', type(aigis.now()).__name__)\n",
        &scratch,
    );
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("A hello shell\n"), "{out}\n{err}");
    assert!(out.contains("B hello\n"), "{out}\n{err}");
    assert!(
        out.contains("C aigis.greet.os.getcwd is not exposed"),
        "{out}\n{err}"
    );
    assert!(out.contains("D float\n"), "{out}\n{err}");
    assert!(err.contains("the live core of"), "{err}");

    // The core is the daemon's own: a second shell sees what the first did.
    let (ok, out, err) = aigis_with_input(
        base,
        &["shell", "--home", home_s],
        "print('calls', aigis.greet.count())\n",
        &scratch,
    );
    assert!(ok && out.contains("calls 1\n"), "{out}\n{err}");
    // The private directory with the Python files is gone.
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
    drop(daemon);
}
