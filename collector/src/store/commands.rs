//! Commands to agents (isolate, release), each host's enforcement state as its agent
//! reports it, and the audit log of every change.
use serde::Serialize;

use super::StoreError;

/// A command to queue for a host.
#[derive(Clone, Debug)]
pub struct NewCommand {
    /// isolate or release.
    pub kind: &'static str,
    /// What the agent needs (reason, expiry, allow-list), as JSON.
    pub body: serde_json::Value,
    pub by: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CommandRow {
    pub id: i64,
    pub host: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    pub created_ns: u64,
    pub created_by: String,
    /// pending (not yet delivered), sent, done or failed.
    pub state: String,
    pub sent_ns: Option<u64>,
    pub done_ns: Option<u64>,
    /// What the agent answered.
    pub result: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditRow {
    pub id: i64,
    pub ts_ns: u64,
    pub actor: String,
    pub action: String,
    pub target: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// What an agent reports about its host's enforcement.
#[derive(Clone, Debug, PartialEq)]
pub struct HostEnforcement<'a> {
    pub backend: &'a str,
    pub isolated: bool,
    pub since_ns: u64,
    pub expires_ns: u64,
    pub by: &'a str,
    pub reason: &'a str,
}

pub trait CommandStore {
    /// Appends to the audit log.
    fn audit(
        &mut self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &serde_json::Value,
        now_ns: u64,
    ) -> Result<(), StoreError>;

    /// The audit log, newest first.
    fn audit_log(&self, since_ns: u64, limit: usize) -> Result<Vec<AuditRow>, StoreError>;

    /// Queues a command for agent `agent_id` and audits it; `None` if there is no such host.
    fn create_command(
        &mut self,
        agent_id: &str,
        c: &NewCommand,
        now_ns: u64,
    ) -> Result<Option<CommandRow>, StoreError>;

    /// Commands of an agent not yet answered, oldest first: not yet sent ones, and with
    /// `resend` also those sent on an earlier connection that was not answered.
    fn open_commands(&self, agent_id: &str, resend: bool) -> Result<Vec<CommandRow>, StoreError>;

    /// Recent commands (of one host, if given), newest first.
    fn commands(&self, agent_id: Option<&str>, limit: usize)
    -> Result<Vec<CommandRow>, StoreError>;

    fn mark_sent(&mut self, id: i64, now_ns: u64) -> Result<(), StoreError>;

    /// Records an agent's answer to command `id` (only its own commands) and audits it.
    fn command_result(
        &mut self,
        agent_id: &str,
        id: i64,
        ok: bool,
        message: &str,
        now_ns: u64,
    ) -> Result<Option<CommandRow>, StoreError>;

    /// Stores what an agent reports about its enforcement; audits a change of state.
    fn set_enforcement(
        &mut self,
        agent_id: &str,
        e: &HostEnforcement<'_>,
        now_ns: u64,
    ) -> Result<(), StoreError>;
}
