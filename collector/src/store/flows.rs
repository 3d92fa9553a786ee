//! Querying stored flows (what `GET /api/v1/flows` and `cordon flows` will serve).
use cordon_wire::FlowBatch;

use super::{Compliance, Conversation, StoreError, Stored};

/// Most rows one query returns.
pub const MAX_LIMIT: usize = 10_000;

/// Filters; every one is optional, all given ones must match.
#[derive(Clone, Debug, Default)]
pub struct FlowFilter {
    /// Agent id or host name.
    pub host: Option<String>,
    pub remote_ip: Option<std::net::IpAddr>,
    /// Local or remote port.
    pub port: Option<u16>,
    /// Exact executable path.
    pub exe: Option<String>,
    /// Compliance verdict: permitted, escaped or rejected.
    pub verdict: Option<String>,
    /// Flows last seen at or after this Unix ns.
    pub since_ns: Option<u64>,
    /// Flows first seen before this Unix ns.
    pub until_ns: Option<u64>,
    /// At most this many rows, newest first (0 means 100; capped at `MAX_LIMIT`).
    pub limit: usize,
}

/// One stored flow record. Times are Unix ns.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct FlowRow {
    /// The host's name.
    pub host: String,
    /// start, update or end.
    pub event: String,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub proto: String,
    pub direction: String,
    pub local_ip: String,
    pub local_port: u16,
    pub remote_ip: String,
    pub remote_port: u16,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub pid: Option<u32>,
    pub exe: Option<String>,
    /// forwarded or dropped, as the network saw it.
    pub verdict: String,
    /// Against the published policy: permitted, escaped (a violation the network let
    /// through) or rejected (denied and blocked); absent when no policy was published.
    pub policy_verdict: Option<String>,
    /// The rule (or catch-all) that decided.
    pub policy_rule: Option<String>,
    pub policy_version: Option<i64>,
}

pub trait FlowStore {
    fn flows(&self, f: &FlowFilter) -> Result<Vec<FlowRow>, StoreError>;

    /// Stores a batch durably (see the module docs), without compliance verdicts.
    fn store_batch(&mut self, agent_id: &str, batch: &FlowBatch) -> Result<Stored, StoreError>;

    /// Stores several agents' batches in one transaction, so one commit (one fsync) makes
    /// them all durable: group commit. A batch of an unknown agent is refused alone (that
    /// is found before anything of it is written); any other error fails the whole group,
    /// and then nothing of it is stored.
    fn store_batches(
        &mut self,
        batches: &[(&str, &FlowBatch)],
        compliance: &mut Compliance<'_>,
    ) -> Result<Vec<Result<Stored, StoreError>>, StoreError>;

    /// Sets this connection's page cache, in KiB, where the backend has one (SQLite's
    /// default is 2 MiB; PostgreSQL's shared buffers are the server's). The ingest
    /// writer uses a large one: the flows' indexes take inserts all over, and every page
    /// missing from the cache is a read from the file.
    fn set_cache_kib(&mut self, kib: u32) -> Result<(), StoreError>;

    /// Deletes flows last seen before `before_ns`; returns how many.
    fn apply_retention(&mut self, before_ns: u64) -> Result<usize, StoreError>;

    /// Conversation edges of a host, busiest first.
    fn conversations(&self, agent_id: &str) -> Result<Vec<Conversation>, StoreError>;
}
