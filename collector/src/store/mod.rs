//! The collector's store: one interface ([`Backend`], made of the traits below, one per
//! kind of state), two implementations side by side — SQLite in WAL mode in the data
//! directory (`sqlite`, the embedded default) and PostgreSQL (`postgres`, shared by the
//! nodes of a cluster) — and one test suite run against both (`tests`).
//!
//! Callers hold a [`Store`], which derefs to the backend it was opened on, and never see
//! SQL. A flow batch is stored in one transaction together with the agent's new sequence
//! number, so when [`FlowStore::store_batch`] returns the batch is durable and may be
//! acknowledged. A batch whose sequence number is not above the stored one is a resend
//! (the agent did not see the ack) and is acknowledged without storing twice.
mod alerts;
mod cluster;
mod commands;
pub(crate) mod flow_sql;
mod flows;
mod hosts;
mod learn;
mod policies;
pub mod postgres;
mod runs;
pub mod sqlite;
mod tokens;

use std::path::Path;

use cordon_wire::{Direction, FlowEvent, Proto, Verdict};

pub use alerts::{AlertFilter, AlertRow, AlertStore};
pub use cluster::{ClusterStore, NodeInfo, NodeRow};
pub use commands::{AuditRow, CommandRow, CommandStore, HostEnforcement, NewCommand};
pub use flow_sql::limit as flow_limit;
pub use flows::{
    FlowDetail, FlowExclude, FlowFilter, FlowRow, FlowStore, FlowSummary,
    MAX_LIMIT as MAX_FLOW_LIMIT, TOP_N, TopHost, VerdictCounts,
};
pub use hosts::{HostRow, HostStore};
pub use learn::{Approvals, FlowObservation, LearnHost, LearnStore};
pub use policies::{HostFactsMap, PolicyRow, PolicyStore, PublishRefusal};
pub use runs::{ApprovalRow, Next, RunRow, RunStepRow, RunStore, StepRecord};
pub use tokens::{Scope, TokenInfo, TokenRefusal, TokenStore};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A SQLite statement failed.
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A PostgreSQL statement failed, or the connection broke under it.
    #[error("postgresql: {}", postgres::conn::describe(.0))]
    Postgres(#[from] ::postgres::Error),
    /// PostgreSQL could not be reached, refused the login, or its URL is wrong. `target`
    /// names the server, port, database and user, never the password.
    #[error("connecting to postgresql ({target}): {reason}")]
    PgConnect {
        target: String,
        reason: String,
        /// An outage (retry later), not a refusal or a configuration error.
        unavailable: bool,
    },
    /// A store callback (`for_each_flow`'s) called the same store again.
    #[error("the store was called again from inside one of its own callbacks")]
    Reentrant,
    #[error("database schema version {found} is newer than this collector's ({supported})")]
    TooNew { found: i64, supported: i64 },
    #[error("unknown agent `{0}`")]
    UnknownAgent(String),
}

impl StoreError {
    /// Whether the database is unavailable rather than the call wrong: PostgreSQL cannot
    /// be reached or the connection was lost. Retry later; the store reconnects by
    /// itself on the next call.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Postgres(e) => postgres::conn::is_lost(e),
            StoreError::PgConnect { unavailable, .. } => *unavailable,
            _ => false,
        }
    }

    /// Whether the connection this came from is unusable now (the store drops it).
    pub(crate) fn connection_lost(&self) -> bool {
        matches!(self, StoreError::Postgres(e) if postgres::conn::is_lost(e))
    }
}

/// Everything the collector keeps: what a backend implements.
pub trait Backend:
    HostStore
    + FlowStore
    + AlertStore
    + CommandStore
    + PolicyStore
    + LearnStore
    + RunStore
    + TokenStore
    + ClusterStore
    + Send
{
}

impl<T> Backend for T where
    T: HostStore
        + FlowStore
        + AlertStore
        + CommandStore
        + PolicyStore
        + LearnStore
        + RunStore
        + TokenStore
        + ClusterStore
        + Send
{
}

/// A connection to the store, on whichever backend it was opened; it derefs to
/// [`Backend`], so `store.hosts()` works on either.
pub struct Store(Box<dyn Backend>);

impl Store {
    /// Opens (creating and migrating) the SQLite database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self(Box::new(sqlite::SqliteStore::open(path)?)))
    }

    /// An in-memory SQLite store, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        Ok(Self(Box::new(sqlite::SqliteStore::in_memory()?)))
    }

    /// Connects to the PostgreSQL database of a cluster (migrating it).
    pub fn postgres(cfg: &postgres::PgConfig) -> Result<Self, StoreError> {
        Ok(Self(Box::new(postgres::PgStore::connect(cfg)?)))
    }

    /// A store on any backend.
    pub fn from_backend(backend: impl Backend + 'static) -> Self {
        Self(Box::new(backend))
    }
}

impl std::ops::Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl std::ops::DerefMut for Store {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut *self.0
    }
}

/// One edge of a host's conversation graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversation {
    pub direction: String,
    pub proto: String,
    pub remote_ip: String,
    /// The service port: the remote one for outbound flows, the local one for inbound.
    pub port: u16,
    /// Empty when the process was unknown.
    pub exe: String,
    /// Flows started on this edge.
    pub flows: u64,
}

/// The compliance verdict of one flow record.
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    /// permitted, escaped or rejected.
    pub verdict: &'static str,
    pub rule: String,
    pub version: i64,
    pub severity: crate::policy::Severity,
}

/// Record-judging function: `(agent id, record)` → verdict, `None` when no policy applies.
pub type JudgeFn<'a> = dyn FnMut(&str, &cordon_wire::FlowRecord) -> Option<Judged> + 'a;

/// How `store_batches` judges records and raises alerts.
pub struct Compliance<'a> {
    pub judge: Option<&'a mut JudgeFn<'a>>,
    pub settings: &'a crate::alerts::AlertSettings,
    pub now_ns: u64,
    /// Alert occurrences raised (out).
    pub raised: u64,
}

static NO_SETTINGS: std::sync::LazyLock<crate::alerts::AlertSettings> =
    std::sync::LazyLock::new(Default::default);

impl Compliance<'_> {
    /// No policy: verdicts stay empty.
    pub fn none() -> Compliance<'static> {
        Compliance {
            judge: None,
            settings: &NO_SETTINGS,
            now_ns: 0,
            raised: 0,
        }
    }
}

/// What `store_batch` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// The batch is durably stored.
    New { records: usize },
    /// Already stored earlier (a resend): acknowledge it again, store nothing.
    Duplicate,
}

/// Unix ns as a signed 64-bit integer, SQLite's INTEGER and PostgreSQL's BIGINT
/// (saturating; year 2262 is far off).
pub(crate) fn ns(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored count or time back to unsigned (negative ones, which are never written, as 0).
pub(crate) fn u(v: i64) -> u64 {
    v.max(0) as u64
}

pub(crate) fn proto_name(p: Proto) -> String {
    match p {
        Proto::Tcp => "tcp".into(),
        Proto::Udp => "udp".into(),
        Proto::Icmp => "icmp".into(),
        Proto::Icmpv6 => "icmpv6".into(),
        Proto::Other(n) => format!("ip-{n}"),
    }
}

pub(crate) fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Outbound => "outbound",
        Direction::Inbound => "inbound",
    }
}

pub(crate) fn event_name(e: FlowEvent) -> &'static str {
    match e {
        FlowEvent::Start => "start",
        FlowEvent::Update => "update",
        FlowEvent::End => "end",
    }
}

pub(crate) fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Forwarded => "forwarded",
        Verdict::Dropped => "dropped",
    }
}

#[cfg(test)]
mod tests;
