//! The Kafka sink's counters, for the collector's metrics.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counts of messages (one message per envelope). Shared with the metrics registry via
/// [`KafkaSink::counters`](super::KafkaSink::counters).
#[derive(Debug, Default)]
pub struct KafkaCounters {
    /// Messages handed to librdkafka (enqueued for sending).
    pub sent: AtomicU64,
    /// Messages the brokers acknowledged (acks=all).
    pub delivered: AtomicU64,
    /// Messages that failed: an error delivery report, or refused when enqueued.
    pub failed: AtomicU64,
    /// Envelopes of batches handed back as `Retryable` (the dispatcher sends them again).
    pub retried: AtomicU64,
}

/// A copy of [`KafkaCounters`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KafkaCountersSnapshot {
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    pub retried: u64,
}

impl KafkaCounters {
    pub fn snapshot(&self) -> KafkaCountersSnapshot {
        KafkaCountersSnapshot {
            sent: self.sent.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            failed: self.failed.load(Relaxed),
            retried: self.retried.load(Relaxed),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Relaxed);
    }
}
