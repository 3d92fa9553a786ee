//! The agent↔collector protocol.
//!
//! - [`messages`]: what agents and collectors say to each other. Encoded with postcard
//!   (a documented, stable, compact serde format), one message per frame.
//! - [`codec`]: frames are a 4-byte big-endian length and the encoded message, with a hard
//!   size limit checked before anything is allocated; a frame that does not decode, or
//!   decodes to values out of range, is an error for that connection, never a panic.
//! - [`transport`]: QUIC with TLS 1.3 and client certificates, and frames on its streams.
//! - [`version`]: each side says the range of protocol versions it speaks; the highest
//!   common one is used.
//!
//! The protocol is append-only: message and command variants are encoded by their position,
//! so new variants go at the end of their enum and a retired one is kept (and refused by
//! the receiver) rather than removed or reused.
//!
//! These are wire types, separate from the agent's kernel ABI types and from its in-memory
//! records: the agent converts between them.
mod check;
pub mod codec;
pub mod messages;
pub mod transport;
pub mod version;

pub use codec::{FrameCodec, MAX_FRAME_BYTES, WireError, decode, encode};
pub use messages::*;
pub use version::{PROTOCOL_MAX, PROTOCOL_MIN, negotiate};
