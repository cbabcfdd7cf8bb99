//! What keeps plugins apart and stops them whole: a process a plugin moved
//! out of its process group (`setsid`, a double fork) is stopped with the
//! plugin, and only with it.

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
