//! The uplink: streams flow batches to a collector and keeps them in the spool until the
//! collector acknowledges them, so an outage or a restart loses nothing up to the spool's
//! size. The collectors (the nodes of a cluster) are tried in the order [`order`] sets:
//! from the agent's home node, round-robin. A session that is lost (the collector silent
//! for `dead_after`, or gone) moves on to the next collector at once, and attempts within a
//! round overlap ([`Uplink::open_first`]), so a dead node costs a quarter of a second; only
//! after a whole round failed does the agent back off, exponentially with jitter. Batches are spooled
//! all the while, and what the old collector did not acknowledge goes to the new one.
mod address;
mod backoff;
pub mod commands;
pub mod convert;
pub mod order;
mod resolve;

use std::{
    net::{Ipv6Addr, SocketAddr},
    time::{Duration, Instant},
};

use cordon_wire::{
    FlowRecord, Goodbye, Hello, Message, PROTOCOL_MAX, PROTOCOL_MIN, Welcome,
    transport::{MessageReader, client_transport, read_message, write_message},
};
use tokio::sync::mpsc;

pub use address::{AddrError, CollectorAddr, Host, dns_name};
pub use backoff::Backoff;
pub use commands::{CommandHandler, NoEnforcer};
pub use resolve::{Candidate, Collector, KnownAddrs, LOOKUP_TIMEOUT};

use crate::spool::Spool;
use order::Start;

/// The longest a collector may take to answer the agent's Hello once the handshake is
/// done; a node that takes connections but does not answer is passed over.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection attempt has before the next candidate's starts alongside it.
const ATTEMPT_STAGGER: Duration = Duration::from_millis(250);

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
    /// Sessions established (the collector answered the Hello).
    pub connects: u64,
    /// Attempts that did not get as far (no handshake, refused, no Welcome).
    pub connect_failures: u64,
    /// Established sessions that ended without the agent stopping.
    pub sessions_lost: u64,
    /// Sessions established with another collector than the one whose session was lost.
    pub failovers: u64,
    /// Rounds in which every candidate failed (each followed by a backoff wait).
    pub rounds_failed: u64,
    pub batches_sent: u64,
    pub batches_acked: u64,
}

pub struct Uplink {
    /// The configured collectors, in the configured order.
    pub collectors: Vec<Collector>,
    /// This agent's id (the common name of its certificate): its hash picks the first
    /// collector the agent tries ([`order`]).
    pub agent_id: String,
    /// Dead-peer detection: a collector silent this long is gone, and a handshake that
    /// has not completed by then is given up ([`client_transport`]).
    pub dead_after: Duration,
    /// The collectors' addresses as resolved; shared with the enforcer, which keeps them
    /// reachable during an isolation.
    pub known: KnownAddrs,
    /// The host's inventory: sent at every connect, and again whenever it changes.
    pub inventory: tokio::sync::watch::Receiver<Option<cordon_wire::Inventory>>,
    /// TLS with the agent's certificate; its transport settings are replaced by those
    /// `dead_after` implies.
    pub tls: quinn::ClientConfig,
    pub identity: Identity,
    pub spool: Spool,
    /// The wait after a round in which no collector could be reached.
    pub backoff: Backoff,
    pub stats: UplinkStats,
    /// Carries out the collector's commands (isolate, release).
    pub commands: Box<dyn CommandHandler>,
    /// Isolation as the enforcer last saw it: a change made locally (expiry, break-glass
    /// release, re-assertion) is reported to the collector within a second.
    pub isolation: std::sync::Arc<crate::enforce::IsolationView>,
}

/// What [`Uplink::open_first`] came to.
enum Opened {
    /// A session with candidate `.0`.
    Session(usize, Session),
    /// Every candidate it was given failed.
    NoneLeft,
    /// The agent is stopping.
    Stop,
}

/// How an established session ended.
enum Ended {
    /// The agent is stopping.
    Stop,
    /// The connection failed.
    Lost(String),
}

/// A session past its Welcome.
struct Session {
    /// Held so the connection lives as long as the session.
    _conn: quinn::Connection,
    send: quinn::SendStream,
    msgs: MessageReader,
}

/// The collector whose session was lost last, and when.
struct LostSession {
    from: Candidate,
    at: Instant,
}

/// A client endpoint for both address families (dual-stack), or IPv4 only where the host
/// has no IPv6.
fn client_endpoint() -> std::io::Result<quinn::Endpoint> {
    quinn::Endpoint::client(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))).or_else(|e| {
        tracing::debug!(error = %e, "no IPv6 socket; the uplink uses IPv4 only");
        quinn::Endpoint::client(SocketAddr::from(([0, 0, 0, 0], 0)))
    })
}

impl Uplink {
    /// Runs until `records` is closed: every batch received is spooled first, then sent
    /// when a collector is connected.
    pub async fn run(
        &mut self,
        mut records: mpsc::Receiver<Vec<FlowRecord>>,
    ) -> anyhow::Result<()> {
        let mut endpoint = client_endpoint()?;
        let mut tls = self.tls.clone();
        tls.transport_config(client_transport(self.dead_after));
        endpoint.set_default_client_config(tls);
        let hash = order::spread_hash(&self.agent_id);
        let mut start = Start::Home;
        let mut lost: Option<LostSession> = None;
        'rounds: loop {
            // Names are looked up again at every round.
            let candidates = self.known.resolve(&self.collectors).await;
            let addrs: Vec<SocketAddr> = candidates.iter().map(|c| c.addr).collect();
            let mut left = order::round(hash, &start, &addrs);
            while !left.is_empty() {
                let (target, session) = match self
                    .open_first(&endpoint, &candidates, &mut left, &mut records)
                    .await
                {
                    Opened::Session(i, s) => (&candidates[i], s),
                    Opened::Stop => return Self::stop(&endpoint).await,
                    Opened::NoneLeft => break,
                };
                self.connected(target, lost.take());
                let since = Instant::now();
                let reason = match self.stream(session, &mut records).await {
                    Ended::Stop => return Self::stop(&endpoint).await,
                    Ended::Lost(reason) => reason,
                };
                self.stats.sessions_lost += 1;
                let lasted = since.elapsed();
                lost = Some(LostSession {
                    from: target.clone(),
                    at: Instant::now(),
                });
                let pending = self.spool.pending_batches();
                if lasted >= self.dead_after {
                    // A session that worked: on to the next collector now, no backoff.
                    self.backoff.reset();
                    tracing::warn!(collector = %target, %reason, ?lasted, pending, "collector connection lost; trying the next collector now");
                    start = Start::After(target.addr);
                    continue 'rounds;
                }
                // Lost as soon as it was made: one more failed attempt of this round, so a
                // collector that takes agents and drops them cannot make the agent spin.
                tracing::warn!(collector = %target, %reason, ?lasted, pending, "collector connection lost right after it was made; trying the next one");
            }
            self.stats.rounds_failed += 1;
            let wait = self.backoff.next_delay();
            tracing::warn!(candidates = candidates.len(), retry_in = ?wait, pending = self.spool.pending_batches(), "no collector reachable");
            start = Start::Home;
            if !self.wait_spooling(wait, &mut records).await {
                return Ok(());
            }
        }
    }

    /// Opens a session with the first of `left` (indices into `candidates`, in the order
    /// they are to be tried) that answers. Attempts overlap, as in Happy Eyeballs (RFC
    /// 8305): the next one starts when the ones in flight have not completed their
    /// handshake within [`ATTEMPT_STAGGER`], or at once when one fails, so a dead node
    /// costs a quarter of a second instead of `dead_after`, while a live node earlier in
    /// the order, answering promptly, still wins. The candidates that failed, and the one
    /// a session was opened with, are removed from `left`; batches arriving meanwhile are
    /// spooled.
    async fn open_first(
        &mut self,
        endpoint: &quinn::Endpoint,
        candidates: &[Candidate],
        left: &mut Vec<usize>,
        records: &mut mpsc::Receiver<Vec<FlowRecord>>,
    ) -> Opened {
        'race: loop {
            let mut attempts = tokio::task::JoinSet::new();
            let mut started = 0;
            let conn = loop {
                if started < left.len() && attempts.is_empty() {
                    attempts.spawn(handshake(
                        endpoint.clone(),
                        candidates[left[started]].clone(),
                        left[started],
                        self.dead_after,
                    ));
                    started += 1;
                }
                if attempts.is_empty() {
                    return Opened::NoneLeft;
                }
                let stagger = tokio::time::sleep(ATTEMPT_STAGGER);
                tokio::select! {
                    done = attempts.join_next() => match done {
                        Some(Ok((i, Ok(conn)))) => break (i, conn),
                        Some(Ok((i, Err(reason)))) => {
                            self.stats.connect_failures += 1;
                            tracing::warn!(collector = %candidates[i], %reason, "cannot connect to the collector; trying the next one");
                            left.retain(|c| *c != i);
                            started -= 1;
                        }
                        // A handshake task does not panic; if one did, it counts as failed.
                        Some(Err(e)) => tracing::error!(error = %e, "a connection attempt ended abnormally"),
                        None => {}
                    },
                    _ = stagger, if started < left.len() => {
                        attempts.spawn(handshake(endpoint.clone(), candidates[left[started]].clone(), left[started], self.dead_after));
                        started += 1;
                    }
                    batch = records.recv() => match batch {
                        Some(b) => {
                            self.spool_batch(b);
                        }
                        None => return Opened::Stop,
                    },
                }
            };
            // The others still in flight are dropped with the set, which closes them.
            drop(attempts);
            let (i, conn) = conn;
            left.retain(|c| *c != i);
            match self.open(conn, records).await {
                Ok(Some(session)) => return Opened::Session(i, session),
                Ok(None) => return Opened::Stop,
                Err(reason) => {
                    self.stats.connect_failures += 1;
                    tracing::warn!(collector = %candidates[i], %reason, "the collector did not open a session; trying the next one");
                    continue 'race;
                }
            }
        }
    }

    async fn stop(endpoint: &quinn::Endpoint) -> anyhow::Result<()> {
        endpoint.wait_idle().await;
        Ok(())
    }

    /// Waits `wait`, spooling the batches that arrive; false when `records` closed.
    async fn wait_spooling(
        &mut self,
        wait: Duration,
        records: &mut mpsc::Receiver<Vec<FlowRecord>>,
    ) -> bool {
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return true,
                batch = records.recv() => match batch {
                    Some(b) => {
                        self.spool_batch(b);
                    }
                    None => return false,
                },
            }
        }
    }

    /// Counts and logs a session established with `target`, after `lost` if one was.
    fn connected(&mut self, target: &Candidate, lost: Option<LostSession>) {
        self.stats.connects += 1;
        let pending = self.spool.pending_batches();
        match lost {
            Some(l) if l.from.addr != target.addr => {
                self.stats.failovers += 1;
                tracing::info!(from = %l.from, to = %target, after = ?l.at.elapsed(), pending, "connected to the collector, failed over from another");
            }
            Some(l) => {
                tracing::info!(collector = %target, after = ?l.at.elapsed(), pending, "connected to the collector again, the same one");
            }
            None => tracing::info!(collector = %target, pending, "connected to the collector"),
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

    fn hello(&self) -> Message {
        Message::Hello(Hello {
            protocol_min: PROTOCOL_MIN,
            protocol_max: PROTOCOL_MAX,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            host_name: self.identity.host_name.clone(),
            capture: self.identity.capture.clone(),
            boot_id: self.identity.boot_id.clone(),
            last_seq: self.spool.next_seq().saturating_sub(1),
        })
    }

    /// Greets the collector over `conn` up to its Welcome, then sends what a session
    /// starts with; batches that arrive meanwhile are spooled. `Ok(None)`: the agent is
    /// stopping.
    async fn open(
        &mut self,
        conn: quinn::Connection,
        records: &mut mpsc::Receiver<Vec<FlowRecord>>,
    ) -> Result<Option<Session>, String> {
        let hello = self.hello();
        let (mut send, recv, welcome) = {
            let greeting = greet(&conn, hello);
            tokio::pin!(greeting);
            loop {
                tokio::select! {
                    res = &mut greeting => break res?,
                    batch = records.recv() => match batch {
                        Some(b) => {
                            self.spool_batch(b);
                        }
                        None => return Ok(None),
                    },
                }
            }
        };
        self.spool
            .collector_has(welcome.stored_seq)
            .map_err(|e| format!("spool: {e}"))?;
        let current = self.inventory.borrow_and_update().clone();
        if let Some(inv) = current {
            write_message(&mut send, &Message::Inventory(inv))
                .await
                .map_err(|e| e.to_string())?;
        }
        let state = Message::EnforcementState(self.commands.state());
        write_message(&mut send, &state)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Some(Session {
            _conn: conn,
            send,
            // Read on a task of its own, since the session also waits for batches.
            msgs: MessageReader::spawn(recv),
        }))
    }

    /// Streams batches and answers commands until the session ends.
    async fn stream(
        &mut self,
        session: Session,
        records: &mut mpsc::Receiver<Vec<FlowRecord>>,
    ) -> Ended {
        let Session {
            _conn,
            mut send,
            mut msgs,
        } = session;
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

/// The QUIC handshake with `target` (candidate `index`), given up after `dead_after`.
async fn handshake(
    endpoint: quinn::Endpoint,
    target: Candidate,
    index: usize,
    dead_after: Duration,
) -> (usize, Result<quinn::Connection, String>) {
    let res = async {
        let connecting = endpoint
            .connect(target.addr, &target.server_name)
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(dead_after, connecting)
            .await
            .map_err(|_| format!("no handshake within {dead_after:?}"))?
            .map_err(|e| e.to_string())
    };
    (index, res.await)
}

/// Hello, then the collector's Welcome (within [`WELCOME_TIMEOUT`]).
async fn greet(
    conn: &quinn::Connection,
    hello: Message,
) -> Result<(quinn::SendStream, quinn::RecvStream, Welcome), String> {
    let greet = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        write_message(&mut send, &hello)
            .await
            .map_err(|e| e.to_string())?;
        match read_message(&mut recv).await {
            Ok(Some(Message::Welcome(w))) => Ok((send, recv, w)),
            Ok(other) => Err(format!("expected Welcome, got {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    };
    tokio::time::timeout(WELCOME_TIMEOUT, greet)
        .await
        .map_err(|_| format!("no Welcome within {WELCOME_TIMEOUT:?}"))?
}

/// Sends an already encoded message body as one frame.
async fn send_raw(send: &mut quinn::SendStream, body: &[u8]) -> Result<(), String> {
    send.write_all(&(body.len() as u32).to_be_bytes())
        .await
        .map_err(|e| e.to_string())?;
    send.write_all(body).await.map_err(|e| e.to_string())
}
