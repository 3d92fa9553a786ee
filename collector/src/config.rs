//! The collector's TOML configuration (`cordon-collector validate --config FILE`).
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::Deserialize;

/// `/etc/cordon/collector.toml`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// UDP address the agents' QUIC connections arrive on.
    pub listen: SocketAddr,
    /// Where the CA, the database and the rest of the state live.
    pub data_dir: PathBuf,
    /// Names (DNS or IP) agents use to reach this collector; they go in its certificate.
    pub server_names: Vec<String>,
    /// Flows last seen longer ago than this are deleted, in hours.
    pub retention_hours: u64,
    /// Validity of the certificates agents get at enrollment, in days.
    pub agent_cert_days: i64,
    pub api: ApiConfig,
    pub alerts: crate::alerts::AlertSettings,
    pub outputs: crate::outputs::OutputsConfig,
    pub response: crate::response::config::ResponseConfig,
    /// Present: this collector is a node of a cluster (state in PostgreSQL, agent
    /// batches through Kafka); absent: one collector on its embedded SQLite store.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

/// `[api]`: the REST API (`/api/v1/...`, `/metrics`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// TCP address of the REST API. It speaks plain HTTP, so it must be a loopback
    /// address unless `allow_remote_plaintext` is set (behind a TLS-terminating proxy).
    pub listen: SocketAddr,
    /// Accept a non-loopback `listen` although tokens then cross the network in clear.
    pub allow_remote_plaintext: bool,
    /// Whether `/metrics` needs a token (Prometheus scrapers often have none).
    pub metrics_need_token: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7480)),
            allow_remote_plaintext: false,
            metrics_need_token: false,
        }
    }
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 7443)),
            data_dir: PathBuf::from("/var/lib/cordon-collector"),
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            retention_hours: 24 * 7,
            agent_cert_days: 365,
            api: ApiConfig::default(),
            alerts: Default::default(),
            outputs: Default::default(),
            response: Default::default(),
            cluster: None,
        }
    }
}

impl CollectorConfig {
    /// This collector's node name: `cluster.node_name`, else the host name.
    pub fn node_name(&self) -> String {
        match &self.cluster {
            Some(c) => c.node(),
            None => crate::cluster::config::host_name(),
        }
    }

    /// Reads and checks a config file; errors name the file and the field.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Self> {
        let cfg: Self = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        let bad =
            |field: &str, msg: &str| anyhow::anyhow!("{}: field `{field}`: {msg}", path.display());
        if cfg.server_names.is_empty()
            || cfg
                .server_names
                .iter()
                .any(|n| n.is_empty() || n.len() > 253)
        {
            return Err(bad("server_names", "one or more names of 1 to 253 bytes"));
        }
        if cfg.retention_hours == 0 {
            return Err(bad("retention_hours", "must be greater than 0"));
        }
        if !(1..=3650).contains(&cfg.agent_cert_days) {
            return Err(bad("agent_cert_days", "must be 1 to 3650"));
        }
        if !cfg.api.listen.ip().is_loopback() && !cfg.api.allow_remote_plaintext {
            return Err(bad(
                "api.listen",
                "the API speaks plain HTTP: use a loopback address, or set \
                 api.allow_remote_plaintext = true behind a TLS proxy",
            ));
        }
        if let Some(hec) = &cfg.outputs.hec {
            hec.validate()
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        if let Some(kafka) = &cfg.outputs.kafka {
            kafka
                .validate()
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        if !cfg.data_dir.is_absolute() {
            return Err(bad("data_dir", "must be an absolute path"));
        }
        cfg.response
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if let Some(c) = &cfg.cluster {
            c.validate()
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<CollectorConfig> {
        CollectorConfig::parse(text, Path::new("collector.toml"))
    }

    #[test]
    fn defaults_and_the_shipped_file_are_valid() {
        assert_eq!(parse("").expect("defaults"), CollectorConfig::default());
        parse(include_str!("../../packaging/collector.toml")).expect("packaging/collector.toml");
    }

    #[test]
    fn errors_name_the_field() {
        for (text, field) in [
            ("listen = \"nowhere\"\n", "listen"),
            ("server_names = []\n", "server_names"),
            ("retention_hours = 0\n", "retention_hours"),
            ("data_dir = \"rel\"\n", "data_dir"),
            ("agent_cert_days = 0\n", "agent_cert_days"),
            ("[api]\nlisten = \"0.0.0.0:7480\"\n", "api.listen"),
            ("[api]\nlisten = 7480\n", "listen"),
            ("lisen = \"0.0.0.0:1\"\n", "lisen"),
            (
                "[cluster]\nkafka_brokers = [\"k:9092\"]\n",
                "cluster.postgres_url",
            ),
            (
                "[cluster]\npostgres_url = \"postgresql://c@db/c\"\n",
                "cluster.kafka_brokers",
            ),
            ("[cluster]\npostgress_url = \"x\"\n", "postgress_url"),
        ] {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(field), "{text}: {err}");
        }
    }
}
