//! The integrations the configuration asks for, on the `cordon-connectors` clients.
use cordon_connectors::duo::{AuthResult, DuoClient, DuoError, PreauthResult};
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
    link: bool,
}

pub fn integrations(cfg: &ResponseConfig) -> anyhow::Result<Box<dyn Integrations>> {
    let duo = match &cfg.duo {
        Some(d) => Some(DuoClient::new(d.clone()).map_err(|e| anyhow::anyhow!("[response.duo]: {e}"))?),
        None => None,
    };
    Ok(Box::new(Connectors {
        duo,
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
            link: self.link,
            ..Available::default()
        }
    }

    fn duo_push(&self, user: &str, pushinfo: &[(String, String)]) -> Result<String, ActionError> {
        let Some(duo) = &self.duo else { return absent("Duo") };
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
        duo.push(user, &device, pushinfo, Some("Cordon approval")).map_err(duo_err)
    }

    fn duo_status(&self, txid: &str) -> Result<DuoAnswer, ActionError> {
        let Some(duo) = &self.duo else { return absent("Duo") };
        let s = duo.auth_status(txid).map_err(duo_err)?;
        Ok(match s.result {
            AuthResult::Allow => DuoAnswer::Allow,
            AuthResult::Deny => DuoAnswer::Deny(format!("{}: {}", s.status, s.status_msg)),
            AuthResult::Waiting | AuthResult::Unknown => DuoAnswer::Waiting,
        })
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
