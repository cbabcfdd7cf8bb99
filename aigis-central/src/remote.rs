//! LAN hosts: one SSH connection per host, the right `aigis-agent` put
//! there (uploaded only when its content hash is not cached on the host),
//! started over an exec channel, and driven by the same `AgentLink` as the
//! local agent.
//!
//! On the host everything lives under the remote dir (`[aigis] remote_dir`,
//! default `~/.aigis`): `bin/aigis-agent-<sha256>`, `ext/<plugin>`, and the
//! agent daemon's socket. The daemon outlives the SSH connection: when the
//! link drops, [`RemoteAgent`] reconnects with backoff and jitter and
//! attaches to the same running plugins, whose output waited on the host.

use crate::link::{AgentLink, Controls, Received};
use crate::plugins::Registry;
use crate::ssh::{self, Connection};
use config::{shell_quote as sh, HostSpec};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How remote hosts are set up, from `[aigis]`.
#[derive(Debug, Clone, Default)]
pub struct RemoteSettings {
    pub remote_dir: Option<String>,
    pub agents: Vec<(String, PathBuf)>,
}

/// An agent running on a LAN host, and the connection it runs over; both
/// are replaced when the link drops and comes back.
pub struct RemoteAgent {
    host: HostSpec,
    /// The remote dir on that host, absolute.
    pub base: PathBuf,
    agent: PathBuf,
    link: std::sync::RwLock<Arc<AgentLink>>,
    connection: tokio::sync::Mutex<Connection>,
    stopping: AtomicBool,
    registry: Registry,
    controls: Controls,
    /// What central has had from this host's agent, across reconnections.
    received: Arc<Received>,
}

impl RemoteAgent {
    /// The current link (requests fail while the host is away).
    pub fn link(&self) -> Arc<AgentLink> {
        match self.link.read() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Stops every plugin there and the agent; no reconnection after this.
    pub async fn shutdown(&self, limit: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        self.link().shutdown(limit).await;
        self.connection.lock().await.close().await;
    }

    /// Reconnects whenever the link drops, until [`RemoteAgent::shutdown`].
    fn keep_linked(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(agent) = me.upgrade() else { return };
                let link = agent.link();
                drop(agent);
                link.closed().await;
                let Some(agent) = me.upgrade() else { return };
                if agent.stopping.load(Ordering::SeqCst) {
                    return;
                }
                agent.reconnect().await;
            }
        });
    }

    async fn reconnect(&self) {
        let log = self.registry.log();
        let mut delay = Duration::from_millis(500);
        log.warn(
            "aigis",
            format!(
                "{}: link lost; its plugins keep running there; reconnecting",
                self.host
            ),
        )
        .await;
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            match self.open().await {
                Ok((connection, link)) => {
                    *self.connection.lock().await = connection;
                    if let Ok(mut l) = self.link.write() {
                        *l = Arc::new(link);
                    }
                    log.info(
                        "aigis",
                        format!("{}: reconnected to the running agent", self.host),
                    )
                    .await;
                    return;
                }
                Err(e) => {
                    let wait = jitter(delay);
                    log.warn(
                        "aigis",
                        format!(
                            "{}: reconnect failed ({e}); next try in {:.1}s",
                            self.host,
                            wait.as_secs_f64()
                        ),
                    )
                    .await;
                    tokio::time::sleep(wait).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// A fresh connection and link to the (running or new) agent daemon.
    async fn open(&self) -> Result<(Connection, AgentLink), String> {
        let connection = ssh::connect(&ssh::resolve(&self.host))
            .await
            .map_err(|e| e.to_string())?;
        let link = attach(
            &connection,
            &self.host,
            &self.agent,
            &self.base,
            self.registry.clone(),
            self.controls.clone(),
            self.received.clone(),
        )
        .await?;
        Ok((connection, link))
    }
}

/// `delay` ± 20 %, so hosts that dropped together do not retry together.
fn jitter(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let factor = 0.8 + f64::from(nanos % 1000) / 1000.0 * 0.4;
    delay.mul_f64(factor)
}

async fn attach(
    connection: &Connection,
    host: &HostSpec,
    agent: &Path,
    base: &Path,
    registry: Registry,
    controls: Controls,
    received: Arc<Received>,
) -> Result<AgentLink, String> {
    let command = format!(
        "{} attach --dir {}",
        sh(&agent.to_string_lossy()),
        sh(&base.to_string_lossy())
    );
    let stream = connection.stream(&command).await?;
    let (rd, wr) = tokio::io::split(stream);
    AgentLink::start(host.to_string(), rd, wr, registry, controls, received)
        .await
        .map_err(|e| format!("{host}: {e:#}"))
}

/// `uname -sm` as Rust names it: `x86_64-linux`, `aarch64-linux`, …
fn platform(uname: &str) -> Option<String> {
    let mut words = uname.split_whitespace();
    let os = words.next()?.to_ascii_lowercase();
    let arch = match words.next()? {
        "arm64" => "aarch64",
        "armv7l" | "armv6l" => "arm",
        "i686" | "i386" => "x86",
        other => other,
    };
    Some(format!("{arch}-{os}"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Connects to `host`, makes sure its agent is there, and starts it.
pub async fn start(
    host: &HostSpec,
    settings: &RemoteSettings,
    local_agent: &Path,
    registry: Registry,
    controls: Controls,
) -> Result<Arc<RemoteAgent>, String> {
    let target = ssh::resolve(host);
    let connection = ssh::connect(&target).await.map_err(|e| e.to_string())?;
    let (status, out) = connection
        .run("uname -sm; printf '%s\\n' \"$HOME\"", b"")
        .await?;
    let out = String::from_utf8_lossy(&out);
    let mut lines = out.lines();
    let (Some(uname), Some(remote_home), 0) = (lines.next(), lines.next(), status) else {
        return Err(format!(
            "{host}: cannot tell the host's platform (uname -sm failed)"
        ));
    };
    let platform =
        platform(uname).ok_or_else(|| format!("{host}: unexpected `uname -sm`: {uname}"))?;
    let local = format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS);
    let binary = if platform == local {
        local_agent.to_path_buf()
    } else {
        settings
            .agents
            .iter()
            .find(|(k, _)| *k == platform)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| {
                format!(
                    "{host} is {platform} and there is no aigis-agent for {platform}: build one \
                     (cargo build --release --target <{platform} target triple> -p aigis-agent) \
                     and list it in [aigis] agents = {{ \"{platform}\" = \"/path/to/aigis-agent\" }}"
                )
            })?
    };
    let bytes = std::fs::read(&binary)
        .map_err(|e| format!("cannot read the agent binary {}: {e}", binary.display()))?;
    let hash = sha256_hex(&bytes);

    let dir = settings
        .remote_dir
        .clone()
        .unwrap_or_else(|| "~/.aigis".into())
        .replace("{host}", &host.host);
    let base = match dir.strip_prefix("~/") {
        Some(rest) => Path::new(remote_home).join(rest),
        None if dir == "~" => PathBuf::from(remote_home),
        None => PathBuf::from(&dir),
    };
    let bin_dir = base.join("bin");
    let agent = bin_dir.join(format!("aigis-agent-{}", &hash[..16]));
    let agent_s = agent.to_string_lossy().into_owned();
    let (present, _) = connection
        .run(&format!("test -x {}", sh(&agent_s)), b"")
        .await?;
    if present == 0 {
        registry
            .log()
            .info(
                "aigis",
                format!("{host}: agent {} is already there", &hash[..16]),
            )
            .await;
    } else {
        let tmp = format!("{agent_s}.tmp-upload");
        let script = format!(
            "umask 077 && mkdir -p {bin} && cat > {tmp} && chmod 700 {tmp} && mv -f {tmp} {agent}",
            bin = sh(&bin_dir.to_string_lossy()),
            tmp = sh(&tmp),
            agent = sh(&agent_s)
        );
        let (status, _) = connection.run(&script, &bytes).await?;
        if status != 0 {
            return Err(format!(
                "{host}: uploading the agent to {agent_s} failed (status {status})"
            ));
        }
        registry
            .log()
            .info(
                "aigis",
                format!(
                    "{host}: uploaded agent {} ({} bytes) to {agent_s}",
                    &hash[..16],
                    bytes.len()
                ),
            )
            .await;
    }
    let received = Arc::new(Received::default());
    let link = attach(
        &connection,
        host,
        &agent,
        &base,
        registry.clone(),
        controls.clone(),
        received.clone(),
    )
    .await?;
    let remote = Arc::new(RemoteAgent {
        host: host.clone(),
        base,
        agent,
        link: std::sync::RwLock::new(Arc::new(link)),
        connection: tokio::sync::Mutex::new(connection),
        stopping: AtomicBool::new(false),
        registry,
        controls,
        received,
    });
    remote.keep_linked();
    Ok(remote)
}

/// How much of a file one `Stage` request carries.
const PIECE: usize = 1024 * 1024;

/// Streams local directory `dir` to the agent behind `link`, to be put at
/// `dest` there (symlinks followed, permission bits kept). One piece is in
/// flight at a time, so a large plugin never needs a large frame or buffer.
pub async fn upload_dir(link: &AgentLink, dir: &Path, dest: &Path) -> Result<(), String> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let mut files = Vec::new();
    collect_files(dir, "", &mut files)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut first = true;
    for (rel, path) in files {
        let read_err = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
        let mut file = std::fs::File::open(&path).map_err(read_err)?;
        let mode = file.metadata().map_err(read_err)?.permissions().mode();
        let mut offset = 0u64;
        loop {
            let mut contents = Vec::with_capacity(PIECE);
            (&mut file)
                .take(PIECE as u64)
                .read_to_end(&mut contents)
                .map_err(read_err)?;
            let len = contents.len() as u64;
            // Every file gets at least one piece, so empty files arrive too.
            if len > 0 || offset == 0 {
                let piece = proto::UploadedFile {
                    path: rel.clone(),
                    mode,
                    offset,
                    contents,
                };
                link.request(proto::Request::Stage {
                    dest: dest.to_path_buf(),
                    first,
                    piece,
                })
                .await
                .map_err(|e| format!("sending {rel}: {e}"))?;
                first = false;
            }
            offset += len;
            if len < PIECE as u64 {
                break;
            }
        }
    }
    Ok(())
}

/// Every file under `dir` as (relative path, path), directories followed.
fn collect_files(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, PathBuf)>,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if std::fs::metadata(entry.path())?.is_dir() {
            collect_files(&entry.path(), &rel, out)?;
        } else {
            out.push((rel, entry.path()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        assert_eq!(platform("Linux x86_64").as_deref(), Some("x86_64-linux"));
        assert_eq!(platform("Linux aarch64").as_deref(), Some("aarch64-linux"));
        assert_eq!(platform("Darwin arm64").as_deref(), Some("aarch64-darwin"));
        assert_eq!(platform("Linux armv7l").as_deref(), Some("arm-linux"));
        assert_eq!(platform("").as_deref(), None);
    }

    #[test]
    fn quoting_and_hashes() {
        assert_eq!(sh("a b'c"), r"'a b'\''c'");
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
