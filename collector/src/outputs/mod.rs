//! Outputs: where alerts go (Kafka, Splunk HEC, later more). Every sink receives the same
//! [`Envelope`]s — a ready Splunk HEC event with its alert key — in order, in batches,
//! from its own thread; the dispatcher keeps what a sink has not yet accepted in the store
//! (the alert outbox), so a sink that is down loses nothing and a restart resends what was
//! not confirmed (at-least-once; the key lets consumers deduplicate).

pub mod dispatch;
pub mod hec;
pub mod kafka;

/// `[outputs]` in the collector's config: each output present is enabled.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputsConfig {
    pub hec: Option<hec::HecConfig>,
    pub kafka: Option<kafka::KafkaConfig>,
}

/// One alert occurrence, ready to publish.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Envelope {
    /// The alert's `key_id`: the Kafka message key.
    pub key: String,
    /// A Splunk HEC event: `{"time": <Unix s, fractional>, "host": ..., "source":
    /// "cordon", "sourcetype": "cordon:alert", "index"?: ..., "event": <the alert>}`.
    /// Kafka carries it as the message value (so Splunk Connect for Kafka can forward it
    /// with `splunk.hec.json.event.formatted=true`); HEC sends it as is.
    pub hec: serde_json::Value,
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Worth trying again later (network, 429, 5xx, broker unavailable, ack timeout).
    #[error("{0} (will retry)")]
    Retryable(String),
    /// Will not succeed by retrying (bad token, bad request, message too large): the
    /// dispatcher counts the batch as dead-lettered for this sink and moves on.
    #[error("{0}")]
    Permanent(String),
}

/// A destination for alerts. Called from one thread per sink; blocking is fine.
pub trait Sink: Send {
    /// For logs and metrics ("kafka", "hec").
    fn name(&self) -> &'static str;
    /// Delivers `batch` in order; `Ok` only once every envelope is accepted by the other
    /// side (Kafka: delivery reports; HEC: the response, and indexer acks when enabled).
    fn deliver(&mut self, batch: &[Envelope]) -> Result<(), SinkError>;
    /// Whether the other side is reachable and accepts us now.
    fn health(&mut self) -> Result<(), SinkError>;
}

/// Wakes the sinks' threads when the outbox has something new (they also look every few
/// hundred milliseconds on their own).
#[derive(Default)]
pub struct Wake {
    generation: std::sync::Mutex<u64>,
    cv: std::sync::Condvar,
}

impl Wake {
    pub fn notify(&self) {
        if let Ok(mut g) = self.generation.lock() {
            *g += 1;
            self.cv.notify_all();
        }
    }

    /// Waits until a `notify` after the one `seen` last, or `timeout`.
    pub fn wait(&self, seen: &mut u64, timeout: std::time::Duration) {
        let Ok(g) = self.generation.lock() else {
            return;
        };
        let g = if *g == *seen {
            match self.cv.wait_timeout(g, timeout) {
                Ok((g, _)) => g,
                Err(_) => return,
            }
        } else {
            g
        };
        *seen = *g;
    }
}
