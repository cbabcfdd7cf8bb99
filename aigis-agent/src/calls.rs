//! The plugin side of calls to central: what a shim writes on its control
//! socket (fd 3), as typed [`Call`]s, and central's [`Answer`]s back in the
//! shim's framing (see `python/shim.py`).
//!
//! A shim frame is a 4-byte big-endian length and a payload: an AigisProxy
//! call (`b"C"` + id + pickle, passed on unread) or a JSON control request
//! (`{"id", "op": "reload", "plugin"}`). Nothing else crosses.

use proto::{Answer, Call};

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
