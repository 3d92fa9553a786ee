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
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Instant,
};

use clap::Parser;
use cordon_collector::{
    learn::{self, ClusterParams, GroupMode, LearnParams},
    policy::{self, Action, Context, Evaluator, FlowView},
    store::{Compliance, Store},
};
use cordon_wire::{
    Direction, FlowBatch, FlowEvent, FlowRecord, Interface, Inventory, Message, Process, Proto,
    Verdict,
};

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

/// xorshift: the same flows on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const T0: u64 = 1_767_225_600_000_000_000; // 2026-01-01
const DAY: u64 = 86_400_000_000_000;

struct Host {
    name: String,
    agent: String,
    ip: IpAddr,
    tier: String,
}

/// The data center: hosts and, per role, who they are.
struct Dc {
    hosts: Vec<Host>,
    /// Per application: web, app, db host indices.
    apps: Vec<[Vec<usize>; 3]>,
    mon: Vec<usize>,
    dns: Vec<usize>,
    bastion: Vec<usize>,
    batch: Vec<usize>,
}

fn dc(n: usize) -> Dc {
    let mut hosts = Vec::new();
    let mut add = |name: String, tier: String| {
        let i = hosts.len();
        hosts.push(Host {
            agent: format!("{name}.agent"),
            name,
            ip: IpAddr::V4(Ipv4Addr::new(10, (i / 250) as u8, (i % 250) as u8, 10)),
            tier,
        });
        i
    };
    let infra = 40 + 8 + 16;
    let apps_n = (n.saturating_sub(infra + 72) / 18).max(1);
    let mut apps = Vec::new();
    for a in 0..apps_n {
        let mut roles: [Vec<usize>; 3] = Default::default();
        for (r, (role, count)) in [("web", 8), ("app", 6), ("db", 4)].into_iter().enumerate() {
            for k in 0..count {
                roles[r].push(add(
                    format!("shop{a}-{role}-{k}"),
                    format!("shop{a}-{role}"),
                ));
            }
        }
        apps.push(roles);
    }
    let mut many = |prefix: &str, count: usize| {
        (0..count)
            .map(|k| add(format!("{prefix}-{k}"), prefix.to_string()))
            .collect::<Vec<_>>()
    };
    let mon = many("mon", 40);
    let dns = many("dns", 8);
    let bastion = many("bastion", 16);
    let rest = n.saturating_sub(apps_n * 18 + infra);
    let batch = many("batch", rest);
    Dc {
        hosts,
        apps,
        mon,
        dns,
        bastion,
        batch,
    }
}

/// One conversation: client, server (host index or external address), port, exe.
#[derive(Clone, Copy)]
enum End {
    Host(usize),
    Ext(IpAddr),
}

struct Conv {
    client: End,
    server: End,
    proto: Proto,
    port: u16,
    exe: &'static str,
}

fn pick(rng: &mut Rng, v: &[usize]) -> usize {
    v[rng.below(v.len())]
}

/// A benign conversation, by the data center's normal patterns.
fn benign(d: &Dc, rng: &mut Rng) -> Conv {
    let roll = rng.below(100);
    let a = &d.apps[rng.below(d.apps.len())];
    let h = |i| End::Host(i);
    let tcp = |client, server, port, exe| Conv {
        client,
        server,
        proto: Proto::Tcp,
        port,
        exe,
    };
    match roll {
        0..25 => {
            let w = pick(rng, &a[0]);
            let app = d.apps.iter().position(|x| x[0].contains(&w)).unwrap_or(0);
            let client = IpAddr::V4(Ipv4Addr::new(198, 18, app as u8, 1 + rng.below(200) as u8));
            tcp(End::Ext(client), h(w), 443, "")
        }
        25..50 => tcp(
            h(pick(rng, &a[0])),
            h(pick(rng, &a[1])),
            8080,
            "/usr/sbin/nginx",
        ),
        50..70 => tcp(
            h(pick(rng, &a[1])),
            h(pick(rng, &a[2])),
            5432,
            "/opt/shop/bin/server",
        ),
        70..80 => tcp(
            h(pick(rng, &d.mon)),
            h(rng.below(d.hosts.len())),
            9100,
            "/usr/bin/prometheus",
        ),
        80..90 => Conv {
            client: h(rng.below(d.hosts.len())),
            server: h(pick(rng, &d.dns)),
            proto: Proto::Udp,
            port: 53,
            exe: "/usr/lib/systemd/systemd-resolved",
        },
        90..95 => tcp(
            h(pick(rng, &d.batch)),
            h(pick(rng, &a[2])),
            5432,
            "/usr/bin/batch",
        ),
        95..99 => tcp(
            h(rng.below(d.hosts.len())),
            End::Ext(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))),
            443,
            "/usr/bin/apt",
        ),
        _ => tcp(
            h(pick(rng, &d.bastion)),
            h(rng.below(d.hosts.len())),
            22,
            "/usr/bin/ssh",
        ),
    }
}

/// A violation: lateral movement and exfiltration the normal patterns never show.
fn violation(d: &Dc, rng: &mut Rng, kind: usize) -> Conv {
    let ai = rng.below(d.apps.len());
    let a = &d.apps[ai];
    // Another application than `a` (itself when there is only one).
    let other = &d.apps[(ai + 1 + rng.below(d.apps.len().max(2) - 1)) % d.apps.len()];
    let h = |i| End::Host(i);
    let tcp = |client, server, port, exe| Conv {
        client,
        server,
        proto: Proto::Tcp,
        port,
        exe,
    };
    match kind % 5 {
        0 => tcp(
            h(pick(rng, &a[0])),
            h(pick(rng, &a[2])),
            5432,
            "/usr/bin/psql",
        ),
        1 => tcp(h(pick(rng, &a[2])), h(pick(rng, &a[0])), 22, "/usr/bin/ssh"),
        2 => tcp(
            h(pick(rng, &a[1])),
            h(pick(rng, &a[0])),
            8080,
            "/usr/bin/curl",
        ),
        3 => tcp(
            h(pick(rng, &a[0])),
            h(pick(rng, &other[1])),
            8081,
            "/usr/sbin/nginx",
        ),
        _ => tcp(
            h(pick(rng, &a[2])),
            End::Ext(IpAddr::V4(Ipv4Addr::new(203, 0, 113, rng.below(250) as u8))),
            4444,
            "/tmp/x",
        ),
    }
}

/// The records of a conversation: one per enrolled end, (host index, record).
fn records(d: &Dc, c: &Conv, t: u64, eph: u16) -> Vec<(usize, FlowRecord)> {
    let ip = |e: End| match e {
        End::Host(i) => d.hosts[i].ip,
        End::Ext(a) => a,
    };
    let (cip, sip) = (ip(c.client), ip(c.server));
    let rec = |out: bool, local: SocketAddr, remote: SocketAddr, exe: &str| FlowRecord {
        event: FlowEvent::Start,
        first_seen_ns: t,
        last_seen_ns: t + 2_000_000,
        proto: c.proto,
        direction: if out {
            Direction::Outbound
        } else {
            Direction::Inbound
        },
        local,
        remote,
        bytes_out: 500,
        bytes_in: 1500,
        packets_out: 4,
        packets_in: 4,
        tcp_flags: (0x1b, 0x1b),
        closed: true,
        verdict: Verdict::Forwarded,
        process: (!exe.is_empty()).then(|| Process {
            pid: 100,
            ppid: Some(1),
            uid: 0,
            user: None,
            comm: "p".into(),
            exe: Some(exe.into()),
            cmdline: None,
            cgroup: None,
        }),
        unattributed_reason: None,
    };
    let mut out = Vec::new();
    if let End::Host(i) = c.client {
        out.push((i, rec(true, (cip, eph).into(), (sip, c.port).into(), c.exe)));
    }
    if let End::Host(i) = c.server {
        out.push((
            i,
            rec(
                false,
                (sip, c.port).into(),
                (cip, eph).into(),
                "/usr/sbin/daemon",
            ),
        ));
    }
    out
}

fn generate(d: &Dc, store: &mut Store, flows: u64) -> anyhow::Result<u64> {
    let t0 = Instant::now();
    for h in &d.hosts {
        store.host_connected(&h.agent, &h.name, "bench", "ebpf", T0)?;
        let inv = Inventory {
            host_name: h.name.clone(),
            os: "linux".into(),
            kernel: "6.12".into(),
            cpus: 2,
            memory_bytes: 1 << 30,
            interfaces: vec![Interface {
                name: "eth0".into(),
                addresses: vec![h.ip],
            }],
            listening: vec![],
        };
        store.store_inventory(
            &h.agent,
            &cordon_wire::encode(&Message::Inventory(inv))?,
            T0,
        )?;
    }
    store.set_cache_kib(256 * 1024)?;
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut pending: BTreeMap<usize, Vec<FlowRecord>> = BTreeMap::new();
    let mut seq = vec![0u64; d.hosts.len()];
    let (mut n, mut in_batch, mut i) = (0u64, 0usize, 0u64);
    let mut flush = |pending: &mut BTreeMap<usize, Vec<FlowRecord>>, store: &mut Store| {
        let batches: Vec<(usize, FlowBatch)> = std::mem::take(pending)
            .into_iter()
            .map(|(h, records)| {
                seq[h] += 1;
                (
                    h,
                    FlowBatch {
                        seq: seq[h],
                        records,
                        dropped_before: 0,
                    },
                )
            })
            .collect();
        let refs: Vec<(&str, &FlowBatch)> = batches
            .iter()
            .map(|(h, b)| (d.hosts[*h].agent.as_str(), b))
            .collect();
        store
            .store_batches(&refs, &mut Compliance::none())
            .map(|_| ())
    };
    while n < flows {
        let c = benign(d, &mut rng);
        let t = T0 + (i * 7_919_000) % DAY;
        for (h, r) in records(d, &c, t, 32768 + (i % 28000) as u16) {
            pending.entry(h).or_default().push(r);
            n += 1;
            in_batch += 1;
        }
        i += 1;
        if in_batch >= 200_000 {
            flush(&mut pending, store)?;
            in_batch = 0;
            if n % 1_000_000 < 200_000 {
                eprintln!("  {n} records stored ({:.0} s)", t0.elapsed().as_secs_f64());
            }
        }
    }
    flush(&mut pending, store)?;
    Ok(n)
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
