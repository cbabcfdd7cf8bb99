//! The operator's commands that talk to a running daemon over the control
//! socket: `status`, `stop`, `start`, `reload`; and `logs`, which reads the
//! plugin's log files itself, so it works with the daemon stopped too.

use crate::control::{self, PluginStatus, Request};
use crate::home::Home;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The home a client command addresses: `--home`, `$AIGIS_HOME`, the
/// config's `[aigis] home` (with `-c`), or the current directory, the same
/// order `aigis run` uses.
pub fn home(flag: Option<&Path>, config: Option<&Path>) -> anyhow::Result<Home> {
    let from_config = match config {
        Some(path) => {
            config::load_central(path)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .aigis
                .home
        }
        None => None,
    };
    Home::resolve(flag, from_config.as_deref())
}

async fn ask(home: &Home, request: Request) -> anyhow::Result<control::Response> {
    let response = control::request(home, &request).await?;
    if !response.ok {
        anyhow::bail!(
            "{}",
            response
                .error
                .unwrap_or_else(|| "the daemon refused".into())
        );
    }
    Ok(response)
}

/// `aigis status [NAME] [--json]`: every plugin as a table (or a JSON
/// array), or one plugin whole (or one JSON object).
pub async fn status(home: &Home, plugin: Option<String>, json: bool) -> anyhow::Result<()> {
    let one = plugin.is_some();
    let response = ask(home, Request::Status { plugin }).await?;
    let mut out = std::io::stdout().lock();
    match (one, json, response.plugins.first()) {
        (true, true, Some(row)) => {
            serde_json::to_writer_pretty(&mut out, row).map_err(std::io::Error::from)?
        }
        (true, false, Some(row)) => write!(out, "{}", details(row))?,
        (true, _, None) => anyhow::bail!("the daemon sent no status for that plugin"),
        (false, true, _) => serde_json::to_writer_pretty(&mut out, &response.plugins)
            .map_err(std::io::Error::from)?,
        (false, false, _) => write!(out, "{}", table(&response.plugins))?,
    }
    if json {
        writeln!(out)?;
    }
    Ok(())
}

/// One plugin, one fact a line; a value of several lines (the full failure
/// reason, the skills) goes on under its label.
fn details(r: &PluginStatus) -> String {
    let dash = || "-".to_string();
    let mut facts: Vec<(&str, String)> = vec![
        ("name", r.name.clone()),
        ("type", r.kind.as_str().to_string()),
        ("host", r.host.clone()),
        ("source", r.source.clone()),
    ];
    if let Some(commit) = &r.commit {
        facts.push(("commit", commit.clone()));
    }
    facts.extend([
        (
            "state",
            format!(
                "{} for {} (since {})",
                r.state.headline(r.in_state_s),
                duration(r.in_state_s),
                r.since
            ),
        ),
        ("pid", r.pid.map_or_else(dash, |p| p.to_string())),
        (
            "restarts left",
            r.restarts_left.map_or_else(dash, restarts_text),
        ),
    ]);
    if let Some(reason) = r.state.reason() {
        facts.push(("reason", reason.trim_end().to_string()));
    }
    if let Some(since) = &r.unreachable_since {
        let said = format!("since {since}: its host's link is down (state: the last known)");
        facts.push(("unreachable", said));
    }
    facts.push(("log", r.log_file.display().to_string()));
    if !r.skills.is_empty() {
        facts.push(("skills", r.skills.join("\n")));
    }
    let width = facts.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    let mut out = String::new();
    for (label, value) in facts {
        let mut lines = value.lines();
        let first = lines.next().unwrap_or_default();
        out.push_str(format!("{:<width$}{first}", format!("{label}:")).trim_end());
        out.push('\n');
        for line in lines {
            out.push_str(format!("{:width$}{line}", "").trim_end());
            out.push('\n');
        }
    }
    out
}

/// `aigis skills [--json]`: what the live core exposes, by plugin.
pub async fn skills(home: &Home, json: bool) -> anyhow::Result<()> {
    let response = ask(home, Request::Skills).await?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &response.skills).map_err(std::io::Error::from)?;
        writeln!(out)?;
        return Ok(());
    }
    if response.skills.is_empty() {
        writeln!(out, "no core plugin is loaded: the core exposes nothing")?;
    }
    let width = response
        .skills
        .iter()
        .map(|p| p.plugin.chars().count())
        .max()
        .unwrap_or(0);
    for p in &response.skills {
        if p.skills.is_empty() {
            writeln!(out, "{:<width$}  (no skills)", p.plugin)?;
        }
        for skill in &p.skills {
            writeln!(out, "{:<width$}  {skill}", p.plugin)?;
        }
    }
    Ok(())
}

fn table(rows: &[PluginStatus]) -> String {
    let header = [
        "NAME",
        "TYPE",
        "HOST",
        "STATE",
        "PID",
        "RESTARTS LEFT",
        "IN STATE",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            // A running plugin's reason is its pid, which has its column.
            let word = match &r.progress {
                Some(p) => format!("{} {p}", r.state.word()),
                None => r.state.headline(r.in_state_s),
            };
            let state = match r.state.reason() {
                Some(reason) => format!("{word} ({})", first_line(reason, 60)),
                None => word,
            };
            // Its host's link is down: what central last knew, beside it.
            let state = match &r.unreachable_since {
                Some(since) => format!("unreachable since {since} (last: {state})"),
                None => state,
            };
            [
                r.name.clone(),
                r.kind.as_str().to_string(),
                r.host.clone(),
                state,
                r.pid.map_or("-".into(), |p| p.to_string()),
                r.restarts_left.map_or("-".into(), restarts_text),
                duration(r.in_state_s),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cols: Vec<&str>| {
        let parts: Vec<String> = cols
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in &cells {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn first_line(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or_default();
    if line.chars().count() > max {
        format!("{}…", line.chars().take(max).collect::<String>())
    } else {
        line.to_string()
    }
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

pub async fn act(home: &Home, request: Request) -> anyhow::Result<()> {
    let response = ask(home, request).await?;
    if let Some(m) = response.message {
        writeln!(std::io::stdout(), "{m}")?;
    }
    Ok(())
}

/// Prints the last `lines` lines of the plugin's log; with `follow`, keeps
/// printing what is appended, across rotations, until interrupted. Reads
/// `<home>/log/<plugin>.log` directly: no daemon needs to be running.
pub async fn logs(home: &Home, plugin: &str, lines: usize, follow: bool) -> anyhow::Result<()> {
    if plugin.is_empty()
        || !plugin
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        anyhow::bail!("`{plugin}` is not a plugin name (letters, digits, `_` and `-` only)");
    }
    let path = home.log().join(format!("{plugin}.log"));
    let file = open_log(&path).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "no log file for plugin `{plugin}`: {} does not exist (is the name right, and is this the daemon's home? see --home, -c)",
                path.display()
            )
        } else {
            anyhow::anyhow!("cannot read {}: {e}", path.display())
        }
    })?;
    let (tail, file) = last_lines(file, lines)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&tail)?;
    out.flush()?;
    drop(out);
    if !follow {
        return Ok(());
    }
    let mut follower = Follower { path, file };
    loop {
        let chunk = follower.read_new()?;
        if chunk.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&chunk)?;
        out.flush()?;
    }
}

/// Opens a plugin's log file. While it is rotated there is a moment with no
/// `<plugin>.log` but a fresh `<plugin>.log.1`: wait that moment out.
async fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    for _ in 0..20 {
        match std::fs::File::open(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && numbered(path, 1).exists() => {
                tokio::time::sleep(Duration::from_millis(25)).await
            }
            other => return other,
        }
    }
    std::fs::File::open(path)
}

/// `<plugin>.log.N`, the N-th newest rotated file (0: the live file).
fn numbered(path: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Which file a descriptor is, across renames.
fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// How much `logs -f` reads before it prints: a follower far behind (many
/// rotated files to catch up on) stays small in memory.
const FOLLOW_CHUNK: usize = 1 << 20;

/// Follows a log that the daemon rotates: when `<plugin>.log` is renamed to
/// `<plugin>.log.1`, the file being read stays open and is read to its end
/// (the daemon flushes before it renames, and never writes to it again),
/// then reading goes on with the file that came after it, from its start.
struct Follower {
    path: PathBuf,
    file: std::fs::File,
}

impl Follower {
    /// What was appended since the last call, across any rotations; at
    /// most about [`FOLLOW_CHUNK`] bytes (call again at once for the rest).
    fn read_new(&mut self) -> std::io::Result<Vec<u8>> {
        let mut chunk = Vec::new();
        // Several rotations may have happened since the last look: walk
        // the files from the one being read to the live one (a bounded
        // walk: the daemon keeps `log_keep` files).
        for _ in 0..10_000 {
            // Which file is live, asked *before* reading to the end: if it
            // is another file, ours was complete before we read it.
            let live = std::fs::metadata(&self.path).ok().map(|m| identity(&m));
            let want = FOLLOW_CHUNK.saturating_sub(chunk.len());
            let got = (&mut self.file).take(want as u64).read_to_end(&mut chunk)?;
            if got == want {
                break; // maybe more in this file: the next call reads it
            }
            let ours = identity(&self.file.metadata()?);
            if live == Some(ours) {
                break;
            }
            match self.successor(ours)? {
                Some(next) => self.file = next,
                None => break, // the new live file is not there yet
            }
        }
        Ok(chunk)
    }

    /// The file written after `ours`. Rotation shifts `.log.N` to `.log.N+1`
    /// (highest first) and `.log` to `.log.1`, so, looked at from `.log`
    /// upwards, a higher number is always an older file, even when a
    /// rotation runs during the look (a file may be seen twice, never out
    /// of order). If `ours` was deleted (past `log_keep`), the oldest file
    /// left comes next.
    fn successor(&self, ours: (u64, u64)) -> std::io::Result<Option<std::fs::File>> {
        // (identity, file), newest first.
        let mut seen: Vec<((u64, u64), std::fs::File)> = Vec::new();
        let mut missing = 0;
        for n in 0..10_000 {
            match std::fs::File::open(numbered(&self.path, n)) {
                Ok(f) => {
                    missing = 0;
                    let id = identity(&f.metadata()?);
                    if !seen.iter().any(|(s, _)| *s == id) {
                        seen.push((id, f));
                    }
                }
                // One number can be missing while a rotation shifts files.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    missing += 1;
                    if missing == 2 {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let next = match seen.iter().position(|(id, _)| *id == ours) {
            Some(0) => return Ok(None),
            Some(i) => i - 1,
            None if seen.is_empty() => return Ok(None),
            None => seen.len() - 1,
        };
        Ok(Some(seen.swap_remove(next).1))
    }
}

/// The last `n` lines of `f`, and `f` positioned at its end. Reads the file once.
fn last_lines(f: std::fs::File, n: usize) -> std::io::Result<(Vec<u8>, std::fs::File)> {
    let mut ring: std::collections::VecDeque<Vec<u8>> =
        std::collections::VecDeque::with_capacity(n.min(4096));
    let mut reader = std::io::BufReader::new(f);
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break; // at the end: the reader's buffer is empty
        }
        if n > 0 {
            if ring.len() == n {
                ring.pop_front();
            }
            ring.push_back(line);
        }
    }
    Ok((ring.into_iter().flatten().collect(), reader.into_inner()))
}

/// Restarts left, as a person reads them: a number, or `unlimited`
/// (`RESTART = "always"` or `"on-failure"`).
fn restarts_text(n: u32) -> String {
    if n == proto::RESTART_ALWAYS {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_keeps_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        std::fs::write(&p, "a\nb\nc\nd\n").unwrap();
        use std::io::Seek;
        let (tail, mut f) = last_lines(std::fs::File::open(&p).unwrap(), 2).unwrap();
        assert_eq!(tail, b"c\nd\n");
        assert_eq!(f.stream_position().unwrap(), 8);
        let (tail, _) = last_lines(std::fs::File::open(&p).unwrap(), 10).unwrap();
        assert_eq!(tail, b"a\nb\nc\nd\n");
    }

    #[test]
    fn follower_reads_every_file_a_rotation_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let append = |p: &Path, text: &str| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap();
            f.write_all(text.as_bytes()).unwrap();
        };
        // As `logs.rs` rotates: shift .N up, the live file to .1, a new one.
        let rotate = || {
            for n in (1..3).rev() {
                let _ = std::fs::rename(numbered(&path, n), numbered(&path, n + 1));
            }
            std::fs::rename(&path, numbered(&path, 1)).unwrap();
        };
        append(&path, "1\n");
        let mut follower = Follower {
            path: path.clone(),
            file: std::fs::File::open(&path).unwrap(),
        };
        assert_eq!(follower.read_new().unwrap(), b"1\n");
        append(&path, "2\n");
        rotate();
        append(&path, "3\n");
        rotate();
        append(&path, "4\n");
        rotate();
        assert_eq!(follower.read_new().unwrap(), b"2\n3\n4\n");
        // The live file is missing for a moment: nothing yet, nothing lost.
        append(&path, "5\n");
        assert_eq!(follower.read_new().unwrap(), b"5\n");
        assert_eq!(follower.read_new().unwrap(), b"");
    }

    #[test]
    fn table_aligns_columns() {
        let rows = vec![failed_web()];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAME  TYPE      HOST   STATE"), "{t}");
        assert!(lines[1].contains("failed (exited with status 3)"), "{t}");
        assert!(lines[1].ends_with("1h2m"), "{t}");
    }

    fn failed_web() -> PluginStatus {
        PluginStatus {
            name: "web".into(),
            kind: config::PluginKind::External,
            host: "local".into(),
            source: "/srv/web".into(),
            commit: None,
            progress: None,
            state: crate::status::State::Failed {
                reason: "exited with status 3\nmore".into(),
            },
            since: "2024-05-01T09:30:00Z".into(),
            unreachable_since: None,
            pid: None,
            restarts_left: Some(0),
            in_state_s: 3725,
            log_file: "/h/log/web.log".into(),
            skills: Vec::new(),
        }
    }

    #[test]
    fn details_show_every_line_of_a_reason_and_of_the_skills() {
        let mut row = failed_web();
        row.skills = vec!["aigis.web.a".into(), "aigis.web.b".into()];
        assert_eq!(
            details(&row),
            "name:          web\n\
             type:          external\n\
             host:          local\n\
             source:        /srv/web\n\
             state:         failed for 1h2m (since 2024-05-01T09:30:00Z)\n\
             pid:           -\n\
             restarts left: 0\n\
             reason:        exited with status 3\n\
             \x20              more\n\
             log:           /h/log/web.log\n\
             skills:        aigis.web.a\n\
             \x20              aigis.web.b\n"
        );
    }
}
