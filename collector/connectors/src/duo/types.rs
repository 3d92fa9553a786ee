//! What the Auth API answers, and the client's errors.
use serde::Deserialize;

/// A Duo client error. [`DuoError::is_retryable`] says whether trying again later can help.
#[derive(Debug, thiserror::Error)]
pub enum DuoError {
    /// A configuration field is wrong (named as in the configuration file).
    #[error("{field}: {reason}")]
    Config {
        /// The field, e.g. `duo.api_host`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An argument of a call is wrong (empty user name, pushinfo too long, ...).
    #[error("duo: {0}")]
    Invalid(String),
    /// Duo answered 429 Too Many Requests on every attempt. Retryable, later.
    #[error("duo: rate limited (HTTP 429) on all {attempts} attempts{}", code_msg(*.code, .message))]
    RateLimited {
        /// How many requests were sent.
        attempts: u32,
        /// Duo's error code (42901).
        code: Option<u32>,
        /// Duo's message.
        message: String,
    },
    /// Duo answered with a 5xx status. Retryable.
    #[error("duo: HTTP {status}{}", code_msg(*.code, .message))]
    Unavailable {
        /// The HTTP status.
        status: u16,
        /// Duo's error code, if the answer had one.
        code: Option<u32>,
        /// Duo's message, or the start of the body.
        message: String,
    },
    /// No answer from Duo: connection refused or reset, TLS failure, timeout. Retryable.
    #[error("duo: transport: {0}")]
    Transport(String),
    /// Duo refused the request (400, 401, 403, 404, ...): permanent until something
    /// (keys, clock, parameters) is fixed.
    #[error("duo: HTTP {status}{}{}", code_msg(*.code, .message), detail_msg(.detail))]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// Duo's error code, e.g. 40103 for a bad signature.
        code: Option<u32>,
        /// Duo's message.
        message: String,
        /// Duo's `message_detail` (often the offending parameter).
        detail: Option<String>,
    },
    /// The answer was not what the Auth API documents (not JSON, no `stat`, a missing
    /// field, too large). Not retryable.
    #[error("duo: unexpected answer (HTTP {status}): {why}")]
    BadResponse {
        /// The HTTP status.
        status: u16,
        /// What was wrong.
        why: String,
    },
}

fn code_msg(code: Option<u32>, message: &str) -> String {
    match (code, message.is_empty()) {
        (Some(c), false) => format!(", code {c}: {message}"),
        (Some(c), true) => format!(", code {c}"),
        (None, false) => format!(": {message}"),
        (None, true) => String::new(),
    }
}

fn detail_msg(detail: &Option<String>) -> String {
    detail
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

impl DuoError {
    /// Whether the same request may succeed later: rate limiting, 5xx, no connection.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Unavailable { .. } | Self::Transport(_)
        )
    }

    /// Duo's numeric error code, when the answer had one.
    pub fn duo_code(&self) -> Option<u32> {
        match self {
            Self::RateLimited { code, .. }
            | Self::Unavailable { code, .. }
            | Self::Rejected { code, .. } => *code,
            _ => None,
        }
    }

    /// The HTTP status of Duo's answer, when there was one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::RateLimited { .. } => Some(429),
            Self::Unavailable { status, .. }
            | Self::Rejected { status, .. }
            | Self::BadResponse { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// `/auth/v2/preauth`'s verdict on a user.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PreauthResult {
    /// The user must authenticate with a second factor (`devices` lists them).
    Auth,
    /// The user may go on without a second factor (bypass).
    Allow,
    /// The user is not allowed (locked out, or denied by policy).
    Deny,
    /// The user is not enrolled (`enroll_portal_url` may say where to enroll).
    Enroll,
    /// A value this client does not know (Duo may add some).
    #[serde(other)]
    Unknown,
}

/// One of the user's devices, from `/auth/v2/preauth`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Device {
    /// The device id, to pass as `device` to [`super::DuoClient::push`].
    pub device: String,
    /// `phone`, `token`, `desktopbrowser`, ...
    #[serde(rename = "type", default)]
    pub device_type: String,
    /// What the device can do: `auto`, `push`, `sms`, `phone`, `mobile_otp`, ...
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The name the user gave it.
    #[serde(default)]
    pub name: Option<String>,
    /// A short description for display, e.g. `iOS (XXX-XXX-1234)`.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The (masked) phone number.
    #[serde(default)]
    pub number: Option<String>,
}

impl Device {
    /// Whether a Duo Push can be sent to this device.
    pub fn can_push(&self) -> bool {
        self.capabilities.iter().any(|c| c == "push")
    }
}

/// The answer of `/auth/v2/preauth`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Preauth {
    /// What to do with this user.
    pub result: PreauthResult,
    /// A human-readable explanation.
    #[serde(default)]
    pub status_msg: String,
    /// The user's devices (when `result` is `auth`).
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Where the user can enroll (when `result` is `enroll`).
    #[serde(default)]
    pub enroll_portal_url: Option<String>,
}

impl Preauth {
    /// The first device that can receive a push.
    pub fn push_device(&self) -> Option<&Device> {
        self.devices.iter().find(|d| d.can_push())
    }
}

/// Where an asynchronous authentication stands.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthResult {
    /// Not answered yet: poll again.
    Waiting,
    /// Approved.
    Allow,
    /// Denied (by the user, by policy, or timed out at Duo: see `status`).
    Deny,
    /// A value this client does not know.
    #[serde(other)]
    Unknown,
}

/// The answer of `/auth/v2/auth_status` (and of a synchronous `/auth/v2/auth`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AuthStatus {
    /// The outcome so far.
    pub result: AuthResult,
    /// A machine-readable state: `pushed`, `allow`, `deny`, `fraud`, `timeout`, ...
    #[serde(default)]
    pub status: String,
    /// A human-readable state.
    #[serde(default)]
    pub status_msg: String,
}

/// The answer of `/auth/v2/auth` with `async=1`.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct AuthAsync {
    pub txid: String,
}

/// The answer of `/auth/v2/check` and `/auth/v2/ping`.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Time {
    pub time: i64,
}
