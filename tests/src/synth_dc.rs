//! A synthetic data center of tiered applications (web → app → db per application, plus
//! monitoring, DNS, bastion and batch hosts) and its flows written into a collector store
//! through the store API: the learning benchmark's training data, and the console
//! benchmark's 10M stored flows.
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Instant,
};

use cordon_collector::store::{Compliance, Store};
use cordon_wire::{
    Direction, FlowBatch, FlowEvent, FlowRecord, Interface, Inventory, Message, Process, Proto,
    Verdict,
};

/// xorshift: the same flows on every run.
pub struct Rng(pub u64);
impl Rng {
    pub fn draw(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.draw() % n.max(1) as u64) as usize
    }
}

pub const T0: u64 = 1_767_225_600_000_000_000; // 2026-01-01
pub const DAY: u64 = 86_400_000_000_000;

pub struct Host {
    pub name: String,
    pub agent: String,
    pub ip: IpAddr,
    pub tier: String,
}

/// The data center: hosts and, per role, who they are.
pub struct Dc {
    pub hosts: Vec<Host>,
    /// Per application: web, app, db host indices.
    pub apps: Vec<[Vec<usize>; 3]>,
    pub mon: Vec<usize>,
    pub dns: Vec<usize>,
    pub bastion: Vec<usize>,
    pub batch: Vec<usize>,
}

pub fn dc(n: usize) -> Dc {
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
pub enum End {
    Host(usize),
    Ext(IpAddr),
}

pub struct Conv {
    pub client: End,
    pub server: End,
    pub proto: Proto,
    pub port: u16,
    pub exe: &'static str,
}

pub fn pick(rng: &mut Rng, v: &[usize]) -> usize {
    v[rng.below(v.len())]
}

/// A benign conversation, by the data center's normal patterns.
pub fn benign(d: &Dc, rng: &mut Rng) -> Conv {
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
pub fn violation(d: &Dc, rng: &mut Rng, kind: usize) -> Conv {
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
pub fn records(d: &Dc, c: &Conv, t: u64, eph: u16) -> Vec<(usize, FlowRecord)> {
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

pub fn generate(d: &Dc, store: &mut Store, flows: u64) -> anyhow::Result<u64> {
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
