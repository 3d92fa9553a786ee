//! `[outputs.kafka]`: where and how alerts are produced.
use std::{collections::BTreeMap, fmt, time::Duration};

use rdkafka::{ClientConfig, config::RDKafkaLogLevel};
use serde::Deserialize;

/// Properties Cordon sets itself; `properties` may not override them.
const RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "set `brokers` instead"),
    ("metadata.broker.list", "set `brokers` instead"),
    ("client.id", "set `client_id` instead"),
    ("message.timeout.ms", "set `delivery_timeout_ms` instead"),
    ("delivery.timeout.ms", "set `delivery_timeout_ms` instead"),
    ("enable.idempotence", "the producer is always idempotent"),
    ("acks", "the idempotent producer needs acks=all"),
    (
        "request.required.acks",
        "the idempotent producer needs acks=all",
    ),
    ("transactional.id", "the sink does not use transactions"),
];

/// Property-name fragments whose values are secrets (never printed, never logged).
const SECRET_MARKERS: &[&str] = &["password", "secret", "key", "token", "credential", "jaas"];

/// Whether the value of librdkafka property `key` must never be shown.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|m| key.contains(m)) || key == "sasl.oauthbearer.config"
}

/// A configuration error naming the field, e.g. `outputs.kafka.brokers: ...`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct KafkaConfigError {
    /// The dotted path of the field (`outputs.kafka.properties.sasl.mechanisms`).
    pub field: String,
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> KafkaConfigError {
    KafkaConfigError {
        field: format!("outputs.kafka.{field}"),
        message: message.into(),
    }
}

/// `[outputs.kafka]` in the collector's TOML configuration.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port` each (`[2001:db8::1]:9092` for IPv6 literals).
    pub brokers: Vec<String>,
    /// Topic the alerts go to (one HEC event per message, keyed by the alert's key_id).
    pub topic: String,
    /// Topic for streaming flow records, if any. Not produced by this sink: flow
    /// streaming is wired separately (it reuses this section's connection settings).
    pub flows_topic: Option<String>,
    /// `client.id` the brokers see (quotas, logs, ACL audit).
    pub client_id: String,
    /// How long librdkafka may try to deliver one message (its `message.timeout.ms`),
    /// in milliseconds; a batch not acknowledged by then is handed back as retryable.
    pub delivery_timeout_ms: u64,
    /// Extra librdkafka settings, passed through verbatim: TLS (`security.protocol`,
    /// `ssl.ca.location`, ...), SASL (`sasl.mechanisms`, `sasl.username`,
    /// `sasl.password`), tuning (`linger.ms`, `compression.type`). Values are never
    /// logged; those of keys naming a password, secret, key or token are redacted.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: Vec::new(),
            topic: "cordon.alerts".into(),
            flows_topic: None,
            client_id: "cordon-collector".into(),
            delivery_timeout_ms: 30_000,
            properties: BTreeMap::new(),
        }
    }
}

/// Shows every field, with secret property values replaced.
impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let props: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("flows_topic", &self.flows_topic)
            .field("client_id", &self.client_id)
            .field("delivery_timeout_ms", &self.delivery_timeout_ms)
            .field("properties", &props)
            .finish()
    }
}

/// Checks `host:port` (host non-empty, port 1..=65535; IPv6 literals in brackets).
pub(crate) fn check_broker(b: &str) -> Result<(), &'static str> {
    let (host, port) = b.rsplit_once(':').ok_or("expected host:port")?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6
            .strip_suffix(']')
            .ok_or("unclosed [ in an IPv6 address")?,
        None if host.contains(':') => return Err("put IPv6 addresses in brackets: [::1]:9092"),
        None => host,
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == ',') {
        return Err("expected host:port with a non-empty host");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err("the port must be 1 to 65535"),
    }
}

/// Kafka's own rule for topic names.
pub(crate) fn check_topic(t: &str) -> Result<(), &'static str> {
    if t.is_empty() || t.len() > 249 {
        return Err("a topic name has 1 to 249 characters");
    }
    if t == "." || t == ".." {
        return Err("a topic name cannot be . or ..");
    }
    if !t
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err("a topic name uses only letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

impl KafkaConfig {
    /// Checks the section; the error names the field (`outputs.kafka.brokers: ...`).
    pub fn validate(&self) -> Result<(), KafkaConfigError> {
        if self.brokers.is_empty() {
            return Err(bad("brokers", "list at least one broker as host:port"));
        }
        for b in &self.brokers {
            check_broker(b).map_err(|m| bad("brokers", format!("{b:?}: {m}")))?;
        }
        check_topic(&self.topic).map_err(|m| bad("topic", format!("{:?}: {m}", self.topic)))?;
        if let Some(t) = &self.flows_topic {
            check_topic(t).map_err(|m| bad("flows_topic", format!("{t:?}: {m}")))?;
            if *t == self.topic {
                return Err(bad("flows_topic", "must differ from `topic`"));
            }
        }
        if self.client_id.is_empty() || self.client_id.len() > 255 {
            return Err(bad("client_id", "1 to 255 characters"));
        }
        if !(100..=3_600_000).contains(&self.delivery_timeout_ms) {
            return Err(bad(
                "delivery_timeout_ms",
                "must be 100 to 3600000 (one hour)",
            ));
        }
        for (k, v) in &self.properties {
            let field = format!("properties.{k}");
            if k.is_empty() || k.chars().any(|c| c.is_whitespace()) {
                return Err(bad("properties", format!("bad property name {k:?}")));
            }
            if let Some((_, why)) = RESERVED.iter().find(|(r, _)| r == k) {
                return Err(bad(&field, format!("set by Cordon: {why}")));
            }
            if v.contains('\0') {
                return Err(bad(&field, "the value contains a NUL byte"));
            }
        }
        Ok(())
    }

    /// How long `health` waits for metadata.
    pub fn health_timeout(&self) -> Duration {
        Duration::from_millis(self.delivery_timeout_ms.min(5_000))
    }

    /// The librdkafka producer configuration: `properties` first, then what Cordon
    /// requires (so the reserved settings always win).
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c.set("bootstrap.servers", self.brokers.join(","))
            .set("client.id", &self.client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", self.delivery_timeout_ms.to_string());
        // librdkafka's `debug` contexts only print at debug level.
        c.set_log_level(if self.properties.contains_key("debug") {
            RDKafkaLogLevel::Debug
        } else {
            RDKafkaLogLevel::Warning
        });
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> KafkaConfig {
        KafkaConfig {
            brokers: vec![
                "127.0.0.1:9092".into(),
                "[::1]:9093".into(),
                "kafka.example:9094".into(),
            ],
            ..KafkaConfig::default()
        }
    }

    #[test]
    fn defaults_and_toml() {
        let d = KafkaConfig::default();
        assert_eq!(d.topic, "cordon.alerts");
        assert_eq!(d.delivery_timeout_ms, 30_000);
        assert!(d.validate().is_err(), "no brokers");
        ok().validate().expect("valid");
        let c: KafkaConfig = toml::from_str(
            "brokers = [\"k1:9092\"]\nflows_topic = \"cordon.flows\"\n\
             [properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.password\" = \"hunter2\"\n",
        )
        .expect("parses");
        c.validate().expect("valid");
        assert_eq!(c.properties["security.protocol"], "SASL_SSL");
        assert!(toml::from_str::<KafkaConfig>("topics = \"x\"\n").is_err());
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(KafkaConfig, &str)> = vec![
            (
                KafkaConfig {
                    brokers: vec![],
                    ..ok()
                },
                "outputs.kafka.brokers",
            ),
            (
                KafkaConfig {
                    brokers: vec!["nohost".into()],
                    ..ok()
                },
                "outputs.kafka.brokers",
            ),
            (
                KafkaConfig {
                    brokers: vec![":9092".into()],
                    ..ok()
                },
                "outputs.kafka.brokers",
            ),
            (
                KafkaConfig {
                    brokers: vec!["h:0".into()],
                    ..ok()
                },
                "outputs.kafka.brokers",
            ),
            (
                KafkaConfig {
                    brokers: vec!["::1:9092".into()],
                    ..ok()
                },
                "outputs.kafka.brokers",
            ),
            (
                KafkaConfig {
                    topic: "a b".into(),
                    ..ok()
                },
                "outputs.kafka.topic",
            ),
            (
                KafkaConfig {
                    topic: String::new(),
                    ..ok()
                },
                "outputs.kafka.topic",
            ),
            (
                KafkaConfig {
                    flows_topic: Some("..".into()),
                    ..ok()
                },
                "outputs.kafka.flows_topic",
            ),
            (
                KafkaConfig {
                    flows_topic: Some("cordon.alerts".into()),
                    ..ok()
                },
                "outputs.kafka.flows_topic",
            ),
            (
                KafkaConfig {
                    client_id: String::new(),
                    ..ok()
                },
                "outputs.kafka.client_id",
            ),
            (
                KafkaConfig {
                    delivery_timeout_ms: 0,
                    ..ok()
                },
                "outputs.kafka.delivery_timeout_ms",
            ),
            (
                KafkaConfig {
                    properties: [("acks".into(), "1".into())].into(),
                    ..ok()
                },
                "outputs.kafka.properties.acks",
            ),
            (
                KafkaConfig {
                    properties: [("enable.idempotence".into(), "false".into())].into(),
                    ..ok()
                },
                "outputs.kafka.properties.enable.idempotence",
            ),
        ];
        for (cfg, field) in cases {
            let err = cfg.validate().expect_err(field).to_string();
            assert!(err.starts_with(&format!("{field}:")), "{field}: {err}");
        }
    }

    #[test]
    fn debug_redacts_secrets() {
        let cfg = KafkaConfig {
            properties: [
                ("sasl.password".into(), "hunter2".into()),
                ("ssl.key.password".into(), "s3cr3t-pw".into()),
                (
                    "sasl.oauthbearer.client.secret".into(),
                    "oauth-s3cret".into(),
                ),
                ("sasl.username".into(), "cordon".into()),
            ]
            .into(),
            ..ok()
        };
        let shown = format!("{cfg:?}");
        for secret in ["hunter2", "s3cr3t-pw", "oauth-s3cret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("cordon") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn reserved_settings_win() {
        let cfg = KafkaConfig {
            properties: [("linger.ms".into(), "5".into())].into(),
            ..ok()
        };
        let c = cfg.client_config();
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("linger.ms"), Some("5"));
        assert_eq!(
            c.get("bootstrap.servers"),
            Some("127.0.0.1:9092,[::1]:9093,kafka.example:9094")
        );
    }
}
