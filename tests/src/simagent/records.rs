//! Plausible flow records for the simulated agents: start/update/end events, six
//! programs with exe, command line, user and cgroup, 5 % unattributed, TCP and UDP, inbound
//! and outbound, each host talking to 64 peers on 8 service ports (so conversation edges
//! repeat, as in real traffic).
use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{SystemTime, UNIX_EPOCH},
};

use cordon_wire::{Direction, FlowEvent, FlowRecord, Process, Proto, Verdict};

/// A small xorshift generator: varied, reproducible records without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

pub const PROGRAMS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "curl",
        "/usr/bin/curl",
        "curl -fsS https://updates.internal.invalid/v1/check",
        "root",
        "/system.slice/update-check.service",
    ),
    (
        "nginx",
        "/usr/sbin/nginx",
        "nginx: worker process",
        "www-data",
        "/system.slice/nginx.service",
    ),
    (
        "postgres",
        "/usr/lib/postgresql/16/bin/postgres",
        "postgres: app appdb 10.0.3.7(51234) idle",
        "postgres",
        "/system.slice/postgresql@16-main.service",
    ),
    (
        "python3",
        "/usr/bin/python3.11",
        "/usr/bin/python3 /opt/app/worker.py --queue default",
        "app",
        "/system.slice/app-worker.service",
    ),
    (
        "sshd",
        "/usr/sbin/sshd",
        "sshd: admin [priv]",
        "root",
        "/system.slice/ssh.service",
    ),
    (
        "systemd-resolve",
        "/usr/lib/systemd/systemd-resolved",
        "/lib/systemd/systemd-resolved",
        "systemd-resolve",
        "/system.slice/systemd-resolved.service",
    ),
];
pub const SERVICE_PORTS: &[u16] = &[443, 80, 53, 5432, 6379, 8080, 22, 9092];

/// One plausible flow record for agent `agent`.
pub fn record(rng: &mut Rng, agent: usize, now_ns: u64) -> FlowRecord {
    let event = match rng.below(10) {
        0..=3 => FlowEvent::Start,
        4..=6 => FlowEvent::Update,
        _ => FlowEvent::End,
    };
    let direction = if rng.below(4) == 0 {
        Direction::Inbound
    } else {
        Direction::Outbound
    };
    let proto = if rng.below(8) == 0 {
        Proto::Udp
    } else {
        Proto::Tcp
    };
    let local_ip = Ipv4Addr::new(10, 1, (agent / 250) as u8, (agent % 250 + 1) as u8);
    // A host talks to a few dozen peers: conversations repeat, as in real traffic.
    let remote_ip = Ipv4Addr::new(10, 2, rng.below(4) as u8, rng.below(16) as u8 + 1);
    let service = SERVICE_PORTS[rng.below(SERVICE_PORTS.len() as u64) as usize];
    let ephemeral = 32768 + rng.below(28000) as u16;
    let (local, remote) = match direction {
        Direction::Outbound => (
            SocketAddr::from((local_ip, ephemeral)),
            SocketAddr::from((remote_ip, service)),
        ),
        Direction::Inbound => (
            SocketAddr::from((local_ip, service)),
            SocketAddr::from((remote_ip, ephemeral)),
        ),
    };
    let (comm, exe, cmdline, user, cgroup) = PROGRAMS[rng.below(PROGRAMS.len() as u64) as usize];
    let attributed = rng.below(20) != 0;
    let packets = 1 + rng.below(200);
    let age = rng.below(30_000_000_000);
    FlowRecord {
        event,
        first_seen_ns: now_ns.saturating_sub(age),
        last_seen_ns: now_ns,
        proto,
        direction,
        local,
        remote,
        bytes_out: packets * (60 + rng.below(1400)),
        bytes_in: packets * (60 + rng.below(1400)),
        packets_out: packets,
        packets_in: packets.saturating_sub(1),
        tcp_flags: if proto == Proto::Tcp {
            (0x1b, 0x1b)
        } else {
            (0, 0)
        },
        closed: event == FlowEvent::End,
        verdict: Verdict::Forwarded,
        process: attributed.then(|| Process {
            pid: 1000 + rng.below(30000) as u32,
            ppid: Some(1),
            uid: 1000,
            user: Some(user.into()),
            comm: comm.into(),
            exe: Some(exe.into()),
            cmdline: Some(cmdline.into()),
            cgroup: Some(cgroup.into()),
        }),
        unattributed_reason: (!attributed).then(|| "no owner: socket predates capture".into()),
    }
}

pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
