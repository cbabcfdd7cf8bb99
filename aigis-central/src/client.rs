//! The operator's commands that talk to a running daemon over the control
//! socket: `status`, `logs`, `stop`, `start`, `reload`.

use crate::control::{self, PluginStatus, Request};
use crate::home::Home;
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::Path;
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

pub async fn status(home: &Home, json: bool) -> anyhow::Result<()> {
    let response = ask(home, Request::Status).await?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &response.plugins).map_err(std::io::Error::from)?;
        writeln!(out)?;
        return Ok(());
    }
    write!(out, "{}", table(&response.plugins))?;
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
            let state = match r.state.reason() {
                Some(reason) => format!("{} ({})", r.state.word(), first_line(reason, 60)),
                None => r.state.word().to_string(),
            };
            [
                r.name.clone(),
                r.kind.as_str().to_string(),
                r.host.clone(),
                state,
                r.pid.map_or("-".into(), |p| p.to_string()),
                r.restarts_left.map_or("-".into(), |n| n.to_string()),
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
        println!("{m}");
    }
    Ok(())
}

/// Prints the last `lines` lines of the plugin's log; with `follow`, keeps
/// printing what is appended (across rotations) until interrupted.
pub async fn logs(home: &Home, plugin: &str, lines: usize, follow: bool) -> anyhow::Result<()> {
    let response = ask(
        home,
        Request::Logs {
            plugin: plugin.to_string(),
        },
    )
    .await?;
    let path = response
        .log_file
        .ok_or_else(|| anyhow::anyhow!("the daemon did not name a log file"))?;
    let mut out = std::io::stdout().lock();
    let mut pos = match std::fs::File::open(&path) {
        Ok(f) => {
            let tail = last_lines(f, lines)?;
            out.write_all(&tail.0)?;
            tail.1
        }
        Err(_) => 0,
    };
    out.flush()?;
    drop(out);
    if !follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok(mut f) = std::fs::File::open(&path) else {
            continue;
        };
        let len = f.metadata()?.len();
        if len < pos {
            pos = 0; // rotated or truncated: start the new file from its top
        }
        if len > pos {
            f.seek(SeekFrom::Start(pos))?;
            let mut chunk = Vec::new();
            f.take(len - pos).read_to_end(&mut chunk)?;
            pos += chunk.len() as u64;
            let mut out = std::io::stdout().lock();
            out.write_all(&chunk)?;
            out.flush()?;
        }
    }
}

/// The last `n` lines of `f` and the file's length. Reads the file once.
fn last_lines(f: std::fs::File, n: usize) -> std::io::Result<(Vec<u8>, u64)> {
    let mut ring: std::collections::VecDeque<Vec<u8>> =
        std::collections::VecDeque::with_capacity(n.min(4096));
    let mut len = 0u64;
    let mut reader = std::io::BufReader::new(f);
    loop {
        let mut line = Vec::new();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        len += read as u64;
        if n > 0 {
            if ring.len() == n {
                ring.pop_front();
            }
            ring.push_back(line);
        }
    }
    Ok((ring.into_iter().flatten().collect(), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_keeps_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        std::fs::write(&p, "a\nb\nc\nd\n").unwrap();
        let (tail, len) = last_lines(std::fs::File::open(&p).unwrap(), 2).unwrap();
        assert_eq!(tail, b"c\nd\n");
        assert_eq!(len, 8);
        let (tail, _) = last_lines(std::fs::File::open(&p).unwrap(), 10).unwrap();
        assert_eq!(tail, b"a\nb\nc\nd\n");
    }

    #[test]
    fn table_aligns_columns() {
        let rows = vec![PluginStatus {
            name: "web".into(),
            kind: config::PluginKind::External,
            host: "local".into(),
            state: crate::status::State::Failed {
                reason: "exited with status 3\nmore".into(),
            },
            pid: None,
            restarts_left: Some(0),
            in_state_s: 3725,
        }];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAME  TYPE      HOST   STATE"), "{t}");
        assert!(lines[1].contains("failed (exited with status 3)"), "{t}");
        assert!(lines[1].ends_with("1h2m"), "{t}");
    }
}
