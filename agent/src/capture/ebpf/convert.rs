//! Kernel ABI types to the agent's own.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cordon_abi::{AF_INET, COMM_LEN, ExecEvent, FlowCounters, FlowKey, ProcIdentity, c_str};

use crate::{
    process::{ExecInfo, KernelIdentity},
    record::{FlowId, Proto, Totals},
};

fn ip(family: u8, raw: &[u8; 16]) -> IpAddr {
    if family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    } else {
        let v6 = Ipv6Addr::from(*raw);
        v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
    }
}

pub fn flow_id(k: &FlowKey) -> FlowId {
    FlowId {
        proto: Proto::from_number(k.proto),
        local_ip: ip(k.family, &k.local_addr),
        local_port: k.local_port,
        remote_ip: ip(k.family, &k.remote_addr),
        remote_port: k.remote_port,
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(c_str(bytes)).into_owned()
}

pub fn identity(id: &ProcIdentity) -> KernelIdentity {
    KernelIdentity {
        tgid: id.tgid,
        uid: id.uid,
        comm: text(&id.comm[..COMM_LEN]),
        cgroup_id: id.cgroup_id,
        ktime_ns: id.ktime_ns,
    }
}

pub fn exec_info(ev: &ExecEvent) -> ExecInfo {
    let argc = (ev.args.argc as usize).min(ev.args.args.len());
    ExecInfo {
        tgid: ev.tgid,
        ppid: ev.ppid,
        uid: ev.uid,
        comm: text(&ev.comm),
        cgroup_id: ev.cgroup_id,
        filename: text(&ev.filename),
        args: ev.args.args[..argc].iter().map(|a| text(a)).collect(),
        args_truncated: ev.args.truncated != 0,
        ktime_ns: ev.ktime_ns,
    }
}

/// A flow's counters summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summed {
    pub totals: Totals,
    pub first_ns: u64,
    pub last_ns: u64,
    pub cookie: u64,
    pub origin: u32,
    /// (out, in)
    pub tcp_flags: (u8, u8),
}

pub fn sum<'a>(per_cpu: impl IntoIterator<Item = &'a FlowCounters>) -> Summed {
    let mut s = Summed::default();
    let mut flags = 0u32;
    for c in per_cpu {
        s.totals.bytes_out += c.bytes_out;
        s.totals.bytes_in += c.bytes_in;
        s.totals.packets_out += c.packets_out;
        s.totals.packets_in += c.packets_in;
        if c.first_ns != 0 && (s.first_ns == 0 || c.first_ns < s.first_ns) {
            s.first_ns = c.first_ns;
        }
        s.last_ns = s.last_ns.max(c.last_ns);
        if c.cookie != 0 {
            s.cookie = c.cookie;
        }
        if c.origin != 0 {
            s.origin = c.origin;
        }
        flags |= c.tcp_flags;
    }
    s.tcp_flags = (flags as u8, (flags >> 8) as u8);
    s
}

/// Back from the agent's id to the kernel key (to delete ended flows).
pub fn flow_key(id: &FlowId) -> FlowKey {
    // Keys come from packet headers, so an IPv4 flow always has an IPv4 key.
    let family_v6 = id.local_ip.is_ipv6();
    let mut k = FlowKey {
        local_port: id.local_port,
        remote_port: id.remote_port,
        family: if family_v6 {
            cordon_abi::AF_INET6
        } else {
            AF_INET
        },
        proto: id.proto.number(),
        ..FlowKey::zeroed()
    };
    let put = |dst: &mut [u8; 16], ip: IpAddr| match (ip, family_v6) {
        (IpAddr::V4(v4), false) => dst[..4].copy_from_slice(&v4.octets()),
        (IpAddr::V4(v4), true) => *dst = v4.to_ipv6_mapped().octets(),
        (IpAddr::V6(v6), _) => *dst = v6.octets(),
    };
    put(&mut k.local_addr, id.local_ip);
    put(&mut k.remote_addr, id.remote_ip);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trips_through_flow_id() {
        let mut k = FlowKey {
            local_addr: [0; 16],
            remote_addr: [0; 16],
            local_port: 40000,
            remote_port: 80,
            family: AF_INET,
            proto: 6,
            _pad: [0; 2],
        };
        k.local_addr[..4].copy_from_slice(&[10, 0, 0, 1]);
        k.remote_addr[..4].copy_from_slice(&[10, 0, 0, 2]);
        let id = flow_id(&k);
        assert_eq!(id.local_ip.to_string(), "10.0.0.1");
        assert_eq!(id.proto, Proto::Tcp);
        assert_eq!(flow_key(&id), k);

        let mut k6 = k;
        k6.family = cordon_abi::AF_INET6;
        k6.local_addr = Ipv6Addr::LOCALHOST.octets();
        k6.remote_addr = "fd00::2".parse::<Ipv6Addr>().expect("v6").octets();
        assert_eq!(flow_key(&flow_id(&k6)), k6);
    }

    #[test]
    fn sums_cpus() {
        let a = FlowCounters {
            bytes_out: 100,
            packets_out: 1,
            first_ns: 50,
            last_ns: 60,
            cookie: 7,
            tcp_flags: 0x02,
            origin: 1,
            ..Default::default()
        };
        let b = FlowCounters {
            bytes_in: 40,
            packets_in: 1,
            first_ns: 55,
            last_ns: 90,
            tcp_flags: 0x12 << 8,
            ..Default::default()
        };
        let s = sum([&a, &b, &FlowCounters::default()]);
        assert_eq!(s.totals.bytes_out, 100);
        assert_eq!(s.totals.bytes_in, 40);
        assert_eq!((s.first_ns, s.last_ns), (50, 90));
        assert_eq!((s.cookie, s.origin), (7, 1));
        assert_eq!(s.tcp_flags, (0x02, 0x12));
    }
}
