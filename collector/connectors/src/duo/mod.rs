//! Duo Auth API v2 client: ask an approver on their phone (Duo Push) and wait for the
//! answer.
//!
//! ```text
//! preauth(user)            POST /auth/v2/preauth       → auth | allow | deny | enroll, devices
//! push(user, device, info) POST /auth/v2/auth          factor=push, async=1 → txid
//! auth_status(txid)        GET  /auth/v2/auth_status   → waiting | allow | deny
//! check()                  GET  /auth/v2/check         keys and signature valid?
//! ```
//!
//! Every request is signed as Duo specifies ([`sign`]): HTTP Basic with the integration
//! key and the hex HMAC of the canonical request, and the `Date` header it covers
//! (signature v2 or v5). The client is blocking (ureq); the caller polls
//! [`DuoClient::auth_status`] at its own pace and decides when to give up.
//! Rate limiting (429), 5xx and connection failures are retried with exponential backoff
//! and jitter ([`DuoConfig::max_retries`]); errors say whether a retry can help
//! ([`DuoError::is_retryable`]).
use std::{fmt, time::SystemTime};

mod config;
pub mod date;
mod http;
pub mod sign;
mod types;

pub use config::DuoConfig;
pub use sign::{Canonical, SigVersion, canon_json, canon_params, canonicalize, encode, sign};
pub use types::{AuthResult, AuthStatus, Device, DuoError, Preauth, PreauthResult};

use http::Retry;

/// Duo's limit on the URL-encoded `pushinfo`: less than 20,000 bytes.
pub const MAX_PUSHINFO_BYTES: usize = 19_999;

/// A blocking Auth API client. Cheap to share between threads (`&self` methods).
#[derive(Clone)]
pub struct DuoClient {
    cfg: DuoConfig,
    version: SigVersion,
    endpoint: String,
    agent: ureq::Agent,
    clock: fn() -> SystemTime,
}

impl fmt::Debug for DuoClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DuoClient")
            .field("cfg", &self.cfg)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl DuoClient {
    /// A client for `cfg`, after checking every field (the error names the bad one).
    pub fn new(cfg: DuoConfig) -> Result<Self, DuoError> {
        cfg.validate()?;
        let version = SigVersion::from_number(cfg.signature_version).ok_or(DuoError::Config {
            field: "duo.signature_version",
            reason: "must be 2 or 5".to_string(),
        })?;
        Ok(Self {
            version,
            endpoint: cfg.endpoint(),
            agent: http::agent(&cfg),
            clock: SystemTime::now,
            cfg,
        })
    }

    /// Uses `clock` instead of the system clock for the `Date` header (tests: a skewed
    /// clock must be refused by Duo).
    pub fn with_clock(mut self, clock: fn() -> SystemTime) -> Self {
        self.clock = clock;
        self
    }

    /// The configuration (its `Debug` hides the secret key).
    pub fn config(&self) -> &DuoConfig {
        &self.cfg
    }

    /// `GET /auth/v2/check`: whether the keys and the signature are accepted; Duo's time
    /// (UNIX seconds) if so.
    pub fn check(&self) -> Result<i64, DuoError> {
        let t: types::Time = self.call("GET", "/auth/v2/check", &[], Retry::All)?;
        Ok(t.time)
    }

    /// `POST /auth/v2/preauth`: whether `username` must, may skip or cannot authenticate,
    /// and with which devices.
    pub fn preauth(&self, username: &str) -> Result<Preauth, DuoError> {
        check_username(username)?;
        let params = [("username".to_string(), username.to_string())];
        self.call("POST", "/auth/v2/preauth", &params, Retry::All)
    }

    /// `POST /auth/v2/auth` with `factor=push`, `async=1`: sends a Duo Push to `device`
    /// (`"auto"` or a device id from [`DuoClient::preauth`]) showing `pushinfo` (key/value
    /// pairs, sent URL-encoded as Duo documents) and, if given, `push_type` as the title
    /// (Duo's `type`, default "Login request"). Returns the transaction id to poll with
    /// [`DuoClient::auth_status`].
    ///
    /// Retried only when Duo cannot have sent the push (429, no connection), so the user
    /// never gets it twice; other failures are returned at once.
    pub fn push(
        &self,
        username: &str,
        device: &str,
        pushinfo: &[(String, String)],
        push_type: Option<&str>,
    ) -> Result<String, DuoError> {
        check_username(username)?;
        if device.is_empty() {
            return Err(DuoError::Invalid(
                "device is empty (\"auto\" or a device id)".to_string(),
            ));
        }
        let info = encode_pushinfo(pushinfo);
        if info.len() > MAX_PUSHINFO_BYTES {
            return Err(DuoError::Invalid(format!(
                "pushinfo is {} bytes URL-encoded; Duo takes fewer than 20,000",
                info.len()
            )));
        }
        let mut params = vec![
            ("username".to_string(), username.to_string()),
            ("factor".to_string(), "push".to_string()),
            ("device".to_string(), device.to_string()),
            ("async".to_string(), "1".to_string()),
        ];
        if !info.is_empty() {
            params.push(("pushinfo".to_string(), info));
        }
        if let Some(t) = push_type {
            params.push(("type".to_string(), t.to_string()));
        }
        let a: types::AuthAsync = self.call("POST", "/auth/v2/auth", &params, Retry::Unsent)?;
        if a.txid.is_empty() {
            return Err(DuoError::BadResponse {
                status: 200,
                why: "empty txid".to_string(),
            });
        }
        tracing::info!(username, txid = %a.txid, "duo: push sent");
        Ok(a.txid)
    }

    /// `GET /auth/v2/auth_status`: where the push `txid` stands (Duo answers at once for
    /// a final state and may hold the request a little while it is waiting).
    pub fn auth_status(&self, txid: &str) -> Result<AuthStatus, DuoError> {
        if txid.is_empty() {
            return Err(DuoError::Invalid("txid is empty".to_string()));
        }
        let params = [("txid".to_string(), txid.to_string())];
        self.call("GET", "/auth/v2/auth_status", &params, Retry::All)
    }
}

fn check_username(username: &str) -> Result<(), DuoError> {
    if username.is_empty() {
        return Err(DuoError::Invalid("username is empty".to_string()));
    }
    Ok(())
}

/// `pushinfo` as Duo takes it: a URL-encoded query string, `k1=v1&k2=v2`, in the given
/// order (which is how the app shows it). Keys and values are encoded with [`encode`].
pub fn encode_pushinfo(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}
