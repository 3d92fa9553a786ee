//! The integrations the configuration asks for, on the `cordon-connectors` clients.
use cordon_connectors::{
    duo::{AuthResult, DuoClient, DuoError, PreauthResult},
    notify::{Mailer, Webhook},
    servicenow::{IncidentFields, SnowClient},
    soar::{ArtifactSpec, ContainerSpec, FlowCef, SoarClient},
};
use serde_json::Value;

use super::{
    config::ResponseConfig,
    integrations::{ActionError, DuoAnswer, Incident, IncidentText, Integrations},
    playbook::Available,
    trigger::AlertFacts,
};

/// The configured clients; an absent one answers that it is not configured.
pub struct Connectors {
    duo: Option<DuoClient>,
    snow: Option<SnowClient>,
    soar: Option<SoarClient>,
    webhook: Option<Webhook>,
    mail: Option<Mailer>,
    link: bool,
}

/// A client for an optional section, or an error naming it.
fn client<C, T, E: std::fmt::Display>(
    cfg: &Option<C>,
    section: &str,
    new: impl FnOnce(C) -> Result<T, E>,
) -> anyhow::Result<Option<T>>
where
    C: Clone,
{
    cfg.clone()
        .map(new)
        .transpose()
        .map_err(|e| anyhow::anyhow!("[response.{section}]: {e}"))
}

pub fn integrations(cfg: &ResponseConfig) -> anyhow::Result<Box<dyn Integrations>> {
    Ok(Box::new(Connectors {
        duo: client(&cfg.duo, "duo", DuoClient::new)?,
        snow: client(&cfg.servicenow, "servicenow", SnowClient::new)?,
        soar: client(&cfg.soar, "soar", SoarClient::new)?,
        webhook: client(&cfg.webhook, "webhook", Webhook::new)?,
        mail: client(&cfg.email, "email", Mailer::new)?,
        link: !cfg.public_url.is_empty(),
    }))
}

fn duo_err(e: DuoError) -> ActionError {
    ActionError {
        retryable: e.is_retryable(),
        message: format!("Duo: {e}"),
    }
}

fn absent<T>(what: &str) -> Result<T, ActionError> {
    Err(ActionError::permanent(format!("{what} is not configured")))
}

impl Integrations for Connectors {
    fn available(&self) -> Available {
        Available {
            duo: self.duo.is_some(),
            servicenow: self.snow.is_some(),
            soar: self.soar.is_some(),
            webhook: self.webhook.is_some(),
            email: self.mail.is_some(),
            link: self.link,
        }
    }

    fn duo_push(&self, user: &str, pushinfo: &[(String, String)]) -> Result<String, ActionError> {
        let Some(duo) = &self.duo else {
            return absent("Duo");
        };
        let pre = duo.preauth(user).map_err(duo_err)?;
        match pre.result {
            PreauthResult::Auth => {}
            other => {
                return Err(ActionError::permanent(format!(
                    "Duo preauth for {user}: {other:?} ({}); an approval needs a push",
                    pre.status_msg
                )));
            }
        }
        let device = pre
            .devices
            .iter()
            .find(|d| d.can_push())
            .map_or("auto".to_string(), |d| d.device.clone());
        duo.push(user, &device, pushinfo, Some("Cordon approval"))
            .map_err(duo_err)
    }

    fn duo_status(&self, txid: &str) -> Result<DuoAnswer, ActionError> {
        let Some(duo) = &self.duo else {
            return absent("Duo");
        };
        let s = duo.auth_status(txid).map_err(duo_err)?;
        Ok(match s.result {
            AuthResult::Allow => DuoAnswer::Allow,
            AuthResult::Deny => DuoAnswer::Deny(format!("{}: {}", s.status, s.status_msg)),
            AuthResult::Waiting | AuthResult::Unknown => DuoAnswer::Waiting,
        })
    }

    fn ticket_create(&self, t: &IncidentText<'_>) -> Result<Incident, ActionError> {
        let Some(snow) = &self.snow else {
            return absent("ServiceNow");
        };
        let f = IncidentFields {
            short_description: t.short_description.to_string(),
            description: t.description.to_string(),
            urgency: t.urgency,
            impact: t.impact,
            cmdb_ci: Some(t.cmdb_ci.to_string()),
        };
        let inc = snow
            .ensure_incident(t.correlation_id, &f)
            .map_err(|e| failed("ServiceNow", e.is_retryable(), e))?;
        Ok(Incident {
            sys_id: inc.sys_id,
            number: inc.number,
        })
    }

    fn ticket_note(&self, sys_id: &str, text: &str) -> Result<(), ActionError> {
        let Some(snow) = &self.snow else {
            return absent("ServiceNow");
        };
        snow.add_work_note(sys_id, text)
            .map_err(|e| failed("ServiceNow", e.is_retryable(), e))
    }

    fn ticket_resolve(&self, sys_id: &str, notes: &str) -> Result<(), ActionError> {
        let Some(snow) = &self.snow else {
            return absent("ServiceNow");
        };
        snow.resolve(sys_id, None, notes)
            .map_err(|e| failed("ServiceNow", e.is_retryable(), e))
    }

    fn soar_case(&self, f: &AlertFacts, label: Option<&str>) -> Result<u64, ActionError> {
        let Some(soar) = &self.soar else {
            return absent("Splunk SOAR");
        };
        let severity = match f.severity.as_str() {
            "LOW" => "low",
            "MEDIUM" => "medium",
            _ => "high",
        };
        let err =
            |e: cordon_connectors::soar::SoarError| failed("Splunk SOAR", e.is_retryable(), e);
        let id = soar
            .ensure_container(&ContainerSpec {
                name: format!("Cordon: {} on {}", f.rule, f.host),
                description: f.alert_text.clone(),
                severity: severity.into(),
                label: label.map(str::to_string),
                source_data_identifier: f.key_id.clone(),
            })
            .map_err(err)?;
        let cef = FlowCef {
            source_address: f.local_ip.clone(),
            source_port: None,
            destination_address: f.remote_ip.clone(),
            destination_port: f.remote_port,
            transport_protocol: f.proto.to_ascii_uppercase(),
            process_name: f.exe.rsplit('/').next().map(str::to_string),
            process_id: None,
            process_path: Some(f.exe.clone()),
            user_name: None,
            rule: Some(f.rule.clone()),
        }
        .to_cef();
        soar.add_artifact(
            id,
            &ArtifactSpec {
                name: format!("flow {} -> {}", f.local_ip, f.remote),
                label: label.unwrap_or("event").to_string(),
                cef,
                source_data_identifier: format!("{}:flow", f.key_id),
                severity: severity.into(),
                run_automation: false,
            },
        )
        .map_err(err)?;
        Ok(id)
    }

    fn webhook(&self, event: &Value) -> Result<(), ActionError> {
        let Some(w) = &self.webhook else {
            return absent("the webhook");
        };
        w.send(event)
            .map_err(|e| failed("webhook", e.is_retryable(), e))
    }

    fn email(&self, subject: &str, body: &str) -> Result<(), ActionError> {
        let Some(m) = &self.mail else {
            return absent("e-mail");
        };
        m.send(subject, body)
            .map_err(|e| failed("e-mail", e.is_retryable(), e))
    }
}

fn failed(what: &str, retryable: bool, e: impl std::fmt::Display) -> ActionError {
    ActionError {
        retryable,
        message: format!("{what}: {e}"),
    }
}
