//! `throughput`: SQLite and clusters of 1..=N nodes under the same load, two phases each.
use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use anyhow::bail;
use clap::Args;
use cordon_tests::{
    bench_check::{Check, Stored, check},
    bench_rig::{Kind, Rig, pg_connect},
    procstat::{cores, proc_stats, thread_cpu_s, thread_role, tree_cpu_s},
    simagent::{Window, roam::RoamLoad},
};
use serde_json::json;

use super::{Common, Swarm, quantile};

#[derive(Args, Clone, Debug)]
pub struct Opts {
    #[command(flatten)]
    common: Common,
    /// Cluster sizes to measure (after the SQLite collector); 0: none.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    nodes: Vec<usize>,
    /// Skip the SQLite collector.
    #[arg(long)]
    no_sqlite: bool,
    /// Simulated agents.
    #[arg(long, default_value_t = 50)]
    agents: usize,
    /// Records per batch (the agent's default maximum is 1000).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Unacknowledged batches each agent keeps in flight.
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// Records/s offered in total in the saturation phase; 0: as fast as the acks come
    /// back. In a cluster the acks come from Kafka, far ahead of what the workers store,
    /// and every record acknowledged must be stored before the loss check: an unbounded
    /// phase leaves minutes of backlog.
    #[arg(long, default_value_t = 100_000)]
    offered: u64,
    /// Records/s offered in total in the sustained phase (below what every configuration
    /// stores: CPU per record in a steady state).
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
}

/// CPU seconds so far, by process kind, and the nodes' threads.
#[derive(Clone, Debug, Default)]
struct Cpu {
    nodes: f64,
    pg: f64,
    tansu: f64,
    loadgen: f64,
    threads: HashMap<(u32, u32), (String, f64)>,
}

fn sample(rig: &Rig) -> Cpu {
    let mut c = Cpu::default();
    for pid in rig.node_pids() {
        c.nodes += proc_stats(&pid.to_string()).cpu_s;
        for (tid, t) in thread_cpu_s(pid) {
            c.threads.insert((pid, tid), t);
        }
    }
    c.pg = rig.postmaster_pid().map_or(0.0, tree_cpu_s);
    c.tansu = rig
        .tansu_pid()
        .map_or(0.0, |p| proc_stats(&p.to_string()).cpu_s);
    c.loadgen = proc_stats("self").cpu_s;
    c
}

/// One phase of one configuration.
#[derive(Debug)]
struct Report {
    config: String,
    phase: &'static str,
    offered: Option<f64>,
    measured_s: f64,
    acked_per_s: f64,
    stored_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    drain_s: f64,
    /// nodes, postgres, tansu, loadgen: cores over the window.
    cores: [f64; 4],
    /// The same, CPU seconds per 1,000 records stored in the window.
    per_1k: [f64; 4],
    roles: BTreeMap<&'static str, f64>,
    check: Check,
    warnings: Vec<String>,
}

const KINDS: [&str; 4] = ["nodes", "postgres", "tansu", "loadgen"];

impl Report {
    fn print(&self) {
        println!();
        println!("== {} — {}", self.config, self.phase);
        let offered = self
            .offered
            .map_or(String::new(), |o| format!(" (offered {o:.0}/s)"));
        println!(
            "records/s:  {:.0} acknowledged, {:.0} stored over {:.1} s{offered}; send→ack p50 {:.1} ms, p99 {:.1} ms",
            self.acked_per_s, self.stored_per_s, self.measured_s, self.p50_ms, self.p99_ms
        );
        println!(
            "drain:      stored caught up with acknowledged {:.1} s after the load stopped",
            self.drain_s
        );
        let used: Vec<String> = KINDS
            .iter()
            .zip(self.cores)
            .map(|(k, c)| format!("{k} {c:.2}"))
            .collect();
        println!("CPU cores (of {}): {}", cores(), used.join(", "));
        let per: Vec<String> = KINDS
            .iter()
            .zip(self.per_1k)
            .map(|(k, c)| format!("{k} {:.1} ms", c * 1e3))
            .collect();
        println!("CPU per 1,000 records stored: {}", per.join(", "));
        let roles: Vec<String> = self
            .roles
            .iter()
            .map(|(r, c)| format!("{r} {c:.2}"))
            .collect();
        println!("node threads (cores): {}", roles.join(", "));
        let (ingest, store) = self.split();
        println!(
            "node CPU per 1,000 records: ingest threads (tokio) {:.1} ms per 1,000 acknowledged, \
             {} {:.1} ms per 1,000 stored",
            ingest * 1e3,
            if self.config.contains("SQLite") {
                "SQLite writer"
            } else {
                "worker"
            },
            store * 1e3
        );
        println!("loss check: {}", self.check.line());
        for p in self.check.problems.iter().take(10) {
            println!("  {p}");
        }
        if !self.warnings.is_empty() {
            println!(
                "collector warnings: {} (first: {})",
                self.warnings.len(),
                self.warnings[0]
            );
        }
    }

    /// Node CPU seconds per 1,000 records: the ingest threads per record acknowledged, the
    /// worker (or SQLite writer) thread per record stored. In a saturated cluster ingest
    /// acknowledges far more than the workers store, so the per-stored total overstates.
    fn split(&self) -> (f64, f64) {
        let per = |cores: f64, rate: f64| {
            if rate > 0.0 {
                cores / (rate / 1000.0)
            } else {
                f64::NAN
            }
        };
        let role = |r: &str| self.roles.get(r).copied().unwrap_or(0.0);
        (
            per(role("tokio"), self.acked_per_s),
            per(role("worker") + role("SQLite writer"), self.stored_per_s),
        )
    }

    fn json(&self) -> serde_json::Value {
        let (ingest, store) = self.split();
        json!({
            "node_cpu_s_per_1k": {"ingest_threads_per_acked": ingest, "worker_or_writer_per_stored": store},
            "config": self.config, "phase": self.phase, "offered_per_s": self.offered,
            "measured_s": self.measured_s, "acked_per_s": self.acked_per_s,
            "stored_per_s": self.stored_per_s, "latency_ms": {"p50": self.p50_ms, "p99": self.p99_ms},
            "drain_s": self.drain_s,
            "cpu_cores": KINDS.iter().zip(self.cores).map(|(k, c)| (k.to_string(), json!(c))).collect::<serde_json::Map<_, _>>(),
            "cpu_s_per_1k_stored": KINDS.iter().zip(self.per_1k).map(|(k, c)| (k.to_string(), json!(c))).collect::<serde_json::Map<_, _>>(),
            "node_thread_cores": self.roles,
            "loss_check": {"ok": self.check.ok(), "line": self.check.line(), "problems": self.check.problems},
            "collector_warnings": self.warnings.len(),
        })
    }
}

pub async fn run(o: Opts) -> anyhow::Result<bool> {
    if o.batch == 0 || o.batch > cordon_wire::MAX_BATCH_RECORDS || o.window == 0 || o.agents == 0 {
        bail!("--batch 1..=1000, --window and --agents > 0");
    }
    let bin = o.common.collector()?;
    let mut kinds = Vec::new();
    if !o.no_sqlite {
        kinds.push(Kind::Sqlite);
    }
    kinds.extend(
        o.nodes
            .iter()
            .filter(|n| **n > 0)
            .map(|n| Kind::Cluster(*n)),
    );
    let per_agent = |rate: u64| rate as f64 / (o.agents * o.batch) as f64;
    let phases: [(&'static str, Option<f64>); 2] = [
        ("saturation", (o.offered > 0).then(|| per_agent(o.offered))),
        ("sustained", Some(per_agent(o.rate))),
    ];
    let mut reports = Vec::new();
    let mut ok = true;
    for kind in &kinds {
        for (phase, per_agent) in phases {
            eprintln!("{} — {phase}: starting", kind.label());
            let r = measure(&o, &bin, *kind, phase, per_agent).await?;
            ok &= r.check.ok();
            r.print();
            reports.push(r);
        }
    }
    summary(&reports);
    if let Some(p) = &o.common.json {
        let doc = json!({"cores": cores(), "agents": o.agents, "batch": o.batch, "window": o.window,
                         "pg_durable": !o.common.pg_fast, "partitions": o.common.partitions,
                         "runs": reports.iter().map(Report::json).collect::<Vec<_>>()});
        std::fs::write(p, format!("{doc:#}\n"))?;
    }
    Ok(ok)
}

async fn measure(
    o: &Opts,
    bin: &std::path::Path,
    kind: Kind,
    phase: &'static str,
    per_agent: Option<f64>,
) -> anyhow::Result<Report> {
    let mut rig = Rig::start(kind, bin, o.common.partitions, !o.common.pg_fast).await?;
    let start = Instant::now();
    let window = Window {
        start,
        from: start + Duration::from_secs(o.warmup),
        until: start + Duration::from_secs(o.warmup + o.seconds),
    };
    let load = RoamLoad {
        batch: o.batch,
        window: o.window,
        batches_per_s: per_agent,
    };
    let swarm = Swarm::start(
        &rig.ca,
        rig.addrs(),
        o.agents,
        load,
        window,
        o.common.endpoints,
    )
    .await?;
    tokio::time::sleep_until(window.from.into()).await;
    let (a0, s0, c0, t0) = (
        swarm.acked(),
        rig.metric_sum("cordon_collector_records_stored_total")
            .await?,
        sample(&rig),
        Instant::now(),
    );
    tokio::time::sleep_until(window.until.into()).await;
    let (a1, s1, c1) = (
        swarm.acked(),
        rig.metric_sum("cordon_collector_records_stored_total")
            .await?,
        sample(&rig),
    );
    let measured_s = t0.elapsed().as_secs_f64();
    eprintln!("{} — {phase}: draining", kind.label());
    let stopped = Instant::now();
    let (mut agents, mut errors) = swarm.finish().await;
    let acked: u64 = agents.iter().map(|a| a.records_acked).sum();
    // In a cluster the workers may still be behind the acknowledgements.
    let deadline = Instant::now() + Duration::from_secs(180);
    while rig
        .metric_sum("cordon_collector_records_stored_total")
        .await?
        < acked
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain_s = stopped.elapsed().as_secs_f64();
    let warnings = rig.stop_nodes();
    let stored = match kind {
        Kind::Sqlite => {
            let db = rig.nodes[0].data_dir.join("cordon.db");
            tokio::task::spawn_blocking(move || Stored::sqlite(&db)).await??
        }
        Kind::Cluster(_) => {
            let db = rig
                .db
                .clone()
                .ok_or_else(|| anyhow::anyhow!("no database"))?;
            tokio::task::spawn_blocking(move || Stored::postgres(&mut pg_connect(&db)?)).await??
        }
    };
    let mut chk = check(&stored, &agents, o.batch);
    chk.problems.append(&mut errors);
    let mut lat: Vec<f64> = agents
        .iter_mut()
        .flat_map(|a| a.latencies_us.drain(..))
        .map(|us| f64::from(us) / 1e3)
        .collect();
    lat.sort_by(f64::total_cmp);
    let d = |a: f64, b: f64| (b - a).max(0.0);
    let cpu = [
        d(c0.nodes, c1.nodes),
        d(c0.pg, c1.pg),
        d(c0.tansu, c1.tansu),
        d(c0.loadgen, c1.loadgen),
    ];
    let stored_in_window = s1.saturating_sub(s0) as f64;
    let mut roles: BTreeMap<&'static str, f64> = BTreeMap::new();
    for (k, (name, t1)) in &c1.threads {
        if let Some((_, t0)) = c0.threads.get(k) {
            *roles.entry(thread_role(name)).or_default() += d(*t0, *t1) / measured_s;
        }
    }
    drop(tokio::task::spawn_blocking(move || drop(rig)).await);
    Ok(Report {
        config: kind.label(),
        phase,
        offered: per_agent.map(|b| b * (o.batch * o.agents) as f64),
        measured_s,
        acked_per_s: a1.saturating_sub(a0) as f64 / measured_s,
        stored_per_s: stored_in_window / measured_s,
        p50_ms: quantile(&lat, 0.50),
        p99_ms: quantile(&lat, 0.99),
        drain_s,
        cores: cpu.map(|c| c / measured_s),
        per_1k: cpu.map(|c| {
            if stored_in_window > 0.0 {
                c / (stored_in_window / 1000.0)
            } else {
                f64::NAN
            }
        }),
        roles,
        check: chk,
        warnings,
    })
}

/// The Markdown tables for docs/benchmarks.md.
fn summary(reports: &[Report]) {
    let base = reports
        .iter()
        .find(|r| r.phase == "saturation")
        .map_or(1.0, |r| r.stored_per_s.max(1.0));
    println!();
    println!(
        "| configuration | records/s acked | records/s stored | stored vs first | send→ack p50 / p99 | drain after load | loss check |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in reports.iter().filter(|r| r.phase == "saturation") {
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.0} / {:.0} ms | {:.1} s | {} |",
            r.config,
            r.acked_per_s,
            r.stored_per_s,
            r.stored_per_s / base,
            r.p50_ms,
            r.p99_ms,
            r.drain_s,
            if r.check.ok() {
                "exactly once"
            } else {
                "FAILED"
            }
        );
    }
    println!();
    println!(
        "| configuration (sustained) | offered | stored/s | p50 / p99 | cores: nodes, postgres, tansu, loadgen | CPU ms per 1k records: nodes, postgres, tansu | node threads (cores) | loss check |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in reports.iter().filter(|r| r.phase == "sustained") {
        let roles: Vec<String> = r.roles.iter().map(|(k, c)| format!("{k} {c:.2}")).collect();
        println!(
            "| {} | {:.0} | {:.0} | {:.1} / {:.1} ms | {:.2}, {:.2}, {:.2}, {:.2} | {:.1}, {:.1}, {:.1} | {} | {} |",
            r.config,
            r.offered.unwrap_or(0.0),
            r.stored_per_s,
            r.p50_ms,
            r.p99_ms,
            r.cores[0],
            r.cores[1],
            r.cores[2],
            r.cores[3],
            r.per_1k[0] * 1e3,
            r.per_1k[1] * 1e3,
            r.per_1k[2] * 1e3,
            roles.join(", "),
            if r.check.ok() {
                "exactly once"
            } else {
                "FAILED"
            }
        );
    }
}
