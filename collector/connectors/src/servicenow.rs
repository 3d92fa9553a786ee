//! ServiceNow incidents through the Table API (`/api/now/table/<table>`): one incident
//! per correlation id (the alert key) — the client always queries by `correlation_id`
//! before it creates, also when it retries a create whose answer was lost — work notes
//! as a run progresses, and resolution (`state`, `close_code`, `close_notes`).
//!
//! Basic auth or OAuth (password grant, token cached until expiry and fetched again once
//! after a 401). A 429's `Retry-After` is honoured (capped), 5xx and connection errors
//! are retried with backoff, 400/401/403/404 are permanent errors carrying ServiceNow's
//! `error.message` and `error.detail`.
mod client;
mod config;
mod wire;

use std::time::Duration;

pub use client::SnowClient;
pub use config::{SnowAuth, SnowConfig};

/// What a new incident says. `assignment_group` and `caller_id` come from
/// [`SnowConfig`]; `correlation_id` is the argument of
/// [`SnowClient::ensure_incident`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IncidentFields {
    /// One line (ServiceNow shows 160 characters).
    pub short_description: String,
    /// The full text.
    pub description: String,
    /// 1 (high) to 3 (low).
    pub urgency: u8,
    /// 1 (high) to 3 (low).
    pub impact: u8,
    /// The configuration item: a `cmdb_ci` sys_id or name (the host), if known.
    pub cmdb_ci: Option<String>,
}

/// The incident [`SnowClient::ensure_incident`] found or opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incident {
    /// 32 hex digits, the record's key in every later call.
    pub sys_id: String,
    /// The human number, e.g. `INC0010001`.
    pub number: String,
    /// True when this call created it, false when it already existed.
    pub created: bool,
}

/// An incident as read back by [`SnowClient::get`].
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentRecord {
    pub sys_id: String,
    pub number: String,
    /// The state value, e.g. `1` (New) or `6` (Resolved).
    pub state: String,
    pub correlation_id: String,
    pub short_description: String,
    pub close_code: String,
    pub close_notes: String,
    /// Every field as ServiceNow returned it.
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// Why a ServiceNow call failed. [`SnowError::is_retryable`] says whether trying the
/// same call later can help.
#[derive(Debug, thiserror::Error)]
pub enum SnowError {
    /// The configuration or an argument is wrong (names the field). Permanent.
    #[error("{0}")]
    Config(String),
    /// ServiceNow refused the request (400, 401, 403, 404, ...). Permanent.
    #[error("servicenow {op}: HTTP {status}: {message}{}", detail_suffix(detail))]
    Rejected {
        op: &'static str,
        status: u16,
        /// ServiceNow's `error.message`, or the start of the body.
        message: String,
        /// ServiceNow's `error.detail`.
        detail: String,
    },
    /// Still failing after every retry (429, 5xx, connection errors). Retryable.
    #[error("servicenow {op}: unavailable after {attempts} attempt(s): {last}")]
    Unavailable {
        op: &'static str,
        attempts: u32,
        last: String,
        /// The server's last `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// A success whose body is not what the Table API returns. Permanent.
    #[error("servicenow {op}: unexpected answer: {why}")]
    Protocol { op: &'static str, why: String },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

impl SnowError {
    /// True when the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}
