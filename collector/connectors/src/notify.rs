//! Notifications: a webhook (JSON, signed with HMAC-SHA256 over the timestamp and the
//! body) and e-mail over SMTP (lettre, rustls).
//!
//! Webhook signature scheme: each POST carries `X-Cordon-Timestamp: <unix seconds>` and
//! `X-Cordon-Signature: sha256=<hex>`, where `<hex>` is the lower-case hex HMAC-SHA256,
//! keyed with the shared secret, of the bytes `<timestamp>.<body>`. A receiver recomputes
//! it over the raw body, compares in constant time ([`verify_signature`]) and refuses
//! timestamps more than five minutes away from its clock.
pub(crate) mod http;
mod mail;
mod webhook;

pub use http::{Sleep, thread_sleep};
pub use mail::{Mailer, SmtpConfig, SmtpTls};
pub use webhook::{MAX_SKEW_SECS, Webhook, WebhookConfig, signature, verify_signature};

/// Why a notification was not delivered. [`NotifyError::is_retryable`] says whether
/// sending the same notification later can help.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The configuration or an argument is wrong (names the field). Permanent.
    #[error("{0}")]
    Config(String),
    /// The receiver refused it (a 4xx other than 408/429; an SMTP 5xx). Permanent.
    #[error("{what}: refused: {message}")]
    Rejected { what: &'static str, message: String },
    /// Still failing after every retry (5xx, 429, SMTP 4xx, connection errors).
    /// Retryable.
    #[error("{what}: unavailable after {attempts} attempt(s): {last}")]
    Unavailable {
        what: &'static str,
        attempts: u32,
        last: String,
    },
}

impl NotifyError {
    /// True when the same notification may be delivered later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}
