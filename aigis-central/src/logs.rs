//! The central log: every line a plugin prints and everything central says
//! about a plugin goes to the console (through `tracing`, with the plugin's
//! name on the line) and to `<home>/log/<plugin>.log` (mode 0600, and so
//! are the rotated files; the directory is 0700, see `Home::prepare`).
//!
//! One task owns the files; producers send [`Record`]s over a bounded channel
//! and wait when it is full, so a plugin printing fast slows down its own
//! relay instead of growing memory, and no line is dropped.

use proto::Lines;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::SystemTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const QUEUE: usize = 4096;

/// When a plugin's log file is rotated: past `max_bytes` it becomes
/// `<plugin>.log.1` (older ones shift up), and at most `keep` are kept.
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    pub max_bytes: u64,
    pub keep: u32,
}

impl Default for Rotation {
    fn default() -> Rotation {
        Rotation {
            max_bytes: 10 * 1024 * 1024,
            keep: 5,
        }
    }
}

/// How much of a batch of lines the log writer gathers before it writes.
const GATHER: usize = 64 * 1024;

/// An open log file and how much is in it.
struct LogFile {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
}

impl LogFile {
    /// Opens (or creates) a log file, mode 0600: it holds what the plugin
    /// printed. A file an older AIGIS made 0644 is made 0600 too.
    fn open(path: PathBuf) -> std::io::Result<LogFile> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        let meta = file.metadata()?;
        if meta.permissions().mode() & 0o777 != 0o600 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        let size = meta.len();
        Ok(LogFile {
            path,
            out: BufWriter::new(file),
            size,
        })
    }

    /// Writes `lines`, each behind `prefix`, gathered in `scratch` so that a
    /// batch of lines costs a write to the file per [`GATHER`] bytes, not
    /// one per buffer's worth (a log writer's buffer is small: there is one
    /// per plugin). The file is rotated before the line that would take it
    /// past its size, what was gathered for it written first.
    fn write_lines<'a>(
        &mut self,
        prefix: &str,
        lines: impl Iterator<Item = &'a str>,
        rotation: Rotation,
        scratch: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        scratch.clear();
        for line in lines {
            let len = (prefix.len() + line.len() + 1) as u64;
            if self.size > 0 && self.size + len > rotation.max_bytes {
                self.out.write_all(scratch)?;
                scratch.clear();
                self.rotate(rotation)?;
            }
            scratch.extend_from_slice(prefix.as_bytes());
            scratch.extend_from_slice(line.as_bytes());
            scratch.push(b'\n');
            self.size += len;
            if scratch.len() >= GATHER {
                self.out.write_all(scratch)?;
                scratch.clear();
            }
        }
        self.out.write_all(scratch)
    }

    fn rotate(&mut self, rotation: Rotation) -> std::io::Result<()> {
        self.out.flush()?;
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        let _ = std::fs::remove_file(numbered(rotation.keep));
        for n in (1..rotation.keep).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        if rotation.keep > 0 {
            std::fs::rename(&self.path, numbered(1))?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        *self = LogFile::open(self.path.clone())?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

#[derive(Debug)]
pub struct Record {
    pub plugin: String,
    pub level: Level,
    /// `stdout`, `stderr`, `install` for plugin output; `aigis` for central's own words.
    pub source: &'static str,
    /// One or more lines (a batch of output, or a multi-line message such
    /// as a traceback): each becomes its own log line, tagged.
    pub lines: Lines,
    /// The link budget these lines count against, returned once they are
    /// written: output waiting for the disk stays bounded in bytes.
    pub budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

enum Msg {
    Record(Record),
    /// Answered once everything queued before it is written and flushed.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// A cheap, cloneable handle for sending records.
#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::Sender<Msg>,
}

impl LogSink {
    /// Starts the writer task for log files under `dir`.
    pub fn start(
        dir: PathBuf,
        rotation: Rotation,
        limits: ConsoleLimits,
    ) -> (LogSink, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::task::spawn_blocking(move || write_loop(dir, rotation, limits, rx));
        (LogSink { tx }, task)
    }

    pub async fn send(&self, record: Record) {
        // The writer only ends after every sink is dropped.
        let _ = self.tx.send(Msg::Record(record)).await;
    }

    /// For threads outside the async runtime (the Python thread).
    pub fn blocking_send(&self, record: Record) {
        let _ = self.tx.blocking_send(Msg::Record(record));
    }

    /// Waits until every record sent so far is in its file.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// A batch of a plugin's output; `budget` is released once it is written.
    pub async fn output(
        &self,
        plugin: &str,
        source: &'static str,
        lines: Lines,
        budget: Option<tokio::sync::OwnedSemaphorePermit>,
    ) {
        self.send(Record {
            plugin: plugin.to_string(),
            level: Level::Info,
            source,
            lines,
            budget,
        })
        .await
    }

    pub async fn info(&self, plugin: &str, text: impl Into<String>) {
        self.say(plugin, Level::Info, text.into()).await
    }

    pub async fn warn(&self, plugin: &str, text: impl Into<String>) {
        self.say(plugin, Level::Warn, text.into()).await
    }

    pub async fn error(&self, plugin: &str, text: impl Into<String>) {
        self.say(plugin, Level::Error, text.into()).await
    }

    async fn say(&self, plugin: &str, level: Level, text: String) {
        self.send(Record {
            plugin: plugin.to_string(),
            level,
            source: "aigis",
            lines: split_lines(&text),
            budget: None,
        })
        .await
    }
}

/// What reaches the console of a plugin's output: its log file always has
/// everything, the console at most `lines_per_s` lines a second of each
/// plugin (the rest is counted and said), and nothing of a `quiet` one.
#[derive(Debug, Clone)]
pub struct ConsoleLimits {
    pub lines_per_s: u32,
    pub quiet: Vec<String>,
}

impl Default for ConsoleLimits {
    fn default() -> Self {
        ConsoleLimits {
            lines_per_s: 500,
            quiet: Vec::new(),
        }
    }
}

/// One plugin's share of the console in the current second.
#[derive(Default)]
struct Window {
    start: Option<std::time::Instant>,
    shown: u32,
    held_back: u64,
}

/// The share of the console each plugin's output gets.
struct ConsoleShare {
    limits: ConsoleLimits,
    windows: HashMap<String, Window>,
}

impl ConsoleShare {
    /// Prints a record's lines on the console, within the plugin's share.
    fn show(&mut self, r: &Record) {
        // AIGIS's own words about a plugin always show.
        if r.source != "aigis" && self.limits.quiet.contains(&r.plugin) {
            return;
        }
        let w = self.windows.entry(r.plugin.clone()).or_default();
        let now = std::time::Instant::now();
        if w.start
            .is_none_or(|s| now.duration_since(s) >= std::time::Duration::from_secs(1))
        {
            if w.held_back > 0 {
                tracing::warn!(
                    plugin = %r.plugin,
                    "{} line(s) not shown on the console (more than {} a second); its log file has them all",
                    w.held_back,
                    self.limits.lines_per_s
                );
            }
            *w = Window {
                start: Some(now),
                ..Window::default()
            };
        }
        let mut level = r.level;
        for (n, line) in r.lines.iter().enumerate() {
            if r.source != "aigis" && w.shown >= self.limits.lines_per_s {
                if w.held_back == 0 {
                    tracing::warn!(
                        plugin = %r.plugin,
                        "more than {} lines a second: the rest of this second's are not shown on the console (its log file has them all)",
                        self.limits.lines_per_s
                    );
                }
                // Counted, not looked at: a flood's lines are many.
                w.held_back += (r.lines.count() - n) as u64;
                break;
            }
            // A Python record from an internal plugin keeps its level; the
            // lines after it (a traceback) go with it.
            let python = (r.source == "stderr").then(|| python_level(line)).flatten();
            let (lvl, text) = python.unwrap_or((level, line));
            level = lvl;
            w.shown += 1;
            emit(&r.plugin, lvl, r.source, text);
        }
    }
}

/// `ERROR launch() raised` as printed by a plugin's Python logging (the
/// shim's format is `%(levelname)s %(message)s`): its level and the rest.
fn python_level(line: &str) -> Option<(Level, &str)> {
    let (word, rest) = line.split_once(' ')?;
    let level = match word {
        "DEBUG" | "INFO" => Level::Info,
        "WARNING" => Level::Warn,
        "ERROR" | "CRITICAL" => Level::Error,
        _ => return None,
    };
    Some((level, rest))
}

fn write_loop(
    dir: PathBuf,
    rotation: Rotation,
    limits: ConsoleLimits,
    mut rx: mpsc::Receiver<Msg>,
) {
    let mut console = ConsoleShare {
        limits,
        windows: HashMap::new(),
    };
    let mut files: HashMap<String, Option<LogFile>> = HashMap::new();
    let mut dirty: Vec<String> = Vec::new();
    let mut scratch = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(msg) = next {
            let record = match msg {
                Msg::Record(r) => r,
                Msg::Flush(done) => {
                    flush(&mut files, &mut dirty);
                    let _ = done.send(());
                    next = rx.try_recv().ok();
                    continue;
                }
            };
            // A traceback is many lines: each carries the plugin's name.
            console.show(&record);
            let file = files.entry(record.plugin.clone()).or_insert_with(|| {
                let path = dir.join(format!("{}.log", record.plugin));
                match LogFile::open(path.clone()) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        tracing::error!(plugin = %record.plugin, "cannot open {}: {e}", path.display());
                        None
                    }
                }
            });
            if let Some(f) = file {
                // One prefix per batch, not one formatted String per line.
                let prefix = format!("{} {:<7} ", rfc3339(SystemTime::now()), record.source);
                if let Err(e) = f.write_lines(&prefix, record.lines.iter(), rotation, &mut scratch)
                {
                    tracing::error!(plugin = %record.plugin, "cannot write {}: {e}", f.path.display());
                }
                if !dirty.contains(&record.plugin) {
                    dirty.push(record.plugin.clone());
                }
            }
            // Written: the link that carried these lines may send more.
            drop(record.budget);
            next = rx.try_recv().ok();
        }
        // The queue is empty: make what we have visible to readers of the files.
        flush(&mut files, &mut dirty);
    }
}

fn flush(files: &mut HashMap<String, Option<LogFile>>, dirty: &mut Vec<String>) {
    for name in dirty.drain(..) {
        if let Some(Some(f)) = files.get_mut(&name) {
            let _ = f.out.flush();
        }
    }
}

fn emit(plugin: &str, level: Level, source: &str, line: &str) {
    match (level, source) {
        (Level::Info, "aigis") => tracing::info!(plugin = %plugin, "{line}"),
        (Level::Info, source) => tracing::info!(plugin = %plugin, source, "{line}"),
        (Level::Warn, "aigis") => tracing::warn!(plugin = %plugin, "{line}"),
        (Level::Warn, source) => tracing::warn!(plugin = %plugin, source, "{line}"),
        (Level::Error, "aigis") => tracing::error!(plugin = %plugin, "{line}"),
        (Level::Error, source) => tracing::error!(plugin = %plugin, source, "{line}"),
    }
}

/// A message's lines (at least one, so an empty message still shows).
pub fn split_lines(text: &str) -> Lines {
    let lines: Lines = text.lines().collect();
    if lines.is_empty() {
        Lines::one("")
    } else {
        lines
    }
}

/// `2026-11-24T12:53:08.123Z`, UTC, without pulling in a date crate.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Console logging for the daemon, on stderr, one line per record:
/// `2026-11-24T12:53:08.123Z  INFO [plugin] message` (the plugin's name in
/// brackets whenever the record is about a plugin; `stderr`/`install`
/// output is marked after it).
pub fn init_console(format: Format) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("AIGIS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let color = format == Format::Text
        && std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Console)
        // Its report of a failed write is an `eprintln!`, which panics when
        // stderr is a closed pipe: the console's failures are ours to drop.
        .log_internal_errors(false)
        .event_format(ConsoleFormat { color, format })
        .try_init();
}

/// Set once stderr has reported a closed pipe: it never reopens.
static CONSOLE_GONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes `bytes` to stderr, dropping them if that fails. The console is a
/// convenience: `aigis run 2>&1 | head` must not panic a thread, lose a
/// plugin's file log, or hang the shutdown when the reader leaves. After a
/// broken pipe, nothing more is tried.
pub fn console_write(bytes: &[u8]) {
    use std::sync::atomic::Ordering;
    if CONSOLE_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut err = std::io::stderr().lock();
    if let Err(e) = err.write_all(bytes).and_then(|()| err.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            CONSOLE_GONE.store(true, Ordering::Relaxed);
        }
    }
}

/// The console for `tracing`: [`console_write`] per record.
struct Console;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Console {
    type Writer = ConsoleWriter;
    fn make_writer(&'a self) -> ConsoleWriter {
        ConsoleWriter
    }
}

/// Never fails: see [`console_write`].
struct ConsoleWriter;

impl Write for ConsoleWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        console_write(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `--log-format`: lines for people, or one JSON object per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

struct ConsoleFormat {
    color: bool,
    format: Format,
}

#[derive(Default)]
struct ConsoleFields {
    plugin: Option<String>,
    source: Option<String>,
    message: String,
    rest: String,
}

impl tracing::field::Visit for ConsoleFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "plugin" => self.plugin = Some(value.to_string()),
            "source" => self.source = Some(value.to_string()),
            "message" => self.message = value.to_string(),
            other => self.rest.push_str(&format!(" {other}={value}")),
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"))
    }
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for ConsoleFormat
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut w: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut f = ConsoleFields::default();
        event.record(&mut f);
        let level = *event.metadata().level();
        if self.format == Format::Json {
            let mut obj = serde_json::json!({
                "ts": rfc3339(SystemTime::now()),
                "level": level.as_str(),
                "message": f.message,
            });
            if let Some(p) = f.plugin {
                obj["plugin"] = p.into();
            }
            if let Some(s) = f.source {
                obj["source"] = s.into();
            }
            if !f.rest.is_empty() {
                obj["fields"] = f.rest.trim().into();
            }
            return writeln!(w, "{obj}");
        }
        let (on, off) = match (self.color, level) {
            (false, _) => ("", ""),
            (true, tracing::Level::ERROR) => ("\x1b[31m", "\x1b[0m"),
            (true, tracing::Level::WARN) => ("\x1b[33m", "\x1b[0m"),
            (true, _) => ("\x1b[2m", "\x1b[0m"),
        };
        write!(w, "{} {on}{level:>5}{off} ", rfc3339(SystemTime::now()))?;
        if let Some(p) = &f.plugin {
            write!(w, "[{p}] ")?;
        }
        match f.source.as_deref() {
            Some("stderr") => write!(w, "(stderr) ")?,
            Some("install") => write!(w, "(install) ")?,
            _ => {}
        }
        writeln!(w, "{}{}", f.message, f.rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_flood_past_its_share_is_counted_whole_not_shown() {
        let mut console = ConsoleShare {
            limits: ConsoleLimits {
                lines_per_s: 10,
                quiet: Vec::new(),
            },
            windows: HashMap::new(),
        };
        let record = |n: usize| Record {
            plugin: "flood".into(),
            level: Level::Info,
            source: "stdout",
            lines: (0..n)
                .map(|i| format!("line {i}"))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect(),
            budget: None,
        };
        console.show(&record(25));
        console.show(&record(5));
        let w = &console.windows["flood"];
        assert_eq!((w.shown, w.held_back), (10, 20));
    }

    #[tokio::test]
    async fn files_rotate_by_size_and_keep_a_bounded_number() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_bytes: 2000,
            keep: 2,
        };
        let (sink, task) =
            LogSink::start(dir.path().to_path_buf(), rotation, ConsoleLimits::default());
        // Ten lines a record: files rotate in the middle of one too.
        for first in (0..200).step_by(10) {
            let lines: Vec<String> = (first..first + 10)
                .map(|i| format!("line {i:04} {}", "x".repeat(20)))
                .collect();
            let lines: Lines = lines.iter().map(String::as_str).collect();
            sink.output("web", "stdout", lines, None).await;
        }
        drop(sink);
        task.await.unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        assert!(read("web.log").len() <= 2000);
        // A rotated file was full: it took every line it had room for.
        let line = read("web.log").lines().next().unwrap().len() + 1;
        for old in ["web.log.1", "web.log.2"] {
            let len = read(old).len();
            assert!(len <= 2000 && len > 2000 - line, "{old}: {len} bytes");
        }
        assert!(
            !dir.path().join("web.log.3").exists(),
            "keep = 2 was not honoured"
        );
        assert!(read("web.log").contains("line 0199"));
        // Nothing lost between the kept files: their lines are consecutive.
        let all = read("web.log.2") + &read("web.log.1") + &read("web.log");
        let nums: Vec<u32> = all
            .lines()
            .map(|l| l.split("line ").nth(1).unwrap()[..4].parse().unwrap())
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
        assert_eq!(*nums.last().unwrap(), 199);
    }

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_956_788_123);
        assert_eq!(rfc3339(t), "2026-11-29T12:53:08.123Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[tokio::test]
    async fn records_reach_the_plugin_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (sink, task) = LogSink::start(
            dir.path().to_path_buf(),
            Rotation::default(),
            ConsoleLimits::default(),
        );
        for i in 0..1000 {
            sink.output("web", "stdout", Lines::one(&format!("line {i}")), None)
                .await;
        }
        sink.output(
            "web",
            "stdout",
            ["", "after an empty line"].into_iter().collect(),
            None,
        )
        .await;
        sink.warn("web", "careful").await;
        drop(sink);
        task.await.unwrap();
        let text = std::fs::read_to_string(dir.path().join("web.log")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1003);
        assert!(lines[0].ends_with("stdout  line 0"), "{}", lines[0]);
        assert!(lines[999].ends_with("line 999"));
        assert!(
            lines[1000].ends_with("stdout  "),
            "an empty line is kept: {:?}",
            lines[1000]
        );
        assert!(lines[1002].ends_with("aigis   careful"));
    }
}
