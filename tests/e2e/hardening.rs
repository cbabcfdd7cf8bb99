//! Attacks on a running AIGIS, played with the real binaries, real files
//! and real sockets: each test does what an attacker (or an accident) would
//! and checks that AIGIS holds.

use aigis_e2e::process::{aigis_within, wait_until, write, Daemon};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(60);

/// An external plugin that prints `word N` forever.
fn looping(dir: &Path, word: &str) {
    write(
        dir,
        "AIGIS/AIGIS.config",
        "PLUGIN_TYPE = 'external'\nENTRYPOINT = '{root}'\nLAUNCH = ['sh', 'run.sh']\n",
    );
    write(
        dir,
        "run.sh",
        &format!("i=0\nwhile true; do i=$((i+1)); echo \"{word} $i\"; sleep 0.2; done\n"),
    );
}

/// Descriptors `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Starts `aigis run` with its descriptor limit (soft and hard) at `nofile`.
fn daemon_with_nofile(base: &Path, args: &[&str], nofile: libc::rlim_t) -> Daemon {
    let mut cmd = Daemon::command(base, args);
    // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Daemon::spawn(cmd)
}

/// Makes sure this test process may hold `wanted` more descriptors.
fn allow_fds(wanted: libc::rlim_t) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < wanted + 256 {
            limit.rlim_cur = limit.rlim_max.min(wanted + 256);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Many idle connections from the daemon's own user (a stuck script, a
/// hostile plugin) used to exhaust the daemon's descriptors; the accept
/// loop then ended for good and every `aigis status` after it was refused.
/// Played twice: with room for more connections than the bound (the bound
/// holds), and with less (accept fails with EMFILE and must recover).
#[test]
fn idle_connections_do_not_take_the_control_socket_down() {
    const FLOOD: usize = 200;
    allow_fds(FLOOD as libc::rlim_t);
    for nofile in [128, 48] {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let home = base.join("home");
        let home_s = home.to_str().unwrap();
        looping(&base.join("src/tick"), "tick-says");
        write(base, "aigis.toml", "[external]\ntick = \"src/tick\"\n");
        let daemon =
            daemon_with_nofile(base, &["run", "-c", "aigis.toml", "--home", home_s], nofile);
        daemon.expect_output("tick-says 1", PATIENCE);
        let status = || aigis_within(base, &["status", "--home", home_s], Duration::from_secs(3));
        assert!(
            wait_until(PATIENCE, || status().is_some_and(|(ok, _)| ok)),
            "status never answered:\n{}",
            daemon.output()
        );
        let baseline = open_fds(daemon.pid());

        // The flood: connections that never send a request, all held open.
        let sock = home.join("run/aigis.sock");
        let mut held = Vec::new();
        let mut refused = 0;
        for _ in 0..FLOOD {
            match std::os::unix::net::UnixStream::connect(&sock) {
                Ok(s) => held.push(s),
                Err(_) => refused += 1,
            }
        }

        // While they are held, status still answers, promptly.
        let started = Instant::now();
        let answer = status();
        assert!(
            matches!(&answer, Some((true, out)) if out.contains("tick") && out.contains("running")),
            "limit {nofile}: with {} idle connection(s) held ({refused} refused), status gave \
             {answer:?} after {:?}; daemon output:\n{}",
            held.len(),
            started.elapsed(),
            daemon.output()
        );
        assert_eq!(refused, 0, "limit {nofile}: connections were refused");

        // Idle connections are dropped by the daemon after a few seconds,
        // even though this side still holds them.
        assert!(
            wait_until(Duration::from_secs(15), || open_fds(daemon.pid())
                <= baseline + 2),
            "limit {nofile}: the daemon still holds {} descriptors (baseline {baseline})",
            open_fds(daemon.pid())
        );
        let answer = status();
        assert!(
            matches!(&answer, Some((true, _))),
            "limit {nofile}: {answer:?}"
        );
        drop(held);
        if nofile == 48 {
            // Running out of descriptors is said, once, not in a flood.
            let said = daemon.output().matches("out of file descriptors").count();
            assert_eq!(said, 1, "limit {nofile}:\n{}", daemon.output());
        }
        // The plugin was never disturbed.
        let (ok, out) = status().unwrap_or_default();
        assert!(ok && out.contains("running"), "{out}");
    }
}
