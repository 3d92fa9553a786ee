//! Framing and encoding. A frame is a 4-byte big-endian length followed by one postcard
//! encoded [`Message`]; the length is checked against [`MAX_FRAME_BYTES`] before the body is
//! read, the body must decode exactly (no trailing bytes), and the decoded message must pass
//! [`Message::check`].
use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use crate::messages::Message;

/// Largest frame body accepted or sent (16 MiB).
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Why bytes from the network were refused. Each one ends that connection, with this as
/// the logged reason; none panics.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    Oversize { len: usize, max: usize },
    #[error("frame length exceeds the limit of {max} bytes")]
    FrameTooLarge { max: usize },
    #[error("undecodable message: {0}")]
    Decode(#[from] postcard::Error),
    #[error("{0} bytes after the end of the message")]
    Trailing(usize),
    #[error("field `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes one message body (without the length prefix).
pub fn encode(msg: &Message) -> Result<Bytes, WireError> {
    let body = postcard::to_allocvec(msg)?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(WireError::Oversize {
            len: body.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    Ok(Bytes::from(body))
}

/// Decodes and checks one message body.
pub fn decode(body: &[u8]) -> Result<Message, WireError> {
    if body.len() > MAX_FRAME_BYTES {
        return Err(WireError::Oversize {
            len: body.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    let (msg, rest) = postcard::take_from_bytes::<Message>(body)?;
    if !rest.is_empty() {
        return Err(WireError::Trailing(rest.len()));
    }
    msg.check()?;
    Ok(msg)
}

/// A tokio codec for framed messages (for `Framed` over a QUIC stream or any byte stream).
pub struct FrameCodec {
    frames: LengthDelimitedCodec,
}

impl FrameCodec {
    pub fn new() -> Self {
        Self {
            frames: LengthDelimitedCodec::builder()
                .length_field_length(4)
                .big_endian()
                .max_frame_length(MAX_FRAME_BYTES)
                .new_codec(),
        }
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder for FrameCodec {
    type Item = Message;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, WireError> {
        // The length codec refuses a length over the limit as soon as it reads the header,
        // before buffering the body.
        match self.frames.decode(src) {
            Ok(Some(body)) => decode(&body).map(Some),
            Ok(None) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                Err(WireError::FrameTooLarge {
                    max: MAX_FRAME_BYTES,
                })
            }
            Err(e) => Err(WireError::Io(e)),
        }
    }
}

impl Encoder<&Message> for FrameCodec {
    type Error = WireError;

    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), WireError> {
        let body = encode(msg)?;
        self.frames.encode(body, dst)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
