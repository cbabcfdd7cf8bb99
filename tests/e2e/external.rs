//! External plugins on this host, run by the local agent: fetching from a
//! local directory and from git over http, secrets, requirements, output,
//! restarts, per-plugin failures, and a clean shutdown.

use aigis_e2e::git::{GitHttpServer, TestRepo};
use aigis_e2e::plugins::plugin;
use aigis_e2e::process::{alive, children, read_pid, wait_until, write, Daemon};
use std::path::Path;
use std::time::{Duration, Instant};

const SECRET: &str = "s3cr3t-value-7f2c";
const PATIENCE: Duration = Duration::from_secs(60);

fn hello_plugin(dir: &Path) {
    write(
        dir,
        "AIGIS/AIGIS.config",
        r#"# a local-directory plugin
PLUGIN_TYPE = "external"
ENTRYPOINT = "{root}/app"
LAUNCH = ["sh", "run.sh", "--greeting", 'hello world']
SYSTEM_REQUIREMENTS = ["sh"]
REQUIREMENTS_COMMAND = "sh install.sh"
REQUIREMENTS_FILE = "{root}/requirements.txt"
SECRETS = {
    "token.secret": "{root}/app/conf/",
}
"#,
    );
    write(dir, "requirements.txt", "nothing to install\n");
    write(
        dir,
        "app/install.sh",
        "echo \"installing from $1\"\necho \"$1\" > installed.txt\n",
    );
    write(
        dir,
        "app/run.sh",
        r#"pwd > cwd.txt
stat -c %a conf/token.secret > secret-mode.txt
cp conf/token.secret secret-copy.txt
echo $$ > pid.txt
sleep 1000 &
echo $! > child.pid
echo "hello-marker $1 $2"
echo "hello-on-stderr" >&2
wait
"#,
    );
}

fn log_of(home: &Path, plugin: &str) -> String {
    std::fs::read_to_string(home.join("log").join(format!("{plugin}.log"))).unwrap_or_default()
}

/// The line of the console output that holds `needle`.
fn line_with<'a>(output: &'a str, needle: &str) -> &'a str {
    output
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{output}"))
}

#[test]
fn plugins_from_a_directory_and_from_git_run_and_stop_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");

    hello_plugin(&base.join("src/hello"));
    write(&home, "secrets/hello/token.secret", SECRET);

    let repos = base.join("repos");
    let repo = TestRepo::new(&repos, "gitty");
    repo.write(
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = \"external\"\nENTRYPOINT = \"{root}\"\nLAUNCH = [\"sh\", \"main.sh\"]\n",
    );
    repo.write(
        "main.sh",
        "echo $$ > pid.txt\necho gitty-marker\nexec sleep 1000\n",
    );
    repo.commit("first");
    let server = GitHttpServer::start(&repos);

    plugin(
        &base.join("src/crashy"),
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\nRESTART = 2\n",
        &[(
            "run.sh",
            "echo start >> starts.txt\necho crashy-run\nexit 3\n",
        )],
    );
    plugin(
        &base.join("src/broken"),
        "PLUGIN_TYPE = \"external\"\nENTRYPOINT = \"{root}\"\nRESTART = \"twice\"\nLAUNCH = [\"true\"]\n",
        &[],
    );
    plugin(
        &base.join("src/nosecret"),
        "PLUGIN_TYPE = \"external\"\nENTRYPOINT = \"{root}\"\nLAUNCH = [\"true\"]\nSECRETS = {\"a.secret\": \"{root}/\", \"b.secret\": \"{root}/x/\"}\n",
        &[],
    );
    plugin(
        &base.join("src/badinstall"),
        "PLUGIN_TYPE = \"external\"\nENTRYPOINT = \"{root}\"\nLAUNCH = [\"true\"]\nREQUIREMENTS_COMMAND = \"echo pip-failed-output; exit 7\"\n",
        &[],
    );

    write(
        base,
        "aigis.toml",
        &format!(
            "[external]\nbroken = \"src/broken\"\nhello = \"src/hello\"\nnosecret = \"src/nosecret\"\n\
             badinstall = \"src/badinstall\"\ngitty = \"{}\"\ncrashy = \"src/crashy\"\n",
            server.url("gitty")
        ),
    );

    let mut daemon = Daemon::start(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
    );
    daemon.expect_output("hello-marker --greeting hello world", PATIENCE);
    daemon.expect_output("gitty-marker", PATIENCE);
    daemon.expect_output("failed: exited with status 3", PATIENCE);
    let out = daemon.output();

    // The local plugin ran in its ENTRYPOINT, with its secret and requirements.
    let hello = home.join("ext/hello");
    let app = std::fs::canonicalize(hello.join("app")).unwrap();
    assert!(wait_until(PATIENCE, || hello
        .join("app/secret-copy.txt")
        .exists()));
    let cwd = std::fs::read_to_string(hello.join("app/cwd.txt")).unwrap();
    assert_eq!(Path::new(cwd.trim()), app);
    let mode = std::fs::read_to_string(hello.join("app/secret-mode.txt")).unwrap();
    assert_eq!(mode.trim(), "600");
    let copied = std::fs::read_to_string(hello.join("app/secret-copy.txt")).unwrap();
    assert_eq!(copied, SECRET);
    let installed = std::fs::read_to_string(hello.join("app/installed.txt")).unwrap();
    assert_eq!(
        installed.trim(),
        hello.join("requirements.txt").to_str().unwrap()
    );

    // Its output reached the console, tagged, and its log file.
    assert!(line_with(&out, "hello-marker").contains("[hello]"));
    assert!(line_with(&out, "hello-on-stderr").contains("[hello]"));
    assert!(line_with(&out, "installing from").contains("[hello]"));
    assert!(wait_until(PATIENCE, || log_of(&home, "hello")
        .contains("hello-on-stderr")));
    let hello_log = log_of(&home, "hello");
    assert!(
        hello_log.contains("hello-marker --greeting hello world"),
        "{hello_log}"
    );
    assert!(log_of(&home, "gitty").contains("gitty-marker"));

    // RESTART = 2: started exactly three times, then failed for good.
    let starts = || {
        std::fs::read_to_string(home.join("ext/crashy/starts.txt"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(starts(), 3);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(starts(), 3, "crashy was started again after failing");
    assert_eq!(out.matches("crashy-run").count(), 3, "{out}");

    // Broken plugins are reported with file and line; the others ran anyway.
    let broken = line_with(&out, "plugin `broken`");
    assert!(broken.contains("AIGIS/AIGIS.config:3"), "{broken}");
    assert!(broken.contains("RESTART"), "{broken}");
    let nosecret = line_with(&out, "plugin `nosecret`");
    assert!(nosecret.contains("a.secret, b.secret"), "{nosecret}");
    let badinstall = line_with(&out, "requirements command");
    assert!(badinstall.contains("[badinstall]"), "{badinstall}");
    assert!(log_of(&home, "badinstall").contains("pip-failed-output"));

    // No secret content in any log.
    assert!(!out.contains(SECRET));
    assert!(!hello_log.contains(SECRET));

    // SIGTERM stops every plugin process and the agent, within 6 s.
    let mut pids = vec![
        read_pid(&hello.join("app/pid.txt")).unwrap(),
        read_pid(&hello.join("app/child.pid")).unwrap(),
        read_pid(&home.join("ext/gitty/pid.txt")).unwrap(),
    ];
    let agents = children(daemon.pid());
    assert_eq!(agents.len(), 1, "expected one agent child, got {agents:?}");
    pids.extend(&agents);
    assert!(pids.iter().all(|&p| alive(p)), "{pids:?}");

    let start = Instant::now();
    daemon.signal(libc::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("aigis exits");
    let took = start.elapsed();
    assert!(status.success(), "{status:?}\n{}", daemon.output());
    assert!(took < Duration::from_secs(6), "shutdown took {took:?}");
    let left: Vec<u32> = pids.into_iter().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "still alive after shutdown: {left:?}");
    drop(server);
}

#[test]
fn a_plugin_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    plugin(
        &base.join("src/stubborn"),
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n",
        &[(
            "run.sh",
            "trap '' TERM\necho $$ > pid.txt\necho stubborn-up\nwhile true; do sleep 0.1; done\n",
        )],
    );
    write(
        base,
        "aigis.toml",
        "[external]\nstubborn = \"src/stubborn\"\n",
    );
    let mut daemon = Daemon::start(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
    );
    daemon.expect_output("stubborn-up", PATIENCE);
    let pid = read_pid(&home.join("ext/stubborn/pid.txt")).unwrap();
    let start = Instant::now();
    daemon.signal(libc::SIGINT);
    let status = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("aigis exits");
    let took = start.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took >= Duration::from_secs(4),
        "grace period skipped: {took:?}"
    );
    assert!(took < Duration::from_secs(6), "shutdown took {took:?}");
    assert!(!alive(pid));
}

#[test]
fn a_bad_central_config_is_reported_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    write(
        base,
        "aigis.toml",
        "[external]\nok = \"a\"\n\n[core]\n\"bad name\" = \"b\"\n",
    );
    let mut daemon = Daemon::start(base, &["run", "-c", "aigis.toml"]);
    let status = daemon.wait_exit(PATIENCE).expect("aigis exits");
    assert!(!status.success());
    let out = daemon.output();
    assert!(out.contains("aigis.toml:5"), "{out}");
    assert!(out.contains("bad name"), "{out}");
}

#[test]
fn a_killed_agent_takes_its_plugins_along() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    plugin(
        &base.join("src/orphan"),
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n",
        &[(
            "run.sh",
            "echo $$ > pid.txt\necho orphan-up\nexec sleep 1000\n",
        )],
    );
    write(base, "aigis.toml", "[external]\norphan = \"src/orphan\"\n");
    let daemon = Daemon::start(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
    );
    daemon.expect_output("orphan-up", PATIENCE);
    let pid = read_pid(&home.join("ext/orphan/pid.txt")).unwrap();
    let agents = children(daemon.pid());
    assert_eq!(agents.len(), 1, "{agents:?}");
    // SAFETY: kill(2) of the agent this test's daemon started.
    unsafe {
        libc::kill(agents[0] as libc::pid_t, libc::SIGKILL);
    }
    assert!(
        wait_until(Duration::from_secs(5), || !alive(pid)),
        "the plugin outlived its agent"
    );
    daemon.expect_output("[orphan] failed: the local agent died", PATIENCE);
}

#[test]
fn a_plugin_printing_fast_does_not_stall_another_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    plugin(
        &base.join("src/flood"),
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n",
        &[(
            "run.sh",
            "seq 1 1000000 | sed 's/^/flood /'\necho flood-done\nexec sleep 1000\n",
        )],
    );
    plugin(
        &base.join("src/beat"),
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n",
        &[(
            "run.sh",
            "i=0\nwhile true; do i=$((i+1)); echo \"beat $i\"; sleep 0.05; done\n",
        )],
    );
    write(
        base,
        "aigis.toml",
        "[aigis]\nlog_max_bytes = 1000000000\n[external]\nbeat = \"src/beat\"\nflood = \"src/flood\"\n",
    );
    // Console at warn: the test reads the log files, not a gigabyte of stderr.
    let _daemon = Daemon::start_with_env(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
        &[("AIGIS_LOG", "warn")],
    );
    let flood_log = home.join("log/flood.log");
    assert!(wait_until(PATIENCE, || log_of(&home, "flood").contains("flood-done")));
    std::thread::sleep(Duration::from_millis(500));

    // Every flood line arrived, once, in order.
    let text = std::fs::read_to_string(&flood_log).unwrap();
    let mut expected = 1u32;
    for line in text.lines().filter(|l| l.contains(" stdout  flood ")) {
        let n: u32 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(n, expected, "flood line out of order or missing");
        expected += 1;
    }
    assert_eq!(expected, 1_000_001);

    // The beat kept its pace meanwhile: no gap over 1 s between its lines.
    let millis = |l: &str| -> u64 {
        let t = &l[11..23]; // HH:MM:SS.mmm
        let h: u64 = t[0..2].parse().unwrap();
        let m: u64 = t[3..5].parse().unwrap();
        let s: u64 = t[6..8].parse().unwrap();
        let ms: u64 = t[9..12].parse().unwrap();
        ((h * 60 + m) * 60 + s) * 1000 + ms
    };
    let beats: Vec<u64> = log_of(&home, "beat")
        .lines()
        .filter(|l| l.contains(" stdout  beat "))
        .map(millis)
        .collect();
    assert!(beats.len() >= 10, "{} beats", beats.len());
    let worst = beats
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .max()
        .unwrap();
    eprintln!("worst gap between beats: {worst} ms");
    assert!(
        worst < 2000,
        "the beat stalled for {worst} ms while the flood ran"
    );
}
