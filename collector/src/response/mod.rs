//! Response automation: playbooks (`playbook`) started by alerts (`trigger`), run step by
//! step by the engine (`engine`), durable in the store, with the outside world reached
//! through [`integrations::Integrations`].
pub mod approval_link;
pub mod config;
pub mod connect;
pub mod engine;
pub mod integrations;
pub mod playbook;
pub mod template;
pub mod trigger;

#[cfg(test)]
mod tests;
