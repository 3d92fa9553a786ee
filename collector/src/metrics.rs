//! The collector's own counters, served as Prometheus text at `/metrics`.
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    pub sink: &'static str,
}

#[derive(Default)]
pub struct Metrics {
    /// Alert envelopes each output accepted.
    pub sink_delivered: Family<SinkLabel, Counter>,
    /// Failed deliveries that will be retried.
    pub sink_failures: Family<SinkLabel, Counter>,
    /// Envelopes an output refused for good.
    pub sink_dead_lettered: Family<SinkLabel, Counter>,
    /// 1 after a successful delivery, 0 after a failed one.
    pub sink_up: Family<SinkLabel, Gauge>,
    pub agents_connected: Gauge,
    /// Agent connections closed by the collector, by reason.
    pub connections_refused: Family<Reason, Counter>,
    pub batches_stored: Counter,
    pub records_stored: Counter,
    /// Resent batches recognised by their sequence number (acknowledged, not stored again).
    pub batches_duplicate: Counter,
    /// Records agents reported they had to drop (their spool was full).
    pub records_dropped_by_agents: Counter,
    pub inventories_stored: Counter,
    /// Cluster: batches this node appended to the flow stream (acknowledged to agents).
    pub batches_appended: Counter,
    pub records_appended: Counter,
    pub enrollments: Family<Outcome, Counter>,
    /// Cluster workers: partitions of the flow stream this node owns now.
    pub worker_partitions: Gauge,
    /// Cluster workers: records on the flow stream not yet stored, over owned partitions.
    pub worker_lag: Gauge,
    /// Cluster workers: consumer group rebalances, by kind (assign, revoke, error).
    pub worker_rebalances: Family<Reason, Counter>,
    /// Cluster workers: messages on the flow stream that were not a valid agent batch.
    pub worker_malformed: Counter,
    /// Cluster workers: transactions retried after a failure.
    pub worker_retries: Counter,
    pub api_requests: Family<Outcome, Counter>,
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Self {
        let m = Self::default();
        let mut r = Registry::with_prefix("cordon_collector");
        r.register(
            "agents_connected",
            "Agents connected now",
            m.agents_connected.clone(),
        );
        r.register(
            "connections_refused",
            "Agent connections closed by the collector, by reason",
            m.connections_refused.clone(),
        );
        r.register(
            "batches_stored",
            "Flow batches durably stored and acknowledged",
            m.batches_stored.clone(),
        );
        r.register(
            "records_stored",
            "Flow records durably stored",
            m.records_stored.clone(),
        );
        r.register(
            "batches_duplicate",
            "Resent flow batches acknowledged without storing them again",
            m.batches_duplicate.clone(),
        );
        r.register(
            "records_dropped_by_agents",
            "Flow records agents dropped because their spool was full",
            m.records_dropped_by_agents.clone(),
        );
        r.register(
            "batches_appended",
            "Cluster: flow batches appended to the flow stream and acknowledged",
            m.batches_appended.clone(),
        );
        r.register(
            "records_appended",
            "Cluster: flow records appended to the flow stream",
            m.records_appended.clone(),
        );
        r.register(
            "inventories_stored",
            "Inventory messages stored",
            m.inventories_stored.clone(),
        );
        r.register(
            "worker_partitions",
            "Cluster: partitions of the flow stream this node's worker owns",
            m.worker_partitions.clone(),
        );
        r.register(
            "worker_lag",
            "Cluster: records on the flow stream not yet stored, over owned partitions",
            m.worker_lag.clone(),
        );
        r.register(
            "worker_rebalances",
            "Cluster: consumer group rebalances, by kind",
            m.worker_rebalances.clone(),
        );
        r.register(
            "worker_malformed",
            "Cluster: flow stream messages that were not a valid agent batch (skipped)",
            m.worker_malformed.clone(),
        );
        r.register(
            "worker_retries",
            "Cluster: worker transactions retried after a failure",
            m.worker_retries.clone(),
        );
        r.register(
            "enrollments",
            "Enrollment attempts, by outcome",
            m.enrollments.clone(),
        );
        r.register(
            "api_requests",
            "API requests, by outcome (ok, client_error, unauthorized, server_error)",
            m.api_requests.clone(),
        );
        r.register(
            "output_delivered",
            "Alert envelopes each output accepted",
            m.sink_delivered.clone(),
        );
        r.register(
            "output_failures",
            "Failed output deliveries (retried)",
            m.sink_failures.clone(),
        );
        r.register(
            "output_dead_lettered",
            "Alert envelopes an output refused for good",
            m.sink_dead_lettered.clone(),
        );
        r.register(
            "output_up",
            "1 if the output's last delivery succeeded",
            m.sink_up.clone(),
        );
        Self { registry: r, ..m }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
