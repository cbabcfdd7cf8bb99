//! Message types. Central sends [`ToAgent`], the agent sends [`FromAgent`].
//!
//! Work that central waits for (fetch, install, start, stop) is a [`Request`]
//! with an id, answered by exactly one `FromAgent::Reply` with the same id.
//! Everything the agent reports on its own (output lines, state changes) is
//! an [`Event`].

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToAgent {
    Hello {
        version: u32,
        /// Identifies one run of central: an agent that outlived a link
        /// keeps its plugins for the same session and drops them for another.
        session: u64,
        /// The agent instance central heard from last and the last event
        /// `seq` it received from it: the agent replays what came after.
        resume: Resume,
    },
    /// Central has every numbered event up to `seq`; the agent may forget them.
    Ack { seq: u64 },
    Request {
        id: u64,
        /// Boxed: a request is far larger than the other messages, which
        /// wait in the same queues.
        request: Box<Request>,
    },
    /// Central's answer to a plugin's call (`Event::Call`).
    Answer { plugin: String, answer: Answer },
    /// Stop every plugin (SIGTERM, grace, SIGKILL), answer `Bye`, exit.
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromAgent {
    Hello {
        version: u32,
        os: String,
        arch: String,
        /// Random per agent process, so central knows when sequence
        /// numbers start over.
        instance: u64,
    },
    /// An event with its sequence number. The agent keeps it until central
    /// acknowledges it, and sends it again on the next link if the link
    /// broke first: a dropped connection loses nothing. Central ignores a
    /// `seq` it has already had.
    Numbered { seq: u64, event: Event },
    Reply {
        id: u64,
        result: Result<Reply, String>,
    },
    /// An event inside the agent, before its outbox numbers it; on the wire
    /// events travel as `Numbered`.
    Event(Event),
    /// Every plugin of this agent has stopped; the agent exits next.
    Bye,
}

impl ToAgent {
    /// The id of the request a frame starting with `head` carries, when
    /// it is one: what the agent answers a request it could not read.
    /// (`Request` is the third variant; its `id` comes first. A test pins
    /// both.)
    pub fn request_id(head: &[u8]) -> Option<u64> {
        let config = bincode::config::standard().with_limit::<64>();
        let ((variant, id), _): ((u32, u64), usize) =
            bincode::serde::decode_from_slice(head, config).ok()?;
        (variant == 2).then_some(id)
    }
}

/// Where a re-attaching link takes up the agent's numbered events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    pub instance: u64,
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Which of these files `dest` lacks (answered `Missing`): the start of
    /// putting the tree central fetched on the agent's host.
    Sync { dest: PathBuf, files: Vec<TreeFile> },
    /// One piece of a file `Sync` found missing, written beside `dest`;
    /// `first` starts a new upload (anything staged before is dropped).
    Stage {
        dest: PathBuf,
        first: bool,
        piece: UploadedFile,
    },
    /// Put the staged files of `files` into `dest`. A tree's manifest may
    /// need several frames: central sends it in chunks, `first` starting
    /// a sync and `last` ending it; after the last, `dest` holds what
    /// every chunk listed, exactly.
    Apply {
        dest: PathBuf,
        files: Vec<TreeFile>,
        first: bool,
        last: bool,
    },
    /// Check the ENTRYPOINT and system requirements, write secrets, give
    /// the tree to the plugin's user.
    Install(InstallSpec),
    /// Run the requirements command (in the plugin's Python environment
    /// when it has one); after `Install`.
    Requirements(InstallSpec),
    /// Start (and from now on supervise) a plugin process.
    Start(LaunchSpec),
    /// Stop a plugin: SIGTERM to its group, grace period, SIGKILL.
    Stop { plugin: String },
}

/// One file of a plugin's tree, as central has it: a regular file, or a
/// symlink that stays inside the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeFile {
    /// Relative, `/`-separated; never absolute, never `..`.
    pub path: String,
    /// Permission bits, never more than `0o777`: no setuid, setgid or
    /// sticky bit crosses.
    pub mode: u32,
    pub size: u64,
    pub sha256: [u8; 32],
    /// A symlink's target, which [`link_stays_inside`] the tree; `None`
    /// for a regular file. A link has no contents to send.
    pub link: Option<String>,
}

/// Whether a symlink at `path` (relative to a tree's root) whose target is
/// `target` leads to a place inside that tree: a relative target whose
/// `..` all come first and never climb above the root. (A `..` after a
/// name would climb out of wherever that name leads, which may be another
/// link: `d/..` leaves the tree when `d` points at its root.) Links are
/// the only way a tree could name what is outside it, so both ends check
/// every one.
pub fn link_stays_inside(path: &str, target: &str) -> bool {
    use std::path::{Component, Path};
    if target.is_empty() || Path::new(target).is_absolute() {
        return false;
    }
    let mut depth = Path::new(path)
        .parent()
        .map_or(0, |p| p.components().count());
    let mut named = false;
    for part in Path::new(target).components() {
        match part {
            Component::Normal(_) => named = true,
            Component::CurDir => {}
            Component::ParentDir if depth > 0 && !named => depth -= 1,
            _ => return false,
        }
    }
    true
}

/// A piece of one file of a plugin's tree streamed to a remote agent; files
/// are sent in pieces so a plugin of any size fits in frames.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadedFile {
    /// Relative, `/`-separated; never absolute, never `..`.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Where `contents` goes in the file; 0 creates (or truncates) it.
    pub offset: u64,
    #[serde(with = "serde_bytes")]
    pub contents: Vec<u8>,
}

impl fmt::Debug for UploadedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UploadedFile({}, {:o}, {} bytes at {})",
            self.path,
            self.mode,
            self.contents.len(),
            self.offset
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The files of a `Sync` that must be sent.
    Missing {
        paths: Vec<String>,
    },
    /// A `Stage` piece is written.
    Staged,
    /// `Apply` put the tree in place.
    Applied,
    Installed,
    Started {
        pid: u32,
    },
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallSpec {
    pub plugin: String,
    pub root: PathBuf,
    pub entrypoint: PathBuf,
    pub system_requirements: Vec<String>,
    /// A line for `sh -c`, run in `entrypoint`.
    pub requirements: Option<String>,
    pub secrets: Vec<SecretFile>,
    /// The user the plugin runs as on its host (`[aigis] users`): owns its
    /// tree and secrets, runs the requirements command. `None`: the agent's.
    pub user: Option<String>,
    /// The Python environment the requirements command runs in, when it
    /// is a Python one; `None`: the host's Python, as the command says.
    pub python_env: Option<PythonEnv>,
    /// How the requirements command is confined; `None`: it is not.
    pub confine: Option<Confine>,
}

/// What a plugin's processes may not reach on their host, and what of
/// that they may (Landlock; see `aigis_agent::confine`). Everything else
/// stays as the agent's user sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confine {
    /// AIGIS's own there: its home's entries (or this central's place on
    /// a LAN host) and central's config. The agent adds its user's
    /// `~/.ssh`.
    pub hidden: Vec<PathBuf>,
    /// Inside those, what the plugin may read and write: its tree, its
    /// Python environment.
    pub writable: Vec<PathBuf>,
    /// And what it may read: a copied core's plugins and environment.
    pub readable: Vec<PathBuf>,
}

/// A plugin's Python environment on its host (see `aigis_agent::venv`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PythonEnv {
    /// Where it lives, in this central's place on the host.
    pub dir: PathBuf,
    /// The interpreter to make it from; `None`: the one the requirements
    /// command names, where the host has it, else its `python3`.
    pub python: Option<PathBuf>,
    /// The requirements file: its contents are part of what the
    /// environment is kept by.
    pub requirements_file: Option<PathBuf>,
}

/// One secret file on its way to the plugin's host. Its `Debug` never shows
/// the contents, so a logged message cannot leak a secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretFile {
    /// The name under `secrets/<plugin>/`, e.g. `db/token.secret`.
    pub key: String,
    /// Where it goes; already validated to lie inside the plugin's root.
    pub dest: PathBuf,
    /// `dest` names a directory: the file is written as `dest/<file name of key>`.
    pub dest_is_dir: bool,
    #[serde(with = "serde_bytes")]
    pub contents: Vec<u8>,
}

impl fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretFile")
            .field("key", &self.key)
            .field("dest", &self.dest)
            .field("dest_is_dir", &self.dest_is_dir)
            .field(
                "contents",
                &format_args!("<{} bytes redacted>", self.contents.len()),
            )
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchSpec {
    pub plugin: String,
    pub program: Program,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    /// Restarts allowed after unexpected exits; `None` means never restart,
    /// [`RESTART_ALWAYS`] without a limit.
    pub restart: Option<u32>,
    /// Only an exit that is not a success is restarted (`"on-failure"`).
    pub restart_on_failure: bool,
    /// The user the process runs as (`[aigis] users`); `None`: the agent's.
    pub user: Option<String>,
    /// Its Python environment (`InstallSpec::python_env`'s `dir`): its
    /// `bin` first on `PATH`, and an internal plugin's interpreter.
    pub python_env: Option<PathBuf>,
    /// How its processes are confined; `None`: they are not.
    pub confine: Option<Confine>,
}

/// `LaunchSpec::restart` for a plugin restarted without a limit
/// (`RESTART = "always"` or `"on-failure"`): never used up, the delay
/// growing to [`MAX_ALWAYS_DELAY`].
pub const RESTART_ALWAYS: u32 = u32::MAX;

/// The longest wait between restarts of a plugin restarted without a
/// limit: it is never given up on.
pub const MAX_ALWAYS_DELAY: std::time::Duration = std::time::Duration::from_secs(300);

/// What the agent runs for a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Program {
    /// An external plugin's command line.
    Command(Vec<String>),
    /// An internal plugin: `python3` running the shim, which imports
    /// `launch` and calls its `launch(log)` (or `launch()`). With `proxy`,
    /// `aigis` is the AigisProxy and every call goes to central's live core;
    /// otherwise the shim loads `core_plugins` into a local `aigis` (the
    /// copied core).
    Python {
        launch: PythonEntry,
        core_plugins: Vec<CorePlugin>,
        proxy: bool,
        /// For an AigisProxy plugin on a LAN host: its calls may go straight
        /// to central, over an SSH channel central opens to a socket the
        /// agent makes for the plugin; central proves itself to the shim
        /// with this token (see `aigis_agent::direct`).
        direct: Option<CallToken>,
    },
}

/// What central sends first on a plugin's direct call channel, so the shim
/// knows the connection on its socket comes from central. Never shown.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallToken(pub String);

impl fmt::Debug for CallToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallToken(..)")
    }
}

/// Where an internal plugin's `launch` function is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PythonEntry {
    /// A dotted module name, imported with the plugin's `cwd` on `sys.path`.
    Module(String),
    /// A Python file.
    File(PathBuf),
}

/// A core plugin as the copied core needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorePlugin {
    pub name: String,
    pub entrypoint: PathBuf,
    pub core_file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputStream {
    Stdout,
    Stderr,
    /// Output of the requirements command.
    Install,
}

impl OutputStream {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
            OutputStream::Install => "install",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// Lines a plugin printed, in order; one message carries all the lines
    /// of one read, so a fast printer costs one frame per batch, not per line.
    Output {
        plugin: String,
        stream: OutputStream,
        lines: crate::Lines,
    },
    State {
        plugin: String,
        state: ProcessState,
    },
    /// A call from a plugin's shim to central, answered with `ToAgent::Answer`.
    Call {
        plugin: String,
        call: Call,
    },
}

/// What a plugin's shim asks central (see `python/shim.py`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Call {
    /// An AigisProxy call frame (`b"C"` + id + pickle), passed through
    /// unread: central's `proxy.serve` reads it.
    Proxy(#[serde(with = "serde_bytes")] Vec<u8>),
    /// `aigis.AIGISReload(target)`.
    Reload { id: u64, target: String },
}

/// Central's answer to a [`Call`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// An AigisProxy reply frame (`b"R"` + id + ...), for the shim as is.
    Proxy(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The reload was scheduled, or why not.
    Reload { id: u64, result: Result<(), String> },
}

/// What the agent's supervisor knows about a plugin process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcessState {
    Running {
        pid: u32,
        restarts_left: Option<u32>,
    },
    /// Exited unexpectedly; will start again after `delay_ms`.
    Restarting {
        exit: String,
        delay_ms: u64,
        restarts_left: u32,
    },
    /// Stopped on request.
    Stopped,
    /// Exited and will not be restarted.
    Failed { exit: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_never_shows_contents() {
        let s = SecretFile {
            key: "db.secret".into(),
            dest: "/srv/x".into(),
            dest_is_dir: true,
            contents: b"hunter2".to_vec(),
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("7 bytes redacted"), "{shown}");
        let req = format!(
            "{:?}",
            Request::Install(InstallSpec {
                plugin: "p".into(),
                root: "/r".into(),
                entrypoint: "/r".into(),
                system_requirements: vec![],
                requirements: None,
                secrets: vec![s],
                user: None,
                python_env: None,
                confine: None,
            })
        );
        assert!(!req.contains("hunter2"), "{req}");
    }

    #[test]
    fn a_link_stays_inside_only_as_written_within_the_tree() {
        assert!(link_stays_inside("a", "b"));
        assert!(link_stays_inside("lib/x", "../src/x.py"));
        assert!(link_stays_inside("lib/deep/x", "../../README"));
        assert!(link_stays_inside("a", "./b"));
        assert!(link_stays_inside("d", "."));
        assert!(!link_stays_inside("a", "../b"));
        assert!(!link_stays_inside("lib/x", "../../etc/passwd"));
        assert!(!link_stays_inside("k", "/root/.ssh/id_ed25519"));
        assert!(!link_stays_inside("x", "d/.."));
        assert!(!link_stays_inside("lib/x", "y/../.."));
        assert!(!link_stays_inside("x", ""));
    }

    #[test]
    fn a_requests_id_is_read_from_the_head_of_its_frame() {
        let frame = crate::encode_frame(&ToAgent::Request {
            id: 123_456_789,
            request: Box::new(Request::Stop { plugin: "p".into() }),
        })
        .unwrap();
        assert_eq!(ToAgent::request_id(&frame[4..]), Some(123_456_789));
        let ack = crate::encode_frame(&ToAgent::Ack { seq: 7 }).unwrap();
        assert_eq!(ToAgent::request_id(&ack[4..]), None);
        assert_eq!(ToAgent::request_id(&[]), None);
    }
}
