//! The integrations the configuration asks for (Duo, ServiceNow, SOAR, webhook, e-mail).
use super::{
    config::ResponseConfig,
    integrations::{Integrations, NoIntegrations},
};

pub fn integrations(cfg: &ResponseConfig) -> anyhow::Result<Box<dyn Integrations>> {
    Ok(Box::new(NoIntegrations {
        link: !cfg.public_url.is_empty(),
    }))
}
