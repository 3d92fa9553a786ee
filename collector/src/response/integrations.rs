//! The outside world a playbook reaches: Duo, ServiceNow, Splunk SOAR, webhook, e-mail.
//! The engine sees them through [`Integrations`], so the run state machine is tested with
//! a fake and runs with the real clients (`cordon-connectors`).
use serde_json::Value;

use super::{playbook::Available, trigger::AlertFacts};

/// A failed call: `retryable` when trying again later can help (429, 5xx, timeouts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ActionError {
    pub retryable: bool,
    pub message: String,
}

impl ActionError {
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            message: message.into(),
        }
    }

    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            message: message.into(),
        }
    }
}

/// Duo's answer to a push, so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DuoAnswer {
    Waiting,
    Allow,
    Deny(String),
}

/// An incident as ServiceNow numbers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub sys_id: String,
    pub number: String,
}

/// What a new incident says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentText<'a> {
    pub correlation_id: &'a str,
    pub short_description: &'a str,
    pub description: &'a str,
    pub urgency: u8,
    pub impact: u8,
    /// The configuration item: the host's name.
    pub cmdb_ci: &'a str,
}

pub trait Integrations: Send {
    /// Which integrations are configured (playbooks using others are refused at load).
    fn available(&self) -> Available;
    /// Sends a Duo push to `user` (after a preauth); returns the transaction id.
    fn duo_push(&self, user: &str, pushinfo: &[(String, String)]) -> Result<String, ActionError>;
    fn duo_status(&self, txid: &str) -> Result<DuoAnswer, ActionError>;
    /// Opens the incident, or finds the one already opened for `correlation_id`.
    fn ticket_create(&self, t: &IncidentText<'_>) -> Result<Incident, ActionError>;
    fn ticket_note(&self, sys_id: &str, text: &str) -> Result<(), ActionError>;
    fn ticket_resolve(&self, sys_id: &str, notes: &str) -> Result<(), ActionError>;
    /// One container per alert key with an artifact for the flow; returns the container id.
    fn soar_case(&self, facts: &AlertFacts, label: Option<&str>) -> Result<u64, ActionError>;
    fn webhook(&self, event: &Value) -> Result<(), ActionError>;
    fn email(&self, subject: &str, body: &str) -> Result<(), ActionError>;
}

/// No integration configured: playbooks may still notify the outputs, isolate, release,
/// wait and ask for approval on the console or the CLI.
pub struct NoIntegrations {
    pub link: bool,
}

fn absent<T>(what: &str) -> Result<T, ActionError> {
    Err(ActionError::permanent(format!("{what} is not configured")))
}

impl Integrations for NoIntegrations {
    fn available(&self) -> Available {
        Available {
            link: self.link,
            ..Available::default()
        }
    }
    fn duo_push(&self, _: &str, _: &[(String, String)]) -> Result<String, ActionError> {
        absent("Duo")
    }
    fn duo_status(&self, _: &str) -> Result<DuoAnswer, ActionError> {
        absent("Duo")
    }
    fn ticket_create(&self, _: &IncidentText<'_>) -> Result<Incident, ActionError> {
        absent("ServiceNow")
    }
    fn ticket_note(&self, _: &str, _: &str) -> Result<(), ActionError> {
        absent("ServiceNow")
    }
    fn ticket_resolve(&self, _: &str, _: &str) -> Result<(), ActionError> {
        absent("ServiceNow")
    }
    fn soar_case(&self, _: &AlertFacts, _: Option<&str>) -> Result<u64, ActionError> {
        absent("Splunk SOAR")
    }
    fn webhook(&self, _: &Value) -> Result<(), ActionError> {
        absent("the webhook")
    }
    fn email(&self, _: &str, _: &str) -> Result<(), ActionError> {
        absent("e-mail")
    }
}
