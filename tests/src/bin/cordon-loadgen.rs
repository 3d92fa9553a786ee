//! `cordon-loadgen`: the collector ingest benchmark.
//!
//! It starts the release `cordon-collector` itself (a fresh data directory and a free UDP
//! port on 127.0.0.1, for each phase), enrolls simulated agents with the collector's CA
//! (one key and certificate each: `loadgen-0000`, `loadgen-0001`, …), and has them speak
//! the real uplink protocol over real QUIC on loopback: Hello, Welcome, then flow batches
//! with increasing sequence numbers, each acknowledged by the collector only after a
//! durable commit, and Goodbye at the end.
//!
//! Phases (`--phase`, default all three):
//!
//! * `saturation`: `--saturation-agents` agents each keep `--window` batches of `--batch`
//!   records in flight, as fast as the acks come back: records/s acknowledged at
//!   saturation (the latency there is mostly queueing: the windows are always full);
//! * `sustained`: the same agents offer `--rate` records/s in total, evenly paced: whether
//!   the collector keeps up with that rate, and the send→ack latency when it does;
//! * `connected`: `--agents` agents connect and stay connected at once, each sending
//!   `--agent-rate` records per second (one batch a second): the collector's memory with
//!   that many agents, and the latency at a moderate load.
//!
//! Each phase measures for `--seconds` after `--warmup` seconds, then every agent waits for
//! the acks of all it sent and says Goodbye, the collector is stopped, and its SQLite store
//! is checked: as many flows stored as records acknowledged, and each agent's stored
//! sequence number equal to the batches it sent. Anything lost or any agent failing makes
//! the exit code 1. Traffic never leaves 127.0.0.1.
use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use cordon_collector::pki::Ca;
use cordon_tests::{
    collector_proc::Collector,
    procstat::{cores, proc_stats},
    simagent::{Load, Totals, Window, connect, drive, enroll, percentile},
};
use serde_json::json;
use tokio::sync::Semaphore;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Phase {
    Saturation,
    Sustained,
    Connected,
    All,
}

#[derive(Parser, Debug)]
#[command(
    name = "cordon-loadgen",
    about = "Collector ingest benchmark: simulated agents over QUIC on loopback"
)]
struct Cli {
    /// Which phase(s) to run.
    #[arg(long, value_enum, default_value = "all")]
    phase: Phase,
    /// The collector binary (default: `cordon-collector` next to this program).
    #[arg(long)]
    collector: Option<PathBuf>,
    /// Agents in the saturation phase.
    #[arg(long, default_value_t = 50)]
    saturation_agents: usize,
    /// Records per batch in the saturation phase (the agent's default maximum is 1000).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Unacknowledged batches each agent keeps in flight in the saturation phase.
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// Records per second offered in total in the sustained phase.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Agents connected at once in the connected phase.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Records per second each agent sends in the connected phase (one batch a second).
    #[arg(long, default_value_t = 20)]
    agent_rate: usize,
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Client UDP sockets (QUIC endpoints) the agents are spread over.
    #[arg(long, default_value_t = 4)]
    endpoints: usize,
    /// Handshakes in progress at once while the agents connect.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep the collectors' data directories (their paths are printed).
    #[arg(long)]
    keep: bool,
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
            eprintln!("cordon-loadgen: tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("cordon-loadgen: FAILED (loss or agent errors, see above)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("cordon-loadgen: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    if cli.batch == 0 || cli.batch > cordon_wire::MAX_BATCH_RECORDS {
        bail!(
            "--batch must be 1..={} records",
            cordon_wire::MAX_BATCH_RECORDS
        );
    }
    if cli.window == 0 || cli.endpoints == 0 || cli.connect_concurrency == 0 || cli.rate == 0 {
        bail!("--window, --endpoints, --connect-concurrency and --rate must be > 0");
    }
    if cli.agent_rate == 0 || cli.agent_rate > cordon_wire::MAX_BATCH_RECORDS {
        bail!(
            "--agent-rate must be 1..={} records/s",
            cordon_wire::MAX_BATCH_RECORDS
        );
    }
    let collector = match &cli.collector {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("locating this program")?
            .with_file_name("cordon-collector"),
    };
    if !collector.is_file() {
        bail!(
            "{}: not found (build it: cargo build --release -p cordon-collector)",
            collector.display()
        );
    }
    let mut loads = Vec::new();
    if matches!(cli.phase, Phase::Saturation | Phase::All) {
        loads.push(Load {
            name: "saturation",
            agents: cli.saturation_agents,
            batch: cli.batch,
            window: cli.window,
            batches_per_s: None,
        });
    }
    if matches!(cli.phase, Phase::Sustained | Phase::All) {
        loads.push(Load {
            name: "sustained",
            agents: cli.saturation_agents,
            batch: cli.batch,
            window: cli.window,
            batches_per_s: Some(
                cli.rate as f64 / (cli.saturation_agents.max(1) * cli.batch) as f64,
            ),
        });
    }
    if matches!(cli.phase, Phase::Connected | Phase::All) {
        loads.push(Load {
            name: "connected",
            agents: cli.agents,
            batch: cli.agent_rate,
            window: cli.window,
            batches_per_s: Some(1.0),
        });
    }
    let mut ok = true;
    let mut reports = Vec::new();
    for load in &loads {
        let report = phase(&cli, &collector, load).await?;
        ok &= report.ok();
        report.print();
        reports.push(report.json());
    }
    if let Some(path) = &cli.json {
        let doc = json!({ "phases": reports, "cores": cores() });
        std::fs::write(path, format!("{doc:#}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ok)
}

// ---------------------------------------------------------------------------------------
// A phase

#[derive(Debug, Default)]
struct Report {
    load: String,
    agents: usize,
    batch: usize,
    window: usize,
    rate_note: String,
    /// Records/s offered, for a paced load.
    offered_per_s: Option<f64>,
    connect_s: f64,
    connected: usize,
    measured_s: f64,
    records_per_s: f64,
    batches_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    latency_samples: usize,
    rss_connected_idle_kib: u64,
    rss_max_kib: u64,
    hwm_kib: u64,
    threads: u64,
    collector_cpu_cores: f64,
    loadgen_cpu_cores: f64,
    // Loss check.
    batches_sent: u64,
    batches_acked: u64,
    records_acked: u64,
    flows_stored: u64,
    seq_mismatches: Vec<String>,
    agent_errors: Vec<String>,
    collector_warnings: Vec<String>,
    data_dir: Option<PathBuf>,
}

impl Report {
    fn ok(&self) -> bool {
        self.agent_errors.is_empty()
            && self.seq_mismatches.is_empty()
            && self.batches_sent == self.batches_acked
            && self.records_acked == self.flows_stored
            && self.connected == self.agents
    }

    fn print(&self) {
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!();
        println!(
            "== phase {}: {} agents, {} records/batch, window {}{}",
            self.load, self.agents, self.batch, self.window, self.rate_note
        );
        println!(
            "connected:        {}/{} agents in {:.1} s",
            self.connected, self.agents, self.connect_s
        );
        println!(
            "ingest:           {:.0} records/s acknowledged ({:.0} batches/s) over {:.1} s{}",
            self.records_per_s,
            self.batches_per_s,
            self.measured_s,
            match self.offered_per_s {
                Some(o) if self.records_per_s >= 0.98 * o => format!("; offered {o:.0}/s: kept up"),
                Some(o) => format!("; offered {o:.0}/s: did NOT keep up"),
                None => String::new(),
            }
        );
        println!(
            "send→ack latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} batches)",
            self.p50_ms, self.p99_ms, self.max_ms, self.latency_samples
        );
        println!(
            "collector memory: RSS {:.1} MiB with all agents connected (idle), {:.1} MiB max under load, VmHWM {:.1} MiB; {} threads",
            mib(self.rss_connected_idle_kib),
            mib(self.rss_max_kib),
            mib(self.hwm_kib),
            self.threads
        );
        println!(
            "CPU (of {} cores):  collector {:.2} cores, loadgen {:.2} cores",
            cores(),
            self.collector_cpu_cores,
            self.loadgen_cpu_cores
        );
        println!(
            "loss check:       {} batches sent, {} acked; {} records acked, {} flows stored; {} sequence mismatches, {} agent errors → {}",
            self.batches_sent,
            self.batches_acked,
            self.records_acked,
            self.flows_stored,
            self.seq_mismatches.len(),
            self.agent_errors.len(),
            if self.ok() { "no loss" } else { "FAILED" }
        );
        for line in self
            .seq_mismatches
            .iter()
            .chain(&self.agent_errors)
            .take(10)
        {
            println!("  {line}");
        }
        if !self.collector_warnings.is_empty() {
            println!(
                "collector warnings: {} (first: {})",
                self.collector_warnings.len(),
                self.collector_warnings[0]
            );
        }
        if let Some(d) = &self.data_dir {
            println!("data directory kept: {}", d.display());
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "phase": self.load,
            "agents": self.agents,
            "batch": self.batch,
            "window": self.window,
            "connected": self.connected,
            "connect_s": self.connect_s,
            "measured_s": self.measured_s,
            "records_per_s": self.records_per_s,
            "offered_per_s": self.offered_per_s,
            "batches_per_s": self.batches_per_s,
            "latency_ms": { "p50": self.p50_ms, "p99": self.p99_ms, "max": self.max_ms,
                            "samples": self.latency_samples },
            "collector_rss_kib": { "connected_idle": self.rss_connected_idle_kib,
                                   "max_under_load": self.rss_max_kib, "hwm": self.hwm_kib },
            "collector_threads": self.threads,
            "cpu_cores": { "collector": self.collector_cpu_cores, "loadgen": self.loadgen_cpu_cores },
            "loss_check": {
                "batches_sent": self.batches_sent,
                "batches_acked": self.batches_acked,
                "records_acked": self.records_acked,
                "flows_stored": self.flows_stored,
                "seq_mismatches": self.seq_mismatches,
                "agent_errors": self.agent_errors,
                "ok": self.ok(),
            },
            "collector_warnings": self.collector_warnings.len(),
        })
    }
}

async fn phase(cli: &Cli, bin: &Path, load: &Load) -> anyhow::Result<Report> {
    eprintln!(
        "phase {}: starting a collector, enrolling {} agents",
        load.name, load.agents
    );
    let dir = tempfile::Builder::new()
        .prefix(&format!("cordon-loadgen-{}-", load.name))
        .tempdir()?;
    let mut collector = Collector::start(bin, dir.path()).await?;
    let pid = collector.pid().to_string();
    let pki = collector.data_dir.join("pki");
    let ca_pem = std::fs::read_to_string(pki.join(cordon_collector::pki::CA_CERT))?;
    let ca_key = std::fs::read_to_string(pki.join(cordon_collector::pki::CA_KEY))?;
    let agents = load.agents;
    let identities = tokio::task::spawn_blocking({
        let ca_pem = ca_pem.clone();
        move || enroll(&Ca::from_pem(&ca_pem, &ca_key)?, agents)
    })
    .await??;
    let endpoints = (0..cli.endpoints)
        .map(|_| quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))
        .collect::<Result<Vec<_>, _>>()?;

    // Connect everyone first, a bounded number of handshakes at a time.
    eprintln!("phase {}: connecting {} agents", load.name, load.agents);
    let t0 = Instant::now();
    let gate = Arc::new(Semaphore::new(cli.connect_concurrency));
    let mut connecting = tokio::task::JoinSet::new();
    let ca_pem: Arc<str> = ca_pem.into();
    for (i, who) in identities.into_iter().enumerate() {
        let endpoint = endpoints[i % endpoints.len()].clone();
        let gate = gate.clone();
        let ca_pem = ca_pem.clone();
        let addr = collector.addr;
        connecting.spawn(async move {
            let _permit = gate.acquire_owned().await;
            connect(&endpoint, &ca_pem, &who, i, addr)
                .await
                .map_err(|e| format!("{}: connect: {e:#}", who.id))
        });
    }
    let mut connected = Vec::new();
    let mut agent_errors = Vec::new();
    while let Some(r) = connecting.join_next().await {
        match r {
            Ok(Ok(c)) => connected.push(c),
            Ok(Err(e)) => agent_errors.push(e),
            Err(e) => agent_errors.push(format!("connect task: {e}")),
        }
    }
    let connect_s = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = proc_stats(&pid);
    eprintln!(
        "phase {}: {} agents connected in {connect_s:.1} s; collector RSS {:.1} MiB; loading for {} + {} s",
        load.name,
        connected.len(),
        idle.rss_kib as f64 / 1024.0,
        cli.warmup,
        cli.seconds
    );

    // Load.
    let start = Instant::now();
    let window = Window {
        start,
        from: start + Duration::from_secs(cli.warmup),
        until: start + Duration::from_secs(cli.warmup + cli.seconds),
    };
    let totals = Arc::new(Totals::default());
    let n_connected = connected.len();
    let mut running = tokio::task::JoinSet::new();
    for c in connected {
        running.spawn(drive(c, load.clone(), window, totals.clone()));
    }
    let mut rss_max = idle.rss_kib;
    let sample = |rss_max: &mut u64| {
        let s = proc_stats(&pid);
        *rss_max = (*rss_max).max(s.rss_kib);
        s
    };
    while Instant::now() < window.from {
        tokio::time::sleep(Duration::from_millis(250)).await;
        sample(&mut rss_max);
    }
    let (c0, l0) = (sample(&mut rss_max).cpu_s, proc_stats("self").cpu_s);
    let (r0, b0) = (
        totals.records_acked.load(Ordering::Relaxed),
        totals.batches_acked.load(Ordering::Relaxed),
    );
    let m0 = Instant::now();
    while Instant::now() < window.until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        sample(&mut rss_max);
    }
    let measured_s = m0.elapsed().as_secs_f64();
    let (r1, b1) = (
        totals.records_acked.load(Ordering::Relaxed),
        totals.batches_acked.load(Ordering::Relaxed),
    );
    let end = sample(&mut rss_max);
    let (c1, l1) = (end.cpu_s, proc_stats("self").cpu_s);

    // Drain: every agent waits for its acks and says Goodbye.
    eprintln!("phase {}: draining", load.name);
    let mut results = Vec::new();
    while let Some(r) = running.join_next().await {
        match r {
            Ok(r) => results.push(r),
            Err(e) => agent_errors.push(format!("agent task: {e}")),
        }
    }
    let hwm = proc_stats(&pid).hwm_kib;
    collector.stop();
    for e in &endpoints {
        e.close(0u32.into(), b"done");
    }

    // Loss check against the store itself.
    let db = rusqlite::Connection::open_with_flags(
        collector.data_dir.join("cordon.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
    )?;
    let flows_stored: i64 = db.query_row("SELECT count(*) FROM flows", [], |r| r.get(0))?;
    let mut seqs = std::collections::HashMap::new();
    {
        let mut q = db.prepare("SELECT agent_id, last_seq FROM hosts")?;
        let rows = q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (id, seq) = row?;
            seqs.insert(id, seq);
        }
    }
    let mut seq_mismatches = Vec::new();
    let mut latencies = Vec::new();
    let (mut sent, mut acked, mut records) = (0, 0, 0);
    for r in &mut results {
        sent += r.batches_sent;
        acked += r.batches_acked;
        records += r.records_acked;
        latencies.append(&mut r.latencies_us);
        let expected = r.stored_seq + r.batches_sent;
        let stored = seqs.get(&r.id).copied().unwrap_or(-1);
        if stored != i64::try_from(expected).unwrap_or(-1) {
            seq_mismatches.push(format!(
                "{}: {} batches sent, stored last_seq {stored}",
                r.id, expected
            ));
        }
        if let Some(e) = &r.error {
            agent_errors.push(format!("{}: {e}", r.id));
        }
    }
    latencies.sort_unstable();
    let cpu = |a: f64, b: f64| (b - a) / measured_s;
    let rate_note = match load.batches_per_s {
        Some(r) => format!(
            ", {:.0} records/s per agent ({:.0}/s in all)",
            r * load.batch as f64,
            r * (load.batch * load.agents) as f64
        ),
        None => ", as fast as acks allow".into(),
    };
    let data_dir = cli.keep.then(|| dir.keep());
    Ok(Report {
        load: load.name.into(),
        agents: load.agents,
        batch: load.batch,
        window: load.window,
        rate_note,
        offered_per_s: load
            .batches_per_s
            .map(|r| r * (load.batch * n_connected) as f64),
        connect_s,
        connected: n_connected,
        measured_s,
        records_per_s: (r1 - r0) as f64 / measured_s,
        batches_per_s: (b1 - b0) as f64 / measured_s,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().map_or(0.0, |&v| f64::from(v) / 1000.0),
        latency_samples: latencies.len(),
        rss_connected_idle_kib: idle.rss_kib,
        rss_max_kib: rss_max,
        hwm_kib: hwm,
        threads: end.threads,
        collector_cpu_cores: cpu(c0, c1),
        loadgen_cpu_cores: cpu(l0, l1),
        batches_sent: sent,
        batches_acked: acked,
        records_acked: records,
        flows_stored: u64::try_from(flows_stored).unwrap_or(0),
        seq_mismatches,
        agent_errors,
        collector_warnings: collector.warnings(),
        data_dir,
    })
}
