//! The collector cluster: several nodes of the same binary share one PostgreSQL database
//! (all durable state, see `store::postgres`) and one Kafka topic of agent batches.
//!
//! - Ingest nodes append each agent batch to the flows topic, keyed by agent id, and
//!   acknowledge it to the agent only after the broker's delivery report.
//! - Workers (a consumer group of the same binary) judge and store the batches, with the
//!   consumer offsets in the same PostgreSQL transaction as the data; the per-agent batch
//!   sequence makes a batch replayed after a failover a recognised duplicate.
//! - Coordination goes through PostgreSQL too: node heartbeats, commands routed to the
//!   node holding the agent (LISTEN/NOTIFY), leases so that an output or the playbook
//!   engine's intake runs on one node at a time, and claims of playbook runs.
pub mod config;
pub mod flowlog;
pub mod listen;
pub mod membership;
pub mod node;
pub mod worker;

use std::time::Duration;

pub use config::ClusterConfig;

/// How long a lease or a run claim outlives its holder's last heartbeat: a node that dies
/// gives up its outputs, its playbook intake and its runs this long after its last beat.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often a node beats (and renews what it holds).
pub const HEARTBEAT: Duration = Duration::from_secs(1);

pub(crate) fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
