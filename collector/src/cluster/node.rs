//! What a node needs from `[cluster]` at start: its PostgreSQL settings (with the password
//! read from its file), the collector CA every node shares (kept in PostgreSQL; the first
//! node to start creates it, or imports the one a single collector made before it joined
//! a cluster), and where each role's store connection comes from.
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use std::sync::{Arc, atomic::AtomicBool};

use super::{
    ClusterConfig,
    flowlog::{FlowLog, FlowLogError},
    listen::Listener,
    worker::Worker,
};
use crate::{
    ingest::{FlowIntake, Live, WriterCompliance},
    metrics::Metrics,
    pki::{self, Ca},
    store::{
        Store, StoreError,
        postgres::{PgConfig, PgStore},
    },
};

/// The collector CA's name in its certificate.
pub const CA_NAME: &str = "Cordon collector CA";

/// Where the store is: the embedded SQLite file, or the cluster's PostgreSQL.
#[derive(Clone, Debug)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(PgConfig),
}

impl Location {
    /// A new connection (each role of the collector holds its own).
    pub fn open(&self) -> Result<Store, StoreError> {
        match self {
            Location::Sqlite(p) => Store::open(p),
            Location::Postgres(c) => Ok(Store::from_backend(PgStore::connect(c)?)),
        }
    }

    /// Where, for messages (never with a password).
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(p) => p.display().to_string(),
            Location::Postgres(c) => format!("PostgreSQL {}", super::config::redact_url(&c.url)),
        }
    }
}

impl ClusterConfig {
    /// The PostgreSQL settings of node `node`; reads `postgres_password_file`, which must
    /// not be readable by everyone (the error names the field).
    pub fn pg_config(&self, node: &str) -> Result<PgConfig, String> {
        let bad = |m: String| format!("field `cluster.postgres_password_file`: {m}");
        let password = if self.postgres_password_file.as_os_str().is_empty() {
            None
        } else {
            let p = &self.postgres_password_file;
            let meta = std::fs::metadata(p).map_err(|e| bad(format!("{}: {e}", p.display())))?;
            if meta.permissions().mode() & 0o004 != 0 {
                return Err(bad(format!(
                    "{} is readable by everyone; chmod o-r it",
                    p.display()
                )));
            }
            let text =
                std::fs::read_to_string(p).map_err(|e| bad(format!("{}: {e}", p.display())))?;
            let pw = text.trim_end_matches(['\n', '\r']).to_string();
            if pw.is_empty() {
                return Err(bad(format!("{} is empty", p.display())));
            }
            Some(pw)
        };
        Ok(PgConfig {
            url: self.postgres_url.clone(),
            password,
            application_name: format!("cordon-collector {node}"),
        })
    }
}

/// The CA all nodes share: the one in PostgreSQL; else the one this node's data
/// directory has (a single collector joining a cluster keeps its enrolled agents); else a
/// new one. Nodes starting together agree on one (the first insert wins).
pub fn shared_ca(store: &mut PgStore, data_dir: &Path) -> Result<Ca, anyhow::Error> {
    if let Some((cert, key)) = store.ca()? {
        return Ok(Ca::from_pem(&cert, &key)?);
    }
    let local = data_dir.join("pki");
    let candidate = if local.join("ca.pem").exists() {
        tracing::info!(dir = %local.display(), "sharing this node's existing CA with the cluster");
        pki::load_or_create(&local, CA_NAME)?
    } else {
        Ca::generate(CA_NAME)?
    };
    let (cert, key) = store.put_ca_if_absent(&candidate.cert_pem, &candidate.key_pem())?;
    if cert != candidate.cert_pem {
        tracing::info!("another node created the cluster's CA first; using it");
    }
    Ok(Ca::from_pem(&cert, &key)?)
}

/// The cluster's parts of a node: the flow stream's producer (creating the topic if
/// needed), the listener for other nodes' notifications, and a worker unless `worker =
/// false`. Returns where ingest puts batches and the threads to join at the end.
pub async fn start(
    c: &ClusterConfig,
    node: &str,
    pg: &PgConfig,
    live: &Arc<Live>,
    compliance: &WriterCompliance,
    metrics: &Arc<Metrics>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<(FlowIntake, Vec<std::thread::JoinHandle<()>>)> {
    FlowLog::ensure_topic(c, node, c.flows_partitions)
        .await
        .map_err(|e| anyhow::anyhow!("the flow stream ({}): {e}", c.kafka_brokers.join(",")))?;
    let log = FlowLog::new(c, node).map_err(|e: FlowLogError| anyhow::anyhow!("{e}"))?;
    let mut threads = vec![
        Listener {
            pg: pg.clone(),
            live: live.clone(),
            outbox: compliance.outbox.clone(),
            policy: compliance.policy.clone(),
        }
        .spawn(stop.clone())?,
    ];
    if c.worker {
        for index in 0..c.workers {
            let (pg, c2, node2, comp, m) = (
                pg.clone(),
                c.clone(),
                node.to_string(),
                compliance.clone(),
                metrics.clone(),
            );
            let worker = tokio::task::spawn_blocking(move || -> anyhow::Result<Worker> {
                let store = PgStore::connect(&pg)?;
                Ok(Worker::new(&c2, &node2, index, store, comp, m)?)
            })
            .await??;
            threads.push(worker.spawn(stop.clone())?);
        }
    } else {
        tracing::info!(
            node,
            "not a worker (cluster.worker = false): flows are stored by the others"
        );
    }
    Ok((FlowIntake::Log(Arc::new(log)), threads))
}
