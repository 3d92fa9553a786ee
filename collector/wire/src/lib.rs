//! The agent↔collector protocol. Message types, framing and version negotiation arrive with
//! the uplink; this crate exists now so the workspace has its final shape.

/// Protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 0;
