//! Cordon's per-server agent: flow capture with process identity.
//!
//! - `capture`: eBPF programs (or the procfs fallback) → flow table → output;
//! - `process`: attribution of flows to processes;
//! - `flows`: aggregation and export timing;
//! - `record` / `output`: what is exported and how `watch` prints it;
//! - `spool`: the bounded on-disk queue of flow batches awaiting the collector's ack;
//! - `uplink`: the connection to the collector (QUIC, mTLS), fed from the spool;
//! - `config`: the agent's TOML configuration;
//! - `watchdog`: systemd readiness and a watchdog fed by the pipeline's progress.
pub mod capture;
pub mod config;
pub mod enforce;
pub mod enroll;
pub mod flows;
pub mod inventory;
pub mod output;
pub mod process;
pub mod record;
pub mod run;
pub mod spool;
pub mod uplink;
pub mod watch;
pub mod watchdog;
