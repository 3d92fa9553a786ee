//! Querying stored flows (what `GET /api/v1/flows` and `cordon flows` will serve).
use cordon_wire::FlowBatch;

use super::{
    Compliance, Conversation, StoreError, Stored,
    flow_sql::{Slots, period_for},
};

/// Most rows one query returns.
pub const MAX_LIMIT: usize = 10_000;

/// Filters; every one is optional, all given ones must match.
#[derive(Clone, Debug, Default)]
pub struct FlowFilter {
    /// Agent id or host name.
    pub host: Option<String>,
    pub remote_ip: Option<std::net::IpAddr>,
    /// The service port: the remote port of an outbound flow, the local one of an inbound.
    pub port: Option<u16>,
    /// Exact executable path.
    pub exe: Option<String>,
    /// Protocol as stored: tcp, udp, icmp, icmpv6, ip-N.
    pub proto: Option<String>,
    /// Only these hosts (agent ids): a policy group's members, resolved by the caller.
    /// Empty: nothing matches.
    pub agents: Option<Vec<String>>,
    /// Compliance verdict: permitted, escaped or rejected.
    pub verdict: Option<String>,
    /// Flows last seen at or after this Unix ns.
    pub since_ns: Option<u64>,
    /// Flows first seen before this Unix ns.
    pub until_ns: Option<u64>,
    /// At most this many rows, newest first (0 means 100; capped at `MAX_LIMIT`).
    pub limit: usize,
    /// Values the flows must not have.
    pub exclude: FlowExclude,
    /// Paging: only flows after this one in the newest-first order, given as its
    /// (`last_seen_ns`, `id`) — the last row of the previous page.
    pub before: Option<(u64, i64)>,
}

/// Values a search leaves out (one per field); each excludes what the same field of
/// [`FlowFilter`] would include. Excluding an executable keeps unattributed flows.
#[derive(Clone, Debug, Default)]
pub struct FlowExclude {
    pub host: Option<String>,
    pub remote_ip: Option<std::net::IpAddr>,
    pub port: Option<u16>,
    pub exe: Option<String>,
}

/// One stored flow record. Times are Unix ns.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct FlowRow {
    /// The stored record's id (`GET /api/v1/flows/{id}` reads it whole).
    pub id: i64,
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

/// One stored flow record, whole: the process behind it and the counters both ways.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct FlowDetail {
    #[serde(flatten)]
    pub row: FlowRow,
    pub agent_id: String,
    pub packets_out: u64,
    pub packets_in: u64,
    /// Whether the flow had ended (FIN/RST, or idle past the agent's timeout).
    pub closed: bool,
    pub uid: Option<u32>,
    pub user: Option<String>,
    pub comm: Option<String>,
    pub cmdline: Option<String>,
    pub cgroup: Option<String>,
    /// Why no process is known, for an unattributed flow.
    pub unattributed_reason: Option<String>,
}

/// Flows of one time bucket by compliance verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct VerdictCounts {
    pub permitted: u64,
    pub escaped: u64,
    pub rejected: u64,
    /// Stored while no policy was published.
    pub unchecked: u64,
}

impl VerdictCounts {
    pub fn total(&self) -> u64 {
        self.permitted + self.escaped + self.rejected + self.unchecked
    }

    fn add(&mut self, verdict: Option<&str>, n: u64) {
        match verdict {
            Some("permitted") => self.permitted += n,
            Some("escaped") => self.escaped += n,
            Some("rejected") => self.rejected += n,
            _ => self.unchecked += n,
        }
    }
}

/// A host among the busiest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct TopHost {
    pub host: String,
    pub flows: u64,
}

/// What the flows matching a filter add up to over its time window.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct FlowSummary {
    pub start_ns: u64,
    /// Each bucket's width; bucket `i` starts at `start_ns + i * width_ns`.
    pub width_ns: u64,
    pub buckets: Vec<VerdictCounts>,
    /// The hosts with most flows, at most [`TOP_N`].
    pub top_hosts: Vec<TopHost>,
    /// (service port, escaped flows): most first, at most [`TOP_N`].
    pub top_escaped_ports: Vec<(u16, u64)>,
}

/// How many hosts and ports a summary names.
pub const TOP_N: usize = 10;

/// A summary's window and buckets for `f`: from `f.since_ns` to `f.until_ns` (or
/// `now_ns`), in `buckets` buckets of at least a second.
pub(crate) fn window(f: &FlowFilter, buckets: usize, now_ns: u64) -> (u64, u64, usize) {
    let start = f.since_ns.unwrap_or(0);
    let end = f.until_ns.unwrap_or(now_ns).max(start + 1);
    let n = buckets.clamp(1, 1000);
    let width = (end - start).div_ceil(n as u64).max(1_000_000_000);
    let n = (end - start).div_ceil(width) as usize;
    (start, width, n)
}

/// A summary's window in whole periods of the counts kept at ingest ([`period_for`] its
/// length): from the period `f.since_ns` falls in to the one after `f.until_ns` (or
/// `now_ns`), in at most `buckets` buckets of whole periods. Returns (start ns, width ns,
/// buckets) and the same in periods.
pub(crate) fn slot_window(
    f: &FlowFilter,
    buckets: usize,
    now_ns: u64,
) -> ((u64, u64, usize), Slots) {
    let (since, until) = (f.since_ns.unwrap_or(0), f.until_ns.unwrap_or(now_ns));
    let period = period_for(until.saturating_sub(since));
    let p = period.ns;
    let start = since / p;
    let end = until.div_ceil(p).max(start + 1);
    let width = (end - start).div_ceil(buckets.clamp(1, 1000) as u64).max(1);
    let n = (end - start).div_ceil(width) as usize;
    let big = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    (
        (start * p, width * p, n),
        Slots {
            period,
            start: big(start),
            end: big(end),
            width: big(width),
        },
    )
}

/// Buckets from (bucket index, verdict, flows) rows (out of range ones, which the window
/// excludes, count in the nearest bucket).
pub(crate) fn bucketed(rows: Vec<(i64, Option<String>, i64)>, n: usize) -> Vec<VerdictCounts> {
    let mut out = vec![VerdictCounts::default(); n];
    for (b, v, count) in rows {
        let i = usize::try_from(b.max(0)).unwrap_or(usize::MAX).min(n - 1);
        out[i].add(v.as_deref(), u64::try_from(count).unwrap_or(0));
    }
    out
}

pub trait FlowStore {
    fn flows(&self, f: &FlowFilter) -> Result<Vec<FlowRow>, StoreError>;

    /// One stored flow, whole; `None` if there is no such id (or it was retired).
    fn flow(&self, id: i64) -> Result<Option<FlowDetail>, StoreError>;

    /// Counts per time bucket and verdict, the busiest hosts and the most escaped ports
    /// of the flows matching `f` (its limit aside) last seen between `f.since_ns` (which
    /// the caller sets: the cost grows with the window) and `f.until_ns` or now.
    fn flow_summary(&self, f: &FlowFilter, buckets: usize) -> Result<FlowSummary, StoreError>;

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
