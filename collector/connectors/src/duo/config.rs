//! `[duo]` configuration: where the Auth API is, the integration's keys, and how requests
//! are signed, timed out and retried.
use std::{fmt, time::Duration};

use serde::Deserialize;

use super::DuoError;

/// How Cordon reaches a Duo Auth API application (Duo Admin Panel → Applications → Auth
/// API gives the integration key, secret key and API host name).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuoConfig {
    /// The API host name, e.g. `api-XXXXXXXX.duosecurity.com`. Requests are signed for
    /// this host and, unless `base_url` is set, sent to `https://{api_host}`.
    pub api_host: String,
    /// Where to send requests instead of `https://{api_host}`, e.g. a local stand-in
    /// `http://127.0.0.1:PORT`. Plain `http://` is refused except to a loopback address.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The integration key (the HTTP Basic user name).
    pub ikey: String,
    /// The secret key: signs every request; never sent, never logged.
    pub skey: String,
    /// Request signature version: `2` (HMAC-SHA1, form bodies) or `5` (HMAC-SHA512 that
    /// also covers the body, JSON bodies; what Duo's current clients use).
    #[serde(default = "default_signature_version")]
    pub signature_version: u8,
    /// Time allowed for one whole request (connect, send, answer), in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries of a request that was rate limited (HTTP 429), failed with a 5xx or did not
    /// reach Duo, before the error is returned. A push is only retried when Duo cannot
    /// have received it (429, or no connection), so a user never gets two pushes.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First delay before a retry, in milliseconds; it doubles on each retry up to
    /// `retry_max_ms`, plus a random jitter of up to one first delay (Duo's documented
    /// rate-limit backoff: 1 s doubling to 32 s, with jitter).
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// Longest delay between two attempts, in milliseconds (before jitter).
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
}

fn default_signature_version() -> u8 {
    5
}
fn default_timeout_ms() -> u64 {
    10_000
}
fn default_max_retries() -> u32 {
    3
}
fn default_retry_initial_ms() -> u64 {
    1_000
}
fn default_retry_max_ms() -> u64 {
    32_000
}

impl DuoConfig {
    /// A configuration with the given host and keys and every other field at its default.
    pub fn new(api_host: &str, ikey: &str, skey: &str) -> Self {
        Self {
            api_host: api_host.to_string(),
            base_url: None,
            ikey: ikey.to_string(),
            skey: skey.to_string(),
            signature_version: default_signature_version(),
            timeout_ms: default_timeout_ms(),
            max_retries: default_max_retries(),
            retry_initial_ms: default_retry_initial_ms(),
            retry_max_ms: default_retry_max_ms(),
        }
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Where requests go: `base_url` without a trailing `/`, or `https://{api_host}`.
    pub fn endpoint(&self) -> String {
        match &self.base_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("https://{}", self.api_host),
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), DuoError> {
        let bad = |field: &'static str, reason: &str| {
            Err(DuoError::Config {
                field,
                reason: reason.to_string(),
            })
        };
        let host = self.api_host.as_str();
        if host.is_empty() {
            return bad(
                "duo.api_host",
                "is empty (e.g. api-XXXXXXXX.duosecurity.com)",
            );
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
        {
            return bad(
                "duo.api_host",
                "must be a host name (letters, digits, '.', '-', optional ':port'), without a scheme or path",
            );
        }
        if let Some(url) = &self.base_url {
            check_base_url(url).or_else(|reason| bad("duo.base_url", &reason))?;
        }
        if self.ikey.is_empty() {
            return bad("duo.ikey", "is empty");
        }
        if !self.ikey.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return bad("duo.ikey", "must be printable ASCII without ':' or spaces");
        }
        if self.skey.is_empty() {
            return bad("duo.skey", "is empty");
        }
        if super::SigVersion::from_number(self.signature_version).is_none() {
            return bad("duo.signature_version", "must be 2 or 5");
        }
        if self.timeout_ms == 0 {
            return bad("duo.timeout_ms", "must be at least 1");
        }
        if self.max_retries > 10 {
            return bad("duo.max_retries", "must be at most 10");
        }
        if self.retry_initial_ms == 0 {
            return bad("duo.retry_initial_ms", "must be at least 1");
        }
        if self.retry_max_ms < self.retry_initial_ms {
            return bad("duo.retry_max_ms", "must be at least retry_initial_ms");
        }
        Ok(())
    }
}

/// `http(s)://host[:port]` with nothing after it; plain http only to loopback.
fn check_base_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") => {
            let loopback = host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(format!(
                    "{url:?}: plain http is only allowed to a loopback address (a local stand-in)"
                ));
            }
        }
        _ => return Err(format!("{url:?}: must start with https:// or http://")),
    }
    if host.is_empty() {
        return Err(format!("{url:?}: has no host"));
    }
    if !uri.path().trim_end_matches('/').is_empty() || uri.query().is_some() {
        return Err(format!("{url:?}: must have no path or query"));
    }
    Ok(())
}

impl fmt::Debug for DuoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DuoConfig")
            .field("api_host", &self.api_host)
            .field("base_url", &self.base_url)
            .field("ikey", &self.ikey)
            .field("skey", &"<redacted>")
            .field("signature_version", &self.signature_version)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_retries", &self.max_retries)
            .field("retry_initial_ms", &self.retry_initial_ms)
            .field("retry_max_ms", &self.retry_max_ms)
            .finish()
    }
}
