//! The signed JSON webhook.
use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::{
    NotifyError,
    http::{self, NoReply, Sleep},
};

/// A receiver refuses timestamps further than this from its clock, in seconds.
pub const MAX_SKEW_SECS: u64 = 300;

/// Configuration of one webhook. [`WebhookConfig::validate`] names the offending field
/// (`webhook.<field>: ...`).
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where events are POSTed (`https://...`).
    pub url: String,
    /// The shared HMAC secret (at least 16 bytes). Secret: redacted in `Debug`.
    pub secret: String,
    /// Timeout of one request, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries after a 5xx, 408, 429 or connection error (0 = try once).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First backoff delay, in milliseconds; doubles on each retry (with jitter).
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Largest backoff delay, in milliseconds.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// A 429's or 503's `Retry-After` (seconds) is honoured up to this many seconds.
    #[serde(default = "default_retry_after_max_secs")]
    pub retry_after_max_secs: u64,
}

fn default_timeout_ms() -> u64 {
    5_000
}
fn default_max_retries() -> u32 {
    3
}
fn default_backoff_initial_ms() -> u64 {
    500
}
fn default_backoff_max_ms() -> u64 {
    10_000
}
fn default_retry_after_max_secs() -> u64 {
    60
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("timeout_ms", &self.timeout_ms)
            .field("max_retries", &self.max_retries)
            .field("backoff_initial_ms", &self.backoff_initial_ms)
            .field("backoff_max_ms", &self.backoff_max_ms)
            .field("retry_after_max_secs", &self.retry_after_max_secs)
            .finish()
    }
}

impl WebhookConfig {
    /// A config with every default and these two required fields.
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            secret: secret.into(),
            timeout_ms: default_timeout_ms(),
            max_retries: default_max_retries(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            retry_after_max_secs: default_retry_after_max_secs(),
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), NotifyError> {
        let bad = |field: &str, msg: String| NotifyError::Config(format!("webhook.{field}: {msg}"));
        http::endpoint_url(&self.url).map_err(|e| bad("url", e))?;
        if self.secret.len() < 16 {
            return Err(bad("secret", "at least 16 bytes".into()));
        }
        let range = |field: &str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(bad(field, format!("must be {lo} to {hi}, not {v}")))
            }
        };
        range("timeout_ms", self.timeout_ms, 100, 600_000)?;
        range("max_retries", u64::from(self.max_retries), 0, 20)?;
        range("backoff_initial_ms", self.backoff_initial_ms, 1, 600_000)?;
        range(
            "backoff_max_ms",
            self.backoff_max_ms,
            self.backoff_initial_ms,
            3_600_000,
        )?;
        range("retry_after_max_secs", self.retry_after_max_secs, 0, 3600)
    }
}

/// `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mac = mac(secret, timestamp, body).finalize().into_bytes();
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Whether `header` (`X-Cordon-Signature`) is the signature of `timestamp` and `body`
/// under `secret`. The comparison is constant-time. The caller checks the timestamp's
/// age (see [`MAX_SKEW_SECS`]).
pub fn verify_signature(secret: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(hex) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Some(expected) = decode_hex(hex) else {
        return false;
    };
    mac(secret, timestamp, body).verify_slice(&expected).is_ok()
}

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    m
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// A webhook sender.
pub struct Webhook {
    cfg: WebhookConfig,
    agent: ureq::Agent,
    sleep: Sleep,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook").field("cfg", &self.cfg).finish()
    }
}

impl Webhook {
    /// Validates `cfg` and builds the sender.
    pub fn new(cfg: WebhookConfig) -> Result<Self, NotifyError> {
        cfg.validate()?;
        Ok(Self {
            agent: http::agent(Duration::from_millis(cfg.timeout_ms), true),
            cfg,
            sleep: http::thread_sleep(),
        })
    }

    /// Replaces how the sender waits between retries.
    pub fn with_sleep(mut self, sleep: Sleep) -> Self {
        self.sleep = sleep;
        self
    }

    /// POSTs `event` as JSON, signed (a fresh timestamp and signature on every try).
    pub fn send(&self, event: &serde_json::Value) -> Result<(), NotifyError> {
        let body = event.to_string().into_bytes();
        let max_after = Duration::from_secs(self.cfg.retry_after_max_secs);
        let mut attempt = 0;
        loop {
            let ts = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default()
                .to_string();
            let res = self
                .agent
                .post(&self.cfg.url)
                .header("Content-Type", "application/json")
                .header("X-Cordon-Timestamp", &ts)
                .header(
                    "X-Cordon-Signature",
                    signature(&self.cfg.secret, &ts, &body),
                )
                .send(&body[..]);
            let (why, after) = match http::read(res) {
                Ok(r) if (200..300).contains(&r.status) => return Ok(()),
                Ok(r) if matches!(r.status, 408 | 429 | 500..=599) => (
                    format!("HTTP {}: {}", r.status, http::excerpt(&r.body, 200)),
                    http::retry_after(r.retry_after.as_deref(), max_after)
                        .filter(|_| matches!(r.status, 429 | 503)),
                ),
                Ok(r) => {
                    return Err(NotifyError::Rejected {
                        what: "webhook",
                        message: format!("HTTP {}: {}", r.status, http::excerpt(&r.body, 200)),
                    });
                }
                Err(NoReply::Retryable(why)) => (why, None),
                Err(NoReply::Permanent(why)) => {
                    return Err(NotifyError::Rejected {
                        what: "webhook",
                        message: why,
                    });
                }
            };
            if attempt >= self.cfg.max_retries {
                return Err(NotifyError::Unavailable {
                    what: "webhook",
                    attempts: attempt + 1,
                    last: why,
                });
            }
            let delay = after.unwrap_or_else(|| {
                http::backoff(
                    attempt,
                    Duration::from_millis(self.cfg.backoff_initial_ms),
                    Duration::from_millis(self.cfg.backoff_max_ms),
                )
            });
            tracing::warn!(attempt, ?delay, why, "webhook: retrying");
            (self.sleep)(delay);
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc4231_style_vector() {
        // HMAC-SHA256(key="key", "The quick brown fox jumps over the lazy dog"), split
        // as "<timestamp>.<body>" = "The quick brown fox jumps over the lazy dog".
        let s = signature("key", "The quick brown fox jumps over the lazy dog", b"")
            .replace("sha256=", "");
        // The known vector has no "." suffix, so compute ours against a direct MAC.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(b"key").expect("key");
        m.update(b"The quick brown fox jumps over the lazy dog.");
        let direct: String = m
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(s, direct);
        let mut k = <Hmac<Sha256> as Mac>::new_from_slice(b"key").expect("key");
        k.update(b"The quick brown fox jumps over the lazy dog");
        let known: String = k
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            known,
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn verify_accepts_own_and_rejects_tampering() {
        let sig = signature("0123456789abcdef", "1700000000", b"{\"a\":1}");
        assert!(verify_signature(
            "0123456789abcdef",
            "1700000000",
            b"{\"a\":1}",
            &sig
        ));
        assert!(!verify_signature(
            "0123456789abcdef",
            "1700000000",
            b"{\"a\":2}",
            &sig
        ));
        assert!(!verify_signature(
            "0123456789abcdef",
            "1700000001",
            b"{\"a\":1}",
            &sig
        ));
        assert!(!verify_signature(
            "other-secret-xxxx",
            "1700000000",
            b"{\"a\":1}",
            &sig
        ));
        assert!(!verify_signature(
            "0123456789abcdef",
            "1700000000",
            b"{\"a\":1}",
            "sha256=zz"
        ));
        assert!(!verify_signature(
            "0123456789abcdef",
            "1700000000",
            b"{\"a\":1}",
            &sig[7..]
        ));
    }

    #[test]
    fn config_is_checked_and_redacted() {
        let c = WebhookConfig::new("https://hooks.example/x", "short");
        assert!(
            c.validate()
                .expect_err("must be refused")
                .to_string()
                .contains("webhook.secret")
        );
        let c = WebhookConfig::new("https://hooks.example/x", "a-long-enough-secret");
        assert!(c.validate().is_ok());
        assert!(!format!("{c:?}").contains("a-long-enough-secret"));
    }
}
