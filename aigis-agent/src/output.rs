//! Turning a child's byte stream into log lines.
//!
//! A plugin may print anything: lines longer than any sane buffer, invalid
//! UTF-8, `\r\n` endings, no final newline. Every byte it prints reaches a
//! line: long lines are cut into pieces of at most [`MAX_LINE`] bytes, invalid
//! UTF-8 is replaced (U+FFFD), and a last unterminated line is still sent.

use proto::{Event, FromAgent, Lines, OutputStream};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The longest line sent as one message; longer lines arrive in pieces.
pub const MAX_LINE: usize = 16 * 1024;

/// Splits a byte stream into lines. Feed it bytes with [`LineSplitter::push`]
/// and take the remainder with [`LineSplitter::finish`] at end of stream.
/// A line that arrives whole is appended to the batch from the read buffer
/// itself; only a line split across reads is gathered here first.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Lines) {
        while !bytes.is_empty() {
            let room = MAX_LINE - self.pending.len();
            let window = &bytes[..bytes.len().min(room)];
            match memchr::memchr(b'\n', window) {
                Some(i) if self.pending.is_empty() => {
                    out.push_raw(&window[..i]);
                    bytes = &bytes[i + 1..];
                }
                Some(i) => {
                    self.pending.extend_from_slice(&window[..i]);
                    self.emit(out);
                    bytes = &bytes[i + 1..];
                }
                None => {
                    self.pending.extend_from_slice(window);
                    bytes = &bytes[window.len()..];
                    if self.pending.len() == MAX_LINE {
                        self.emit(out);
                    }
                }
            }
        }
    }

    pub fn finish(&mut self, out: &mut Lines) {
        if !self.pending.is_empty() {
            self.emit(out);
        }
    }

    fn emit(&mut self, out: &mut Lines) {
        out.push_raw(&self.pending);
        self.pending.clear();
    }
}

/// The read buffer of one output stream, at first and at most.
const READ_MIN: usize = 4 * 1024;
const READ_MAX: usize = 64 * 1024;
/// A stream that handed over lines less than this long ago is streaming.
const BUSY: Duration = Duration::from_millis(10);
/// How long a streaming stream's read waits for more, while its buffer has
/// room, before its lines go.
const LINGER: Duration = Duration::from_millis(2);

/// Reads `stream` to its end, calling `batch` with the complete lines of
/// each read, in order. `batch` is async so a full channel slows the reader
/// (and so the child) instead of dropping anything.
///
/// A stream that prints now and then has each line sent as it comes. One
/// that streams (it handed over lines within [`BUSY`]) is read for up to
/// [`LINGER`] more, until its buffer is full: a plugin printing a flood
/// through a pipe writes a few KiB at a time, and every batch costs a
/// message, a write to the link and a wake-up of central's dispatcher and
/// log writer whatever its size.
pub async fn relay_lines<R, F, Fut>(mut stream: R, mut batch: F)
where
    R: AsyncRead + Unpin,
    F: FnMut(Lines) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut splitter = LineSplitter::default();
    // Small while the stream is quiet (100 idle plugins cost 200 of these),
    // doubled whenever a read fills it, up to `READ_MAX`.
    let mut buf = vec![0u8; READ_MIN];
    let mut last_batch: Option<Instant> = None;
    let mut open = true;
    while open {
        let mut n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if last_batch.is_some_and(|at| at.elapsed() < BUSY) {
            let until = Instant::now() + LINGER;
            while n < buf.len() {
                // Cancel-safe: a read the deadline ends took nothing.
                match tokio::time::timeout_at(until, stream.read(&mut buf[n..])).await {
                    Ok(Ok(0)) | Ok(Err(_)) => {
                        open = false;
                        break;
                    }
                    Ok(Ok(k)) => n += k,
                    Err(_) => break,
                }
            }
        }
        if n == buf.len() && buf.len() < READ_MAX {
            buf.resize(buf.len() * 2, 0);
        }
        let mut ready = Lines::new();
        splitter.push(&buf[..n], &mut ready);
        if !ready.is_empty() {
            batch(ready).await;
            last_batch = Some(Instant::now());
        }
    }
    let mut ready = Lines::new();
    splitter.finish(&mut ready);
    if !ready.is_empty() {
        batch(ready).await;
    }
}

/// A line of the agent's own in a plugin's output (`aigis-agent: …`), so
/// the operator reads it in that plugin's log.
pub fn agent_note(plugin: &str, stream: OutputStream, text: &str) -> Event {
    Event::Output {
        plugin: plugin.to_string(),
        stream,
        lines: proto::Lines::one(&format!("aigis-agent: {text}")),
    }
}

/// Relays one of a process's output streams as `Output` events.
pub fn relay<R>(
    stream: R,
    which: OutputStream,
    plugin: &str,
    events: &mpsc::Sender<FromAgent>,
) -> JoinHandle<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let plugin = plugin.to_string();
    let events = events.clone();
    tokio::spawn(async move {
        relay_lines(stream, |lines| {
            let msg = FromAgent::Event(Event::Output {
                plugin: plugin.clone(),
                stream: which,
                lines,
            });
            let events = events.clone();
            async move {
                let _ = events.send(msg).await;
            }
        })
        .await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::default();
        let mut out = Lines::new();
        for c in chunks {
            s.push(c, &mut out);
        }
        s.finish(&mut out);
        out.iter().map(String::from).collect()
    }

    #[test]
    fn lines_across_chunks_and_crlf() {
        assert_eq!(
            split(&[b"a\r\nb", b"c\n", b"\n", b"tail"]),
            vec!["a", "bc", "", "tail"]
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_not_lost() {
        assert_eq!(
            split(&[b"ok \xff\xfe end\n"]),
            vec!["ok \u{fffd}\u{fffd} end"]
        );
    }

    #[test]
    fn long_lines_are_cut_without_losing_bytes() {
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let mut input = long.clone();
        input.extend_from_slice(b"\nnext\n");
        let out = split(&[&input[..100], &input[100..]]);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].len(), MAX_LINE);
        assert_eq!(out[1].len(), MAX_LINE);
        assert_eq!(out[2].len(), 10);
        assert_eq!(out[3], "next");
    }

    #[tokio::test]
    async fn relay_reads_to_the_end() {
        let data: &[u8] = b"one\ntwo\nthree";
        let mut got = Vec::new();
        relay_lines(data, |lines| {
            got.extend(lines.iter().map(String::from));
            async {}
        })
        .await;
        assert_eq!(got, vec!["one", "two", "three"]);
    }

    /// Lines written one small write at a time, as fast as they come, are
    /// read in a few batches, each line once and in order; a line printed
    /// after a quiet spell goes at once.
    #[tokio::test(start_paused = true)]
    async fn a_streaming_stream_is_read_in_few_batches_a_quiet_one_at_once() {
        use tokio::io::AsyncWriteExt;
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            for i in 0..500 {
                tx.write_all(format!("line {i}\n").as_bytes())
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            tx.write_all(b"after a pause\n").await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        let start = Instant::now();
        let mut batches: Vec<(Vec<String>, Duration)> = Vec::new();
        relay_lines(rx, |lines| {
            batches.push((lines.iter().map(String::from).collect(), start.elapsed()));
            async {}
        })
        .await;
        writer.await.unwrap();
        let (last, at) = batches.pop().unwrap();
        assert_eq!(last, vec!["after a pause"]);
        assert_eq!(
            at,
            Duration::from_secs(1),
            "a quiet stream's line waits for nothing"
        );
        let lines: Vec<String> = batches.iter().flat_map(|(b, _)| b.clone()).collect();
        let want: Vec<String> = (0..500).map(|i| format!("line {i}")).collect();
        assert_eq!(lines, want);
        assert!(
            batches.len() <= 5,
            "{} batches for 500 writes",
            batches.len()
        );
    }

    /// A stream that ends while its read lingers loses nothing, its last
    /// unterminated line included.
    #[tokio::test(start_paused = true)]
    async fn a_stream_that_ends_while_streaming_loses_nothing() {
        use tokio::io::AsyncWriteExt;
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            for i in 0..100 {
                tx.write_all(format!("line {i}\n").as_bytes())
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
            tx.write_all(b"no end").await.unwrap();
        });
        let mut got = Vec::new();
        relay_lines(rx, |lines| {
            got.extend(lines.iter().map(String::from));
            async {}
        })
        .await;
        let mut want: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
        want.push("no end".into());
        assert_eq!(got, want);
    }
}
