//! Putting things on a LAN host: the right `aigis-agent` (uploaded only
//! when its content hash is not cached there) and a plugin's tree as
//! central fetched it (only the files that differ, by content hash).
//!
//! On the host everything lives under the remote dir (`[aigis] remote_dir`,
//! default `~/.aigis`): `bin/aigis-agent-<sha256>`, shared, and one place
//! per central (`c-<id>/`, see [`central_id`]) with `ext/<plugin>` and that
//! central's agent daemon's socket.

use crate::link::AgentLink;
use crate::logs::LogSink;
use crate::ssh::Connection;
use config::{shell_quote as sh, HostSpec};
use proto::{hex, Reply, Request, TreeFile, UploadedFile};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncRead;

/// How remote hosts are set up, from `[aigis]`.
#[derive(Debug, Clone, Default)]
pub struct RemoteSettings {
    pub remote_dir: Option<String>,
    pub agents: Vec<(String, PathBuf)>,
    /// This central's own place under the remote dir (see [`central_id`]).
    pub central_id: String,
}

/// This central's identity, kept in its home (`<home>/central-id`): each
/// central gets its own place and agent daemon on a LAN host, so two
/// centrals (or two homes on one machine) never disturb each other.
///
/// Random, made on first use: two machines made from one image, with the
/// same hostname and home path, are still two centrals. A home that AIGIS
/// ran in before this file existed keeps the identity it had then (from
/// its host and path), so its places on LAN hosts, and the plugins
/// running there, stay its own.
pub fn central_id(home: &Path) -> String {
    let file = home.join("central-id");
    let valid = |id: &str| {
        id.len() == 14 && id.starts_with("c-") && id[2..].bytes().all(|b| b.is_ascii_hexdigit())
    };
    if let Ok(id) = std::fs::read_to_string(&file) {
        if valid(id.trim()) {
            return id.trim().to_string();
        }
    }
    let ran_before = ["ext", "log"].iter().any(|d| home.join(d).is_dir());
    let id = if ran_before {
        legacy_id(home)
    } else {
        let mut bits = [0u8; 6];
        let random = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bits));
        if random.is_err() {
            bits = fastrand::u64(..).to_le_bytes()[..6]
                .try_into()
                .unwrap_or_default();
        }
        format!("c-{}", hex(&bits))
    };
    // Kept for the next run; another process that wrote one first wins.
    let _ = std::fs::create_dir_all(home);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{id}\n").as_bytes()));
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read_to_string(&file)
            .ok()
            .map(|i| i.trim().to_string())
            .filter(|i| valid(i))
            .unwrap_or(id),
        _ => id,
    }
}

/// The identity an AIGIS before `central-id` gave a home: from its host
/// name and path.
fn legacy_id(home: &Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let home = std::fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf());
    let digest = Sha256::digest(format!("{host}:{}", home.display()).as_bytes());
    format!("c-{}", &hex(&digest)[..12])
}

/// Where the agent is on a host.
pub struct Deployed {
    /// This central's place there (`<remote dir>/<central id>`), absolute:
    /// its plugins' trees and its agent daemon's socket.
    pub base: PathBuf,
    /// The agent binary there.
    pub agent: PathBuf,
}

/// Makes sure the agent for the host's platform is under its remote dir,
/// starts it (`attach`) and returns the link's byte stream.
///
/// The first command does it all when the host is of central's platform:
/// it prints the host's platform and home, and execs the cached agent at
/// once; or, when it is not there yet, takes the binary from its input
/// first (exactly its length, with GNU `head`), then execs it. Each command
/// costs the host a login shell (on a machine whose shell profile does
/// work, 100 ms or more), so a start costs one, not three. A host of
/// another platform, or without GNU `head`, gets the upload and the
/// `attach` as commands of their own.
pub async fn agent(
    connection: &Connection,
    host: &HostSpec,
    settings: &RemoteSettings,
    local_agent: &Path,
    log: &LogSink,
) -> Result<(Deployed, Stream), String> {
    let (local_bytes, local_hash) = read_agent(local_agent)?;
    let dir = settings
        .remote_dir
        .clone()
        .unwrap_or_else(|| "~/.aigis".into())
        .replace("{host}", &host.host);
    let probe = probe_script(
        &dir,
        &local_hash[..16],
        local_bytes.len(),
        &settings.central_id,
    );
    let mut stream = connection.stream(&probe).await?;
    let lines = tokio::time::timeout(PROBE_TIME, read_lines(&mut stream, 3)).await;
    let lines = lines.unwrap_or_default();
    let (Some(uname), Some(remote_home)) = (lines.first(), lines.get(1)) else {
        return Err(format!(
            "{host}: cannot tell the host's platform (uname -sm failed)"
        ));
    };
    let remote_dir = match dir.strip_prefix("~/") {
        Some(rest) => Path::new(remote_home).join(rest),
        None if dir == "~" => PathBuf::from(remote_home),
        None => PathBuf::from(&dir),
    };
    // Agent binaries are shared (by content hash); the rest is this central's.
    let bin_dir = remote_dir.join("bin");
    let base = remote_dir.join(&settings.central_id);
    let ours = bin_dir.join(format!("aigis-agent-{}", &local_hash[..16]));
    match lines.get(2).map(String::as_str) {
        Some(ATTACHING) => {
            log.info(
                "aigis",
                format!("{host}: agent {} is already there", &local_hash[..16]),
            )
            .await;
            return Ok((Deployed { base, agent: ours }, stream));
        }
        Some(SEND) => {
            let stream = send_agent(stream, &local_bytes)
                .await
                .map_err(|e| format!("{host}: uploading the agent to {}: {e}", ours.display()))?;
            log.info(
                "aigis",
                format!(
                    "{host}: uploaded agent {} ({} bytes) to {}",
                    &local_hash[..16],
                    local_bytes.len(),
                    ours.display()
                ),
            )
            .await;
            return Ok((Deployed { base, agent: ours }, stream));
        }
        _ => drop(stream),
    }

    let platform =
        platform(uname).ok_or_else(|| format!("{host}: unexpected `uname -sm`: {uname}"))?;
    let binary = binary_for(host, &platform, settings, local_agent)?;
    let (bytes, hash) = if binary == local_agent {
        (local_bytes, local_hash.clone())
    } else {
        read_agent(&binary)?
    };
    let agent = bin_dir.join(format!("aigis-agent-{}", &hash[..16]));
    let agent_s = agent.to_string_lossy().into_owned();
    // The probe already looked for the agent of central's own platform.
    let present = hash != local_hash
        && connection
            .run(&format!("test -x {}", sh(&agent_s)), b"")
            .await?
            .0
            == 0;
    if present {
        log.info(
            "aigis",
            format!("{host}: agent {} is already there", &hash[..16]),
        )
        .await;
        let stream = connection.stream(&attach_command(&agent, &base)).await?;
        return Ok((Deployed { base, agent }, stream));
    }
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
    log.info(
        "aigis",
        format!(
            "{host}: uploaded agent {} ({} bytes) to {agent_s}",
            &hash[..16],
            bytes.len()
        ),
    )
    .await;
    let stream = connection.stream(&attach_command(&agent, &base)).await?;
    Ok((Deployed { base, agent }, stream))
}

/// Writes the agent binary to a probe that asked for it ([`SEND`]) and
/// waits for it to say it execs it. What the probe says is read while the
/// binary goes out: a probe that failed before taking it all says so (or
/// closes the channel), and the upload stops there instead of waiting for
/// room that never comes. The write itself has no time limit (a slow link
/// takes as long as it takes, as the separate upload did).
async fn send_agent(stream: Stream, bytes: &[u8]) -> Result<Stream, String> {
    use tokio::io::AsyncWriteExt;
    let (mut rd, mut wr) = tokio::io::split(stream);
    // The probe's next line, kept outside the raced futures so that no
    // byte of it is lost when one of them is dropped.
    let mut said = Vec::new();
    let sent = {
        let write = async {
            wr.write_all(bytes).await?;
            wr.flush().await
        };
        tokio::select! {
            sent = write => Some(sent),
            whole = read_line_into(&mut rd, &mut said) => {
                if !whole {
                    return Err("the host closed the connection".into());
                }
                None
            }
        }
    };
    match sent {
        Some(Err(e)) => return Err(format!("the host stopped reading it: {e}")),
        Some(Ok(())) => {
            // All sent: the rest of the line, or the whole of it.
            let whole = tokio::time::timeout(PROBE_TIME, read_line_into(&mut rd, &mut said)).await;
            if whole != Ok(true) {
                return Err("the host closed the connection or did not answer in 30 s".into());
            }
        }
        None => {}
    }
    match String::from_utf8_lossy(&said).as_ref() {
        ATTACHING => {}
        UPLOAD_FAILED => {
            return Err(
                "the host could not write it: is its remote dir one the login user \
                        may create and write?"
                    .into(),
            )
        }
        said => return Err(format!("the host said {said:?}")),
    }
    // It prints that only once it has taken the whole binary.
    Ok(rd.unsplit(wr))
}

/// The byte stream of an agent link over SSH.
pub type Stream = russh::ChannelStream<russh::client::Msg>;

/// What the probe prints before it execs a cached agent.
const ATTACHING: &str = "AIGIS-ATTACHING";
/// What the probe prints when it takes the agent from its input.
const SEND: &str = "AIGIS-SEND";
/// What it prints when it could not write it.
const UPLOAD_FAILED: &str = "AIGIS-UPLOAD-FAILED";
/// How long the host may take to answer the probe.
const PROBE_TIME: Duration = Duration::from_secs(30);

/// The command that starts (or joins) the agent daemon of `base`.
pub fn attach_command(agent: &Path, base: &Path) -> String {
    format!(
        "{} attach --dir {}",
        sh(&agent.to_string_lossy()),
        sh(&base.to_string_lossy())
    )
}

/// The first command on a host: prints `uname -sm` and `$HOME`. On a host
/// of central's platform, when the agent `aigis-agent-<short>` is under the
/// remote dir `dir` (`~/…` is the host's home), it prints [`ATTACHING`]
/// and execs it (`attach`); when it is not, and GNU `head` can take exactly
/// `size` bytes from the input (other `head`s may read ahead into the
/// link), it prints [`SEND`], writes what it reads to a temporary file
/// (0700, checked for its length, then renamed), and goes on as if it had
/// been there. Otherwise it prints `AIGIS-ABSENT`.
fn probe_script(dir: &str, short: &str, size: usize, central_id: &str) -> String {
    let dir_in_shell = match dir.strip_prefix("~/") {
        Some(rest) => format!("\"$HOME\"/{}", sh(rest)),
        None if dir == "~" => "\"$HOME\"".to_string(),
        None => sh(dir),
    };
    format!(
        "p=$(uname -sm) || exit 1; printf '%s\\n%s\\n' \"$p\" \"$HOME\"; d={dir_in_shell}; \
         a=\"$d\"/bin/aigis-agent-{short}; \
         if [ \"$p\" = {expected} ]; then \
         if [ ! -x \"$a\" ] && head --version 2>/dev/null | grep -q GNU; then \
         t=\"$a\".tmp-$$; printf '{SEND}\\n'; \
         (umask 077 && mkdir -p \"$d\"/bin && head -c {size} > \"$t\" && \
         [ \"$(wc -c < \"$t\")\" -eq {size} ] && chmod 700 \"$t\" && mv -f \"$t\" \"$a\") \
         || {{ rm -f \"$t\"; printf '{UPLOAD_FAILED}\\n'; exit 1; }}; fi; \
         if [ -x \"$a\" ]; then printf '{ATTACHING}\\n'; exec \"$a\" attach --dir \"$d\"/{id}; fi; \
         fi; printf 'AIGIS-ABSENT\\n'",
        short = sh(short),
        expected = sh(&local_uname()),
        id = sh(central_id),
    )
}

/// `uname -sm` on a host of central's own platform (`Linux x86_64`).
fn local_uname() -> String {
    let os = std::env::consts::OS;
    let mut chars = os.chars();
    let os = match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    };
    format!("{os} {}", std::env::consts::ARCH)
}

/// An agent binary and its SHA-256 (hex), which names it on a host.
fn read_agent(path: &Path) -> Result<(Vec<u8>, String), String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read the agent binary {}: {e}", path.display()))?;
    let hash = hex(&Sha256::digest(&bytes));
    Ok((bytes, hash))
}

/// Up to `n` lines (of at most 4 KiB each) from the start of `stream`.
async fn read_lines(stream: &mut Stream, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    while lines.len() < n {
        let mut line = Vec::new();
        if !read_line_into(stream, &mut line).await {
            break;
        }
        lines.push(String::from_utf8_lossy(&line).into_owned());
    }
    lines
}

/// Reads to the end of a line into `line`, byte by byte so nothing after
/// it is taken from the link. False at the end of the stream, or past
/// 4 KiB. Safe to drop while it waits: what it read is in `line`.
async fn read_line_into(rd: &mut (impl AsyncRead + Unpin), line: &mut Vec<u8>) -> bool {
    use tokio::io::AsyncReadExt;
    loop {
        match rd.read_u8().await {
            Ok(b'\n') => return true,
            Ok(_) if line.len() >= 4096 => return false,
            Ok(b) => line.push(b),
            Err(_) => return false,
        }
    }
}

/// The agent binary for `platform`: ours, or one listed in `[aigis] agents`.
fn binary_for(
    host: &HostSpec,
    platform: &str,
    settings: &RemoteSettings,
    local_agent: &Path,
) -> Result<PathBuf, String> {
    let local = format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS);
    if platform == local {
        return Ok(local_agent.to_path_buf());
    }
    settings
        .agents
        .iter()
        .find(|(k, _)| k == platform)
        .map(|(_, p)| p.clone())
        .ok_or_else(|| {
            format!(
                "{host} is {platform} and there is no aigis-agent for {platform}: build one \
                 (cargo build --release --target <{platform} target triple> -p aigis-agent) \
                 and list it in [aigis] agents = {{ \"{platform}\" = \"/path/to/aigis-agent\" }}"
            )
        })
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

/// How much of a file one `Stage` request carries.
const PIECE: usize = 1024 * 1024;
/// How long the agent may take for one step of a tree sync.
const SYNC_STEP: Duration = Duration::from_secs(120);

/// Bytes of manifest per `Sync` or `Apply` request, well inside a frame
/// (a tree of 100,000 files takes several).
const MANIFEST_CHUNK: usize = 1024 * 1024;

/// `files` in runs whose manifest fits [`MANIFEST_CHUNK`]; always at least
/// one (an empty tree is still synced).
fn chunks(files: &[TreeFile]) -> Vec<&[TreeFile]> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, f) in files.iter().enumerate() {
        let cost = f.path.len() + f.link.as_ref().map_or(0, String::len) + 64;
        if size + cost > MANIFEST_CHUNK && i > start {
            out.push(&files[start..i]);
            (start, size) = (i, 0);
        }
        size += cost;
    }
    out.push(&files[start..]);
    out
}

/// Puts the tree at `root` (central's fetched copy) at `dest` on the host
/// behind `link`: only files that differ cross. Returns how many did.
pub async fn tree(link: &AgentLink, root: &Path, dest: &Path) -> Result<usize, String> {
    let root_owned = root.to_path_buf();
    let files = tokio::task::spawn_blocking(move || manifest(&root_owned))
        .await
        .map_err(|e| format!("reading the plugin's files failed: {e}"))?
        .map_err(|e| format!("cannot read {}: {e}", root.display()))?;
    let manifest: Vec<TreeFile> = files.iter().map(|(f, _)| f.clone()).collect();
    let parts = chunks(&manifest);
    let mut missing = std::collections::HashSet::new();
    for part in &parts {
        let reply = link
            .request(
                Request::Sync {
                    dest: dest.to_path_buf(),
                    files: part.to_vec(),
                },
                SYNC_STEP,
            )
            .await?;
        let Reply::Missing { paths } = reply else {
            return Err(format!("unexpected reply to Sync: {reply:?}"));
        };
        missing.extend(paths);
    }
    let mut first = true;
    let to_send = files
        .iter()
        .filter(|(f, _)| f.link.is_none() && missing.contains(&f.path));
    for (file, path) in to_send {
        send_file(link, dest, file, path, &mut first).await?;
    }
    for (i, part) in parts.iter().enumerate() {
        let reply = link
            .request(
                Request::Apply {
                    dest: dest.to_path_buf(),
                    files: part.to_vec(),
                    first: i == 0,
                    last: i + 1 == parts.len(),
                },
                SYNC_STEP,
            )
            .await?;
        if reply != Reply::Applied {
            return Err(format!("unexpected reply to Apply: {reply:?}"));
        }
    }
    Ok(missing.len())
}

/// Streams one file in pieces, one in flight at a time, so a plugin of any
/// size needs neither a large frame nor a large buffer.
async fn send_file(
    link: &AgentLink,
    dest: &Path,
    file: &TreeFile,
    path: &Path,
    first: &mut bool,
) -> Result<(), String> {
    let read_err = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut reader = std::fs::File::open(path).map_err(read_err)?;
    let mut offset = 0u64;
    loop {
        let mut contents = Vec::with_capacity(PIECE.min(file.size as usize));
        (&mut reader)
            .take(PIECE as u64)
            .read_to_end(&mut contents)
            .map_err(read_err)?;
        let len = contents.len() as u64;
        // Every file gets at least one piece, so empty files arrive too.
        if len > 0 || offset == 0 {
            let piece = UploadedFile {
                path: file.path.clone(),
                mode: file.mode,
                offset,
                contents,
            };
            link.request(
                Request::Stage {
                    dest: dest.to_path_buf(),
                    first: std::mem::take(first),
                    piece,
                },
                SYNC_STEP,
            )
            .await
            .map_err(|e| format!("sending {}: {e}", file.path))?;
        }
        offset += len;
        if len < PIECE as u64 {
            return Ok(());
        }
    }
}

/// Every file under `root` (`<home>/ext/<name>`) with its hash, in path
/// order. No link is followed: one that stays inside the tree is sent as
/// a link ([`proto::link_stays_inside`], and what it resolves to here is
/// inside too); any other link, and anything that is neither a regular
/// file nor a directory (a FIFO, a socket, a device), is refused, naming
/// it and never its target. Modes lose every bit above `0o777`. `.git` is
/// not part of what runs and stays behind.
pub fn manifest(root: &Path) -> std::io::Result<Vec<(TreeFile, PathBuf)>> {
    let real_root = std::fs::canonicalize(root)?;
    let mut out = Vec::new();
    walk(root, "", &real_root, &mut out)?;
    Ok(out)
}

fn refused(rel: &str, why: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        format!("refused to send {rel}: {why}"),
    )
}

/// `path`, a link at `rel`, as it is sent: its target, when it stays
/// inside the tree (`real_root`) as written and as resolved here.
fn link_entry(path: &Path, rel: &str, real_root: &Path) -> std::io::Result<TreeFile> {
    let target = std::fs::read_link(path)?;
    let target = target.to_str().unwrap_or_default();
    let resolves_inside = match std::fs::canonicalize(path) {
        Ok(real) => real.starts_with(real_root),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    };
    if !proto::link_stays_inside(rel, target) || !resolves_inside {
        return Err(refused(
            rel,
            "it is a symlink that leads outside the plugin's tree (only links that stay inside it are sent)",
        ));
    }
    Ok(TreeFile {
        path: rel.to_string(),
        mode: 0o777,
        size: 0,
        sha256: [0; 32],
        link: Some(target.to_string()),
    })
}

fn walk(
    dir: &Path,
    prefix: &str,
    real_root: &Path,
    out: &mut Vec<(TreeFile, PathBuf)>,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if prefix.is_empty() && name == ".git" {
            continue;
        }
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            walk(&path, &rel, real_root, out)?;
        } else if kind.is_symlink() {
            out.push((link_entry(&path, &rel, real_root)?, path));
        } else if kind.is_file() {
            let sha256 = aigis_agent::tree::sha256_file(&path)?;
            out.push((
                TreeFile {
                    path: rel,
                    mode: meta.permissions().mode() & aigis_agent::tree::MODE_BITS,
                    size: meta.len(),
                    sha256,
                    link: None,
                },
                path,
            ));
        } else {
            return Err(refused(
                &rel,
                "it is not a regular file, a directory or a link (a FIFO, a socket or a device)",
            ));
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

    /// The probe, run by the machine's `sh` in a home with a space in its
    /// path: it names the platform and home; takes an absent agent from its
    /// input, exactly its length (what follows is the link's), or refuses
    /// a short one; execs a cached agent; and says the agent is absent
    /// where `head` is not GNU's.
    #[test]
    fn the_probe_takes_or_execs_the_agent_or_says_it_is_absent() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("a home");
        std::fs::create_dir_all(&home).unwrap();
        let agent_script = b"#!/bin/sh\necho \"agent: $*\"\ncat\n";
        let run = |dir: &str, input: &[u8], path: Option<&Path>| {
            let mut cmd = std::process::Command::new("sh");
            cmd.arg("-c")
                .arg(probe_script(
                    dir,
                    "0123456789abcdef",
                    agent_script.len(),
                    "c-1d2e",
                ))
                .env("HOME", &home)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped());
            if let Some(path) = path {
                let old = std::env::var("PATH").unwrap_or_default();
                cmd.env("PATH", format!("{}:{old}", path.display()));
            }
            let mut child = cmd.spawn().unwrap();
            let mut stdin = child.stdin.take().unwrap();
            std::io::Write::write_all(&mut stdin, input).unwrap();
            drop(stdin);
            String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
        };
        let uname = local_uname();
        let shown = home.display();
        let agent = home.join(".aigis dir/bin/aigis-agent-0123456789abcdef");

        // A `head` that is not GNU's may read ahead: the agent is absent.
        let fake = tmp.path().join("fake");
        std::fs::create_dir_all(&fake).unwrap();
        std::fs::write(fake.join("head"), "#!/bin/sh\necho 'BusyBox head'\n").unwrap();
        std::fs::set_permissions(fake.join("head"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        assert_eq!(
            run("~/.aigis dir", b"", Some(&fake)),
            format!("{uname}\n{shown}\nAIGIS-ABSENT\n")
        );

        // Too short an input: nothing is installed.
        assert_eq!(
            run("~/.aigis dir", &agent_script[..10], None),
            format!("{uname}\n{shown}\n{SEND}\n{UPLOAD_FAILED}\n")
        );
        assert!(!agent.exists());
        let left: Vec<_> = std::fs::read_dir(agent.parent().unwrap())
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");

        // Taken from the input; the link's bytes after it reach the agent.
        let mut input = agent_script.to_vec();
        input.extend_from_slice(b"the link\n");
        assert_eq!(
            run("~/.aigis dir", &input, None),
            format!(
                "{uname}\n{shown}\n{SEND}\n{ATTACHING}\n\
                 agent: attach --dir {shown}/.aigis dir/c-1d2e\nthe link\n"
            )
        );
        assert_eq!(std::fs::read(&agent).unwrap(), agent_script);
        let mode = std::fs::metadata(&agent).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);

        // Cached: execed at once, with nothing taken from the input.
        assert_eq!(
            run("~/.aigis dir", b"the link\n", None),
            format!(
                "{uname}\n{shown}\n{ATTACHING}\n\
                 agent: attach --dir {shown}/.aigis dir/c-1d2e\nthe link\n"
            )
        );
        // An absolute remote dir is taken as it is.
        let absolute = home.join(".aigis dir");
        assert!(
            run(&absolute.to_string_lossy(), b"", None).ends_with(&format!(
                "agent: attach --dir {}/c-1d2e\n",
                absolute.display()
            ))
        );
    }

    #[test]
    fn quoting_and_hashes() {
        assert_eq!(sh("a b'c"), r"'a b'\''c'");
        assert_eq!(
            hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// A link is sent as a link while it stays inside the tree; one that
    /// leads out (into the home, or to central's key) is refused by its
    /// name alone; a FIFO is refused without being opened; a setuid bit
    /// is dropped.
    #[test]
    fn a_manifest_sends_links_inside_and_refuses_the_rest() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        std::fs::create_dir_all(home.join("secrets/victim")).unwrap();
        std::fs::write(home.join("secrets/victim/token"), "s3cret").unwrap();
        std::fs::create_dir_all(home.join("dotssh")).unwrap();
        std::fs::write(home.join("dotssh/id_ed25519"), "KEY").unwrap();
        let root = home.join("ext/p");
        std::fs::create_dir_all(root.join("lib")).unwrap();
        std::fs::write(root.join("own.txt"), "own").unwrap();
        std::fs::write(root.join("id"), "ELF").unwrap();
        std::fs::set_permissions(root.join("id"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        symlink("own.txt", root.join("inner")).unwrap();
        symlink("../own.txt", root.join("lib/up")).unwrap();
        let m = manifest(&root).unwrap();
        let shown: Vec<_> = m
            .iter()
            .map(|(f, _)| (f.path.as_str(), f.link.as_deref(), f.mode))
            .collect();
        assert_eq!(
            shown,
            [
                ("id", None, 0o755),
                ("inner", Some("own.txt"), 0o777),
                ("lib/up", Some("../own.txt"), 0o777),
                ("own.txt", None, 0o644),
            ]
        );
        for (name, target) in [
            ("leak", home.join("secrets/victim/token")),
            ("k", home.join("dotssh/id_ed25519")),
            ("k2", "../../dotssh/id_ed25519".into()),
            ("z", "/dev/zero".into()),
        ] {
            symlink(&target, root.join(name)).unwrap();
            let err = manifest(&root).unwrap_err().to_string();
            assert!(err.contains(&format!("refused to send {name}:")), "{err}");
            assert!(!err.contains("s3cret") && !err.contains("victim"), "{err}");
            assert!(!err.contains("dotssh") && !err.contains("zero"), "{err}");
            std::fs::remove_file(root.join(name)).unwrap();
        }
        let fifo = std::ffi::CString::new(root.join("pipe").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo of a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let err = manifest(&root).unwrap_err().to_string();
        assert!(err.contains("refused to send pipe:"), "{err}");
    }

    /// Two new homes at one path (two machines from one image) are two
    /// centrals; a home keeps its identity; one an older AIGIS ran in
    /// keeps the identity it had.
    #[test]
    fn a_centrals_identity_is_random_and_kept_in_its_home() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let first = central_id(&home);
        assert!(first.starts_with("c-") && first.len() == 14, "{first}");
        assert_eq!(central_id(&home), first, "kept");
        std::fs::remove_dir_all(&home).unwrap();
        assert_ne!(central_id(&home), first, "a new home at the same path");
        let old = tmp.path().join("old");
        std::fs::create_dir_all(old.join("ext")).unwrap();
        assert_eq!(central_id(&old), legacy_id(&old));
        assert_eq!(
            std::fs::read_to_string(old.join("central-id"))
                .unwrap()
                .trim(),
            legacy_id(&old)
        );
    }

    #[test]
    fn a_big_manifest_goes_in_chunks_that_fit_a_frame() {
        let file = |i: usize| TreeFile {
            path: format!("{}/{i}", "d".repeat(3400)),
            mode: 0o644,
            size: 1,
            sha256: [7; 32],
            link: None,
        };
        let files: Vec<_> = (0..2700).map(file).collect();
        let parts = chunks(&files);
        assert!(parts.len() > 8, "{}", parts.len());
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), 2700);
        for part in parts {
            let request = proto::ToAgent::Request {
                id: u64::MAX,
                request: Box::new(Request::Apply {
                    dest: "/d".into(),
                    files: part.to_vec(),
                    first: true,
                    last: true,
                }),
            };
            assert!(proto::encoded_len(&request).unwrap() < proto::MAX_FRAME);
        }
        assert_eq!(chunks(&[]).len(), 1, "an empty tree is still synced");
    }

    #[test]
    fn a_manifest_lists_every_file_but_git_history() {
        let tmp = tempfile::tempdir().unwrap();
        let root = &tmp.path().join("home/ext/p");
        std::fs::create_dir_all(root).unwrap();
        std::fs::create_dir_all(root.join(".git/objects")).unwrap();
        std::fs::write(root.join(".git/HEAD"), "ref").unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/a.py"), "A").unwrap();
        std::fs::write(root.join("run.sh"), "").unwrap();
        let m = manifest(root).unwrap();
        let paths: Vec<_> = m.iter().map(|(f, _)| f.path.as_str()).collect();
        assert_eq!(paths, ["run.sh", "src/a.py"]);
        assert_eq!(m[1].0.size, 1);
        assert_eq!(m[1].0.sha256, <[u8; 32]>::from(Sha256::digest(b"A")));
    }
}
