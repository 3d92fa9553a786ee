//! `SnowConfig`: where the ServiceNow instance is, how to log in, and how incidents look.
use std::{fmt, time::Duration};

use serde::Deserialize;

use super::SnowError;
use crate::notify::http;

/// How the client authenticates.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SnowAuth {
    /// HTTP Basic with an integration user (`type = "basic"`).
    Basic {
        /// The ServiceNow user name.
        username: String,
        /// Its password. Secret: redacted in `Debug`, never logged.
        password: String,
    },
    /// OAuth 2.0 password grant against `/oauth_token.do` (`type = "oauth"`): the bearer
    /// token is cached until it expires and fetched again once after a 401.
    #[serde(rename = "oauth")]
    OAuth {
        /// The OAuth application's client id (System OAuth > Application Registry).
        client_id: String,
        /// Its client secret. Secret: redacted in `Debug`, never logged.
        client_secret: String,
        /// The ServiceNow user the token is issued for.
        username: String,
        /// Its password. Secret: redacted in `Debug`, never logged.
        password: String,
    },
}

impl fmt::Debug for SnowAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Self::OAuth {
                client_id,
                username,
                ..
            } => f
                .debug_struct("OAuth")
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

/// Configuration of the ServiceNow Table API client. [`SnowConfig::validate`] names
/// the offending field (`servicenow.<field>: ...`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SnowConfig {
    /// Base URL of the instance, e.g. `https://acme.service-now.com` (the client appends
    /// `/api/now/table/...` and `/oauth_token.do`).
    pub instance_url: String,
    /// Basic or OAuth credentials.
    pub auth: SnowAuth,
    /// The table incidents go to.
    #[serde(default = "default_table")]
    pub table: String,
    /// `assignment_group` of new incidents: a group's sys_id or name.
    #[serde(default)]
    pub assignment_group: Option<String>,
    /// `caller_id` of new incidents: a user's sys_id or user name.
    #[serde(default)]
    pub caller_id: Option<String>,
    /// Timeout of one HTTP request (connect, send, answer), in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries after a 429, a 5xx or a connection error, per call (0 = try once).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First backoff delay, in milliseconds; it doubles on each retry (with jitter).
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Largest backoff delay, in milliseconds.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// A 429's `Retry-After` (seconds) is honoured up to this many seconds.
    #[serde(default = "default_retry_after_max_secs")]
    pub retry_after_max_secs: u64,
    /// The `state` value [`SnowClient::resolve`](super::SnowClient::resolve) sets: `6`
    /// is "Resolved" in the incident state model (`7` is "Closed").
    #[serde(default = "default_resolved_state")]
    pub resolved_state: String,
    /// The `close_code` used when `resolve` is given none. The default, `Solution
    /// provided`, is in the choice list of current releases; older instances use
    /// `Solved (Permanently)`.
    #[serde(default = "default_close_code")]
    pub close_code: String,
}

fn default_table() -> String {
    "incident".into()
}
fn default_timeout_ms() -> u64 {
    10_000
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
    120
}
fn default_resolved_state() -> String {
    "6".into()
}
fn default_close_code() -> String {
    "Solution provided".into()
}

fn bad(field: &str, msg: impl fmt::Display) -> SnowError {
    SnowError::Config(format!("servicenow.{field}: {msg}"))
}

impl SnowConfig {
    /// A config with every default and these two required fields.
    pub fn new(instance_url: impl Into<String>, auth: SnowAuth) -> Self {
        Self {
            instance_url: instance_url.into(),
            auth,
            table: default_table(),
            assignment_group: None,
            caller_id: None,
            timeout_ms: default_timeout_ms(),
            max_retries: default_max_retries(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            retry_after_max_secs: default_retry_after_max_secs(),
            resolved_state: default_resolved_state(),
            close_code: default_close_code(),
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), SnowError> {
        http::base_url(&self.instance_url).map_err(|e| bad("instance_url", e))?;
        let nonempty = |field: &str, v: &str| -> Result<(), SnowError> {
            if v.trim().is_empty() {
                Err(bad(field, "required"))
            } else {
                Ok(())
            }
        };
        match &self.auth {
            SnowAuth::Basic { username, password } => {
                nonempty("auth.username", username)?;
                nonempty("auth.password", password)?;
                if username.contains(':') {
                    return Err(bad("auth.username", "must not contain ':' (HTTP Basic)"));
                }
            }
            SnowAuth::OAuth {
                client_id,
                client_secret,
                username,
                password,
            } => {
                nonempty("auth.client_id", client_id)?;
                nonempty("auth.client_secret", client_secret)?;
                nonempty("auth.username", username)?;
                nonempty("auth.password", password)?;
            }
        }
        let table_ok = !self.table.is_empty()
            && self.table.len() <= 80
            && self
                .table
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !table_ok {
            return Err(bad("table", "1 to 80 of a-z, 0-9 and '_'"));
        }
        if let Some(g) = &self.assignment_group {
            nonempty("assignment_group", g)?;
        }
        if let Some(c) = &self.caller_id {
            nonempty("caller_id", c)?;
        }
        let range = |field: &str, v: u64, lo: u64, hi: u64| -> Result<(), SnowError> {
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
        range("retry_after_max_secs", self.retry_after_max_secs, 0, 3600)?;
        if self.resolved_state.is_empty()
            || !self.resolved_state.chars().all(|c| c.is_ascii_digit())
        {
            return Err(bad("resolved_state", "must be a number, e.g. 6 (Resolved)"));
        }
        nonempty("close_code", &self.close_code)?;
        Ok(())
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}
