//! What keeps plugins apart and stops them whole: a process a plugin moved
//! out of its process group (`setsid`, a double fork) is stopped with the
//! plugin, and only with it.

use aigis_e2e::git::TestRepo;
use aigis_e2e::plugins::plugin;
use aigis_e2e::process::{aigis_within, alive, read_pid, wait_until, write, Daemon};
use std::path::{Path, PathBuf};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);
/// How long a stopped plugin's processes may take to be gone.
const GONE: Duration = Duration::from_secs(8);

/// Kills, when dropped, every process whose pid file it was given and that
/// is still alive: a failed test leaves no `sleep 1000` behind. Only pids
/// the test's own plugins wrote, each checked to be a `sleep` first.
#[derive(Default)]
struct Leftovers(Vec<PathBuf>);

impl Leftovers {
    fn watch(&mut self, pid_file: PathBuf) {
        self.0.push(pid_file);
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for file in &self.0 {
            let Some(pid) = read_pid(file) else { continue };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if alive(pid) && comm.trim() == "sleep" {
                // SAFETY: kill(2) of a process this test's plugin started.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
    }
}

/// A plugin that starts a `sleep` in a session of its own and writes its
/// pid to `escaped.pid`. With `orphan`, through a subshell that exits at
/// once, so the sleep is reparented before anyone could see its parent.
fn escaping_plugin(dir: &Path, orphan: bool) {
    let start =
        "setsid sh -c 'echo $$ > escaped.pid; exec sleep 1000' </dev/null >/dev/null 2>&1 &";
    let start = if orphan {
        format!("( {start} )")
    } else {
        start.to_string()
    };
    plugin(
        dir,
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n",
        &[(
            "run.sh",
            &format!("{start}\necho escaper-up\nwhile true; do sleep 0.2; done\n"),
        )],
    );
}

fn escaped_pid(home: &Path, plugin: &str) -> u32 {
    let file = home.join("ext").join(plugin).join("escaped.pid");
    assert!(
        wait_until(PATIENCE, || read_pid(&file).is_some_and(alive)),
        "{plugin} did not start its escaping child"
    );
    read_pid(&file).unwrap()
}

/// `aigis stop NAME` stops what the plugin moved out of its process group,
/// also after its parent is gone; another plugin's escaped child stays; the
/// daemon's SIGTERM stops that one too.
#[test]
fn a_child_in_its_own_session_is_stopped_with_its_plugin() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    let home_s = home.to_str().unwrap();
    escaping_plugin(&base.join("src/stopped"), false);
    escaping_plugin(&base.join("src/orphaned"), true);
    escaping_plugin(&base.join("src/kept"), false);
    write(
        base,
        "aigis.toml",
        "[external]\nstopped = \"src/stopped\"\norphaned = \"src/orphaned\"\nkept = \"src/kept\"\n",
    );
    let mut leftovers = Leftovers::default();
    for name in ["stopped", "orphaned", "kept"] {
        leftovers.watch(home.join("ext").join(name).join("escaped.pid"));
    }
    let mut daemon = Daemon::start(base, &["run", "-c", "aigis.toml", "--home", home_s]);
    let stopped = escaped_pid(&home, "stopped");
    let orphaned = escaped_pid(&home, "orphaned");
    let kept = escaped_pid(&home, "kept");

    for (name, pid) in [("stopped", stopped), ("orphaned", orphaned)] {
        let (ok, out) = aigis_within(base, &["stop", name, "--home", home_s], PATIENCE)
            .expect("aigis stop finishes");
        assert!(ok, "{out}");
        assert!(
            wait_until(GONE, || !alive(pid)),
            "{name}'s child in its own session (pid {pid}) outlived `aigis stop {name}`"
        );
    }
    assert!(alive(kept), "stopping other plugins killed kept's child");

    daemon.signal(libc::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(15))
        .expect("aigis exits");
    assert!(status.success(), "{status:?}\n{}", daemon.output());
    assert!(
        wait_until(GONE, || !alive(kept)),
        "kept's child in its own session (pid {kept}) outlived the daemon's SIGTERM"
    );
}

/// A throwaway system user, deleted when dropped (also when the test fails).
struct TestUser {
    name: String,
    uid: u32,
}

impl TestUser {
    fn create() -> TestUser {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("aigis-test-{:08x}", nanos ^ std::process::id());
        let status = std::process::Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(&name)
            .status()
            .expect("useradd (passwd) is needed");
        assert!(status.success(), "useradd {name} failed: {status:?}");
        // Deleted from here on, whatever happens next.
        let mut user = TestUser { name, uid: 0 };
        let out = std::process::Command::new("id")
            .args(["-u", &user.name])
            .output()
            .expect("id");
        user.uid = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("the new user's uid");
        user
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let deleted = std::process::Command::new("userdel")
            .arg(&self.name)
            .status()
            .is_ok_and(|s| s.success());
        if !deleted {
            let _ = std::process::Command::new("userdel")
                .args(["--force", &self.name])
                .status();
        }
    }
}

/// A throwaway user and a base dir it can reach (its plugins' trees are
/// below); `None`, and the test skips, when not root (only root runs a
/// plugin as another user).
fn user_and_base() -> Option<(TestUser, tempfile::TempDir)> {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root can run a plugin as another user");
        return None;
    }
    let user = TestUser::create();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    Some((user, tmp))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// `[aigis] users` runs a plugin, and its requirements command, as its own
/// user, which owns its files and its secret (0600); `<home>/secrets` is
/// AIGIS's alone, and another plugin's secret is out of its reach. A plugin
/// left to run as root gets a warning.
#[test]
fn a_plugin_runs_as_its_own_user_and_cannot_read_another_plugins_secret() {
    use std::os::unix::fs::MetadataExt;
    let Some((user, tmp)) = user_and_base() else {
        return;
    };
    let base = tmp.path();
    let home = base.join("home");
    plugin(
        &base.join("src/web"),
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n\
         REQUIREMENTS_COMMAND = 'id -u > req-uid.txt'\n\
         SECRETS = {'web.secret': '{root}/conf/'}\n",
        &[(
            "run.sh",
            "id -u > uid.txt\n\
             stat -c '%u %a' conf/web.secret > secret.txt\n\
             if cat ../other/conf/other.secret; then echo read; else echo denied; fi > installed.txt\n\
             if cat \"$AIGIS_ROOT/../../secrets/other/other.secret\"; then echo read; else echo denied; fi > home.txt\n\
             echo web-up\n\
             while true; do sleep 0.2; done\n",
        )],
    );
    plugin(
        &base.join("src/other"),
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n\
         SECRETS = {'other.secret': '{root}/conf/'}\n",
        &[("run.sh", "echo other-up\nwhile true; do sleep 0.2; done\n")],
    );
    // An internal plugin: the shim it runs under must be readable by its user.
    plugin(
        &base.join("src/pyweb"),
        "PLUGIN_TYPE = 'internal-local'\nENTRYPOINT = '{root}'\nLAUNCH = 'main.py'\n",
        &[(
            "main.py",
            "import os, time\n\ndef launch():\n    \
             with open('pyuid.txt', 'w') as f:\n        f.write(str(os.getuid()))\n    \
             print('pyweb-up', flush=True)\n    while True:\n        time.sleep(1)\n",
        )],
    );
    // A git plugin: central still fetches into the clone its user owns.
    let repo = TestRepo::new(&base.join("repos"), "gitweb");
    repo.write(
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'main.sh']\n",
    );
    repo.write(
        "main.sh",
        "echo gitweb-says $(cat version)\nexec sleep 1000\n",
    );
    repo.write("version", "v1");
    repo.commit("v1");
    write(&home, "secrets/web/web.secret", "web-secret-4a1b");
    write(&home, "secrets/other/other.secret", "other-secret-9c2d");
    write(
        base,
        "aigis.toml",
        &format!(
            "[aigis]\nusers = {{ \"web\" = \"{0}\", pyweb = \"{0}\", gitweb = \"{0}\" }}\n\
             [internal-local]\npyweb = \"src/pyweb\"\n\
             [external]\nother = \"src/other\"\nweb = \"src/web\"\ngitweb = \"{1}\"\n",
            user.name,
            repo.file_url()
        ),
    );
    let mut daemon = Daemon::start(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
    );
    daemon.expect_output("web-up", PATIENCE);
    daemon.expect_output("other-up", PATIENCE);
    daemon.expect_output("pyweb-up", PATIENCE);
    let web = home.join("work/web");
    assert!(wait_until(PATIENCE, || !read(&web.join("home.txt")).is_empty()));

    let uid = user.uid.to_string();
    assert_eq!(read(&web.join("uid.txt")), uid, "the plugin's uid");
    assert_eq!(read(&web.join("req-uid.txt")), uid, "the requirements' uid");
    assert_eq!(
        read(&home.join("work/pyweb/pyuid.txt")),
        uid,
        "the internal plugin's uid"
    );
    assert_eq!(read(&web.join("secret.txt")), format!("{uid} 600"));
    assert_eq!(
        std::fs::metadata(web.join("run.sh")).unwrap().uid(),
        user.uid
    );
    assert_eq!(read(&web.join("installed.txt")), "denied");
    assert_eq!(read(&web.join("home.txt")), "denied");
    let secrets = std::fs::metadata(home.join("secrets")).unwrap();
    assert_eq!(secrets.mode() & 0o777, 0o700);
    assert_eq!(secrets.uid(), 0);
    // `other` has no user: it runs as root, and that is said once.
    let out = daemon.output();
    let warning = "plugins run as root; set [aigis] users to give each its own user";
    assert_eq!(out.matches(warning).count(), 1, "{out}");
    assert!(!out.contains("web-secret-4a1b") && !out.contains("other-secret-9c2d"));

    // The clone is AIGIS's, the working copy the plugin's; a reload still
    // updates both.
    daemon.expect_output("gitweb-says v1", PATIENCE);
    let uid_of = |p: &Path| std::fs::symlink_metadata(p).unwrap().uid();
    assert_eq!(uid_of(&home.join("work/gitweb/main.sh")), user.uid);
    assert_eq!(uid_of(&home.join("ext/gitweb/main.sh")), 0);
    assert_eq!(uid_of(&home.join("ext/gitweb")), 0);
    assert_eq!(uid_of(&home.join("ext/web/run.sh")), 0);
    repo.write("version", "v2");
    repo.commit("v2");
    let (ok, out) = aigis_within(
        base,
        &["reload", "gitweb", "--home", home.to_str().unwrap()],
        PATIENCE,
    )
    .expect("aigis reload finishes");
    assert!(ok, "{out}");
    daemon.expect_output("gitweb-says v2", PATIENCE);

    daemon.signal(libc::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(15))
        .expect("aigis exits");
    assert!(status.success(), "{status:?}\n{}", daemon.output());
}

/// A plugin with a user of its own used to own `ext/<name>`, the tree
/// central reads and imports: an internal plugin that wrote an
/// `AIGIS.core` and reloaded itself, and an external plugin that rewrote
/// its config to `PLUGIN_TYPE = 'core'`, had their code run in central, as
/// root. Now such a plugin runs in a working copy (`work/<name>`) and
/// central reads only its own: neither runs anything in central.
#[test]
fn a_plugin_with_its_own_user_cannot_make_central_run_its_code() {
    use std::os::unix::fs::MetadataExt;
    let Some((user, tmp)) = user_and_base() else {
        return;
    };
    let base = tmp.path();
    let home = base.join("home");
    // Only root can write in `base`: the plugins' user cannot make it.
    let marker = base.join("central-ran-plugin-code");
    let payload = format!(
        "import os\nopen({:?}, 'a').write(str(os.getpid()))\nSKILLS = []\n",
        marker.to_str().unwrap()
    );
    plugin(
        &base.join("src/sneaky"),
        "PLUGIN_TYPE = 'internal-local'\nENTRYPOINT = '{root}'\nLAUNCH = 'main.py'\n",
        &[
            ("payload.py", &payload),
            (
                "main.py",
                "import os, shutil, time\nimport aigis\n\ndef launch():\n    \
                 root = os.environ['AIGIS_ROOT']\n    runs = os.path.join(root, 'runs.txt')\n    \
                 n = int(open(runs).read()) + 1 if os.path.exists(runs) else 1\n    \
                 open(runs, 'w').write(str(n))\n    print('sneaky-run', n, flush=True)\n    \
                 if n == 1:\n        \
                 shutil.copy(os.path.join(root, 'payload.py'), os.path.join(root, 'AIGIS', 'AIGIS.core'))\n        \
                 aigis.AIGISReload('sneaky')\n    \
                 while True:\n        time.sleep(1)\n",
            ),
        ],
    );
    plugin(
        &base.join("src/turncoat"),
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n",
        &[
            ("payload.py", &payload),
            (
                "run.sh",
                "printf \"PLUGIN_TYPE = 'core'\\nENTRYPOINT = '{root}'\\n\" > AIGIS/AIGIS.config\n\
                 cp payload.py AIGIS/AIGIS.core\necho turncoat-planted\n\
                 while true; do sleep 0.2; done\n",
            ),
        ],
    );
    write(
        base,
        "aigis.toml",
        &format!(
            "[aigis]\nusers = {{ sneaky = \"{0}\", turncoat = \"{0}\" }}\n\
             [internal-local]\nsneaky = \"src/sneaky\"\n[external]\nturncoat = \"src/turncoat\"\n",
            user.name
        ),
    );
    let home_s = home.to_str().unwrap();
    let mut daemon = Daemon::start(base, &["run", "-c", "aigis.toml", "--home", home_s]);
    daemon.expect_output("sneaky-run 2", PATIENCE);
    daemon.expect_output("turncoat-planted", PATIENCE);
    let work = home.join("work/turncoat/AIGIS/AIGIS.core");
    assert!(
        wait_until(PATIENCE, || work.is_file()),
        "the payload was not planted"
    );
    let (ok, out) = aigis_within(base, &["reload", "turncoat", "--home", home_s], PATIENCE)
        .expect("aigis reload finishes");
    assert!(ok, "{out}");
    assert!(wait_until(PATIENCE, || daemon
        .output()
        .matches("turncoat-planted")
        .count()
        == 2));
    assert!(
        !marker.exists(),
        "central ran a plugin's code:\n{}",
        daemon.output()
    );
    for name in ["sneaky", "turncoat"] {
        let ext = std::fs::metadata(home.join("ext").join(name)).unwrap();
        assert_eq!(ext.uid(), 0, "{name}: central's copy is central's");
        let work = std::fs::metadata(home.join("work").join(name)).unwrap();
        assert_eq!(
            work.uid(),
            user.uid,
            "{name}: the working copy is its user's"
        );
        assert!(!home
            .join("ext")
            .join(name)
            .join("AIGIS/AIGIS.core")
            .exists());
    }
    daemon.signal(libc::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(15))
        .expect("aigis exits");
    assert!(status.success(), "{status:?}\n{}", daemon.output());
    assert!(!marker.exists(), "central ran a plugin's code at shutdown");
}

/// `[aigis] users` on a LAN host: the remote agent (root there) runs the
/// plugin as its user, which owns its synced tree and its secret.
#[test]
fn a_plugin_on_a_lan_host_runs_as_its_own_user() {
    use std::os::unix::fs::MetadataExt;
    let Some((user, tmp)) = user_and_base() else {
        return;
    };
    let base = tmp.path();
    let lan = aigis_e2e::sshd::lan(base);
    let home = base.join("home");
    plugin(
        &base.join("src/far"),
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n\
         HOST = 'lan1'\nSECRETS = {'far.secret': '{root}/conf/'}\n",
        &[(
            "run.sh",
            "id -u > uid.txt\nstat -c '%u %a' conf/far.secret > secret.txt\n\
             echo far-up\nwhile true; do sleep 0.2; done\n",
        )],
    );
    write(&home, "secrets/far/far.secret", "far-secret-77e1");
    write(
        base,
        "aigis.toml",
        &format!(
            "[aigis]\nremote_dir = \"{}/{{host}}\"\nusers = {{ far = \"{}\" }}\n\
             [external]\nfar = \"src/far\"\n",
            base.join("hosts").display(),
            user.name
        ),
    );
    let mut daemon = Daemon::start_with_env(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
        &[("HOME", lan.user_home.to_str().unwrap())],
    );
    daemon.expect_output("far-up", PATIENCE);
    let tree = aigis_e2e::sshd::central_place(&base.join("hosts/lan1"), &home).join("ext/far");
    assert!(wait_until(PATIENCE, || !read(&tree.join("secret.txt")).is_empty()));
    let uid = user.uid.to_string();
    assert_eq!(read(&tree.join("uid.txt")), uid, "the plugin's uid");
    assert_eq!(read(&tree.join("secret.txt")), format!("{uid} 600"));
    assert_eq!(
        std::fs::metadata(tree.join("run.sh")).unwrap().uid(),
        user.uid
    );
    assert!(!daemon.output().contains("far-secret-77e1"));
    daemon.signal(libc::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(15))
        .expect("aigis exits");
    assert!(status.success(), "{status:?}\n{}", daemon.output());
}

/// Whether this kernel has Landlock (ABI 1 or newer).
fn landlock() -> bool {
    // SAFETY: landlock_create_ruleset(NULL, 0, VERSION) only answers the
    // ABI version; it takes no memory.
    unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, 0usize, 0usize, 1u32) >= 1 }
}

/// By default every plugin ran as central's user and could read every
/// other plugin's secrets and tree, central's config and its SSH identity.
/// Now each plugin process is confined (Landlock, no root needed): it
/// reads and writes its own tree, and the rest of the filesystem as
/// central's user sees it, but nothing else of AIGIS's home, the central
/// config or `~/.ssh`. `[aigis] unconfined` opts a plugin out.
#[test]
fn a_confined_plugin_reads_neither_another_plugins_secret_nor_centrals_key() {
    if !landlock() {
        eprintln!("skipped: this kernel has no Landlock");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let home = base.join("home");
    let user = base.join("user");
    write(&user, ".ssh/id_ed25519", "CENTRAL-KEY-41c2");
    write(&home, "secrets/victim/victim.secret", "VICTIM-SECRET-93aa");
    write(&home, "secrets/thief/thief.secret", "thief-own-secret");
    let probe = |what: &str, path: &str| {
        format!(
            "if cat {path} >/dev/null 2>&1; then echo {what}=read; else echo {what}=denied; fi\n"
        )
    };
    let script = [
        probe("own-secret", "conf/thief.secret"),
        probe("installed", "../victim/conf/victim.secret"),
        probe("secrets", "$AIGIS_ROOT/../../secrets/victim/victim.secret"),
        probe("key", "$HOME/.ssh/id_ed25519"),
        probe("config", "$AIGIS_ROOT/../../../aigis.toml"),
        probe("etc", "/etc/hostname"),
        "if echo x > mine.txt; then echo own-tree=written; else echo own-tree=denied; fi\n".into(),
        "if echo x > $AIGIS_ROOT/../../log/forged.log; then echo log=written; else echo log=denied; fi\n".into(),
        "echo probed\nwhile true; do sleep 1; done\n".into(),
    ]
    .concat();
    for name in ["thief", "legacy"] {
        plugin(
            &base.join("src").join(name),
            &format!(
                "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{{root}}'\nLAUNCH = ['sh', 'run.sh']\n\
                 SECRETS = {{'{0}.secret': '{{root}}/conf/'}}\n",
                if name == "legacy" { "thief" } else { name }
            ),
            &[("run.sh", &script)],
        );
    }
    write(&home, "secrets/legacy/thief.secret", "legacy-own-secret");
    plugin(
        &base.join("src/victim"),
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', '-c', 'echo victim-up; sleep 100']\n\
         SECRETS = {'victim.secret': '{root}/conf/'}\n",
        &[],
    );
    write(
        base,
        "aigis.toml",
        "[aigis]\nunconfined = [\"legacy\"]\n[external]\nvictim = \"src/victim\"\nthief = \"src/thief\"\nlegacy = \"src/legacy\"\n",
    );
    let mut daemon = Daemon::start_with_env(
        base,
        &["run", "-c", "aigis.toml", "--home", home.to_str().unwrap()],
        &[("HOME", user.to_str().unwrap())],
    );
    daemon.expect_output("victim-up", PATIENCE);
    daemon.expect_output("[thief] probed", PATIENCE);
    daemon.expect_output("[legacy] probed", PATIENCE);
    let out = daemon.output();
    let said = |plugin: &str, what: &str| {
        out.lines()
            .filter(|l| l.contains(&format!("[{plugin}]")))
            .find_map(|l| {
                l.split_once(&format!("{what}="))?
                    .1
                    .split_whitespace()
                    .next()
                    .map(String::from)
            })
            .unwrap_or_default()
    };
    for (what, want) in [
        ("own-secret", "read"),
        ("installed", "denied"),
        ("secrets", "denied"),
        ("key", "denied"),
        ("config", "denied"),
        ("etc", "read"),
        ("own-tree", "written"),
        ("log", "denied"),
    ] {
        assert_eq!(said("thief", what), want, "thief: {what}\n{out}");
    }
    // Left unconfined by the operator: as before.
    assert_eq!(said("legacy", "key"), "read", "{out}");
    assert_eq!(said("legacy", "installed"), "read", "{out}");
    assert!(!home.join("log/forged.log").exists() || said("legacy", "log") == "written");
    daemon.signal(libc::SIGTERM);
    assert!(daemon
        .wait_exit(Duration::from_secs(15))
        .is_some_and(|s| s.success()));
}
