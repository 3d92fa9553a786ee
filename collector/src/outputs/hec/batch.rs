//! Turning a batch of envelopes into HEC request bodies.
use std::io::Write;

use flate2::{Compression, write::GzEncoder};

use crate::outputs::{Envelope, SinkError};

/// One HEC request: the events `first..first + events` of the batch.
#[derive(Debug)]
pub struct Request {
    /// The body as sent (gzip-compressed when enabled).
    pub body: Vec<u8>,
    /// Bytes before compression.
    pub raw_len: usize,
    pub first: usize,
    pub events: usize,
}

/// Splits `batch` into request bodies of at most `max_bytes` (before compression): the
/// envelopes' HEC objects, each followed by a newline (HEC needs no separator; the newline
/// keeps the body readable). An event larger than `max_bytes` goes alone.
pub fn split(batch: &[Envelope], max_bytes: usize, gzip: bool) -> Result<Vec<Request>, SinkError> {
    let mut out = Vec::new();
    let mut raw: Vec<u8> = Vec::new();
    let mut first = 0;
    for (i, env) in batch.iter().enumerate() {
        let mut one = serde_json::to_vec(&env.hec).map_err(|e| {
            SinkError::Permanent(format!("envelope {}: cannot encode: {e}", env.key))
        })?;
        one.push(b'\n');
        if !raw.is_empty() && raw.len() + one.len() > max_bytes {
            out.push(finish(std::mem::take(&mut raw), first, i - first, gzip)?);
            first = i;
        }
        if one.len() > max_bytes {
            tracing::warn!(
                key = %env.key,
                bytes = one.len(),
                "HEC event larger than outputs.hec.max_batch_bytes: sent alone"
            );
        }
        raw.extend_from_slice(&one);
    }
    if !raw.is_empty() {
        out.push(finish(raw, first, batch.len() - first, gzip)?);
    }
    Ok(out)
}

fn finish(raw: Vec<u8>, first: usize, events: usize, gzip: bool) -> Result<Request, SinkError> {
    let raw_len = raw.len();
    let body = if gzip {
        gzip_bytes(&raw).map_err(|e| SinkError::Permanent(format!("gzip: {e}")))?
    } else {
        raw
    };
    Ok(Request {
        body,
        raw_len,
        first,
        events,
    })
}

pub fn gzip_bytes(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::with_capacity(raw.len() / 4 + 64), Compression::fast());
    enc.write_all(raw)?;
    enc.finish()
}
