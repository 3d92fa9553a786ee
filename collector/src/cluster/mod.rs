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

pub use config::ClusterConfig;
