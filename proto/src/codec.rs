//! Framing: parsing is separate from I/O. [`decode_frame`] works on a buffer
//! and says "not yet" (`Ok(None)`) for an incomplete frame; [`FrameReader`] and
//! [`FrameWriter`] add the async I/O around it.

use bytes::{Buf, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest payload of one frame. Local-directory plugins are streamed in
/// chunks well below this, so it only bounds a corrupt length.
pub const MAX_FRAME: usize = 8 * 1024 * 1024;

/// Largest payload of a plugin's control message (`Event::Control`) or of
/// central's answer (`ToAgent::ControlReply`): an AigisProxy call or reply
/// frame. It leaves 64 KiB of [`MAX_FRAME`] for the envelope (sequence
/// number, plugin name), so every such message fits in one frame; the shim
/// (`MAX_PAYLOAD` in `python/proxy.py`) knows the same number.
pub const MAX_CONTROL: usize = MAX_FRAME - 64 * 1024;

/// [`MAX_CONTROL`] for one plugin: less for a name so long that the
/// message would not fit in a frame otherwise.
pub fn control_limit(plugin: &str) -> usize {
    MAX_CONTROL.min(MAX_FRAME.saturating_sub(plugin.len() + 64))
}

const HEADER: usize = 4;

/// What decoding one frame may claim: bincode counts each value at its
/// width in memory (a `u64` as 8 bytes, a `Vec<T>` as its length times
/// `T`'s size), not at its size on the wire, so a frame within
/// [`MAX_FRAME`] (100,000 files of a tree, say) claims several times its
/// length. Still a bound: no frame can make the decoder allocate more.
const DECODE_LIMIT: usize = 8 * MAX_FRAME;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// How many bytes `msg` takes as a frame's payload, without building it.
pub fn encoded_len<T: Serialize>(msg: &T) -> Result<usize, FrameError> {
    let mut counter = Counter(0);
    bincode::serde::encode_into_std_write(msg, &mut counter, bincode_config())
        .map_err(|e| FrameError::Encode(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the maximum of {MAX_FRAME} bytes")]
    TooLarge(usize),
    #[error("stream ended in the middle of a frame ({0} bytes left over)")]
    Truncated(usize),
    /// The frame (whole, and consumed) does not decode. `head` is its
    /// first bytes, to tell a refused request's id (`ToAgent::request_id`).
    #[error("corrupt frame: {reason}")]
    Corrupt { reason: String, head: Vec<u8> },
    #[error("could not encode message: {0}")]
    Encode(String),
    #[error("i/o error on the link: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `msg` as one frame (header + payload).
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    // Sized first, then encoded behind room for the length: a large payload
    // is built once, in one allocation, not built and then copied.
    let encode = |mut w: &mut dyn std::io::Write| {
        bincode::serde::encode_into_std_write(msg, &mut w, bincode_config())
            .map_err(|e| FrameError::Encode(e.to_string()))
    };
    let len = encode(&mut Counter(0))?;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len)); // refused before allocating
    }
    let mut out = Vec::with_capacity(HEADER + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    encode(&mut out)?;
    Ok(out)
}

/// A writer that only counts what it is given.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Takes one complete frame off the front of `buf`, if there is one.
///
/// `Ok(None)` means more bytes are needed. A frame whose payload does not
/// decode to exactly one `T` is `Corrupt`; the bytes of that frame are consumed
/// either way so the caller may choose to skip it.
pub fn decode_frame<T: DeserializeOwned>(buf: &mut BytesMut) -> Result<Option<T>, FrameError> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    if buf.len() < HEADER + len {
        buf.reserve(HEADER + len - buf.len());
        return Ok(None);
    }
    buf.advance(HEADER);
    let payload = buf.split_to(len);
    let corrupt = |reason: String| FrameError::Corrupt {
        reason,
        head: payload[..payload.len().min(24)].to_vec(),
    };
    let (msg, used) = bincode::serde::decode_from_slice(&payload, bincode_config())
        .map_err(|e| corrupt(e.to_string()))?;
    if used != len {
        return Err(corrupt(format!(
            "{} trailing bytes after the message",
            len - used
        )));
    }
    Ok(Some(msg))
}

/// Reads frames from an async byte stream.
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(64 * 1024),
        }
    }

    /// The next message; `Ok(None)` at a clean end of stream (between frames).
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        loop {
            if let Some(msg) = decode_frame(&mut self.buf)? {
                return Ok(Some(msg));
            }
            // Room for the whole frame at once (its length is checked):
            // a large one is not regrown and copied piece by piece.
            if self.buf.len() >= HEADER {
                let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                let whole = HEADER + (len as usize).min(MAX_FRAME);
                self.buf.reserve(whole.saturating_sub(self.buf.len()));
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated(self.buf.len()))
                };
            }
        }
    }
}

/// Writes frames to an async byte stream; every `send` is flushed.
pub struct FrameWriter<W> {
    inner: W,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(inner: W) -> Self {
        FrameWriter { inner }
    }

    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), FrameError> {
        let frame = encode_frame(msg)?;
        self.inner.write_all(&frame).await?;
        self.inner.flush().await?;
        Ok(())
    }

    /// Writes without flushing; call [`FrameWriter::flush`] once a batch is done.
    pub async fn send_unflushed<T: Serialize>(&mut self, msg: &T) -> Result<(), FrameError> {
        let frame = encode_frame(msg)?;
        self.inner.write_all(&frame).await?;
        Ok(())
    }

    /// Writes `first` and every message `more` still has ready as one
    /// batch, then flushes once: over a buffered writer, a burst of small
    /// messages leaves in one write (one SSH packet, one wake-up of the
    /// other side) instead of one each.
    pub async fn send_batch<M, T>(
        &mut self,
        first: M,
        mut more: impl FnMut() -> Option<M>,
    ) -> Result<(), FrameError>
    where
        M: std::borrow::Borrow<T>,
        T: Serialize,
    {
        self.send_unflushed(first.borrow()).await?;
        while let Some(msg) = more() {
            self.send_unflushed(msg.borrow()).await?;
        }
        self.flush().await
    }

    pub async fn flush(&mut self) -> Result<(), FrameError> {
        self.inner.flush().await?;
        Ok(())
    }

    pub async fn shutdown(&mut self) -> Result<(), FrameError> {
        self.inner.shutdown().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Answer, Call, Event, FromAgent, OutputStream, ToAgent};

    fn sample() -> FromAgent {
        FromAgent::Event(Event::Output {
            plugin: "web".into(),
            stream: OutputStream::Stdout,
            lines: ["hello ✓", ""].into_iter().collect(),
        })
    }

    #[test]
    fn round_trip_one_byte_at_a_time() {
        let frame = encode_frame(&sample()).unwrap();
        let mut buf = BytesMut::new();
        for (i, b) in frame.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let got: Option<FromAgent> = decode_frame(&mut buf).unwrap();
            if i + 1 < frame.len() {
                assert!(got.is_none(), "decoded early at byte {i}");
            } else {
                assert_eq!(got, Some(sample()));
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn two_frames_in_one_buffer() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&encode_frame(&sample()).unwrap());
        buf.extend_from_slice(&encode_frame(&ToAgent::Shutdown).unwrap());
        assert_eq!(decode_frame::<FromAgent>(&mut buf).unwrap(), Some(sample()));
        assert_eq!(
            decode_frame::<ToAgent>(&mut buf).unwrap(),
            Some(ToAgent::Shutdown)
        );
    }

    #[test]
    fn the_largest_control_messages_fit_in_a_frame() {
        for name in ["p".to_string(), "p".repeat(1024), "p".repeat(MAX_FRAME)] {
            let payload = vec![0xffu8; control_limit(&name)];
            let up = FromAgent::Numbered {
                seq: u64::MAX,
                event: Event::Call {
                    plugin: name.clone(),
                    call: Call::Proxy(payload.clone()),
                },
            };
            if name.len() < 64 * 1024 {
                assert_eq!(payload.len(), MAX_CONTROL);
            }
            if name.len() < MAX_FRAME {
                assert!(encode_frame(&up).is_ok(), "{} bytes of name", name.len());
                let down = ToAgent::Answer {
                    plugin: name,
                    answer: Answer::Proxy(payload),
                };
                assert!(encode_frame(&down).is_ok());
            }
        }
    }

    #[test]
    fn huge_length_is_refused_without_allocating() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 1, 2][..]);
        let err = decode_frame::<FromAgent>(&mut buf).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(0xffff_ffff)), "{err}");
        assert!(buf.capacity() < 1024 * 1024);
    }

    #[test]
    fn corrupt_payload_is_an_error_not_a_panic() {
        for junk in [
            &[0x09u8, 0xff, 0xfe][..],
            &[0x00],
            &[0x02, 0x05, 0x00, 0x41],
        ] {
            let mut buf = BytesMut::new();
            buf.extend_from_slice(&(junk.len() as u32).to_be_bytes());
            buf.extend_from_slice(junk);
            assert!(matches!(
                decode_frame::<FromAgent>(&mut buf),
                Err(FrameError::Corrupt { .. })
            ));
        }
    }

    #[test]
    fn every_prefix_and_every_corruption_of_a_frame_is_handled() {
        let frame = encode_frame(&sample()).unwrap();
        for cut in 0..frame.len() {
            let mut buf = BytesMut::from(&frame[..cut]);
            assert!(decode_frame::<FromAgent>(&mut buf).unwrap().is_none());
        }
        for i in HEADER..frame.len() {
            for bit in 0..8 {
                let mut bad = frame.clone();
                bad[i] ^= 1 << bit;
                let mut buf = BytesMut::from(&bad[..]);
                let _ = decode_frame::<FromAgent>(&mut buf); // must not panic
            }
        }
    }

    #[tokio::test]
    async fn reader_reports_truncation_and_clean_eof() {
        let frame = encode_frame(&sample()).unwrap();
        let mut whole = FrameReader::new(&frame[..]);
        assert_eq!(whole.next::<FromAgent>().await.unwrap(), Some(sample()));
        assert_eq!(whole.next::<FromAgent>().await.unwrap(), None);

        let mut cut = FrameReader::new(&frame[..frame.len() - 1]);
        assert!(matches!(
            cut.next::<FromAgent>().await,
            Err(FrameError::Truncated(_))
        ));
    }

    #[tokio::test]
    async fn writer_and_reader_agree() {
        let (a, b) = tokio::io::duplex(64);
        let mut w = FrameWriter::new(a);
        let mut r = FrameReader::new(b);
        let writer = tokio::spawn(async move {
            for _ in 0..100 {
                w.send(&sample()).await.unwrap();
            }
        });
        for _ in 0..100 {
            assert_eq!(r.next::<FromAgent>().await.unwrap(), Some(sample()));
        }
        writer.await.unwrap();
        assert_eq!(r.next::<FromAgent>().await.unwrap(), None);
    }
}
