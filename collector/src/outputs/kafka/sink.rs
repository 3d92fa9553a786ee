//! [`KafkaSink`]: an idempotent librdkafka producer behind the blocking [`Sink`] API.
use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use rdkafka::{
    ClientContext,
    config::RDKafkaLogLevel,
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext},
};

use super::{
    KafkaConfig, KafkaConfigError, KafkaCounters,
    classify::{resp_error, sink_error},
    config::is_secret,
};
use crate::outputs::{Envelope, Sink, SinkError};

/// Extra time, past librdkafka's own `message.timeout.ms`, to wait for its reports.
const REPORT_GRACE: Duration = Duration::from_secs(5);
/// Poll interval while waiting for delivery reports or queue space.
const POLL: Duration = Duration::from_millis(50);

/// Identifies one message of one `deliver` call in its delivery report.
struct Tag {
    generation: u64,
    index: usize,
}

/// The outcomes of the batch being delivered.
#[derive(Default)]
struct Reports {
    generation: u64,
    outcomes: Vec<Option<Result<(), KafkaError>>>,
    pending: usize,
}

/// Receives librdkafka's callbacks (on the thread that polls: the sink's own).
struct Context {
    reports: Mutex<Reports>,
    counters: Arc<KafkaCounters>,
}

impl Context {
    fn reports(&self) -> MutexGuard<'_, Reports> {
        self.reports.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(sink = "kafka", fac, "{message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(sink = "kafka", fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(sink = "kafka", fac, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(sink = "kafka", fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(sink = "kafka", %error, reason, "kafka client error");
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = Box<Tag>;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: Box<Tag>) {
        let outcome = match result {
            Ok(_) => {
                KafkaCounters::add(&self.counters.delivered, 1);
                Ok(())
            }
            Err((e, _)) => {
                KafkaCounters::add(&self.counters.failed, 1);
                Err(e.clone())
            }
        };
        let mut r = self.reports();
        if tag.generation != r.generation {
            return; // a report for a batch already given up on
        }
        if let Some(slot) = r.outcomes.get_mut(tag.index) {
            let first = slot.is_none();
            *slot = Some(outcome);
            if first {
                r.pending = r.pending.saturating_sub(1);
            }
        }
    }
}

/// The Kafka header carrying a delivery's idempotency key (the outbox entry's id).
pub const DELIVERY_ID_HEADER: &str = "cordon-delivery-id";

/// Publishes envelopes to `topic`: key = the alert's key_id, value = the HEC event as
/// JSON, header [`DELIVERY_ID_HEADER`]. `deliver` returns once every message of the batch has a delivery report.
pub struct KafkaSink {
    config: KafkaConfig,
    producer: Option<BaseProducer<Context>>,
    counters: Arc<KafkaCounters>,
    generation: u64,
    /// Set when messages timed out: the next call starts a new producer.
    stale: bool,
}

impl KafkaSink {
    /// Validates `config` and creates the producer (it connects in the background).
    /// Errors name the field, including a property librdkafka rejects; secret values
    /// never appear in them.
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaConfigError> {
        config.validate()?;
        let counters = Arc::new(KafkaCounters::default());
        let producer = create(config, &counters)?;
        tracing::info!(
            sink = "kafka",
            brokers = %config.brokers.join(","),
            topic = %config.topic,
            properties = ?config.properties.keys().collect::<Vec<_>>(),
            "kafka producer created"
        );
        Ok(Self {
            config: config.clone(),
            producer: Some(producer),
            counters,
            generation: 0,
            stale: false,
        })
    }

    /// The counters, to register with the metrics.
    pub fn counters(&self) -> Arc<KafkaCounters> {
        Arc::clone(&self.counters)
    }

    /// The producer, created anew after a fatal error (an idempotent producer that lost
    /// its sequence state cannot go on).
    fn producer(&mut self) -> Result<&BaseProducer<Context>, SinkError> {
        if let Some((code, reason)) = self
            .producer
            .as_ref()
            .and_then(|p| p.client().fatal_error())
        {
            tracing::warn!(sink = "kafka", %code, reason, "fatal producer error: recreating the producer");
            self.producer = None;
        }
        if std::mem::take(&mut self.stale) {
            // After a timeout an idempotent producer must bump its epoch (KIP-360) before
            // it may send again; a broker without that (tansu), or one that lost the
            // producer's state, would keep it stuck. A new producer id costs nothing here:
            // a retried batch is new messages anyway (at-least-once).
            tracing::info!(
                sink = "kafka",
                "messages timed out: starting a new producer"
            );
            self.producer = None;
        }
        if self.producer.is_none() {
            let p = create(&self.config, &self.counters).map_err(|e| {
                SinkError::Retryable(format!("kafka: recreating the producer: {e}"))
            })?;
            self.producer = Some(p);
        }
        self.producer
            .as_ref()
            .ok_or_else(|| SinkError::Retryable("kafka: no producer".into()))
    }

    fn send_and_wait(&mut self, batch: &[Envelope]) -> Result<(), SinkError> {
        // Serialize first: nothing is sent when an envelope cannot be.
        let payloads = batch
            .iter()
            .map(|e| serde_json::to_vec(&e.hec))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SinkError::Permanent(format!("kafka: serializing an envelope: {e}")))?;
        self.generation += 1;
        let generation = self.generation;
        let timeout_ms = self.config.delivery_timeout_ms;
        let deadline = Instant::now() + Duration::from_millis(timeout_ms) + REPORT_GRACE;
        let topic = self.config.topic.clone();
        let refresh_timeout = self.config.health_timeout();
        let mut refreshed = false;
        let counters = Arc::clone(&self.counters);
        let producer = self.producer()?;
        {
            let mut r = producer.context().reports();
            r.generation = generation;
            r.outcomes = (0..batch.len()).map(|_| None).collect();
            r.pending = batch.len();
        }
        for (index, (env, payload)) in batch.iter().zip(&payloads).enumerate() {
            let record = BaseRecord::with_opaque_to(&topic, Box::new(Tag { generation, index }))
                .key(env.key.as_str())
                .payload(payload.as_slice());
            let mut record = match env.hec["fields"]["cordon_delivery_id"].as_str() {
                Some(id) => record.headers(OwnedHeaders::new().insert(Header {
                    key: DELIVERY_ID_HEADER,
                    value: Some(id),
                })),
                None => record,
            };
            loop {
                match producer.send(record) {
                    Ok(()) => {
                        KafkaCounters::add(&counters.sent, 1);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if Instant::now() < deadline =>
                    {
                        record = back;
                        producer.poll(POLL);
                    }
                    // librdkafka remembers a topic error from an earlier produce response
                    // until its next metadata refresh: refresh now (once per batch) so a
                    // restored ACL is seen at once.
                    Err((KafkaError::MessageProduction(code), back))
                        if !refreshed && topic_state_error(code) =>
                    {
                        refreshed = true;
                        record = back;
                        let _ = producer
                            .client()
                            .fetch_metadata(Some(topic.as_str()), refresh_timeout);
                    }
                    Err((e, _)) => {
                        KafkaCounters::add(&counters.failed, 1);
                        return Err(sink_error("enqueueing a message", &e));
                    }
                }
            }
        }
        loop {
            producer.poll(POLL);
            let r = producer.context().reports();
            if r.pending == 0 {
                break;
            }
            if Instant::now() >= deadline {
                let pending = r.pending;
                drop(r);
                self.stale = true;
                return Err(SinkError::Retryable(format!(
                    "kafka: {pending} of {} delivery reports missing after {timeout_ms} ms",
                    batch.len(),
                )));
            }
        }
        let r = producer.context().reports();
        let timed_out = r.outcomes.iter().any(|o| {
            matches!(o, Some(Err(e)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut))
        });
        let errors: Vec<&KafkaError> = r
            .outcomes
            .iter()
            .filter_map(|o| match o {
                Some(Err(e)) => Some(e),
                _ => None,
            })
            .collect();
        // A permanent error anywhere decides the batch; otherwise the first error.
        let mut verdict = None;
        for e in &errors {
            let err = sink_error(
                &format!("{} of {} messages failed", errors.len(), batch.len()),
                e,
            );
            match err {
                SinkError::Permanent(_) => {
                    verdict = Some(err);
                    break;
                }
                SinkError::Retryable(_) if verdict.is_none() => verdict = Some(err),
                SinkError::Retryable(_) => {}
            }
        }
        drop(r);
        self.stale = timed_out;
        verdict.map_or(Ok(()), Err)
    }
}

/// Errors librdkafka keeps on the topic and returns when enqueueing.
fn topic_state_error(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::InvalidTopic
    )
}

fn create(
    config: &KafkaConfig,
    counters: &Arc<KafkaCounters>,
) -> Result<BaseProducer<Context>, KafkaConfigError> {
    let context = Context {
        reports: Mutex::new(Reports::default()),
        counters: Arc::clone(counters),
    };
    config
        .client_config()
        .create_with_context(context)
        .map_err(|e| match e {
            // Its Display would show the value, which may be a secret.
            KafkaError::ClientConfig(_, desc, key, _) => KafkaConfigError {
                field: format!("outputs.kafka.properties.{key}"),
                message: if is_secret(&key) {
                    "rejected by librdkafka".into()
                } else {
                    format!("rejected by librdkafka: {desc}")
                },
            },
            other => KafkaConfigError {
                field: "outputs.kafka".into(),
                message: format!("cannot create the producer: {other}"),
            },
        })
}

impl Sink for KafkaSink {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn deliver(&mut self, batch: &[Envelope]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let result = self.send_and_wait(batch);
        if let Err(e) = &result {
            if matches!(e, SinkError::Retryable(_)) {
                KafkaCounters::add(&self.counters.retried, batch.len());
            }
            tracing::warn!(sink = "kafka", batch = batch.len(), error = %e, "delivery failed");
        }
        result
    }

    fn health(&mut self) -> Result<(), SinkError> {
        let timeout = self.config.health_timeout();
        let topic = self.config.topic.clone();
        let producer = self.producer()?;
        producer.poll(Duration::ZERO);
        let md = producer
            .client()
            .fetch_metadata(Some(topic.as_str()), timeout)
            .map_err(|e| SinkError::Retryable(format!("kafka: metadata for {topic}: {e}")))?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| SinkError::Retryable(format!("kafka: no metadata for {topic}")))?;
        if let Some(err) = t.error() {
            // Health is never permanent: the operator may fix ACLs or create the topic.
            let e = resp_error(&format!("topic {topic}"), err);
            return Err(SinkError::Retryable(e.to_string()));
        }
        if t.partitions().is_empty() {
            return Err(SinkError::Retryable(format!(
                "kafka: {topic} has no partitions"
            )));
        }
        Ok(())
    }
}
