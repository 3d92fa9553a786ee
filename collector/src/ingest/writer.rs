//! Group commit: one thread writes every connection's flow batches to the store.
//!
//! Storing each batch in its own transaction costs a commit (an fsync, and every index page
//! the batch touched written to the WAL) per batch, under the store's lock, one batch at a
//! time. Here connections hand their batches to a single writer thread over a bounded
//! queue; it takes whatever has queued up while its previous commit ran (up to
//! [`MAX_GROUP_BATCHES`] batches or [`MAX_GROUP_RECORDS`] records), stores them in one
//! transaction ([`FlowStore::store_batches`](crate::store::FlowStore::store_batches)) and only then
//! answers each connection. The guarantee is unchanged: a connection acknowledges a batch
//! only after the commit that made it durable has returned.
//!
//! The writer also gives the store connection a larger page cache ([`CACHE_KIB`]): the
//! flows' indexes take inserts all over, and with SQLite's default 2 MiB nearly every one
//! was a read of a page from the file.
//!
//! The queue is bounded ([`QUEUE_BATCHES`]): when the store falls behind, connections wait
//! to enqueue, which stops them reading from their streams, and QUIC flow control pushes
//! back on the agents (whose spools hold the rest).
use std::thread;

use cordon_wire::FlowBatch;
use tokio::sync::{mpsc, oneshot};

use std::sync::Arc;

use super::{IngestError, SharedStore};
use crate::{
    alerts::AlertSettings,
    outputs::Wake,
    policy::state::{Judge, PolicyState},
    store::{Compliance, Stored},
};

/// Batches waiting for the writer, at most.
const QUEUE_BATCHES: usize = 256;
/// A group stops growing at this many batches…
const MAX_GROUP_BATCHES: usize = 256;
/// …or records, so one commit stays short and the first batch in it does not wait long.
const MAX_GROUP_RECORDS: usize = 32_768;
/// The store's page cache while the writer runs, in KiB.
const CACHE_KIB: u32 = 64 * 1024;

struct Job {
    agent: String,
    batch: FlowBatch,
    done: oneshot::Sender<Result<Stored, IngestError>>,
}

/// The handle connections store their batches through.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Job>,
}

/// What the writer needs to give records their compliance verdicts and raise alerts.
#[derive(Clone)]
pub struct WriterCompliance {
    pub policy: Arc<PolicyState>,
    pub alerts: AlertSettings,
    /// Woken after a commit that queued alerts for the outputs.
    pub outbox: Arc<Wake>,
}

impl Writer {
    /// Starts the writer thread; it ends when the last handle is dropped.
    pub fn spawn(store: SharedStore, compliance: WriterCompliance) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::channel(QUEUE_BATCHES);
        thread::Builder::new()
            .name("cordon-writer".into())
            .spawn(move || run(&store, jobs, compliance))?;
        Ok(Self { queue })
    }

    /// Stores `batch` of agent `agent`; returns once it is durable (or a resend).
    pub async fn store(&self, agent: String, batch: FlowBatch) -> Result<Stored, IngestError> {
        let (done, result) = oneshot::channel();
        self.queue
            .send(Job { agent, batch, done })
            .await
            .map_err(|_| IngestError::Protocol("store writer stopped".into()))?;
        result
            .await
            .map_err(|_| IngestError::Protocol("store writer stopped".into()))?
    }
}

fn run(store: &SharedStore, mut jobs: mpsc::Receiver<Job>, c: WriterCompliance) {
    let mut judge = Judge::new(c.policy.clone());
    match store.lock() {
        Ok(mut s) => {
            if let Err(e) = s.set_cache_kib(CACHE_KIB) {
                tracing::warn!(error = %e, "cannot enlarge the store's page cache");
            }
        }
        Err(_) => tracing::warn!("store lock poisoned"),
    }
    while let Some(first) = jobs.blocking_recv() {
        let mut records = first.batch.records.len();
        let mut group = vec![first];
        while group.len() < MAX_GROUP_BATCHES && records < MAX_GROUP_RECORDS {
            match jobs.try_recv() {
                Ok(job) => {
                    records += job.batch.records.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        let items: Vec<(&str, &FlowBatch)> =
            group.iter().map(|j| (j.agent.as_str(), &j.batch)).collect();
        let mut raised = 0;
        let stored = match store.lock() {
            Ok(mut s) => {
                if c.policy.is_dirty()
                    && let Err(e) = c.policy.reload(&**s)
                {
                    tracing::warn!(error = %e, "reloading the policy context failed");
                }
                judge.refresh();
                let mut judge_fn = |agent: &str, r: &cordon_wire::FlowRecord| judge.judge(agent, r);
                let mut compliance = Compliance {
                    judge: Some(&mut judge_fn),
                    settings: &c.alerts,
                    now_ns: crate::ingest::now_ns(),
                    raised: 0,
                };
                let res = s
                    .store_batches(&items, &mut compliance)
                    .map_err(|e| e.to_string());
                raised = compliance.raised;
                res
            }
            Err(_) => Err("store lock poisoned".into()),
        };
        if raised > 0 && stored.is_ok() {
            c.outbox.notify();
        }
        match stored {
            Ok(results) => {
                for (job, result) in group.into_iter().zip(results) {
                    // A connection that went away meanwhile does not need its answer.
                    let _ = job.done.send(result.map_err(IngestError::from));
                }
            }
            Err(e) => {
                tracing::warn!(batches = group.len(), error = %e, "group commit failed");
                for job in group {
                    let _ = job
                        .done
                        .send(Err(IngestError::Protocol(format!("store: {e}"))));
                }
            }
        }
    }
}
