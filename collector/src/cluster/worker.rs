//! A worker: one member of the consumer group that reads the flow stream, judges every
//! record against the published policy, raises alerts and stores it all in PostgreSQL.
//!
//! Exactly once without Kafka transactions: the consumer offsets live in PostgreSQL and
//! are written in the same transaction as the records they cover
//! ([`PgStore::store_consumed`]). When a partition is assigned (at start, or in a
//! rebalance after another worker joined, left or died) the worker starts reading it where
//! the database says the last committed transaction ended, so a batch is either stored
//! with its offset or neither is, whatever dies when. A batch that is in the topic twice
//! (an ingest node died between the broker's ack and the agent's) is recognised by the
//! agent's batch sequence and stored once. Cooperative-sticky assignment moves only the
//! partitions that must move.
//!
//! Offsets are also committed to Kafka after each transaction (asynchronously, for the
//! usual consumer-group tooling); the worker never reads them back.
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use cordon_wire::{FlowBatch, Message as WireMessage};
use rdkafka::{
    ClientContext, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol},
    statistics::Statistics,
    types::RDKafkaRespErr,
};

use super::ClusterConfig;
use crate::{
    ingest::WriterCompliance,
    metrics::{Metrics, Reason},
    policy::state::Judge,
    store::{Compliance, Stored, postgres::PgStore},
};

/// A transaction takes at most this many batches…
const MAX_GROUP_BATCHES: usize = 256;
/// …or records.
const MAX_GROUP_RECORDS: usize = 32_768;
/// Retries of a failed transaction back off up to this.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// What the consumer's callbacks share with the worker loop.
struct Shared {
    store: Arc<Mutex<PgStore>>,
    group: String,
    topic: String,
    node: String,
    metrics: Arc<Metrics>,
    /// Partition → the broker's high watermark, from librdkafka's statistics.
    high: Mutex<HashMap<i32, i64>>,
    /// Partition → the next offset this worker will store (what it owns now).
    next: Mutex<BTreeMap<i32, i64>>,
    /// This worker's share of the node's lag gauge, last reported.
    lag: std::sync::atomic::AtomicI64,
}

struct Ctx(Arc<Shared>);

impl ClientContext for Ctx {
    fn stats(&self, statistics: Statistics) {
        let Some(t) = statistics.topics.get(&self.0.topic) else {
            return;
        };
        if let Ok(mut high) = self.0.high.lock() {
            for (p, part) in &t.partitions {
                if *p >= 0 && part.hi_offset >= 0 {
                    high.insert(*p, part.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for Ctx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let s = &self.0;
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let stored = s.stored_offsets();
                let mut assign = TopicPartitionList::new();
                let mut taken = Vec::new();
                for e in tpl.elements() {
                    let from = stored.get(&e.partition()).copied();
                    let offset = from.map_or(Offset::Beginning, Offset::Offset);
                    if assign
                        .add_partition_offset(e.topic(), e.partition(), offset)
                        .is_ok()
                    {
                        taken.push((e.partition(), from.unwrap_or(0)));
                    }
                }
                let res = if cooperative {
                    consumer.incremental_assign(&assign)
                } else {
                    consumer.assign(&assign)
                };
                if let Err(e) = res {
                    tracing::error!(error = %e, "assigning partitions failed");
                }
                if let Ok(mut next) = s.next.lock() {
                    let before = next.len() as i64;
                    if !cooperative {
                        next.clear();
                    }
                    next.extend(taken.iter().copied());
                    s.metrics
                        .worker_partitions
                        .inc_by(next.len() as i64 - before);
                }
                s.metrics
                    .worker_rebalances
                    .get_or_create(&Reason { reason: "assign" })
                    .inc();
                tracing::info!(node = %s.node, partitions = ?taken, "flow partitions assigned (from the stored offsets)");
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                let res = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = res {
                    tracing::error!(error = %e, "unassigning partitions failed");
                }
                if let Ok(mut next) = s.next.lock() {
                    let before = next.len() as i64;
                    for p in &revoked {
                        next.remove(p);
                    }
                    s.metrics
                        .worker_partitions
                        .dec_by(before - next.len() as i64);
                }
                s.metrics
                    .worker_rebalances
                    .get_or_create(&Reason { reason: "revoke" })
                    .inc();
                tracing::info!(node = %s.node, partitions = ?revoked, "flow partitions revoked");
            }
            other => {
                tracing::error!(error = ?other, "consumer group rebalance failed");
                s.metrics
                    .worker_rebalances
                    .get_or_create(&Reason { reason: "error" })
                    .inc();
            }
        }
    }
}

impl Shared {
    /// The offsets stored with the data; retried while the database does not answer
    /// (nothing can be stored meanwhile anyway). After a minute the partitions start at
    /// the beginning: slower, never wrong (resends are recognised).
    fn stored_offsets(&self) -> HashMap<i32, i64> {
        let start = Instant::now();
        let mut wait = Duration::from_millis(100);
        loop {
            let res = match self.store.lock() {
                Ok(s) => s.consumer_offsets(&self.group, &self.topic),
                Err(_) => return HashMap::new(),
            };
            match res {
                Ok(o) => return o,
                Err(e) if start.elapsed() < Duration::from_secs(60) => {
                    tracing::warn!(error = %e, "reading the stored consumer offsets failed; retrying");
                    thread::sleep(wait);
                    wait = (wait * 2).min(RETRY_MAX);
                }
                Err(e) => {
                    tracing::error!(error = %e, "no stored consumer offsets; reading the partitions from the beginning");
                    return HashMap::new();
                }
            }
        }
    }
}

/// One message as the worker keeps it until its transaction commits.
struct Taken {
    partition: i32,
    offset: i64,
    agent: String,
    /// `None`: malformed (counted, skipped, its offset still advances).
    batch: Option<FlowBatch>,
}

/// A worker of the flow stream's consumer group.
pub struct Worker {
    index: u32,
    shared: Arc<Shared>,
    consumer: BaseConsumer<Ctx>,
    compliance: WriterCompliance,
    judge: Judge,
}

impl Worker {
    /// Joins the consumer group of `cfg` (subscribing to the flows topic), storing into
    /// `store`; `index` tells this node's workers apart.
    pub fn new(
        cfg: &ClusterConfig,
        node: &str,
        index: u32,
        store: PgStore,
        compliance: WriterCompliance,
        metrics: Arc<Metrics>,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let shared = Arc::new(Shared {
            store: Arc::new(Mutex::new(store)),
            group: cfg.consumer_group.clone(),
            topic: cfg.flows_topic.clone(),
            node: node.to_string(),
            metrics,
            high: Mutex::default(),
            next: Mutex::default(),
            lag: std::sync::atomic::AtomicI64::new(0),
        });
        let consumer: BaseConsumer<Ctx> = cfg
            .kafka_config(&format!("cordon-worker-{node}-{index}"))
            .set("group.id", &cfg.consumer_group)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            // Deliver as soon as a batch is there: detection latency.
            .set("fetch.wait.max.ms", "20")
            .set("statistics.interval.ms", "1000")
            .create_with_context(Ctx(shared.clone()))?;
        consumer.subscribe(&[cfg.flows_topic.as_str()])?;
        let judge = Judge::new(compliance.policy.clone());
        Ok(Self {
            index,
            shared,
            consumer,
            compliance,
            judge,
        })
    }

    /// Runs on a thread of its own until `stop`, then leaves the group (its partitions
    /// go to the other workers at once).
    pub fn spawn(mut self, stop: Arc<AtomicBool>) -> std::io::Result<thread::JoinHandle<()>> {
        thread::Builder::new()
            .name(format!("cordon-worker-{}", self.index))
            .spawn(move || {
                tracing::info!(node = %self.shared.node, worker = self.index, topic = %self.shared.topic, "worker started");
                let mut last_lag = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let taken = self.take();
                    if !taken.is_empty() {
                        self.store(taken, &stop);
                    }
                    if last_lag.elapsed() >= Duration::from_secs(1) {
                        last_lag = Instant::now();
                        self.update_lag();
                    }
                }
                self.consumer.unsubscribe();
                // What this worker added to the node's gauges goes with it.
                let lag = self.shared.lag.swap(0, Ordering::Relaxed);
                self.shared.metrics.worker_lag.dec_by(lag);
                tracing::info!(node = %self.shared.node, worker = self.index, "worker stopped");
            })
    }

    /// Whatever the broker has for us now: waits up to 100 ms for a first message, then
    /// takes what is already fetched, up to the group's limits.
    fn take(&mut self) -> Vec<Taken> {
        let mut out = Vec::new();
        let mut records = 0usize;
        let mut wait = Duration::from_millis(100);
        while out.len() < MAX_GROUP_BATCHES && records < MAX_GROUP_RECORDS {
            let Some(res) = self.consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            let m = match res {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the flow stream failed");
                    break;
                }
            };
            let agent = m
                .key()
                .and_then(|k| std::str::from_utf8(k).ok())
                .unwrap_or("")
                .to_string();
            let batch = match m.payload().map(cordon_wire::decode) {
                Some(Ok(WireMessage::FlowBatch(b))) if !agent.is_empty() => Some(b),
                other => {
                    let why = match other {
                        Some(Err(e)) => e.to_string(),
                        _ => "not a flow batch of a named agent".into(),
                    };
                    tracing::warn!(partition = m.partition(), offset = m.offset(), reason = %why, "a malformed message on the flow stream is skipped");
                    self.shared.metrics.worker_malformed.inc();
                    None
                }
            };
            records += batch.as_ref().map_or(0, |b| b.records.len());
            out.push(Taken {
                partition: m.partition(),
                offset: m.offset(),
                agent,
                batch,
            });
        }
        out
    }

    /// Stores `taken` with its offsets in one transaction, retrying (without reading on)
    /// until it commits or the worker stops; a stopped worker's uncommitted messages are
    /// read again by whoever gets their partitions.
    fn store(&mut self, taken: Vec<Taken>, stop: &AtomicBool) {
        let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
        for t in &taken {
            let next = offsets.entry(t.partition).or_insert(0);
            *next = (*next).max(t.offset + 1);
        }
        let offsets: Vec<(i32, i64)> = offsets.into_iter().collect();
        let items: Vec<(&str, &FlowBatch)> = taken
            .iter()
            .filter_map(|t| t.batch.as_ref().map(|b| (t.agent.as_str(), b)))
            .collect();
        let s = self.shared.clone();
        let mut wait = Duration::from_millis(100);
        loop {
            let res = self.commit(&offsets, &items);
            match res {
                Ok(raised) => {
                    if raised > 0 {
                        self.compliance.outbox.notify();
                    }
                    break;
                }
                Err(e) => {
                    s.metrics.worker_retries.inc();
                    tracing::warn!(error = %e, batches = items.len(), retry_in = ?wait, "storing flows failed; retrying");
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    thread::sleep(wait);
                    wait = (wait * 2).min(RETRY_MAX);
                }
            }
        }
        if let Ok(mut next) = s.next.lock() {
            for (p, o) in &offsets {
                if let Some(n) = next.get_mut(p) {
                    *n = (*n).max(*o);
                }
            }
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &offsets {
            let _ = tpl.add_partition_offset(&s.topic, *p, Offset::Offset(*o));
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "committing offsets to Kafka (for tooling) failed");
        }
    }

    /// One transaction; returns the alert occurrences raised.
    fn commit(
        &mut self,
        offsets: &[(i32, i64)],
        items: &[(&str, &FlowBatch)],
    ) -> Result<u64, String> {
        let s = &self.shared;
        let c = &self.compliance;
        let mut store = s.store.lock().map_err(|_| "store lock poisoned")?;
        if c.policy.is_dirty()
            && let Err(e) = c.policy.reload(&*store)
        {
            tracing::warn!(error = %e, "reloading the policy context failed");
        }
        self.judge.refresh();
        let judge = &mut self.judge;
        let mut judge_fn = |agent: &str, r: &cordon_wire::FlowRecord| judge.judge(agent, r);
        let mut compliance = Compliance {
            judge: Some(&mut judge_fn),
            settings: &c.alerts,
            now_ns: crate::ingest::now_ns(),
            raised: 0,
        };
        let results = store
            .store_consumed(&s.group, &s.topic, offsets, items, &mut compliance)
            .map_err(|e| e.to_string())?;
        let m = &s.metrics;
        for ((agent, batch), r) in items.iter().zip(results) {
            match r {
                Ok(Stored::New { records }) => {
                    m.batches_stored.inc();
                    m.records_stored.inc_by(records as u64);
                    m.records_dropped_by_agents.inc_by(batch.dropped_before);
                }
                Ok(Stored::Duplicate) => {
                    m.batches_duplicate.inc();
                }
                Err(e) => {
                    tracing::warn!(agent, seq = batch.seq, error = %e, "a batch on the flow stream was refused");
                    m.worker_malformed.inc();
                }
            }
        }
        Ok(compliance.raised)
    }

    /// Consumer lag: the broker's high watermark minus what this worker has stored, summed
    /// over the partitions it owns.
    fn update_lag(&self) {
        let s = &self.shared;
        let (Ok(next), Ok(high)) = (s.next.lock(), s.high.lock()) else {
            return;
        };
        let lag: i64 = next
            .iter()
            .map(|(p, n)| high.get(p).map_or(0, |h| (h - n).max(0)))
            .sum();
        // Several workers of a node add up: each applies the change of its own share.
        let before = s.lag.swap(lag, Ordering::Relaxed);
        s.metrics.worker_lag.inc_by(lag - before);
    }
}
