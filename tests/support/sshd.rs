//! A real OpenSSH `sshd` as a LAN host for tests: own host key, own
//! authorized_keys, listening on a loopback address of our choosing
//! (127.0.0.2, 127.0.0.3, …, so "remote" is really remote to AIGIS).
//! Stopped (by its PID) when dropped.

use crate::process::write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sshd {
    pub addr: String,
    pub port: u16,
    /// The client's private key (authorized on this server).
    pub client_key: PathBuf,
    /// The server's public host key, as a known_hosts line for `addr:port`.
    pub known_hosts_line: String,
    child: Child,
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .expect("ssh-keygen (openssh-client) is needed");
    assert!(status.success(), "ssh-keygen failed");
}

/// The sshd binary (Debian's openssh-server puts it in /usr/sbin).
pub fn sshd_binary() -> PathBuf {
    ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("sshd is needed for these tests: apt-get install openssh-server")
}

fn free_port(addr: &str) -> u16 {
    TcpListener::bind((addr, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Sshd {
    /// The `~/.ssh/config` block that names this sshd `alias`, logging in
    /// as root with its client key.
    pub fn config_entry(&self, alias: &str) -> String {
        format!(
            "Host {alias}\n    HostName {}\n    Port {}\n    User root\n    IdentityFile {}\n",
            self.addr,
            self.port,
            self.client_key.display()
        )
    }

    /// Starts sshd on `addr` (a loopback address) with keys under `dir`.
    pub fn start(dir: &Path, addr: &str) -> Sshd {
        Sshd::start_on(dir, addr, free_port(addr))
    }

    /// A free port on `addr`, for a server started later with [`Sshd::start_on`].
    pub fn reserve_port(addr: &str) -> u16 {
        free_port(addr)
    }

    pub fn start_on(dir: &Path, addr: &str, port: u16) -> Sshd {
        Sshd::start_configured(dir, addr, port, "")
    }

    /// As [`Sshd::start`], with `extra` lines in its `sshd_config` (e.g.
    /// `SetEnv PATH=...` for what a host's commands find).
    pub fn start_with(dir: &Path, addr: &str, extra: &str) -> Sshd {
        Sshd::start_configured(dir, addr, free_port(addr), extra)
    }

    fn start_configured(dir: &Path, addr: &str, port: u16, extra: &str) -> Sshd {
        std::fs::create_dir_all(dir).expect("sshd dir");
        let host_key = dir.join("host_key");
        let client_key = dir.join("client_key");
        keygen(&host_key);
        keygen(&client_key);
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
            .expect("authorized_keys");
        // sshd wants its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress {addr}\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PidFile {}\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nPermitRootLogin yes\nPubkeyAuthentication yes\nLogLevel ERROR\n\
                 ClientAliveInterval 5\n{extra}",
                host_key.display(),
                dir.join("authorized_keys").display(),
                dir.join("sshd.pid").display()
            ),
        )
        .expect("sshd_config");
        let child = Command::new(sshd_binary())
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        let target: SocketAddr = format!("{addr}:{port}").parse().expect("address");
        let start = Instant::now();
        while TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "sshd did not start on {target}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let public = std::fs::read_to_string(dir.join("host_key.pub")).expect("host key");
        let key: Vec<&str> = public.split_whitespace().take(2).collect();
        Sshd {
            addr: addr.to_string(),
            port,
            client_key,
            known_hosts_line: format!("[{addr}]:{port} {}\n", key.join(" ")),
            child,
        }
    }
}

impl Sshd {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Cuts every open SSH connection (kills the per-connection sshd
    /// processes this server forked), and with `pause` keeps new ones from
    /// being served until [`Sshd::resume`].
    pub fn cut_connections(&self, pause: bool) -> usize {
        let sessions = crate::process::children(self.pid());
        if pause {
            self.signal(libc::SIGSTOP);
        }
        for pid in &sessions {
            // SAFETY: plain kill(2) of a process our sshd started.
            unsafe {
                libc::kill(*pid as libc::pid_t, libc::SIGKILL);
            }
        }
        sessions.len()
    }

    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) of the sshd this fixture started.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// LAN hosts for a test: sshds on loopback, and a user whose
/// `~/.ssh/config` and `known_hosts` name them `lan1`, `lan2`.
pub struct Lan {
    pub hosts: Vec<Sshd>,
    pub user_home: PathBuf,
}

/// Two LAN hosts, `lan1` and `lan2`, in the user's ~/.ssh/config and known_hosts.
pub fn lan(base: &Path) -> Lan {
    let hosts = vec![
        Sshd::start(&base.join("sshd1"), "127.0.0.2"),
        Sshd::start(&base.join("sshd2"), "127.0.0.3"),
    ];
    let user_home = base.join("user");
    let mut config = String::new();
    let mut known = String::new();
    for (i, h) in hosts.iter().enumerate() {
        config.push_str(&h.config_entry(&format!("lan{}", i + 1)));
        known.push_str(&h.known_hosts_line);
    }
    write(&user_home, ".ssh/config", &config);
    write(&user_home, ".ssh/known_hosts", &known);
    Lan { hosts, user_home }
}

/// The place of the central whose home is `home` under a host's remote
/// dir: `<remote dir>/<id>`, the id `aigis` keeps in `<home>/central-id`
/// (`deploy::central_id`). Made here, as `aigis` would, when the home has
/// none yet, so a test may name the place before central first runs.
pub fn central_place(remote_dir: &Path, home: &Path) -> PathBuf {
    std::fs::create_dir_all(home).expect("home");
    let file = home.join("central-id");
    if !file.is_file() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let id = format!(
            "c-{:012x}",
            (nanos ^ u128::from(std::process::id())) & 0xffff_ffff_ffff
        );
        std::fs::write(&file, format!("{id}\n")).expect("central-id");
    }
    let id = std::fs::read_to_string(&file).expect("central-id");
    remote_dir.join(id.trim())
}
