//! SSH to LAN hosts (russh): where a `HOST` really is (`~/.ssh/config`),
//! whether its host key is the one in `~/.ssh/known_hosts`, and logging in
//! with the operator's keys.
//!
//! Invariants:
//! - `~` is `$HOME`, so a service account or a test can point it elsewhere.
//! - A host key that is unknown or changed refuses the connection, with an
//!   error that says how to fix it; nothing is ever added to known_hosts.

use config::HostSpec;
use russh::client;
use russh::keys::{self, HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A `HOST` after `~/.ssh/config`: where to connect, as whom, with which keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// What the config said (for messages).
    pub name: String,
    pub hostname: String,
    pub port: u16,
    pub user: String,
    pub identity_files: Vec<PathBuf>,
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn expand(p: &str) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => home().join(rest),
        None => PathBuf::from(p),
    }
}

/// OpenSSH's `Host` patterns: `*` and `?` wildcards, `!` negation.
fn host_matches(patterns: &[String], host: &str) -> bool {
    fn glob(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
            (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => glob(&p[1..], &s[1..]),
            _ => false,
        }
    }
    let mut matched = false;
    for p in patterns {
        if let Some(neg) = p.strip_prefix('!') {
            if glob(neg.as_bytes(), host.as_bytes()) {
                return false;
            }
        } else if glob(p.as_bytes(), host.as_bytes()) {
            matched = true;
        }
    }
    matched
}

/// Resolves `spec` against `config_text` (the contents of `~/.ssh/config`).
/// As in OpenSSH, the first value found for an option wins; values given in
/// `HOST` itself win over the file.
pub fn resolve_with(spec: &HostSpec, config_text: &str) -> Target {
    let (mut hostname, mut port, mut user) = (None, None, None);
    let mut identity_files = Vec::new();
    let mut active = true; // options before any `Host` line apply to all
    for line in config_text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once(|c: char| c.is_whitespace() || c == '=') {
            Some((k, v)) => (
                k.to_ascii_lowercase(),
                v.trim_start_matches([' ', '\t', '=']).trim(),
            ),
            None => continue,
        };
        let value = value.trim_matches('"');
        match key.as_str() {
            "host" => {
                let patterns: Vec<String> = value.split_whitespace().map(String::from).collect();
                active = host_matches(&patterns, &spec.host);
            }
            "match" => active = false, // not supported: skip its block
            _ if !active => {}
            "hostname" => {
                hostname.get_or_insert_with(|| value.replace("%h", &spec.host));
            }
            "port" => {
                if let Ok(p) = value.parse() {
                    port.get_or_insert(p);
                }
            }
            "user" => {
                user.get_or_insert_with(|| value.to_string());
            }
            "identityfile" => identity_files.push(expand(value)),
            _ => {}
        }
    }
    if identity_files.is_empty() {
        let ssh = home().join(".ssh");
        identity_files = ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|f| ssh.join(f))
            .collect();
    }
    Target {
        name: spec.to_string(),
        hostname: hostname.unwrap_or_else(|| spec.host.clone()),
        port: spec.port.or(port).unwrap_or(22),
        user: spec
            .user
            .clone()
            .or(user)
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "root".into()),
        identity_files,
    }
}

pub fn resolve(spec: &HostSpec) -> Target {
    let text = std::fs::read_to_string(home().join(".ssh").join("config")).unwrap_or_default();
    resolve_with(spec, &text)
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error(
        "host key of {host} is unknown (not in {known_hosts}); if {fingerprint} is right, add it: \
         ssh-keyscan -p {port} {hostname} >> {known_hosts}"
    )]
    UnknownHostKey {
        host: String,
        hostname: String,
        port: u16,
        fingerprint: String,
        known_hosts: String,
    },
    #[error(
        "host key of {host} has CHANGED (it is now {fingerprint}; {known_hosts} line {line} says otherwise): \
         refusing to connect. If the host was reinstalled, remove that line and add the new key"
    )]
    ChangedHostKey {
        host: String,
        fingerprint: String,
        known_hosts: String,
        line: usize,
    },
    #[error("cannot connect to {host} ({hostname}:{port}): {reason}")]
    Connect {
        host: String,
        hostname: String,
        port: u16,
        reason: String,
    },
    #[error("{host}: no key was accepted for user {user} (tried ssh-agent and {tried})")]
    Auth {
        host: String,
        user: String,
        tried: String,
    },
    /// Connected and logged in, then a command over the session failed.
    #[error("{host}: {reason}")]
    Session { host: String, reason: String },
}

impl SshError {
    /// The host could not be reached at all (as opposed to reached and
    /// refused: an unknown or changed host key, no key accepted).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, SshError::Connect { .. })
    }
}

/// Why a handshake ended: the host-key check's verdict travels as the
/// handler's error, so the caller learns it from `connect`'s result.
#[derive(Debug)]
enum Handshake {
    UnknownKey(String),
    ChangedKey(String, usize),
    Ssh(russh::Error),
}

impl From<russh::Error> for Handshake {
    fn from(e: russh::Error) -> Handshake {
        Handshake::Ssh(e)
    }
}

struct KnownHostsCheck {
    hostname: String,
    port: u16,
    known_hosts: PathBuf,
}

impl client::Handler for KnownHostsCheck {
    type Error = Handshake;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        match keys::check_known_hosts_path(&self.hostname, self.port, key, &self.known_hosts) {
            Ok(true) => Ok(true),
            Err(keys::Error::KeyChanged { line }) => Err(Handshake::ChangedKey(fingerprint, line)),
            Ok(false) | Err(_) => Err(Handshake::UnknownKey(fingerprint)),
        }
    }
}

/// An authenticated SSH session to one host.
pub struct Connection {
    handle: client::Handle<KnownHostsCheck>,
}

/// russh's algorithms, with AES-256-GCM first among the ciphers: with the
/// AES instructions of any x86-64 or ARMv8 CPU of the last decade it moves
/// bulk data (a large result, a log stream) markedly faster than
/// ChaCha20-Poly1305, at the same strength. Hosts that lack it still
/// negotiate the others.
fn preferred() -> russh::Preferred {
    use russh::cipher;
    let mut ciphers: Vec<cipher::Name> = vec![cipher::AES_256_GCM];
    ciphers.extend(
        russh::Preferred::DEFAULT
            .cipher
            .iter()
            .filter(|c| **c != cipher::AES_256_GCM),
    );
    russh::Preferred {
        cipher: ciphers.into(),
        ..russh::Preferred::DEFAULT
    }
}

/// Connects to `target`, checks its host key against `~/.ssh/known_hosts`
/// and logs in with ssh-agent or the identity files.
pub async fn connect(target: &Target) -> Result<Connection, SshError> {
    let known_hosts = home().join(".ssh").join("known_hosts");
    let handler = KnownHostsCheck {
        hostname: target.hostname.clone(),
        port: target.port,
        known_hosts: known_hosts.clone(),
    };
    let config = Arc::new(client::Config {
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 3,
        // Small frames (proxy calls, acks) must not wait for Nagle.
        nodelay: true,
        preferred: preferred(),
        ..Default::default()
    });
    let connect_err = |reason: String| SshError::Connect {
        host: target.name.clone(),
        hostname: target.hostname.clone(),
        port: target.port,
        reason,
    };
    let addr = (target.hostname.as_str(), target.port);
    let connecting = client::connect(config, addr, handler);
    let result = tokio::time::timeout(Duration::from_secs(15), connecting)
        .await
        .map_err(|_| connect_err("timed out after 15 s".into()))?;
    let shown = known_hosts.display().to_string();
    let mut handle = result.map_err(|e| match e {
        Handshake::UnknownKey(fingerprint) => SshError::UnknownHostKey {
            host: target.name.clone(),
            hostname: target.hostname.clone(),
            port: target.port,
            fingerprint,
            known_hosts: shown,
        },
        Handshake::ChangedKey(fingerprint, line) => SshError::ChangedHostKey {
            host: target.name.clone(),
            fingerprint,
            known_hosts: shown,
            line,
        },
        Handshake::Ssh(e) => connect_err(e.to_string()),
    })?;
    if !authenticate(&mut handle, target).await {
        return Err(SshError::Auth {
            host: target.name.clone(),
            user: target.user.clone(),
            tried: target
                .identity_files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(Connection { handle })
}

async fn authenticate(handle: &mut client::Handle<KnownHostsCheck>, target: &Target) -> bool {
    if let Ok(mut agent) = keys::agent::client::AgentClient::connect_env().await {
        if let Ok(identities) = agent.request_identities().await {
            for id in identities {
                let key = id.public_key().into_owned();
                let hash = handle
                    .best_supported_rsa_hash()
                    .await
                    .ok()
                    .flatten()
                    .flatten();
                if let Ok(r) = handle
                    .authenticate_publickey_with(&target.user, key, hash, &mut agent)
                    .await
                {
                    if r.success() {
                        return true;
                    }
                }
            }
        }
    }
    for file in &target.identity_files {
        let Ok(key) = keys::load_secret_key(file, None) else {
            continue;
        };
        let hash = handle
            .best_supported_rsa_hash()
            .await
            .ok()
            .flatten()
            .flatten();
        let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
        if let Ok(r) = handle.authenticate_publickey(&target.user, key).await {
            if r.success() {
                return true;
            }
        }
    }
    false
}

impl Connection {
    /// Runs `command` on the host, feeding it `input` (then EOF); returns
    /// its exit status and what it printed on stdout.
    pub async fn run(&self, command: &str, input: &[u8]) -> Result<(u32, Vec<u8>), String> {
        let mut channel = self.exec(command).await?;
        if !input.is_empty() {
            channel
                .data(input)
                .await
                .map_err(|e| format!("cannot send data over SSH: {e}"))?;
        }
        let _ = channel.eof().await;
        let (mut out, mut status) = (Vec::new(), None);
        while let Some(msg) = channel.wait().await {
            match msg {
                russh::ChannelMsg::Data { data } => out.extend_from_slice(&data),
                russh::ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                _ => {}
            }
        }
        Ok((status.unwrap_or(255), out))
    }

    /// Starts `command` and returns its stdin/stdout as one byte stream.
    pub async fn stream(&self, command: &str) -> Result<russh::ChannelStream<client::Msg>, String> {
        Ok(self.exec(command).await?.into_stream())
    }

    /// A new session channel running `command`.
    async fn exec(&self, command: &str) -> Result<russh::Channel<client::Msg>, String> {
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| format!("cannot open an SSH channel: {e}"))?;
        channel
            .exec(true, command)
            .await
            .map_err(|e| format!("cannot start `{command}` over SSH: {e}"))?;
        Ok(channel)
    }

    /// A channel to the Unix socket `path` on the host (OpenSSH's
    /// `direct-streamlocal`), as sshd connects to it.
    pub async fn open_socket(
        &self,
        path: &std::path::Path,
    ) -> Result<russh::Channel<client::Msg>, String> {
        self.handle
            .channel_open_direct_streamlocal(path.to_string_lossy())
            .await
            .map_err(|e| format!("cannot open a channel to {}: {e}", path.display()))
    }

    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// `aigis check`: connects, verifies the host key, logs in, disconnects.
/// Returns the programs of `required` that are not on the host's `PATH`.
/// With `envs`, also whether the host can make Python environments: when
/// it cannot, `VENV_MISSING` is among the missing.
pub async fn probe(
    spec: &HostSpec,
    required: &[String],
    envs: bool,
) -> Result<Vec<String>, SshError> {
    let target = resolve(spec);
    let conn = connect(&target).await?;
    let mut missing = Vec::new();
    if !required.is_empty() || envs {
        let script = required
            .iter()
            .map(|r| {
                let q = config::shell_quote(r);
                format!("command -v {q} >/dev/null 2>&1 || printf '%s\\n' {q}")
            })
            .chain(envs.then(|| aigis_agent::venv::VENV_PROBE.to_string()))
            .collect::<Vec<_>>()
            .join("; ");
        let (_, out) = conn
            .run(&script, b"")
            .await
            .map_err(|reason| SshError::Session {
                host: target.name.clone(),
                reason,
            })?;
        missing = String::from_utf8_lossy(&out)
            .lines()
            .map(String::from)
            .collect();
    }
    conn.close().await;
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
# defaults first
Host nas nas.lan
    HostName 192.168.1.5
    User pi
    Port 2222
    IdentityFile ~/.ssh/nas_key
Host *.lan !printer.lan
    User lanuser
Host *
    User fallback
    IdentityFile ~/.ssh/id_other
";

    fn spec(s: &str) -> HostSpec {
        HostSpec::parse(s).unwrap()
    }

    #[test]
    fn aliases_resolve_like_openssh() {
        let t = resolve_with(&spec("nas"), CONFIG);
        assert_eq!(
            (t.hostname.as_str(), t.port, t.user.as_str()),
            ("192.168.1.5", 2222, "pi")
        );
        assert_eq!(t.identity_files.len(), 2, "{t:?}");
        assert!(t.identity_files[0].ends_with(".ssh/nas_key"));
        let t = resolve_with(&spec("admin@nas:22"), CONFIG);
        assert_eq!((t.user.as_str(), t.port), ("admin", 22));
        let t = resolve_with(&spec("cam.lan"), CONFIG);
        assert_eq!(
            (t.hostname.as_str(), t.user.as_str()),
            ("cam.lan", "lanuser")
        );
        let t = resolve_with(&spec("printer.lan"), CONFIG);
        assert_eq!(t.user, "fallback");
        let t = resolve_with(&spec("127.0.0.2:2200"), "");
        assert_eq!((t.hostname.as_str(), t.port), ("127.0.0.2", 2200));
    }
}
