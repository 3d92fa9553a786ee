//! Ingest: the collector's QUIC endpoint. Each agent connection is authenticated by its
//! client certificate (the handshake already checked it chains to the CA; here its common
//! name becomes the agent id, and a revoked agent is turned away). The agent speaks first
//! (Hello), the collector answers with the negotiated version and the last batch it stored
//! (Welcome); every flow batch is acknowledged only once it is durably stored. Anything
//! malformed or out of order closes that agent's connection with a logged reason; the
//! collector keeps running. A connection without a client certificate may only enroll
//! ([`enroll`]).
//!
//! Where batches go is the [`FlowIntake`]: a single collector stores them through its
//! group-committing writer; a cluster node appends them to the flow stream (Kafka), which
//! the workers store. Either way a batch is acknowledged only once it is durable, and
//! never while this node cannot reach its store ([`Health`]).
mod commands;
mod enroll;
mod live;
mod writer;

use std::{
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use cordon_wire::{
    Ack, FlowBatch, Message, Welcome, WireError, encode, negotiate,
    transport::{MessageReader, peer_certificate, read_message, write_message},
};
use x509_parser::prelude::{FromDer, X509Certificate};

pub use live::{Connected, Live};

use crate::{
    cluster::{flowlog::FlowLog, membership::Health},
    metrics::{Metrics, Reason},
    pki::Ca,
    store::{Store, StoreError, Stored},
};

pub use writer::{Writer, WriterCompliance};

/// Why an agent's connection was closed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("client certificate: {0}")]
    BadCertificate(String),
    #[error("agent `{0}` is revoked")]
    Revoked(String),
    #[error("enrollment refused: {0}")]
    EnrollRefused(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("stream: {0}")]
    Closed(#[from] quinn::ClosedStream),
    #[error("flow stream: {0}")]
    FlowLog(#[from] crate::cluster::flowlog::FlowLogError),
    #[error("the store is unreachable from this node; not acknowledging batches")]
    StoreUnavailable,
}

impl IngestError {
    /// The `reason` label of `connections_refused`.
    fn reason(&self) -> &'static str {
        match self {
            IngestError::BadCertificate(_) => "bad_certificate",
            IngestError::Revoked(_) => "revoked",
            IngestError::EnrollRefused(_) => "enroll_refused",
            IngestError::Protocol(_) => "protocol",
            // A read that failed because the connection went away is not the agent's fault.
            IngestError::Wire(WireError::Io(_)) => "connection",
            IngestError::Wire(_) => "malformed",
            IngestError::Store(_) | IngestError::StoreUnavailable => "store",
            IngestError::FlowLog(_) => "flow_log",
            IngestError::Connection(_) | IngestError::Closed(_) => "connection",
        }
    }
}

pub type SharedStore = Arc<Mutex<Store>>;

/// Where this node puts the flow batches agents send.
#[derive(Clone)]
pub enum FlowIntake {
    /// One collector: into the store, through the group-committing writer.
    Store,
    /// A cluster node: onto the flow stream, for the workers to store.
    Log(Arc<FlowLog>),
}

/// What every agent connection shares.
#[derive(Clone)]
pub struct Ingest {
    pub store: SharedStore,
    pub ca: Arc<Ca>,
    pub metrics: Arc<Metrics>,
    pub live: Arc<Live>,
    /// Validity of agent certificates issued at enrollment, in days.
    pub agent_cert_days: i64,
    /// Verdicts and alerts for every stored record.
    pub compliance: WriterCompliance,
    /// Where batches go.
    pub flows: FlowIntake,
    /// This collector's node name (recorded as the node each agent is connected to).
    pub node: String,
    /// Whether this node reaches its store (batches are not acknowledged otherwise).
    pub health: Arc<Health>,
}

impl Ingest {
    /// Ingest into `store` for agents of `ca`, with fresh metrics, a year's certificates,
    /// and no policy published yet.
    pub fn new(store: SharedStore, ca: Arc<Ca>) -> Self {
        Self {
            store,
            ca,
            metrics: Arc::new(Metrics::new()),
            live: Arc::new(Live::default()),
            agent_cert_days: 365,
            compliance: WriterCompliance {
                policy: crate::policy::state::PolicyState::new(),
                alerts: Default::default(),
                outbox: Default::default(),
            },
            flows: FlowIntake::Store,
            node: crate::cluster::config::host_name(),
            health: Arc::default(),
        }
    }
}

/// How a batch was taken.
enum Accepted {
    Stored(Stored),
    /// On the flow stream (a worker stores it, or recognises it as a resend).
    Logged,
}

/// The handle connections give their batches to.
#[derive(Clone)]
enum Batches {
    Writer(Writer),
    Log(Arc<FlowLog>),
}

impl Batches {
    async fn accept(&self, agent: &str, batch: FlowBatch) -> Result<Accepted, IngestError> {
        match self {
            Batches::Writer(w) => Ok(Accepted::Stored(w.store(agent.to_string(), batch).await?)),
            Batches::Log(log) => {
                log.append(agent, batch, now_ns()).await?;
                Ok(Accepted::Logged)
            }
        }
    }
}

pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Runs `f` on the store off the async threads (SQLite calls block, and fsync).
async fn with_store<T: Send + 'static>(
    store: &SharedStore,
    f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, IngestError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = store
            .lock()
            .map_err(|_| IngestError::Protocol("store lock poisoned".into()))?;
        f(&mut guard).map_err(IngestError::from)
    })
    .await
    .map_err(|e| IngestError::Protocol(format!("store task: {e}")))?
}

/// The agent id a certificate names (its subject common name).
pub fn agent_id(der: &[u8]) -> Result<String, IngestError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IngestError::BadCertificate(e.to_string()))?;
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
        .ok_or_else(|| IngestError::BadCertificate("no common name".into()))
}

/// Accepts agents until the endpoint is closed.
pub async fn serve(endpoint: quinn::Endpoint, ingest: Ingest) {
    let writer = match &ingest.flows {
        // Flow batches of all connections go through one group-committing writer.
        FlowIntake::Store => match Writer::spawn(ingest.store.clone(), ingest.compliance.clone()) {
            Ok(w) => Batches::Writer(w),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the store writer; not accepting agents");
                return;
            }
        },
        FlowIntake::Log(log) => Batches::Log(log.clone()),
    };
    while let Some(incoming) = endpoint.accept().await {
        let ingest = ingest.clone();
        let writer = writer.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let conn = match incoming.await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::info!(%remote, error = %e, "agent handshake failed");
                    ingest
                        .metrics
                        .connections_refused
                        .get_or_create(&Reason {
                            reason: "handshake",
                        })
                        .inc();
                    return;
                }
            };
            let res = match peer_certificate(&conn) {
                Some(cert) => handle(&conn, &cert, &ingest, &writer).await,
                None => enroll::handle(&conn, &ingest).await,
            };
            match res {
                Ok(()) => tracing::info!(%remote, "agent disconnected"),
                Err(e) => {
                    tracing::warn!(%remote, reason = %e, "agent connection closed");
                    ingest
                        .metrics
                        .connections_refused
                        .get_or_create(&Reason { reason: e.reason() })
                        .inc();
                    conn.close(1u32.into(), b"refused");
                }
            }
        });
    }
}

async fn handle(
    conn: &quinn::Connection,
    cert: &[u8],
    ingest: &Ingest,
    writer: &Batches,
) -> Result<(), IngestError> {
    let agent = agent_id(cert)?;
    let res = session(conn, &agent, ingest, writer).await;
    // Best effort: a node that dies leaves its name until the agent connects elsewhere.
    let (id, node) = (agent.clone(), ingest.node.clone());
    if let Err(e) = with_store(&ingest.store, move |s| s.agent_disconnected(&id, &node)).await {
        tracing::debug!(agent = %agent, error = %e, "recording the disconnect failed");
    }
    res
}

async fn session(
    conn: &quinn::Connection,
    agent: &str,
    ingest: &Ingest,
    writer: &Batches,
) -> Result<(), IngestError> {
    let store = &ingest.store;
    let metrics = &ingest.metrics;
    if !ingest.health.store_ok() {
        return Err(IngestError::StoreUnavailable);
    }
    let agent = agent.to_string();
    let id = agent.clone();
    if with_store(store, move |s| s.is_revoked(&id)).await? {
        return Err(IngestError::Revoked(agent));
    }
    let (mut send, mut recv) = conn.accept_bi().await?;
    let hello = match read_message(&mut recv).await? {
        Some(Message::Hello(h)) => h,
        Some(other) => {
            return Err(IngestError::Protocol(format!(
                "expected Hello, got {}",
                kind(&other)
            )));
        }
        None => return Ok(()),
    };
    let protocol =
        negotiate(hello.protocol_min, hello.protocol_max).map_err(IngestError::Protocol)?;
    let (id, node) = (agent.clone(), ingest.node.clone());
    let (_, stored_seq) = with_store(store, move |s| {
        let connected = s.host_connected(
            &id,
            &hello.host_name,
            &hello.agent_version,
            &hello.capture,
            now_ns(),
        )?;
        s.agent_connected(&id, &node, now_ns())?;
        Ok(connected)
    })
    .await?;
    write_message(
        &mut send,
        &Message::Welcome(Welcome {
            protocol,
            stored_seq,
        }),
    )
    .await?;
    tracing::info!(agent = %agent, protocol, stored_seq, "agent connected");
    let live = ingest.live.connected(&agent, conn, now_ns(), metrics);
    let poke = live.poke();
    // Read on a task of its own, since the loop also waits for commands to deliver.
    let mut msgs = MessageReader::spawn(recv);
    commands::deliver(&agent, store, &mut send, true).await?;
    loop {
        let msg = tokio::select! {
            m = msgs.next() => m,
            _ = poke.notified() => {
                commands::deliver(&agent, store, &mut send, false).await?;
                continue;
            }
        };
        let Some(msg) = msg? else {
            return Ok(());
        };
        match msg {
            Message::FlowBatch(batch) => {
                let seq = batch.seq;
                let dropped = batch.dropped_before;
                let records = batch.records.len() as u64;
                if !ingest.health.store_ok() {
                    return Err(IngestError::StoreUnavailable);
                }
                match writer.accept(&agent, batch).await? {
                    Accepted::Logged => {
                        metrics.batches_appended.inc();
                        metrics.records_appended.inc_by(records);
                        metrics.records_dropped_by_agents.inc_by(dropped);
                    }
                    Accepted::Stored(Stored::New { records }) => {
                        metrics.batches_stored.inc();
                        metrics.records_stored.inc_by(records as u64);
                        metrics.records_dropped_by_agents.inc_by(dropped);
                        if dropped > 0 {
                            tracing::warn!(agent = %agent, dropped, "the agent dropped records (spool full)");
                        }
                    }
                    Accepted::Stored(Stored::Duplicate) => {
                        metrics.batches_duplicate.inc();
                    }
                }
                write_message(&mut send, &Message::Ack(Ack { seq })).await?;
            }
            Message::Inventory(_) => {
                let body = encode(&msg)?.to_vec();
                let id = agent.clone();
                with_store(store, move |s| s.store_inventory(&id, &body, now_ns())).await?;
                metrics.inventories_stored.inc();
                // Addresses may have changed: the policy maps them to hosts.
                ingest.compliance.policy.mark_dirty();
            }
            Message::CommandResult(r) => {
                tracing::info!(agent = %agent, id = r.id, ok = r.ok, message = %r.message, "command result");
                commands::result(&agent, store, r).await?;
            }
            Message::EnforcementState(e) => {
                tracing::info!(agent = %agent, isolated = e.isolated, backend = %e.backend, "enforcement state");
                commands::enforcement(&agent, store, e).await?;
            }
            Message::Goodbye(g) => {
                tracing::info!(agent = %agent, reason = %g.reason, "agent said goodbye");
                send.finish()?;
                // Let the last acks reach the agent before the connection goes away.
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(2), send.stopped()).await;
                return Ok(());
            }
            other => {
                return Err(IngestError::Protocol(format!(
                    "unexpected {}",
                    kind(&other)
                )));
            }
        }
    }
}

fn kind(m: &Message) -> &'static str {
    match m {
        Message::Hello(_) => "Hello",
        Message::Welcome(_) => "Welcome",
        Message::FlowBatch(_) => "FlowBatch",
        Message::Ack(_) => "Ack",
        Message::Inventory(_) => "Inventory",
        Message::Command(_) => "Command",
        Message::CommandResult(_) => "CommandResult",
        Message::Goodbye(_) => "Goodbye",
        Message::Enroll(_) => "Enroll",
        Message::EnforcementState(_) => "EnforcementState",
        Message::Enrolled(_) => "Enrolled",
    }
}

#[cfg(test)]
mod tests;
