//! Ingest: the collector's QUIC endpoint. Each agent connection is authenticated by its
//! client certificate (the handshake already checked it chains to the CA; here its common
//! name becomes the agent id, and a revoked agent is turned away). The agent speaks first
//! (Hello), the collector answers with the negotiated version and the last batch it stored
//! (Welcome); every flow batch is acknowledged only once it is durably stored. Anything
//! malformed or out of order closes that agent's connection with a logged reason; the
//! collector keeps running.
mod writer;

use std::{
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use cordon_wire::{
    Ack, Message, Welcome, WireError, encode, negotiate,
    transport::{peer_certificate, read_message, write_message},
};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::store::{Store, StoreError};

pub use writer::Writer;

/// Why an agent's connection was closed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no client certificate")]
    NoCertificate,
    #[error("client certificate: {0}")]
    BadCertificate(String),
    #[error("agent `{0}` is revoked")]
    Revoked(String),
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
}

pub type SharedStore = Arc<Mutex<Store>>;

fn now_ns() -> u64 {
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
pub async fn serve(endpoint: quinn::Endpoint, store: SharedStore) {
    // Flow batches of all connections go through one group-committing writer.
    let writer = match Writer::spawn(store.clone()) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the store writer; not accepting agents");
            return;
        }
    };
    while let Some(incoming) = endpoint.accept().await {
        let store = store.clone();
        let writer = writer.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let conn = match incoming.await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::info!(%remote, error = %e, "agent handshake failed");
                    return;
                }
            };
            match handle(&conn, &store, &writer).await {
                Ok(()) => tracing::info!(%remote, "agent disconnected"),
                Err(e) => {
                    tracing::warn!(%remote, reason = %e, "agent connection closed");
                    conn.close(1u32.into(), b"refused");
                }
            }
        });
    }
}

async fn handle(
    conn: &quinn::Connection,
    store: &SharedStore,
    writer: &Writer,
) -> Result<(), IngestError> {
    let cert = peer_certificate(conn).ok_or(IngestError::NoCertificate)?;
    let agent = agent_id(&cert)?;
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
    let id = agent.clone();
    let (_, stored_seq) = with_store(store, move |s| {
        s.host_connected(
            &id,
            &hello.host_name,
            &hello.agent_version,
            &hello.capture,
            now_ns(),
        )
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
    loop {
        let Some(msg) = read_message(&mut recv).await? else {
            return Ok(());
        };
        match msg {
            Message::FlowBatch(batch) => {
                let seq = batch.seq;
                let id = agent.clone();
                writer.store(id, batch).await?;
                write_message(&mut send, &Message::Ack(Ack { seq })).await?;
            }
            Message::Inventory(_) => {
                let body = encode(&msg)?.to_vec();
                let id = agent.clone();
                with_store(store, move |s| s.store_inventory(&id, &body, now_ns())).await?;
            }
            Message::CommandResult(r) => {
                tracing::info!(agent = %agent, id = r.id, ok = r.ok, message = %r.message, "command result");
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
    }
}

#[cfg(test)]
mod tests;
