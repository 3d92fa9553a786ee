//! Policy learning at scale: a synthetic data center of tiered applications (web → app →
//! db per application, plus monitoring, DNS, bastion and batch hosts) writes its flows into
//! a collector store file through the store API; then a draft is learned from them and
//! judged: learning time, cluster purity against the known tiers, false positives on
//! held-out benign flows and the share of injected violations caught (with the policy
//! engine, as the collector judges flows).
//!
//!   cordon-learn-bench [--hosts 1000] [--flows 10000000] [--db learn-bench.sqlite] [--reuse]
use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::Arc,
    time::Instant,
};

use clap::Parser;
use cordon_collector::{
    learn::{self, ClusterParams, GroupMode, LearnParams},
    policy::{self, Action, Context, Evaluator, FlowView},
    store::Store,
};
use cordon_tests::synth_dc::*;
use cordon_wire::{Direction, Proto};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    hosts: usize,
    /// Flow records to store (both ends of a conversation between hosts record it).
    #[arg(long, default_value_t = 10_000_000)]
    flows: u64,
    /// The store file (created; with --reuse an existing one is learned from as it is).
    #[arg(long, default_value = "learn-bench.sqlite")]
    db: PathBuf,
    #[arg(long)]
    reuse: bool,
    #[arg(long, default_value_t = 0.6)]
    threshold: f64,
    /// Held-out benign conversations to judge.
    #[arg(long, default_value_t = 200_000)]
    held_out: u64,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let d = dc(a.hosts);
    if !a.reuse {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", a.db.display()));
        }
        let mut store = Store::open(&a.db)?;
        let t = Instant::now();
        let n = generate(&d, &mut store, a.flows)?;
        println!(
            "generated {n} flow records for {} hosts ({} applications) in {:.1} s",
            d.hosts.len(),
            d.apps.len(),
            t.elapsed().as_secs_f64()
        );
    }
    let store = Store::open(&a.db)?;
    let params = LearnParams {
        since_ns: T0 - DAY,
        until_ns: T0 + 2 * DAY,
        cluster: ClusterParams {
            threshold: a.threshold,
            ..ClusterParams::default()
        },
        groups: GroupMode::Clusters,
        name: "bench".into(),
    };
    let t = Instant::now();
    let g = learn::Graph::from_store(&store, params.since_ns, params.until_ns)?;
    let graph_s = t.elapsed().as_secs_f64();
    let l = learn::learn_graph(&store, &g, &params, None, t)?;
    let total_s = t.elapsed().as_secs_f64();
    let r = &l.report;
    println!(
        "learned from {} records ({} conversations, {} hosts) in {total_s:.2} s \
         (graph {graph_s:.2} s, clustering + draft + stats {:.2} s); {} rounds",
        r.records,
        r.conversations,
        r.hosts,
        total_s - graph_s,
        r.rounds
    );
    // Purity: each cluster's largest known tier; inverse: each tier's largest cluster.
    let tier_of: HashMap<&str, &str> = d
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), h.tier.as_str()))
        .collect();
    let (mut pure, mut total) = (0usize, 0usize);
    let mut tier_clusters: BTreeMap<&str, BTreeMap<usize, usize>> = BTreeMap::new();
    for (ci, c) in r.clusters.iter().enumerate() {
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for h in &c.hosts {
            let t = tier_of.get(h.name.as_str()).copied().unwrap_or("?");
            *count.entry(t).or_default() += 1;
            *tier_clusters.entry(t).or_default().entry(ci).or_default() += 1;
        }
        pure += count.values().max().copied().unwrap_or(0);
        total += c.hosts.len();
    }
    let inverse: usize = tier_clusters
        .values()
        .map(|m| m.values().max().copied().unwrap_or(0))
        .sum();
    let mean_conf =
        r.clusters.iter().map(|c| c.confidence).sum::<f64>() / r.clusters.len().max(1) as f64;
    println!(
        "clusters: {} for {} known tiers; purity {:.4}, inverse purity {:.4}; mean cluster confidence {mean_conf:.3}",
        r.clusters.len(),
        tier_clusters.len(),
        pure as f64 / total.max(1) as f64,
        inverse as f64 / total.max(1) as f64
    );
    let broad = r.rules.iter().filter(|x| x.broad).count();
    println!(
        "draft: {} groups ({} external), {} rules ({broad} flagged broad), {} bytes of YAML",
        r.clusters.len() + r.external_groups.len(),
        r.external_groups.len(),
        r.rules.len(),
        l.yaml.len()
    );
    // Judge held-out benign and injected violating conversations with the draft.
    let (_, compiled) = policy::load(&l.yaml).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (hosts, ip_hosts) = policy::state::host_context(&*store)?;
    let mut ev = Evaluator::new(Arc::new(Context {
        policy: Arc::new(compiled),
        version: 1,
        hosts,
        ip_hosts,
    }));
    let mut judge = |c: &Conv, i: u64| {
        records(&d, c, T0 + DAY + i, 40000 + (i % 20000) as u16)
            .iter()
            .map(|(h, r)| {
                let v = FlowView {
                    host: &d.hosts[*h].agent,
                    proto: match r.proto {
                        Proto::Tcp => 6,
                        Proto::Udp => 17,
                        _ => 0,
                    },
                    outbound: r.direction == Direction::Outbound,
                    local_ip: r.local.ip(),
                    local_port: r.local.port(),
                    remote_ip: r.remote.ip(),
                    remote_port: r.remote.port(),
                    exe: r.process.as_ref().and_then(|p| p.exe.as_deref()),
                };
                ev.evaluate(&v).action == Action::Deny
            })
            .collect::<Vec<bool>>()
    };
    let mut rng = Rng(0xfeed_beef_0bad_cafe);
    let (mut recs, mut fp) = (0u64, 0u64);
    for i in 0..a.held_out {
        let c = benign(&d, &mut rng);
        for denied in judge(&c, i) {
            recs += 1;
            fp += u64::from(denied);
        }
    }
    println!(
        "held-out benign: {recs} records, {fp} escaped: false-positive rate {:.5}%",
        100.0 * fp as f64 / recs.max(1) as f64
    );
    let mut caught = [0u64; 5];
    let per_kind = 2000u64;
    for i in 0..5 * per_kind {
        let c = violation(&d, &mut rng, i as usize);
        if judge(&c, i).iter().any(|x| *x) {
            caught[(i % 5) as usize] += 1;
        }
    }
    let names = [
        "web→db tcp/5432",
        "db→web tcp/22",
        "app→web tcp/8080",
        "web→other app tcp/8081",
        "db→internet tcp/4444",
    ];
    let total_caught: u64 = caught.iter().sum();
    println!(
        "injected violations: {total_caught}/{} caught ({:.2}%)",
        5 * per_kind,
        100.0 * total_caught as f64 / (5 * per_kind) as f64
    );
    for (n, c) in names.iter().zip(caught) {
        println!("  {n}: {c}/{per_kind}");
    }
    Ok(())
}
