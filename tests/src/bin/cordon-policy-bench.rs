//! Policy evaluation rate: a synthetic 1,000-rule policy over 1,000 labelled hosts,
//! evaluated on one thread for flows between those hosts (and some outside addresses),
//! as the ingest writer does. Prints evaluations per second and the verdict mix.
//!
//!   cordon-policy-bench [--rules 1000] [--hosts 1000] [--evaluations 5000000]
use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write,
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::Instant,
};

use clap::Parser;
use cordon_collector::policy::{self, Action, Context, Evaluator, FlowView, HostFacts};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    rules: usize,
    #[arg(long, default_value_t = 1000)]
    hosts: usize,
    /// Groups (tiers) the hosts are spread over by label.
    #[arg(long, default_value_t = 100)]
    groups: usize,
    #[arg(long, default_value_t = 5_000_000)]
    evaluations: usize,
}

/// A small deterministic generator (xorshift), so every run sees the same flows.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn host_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250 + 1) as u8))
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Groups: tier-N by label, plus a few CIDR and process groups.
    let mut yaml = String::from("name: bench\ngroups:\n");
    for g in 0..a.groups {
        writeln!(yaml, "  tier-{g}:\n    label: {{tier: t{g}}}")?;
    }
    yaml.push_str("  outside:\n    cidr: [192.168.0.0/16]\n  admin-tools:\n    process: [\"/usr/bin/ssh\", \"/usr/bin/scp\"]\n");
    yaml.push_str("rules:\n");
    let mut ports = Vec::new();
    for r in 0..a.rules {
        let (c, p) = (rng.below(a.groups), rng.below(a.groups));
        let port = 1000 + rng.below(2000) as u16;
        ports.push((c, p, port));
        let rank = if r % 20 == 0 { "absolute" } else { "default" };
        let action = if r % 10 == 0 { "deny" } else { "allow" };
        writeln!(
            yaml,
            "  - name: r{r}\n    consumer: tier-{c}\n    provider: tier-{p}\n    ports: [tcp/{port}]\n    action: {action}\n    rank: {rank}"
        )?;
    }
    yaml.push_str("  - name: ssh-tools\n    consumer: any\n    provider: any\n    ports: [tcp/22]\n    process: \"/usr/bin/ssh\"\n    action: allow\n");
    yaml.push_str("  - name: high-range\n    consumer: any\n    provider: outside\n    ports: [tcp/8000-9000]\n    action: allow\n");
    yaml.push_str("catch_all:\n  - action: deny\n");
    let t = Instant::now();
    let (_, compiled) = policy::load(&yaml).map_err(|e| anyhow::anyhow!("{e}"))?;
    let compile_time = t.elapsed();
    let mut hosts = HashMap::new();
    let mut ip_hosts = HashMap::new();
    let mut tier = Vec::new();
    for h in 0..a.hosts {
        let g = h % a.groups;
        tier.push(g);
        let id = format!("host-{h}");
        hosts.insert(
            id.clone(),
            HostFacts {
                name: id.clone(),
                labels: BTreeMap::from([("tier".to_string(), format!("t{g}"))]),
            },
        );
        ip_hosts.insert(host_ip(h), id);
    }
    let ctx = Arc::new(Context {
        policy: Arc::new(compiled),
        version: 1,
        hosts,
        ip_hosts,
    });
    // Flows: 70 % on a rule's port between random hosts, 20 % random ports, 10 % to
    // outside addresses; a handful of executables.
    let exes = [
        "/usr/bin/curl",
        "/usr/bin/ssh",
        "/usr/sbin/nginx",
        "/usr/bin/python3",
    ];
    let ids: Vec<String> = (0..a.hosts).map(|h| format!("host-{h}")).collect();
    let n_flows = 100_000;
    let mut flows = Vec::with_capacity(n_flows);
    for _ in 0..n_flows {
        let (h, peer) = (rng.below(a.hosts), rng.below(a.hosts));
        let kind = rng.below(10);
        let (remote, port) = match kind {
            0..=6 => (host_ip(peer), ports[rng.below(ports.len())].2),
            7 | 8 => (host_ip(peer), rng.below(65535) as u16),
            _ => (
                IpAddr::V4(Ipv4Addr::new(192, 168, rng.below(255) as u8, 1)),
                8000 + rng.below(2000) as u16,
            ),
        };
        flows.push((
            h,
            rng.below(2) == 0,
            remote,
            port,
            exes[rng.below(exes.len())],
        ));
    }
    let mut ev = Evaluator::new(ctx.clone());
    let judge = |ev: &mut Evaluator, f: &(usize, bool, IpAddr, u16, &str)| {
        let (h, outbound, remote, port, exe) = *f;
        ev.evaluate(&FlowView {
            host: &ids[h],
            proto: 6,
            outbound,
            local_ip: host_ip(h),
            local_port: if outbound { 40000 } else { port },
            remote_ip: remote,
            remote_port: if outbound { port } else { 40000 },
            exe: Some(exe),
        })
    };
    // Warm-up (fills the caches), then the measured run.
    for f in &flows {
        judge(&mut ev, f);
    }
    let mut allowed = 0usize;
    let t = Instant::now();
    for i in 0..a.evaluations {
        if judge(&mut ev, &flows[i % n_flows]).action == Action::Allow {
            allowed += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "policy: {} rules, {} groups, {} hosts; compiled in {:.1} ms",
        ctx.policy.rules.len(),
        ctx.policy.groups.len(),
        a.hosts,
        compile_time.as_secs_f64() * 1e3
    );
    println!(
        "evaluations: {} in {:.3} s on one thread = {:.0} evaluations/s ({:.0} ns each); {:.1} % allowed",
        a.evaluations,
        secs,
        a.evaluations as f64 / secs,
        secs * 1e9 / a.evaluations as f64,
        100.0 * allowed as f64 / a.evaluations as f64
    );
    Ok(())
}
