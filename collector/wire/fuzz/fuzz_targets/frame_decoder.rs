//! Fuzzes the frame decoder with arbitrary bytes from the network: it must return messages
//! or errors, never panic, and never buffer a frame larger than the limit.
//!
//! Run: `cargo install cargo-fuzz && cd collector/wire && cargo +nightly fuzz run frame_decoder`
#![no_main]

use bytes::BytesMut;
use cordon_wire::{FrameCodec, MAX_FRAME_BYTES, decode, encode};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    // As one body.
    if let Ok(msg) = decode(data) {
        // Whatever decodes re-encodes, and decodes to the same message.
        let body = encode(&msg).expect("a decoded message encodes");
        assert_eq!(decode(&body).expect("re-decodes"), msg);
    }
    // As a stream of frames, split at an arbitrary point.
    let mut codec = FrameCodec::new();
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut buf = BytesMut::from(&data[..split]);
    for chunk in [&data[..0], &data[split..]] {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
        assert!(buf.capacity() <= MAX_FRAME_BYTES + 4 + data.len());
    }
});
