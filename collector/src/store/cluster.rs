//! Coordination state the collectors of a cluster share through the store: leases (one
//! holder of a named job at a time: an output's delivery, the playbook engine's intake,
//! retention), the nodes' heartbeats, and which node each agent is connected to. A single
//! collector uses the same calls; it simply always gets its leases.
use serde::Serialize;

use super::StoreError;

/// What a node says about itself in each heartbeat.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeInfo<'a> {
    pub name: &'a str,
    /// Where agents reach it (UDP, QUIC).
    pub agent_addr: &'a str,
    /// Where its REST API listens.
    pub api_addr: &'a str,
    pub version: &'a str,
    /// The node's own figures (agents, consumer lag, batches, rebalances) as JSON.
    pub stats: &'a serde_json::Value,
}

/// A node as the store last heard of it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NodeRow {
    pub name: String,
    pub agent_addr: String,
    pub api_addr: String,
    pub version: String,
    pub started_ns: u64,
    /// Unix ns of its last heartbeat.
    pub heartbeat_ns: u64,
    #[schema(value_type = Object)]
    pub stats: serde_json::Value,
}

pub trait ClusterStore {
    /// Takes lease `name` for `owner` until `now_ns + ttl_ns` if nobody holds it, it has
    /// expired, or `owner` holds it already (then it is renewed). True: `owner` holds it.
    fn try_lease(
        &mut self,
        name: &str,
        owner: &str,
        now_ns: u64,
        ttl_ns: u64,
    ) -> Result<bool, StoreError>;

    /// Extends every lease and run claim `owner` holds to `now_ns + ttl_ns`: a live node
    /// keeps what it holds (its heartbeat calls this), a dead one loses it when it expires.
    fn renew(&mut self, owner: &str, now_ns: u64, ttl_ns: u64) -> Result<(), StoreError>;

    /// Gives lease `name` up if `owner` holds it.
    fn release_lease(&mut self, name: &str, owner: &str) -> Result<(), StoreError>;

    /// Records a node's heartbeat (the first one also sets its start time).
    fn heartbeat(&mut self, node: &NodeInfo<'_>, now_ns: u64) -> Result<(), StoreError>;

    /// Every node that ever sent a heartbeat, by name.
    fn nodes(&self) -> Result<Vec<NodeRow>, StoreError>;

    /// Forgets a node (one that was removed from the cluster); false if unknown.
    fn forget_node(&mut self, name: &str) -> Result<bool, StoreError>;

    /// Records that agent `agent_id` is connected to `node` since `now_ns`.
    fn agent_connected(
        &mut self,
        agent_id: &str,
        node: &str,
        now_ns: u64,
    ) -> Result<(), StoreError>;

    /// Records that agent `agent_id` disconnected from `node` (ignored when it has
    /// connected to another node meanwhile).
    fn agent_disconnected(&mut self, agent_id: &str, node: &str) -> Result<(), StoreError>;
}
