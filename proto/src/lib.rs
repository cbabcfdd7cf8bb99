//! The wire protocol between `aigis` (central) and `aigis-agent`.
//!
//! Central and an agent talk over one byte stream: the agent's stdin/stdout
//! for a local agent, an SSH exec channel for a remote one. The stream carries
//! frames: a 4-byte big-endian length, then that many bytes of a bincode-encoded
//! message. The first frame each way is a `Hello` carrying [`PROTOCOL_VERSION`].
//!
//! Invariants:
//! - A frame is never longer than [`MAX_FRAME`]; the length is checked before
//!   any allocation, so a corrupt or hostile length cannot make us allocate.
//! - Decoding never panics: a truncated or corrupt frame is a [`FrameError`].
//! - This crate only moves bytes and types; what a message *means* (policy)
//!   lives in the agent and in central.

pub mod backoff;
mod codec;
mod lines;
mod messages;

pub use backoff::Backoff;
pub use codec::{
    control_limit, decode_frame, encode_frame, encoded_len, FrameError, FrameReader, FrameWriter,
    MAX_CONTROL, MAX_FRAME,
};
pub use lines::Lines;
pub use messages::*;

/// Bumped on every incompatible change of the message types.
pub const PROTOCOL_VERSION: u32 = 11;

/// `bytes` as lowercase hex: how both ends name things by content (agent
/// binaries, this central's place on a host, the kept Python shim) and
/// spell a [`CallToken`].
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
