//! The plugin side of calls to central: what a shim writes on its control
//! socket (fd 3), as typed [`Call`]s, and central's [`Answer`]s back in the
//! shim's framing (see `python/shim.py`).
//!
//! A shim frame is a 4-byte big-endian length and a payload: an AigisProxy
//! call (`b"C"` + id + pickle, passed on unread) or a JSON control request
//! (`{"id", "op": "reload", "plugin"}`). Nothing else crosses.

use proto::{Answer, Call};
use tokio::io::{AsyncRead, AsyncReadExt};

/// One frame a shim sent, as read.
#[derive(Debug, PartialEq, Eq)]
pub enum ShimRead {
    /// A payload within the limit.
    Frame(Vec<u8>),
    /// A payload over the limit, read and dropped in bounded chunks, never
    /// held whole: its length, and the id of the proxy call it was, if it
    /// was one (answered with [`too_big_call`]).
    TooBig { len: usize, call: Option<[u8; 8]> },
}

/// Reads the next shim frame (a 4-byte big-endian length and a payload)
/// from `rd`; `None` when the stream ended. Anything that comes from a
/// plugin's shim is read this way: by the agent from fd 3, by central from
/// a direct call channel.
pub async fn read_shim_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    limit: usize,
) -> std::io::Result<Option<ShimRead>> {
    let mut len = [0u8; 4];
    match rd.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len <= limit {
        let mut payload = vec![0u8; len];
        rd.read_exact(&mut payload).await?;
        return Ok(Some(ShimRead::Frame(payload)));
    }
    let mut head = [0u8; 9];
    rd.read_exact(&mut head).await?;
    let rest = (len - head.len()) as u64;
    let skipped = tokio::io::copy(&mut rd.take(rest), &mut tokio::io::sink()).await?;
    if skipped != rest {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Some(ShimRead::too_big(len, &head)))
}

impl ShimRead {
    /// A frame of `len` bytes, over the limit, that began with `head` (up
    /// to its first 9 bytes): a proxy call's kind and id, if it was one.
    pub fn too_big(len: usize, head: &[u8]) -> ShimRead {
        let call = (head.len() == 9 && head[0] == b'C').then(|| call_id(head));
        ShimRead::TooBig { len, call }
    }
}

/// A reply that fits in a frame: one too big would end the whole link (or
/// the plugin's channel), so it becomes an error for its call alone.
/// `proxy.answer` already keeps results under the limit.
pub fn fit_reply(plugin: &str, reply: Vec<u8>) -> Vec<u8> {
    let limit = proto::control_limit(plugin);
    if reply.len() <= limit {
        return reply;
    }
    let message = format!(
        "the reply is {} bytes; at most {limit} may cross back to the plugin",
        reply.len()
    );
    error_reply(&call_id(&reply), "ValueError", &message)
}

/// The typed call in one shim payload, or why it is not one.
pub fn from_shim(payload: Vec<u8>) -> Result<Call, String> {
    match payload.first() {
        Some(b'C') => Ok(Call::Proxy(payload)),
        Some(b'{') => {
            let request: serde_json::Value = serde_json::from_slice(&payload)
                .map_err(|e| format!("a control request that is not JSON: {e}"))?;
            let id = request.get("id").and_then(|v| v.as_u64()).unwrap_or(0);
            match (
                request.get("op").and_then(|v| v.as_str()),
                request.get("plugin").and_then(|v| v.as_str()),
            ) {
                (Some("reload"), Some(target)) => Ok(Call::Reload {
                    id,
                    target: target.to_string(),
                }),
                (op, _) => Err(format!("unknown control request {op:?}")),
            }
        }
        _ => Err("a frame that is neither a proxy call nor a control request".into()),
    }
}

/// An AigisProxy error reply to call `id` (8 bytes, big-endian), raised in
/// the plugin as `exc_type`: the one place this frame is built in Rust
/// (`python/proxy.py` builds the same in Python).
pub fn error_reply(id: &[u8], exc_type: &str, message: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "type": exc_type,
        "builtin": exc_type,
        "message": message,
        "args": [message],
        "traceback": "",
    });
    let mut out = b"R".to_vec();
    out.extend_from_slice(id.get(..8).unwrap_or(&[0; 8]));
    out.push(1);
    out.extend_from_slice(body.to_string().as_bytes());
    out
}

/// The error reply to an AigisProxy call frame of `len` bytes, over `limit`
/// (see `python/proxy.py`: the shim raises the same error before sending).
pub fn too_big_call(id: &[u8], len: usize, limit: usize) -> Vec<u8> {
    let message = format!(
        "the call's arguments are {} bytes pickled; at most {} may cross to central",
        len.saturating_sub(9),
        limit.saturating_sub(9)
    );
    error_reply(id, "ValueError", &message)
}

/// The id of an AigisProxy call frame (`b"C" + id + pickle`).
pub fn call_id(call: &[u8]) -> [u8; 8] {
    call.get(1..9)
        .and_then(|id| id.try_into().ok())
        .unwrap_or([0; 8])
}

/// Frames up to this size are copied behind their length and written in
/// one piece (one wake-up of the shim); larger ones are written as their
/// length, then themselves, without the copy.
const SMALL_FRAME: usize = 64 * 1024;

/// A frame for the shim (a 4-byte big-endian length and `payload`), as
/// the pieces to write in order.
pub enum ShimFrame<'a> {
    Whole(Vec<u8>),
    Split([u8; 4], &'a [u8]),
}

pub fn shim_frame(payload: &[u8]) -> ShimFrame<'_> {
    let len = (payload.len() as u32).to_be_bytes();
    if payload.len() > SMALL_FRAME {
        return ShimFrame::Split(len, payload);
    }
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&len);
    frame.extend_from_slice(payload);
    ShimFrame::Whole(frame)
}

/// Central's answer as the shim reads it.
pub fn to_shim(answer: Answer) -> Vec<u8> {
    match answer {
        Answer::Proxy(frame) => frame,
        Answer::Reload { id, result } => {
            let body = match result {
                Ok(()) => serde_json::json!({"id": id, "ok": true, "result": true}),
                Err(e) => serde_json::json!({"id": id, "ok": false, "error": e}),
            };
            body.to_string().into_bytes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shim_frames_are_read_whole_and_oversized_ones_skipped() {
        let limit = 16;
        let mut wire = Vec::new();
        for payload in [
            &b"C\0\0\0\0\0\0\0\x07small"[..],
            &[b'C'; 40][..],
            b"",
            b"{}",
        ] {
            wire.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            wire.extend_from_slice(payload);
        }
        let mut rd = &wire[..];
        let mut got = Vec::new();
        while let Some(read) = read_shim_frame(&mut rd, limit).await.unwrap() {
            got.push(read);
        }
        assert_eq!(
            got,
            vec![
                ShimRead::Frame(b"C\0\0\0\0\0\0\0\x07small".to_vec()),
                ShimRead::TooBig {
                    len: 40,
                    call: Some([b'C'; 8])
                },
                ShimRead::Frame(Vec::new()),
                ShimRead::Frame(b"{}".to_vec()),
            ]
        );
        // Cut inside a frame: an error, not the end.
        let mut cut = &wire[..10];
        assert!(read_shim_frame(&mut cut, limit).await.is_err());
    }

    #[test]
    fn a_reply_too_big_for_a_frame_becomes_an_error_for_its_call() {
        let small = b"R\0\0\0\0\0\0\0\x07\0ok".to_vec();
        assert_eq!(fit_reply("p", small.clone()), small);
        let fits = vec![b'R'; proto::MAX_CONTROL];
        assert_eq!(fit_reply("p", fits.clone()), fits);
        let mut big = b"R\0\0\0\0\0\0\0\x07\0".to_vec();
        big.resize(proto::MAX_CONTROL + 1, b'x');
        let reply = fit_reply("p", big.clone());
        assert_eq!(&reply[..10], b"R\0\0\0\0\0\0\0\x07\x01");
        let info: serde_json::Value = serde_json::from_slice(&reply[10..]).unwrap();
        assert_eq!(info["type"], "ValueError");
        assert_eq!(
            info["message"],
            format!(
                "the reply is {} bytes; at most {} may cross back to the plugin",
                proto::MAX_CONTROL + 1,
                proto::MAX_CONTROL
            )
        );
        // What is sent always fits in one frame, whatever the plugin's name.
        let long_name = "p".repeat(100_000);
        let msg = proto::ToAgent::Answer {
            answer: Answer::Proxy(fit_reply(&long_name, big)),
            plugin: long_name,
        };
        assert!(proto::encode_frame(&msg).is_ok());
    }

    #[test]
    fn shim_frames_become_typed_calls_and_back() {
        let call = from_shim(br#"{"id": 7, "op": "reload", "plugin": "x"}"#.to_vec()).unwrap();
        assert_eq!(
            call,
            Call::Reload {
                id: 7,
                target: "x".into()
            }
        );
        assert_eq!(
            from_shim(b"C\0\0\0\0\0\0\0\x01pickle".to_vec()),
            Ok(Call::Proxy(b"C\0\0\0\0\0\0\0\x01pickle".to_vec()))
        );
        assert!(from_shim(br#"{"id": 1, "op": "rm"}"#.to_vec()).is_err());
        assert!(from_shim(b"X".to_vec()).is_err());
        assert!(from_shim(Vec::new()).is_err());
        let back = to_shim(Answer::Reload {
            id: 7,
            result: Err("not allowed".into()),
        });
        let v: serde_json::Value = serde_json::from_slice(&back).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"], "not allowed");
    }
}
