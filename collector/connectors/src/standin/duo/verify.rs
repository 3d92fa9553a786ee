//! What Duo checks before it looks at a request: HTTP Basic with the integration key, a
//! `Date` within five minutes of now, and the signature recomputed from the request.
//!
//! Codes: 40101 (missing credentials), 40102 (wrong integration key) and 40103 (wrong
//! signature) are the ones Duo documents; 40104 (no `Date`) and 40105 (date unreadable or
//! out of range) are this stand-in's choice where no documented code could be found.
use std::time::{Duration, SystemTime};

use base64::Engine as _;

use super::{Failure, server::Request};
use crate::duo::{
    date::parse_rfc2822,
    sign::{Canonical, SigVersion, signature_with},
};

/// How far the `Date` header may be from the stand-in's clock.
pub(super) const MAX_SKEW: Duration = Duration::from_secs(300);

/// Keys and host the stand-in verifies against.
pub(super) struct Keys {
    pub ikey: String,
    pub skey: String,
    pub api_host: String,
}

/// A way the request may have been signed: version, HMAC-SHA1?, parameters, body.
type Candidate<'a> = (SigVersion, bool, &'a [(String, String)], &'a str);

/// Verifies the request; the signature version it carried, or the failure to answer.
/// `signed_params` are the parameters a v2 signature covers (query of a GET, form body of
/// a POST); `query` those a v5 signature covers.
pub(super) fn verify(
    keys: &Keys,
    req: &Request,
    signed_params: Option<&[(String, String)]>,
    query: &[(String, String)],
) -> Result<u8, Failure> {
    let unauthorized = |code: u32, message: &str| Failure::new(401, code, message, None);
    let Some(auth) = req.header("authorization") else {
        return Err(unauthorized(40101, "Missing request credentials"));
    };
    let Some((ikey, sig)) = basic_credentials(auth) else {
        return Err(unauthorized(40101, "Missing request credentials"));
    };
    if ikey != keys.ikey {
        return Err(unauthorized(
            40102,
            "Invalid integration key in request credentials",
        ));
    }
    let Some(date) = req.header("date") else {
        return Err(unauthorized(40104, "Missing request timestamp"));
    };
    let Some(when) = parse_rfc2822(date) else {
        return Err(unauthorized(40105, "Invalid request timestamp"));
    };
    let now = SystemTime::now();
    let skew = now
        .duration_since(when)
        .or_else(|_| when.duration_since(now))
        .unwrap_or_default();
    if skew > MAX_SKEW {
        return Err(unauthorized(
            40105,
            "Request timestamp is more than five minutes from the current time",
        ));
    }
    let body = std::str::from_utf8(&req.body).unwrap_or_default();
    let x_duo: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-duo-"))
        .cloned()
        .collect();
    // Duo's clients sign v2 with HMAC-SHA1 (its documentation) or HMAC-SHA512 (duo_client's
    // default); v5 always with SHA512. The hex length tells the hash.
    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    match sig.len() {
        40 => {
            if let Some(p) = signed_params {
                candidates.push((SigVersion::V2, true, p, ""));
            }
        }
        128 => {
            candidates.push((SigVersion::V5, false, query, body));
            if let Some(p) = signed_params {
                candidates.push((SigVersion::V2, false, p, ""));
            }
        }
        _ => {}
    }
    for (version, sha1, params, body) in candidates {
        let c = Canonical {
            method: &req.method,
            host: &keys.api_host,
            path: &req.path,
            date,
            params,
            body,
            x_duo_headers: &x_duo,
        };
        let expected = signature_with(&keys.skey, version, sha1, &c);
        if ct_eq(expected.as_bytes(), sig.as_bytes()) {
            return Ok(version.number());
        }
    }
    Err(unauthorized(
        40103,
        "Invalid signature in request credentials",
    ))
}

/// `Basic base64(ikey:sig)` → (ikey, sig).
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let b64 = header.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_ascii_lowercase()))
}

/// Compares without an early exit.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
