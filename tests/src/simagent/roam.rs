//! A simulated agent that knows every node of a cluster, as the real agent's uplink does
//! (`agent/src/uplink`): it starts at its home node, and when its session is lost (the
//! node silent for the QUIC idle timeout of `cordon_wire::transport::client_config`, 3 s,
//! or the connection closed) it moves at once to the next node, round-robin; a handshake
//! with no answer within that time is given up. After a round in which no node answered it
//! backs off briefly and starts again at its home. What the old node did not acknowledge
//! is sent again to the new one (the agent's spool), except what the new node's Welcome
//! says is already stored. Each new batch's records get the send time as `last_seen_ns`,
//! so a stored batch can be recognised by (agent, `last_seen_ns`): the benchmarks check
//! every batch is stored exactly once.
use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use cordon_wire::{
    FlowBatch, FlowRecord, Goodbye, Message,
    transport::{DEFAULT_DEAD_AFTER, read_message, write_message},
};
use tokio::sync::mpsc;

use super::{Connected, Identity, Rng, Totals, Window, connect, record, unix_ns};

/// No node: the agent is between sessions.
pub const NOWHERE: usize = usize::MAX;

/// One session's start, as the bench sees it.
#[derive(Clone, Debug)]
pub struct SessionStart {
    /// Index of the node in the agent's list.
    pub node: usize,
    /// When the previous session was found dead (None: the first session).
    pub lost_at: Option<Instant>,
    /// When the node's Welcome arrived.
    pub at: Instant,
    /// The sequence number of the first batch this session carries that no node was sent
    /// before: once the store's `last_seq` reaches it, data flows again.
    pub first_new_seq: u64,
}

/// Where an agent is, shared with the bench while it runs.
#[derive(Debug)]
pub struct Placement {
    /// The node it has a session with, or [`NOWHERE`].
    pub node: AtomicUsize,
    pub sessions: Mutex<Vec<SessionStart>>,
}

impl Default for Placement {
    fn default() -> Self {
        Self {
            node: AtomicUsize::new(NOWHERE),
            sessions: Mutex::default(),
        }
    }
}

/// The shape of the load one agent offers.
#[derive(Clone, Copy, Debug)]
pub struct RoamLoad {
    pub batch: usize,
    /// Unacknowledged batches in flight at most.
    pub window: usize,
    /// Batches per second; `None`: as fast as the window allows.
    pub batches_per_s: Option<f64>,
}

/// A roaming agent, before it runs.
pub struct Roamer {
    pub index: usize,
    pub who: Identity,
    pub ca_pem: Arc<str>,
    /// Every node, in the order all agents list them.
    pub nodes: Vec<SocketAddr>,
    pub endpoint: quinn::Endpoint,
    pub placement: Arc<Placement>,
    /// Set: stop sending new batches as if `window.until` had come (drain and say
    /// Goodbye).
    pub stop: Arc<AtomicBool>,
}

/// What one roaming agent did.
#[derive(Debug, Default)]
pub struct RoamResult {
    pub id: String,
    /// The store's sequence number at the first Welcome.
    pub first_stored_seq: u64,
    /// New batches (not counting resends), and (seq, `last_seen_ns`) of each.
    pub batches_sent: u64,
    pub sent: Vec<(u64, u64)>,
    /// Batches sent again to a new node.
    pub resent: u64,
    pub batches_acked: u64,
    pub records_acked: u64,
    pub sessions: u32,
    /// Why each session that ended early ended.
    pub lost: Vec<String>,
    /// Send→ack latencies (µs) of batches first sent in the measured window.
    pub latencies_us: Vec<u32>,
    pub error: Option<String>,
}

/// A batch sent and not acknowledged yet.
struct Pending {
    seq: u64,
    ns: u64,
    first_sent: Instant,
}

/// How a session ended.
enum End {
    /// Everything acknowledged, Goodbye said.
    Done,
    /// The connection died (or the node refused us): move on.
    Lost(String),
}

/// The agent's records, the same each batch with that batch's times.
struct Template {
    records: Vec<FlowRecord>,
    ages: Vec<u64>,
}

impl Template {
    fn new(index: usize, batch: usize) -> Self {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1).wrapping_mul(0x2545_f491));
        let now = unix_ns();
        let records: Vec<FlowRecord> = (0..batch).map(|_| record(&mut rng, index, now)).collect();
        let ages = records
            .iter()
            .map(|r| r.last_seen_ns.saturating_sub(r.first_seen_ns))
            .collect();
        Self { records, ages }
    }

    async fn send(&mut self, send: &mut quinn::SendStream, p: &Pending) -> Result<(), String> {
        for (r, age) in self.records.iter_mut().zip(&self.ages) {
            r.first_seen_ns = p.ns.saturating_sub(*age);
            r.last_seen_ns = p.ns;
        }
        let msg = Message::FlowBatch(FlowBatch {
            seq: p.seq,
            records: std::mem::take(&mut self.records),
            dropped_before: 0,
        });
        let res = write_message(send, &msg).await;
        if let Message::FlowBatch(b) = msg {
            self.records = b.records;
        }
        res.map_err(|e| format!("sending batch {}: {e}", p.seq))
    }
}

impl Roamer {
    /// Runs until `window.until`, then until everything sent is acknowledged (or 90 s
    /// more pass), moving between nodes as sessions die.
    pub async fn run(self, load: RoamLoad, window: Window, totals: Arc<Totals>) -> RoamResult {
        let n = self.nodes.len();
        let mut r = RoamResult {
            id: self.who.id.clone(),
            ..RoamResult::default()
        };
        let mut tpl = Template::new(self.index, load.batch);
        let mut unacked: VecDeque<Pending> = VecDeque::new();
        let mut last_seq: Option<u64> = None;
        let period = load.batches_per_s.map(|b| Duration::from_secs_f64(1.0 / b));
        let mut next_due = window.start
            + period.map_or(Duration::ZERO, |p| {
                p.mul_f64((self.index % 64) as f64 / 64.0)
            });
        let mut give_up = window.until + Duration::from_secs(90);
        let home = self.index % n.max(1);
        let mut start = home;
        let mut lost_at: Option<Instant> = None;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                give_up = give_up.min(Instant::now() + Duration::from_secs(90));
            }
            if Instant::now() > give_up {
                r.error = Some(format!(
                    "{} batches unacknowledged at the end",
                    unacked.len()
                ));
                return r;
            }
            // One round over the nodes, from `start`.
            let mut session = None;
            for k in 0..n {
                let i = (start + k) % n;
                let attempt = connect(
                    &self.endpoint,
                    &self.ca_pem,
                    &self.who,
                    self.index,
                    self.nodes[i],
                );
                match tokio::time::timeout(DEFAULT_DEAD_AFTER, attempt).await {
                    Ok(Ok(c)) => {
                        session = Some((i, c));
                        break;
                    }
                    Ok(Err(_)) | Err(_) => continue,
                }
            }
            let Some((node, c)) = session else {
                start = home;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let stored = c.stored_seq;
            let seq0 = *last_seq.get_or_insert_with(|| {
                r.first_stored_seq = stored;
                stored
            });
            // Already stored: as good as acknowledged.
            while unacked.front().is_some_and(|p| p.seq <= stored) {
                unacked.pop_front();
                r.batches_acked += 1;
                r.records_acked += load.batch as u64;
                totals.batches_acked.fetch_add(1, Ordering::Relaxed);
                totals
                    .records_acked
                    .fetch_add(load.batch as u64, Ordering::Relaxed);
            }
            r.sessions += 1;
            if let Ok(mut s) = self.placement.sessions.lock() {
                s.push(SessionStart {
                    node,
                    lost_at,
                    at: Instant::now(),
                    first_new_seq: last_seq.unwrap_or(seq0) + 1,
                });
            }
            self.placement.node.store(node, Ordering::Release);
            let end = session_loop(
                c,
                &mut tpl,
                &mut unacked,
                &mut last_seq,
                &mut next_due,
                period,
                load,
                window,
                &self.stop,
                &totals,
                &mut r,
            )
            .await;
            self.placement.node.store(NOWHERE, Ordering::Release);
            match end {
                End::Done => return r,
                End::Lost(why) => {
                    r.lost.push(why);
                    lost_at = Some(Instant::now());
                    start = (node + 1) % n;
                }
            }
        }
    }
}

/// One session: resend what is unacknowledged, then send new batches (paced or as the
/// window allows) until the window closes and everything is acknowledged.
#[allow(clippy::too_many_arguments)]
async fn session_loop(
    c: Connected,
    tpl: &mut Template,
    unacked: &mut VecDeque<Pending>,
    last_seq: &mut Option<u64>,
    next_due: &mut Instant,
    period: Option<Duration>,
    load: RoamLoad,
    window: Window,
    stop: &AtomicBool,
    totals: &Totals,
    r: &mut RoamResult,
) -> End {
    let Connected {
        mut send,
        mut recv,
        conn,
        ..
    } = c;
    let (tx, mut acks) = mpsc::unbounded_channel::<Result<Option<u64>, String>>();
    let reader = tokio::spawn(async move {
        loop {
            let m = match read_message(&mut recv).await {
                Ok(Some(Message::Ack(a))) => Ok(Some(a.seq)),
                Ok(Some(Message::Command(_))) => continue,
                Ok(None) => Ok(None),
                Ok(Some(other)) => Err(format!("unexpected message {other:?}")),
                Err(e) => Err(format!("reading acks: {e}")),
            };
            let end = !matches!(m, Ok(Some(_)));
            if tx.send(m).is_err() || end {
                return;
            }
        }
    });
    let lost = |why: String| {
        conn.close(0u32.into(), b"moving on");
        reader.abort();
        End::Lost(why)
    };
    for p in unacked.iter() {
        if let Err(e) = tpl.send(&mut send, p).await {
            return lost(e);
        }
        r.resent += 1;
    }
    loop {
        let now = Instant::now();
        let open = now < window.until && !stop.load(Ordering::Relaxed);
        if !open && unacked.is_empty() {
            break;
        }
        let room = unacked.len() < load.window;
        let due = period.is_none() || *next_due <= now;
        if open && room && due {
            if period.is_some() {
                *next_due += period.unwrap_or_default();
            }
            let seq = last_seq.map_or(1, |s| s + 1);
            *last_seq = Some(seq);
            let p = Pending {
                seq,
                ns: unix_ns(),
                first_sent: now,
            };
            r.batches_sent += 1;
            r.sent.push((p.seq, p.ns));
            let res = tpl.send(&mut send, &p).await;
            unacked.push_back(p);
            if let Err(e) = res {
                return lost(e);
            }
            continue;
        }
        // Wake at the next send, and at least every 100 ms to see `stop`.
        let tick = now + Duration::from_millis(100);
        let wake = if open && room {
            (*next_due).min(window.until).min(tick)
        } else if open {
            window.until.min(tick)
        } else {
            tick
        };
        tokio::select! {
            m = acks.recv() => match m {
                Some(Ok(Some(seq))) => {
                    let at = Instant::now();
                    while unacked.front().is_some_and(|p| p.seq <= seq) {
                        let Some(p) = unacked.pop_front() else { break };
                        if p.first_sent >= window.from && p.first_sent < window.until {
                            let us = at.duration_since(p.first_sent).as_micros();
                            r.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                        }
                        r.batches_acked += 1;
                        r.records_acked += load.batch as u64;
                        totals.batches_acked.fetch_add(1, Ordering::Relaxed);
                        totals.records_acked.fetch_add(load.batch as u64, Ordering::Relaxed);
                    }
                }
                Some(Ok(None)) => return lost("the node closed the stream".into()),
                Some(Err(e)) => return lost(e),
                None => return lost("the ack reader ended".into()),
            },
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
    let bye = Message::Goodbye(Goodbye {
        reason: "loadgen done".into(),
    });
    if let Err(e) = write_message(&mut send, &bye).await {
        return lost(format!("goodbye: {e}"));
    }
    let _ = send.finish();
    // The node closes the stream after Goodbye; whatever happens, all was acknowledged.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(Some(_))) = acks.recv().await {}
    })
    .await;
    reader.abort();
    conn.close(0u32.into(), b"done");
    End::Done
}
