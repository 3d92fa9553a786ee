//! Splunk SOAR (Phantom) over its REST API: one container per incident
//! (`source_data_identifier` = the alert key, so that SOAR's duplicate check returns the
//! existing container instead of opening a second one) and CEF artifacts for the flows.
//! Authenticated with an automation user's `ph-auth-token` header.
//!
//! SOAR answers a create with `{"success": true, "id": N}`, a failure with
//! `{"failed": true, "message": "..."}`, and a duplicate with `{"failed": true,
//! "existing_container_id": N}` (artifacts: `existing_artifact_id`); the client takes a
//! duplicate as success whatever the HTTP status.
use std::{fmt, time::Duration};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::notify::http::{self, NoReply, Sleep};

/// Configuration of the SOAR client. [`SoarConfig::validate`] names the offending field
/// (`soar.<field>: ...`).
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SoarConfig {
    /// Base URL, e.g. `https://soar.example.net` (the client appends `/rest/...`).
    pub base_url: String,
    /// An automation user's token, sent as `ph-auth-token`. Secret: redacted in `Debug`.
    pub token: String,
    /// Label of containers whose spec has none (a label configured in SOAR).
    #[serde(default = "default_label")]
    pub label: String,
    /// Verify SOAR's certificate (public roots). Turning it off is for labs only.
    #[serde(default = "default_true")]
    pub verify_tls: bool,
    /// Timeout of one request, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries after a 5xx, 408, 429 or connection error (0 = try once).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First backoff delay, in milliseconds; doubles on each retry (with jitter).
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
}

fn default_label() -> String {
    "events".into()
}
fn default_true() -> bool {
    true
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

impl fmt::Debug for SoarConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoarConfig")
            .field("base_url", &self.base_url)
            .field("token", &"<redacted>")
            .field("label", &self.label)
            .field("verify_tls", &self.verify_tls)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_retries", &self.max_retries)
            .field("backoff_initial_ms", &self.backoff_initial_ms)
            .finish()
    }
}

fn bad(field: &str, msg: impl fmt::Display) -> SoarError {
    SoarError::Config(format!("soar.{field}: {msg}"))
}

impl SoarConfig {
    /// A config with every default and the two required fields.
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            token: token.into(),
            label: default_label(),
            verify_tls: true,
            timeout_ms: default_timeout_ms(),
            max_retries: default_max_retries(),
            backoff_initial_ms: default_backoff_initial_ms(),
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), SoarError> {
        http::base_url(&self.base_url).map_err(|e| bad("base_url", e))?;
        if self.token.is_empty() || !self.token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(bad("token", "required: printable ASCII without spaces"));
        }
        check_label(&self.label).map_err(|e| bad("label", e))?;
        if !(100..=600_000).contains(&self.timeout_ms) {
            return Err(bad("timeout_ms", "must be 100 to 600000"));
        }
        if self.max_retries > 20 {
            return Err(bad("max_retries", "must be 0 to 20"));
        }
        if !(1..=600_000).contains(&self.backoff_initial_ms) {
            return Err(bad("backoff_initial_ms", "must be 1 to 600000"));
        }
        Ok(())
    }
}

/// SOAR labels: lower-case letters, digits, '_' and '-'.
fn check_label(l: &str) -> Result<(), &'static str> {
    let ok = !l.is_empty()
        && l.len() <= 128
        && l.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err("1 to 128 of a-z, 0-9, '_' and '-'")
    }
}

/// A container to create (or find by `source_data_identifier`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    pub name: String,
    pub description: String,
    /// A severity defined in SOAR: `low`, `medium` or `high` out of the box.
    pub severity: String,
    /// The container label; `None` uses [`SoarConfig::label`].
    pub label: Option<String>,
    /// The alert key: SOAR refuses a second container with the same one.
    pub source_data_identifier: String,
}

/// An artifact to add to a container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ArtifactSpec {
    pub name: String,
    pub label: String,
    /// CEF fields; [`FlowCef`] builds them for a flow.
    pub cef: Map<String, Value>,
    /// Unique within the container (e.g. the flow's key).
    pub source_data_identifier: String,
    pub severity: String,
    /// Let SOAR run playbooks now: set it on the last artifact of a batch only.
    pub run_automation: bool,
}

/// A flow and its process, as CEF fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowCef {
    pub source_address: String,
    pub source_port: Option<u16>,
    pub destination_address: String,
    pub destination_port: u16,
    /// `TCP` or `UDP`.
    pub transport_protocol: String,
    /// The process's name (comm).
    pub process_name: Option<String>,
    pub process_id: Option<u32>,
    /// The executable's full path.
    pub process_path: Option<String>,
    pub user_name: Option<String>,
    /// The policy rule the flow broke.
    pub rule: Option<String>,
}

impl FlowCef {
    /// CEF keys: `sourceAddress`, `sourcePort`, `destinationAddress`, `destinationPort`,
    /// `transportProtocol`, `sourceProcessName`, `sourceProcessId`, `fileName` and
    /// `filePath` (the executable), `sourceUserName`, and `cs1` = the rule with
    /// `cs1Label` = `cordonRule` (CEF has no key for it).
    pub fn to_cef(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("sourceAddress".into(), self.source_address.clone().into());
        if let Some(p) = self.source_port {
            m.insert("sourcePort".into(), p.into());
        }
        m.insert(
            "destinationAddress".into(),
            self.destination_address.clone().into(),
        );
        m.insert("destinationPort".into(), self.destination_port.into());
        m.insert(
            "transportProtocol".into(),
            self.transport_protocol.clone().into(),
        );
        if let Some(n) = &self.process_name {
            m.insert("sourceProcessName".into(), n.clone().into());
        }
        if let Some(pid) = self.process_id {
            m.insert("sourceProcessId".into(), pid.into());
        }
        if let Some(path) = &self.process_path {
            let file = path.rsplit('/').next().unwrap_or(path);
            m.insert("fileName".into(), file.into());
            m.insert("filePath".into(), path.clone().into());
        }
        if let Some(u) = &self.user_name {
            m.insert("sourceUserName".into(), u.clone().into());
        }
        if let Some(r) = &self.rule {
            m.insert("cs1".into(), r.clone().into());
            m.insert("cs1Label".into(), "cordonRule".into());
        }
        m
    }
}

/// Why a SOAR call failed. [`SoarError::is_retryable`] says whether trying the same call
/// later can help.
#[derive(Debug, thiserror::Error)]
pub enum SoarError {
    /// The configuration or an argument is wrong (names the field). Permanent.
    #[error("{0}")]
    Config(String),
    /// SOAR refused the request (bad token, bad fields). Permanent.
    #[error("soar {op}: HTTP {status}: {message}")]
    Rejected {
        op: &'static str,
        status: u16,
        /// SOAR's `message`, or the start of the body.
        message: String,
    },
    /// Still failing after every retry (5xx, 429, connection errors). Retryable.
    #[error("soar {op}: unavailable after {attempts} attempt(s): {last}")]
    Unavailable {
        op: &'static str,
        attempts: u32,
        last: String,
    },
    /// A success whose body is not what SOAR returns. Permanent.
    #[error("soar {op}: unexpected answer: {why}")]
    Protocol { op: &'static str, why: String },
}

impl SoarError {
    /// True when the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// A blocking SOAR client; share it between threads.
pub struct SoarClient {
    cfg: SoarConfig,
    base: String,
    agent: ureq::Agent,
    sleep: Sleep,
}

impl fmt::Debug for SoarClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoarClient")
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl SoarClient {
    /// Validates `cfg` and builds the client (no request is made yet).
    pub fn new(cfg: SoarConfig) -> Result<Self, SoarError> {
        cfg.validate()?;
        if !cfg.verify_tls {
            tracing::warn!("soar.verify_tls = false: SOAR's certificate is not verified");
        }
        Ok(Self {
            base: http::base_url(&cfg.base_url).map_err(|e| bad("base_url", e))?,
            agent: http::agent(Duration::from_millis(cfg.timeout_ms), cfg.verify_tls),
            cfg,
            sleep: http::thread_sleep(),
        })
    }

    /// Replaces how the client waits between retries.
    pub fn with_sleep(mut self, sleep: Sleep) -> Self {
        self.sleep = sleep;
        self
    }

    /// The id of the container for `c.source_data_identifier`: created, or the existing
    /// one that SOAR names in its duplicate answer.
    pub fn ensure_container(&self, c: &ContainerSpec) -> Result<u64, SoarError> {
        let label = c.label.as_deref().unwrap_or(&self.cfg.label);
        check_label(label).map_err(|e| SoarError::Config(format!("container label: {e}")))?;
        nonempty("container name", &c.name)?;
        nonempty("container severity", &c.severity)?;
        nonempty(
            "container source_data_identifier",
            &c.source_data_identifier,
        )?;
        let body = json!({
            "name": c.name,
            "description": c.description,
            "label": label,
            "severity": c.severity,
            "source_data_identifier": c.source_data_identifier,
        });
        self.create(
            "create container",
            "/rest/container",
            &body,
            "existing_container_id",
        )
    }

    /// Adds an artifact; a duplicate (SOAR's `existing_artifact_id`) counts as added and
    /// its id is returned.
    pub fn add_artifact(&self, container_id: u64, a: &ArtifactSpec) -> Result<u64, SoarError> {
        nonempty("artifact name", &a.name)?;
        nonempty("artifact label", &a.label)?;
        nonempty("artifact source_data_identifier", &a.source_data_identifier)?;
        nonempty("artifact severity", &a.severity)?;
        let body = json!({
            "container_id": container_id,
            "name": a.name,
            "label": a.label,
            "cef": a.cef,
            "source_data_identifier": a.source_data_identifier,
            "severity": a.severity,
            "run_automation": a.run_automation,
        });
        self.create(
            "add artifact",
            "/rest/artifact",
            &body,
            "existing_artifact_id",
        )
    }

    /// SOAR's version (`GET /rest/version`): proves the URL and the token.
    pub fn health(&self) -> Result<String, SoarError> {
        let op = "health";
        let v = self.call(op, None, "/rest/version", None)?;
        v.get("version")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| SoarError::Protocol {
                op,
                why: "no \"version\" in the answer".into(),
            })
    }

    fn create(
        &self,
        op: &'static str,
        path: &str,
        body: &Value,
        existing_key: &str,
    ) -> Result<u64, SoarError> {
        let v = self.call(op, Some(existing_key), path, Some(body))?;
        if let Some(id) = v.get(existing_key).and_then(Value::as_u64) {
            tracing::debug!(op, id, "soar: already there");
            return Ok(id);
        }
        v.get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| SoarError::Protocol {
                op,
                why: "no \"id\" in the answer".into(),
            })
    }

    /// One call with retries. An answer carrying `existing_key` is a success whatever its
    /// status.
    fn call(
        &self,
        op: &'static str,
        existing_key: Option<&str>,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, SoarError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            let req_token = self.cfg.token.as_str();
            let res = match body {
                None => self
                    .agent
                    .get(&url)
                    .header("ph-auth-token", req_token)
                    .header("Accept", "application/json")
                    .call(),
                Some(b) => self
                    .agent
                    .post(&url)
                    .header("ph-auth-token", req_token)
                    .header("Accept", "application/json")
                    .header("Content-Type", "application/json")
                    .send(b.to_string().as_bytes()),
            };
            let why = match http::read(res) {
                Ok(r) => {
                    let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                    if existing_key.is_some_and(|k| v.get(k).and_then(Value::as_u64).is_some()) {
                        return Ok(v);
                    }
                    match r.status {
                        200..=299 if v.is_object() => return Ok(v),
                        200..=299 => {
                            return Err(SoarError::Protocol {
                                op,
                                why: format!("not a JSON object: {}", http::excerpt(&r.body, 200)),
                            });
                        }
                        408 | 429 | 500..=599 => {
                            format!("HTTP {}: {}", r.status, message(&v, &r.body))
                        }
                        status => {
                            return Err(SoarError::Rejected {
                                op,
                                status,
                                message: message(&v, &r.body),
                            });
                        }
                    }
                }
                Err(NoReply::Retryable(why)) => why,
                Err(NoReply::Permanent(why)) => return Err(SoarError::Protocol { op, why }),
            };
            if attempt >= self.cfg.max_retries {
                return Err(SoarError::Unavailable {
                    op,
                    attempts: attempt + 1,
                    last: why,
                });
            }
            let initial = Duration::from_millis(self.cfg.backoff_initial_ms);
            let delay = http::backoff(attempt, initial, initial.saturating_mul(32));
            tracing::warn!(op, attempt, ?delay, why, "soar: retrying");
            (self.sleep)(delay);
            attempt += 1;
        }
    }
}

fn nonempty(what: &str, v: &str) -> Result<(), SoarError> {
    if v.trim().is_empty() {
        Err(SoarError::Config(format!("{what}: required")))
    } else {
        Ok(())
    }
}

/// SOAR's `message`, or the start of the body.
fn message(v: &Value, body: &str) -> String {
    v.get("message")
        .and_then(Value::as_str)
        .map(|m| http::excerpt(m, 500))
        .unwrap_or_else(|| http::excerpt(body, 200))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_cef_uses_cef_names() {
        let f = FlowCef {
            source_address: "10.0.0.1".into(),
            destination_address: "10.0.0.2".into(),
            destination_port: 5432,
            transport_protocol: "TCP".into(),
            process_path: Some("/usr/bin/curl".into()),
            rule: Some("r1".into()),
            ..Default::default()
        };
        let m = f.to_cef();
        assert_eq!(m["destinationPort"], 5432);
        assert_eq!(m["fileName"], "curl");
        assert_eq!(m["filePath"], "/usr/bin/curl");
        assert_eq!(m["cs1Label"], "cordonRule");
        assert!(!m.contains_key("sourcePort"));
    }

    #[test]
    fn config_checks_and_redacts() {
        let c = SoarConfig::new("https://soar.example", "tok en");
        assert!(
            c.validate()
                .expect_err("must be refused")
                .to_string()
                .contains("soar.token")
        );
        let c = SoarConfig::new("https://soar.example", "s3cr3t-token");
        assert!(c.validate().is_ok());
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let mut c = c;
        c.label = "Events".into();
        assert!(
            c.validate()
                .expect_err("must be refused")
                .to_string()
                .contains("soar.label")
        );
    }
}
