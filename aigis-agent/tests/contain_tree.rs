//! Tree mode, where no cgroup can be had (a LAN host's agent under a
//! normal user): a plugin's processes are found by ancestry, process group,
//! session and environment, in a process that is a child subreaper like the
//! agent. (The end-to-end tests run the agent as root, in cgroup mode where
//! the host has a writable cgroup2.)

use aigis_agent::contain::{Jail, Mode};
use aigis_e2e::process::{alive, read_pid, wait_until};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

const PATIENCE: Duration = Duration::from_secs(20);

/// Kills, when dropped, what the pid files name and is still alive: a
/// failed test leaves nothing running. Each is a process this test started.
struct Leftovers(Vec<PathBuf>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for pid in self.0.iter().filter_map(|f| read_pid(f)) {
            if alive(pid) {
                // SAFETY: kill(2) of a process this test started.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
    }
}

/// `script` under `sh` in `dir`, in its own process group, as the agent
/// starts a plugin; its pid goes to `leader.pid`.
fn start(dir: &Path, plugin: &str, script: &str) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("echo $$ > leader.pid\n{script}"))
        .current_dir(dir)
        .env("AIGIS_PLUGIN", plugin)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    cmd.spawn().unwrap()
}

fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn running(file: &Path) -> u32 {
    assert!(
        wait_until(PATIENCE, || read_pid(file).is_some_and(alive)),
        "{} was not written",
        file.display()
    );
    read_pid(file).unwrap()
}

#[tokio::test]
async fn tree_mode_stops_what_left_the_group_and_nothing_else() {
    // SAFETY: prctl with integer arguments only; this test binary runs
    // this one test.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let tmp = tempfile::tempdir().unwrap();
    let (p, q) = (tmp.path().join("p"), tmp.path().join("q"));
    let _leftovers = Leftovers(
        [
            "p/leader.pid",
            "p/child.pid",
            "p/orphan.pid",
            "q/leader.pid",
            "q/child.pid",
        ]
        .iter()
        .map(|f| tmp.path().join(f))
        .collect(),
    );
    // p: a child in its own session, without p's environment (found by
    // ancestry), and an orphan in its own session (found by environment).
    let mut p_leader = start(
        &p,
        "p",
        "env -u AIGIS_PLUGIN setsid sh -c 'echo $$ > child.pid; exec sleep 1000' &\n\
         ( setsid sh -c 'echo $$ > orphan.pid; exec sleep 1000' & )\n\
         while true; do sleep 0.2; done\n",
    );
    let mut q_leader = start(
        &q,
        "q",
        "setsid sh -c 'echo $$ > child.pid; exec sleep 1000' &\n\
         while true; do sleep 0.2; done\n",
    );
    let (child, orphan) = (
        running(&p.join("child.pid")),
        running(&p.join("orphan.pid")),
    );
    let q_child = running(&q.join("child.pid"));
    assert!(
        wait_until(PATIENCE, || ppid(orphan) == Some(std::process::id())),
        "the orphan was not reparented to this subreaper"
    );

    let (mut jail, fd) = Jail::prepare_in(&Mode::Tree, "p").unwrap();
    assert!(fd.is_none());
    jail.started(p_leader.id().unwrap());
    let mut found = jail.members();
    found.sort_unstable();
    let mut want = vec![p_leader.id().unwrap(), child, orphan];
    want.sort_unstable();
    // The leader's `sleep 0.2` may be among them too.
    assert!(
        want.iter().all(|w| found.contains(w)),
        "found {found:?}, want {want:?}"
    );
    assert!(
        !found.contains(&q_child),
        "q's child taken for p's: {found:?}"
    );

    jail.signal(libc::SIGTERM);
    let _ = tokio::time::timeout(Duration::from_secs(5), p_leader.wait()).await;
    jail.kill().await;
    let _ = p_leader.wait().await;
    for pid in [child, orphan] {
        assert!(
            wait_until(Duration::from_secs(5), || !alive(pid)),
            "p's process {pid} outlived its stop"
        );
    }
    assert!(alive(q_child), "stopping p killed q's child");
    assert!(jail.members().is_empty());

    let (mut q_jail, _) = Jail::prepare_in(&Mode::Tree, "q").unwrap();
    q_jail.started(q_leader.id().unwrap());
    q_jail.kill().await;
    let _ = q_leader.wait().await;
    assert!(wait_until(Duration::from_secs(5), || !alive(q_child)));
    // SAFETY: reaps the orphans this subreaper adopted.
    unsafe { while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {} }
}
