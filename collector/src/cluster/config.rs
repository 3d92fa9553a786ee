//! `[cluster]`: this collector is one node of a cluster on PostgreSQL and Kafka.
use std::{collections::BTreeMap, fmt, path::PathBuf, str::FromStr};

use serde::Deserialize;

use crate::outputs::kafka::config::{check_broker, check_topic, is_secret};

/// librdkafka settings Cordon sets itself on the flow stream.
const RESERVED: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "partition.assignment.strategy",
    "transactional.id",
    "isolation.level",
];

/// `[cluster]` in the collector's TOML configuration. Present: this collector is a node
/// of a cluster, with its state in PostgreSQL and agent batches passing through Kafka.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This node's name, unique in the cluster (agents, claims and leases are recorded
    /// under it); empty: the machine's host name.
    pub node_name: String,
    /// The shared PostgreSQL database, as a URL (`postgresql://cordon@db1:5432/cordon`)
    /// or key=value pairs (`host=db1 user=cordon dbname=cordon`).
    pub postgres_url: String,
    /// A file holding the PostgreSQL password, so it need not be in the URL (nor in this
    /// file); empty: none (or the one in the URL).
    pub postgres_password_file: PathBuf,
    /// Kafka brokers of the flow stream between ingest and workers, `host:port` each.
    pub kafka_brokers: Vec<String>,
    /// Topic every ingest node appends agent batches to, keyed by agent id.
    pub flows_topic: String,
    /// Partitions the flows topic is created with when it does not exist: the most
    /// workers that can share the judging and storing of flows.
    pub flows_partitions: i32,
    /// Replication factor the flows topic is created with; -1: the brokers' default
    /// (`default.replication.factor`). Use 3 on a production Kafka cluster.
    pub flows_replication: i32,
    /// The workers' consumer group.
    pub consumer_group: String,
    /// Whether this node also judges and stores flows (a worker of the consumer group);
    /// false: it only takes agents' connections and serves the API.
    pub worker: bool,
    /// Workers this node runs (each a member of the consumer group with its own
    /// PostgreSQL connection): a worker waits for its transaction to commit before it
    /// reads on, so two keep the database busy while one judges.
    pub workers: u32,
    /// Extra librdkafka settings of the flow stream (TLS, SASL), passed through; values
    /// of keys naming a password, secret, key or token are never shown.
    pub kafka_properties: BTreeMap<String, String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node_name: String::new(),
            postgres_url: String::new(),
            postgres_password_file: PathBuf::new(),
            kafka_brokers: Vec::new(),
            flows_topic: "cordon.flows".into(),
            flows_partitions: 12,
            flows_replication: -1,
            consumer_group: "cordon-workers".into(),
            worker: true,
            workers: 2,
            kafka_properties: BTreeMap::new(),
        }
    }
}

/// Shows every field, with the URL's password and secret properties replaced.
impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let props: BTreeMap<&str, &str> = self
            .kafka_properties
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret(k) { "<redacted>" } else { v }))
            .collect();
        f.debug_struct("ClusterConfig")
            .field("node_name", &self.node_name)
            .field("postgres_url", &redact_url(&self.postgres_url))
            .field("postgres_password_file", &self.postgres_password_file)
            .field("kafka_brokers", &self.kafka_brokers)
            .field("flows_topic", &self.flows_topic)
            .field("flows_partitions", &self.flows_partitions)
            .field("flows_replication", &self.flows_replication)
            .field("consumer_group", &self.consumer_group)
            .field("worker", &self.worker)
            .field("workers", &self.workers)
            .field("kafka_properties", &props)
            .finish()
    }
}

/// A PostgreSQL URL or key=value string with its password replaced (for logs).
pub fn redact_url(url: &str) -> String {
    if let Some(rest) = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
    {
        let scheme = &url[..url.len() - rest.len()];
        if let Some((userinfo, host)) = rest.split_once('@')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            return format!("{scheme}{user}:<redacted>@{host}");
        }
        return url.to_string();
    }
    url.split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some(("password", _)) => "password=<redacted>".to_string(),
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn bad(field: &str, message: impl fmt::Display) -> String {
    format!("field `cluster.{field}`: {message}")
}

/// The machine's host name (the default node name).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "collector".into())
}

impl ClusterConfig {
    /// This node's name: `node_name`, else the host name.
    pub fn node(&self) -> String {
        if self.node_name.is_empty() {
            host_name()
        } else {
            self.node_name.clone()
        }
    }

    /// Checks the section; the error names the field (`field `cluster.kafka_brokers`: ...`).
    pub fn validate(&self) -> Result<(), String> {
        let name = self.node();
        if name.len() > 63
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(bad(
                "node_name",
                format!("{name:?}: 1 to 63 letters, digits, '-', '_' or '.'"),
            ));
        }
        if self.postgres_url.is_empty() {
            return Err(bad(
                "postgres_url",
                "required: the PostgreSQL database all nodes share",
            ));
        }
        postgres::Config::from_str(&self.postgres_url).map_err(|e| {
            bad(
                "postgres_url",
                format!("{}: {e}", redact_url(&self.postgres_url)),
            )
        })?;
        if self.kafka_brokers.is_empty() {
            return Err(bad(
                "kafka_brokers",
                "list at least one broker as host:port",
            ));
        }
        for b in &self.kafka_brokers {
            check_broker(b).map_err(|m| bad("kafka_brokers", format!("{b:?}: {m}")))?;
        }
        check_topic(&self.flows_topic)
            .map_err(|m| bad("flows_topic", format!("{:?}: {m}", self.flows_topic)))?;
        if !(1..=10_000).contains(&self.flows_partitions) {
            return Err(bad("flows_partitions", "must be 1 to 10000"));
        }
        if self.flows_replication == 0 || !(-1..=32).contains(&self.flows_replication) {
            return Err(bad(
                "flows_replication",
                "must be -1 (the brokers' default) or 1 to 32",
            ));
        }
        if !(1..=64).contains(&self.workers) {
            return Err(bad("workers", "must be 1 to 64"));
        }
        if self.consumer_group.is_empty() || self.consumer_group.len() > 255 {
            return Err(bad("consumer_group", "1 to 255 characters"));
        }
        for (k, v) in &self.kafka_properties {
            if k.is_empty() || k.chars().any(char::is_whitespace) {
                return Err(bad("kafka_properties", format!("bad property name {k:?}")));
            }
            if RESERVED.contains(&k.as_str()) {
                return Err(bad(
                    &format!("kafka_properties.{k}"),
                    "set by Cordon for the flow stream",
                ));
            }
            if v.contains('\0') {
                return Err(bad(
                    &format!("kafka_properties.{k}"),
                    "the value contains a NUL byte",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> ClusterConfig {
        ClusterConfig {
            node_name: "node-a".into(),
            postgres_url: "postgresql://cordon:hunter2@127.0.0.1:5432/cordon".into(),
            kafka_brokers: vec!["127.0.0.1:9092".into()],
            ..ClusterConfig::default()
        }
    }

    #[test]
    fn a_complete_section_is_valid_and_never_shows_its_password() {
        valid().validate().expect("valid");
        let shown = format!("{:?}", valid());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("cordon:<redacted>@127.0.0.1"), "{shown}");
        assert_eq!(
            redact_url("host=db user=c password=hunter2 dbname=c"),
            "host=db user=c password=<redacted> dbname=c"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(ClusterConfig, &str)> = vec![
            (
                ClusterConfig {
                    node_name: "a b".into(),
                    ..valid()
                },
                "cluster.node_name",
            ),
            (
                ClusterConfig {
                    postgres_url: String::new(),
                    ..valid()
                },
                "cluster.postgres_url",
            ),
            (
                ClusterConfig {
                    postgres_url: "postgresql://[::1".into(),
                    ..valid()
                },
                "cluster.postgres_url",
            ),
            (
                ClusterConfig {
                    kafka_brokers: vec![],
                    ..valid()
                },
                "cluster.kafka_brokers",
            ),
            (
                ClusterConfig {
                    kafka_brokers: vec!["nohost".into()],
                    ..valid()
                },
                "cluster.kafka_brokers",
            ),
            (
                ClusterConfig {
                    flows_topic: "bad topic".into(),
                    ..valid()
                },
                "cluster.flows_topic",
            ),
            (
                ClusterConfig {
                    flows_partitions: 0,
                    ..valid()
                },
                "cluster.flows_partitions",
            ),
            (
                ClusterConfig {
                    workers: 0,
                    ..valid()
                },
                "cluster.workers",
            ),
            (
                ClusterConfig {
                    kafka_properties: [("group.id".into(), "x".into())].into(),
                    ..valid()
                },
                "cluster.kafka_properties.group.id",
            ),
        ];
        for (c, field) in cases {
            let e = c.validate().expect_err(field);
            assert!(e.contains(field), "{field}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
