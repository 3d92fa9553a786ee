//! Querying hosts (what `GET /api/v1/hosts` and `cordon hosts` serve).
use serde::Serialize;

use super::StoreError;

/// One host: an agent that has connected at least once.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HostRow {
    /// The agent id (its certificate's common name).
    pub id: String,
    pub host_name: String,
    pub agent_version: String,
    /// The capture the agent runs: "ebpf" or "procfs".
    pub capture: String,
    /// Unix ns.
    pub first_seen_ns: u64,
    /// Unix ns of the last connection.
    pub last_seen_ns: u64,
    /// Highest flow batch stored for it.
    pub last_seq: u64,
    pub revoked: bool,
    /// Unix ns of the latest inventory, if one arrived.
    pub inventory_updated_ns: Option<u64>,
    /// Whether the host is isolated, as its agent last reported.
    pub isolated: bool,
    pub isolated_since_ns: Option<u64>,
    pub isolated_by: Option<String>,
    pub isolation_reason: Option<String>,
    pub isolation_expires_ns: Option<u64>,
    /// nftables, ebpf or none, as the agent reported.
    pub enforcement_backend: Option<String>,
    /// The collector node the agent is connected to now (absent: not connected, as far
    /// as the store knows; a node that died leaves its name here until the agent
    /// reconnects elsewhere — compare the node's heartbeat).
    pub node: Option<String>,
    /// Unix ns since when it is connected there.
    pub connected_ns: Option<u64>,
}

pub trait HostStore {
    /// Every host, by name.
    fn hosts(&self) -> Result<Vec<HostRow>, StoreError>;

    /// One host by agent id, or else by host name when exactly one host has it.
    fn host(&self, id_or_name: &str) -> Result<Option<HostRow>, StoreError>;

    /// Records that agent `agent_id` connected; returns its host id and the highest batch
    /// sequence number stored for it.
    fn host_connected(
        &mut self,
        agent_id: &str,
        host_name: &str,
        agent_version: &str,
        capture: &str,
        now_ns: u64,
    ) -> Result<(i64, u64), StoreError>;

    /// Whether agent `agent_id` was revoked (unknown agents are not).
    fn is_revoked(&self, agent_id: &str) -> Result<bool, StoreError>;

    /// Refuses agent `agent_id` from now on (its certificate stays valid cryptographically,
    /// so the collector checks this at every connection). Returns false if unknown.
    fn revoke(&mut self, agent_id: &str) -> Result<bool, StoreError>;

    /// Stores the latest inventory of an agent (the encoded message).
    fn store_inventory(
        &mut self,
        agent_id: &str,
        body: &[u8],
        now_ns: u64,
    ) -> Result<(), StoreError>;

    /// The latest inventory an agent sent, if any.
    fn inventory(&self, agent_id: &str) -> Result<Option<cordon_wire::Inventory>, StoreError>;
}
