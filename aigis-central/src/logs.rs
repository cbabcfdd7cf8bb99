//! The central log: every line a plugin prints and everything central says
//! about a plugin goes to the console (through `tracing`, with the plugin's
//! name on the line) and to `<home>/log/<plugin>.log`.
//!
//! One task owns the files; producers send [`Record`]s over a bounded channel
//! and wait when it is full, so a plugin printing fast slows down its own
//! relay instead of growing memory, and no line is dropped.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::SystemTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const QUEUE: usize = 4096;

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
    pub text: String,
}

/// A cheap, cloneable handle for sending records.
#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::Sender<Record>,
}

impl LogSink {
    /// Starts the writer task for log files under `dir`.
    pub fn start(dir: PathBuf) -> (LogSink, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::task::spawn_blocking(move || write_loop(dir, rx));
        (LogSink { tx }, task)
    }

    pub async fn send(&self, record: Record) {
        // The writer only ends after every sink is dropped.
        let _ = self.tx.send(record).await;
    }

    pub async fn output(&self, plugin: &str, source: &'static str, text: String) {
        self.send(Record {
            plugin: plugin.to_string(),
            level: Level::Info,
            source,
            text,
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
            text,
        })
        .await
    }
}

fn write_loop(dir: PathBuf, mut rx: mpsc::Receiver<Record>) {
    let mut files: HashMap<String, Option<BufWriter<File>>> = HashMap::new();
    let mut dirty: Vec<String> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(record) = next {
            emit(&record);
            let file = files.entry(record.plugin.clone()).or_insert_with(|| {
                let path = dir.join(format!("{}.log", record.plugin));
                match OpenOptions::new().create(true).append(true).open(&path) {
                    Ok(f) => Some(BufWriter::new(f)),
                    Err(e) => {
                        tracing::error!(plugin = %record.plugin, "cannot open {}: {e}", path.display());
                        None
                    }
                }
            });
            if let Some(f) = file {
                let _ = writeln!(
                    f,
                    "{} {:<7} {}",
                    rfc3339(SystemTime::now()),
                    record.source,
                    record.text
                );
                if !dirty.contains(&record.plugin) {
                    dirty.push(record.plugin.clone());
                }
            }
            next = rx.try_recv().ok();
        }
        // The queue is empty: make what we have visible to readers of the files.
        for name in dirty.drain(..) {
            if let Some(Some(f)) = files.get_mut(&name) {
                let _ = f.flush();
            }
        }
    }
}

fn emit(r: &Record) {
    match (r.level, r.source) {
        (Level::Info, "aigis") => tracing::info!(plugin = %r.plugin, "{}", r.text),
        (Level::Info, source) => tracing::info!(plugin = %r.plugin, source = %source, "{}", r.text),
        (Level::Warn, _) => tracing::warn!(plugin = %r.plugin, "{}", r.text),
        (Level::Error, _) => tracing::error!(plugin = %r.plugin, "{}", r.text),
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

/// Console logging for the daemon: human-readable, on stderr.
pub fn init_console() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("AIGIS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        let (sink, task) = LogSink::start(dir.path().to_path_buf());
        for i in 0..1000 {
            sink.output("web", "stdout", format!("line {i}")).await;
        }
        sink.warn("web", "careful").await;
        drop(sink);
        task.await.unwrap();
        let text = std::fs::read_to_string(dir.path().join("web.log")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1001);
        assert!(lines[0].ends_with("stdout  line 0"), "{}", lines[0]);
        assert!(lines[999].ends_with("line 999"));
        assert!(lines[1000].ends_with("aigis   careful"));
    }
}
