//! Process groups: every plugin and requirements command runs in its own,
//! and is stopped as a group, so nothing it started is left behind.

/// Kills a process group when dropped: whatever a finished or abandoned
/// command left behind in its group goes with it.
pub struct GroupGuard(pub u32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group(self.0, libc::SIGKILL);
    }
}

pub fn kill_group(pgid: u32, signal: i32) {
    if pgid > 1 {
        // SAFETY: killpg has no memory-safety preconditions; ESRCH (group
        // already gone) is the expected outcome after a clean exit.
        unsafe {
            libc::killpg(pgid as libc::pid_t, signal);
        }
    }
}
