//! A plugin's processes, all of them: what it starts in a process group or
//! session of its own (`setsid`), or orphans with a double fork, is found
//! and stopped with it, and only with it.
//!
//! The way is chosen once per agent ([`init`]):
//! - **cgroup**: the agent runs as root and can make a directory under its
//!   own cgroup on a cgroup2 mount. Every plugin gets
//!   `<agent's cgroup>/aigis-agent-<pid>/<plugin>`, which the child joins
//!   between fork and exec, so nothing it ever starts is outside. The
//!   kernel keeps the membership; stopping signals every process listed,
//!   then `cgroup.kill` (kernel 5.14+, else SIGKILL to each listed pid
//!   until none is left), and removes the cgroup.
//! - **tree**, everywhere else (a LAN host's agent under a normal user, a
//!   container with a read-only cgroupfs): the agent is a child subreaper,
//!   so whatever a plugin orphans is reparented to the agent, not to init,
//!   and stays in the agent's tree. A plugin's processes are, in that tree,
//!   its leader's descendants, those in a process group or session one of
//!   them leads, and those whose environment says `AIGIS_PLUGIN=<name>`
//!   (an orphan whose parent was gone before anyone looked). Whatever is
//!   left in the tree when the agent stops all its plugins is killed too.
//!
//! Invariants:
//! - Only processes of the agent's own cgroup or tree are ever signalled.
//! - A stop ends with nothing of the plugin alive, or gives up after
//!   [`KILL_ROUNDS`] rounds of SIGKILL (a process in uninterruptible sleep).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// How the agent keeps each plugin's processes together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `base` is `<agent's cgroup>/aigis-agent-<pid>` (made on first use);
    /// `kill` says the kernel has `cgroup.kill`.
    Cgroup { base: PathBuf, kill: bool },
    /// The agent's process tree (the agent is a child subreaper).
    Tree,
}

/// Rounds of SIGKILL, [`ROUND`] apart, before a stop gives up.
pub const KILL_ROUNDS: u32 = 200;
const ROUND: Duration = Duration::from_millis(10);

static MODE: OnceLock<Mode> = OnceLock::new();
/// Set by [`init`]: this process is the agent and may sweep its tree.
static AGENT: AtomicBool = AtomicBool::new(false);
/// Children the agent spawned and waits for itself (tokio does); the
/// reaper of adopted orphans leaves them alone.
static OWN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// The mode of this process, chosen on first use.
pub fn mode() -> &'static Mode {
    MODE.get_or_init(detect)
}

/// Chooses the mode for the agent. In tree mode the agent becomes a child
/// subreaper and reaps the orphans it adopts. Call once, in the runtime,
/// before any plugin starts.
pub fn init() -> &'static Mode {
    AGENT.store(true, Ordering::SeqCst);
    let mode = mode();
    if *mode == Mode::Tree {
        #[cfg(target_os = "linux")]
        // SAFETY: prctl with integer arguments only.
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
        tokio::spawn(reap_adopted());
    }
    mode
}

fn detect() -> Mode {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Mode::Tree;
    }
    match cgroup_base() {
        Some((base, kill)) => Mode::Cgroup { base, kill },
        None => Mode::Tree,
    }
}

/// `<cgroup2 mount>/<this process's cgroup>/aigis-agent-<pid>`, if a
/// directory can be made there (it is made and removed again to find
/// out), and whether it has `cgroup.kill`.
fn cgroup_base() -> Option<(PathBuf, bool)> {
    let own = fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let mounts = fs::read_to_string("/proc/self/mountinfo").ok()?;
    for line in mounts.lines() {
        // id parent dev root mountpoint options [optional...] - fstype source ...
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let fields: Vec<&str> = left.split_whitespace().collect();
        let (Some(root), Some(point)) = (fields.get(3), fields.get(4)) else {
            continue;
        };
        let Ok(inside) = Path::new(own).strip_prefix(unescape(root)) else {
            continue;
        };
        let dir = Path::new(&unescape(point)).join(inside);
        remove_stale(&dir);
        let base = dir.join(format!("aigis-agent-{}", std::process::id()));
        let made = fs::create_dir(&base).is_ok();
        let usable = base.join("cgroup.procs").is_file();
        let kill = base.join("cgroup.kill").is_file();
        if made {
            let _ = fs::remove_dir(&base);
        }
        if usable {
            return Some((base, kill));
        }
    }
    None
}

/// Removes the cgroups of agents that are gone (killed before they could
/// remove their own) from `dir`, when nothing runs in them: an empty
/// cgroup cannot be removed by mistake, one with processes is not removed.
fn remove_stale(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("aigis-agent-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(plugins) = fs::read_dir(entry.path()) {
            for plugin in plugins.flatten().filter(|p| p.path().is_dir()) {
                let _ = fs::remove_dir(plugin.path());
            }
        }
        let _ = fs::remove_dir(entry.path());
    }
}

/// A mountinfo field with its octal escapes (`\040` for a space) undone.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One run of a plugin: where its processes are, and how to stop them.
pub struct Jail {
    plugin: String,
    cgroup: Option<PathBuf>,
    /// The cgroup has `cgroup.kill`.
    cgroup_kill: bool,
    /// The process the agent spawned (0 until [`Jail::started`]).
    leader: u32,
    /// Tree mode: processes found to be the plugin's, by pid and start
    /// time, so one stays found after its parent is gone.
    known: HashMap<u32, u64>,
}

impl Jail {
    fn new(plugin: &str, cgroup: Option<PathBuf>, cgroup_kill: bool) -> Jail {
        Jail {
            plugin: plugin.to_string(),
            cgroup,
            cgroup_kill,
            leader: 0,
            known: HashMap::new(),
        }
    }

    /// Before the spawn: the plugin's own cgroup, emptied of what an
    /// earlier run left, and the descriptor the child writes itself into
    /// (see [`join`]); in tree mode, nothing to join.
    pub fn prepare(plugin: &str) -> Result<(Jail, Option<OwnedFd>), String> {
        Jail::prepare_in(mode(), plugin)
    }

    pub fn prepare_in(mode: &Mode, plugin: &str) -> Result<(Jail, Option<OwnedFd>), String> {
        let mut jail = Jail::new(plugin, None, false);
        let Mode::Cgroup { base, kill } = mode else {
            return Ok((jail, None));
        };
        jail.cgroup_kill = *kill;
        let dir = base.join(plugin);
        fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create the cgroup {}: {e}", dir.display()))?;
        jail.cgroup = Some(dir.clone());
        // Whatever an earlier run left there goes first.
        jail.kill_blocking();
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .map_err(|e| format!("cannot open {}/cgroup.procs: {e}", dir.display()))?;
        Ok((jail, Some(procs.into())))
    }

    /// The process the agent spawned for this run.
    pub fn started(&mut self, pid: u32) {
        self.leader = pid;
    }

    /// Every process of the plugin that is alive now.
    pub fn members(&mut self) -> Vec<u32> {
        match &self.cgroup {
            Some(dir) => cgroup_pids(dir),
            None => tree_members(
                &table(),
                std::process::id(),
                self.leader,
                &self.plugin,
                &mut self.known,
            ),
        }
    }

    /// `sig` to every process of the plugin, once each: its group at once
    /// (as before), then each one outside it (a second SIGTERM means
    /// "hurry" to some programs).
    pub fn signal(&mut self, sig: i32) {
        crate::group::kill_group(self.leader, sig);
        for pid in self.members() {
            let in_group = self.leader > 1 && stat(pid).is_some_and(|p| p.pgid == self.leader);
            if !in_group {
                kill(pid, sig);
            }
        }
    }

    /// SIGKILL to every process of the plugin until none is left, then
    /// its cgroup removed.
    pub async fn kill(&mut self) {
        for _ in 0..KILL_ROUNDS {
            if !self.kill_round() {
                break;
            }
            tokio::time::sleep(ROUND).await;
        }
        self.remove_cgroup();
    }

    /// [`Jail::kill`] for where no runtime waits: at most two seconds.
    fn kill_blocking(&mut self) {
        for _ in 0..KILL_ROUNDS {
            if !self.kill_round() {
                break;
            }
            std::thread::sleep(ROUND);
        }
    }

    /// One round of SIGKILL; false when nothing was left to kill.
    fn kill_round(&mut self) -> bool {
        crate::group::kill_group(self.leader, libc::SIGKILL);
        let left = self.members();
        if left.is_empty() {
            return false;
        }
        match &self.cgroup {
            Some(dir) if self.cgroup_kill => {
                if fs::write(dir.join("cgroup.kill"), "1").is_err() {
                    left.iter().for_each(|&p| kill(p, libc::SIGKILL));
                }
            }
            _ => left.iter().for_each(|&p| kill(p, libc::SIGKILL)),
        }
        true
    }

    fn remove_cgroup(&self) {
        if let Some(dir) = &self.cgroup {
            let _ = fs::remove_dir(dir);
        }
    }
}

impl Drop for Jail {
    /// An empty cgroup goes (a start that failed made one for nothing).
    fn drop(&mut self) {
        self.remove_cgroup();
    }
}

/// In the child, between fork and exec: moves it into the cgroup whose
/// `cgroup.procs` is open as `fd`. Only async-signal-safe calls.
pub fn join(fd: RawFd) -> io::Result<()> {
    // SAFETY: write(2) of a static buffer to a descriptor the parent opened.
    let n = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
    if n == 1 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn kill(pid: u32, sig: i32) {
    if pid > 1 && pid != std::process::id() {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid as libc::pid_t, sig);
        }
    }
}

fn cgroup_pids(dir: &Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// A process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy)]
struct Proc {
    pid: u32,
    ppid: u32,
    pgid: u32,
    sid: u32,
    /// Clock ticks after boot: with the pid, who this process is.
    start: u64,
    zombie: bool,
}

fn stat(pid: u32) -> Option<Proc> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything, even ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Proc {
        pid,
        zombie: *f.first()? == "Z",
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        sid: f.get(3)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

/// Every process this agent can see.
fn table() -> Vec<Proc> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter_map(stat)
        .collect()
}

/// The processes below `root` in `table` (not `root` itself).
fn below(table: &[Proc], root: u32) -> Vec<Proc> {
    let mut children: HashMap<u32, Vec<Proc>> = HashMap::new();
    for p in table {
        children.entry(p.ppid).or_default().push(*p);
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        for child in children.remove(&pid).unwrap_or_default() {
            todo.push(child.pid);
            out.push(child);
        }
    }
    out
}

/// True when `pid` was started with `AIGIS_PLUGIN=<plugin>`.
fn carries(pid: u32, plugin: &str) -> bool {
    let Ok(env) = fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let want = format!("AIGIS_PLUGIN={plugin}");
    env.split(|&b| b == 0).any(|v| v == want.as_bytes())
}

/// Tree mode: the live processes of `plugin` below `agent` (see the
/// module's doc); what is found is added to `known`.
fn tree_members(
    table: &[Proc],
    agent: u32,
    leader: u32,
    plugin: &str,
    known: &mut HashMap<u32, u64>,
) -> Vec<u32> {
    let inside = below(table, agent);
    // Pids that name the plugin's groups and sessions: a group or session
    // id stays taken while anyone is in it, so it cannot name another's.
    let mut ids: HashSet<u32> = known.keys().copied().collect();
    if leader > 1 {
        ids.insert(leader);
    }
    let mut found: HashSet<u32> = inside
        .iter()
        .filter(|p| {
            p.pid == leader || known.get(&p.pid) == Some(&p.start) || carries(p.pid, plugin)
        })
        .map(|p| p.pid)
        .collect();
    loop {
        let before = found.len();
        for p in &inside {
            if !found.contains(&p.pid)
                && (found.contains(&p.ppid)
                    || found.contains(&p.pgid)
                    || found.contains(&p.sid)
                    || ids.contains(&p.pgid)
                    || ids.contains(&p.sid))
            {
                found.insert(p.pid);
            }
        }
        if found.len() == before {
            break;
        }
    }
    let mut live = Vec::new();
    for p in inside.iter().filter(|p| found.contains(&p.pid)) {
        known.insert(p.pid, p.start);
        if !p.zombie {
            live.push(p.pid);
        }
    }
    live
}

/// A child the agent spawned and waits for; forgotten when dropped.
pub struct Own(u32);

impl Drop for Own {
    fn drop(&mut self) {
        own().retain(|&p| p != self.0);
    }
}

fn own() -> MutexGuard<'static, Vec<u32>> {
    crate::lock(&OWN)
}

/// Spawns `cmd`, marking the child as the agent's own before the reaper
/// of adopted orphans could mistake it for one.
pub fn spawn(cmd: &mut tokio::process::Command) -> io::Result<(tokio::process::Child, Own)> {
    let mut own = own();
    let child = cmd.spawn()?;
    let pid = child.id().unwrap_or(0);
    own.push(pid);
    Ok((child, Own(pid)))
}

/// Tree mode: reaps the orphans the agent adopted as they exit (tokio
/// reaps the agent's own children).
async fn reap_adopted() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut children) = signal(SignalKind::child()) else {
        return;
    };
    while children.recv().await.is_some() {
        reap_now();
    }
}

fn reap_now() {
    let own = own();
    let me = std::process::id();
    for p in table() {
        if p.ppid == me && p.zombie && !own.contains(&p.pid) {
            // SAFETY: waitpid(2) of a zombie child that nobody else waits for.
            unsafe {
                libc::waitpid(p.pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG);
            }
        }
    }
}

/// After every plugin stopped: kills what is still in the agent's tree
/// (cgroup mode: in its cgroups), and removes the agent's cgroup. Does
/// nothing in a process that is not the agent.
pub fn sweep() {
    if !AGENT.load(Ordering::SeqCst) {
        return;
    }
    match mode() {
        Mode::Cgroup { base, kill } => {
            let Ok(entries) = fs::read_dir(base) else {
                return;
            };
            for dir in entries.flatten().filter(|e| e.path().is_dir()) {
                let mut jail = Jail::new("", Some(dir.path()), *kill);
                jail.kill_blocking();
                jail.remove_cgroup();
            }
            let _ = fs::remove_dir(base);
        }
        Mode::Tree => {
            let me = std::process::id();
            for _ in 0..KILL_ROUNDS {
                let left: Vec<u32> = below(&table(), me)
                    .iter()
                    .filter(|p| !p.zombie)
                    .map(|p| p.pid)
                    .collect();
                if left.is_empty() {
                    break;
                }
                left.iter().for_each(|&p| kill(p, libc::SIGKILL));
                std::thread::sleep(ROUND);
            }
            reap_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/sys/fs/cgroup"), "/sys/fs/cgroup");
        assert_eq!(unescape(r"/a\040b\011c"), "/a b\tc");
        assert_eq!(unescape(r"/odd\04"), r"/odd\04");
    }

    /// What a killed agent left is removed when empty; a live agent's, and
    /// anything not empty, stay.
    #[test]
    fn stale_agent_cgroups_go_when_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let dead = tmp.path().join("aigis-agent-999999999");
        let live = tmp
            .path()
            .join(format!("aigis-agent-{}", std::process::id()));
        let busy = tmp.path().join("aigis-agent-999999998");
        for d in [dead.join("web"), live.join("web"), busy.join("web")] {
            fs::create_dir_all(d).unwrap();
        }
        // A regular directory with a file stands for a populated cgroup.
        fs::write(busy.join("web/cgroup.procs"), "42\n").unwrap();
        fs::create_dir(tmp.path().join("someone-else")).unwrap();
        remove_stale(tmp.path());
        assert!(!dead.exists());
        assert!(live.join("web").exists());
        assert!(busy.join("web").exists());
        assert!(tmp.path().join("someone-else").exists());
    }

    #[test]
    fn stat_reads_a_name_with_parentheses_and_spaces() {
        let me = stat(std::process::id()).expect("own stat");
        assert_eq!(me.pid, std::process::id());
        assert!(!me.zombie);
        // SAFETY: getppid/getsid have no preconditions.
        assert_eq!(me.ppid, unsafe { libc::getppid() } as u32);
        assert_eq!(me.sid, unsafe { libc::getsid(0) } as u32);
    }
}
