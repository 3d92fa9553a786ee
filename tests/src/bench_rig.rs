//! The collector under benchmark, on loopback: either one collector with the embedded
//! SQLite store (today's deployment), or a cluster — a PostgreSQL 15 server
//! ([`PgServer`], on 127.0.0.1), a tansu Kafka broker ([`Broker`]) and N release
//! `cordon-collector` nodes, each with its own UDP port, API port, `[cluster] node_name`,
//! the shared `postgres_url` with `postgres_password_file` (mode 0600) and `kafka_brokers`.
//! The nodes create the flows topic themselves (`flows_partitions`, `flows_replication =
//! 1`). Everything is stopped and removed on drop, also when the benchmark fails.
use std::{
    net::{Ipv4Addr, SocketAddr},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use cordon_collector::{
    cluster::node::CA_NAME, pki, store::postgres::PgConfig, testing::postgres::PgServer,
};

use crate::{
    collector_proc::{Collector, free_tcp_port, free_udp_port},
    kafka_broker::Broker,
    procstat,
};

/// PostgreSQL as durable as a production server (the test server's defaults turn fsync
/// off): the cluster then pays for its commits as the SQLite collector does for its own.
pub const DURABLE: &[&str] = &["fsync=on", "synchronous_commit=on", "full_page_writes=on"];

/// One collector process of the rig.
pub struct Node {
    /// n1, n2, … (`collector` for the SQLite one).
    pub name: String,
    pub addr: SocketAddr,
    pub api: SocketAddr,
    pub data_dir: PathBuf,
    /// Config sections after `listen`, `data_dir`, `server_names`.
    pub extra: String,
    pub proc: Option<Collector>,
    pub starts: u32,
}

/// What is being measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One collector, embedded SQLite.
    Sqlite,
    /// A cluster of this many nodes.
    Cluster(usize),
}

impl Kind {
    pub fn label(&self) -> String {
        match self {
            Kind::Sqlite => "single node, SQLite".into(),
            Kind::Cluster(n) => format!("cluster, {n} node{}", if *n == 1 { "" } else { "s" }),
        }
    }
}

pub struct Rig {
    pub kind: Kind,
    pub bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub pg: Option<PgServer>,
    pub db: Option<PgConfig>,
    pub broker: Option<Broker>,
    pub nodes: Vec<Node>,
    /// The CA every node shares (enroll the simulated agents with it).
    pub ca: pki::Ca,
}

impl Rig {
    /// Starts everything for `kind` and waits until every node listens. Blocking parts
    /// (PostgreSQL, tansu) run on a blocking thread.
    pub async fn start(
        kind: Kind,
        bin: &Path,
        partitions: i32,
        durable_pg: bool,
    ) -> anyhow::Result<Rig> {
        let dir = tempfile::Builder::new()
            .prefix("cordon-cluster-bench-")
            .tempdir()?;
        let n = match kind {
            Kind::Sqlite => 1,
            Kind::Cluster(n) => n,
        };
        let mut nodes = Vec::new();
        for i in 0..n {
            let name = match kind {
                Kind::Sqlite => "collector".to_string(),
                Kind::Cluster(_) => format!("n{}", i + 1),
            };
            nodes.push(Node {
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, free_udp_port()?)),
                api: SocketAddr::from((Ipv4Addr::LOCALHOST, free_tcp_port()?)),
                data_dir: dir.path().join(&name),
                name,
                extra: String::new(),
                proc: None,
                starts: 0,
            });
        }
        // One CA for all, put where a node that joins a cluster shares it from.
        let pki_dir = nodes[0].data_dir.join("pki");
        std::fs::create_dir_all(&pki_dir)?;
        let ca = pki::load_or_create(&pki_dir, CA_NAME)?;
        let (mut pg, mut db, mut broker) = (None, None, None);
        if let Kind::Cluster(_) = kind {
            let (server, cfg, b) = tokio::task::spawn_blocking(move || {
                let port = free_tcp_port().unwrap_or(55433);
                let server = if durable_pg {
                    PgServer::start_with_settings(&[], "127.0.0.1", port, DURABLE)
                } else {
                    PgServer::start_in(&[], "127.0.0.1", port)
                };
                let cfg = server.database();
                (server, cfg, Broker::start())
            })
            .await
            .context("starting PostgreSQL and tansu")?;
            let pw_file = dir.path().join("pg.password");
            std::fs::write(&pw_file, cfg.password.clone().unwrap_or_default())?;
            std::fs::set_permissions(&pw_file, std::fs::Permissions::from_mode(0o600))?;
            for node in &mut nodes {
                node.extra = format!(
                    "[api]\nlisten = \"{api}\"\n[cluster]\nnode_name = \"{name}\"\n\
                     postgres_url = \"{url}\"\npostgres_password_file = \"{pw}\"\n\
                     kafka_brokers = [\"{kafka}\"]\nflows_partitions = {partitions}\n\
                     flows_replication = 1\n",
                    api = node.api,
                    name = node.name,
                    url = cfg.url,
                    pw = pw_file.display(),
                    kafka = b.bootstrap(),
                );
            }
            (pg, db, broker) = (Some(server), Some(cfg), Some(b));
        } else {
            nodes[0].extra = format!("[api]\nlisten = \"{}\"\n", nodes[0].api);
        }
        let mut rig = Rig {
            kind,
            bin: bin.to_path_buf(),
            dir,
            pg,
            db,
            broker,
            nodes,
            ca,
        };
        // The first node creates the schema and shares the CA; the others then join.
        rig.spawn(0)?;
        rig.wait(0).await?;
        for i in 1..rig.nodes.len() {
            rig.spawn(i)?;
        }
        for i in 1..rig.nodes.len() {
            rig.wait(i).await?;
        }
        // Every worker in the consumer group before any load (no rebalance while measuring).
        if let Kind::Cluster(_) = kind {
            for i in 0..rig.nodes.len() {
                if !rig.wait_assigned(i, Duration::from_secs(30)).await {
                    bail!(
                        "node {} got no flow partitions within 30 s",
                        rig.nodes[i].name
                    );
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok(rig)
    }

    /// Starts node `i` (again) without waiting.
    pub fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let n = &mut self.nodes[i];
        n.starts += 1;
        let log = format!("{}-{}", n.name, n.starts);
        n.proc = Some(Collector::spawn(
            &self.bin,
            &n.data_dir,
            n.addr,
            &n.extra,
            &log,
        )?);
        Ok(())
    }

    /// Waits until node `i` listens.
    pub async fn wait(&mut self, i: usize) -> anyhow::Result<()> {
        let name = self.nodes[i].name.clone();
        match self.nodes[i].proc.as_mut() {
            Some(p) => p
                .wait_listening(Duration::from_secs(60))
                .await
                .with_context(|| format!("node {name}")),
            None => bail!("node {name} is not running"),
        }
    }

    /// Waits until node `i`'s current log shows its worker got partitions (it is in the
    /// consumer group again), at most `timeout`.
    pub async fn wait_assigned(&self, i: usize, timeout: Duration) -> bool {
        let Some(p) = &self.nodes[i].proc else {
            return false;
        };
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            let log = std::fs::read_to_string(&p.log).unwrap_or_default();
            if log.contains("flow partitions assigned") {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// SIGKILL of node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].proc.take() {
            p.kill9();
        }
    }

    /// Stops every node (SIGTERM, as an operator would).
    pub fn stop_nodes(&mut self) -> Vec<String> {
        let mut warnings = Vec::new();
        for n in &mut self.nodes {
            if let Some(mut p) = n.proc.take() {
                p.stop();
                warnings.extend(p.warnings().into_iter().map(|w| format!("{}: {w}", n.name)));
            }
        }
        warnings
    }

    /// The agent addresses of all nodes, in order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }

    /// The pids of the nodes running now.
    pub fn node_pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.proc.as_ref().map(Collector::pid))
            .collect()
    }

    /// The PostgreSQL postmaster's pid (from `postmaster.pid`).
    pub fn postmaster_pid(&self) -> Option<u32> {
        let pg = self.pg.as_ref()?;
        let text = std::fs::read_to_string(pg.dir().join("data/postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// The tansu broker's pid.
    pub fn tansu_pid(&self) -> Option<u32> {
        let b = self.broker.as_ref()?;
        procstat::find_pid(&["tansu", "broker", &b.bootstrap()])
    }

    /// The sum over the running nodes of a counter in their `/metrics`.
    pub async fn metric_sum(&self, name: &str) -> anyhow::Result<u64> {
        let mut sum = 0;
        for n in &self.nodes {
            if n.proc.is_some() {
                sum += metric(n.api, name).await?;
            }
        }
        Ok(sum)
    }

    /// A blocking PostgreSQL client of the cluster's database.
    pub fn pg_client(&self) -> anyhow::Result<postgres::Client> {
        let Some(db) = &self.db else {
            bail!("not a cluster");
        };
        pg_connect(db)
    }
}

/// A blocking client for `db` (call it off the async runtime).
pub fn pg_connect(db: &PgConfig) -> anyhow::Result<postgres::Client> {
    let mut c: postgres::Config = db.url.parse()?;
    if let Some(p) = &db.password {
        c.password(p.as_str());
    }
    c.connect_timeout(Duration::from_secs(5));
    Ok(c.connect(postgres::NoTls)?)
}

/// A counter from a collector's `/metrics` (Prometheus text; labels summed).
pub async fn metric(api: SocketAddr, name: &str) -> anyhow::Result<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(api))
        .await
        .context("metrics: connect timeout")??;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {api}\r\n\r\n").as_bytes())
        .await?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut body))
        .await
        .context("metrics: read timeout")??;
    let mut total = 0.0;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if (rest.starts_with(' ') || rest.starts_with('{'))
            && let Some(v) = rest
                .split_whitespace()
                .last()
                .and_then(|v| v.parse::<f64>().ok())
        {
            total += v;
        }
    }
    Ok(total as u64)
}

impl Drop for Rig {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut p) = n.proc.take() {
                p.kill9();
            }
        }
        // The server keeps a blocking client, whose runtime must not be dropped on an
        // async runtime's thread: stop it from a thread of its own.
        if let Some(pg) = self.pg.take() {
            let _ = std::thread::spawn(move || drop(pg)).join();
        }
    }
}
