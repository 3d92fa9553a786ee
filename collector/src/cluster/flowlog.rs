//! The ingest side of the flow stream. Every batch an ingest node takes from an agent is
//! appended to the flows topic, keyed by the agent id — so one agent's batches stay in
//! order in one partition, which one worker reads at a time — by an idempotent producer
//! with `acks=all`. The node acknowledges the batch to the agent only once the broker's
//! delivery report confirmed it; until then the agent keeps it in its spool. A node that
//! dies after the broker took a batch but before the agent saw the ack makes the agent
//! send it again to another node: the topic then holds it twice, and the worker stores it
//! once (the agent's batch sequence is the dedup key, see `store::postgres`).
//!
//! The message value is the batch as the agent protocol encodes it (`cordon_wire`), so
//! it is checked again, as untrusted input, when a worker decodes it.
use std::time::Duration;

use cordon_wire::{FlowBatch, Message};
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};

use super::ClusterConfig;

/// Header naming the ingest node that appended a batch.
pub const HEADER_NODE: &str = "cordon-node";
/// Header with the Unix ns at which the ingest node received the batch.
pub const HEADER_RECEIVED: &str = "cordon-received-ns";
/// How long a batch may take to reach the broker before the agent's connection is
/// closed (the agent keeps the batch and sends it again, maybe to another node).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a full producer queue is waited on before the batch counts as failed.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a batch was not appended.
#[derive(Debug, thiserror::Error)]
pub enum FlowLogError {
    #[error("encoding the batch: {0}")]
    Encode(#[from] cordon_wire::WireError),
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("creating topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
}

/// The producer every ingest connection of this node appends through.
pub struct FlowLog {
    producer: FutureProducer,
    topic: String,
    node: String,
}

impl FlowLog {
    /// A producer for `cfg`'s brokers and topic, on behalf of node `node`.
    pub fn new(cfg: &ClusterConfig, node: &str) -> Result<Self, FlowLogError> {
        let producer: FutureProducer = cfg
            .kafka_config(&format!("cordon-ingest-{node}"))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Batches are already batched by the agents: a short linger keeps the
            // agent's ack (and so detection) fast.
            .set("linger.ms", "2")
            .set("compression.type", "lz4")
            .set(
                "message.timeout.ms",
                DELIVERY_TIMEOUT.as_millis().to_string(),
            )
            .create()?;
        Ok(Self {
            producer,
            topic: cfg.flows_topic.clone(),
            node: node.to_string(),
        })
    }

    /// Creates the flows topic with `partitions` partitions unless it exists.
    pub async fn ensure_topic(
        cfg: &ClusterConfig,
        node: &str,
        partitions: i32,
    ) -> Result<(), FlowLogError> {
        let admin: AdminClient<DefaultClientContext> =
            cfg.kafka_config(&format!("cordon-admin-{node}")).create()?;
        let topic = NewTopic::new(
            &cfg.flows_topic,
            partitions,
            TopicReplication::Fixed(cfg.flows_replication),
        );
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin.create_topics([&topic], &opts).await?;
        for r in results {
            match r {
                Ok(_) => {
                    tracing::info!(topic = %cfg.flows_topic, partitions, "flows topic created")
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => {
                    return Err(FlowLogError::Topic {
                        topic: t,
                        reason: code.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Appends agent `agent`'s batch; returns once the broker has it (all in-sync
    /// replicas), so the batch may be acknowledged to the agent.
    pub async fn append(
        &self,
        agent: &str,
        batch: FlowBatch,
        received_ns: u64,
    ) -> Result<(), FlowLogError> {
        let body = cordon_wire::encode(&Message::FlowBatch(batch))?;
        let received = received_ns.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: HEADER_NODE,
                value: Some(self.node.as_str()),
            })
            .insert(Header {
                key: HEADER_RECEIVED,
                value: Some(received.as_str()),
            });
        let record = FutureRecord::to(&self.topic)
            .key(agent)
            .payload(body.as_ref())
            .headers(headers);
        self.producer
            .send(record, QUEUE_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| FlowLogError::Kafka(e))
    }
}

impl ClusterConfig {
    /// The librdkafka settings shared by the flow stream's clients: the operator's
    /// `kafka_properties` first, then the brokers and client id Cordon sets.
    pub fn kafka_config(&self, client_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.kafka_properties {
            c.set(k, v);
        }
        c.set("bootstrap.servers", self.kafka_brokers.join(","))
            .set("client.id", client_id);
        c
    }
}
