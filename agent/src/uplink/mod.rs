//! The uplink: streams flow batches to a collector and keeps them in the spool until the
//! collector acknowledges them, so an outage or a restart loses nothing up to the spool's
//! size. Reconnects back off exponentially with jitter and move on to the next configured
//! collector address each time.
mod address;
mod backoff;
pub mod commands;
pub mod convert;
pub mod order;

use std::{net::SocketAddr, time::Duration};

use cordon_wire::{
    FlowRecord, Goodbye, Hello, Message, PROTOCOL_MAX, PROTOCOL_MIN,
    transport::{MessageReader, read_message, write_message},
};
use tokio::sync::mpsc;

pub use address::{AddrError, CollectorAddr, Host, dns_name};
pub use backoff::Backoff;
pub use commands::{CommandHandler, NoEnforcer};

use crate::spool::Spool;

/// A collector to connect to.
#[derive(Clone, Debug)]
pub struct Collector {
    pub addr: SocketAddr,
    /// Name the collector's certificate must carry (DNS name or IP address).
    pub server_name: String,
}

/// Who this agent says it is in its Hello.
#[derive(Clone, Debug)]
pub struct Identity {
    pub host_name: String,
    pub capture: String,
    pub boot_id: String,
}

/// Counters of the uplink's work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UplinkStats {
    pub connects: u64,
    pub connect_failures: u64,
    pub batches_sent: u64,
    pub batches_acked: u64,
}

pub struct Uplink {
    pub collectors: Vec<Collector>,
    /// The host's inventory: sent at every connect, and again whenever it changes.
    pub inventory: tokio::sync::watch::Receiver<Option<cordon_wire::Inventory>>,
    pub tls: quinn::ClientConfig,
    pub identity: Identity,
    pub spool: Spool,
    pub backoff: Backoff,
    pub stats: UplinkStats,
    /// Carries out the collector's commands (isolate, release).
    pub commands: Box<dyn CommandHandler>,
    /// Isolation as the enforcer last saw it: a change made locally (expiry, break-glass
    /// release, re-assertion) is reported to the collector within a second.
    pub isolation: std::sync::Arc<crate::enforce::IsolationView>,
}

/// How a connection ended.
enum Ended {
    /// The agent is stopping.
    Stop,
    /// The connection failed; try again (after the backoff).
    Lost(String),
}

impl Uplink {
    /// Runs until `records` is closed: every batch received is spooled first, then sent
    /// when a collector is connected.
    pub async fn run(
        &mut self,
        mut records: mpsc::Receiver<Vec<FlowRecord>>,
    ) -> anyhow::Result<()> {
        let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([0, 0, 0, 0], 0)))?;
        endpoint.set_default_client_config(self.tls.clone());
        let mut next = 0usize;
        loop {
            let target = self.collectors[next % self.collectors.len()].clone();
            next += 1;
            match self.session(&endpoint, &target, &mut records).await {
                Ended::Stop => {
                    endpoint.wait_idle().await;
                    return Ok(());
                }
                Ended::Lost(reason) => {
                    self.stats.connect_failures += 1;
                    let wait = self.backoff.next_delay();
                    tracing::warn!(collector = %target.addr, %reason, retry_in = ?wait, pending = self.spool.pending_batches(), "collector connection lost");
                    // Keep spooling while waiting.
                    let deadline = tokio::time::sleep(wait);
                    tokio::pin!(deadline);
                    loop {
                        tokio::select! {
                            _ = &mut deadline => break,
                            batch = records.recv() => match batch {
                                Some(b) => {
                                    self.spool_batch(b);
                                }
                                None => return Ok(()),
                            },
                        }
                    }
                }
            }
        }
    }

    fn spool_batch(&mut self, records: Vec<FlowRecord>) -> Option<u64> {
        match self.spool.push(records) {
            Ok(seq) => Some(seq),
            Err(e) => {
                tracing::error!(error = %e, "could not spool a batch; its records are lost (counted)");
                None
            }
        }
    }

    async fn session(
        &mut self,
        endpoint: &quinn::Endpoint,
        target: &Collector,
        records: &mut mpsc::Receiver<Vec<FlowRecord>>,
    ) -> Ended {
        let conn = match endpoint.connect(target.addr, &target.server_name) {
            Ok(connecting) => match connecting.await {
                Ok(c) => c,
                Err(e) => return Ended::Lost(e.to_string()),
            },
            Err(e) => return Ended::Lost(e.to_string()),
        };
        let (mut send, mut recv) = match conn.open_bi().await {
            Ok(s) => s,
            Err(e) => return Ended::Lost(e.to_string()),
        };
        let hello = Message::Hello(Hello {
            protocol_min: PROTOCOL_MIN,
            protocol_max: PROTOCOL_MAX,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            host_name: self.identity.host_name.clone(),
            capture: self.identity.capture.clone(),
            boot_id: self.identity.boot_id.clone(),
            last_seq: self.spool.next_seq().saturating_sub(1),
        });
        if let Err(e) = write_message(&mut send, &hello).await {
            return Ended::Lost(e.to_string());
        }
        match read_message(&mut recv).await {
            Ok(Some(Message::Welcome(w))) => {
                if let Err(e) = self.spool.collector_has(w.stored_seq) {
                    return Ended::Lost(format!("spool: {e}"));
                }
            }
            Ok(other) => return Ended::Lost(format!("expected Welcome, got {other:?}")),
            Err(e) => return Ended::Lost(e.to_string()),
        }
        let current = self.inventory.borrow_and_update().clone();
        if let Some(inv) = current
            && let Err(e) = write_message(&mut send, &Message::Inventory(inv)).await
        {
            return Ended::Lost(e.to_string());
        }
        let state = Message::EnforcementState(self.commands.state());
        if let Err(e) = write_message(&mut send, &state).await {
            return Ended::Lost(e.to_string());
        }
        // Read on a task of its own, since the loop below also waits for batches.
        let mut msgs = MessageReader::spawn(recv);
        self.stats.connects += 1;
        self.backoff.reset();
        tracing::info!(collector = %target.addr, pending = self.spool.pending_batches(), "connected to the collector");
        // Everything the collector has not acknowledged goes out first, in order.
        let pending: Vec<_> = self.spool.pending().collect();
        for body in pending {
            let sent = match body {
                Ok(body) => send_raw(&mut send, &body).await,
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = sent {
                return Ended::Lost(e);
            }
            self.stats.batches_sent += 1;
        }
        let mut inventory_open = true;
        let mut reported = self.isolation.generation();
        let mut state_check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = state_check.tick() => {
                    let g = self.isolation.generation();
                    if g != reported {
                        reported = g;
                        let state = Message::EnforcementState(self.commands.state());
                        if let Err(e) = write_message(&mut send, &state).await {
                            return Ended::Lost(e.to_string());
                        }
                    }
                }
                changed = self.inventory.changed(), if inventory_open => {
                    if changed.is_err() {
                        inventory_open = false;
                        continue;
                    }
                    let current = self.inventory.borrow_and_update().clone();
                    if let Some(inv) = current
                        && let Err(e) = write_message(&mut send, &Message::Inventory(inv)).await
                    {
                        return Ended::Lost(e.to_string());
                    }
                }
                batch = records.recv() => {
                    let Some(batch) = batch else {
                        let bye = Message::Goodbye(Goodbye { reason: "agent stopping".into() });
                        let _ = write_message(&mut send, &bye).await;
                        let _ = send.finish();
                        // Wait (briefly) for the acks of what is in flight.
                        let _ = tokio::time::timeout(Duration::from_secs(2), self.drain_acks(&mut msgs)).await;
                        return Ended::Stop;
                    };
                    let Some(seq) = self.spool_batch(batch) else { continue };
                    let body = self.spool.read(seq);
                    let sent = match body {
                        Ok(body) => send_raw(&mut send, &body).await,
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(e) = sent {
                        return Ended::Lost(e);
                    }
                    self.stats.batches_sent += 1;
                }
                msg = msgs.next() => match msg {
                    Ok(Some(Message::Ack(a))) => {
                        self.spool.ack(a.seq);
                        self.stats.batches_acked += 1;
                    }
                    Ok(Some(Message::Command(c))) => {
                        tracing::info!(id = c.id, kind = ?c.kind, "command received");
                        let result = self.commands.handle(&c);
                        tracing::info!(id = c.id, ok = result.ok, message = %result.message, "command done");
                        reported = self.isolation.generation();
                        let state = Message::EnforcementState(self.commands.state());
                        for m in [Message::CommandResult(result), state] {
                            if let Err(e) = write_message(&mut send, &m).await {
                                return Ended::Lost(e.to_string());
                            }
                        }
                    }
                    Ok(Some(other)) => return Ended::Lost(format!("unexpected message {other:?}")),
                    Ok(None) => return Ended::Lost("the collector closed the stream".into()),
                    Err(e) => return Ended::Lost(e.to_string()),
                }
            }
        }
    }

    async fn drain_acks(&mut self, msgs: &mut MessageReader) {
        while let Ok(Some(Message::Ack(a))) = msgs.next().await {
            self.spool.ack(a.seq);
            self.stats.batches_acked += 1;
            if self.spool.pending_batches() == 0 {
                return;
            }
        }
    }
}

/// Sends an already encoded message body as one frame.
async fn send_raw(send: &mut quinn::SendStream, body: &[u8]) -> Result<(), String> {
    send.write_all(&(body.len() as u32).to_be_bytes())
        .await
        .map_err(|e| e.to_string())?;
    send.write_all(body).await.map_err(|e| e.to_string())
}
