//! `[response]` of the collector's configuration.
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseConfig {
    /// Directory of playbook files (`*.yaml`); empty: no playbooks run.
    pub playbook_dir: PathBuf,
    /// This collector's API as approvers reach it (`https://collector.example:7480`), for
    /// one-time approval links; empty: approval by link is not available.
    pub public_url: String,
    /// Duo Auth API, for approvals by push (`[response.duo]`).
    pub duo: Option<cordon_connectors::duo::DuoConfig>,
    /// ServiceNow Table API, for incidents (`[response.servicenow]`).
    pub servicenow: Option<cordon_connectors::servicenow::SnowConfig>,
    /// Splunk SOAR, for containers and artifacts (`[response.soar]`).
    pub soar: Option<cordon_connectors::soar::SoarConfig>,
    /// A webhook receiving signed JSON notifications (`[response.webhook]`).
    pub webhook: Option<cordon_connectors::notify::WebhookConfig>,
    /// E-mail over SMTP (`[response.email]`).
    pub email: Option<cordon_connectors::notify::SmtpConfig>,
}

impl ResponseConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !self.playbook_dir.as_os_str().is_empty() && !self.playbook_dir.is_absolute() {
            return Err("field `response.playbook_dir`: must be an absolute path".into());
        }
        let u = &self.public_url;
        if !(u.is_empty() || u.starts_with("http://") || u.starts_with("https://")) {
            return Err(format!(
                "field `response.public_url`: `{u}`: an http:// or https:// URL"
            ));
        }
        if let Some(d) = &self.duo {
            d.validate().map_err(|e| format!("[response.duo]: {e}"))?;
        }
        if let Some(c) = &self.servicenow {
            c.validate()
                .map_err(|e| format!("[response.servicenow]: {e}"))?;
        }
        if let Some(c) = &self.soar {
            c.validate().map_err(|e| format!("[response.soar]: {e}"))?;
        }
        if let Some(c) = &self.webhook {
            c.validate()
                .map_err(|e| format!("[response.webhook]: {e}"))?;
        }
        if let Some(c) = &self.email {
            c.validate().map_err(|e| format!("[response.email]: {e}"))?;
        }
        Ok(())
    }
}
