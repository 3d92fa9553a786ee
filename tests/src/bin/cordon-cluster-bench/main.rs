//! `cordon-cluster-bench`: the collector cluster's benchmarks, on loopback (no root).
//!
//! * `throughput`: the same simulated-agent load (the agents of `cordon-loadgen`, real QUIC
//!   and mutual TLS) against one collector with the embedded SQLite store and against a
//!   cluster of 1, 2 and 3 nodes (PostgreSQL 15, a tansu Kafka broker and release
//!   `cordon-collector` nodes, all on this machine), agents spread over the nodes. Each
//!   configuration runs a *saturation* phase (records/s acknowledged and records/s stored:
//!   in a cluster the ack comes from Kafka, the store from the workers) and a *sustained*
//!   phase at a rate every configuration keeps up with (CPU seconds per 1,000 records of
//!   each process kind). After each phase every batch must be stored exactly once.
//! * `failover`: a 3-node cluster under a paced load; a node is killed (SIGKILL) again
//!   and again, restarted each time: kill → every agent that was on it reconnected to
//!   another node, and kill → the first new batch of those agents stored.
//!
//! Any loss, duplicate or agent error makes the exit code 1.
use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use cordon_collector::pki::Ca;
use cordon_tests::simagent::{
    Totals, Window, enroll,
    roam::{Placement, RoamLoad, RoamResult, Roamer},
};

mod failover;
mod throughput;

#[derive(Parser)]
#[command(
    name = "cordon-cluster-bench",
    about = "Collector cluster benchmarks on loopback"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Records/s with SQLite and with clusters of 1..=N nodes, CPU per record.
    Throughput(throughput::Opts),
    /// Kill a node under load again and again: reconnection and resumption times.
    Failover(failover::Opts),
}

/// What both benchmarks share.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// The collector binary (default: `cordon-collector` next to this program).
    #[arg(long)]
    collector: Option<PathBuf>,
    /// Partitions of the flows topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Run PostgreSQL with the test server's settings (fsync=off) instead of durable
    /// ones.
    #[arg(long)]
    pg_fast: bool,
    /// Client UDP sockets (QUIC endpoints) the agents are spread over.
    #[arg(long, default_value_t = 4)]
    endpoints: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl Common {
    fn collector(&self) -> anyhow::Result<PathBuf> {
        let p = match &self.collector {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .context("locating this program")?
                .with_file_name("cordon-collector"),
        };
        if !p.is_file() {
            bail!(
                "{}: not found (cargo build --release -p cordon-collector)",
                p.display()
            );
        }
        Ok(p)
    }
}

/// The simulated agents of one phase, running.
pub struct Swarm {
    pub placements: Vec<Arc<Placement>>,
    pub totals: Arc<Totals>,
    pub stop: Arc<AtomicBool>,
    tasks: tokio::task::JoinSet<RoamResult>,
    endpoints: Vec<quinn::Endpoint>,
}

impl Swarm {
    /// Enrolls `agents` agents with `ca` and starts them against `nodes` (agent i's home
    /// is node i mod n).
    pub async fn start(
        ca: &Ca,
        nodes: Vec<SocketAddr>,
        agents: usize,
        load: RoamLoad,
        window: Window,
        endpoints: usize,
    ) -> anyhow::Result<Swarm> {
        let (cert, key) = (ca.cert_pem.clone(), ca.key_pem());
        let ids = tokio::task::spawn_blocking(move || enroll(&Ca::from_pem(&cert, &key)?, agents))
            .await??;
        let endpoints = (0..endpoints.max(1))
            .map(|_| quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))
            .collect::<Result<Vec<_>, _>>()?;
        let ca_pem: Arc<str> = ca.cert_pem.clone().into();
        let totals = Arc::new(Totals::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut placements = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        for (index, who) in ids.into_iter().enumerate() {
            let placement = Arc::new(Placement::default());
            placements.push(placement.clone());
            let r = Roamer {
                index,
                who,
                ca_pem: ca_pem.clone(),
                nodes: nodes.clone(),
                endpoint: endpoints[index % endpoints.len()].clone(),
                placement,
                stop: stop.clone(),
            };
            tasks.spawn(r.run(load, window, totals.clone()));
        }
        Ok(Swarm {
            placements,
            totals,
            stop,
            tasks,
            endpoints,
        })
    }

    /// Records acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.totals.records_acked.load(Ordering::Relaxed)
    }

    /// Stops sending, waits for every agent to drain and say Goodbye.
    pub async fn finish(mut self) -> (Vec<RoamResult>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        let mut errors = Vec::new();
        while let Some(r) = self.tasks.join_next().await {
            match r {
                Ok(r) => out.push(r),
                Err(e) => errors.push(format!("agent task: {e}")),
            }
        }
        for e in &self.endpoints {
            e.close(0u32.into(), b"done");
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        (out, errors)
    }
}

/// p-quantile (nearest rank) of sorted values.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cordon-cluster-bench: tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let res = rt.block_on(async {
        match cli.cmd {
            Cmd::Throughput(o) => throughput::run(o).await,
            Cmd::Failover(o) => failover::run(o).await,
        }
    });
    match res {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("cordon-cluster-bench: FAILED (loss, duplicates or agent errors, see above)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("cordon-cluster-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}
