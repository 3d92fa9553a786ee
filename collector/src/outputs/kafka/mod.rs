//! The Kafka output: alerts as messages on a topic, produced by librdkafka (linked
//! statically, see the workspace `Cargo.toml`).
//!
//! One message per [`Envelope`](crate::outputs::Envelope): key = the alert's key_id,
//! value = the Splunk HEC event as JSON (Splunk Connect for Kafka forwards it with
//! `splunk.hec.json.event.formatted=true`). The producer is idempotent (`acks=all`,
//! `enable.idempotence=true`), so librdkafka's own retries neither duplicate nor reorder
//! messages within a partition; a batch handed back as retryable is sent again by the
//! dispatcher, so end to end delivery is at-least-once and consumers deduplicate on the
//! key. TLS and SASL are plain librdkafka properties (`[outputs.kafka.properties]`).
//!
//! `flows_topic` is only configured here: streaming flow records to it is wired
//! separately, not by this sink.
mod classify;
pub(crate) mod config;
mod counters;
mod sink;
#[cfg(test)]
mod tests;

pub use classify::is_permanent;
pub use config::{KafkaConfig, KafkaConfigError, is_secret};
pub use counters::{KafkaCounters, KafkaCountersSnapshot};
pub use sink::KafkaSink;
