//! Simulated agents for the collector benchmarks (`cordon-loadgen`, `cordon-cluster-bench`):
//! identities enrolled with the collector's CA (one key and certificate each), and agents
//! that speak the real uplink protocol over real QUIC (`cordon_wire::transport`): Hello,
//! Welcome, flow batches with increasing sequence numbers, each acknowledged by the
//! collector, and Goodbye at the end. [`drive`] is one connection to one collector;
//! [`roam`] is an agent that knows several nodes of a cluster and moves to the next when
//! its connection dies, as the real agent does.
use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::bail;
use cordon_collector::pki::Ca;
use cordon_wire::{
    FlowBatch, FlowRecord, Goodbye, Hello, Message,
    transport::{client_config, read_message, write_message},
};
use rcgen::{CertificateParams, KeyPair};
use tokio::sync::Semaphore;

pub mod records;
pub mod roam;

pub use records::{Rng, record, unix_ns};

/// One phase's shape.
#[derive(Clone, Debug)]
pub struct Load {
    pub name: &'static str,
    pub agents: usize,
    pub batch: usize,
    pub window: usize,
    /// Batches per second per agent; `None`: as fast as the window allows.
    pub batches_per_s: Option<f64>,
}

/// An agent's identity, enrolled with the collector's CA.
#[derive(Clone)]
pub struct Identity {
    pub id: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn enroll(ca: &Ca, n: usize) -> anyhow::Result<Vec<Identity>> {
    (0..n)
        .map(|i| {
            let id = format!("loadgen-{i:04}");
            let key = KeyPair::generate()?;
            let csr = CertificateParams::new(Vec::<String>::new())?
                .serialize_request(&key)?
                .pem()?;
            Ok(Identity {
                cert_pem: ca.sign_agent(&csr, &id, 1)?,
                key_pem: key.serialize_pem(),
                id,
            })
        })
        .collect()
}

#[derive(Debug, Default)]
pub struct AgentResult {
    pub id: String,
    /// The collector's stored sequence number at Welcome.
    pub stored_seq: u64,
    pub batches_sent: u64,
    pub batches_acked: u64,
    pub records_acked: u64,
    /// Send→ack latencies (µs) of the batches sent in the measured window.
    pub latencies_us: Vec<u32>,
    pub error: Option<String>,
}

/// Counters all agents add to, read by the phase driver.
#[derive(Default)]
pub struct Totals {
    pub records_acked: AtomicU64,
    pub batches_acked: AtomicU64,
}

/// A connected agent, Welcome received, not yet sending.
pub struct Connected {
    pub index: usize,
    pub id: String,
    pub stored_seq: u64,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    pub conn: quinn::Connection,
}

pub async fn connect(
    endpoint: &quinn::Endpoint,
    ca_pem: &str,
    who: &Identity,
    index: usize,
    addr: SocketAddr,
) -> anyhow::Result<Connected> {
    let cfg = client_config(ca_pem, &who.cert_pem, &who.key_pem)?;
    let conn = endpoint.connect_with(cfg, addr, "127.0.0.1")?.await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    write_message(
        &mut send,
        &Message::Hello(Hello {
            protocol_min: 1,
            protocol_max: 1,
            agent_version: "loadgen".into(),
            host_name: format!("lg-host-{index:04}"),
            capture: "ebpf".into(),
            boot_id: "loadgen".into(),
            last_seq: 0,
        }),
    )
    .await?;
    let stored_seq = match read_message(&mut recv).await? {
        Some(Message::Welcome(w)) => w.stored_seq,
        other => bail!("{}: expected Welcome, got {other:?}", who.id),
    };
    Ok(Connected {
        index,
        id: who.id.clone(),
        stored_seq,
        send,
        recv,
        conn,
    })
}

/// When an agent's batches count: sent in `[from, until)`.
#[derive(Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub from: Instant,
    pub until: Instant,
}

pub async fn drive(
    agent: Connected,
    load: Load,
    window: Window,
    totals: Arc<Totals>,
) -> AgentResult {
    let Connected {
        index,
        id,
        stored_seq,
        mut send,
        mut recv,
        conn,
    } = agent;
    let mut result = AgentResult {
        id,
        stored_seq,
        ..Default::default()
    };
    let credit = Arc::new(Semaphore::new(load.window));
    let in_flight: Arc<Mutex<VecDeque<(u64, Instant)>>> = Arc::default();
    let batch_len = load.batch as u64;

    // Acks: match them to the batches in flight, in order, and free their window slots.
    let reader = {
        let credit = credit.clone();
        let in_flight = in_flight.clone();
        let totals = totals.clone();
        tokio::spawn(async move {
            let mut acked = 0u64;
            let mut latencies = Vec::new();
            loop {
                match read_message(&mut recv).await {
                    Ok(Some(Message::Ack(a))) => {
                        let now = Instant::now();
                        let mut done = Vec::new();
                        if let Ok(mut q) = in_flight.lock() {
                            while q.front().is_some_and(|&(seq, _)| seq <= a.seq) {
                                done.extend(q.pop_front());
                            }
                        }
                        for (_, sent) in &done {
                            if *sent >= window.from && *sent < window.until {
                                let us = now.duration_since(*sent).as_micros();
                                latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
                            }
                        }
                        let n = done.len() as u64;
                        acked += n;
                        totals.batches_acked.fetch_add(n, Ordering::Relaxed);
                        totals
                            .records_acked
                            .fetch_add(n * batch_len, Ordering::Relaxed);
                        credit.add_permits(done.len());
                    }
                    Ok(None) => return Ok((acked, latencies)),
                    Ok(Some(other)) => {
                        return Err(format!("unexpected message {other:?}"));
                    }
                    Err(e) => return Err(format!("reading acks: {e}")),
                }
            }
        })
    };

    // Sending: the same records each time with fresh times and sequence numbers (the cost
    // that matters is the collector's, not making up records).
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1).wrapping_mul(0x2545_f491));
    let now = unix_ns();
    let mut records: Vec<FlowRecord> = (0..load.batch)
        .map(|_| record(&mut rng, index, now))
        .collect();
    let period = load.batches_per_s.map(|r| Duration::from_secs_f64(1.0 / r));
    // Spread the agents' sends over the period rather than all at once.
    let mut next = window.start
        + period.map_or(Duration::ZERO, |p| {
            p.mul_f64(index as f64 / load.agents.max(1) as f64)
        });
    let mut seq = stored_seq;
    let send_result: Result<(), String> = async {
        loop {
            if let Some(p) = period {
                tokio::time::sleep_until(next.into()).await;
                next += p;
            }
            let permit = credit.acquire().await.map_err(|e| format!("window: {e}"))?;
            permit.forget();
            let now = Instant::now();
            if now >= window.until {
                credit.add_permits(1);
                break;
            }
            seq += 1;
            let ns = unix_ns();
            for r in &mut records {
                r.first_seen_ns = ns.saturating_sub(r.last_seen_ns.saturating_sub(r.first_seen_ns));
                r.last_seen_ns = ns;
            }
            if let Ok(mut q) = in_flight.lock() {
                q.push_back((seq, now));
            }
            let msg = Message::FlowBatch(FlowBatch {
                seq,
                records: std::mem::take(&mut records),
                dropped_before: 0,
            });
            let sent = write_message(&mut send, &msg).await;
            if let Message::FlowBatch(b) = msg {
                records = b.records;
            }
            sent.map_err(|e| format!("sending batch {seq}: {e}"))?;
            result.batches_sent += 1;
        }
        // Every batch acknowledged: all the window's credit is back.
        let all = u32::try_from(load.window).unwrap_or(u32::MAX);
        match tokio::time::timeout(Duration::from_secs(60), credit.acquire_many(all)).await {
            Ok(Ok(p)) => p.forget(),
            Ok(Err(e)) => return Err(format!("window: {e}")),
            Err(_) => return Err("acks still missing 60 s after the last batch".into()),
        }
        write_message(
            &mut send,
            &Message::Goodbye(Goodbye {
                reason: "loadgen done".into(),
            }),
        )
        .await
        .map_err(|e| format!("goodbye: {e}"))?;
        send.finish().map_err(|e| format!("finish: {e}"))?;
        Ok(())
    }
    .await;
    if send_result.is_err() {
        // Unblock the reader.
        conn.close(0u32.into(), b"loadgen error");
    }
    let read_result = match tokio::time::timeout(Duration::from_secs(30), reader).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(format!("ack reader: {e}")),
        Err(_) => Err("the collector did not close the stream after Goodbye".into()),
    };
    match read_result {
        Ok((acked, latencies)) => {
            result.batches_acked = acked;
            result.records_acked = acked * batch_len;
            result.latencies_us = latencies;
        }
        Err(e) => result.error = Some(e),
    }
    if let Err(e) = send_result {
        result.error = Some(e);
    }
    conn.close(0u32.into(), b"done");
    result
}

/// The `p` quantile of sorted microseconds, in milliseconds.
pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}
