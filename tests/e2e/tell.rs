//! What the operator is told: `aigis check` finds what `run` would trip
//! over (every problem of a plugin, not only the first), `aigis status NAME`
//! shows one plugin whole, `aigis skills` and `aigis shell` open the live
//! core.

use aigis_e2e::plugins::{core_plugin, plugin};
use aigis_e2e::process::{aigis_within, bin, write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

/// `aigis ARGS...` in `cwd`, at most a minute; (success, stdout + stderr).
fn aigis(cwd: &Path, args: &[&str]) -> (bool, String) {
    aigis_within(cwd, args, PATIENCE).expect("aigis did not finish within a minute")
}

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
    write(
        &user_home,
        ".ssh/config",
        &format!(
            "Host lanbox\n    HostName {}\n    Port {}\n    User root\n    IdentityFile {}\n",
            sshd.addr,
            sshd.port,
            sshd.client_key.display()
        ),
    );
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
