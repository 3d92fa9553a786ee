//! Exceptions as the programs' allow entries, and refused counters back as [`Refused`].
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use cordon_abi::{AF_INET, AF_INET6, AllowEntry, FlowKey, RefusedCounters};
use ipnet::IpNet;

use crate::model::{Exceptions, Proto};
use crate::refused::Refused;

fn words(b: &[u8]) -> [u32; 4] {
    let mut w = [0u32; 4];
    for (i, c) in b.chunks(4).take(4).enumerate() {
        w[i] = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
    }
    w
}

fn entry(net: IpNet, proto: u8, port: u16) -> AllowEntry {
    let (family, addr, mask) = match net.trunc() {
        IpNet::V4(n) => (
            AF_INET,
            words(&n.network().octets()),
            words(&n.netmask().octets()),
        ),
        IpNet::V6(n) => (
            AF_INET6,
            words(&n.network().octets()),
            words(&n.netmask().octets()),
        ),
    };
    AllowEntry {
        addr,
        mask,
        family,
        proto,
        port,
        _pad: 0,
    }
}

/// The allow entries for `exc`: management (UDP to/from the collector's port), the
/// allow-list, loopback and this host's own addresses. IPv4 entries are also given as
/// IPv4-mapped IPv6, for dual-stack sockets.
pub fn allow_entries(exc: &Exceptions, local: &[IpAddr]) -> Vec<AllowEntry> {
    let mut out = Vec::new();
    let mut push = |net: IpNet, proto: u8, port: u16| {
        out.push(entry(net, proto, port));
        if let IpNet::V4(n) = net {
            let mapped = n.network().to_ipv6_mapped();
            let len = 96 + n.prefix_len();
            if let Ok(m) = ipnet::Ipv6Net::new(mapped, len) {
                out.push(entry(IpNet::V6(m), proto, port));
            }
        }
    };
    for m in &exc.management {
        push(IpNet::from(m.ip().to_canonical()), 17, m.port());
    }
    for r in &exc.allow {
        match r.proto {
            None => push(r.net, 0, 0),
            Some(Proto::Tcp) => push(r.net, 6, r.port.unwrap_or(0)),
            Some(Proto::Udp) => push(r.net, 17, r.port.unwrap_or(0)),
            Some(Proto::Icmp) => {
                let icmp = if matches!(r.net, IpNet::V4(_)) { 1 } else { 58 };
                // The mapped form of an IPv4 rule stays ICMPv4 (dual-stack ping is v4).
                push(r.net, icmp, 0);
            }
        }
    }
    push(
        IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::LOCALHOST, 8).unwrap_or_default()),
        0,
        0,
    );
    push(IpNet::from(IpAddr::V6(Ipv6Addr::LOCALHOST)), 0, 0);
    for a in local {
        push(IpNet::from(*a), 0, 0);
    }
    out.dedup();
    out
}

fn addr(family: u8, b: &[u8; 16]) -> IpAddr {
    if family == AF_INET {
        IpAddr::from([b[0], b[1], b[2], b[3]])
    } else {
        IpAddr::from(*b)
    }
}

/// A refused map entry as a [`Refused`].
pub fn refused(k: &FlowKey, v: &RefusedCounters) -> Refused {
    let comm_len = v.comm.iter().position(|&c| c == 0).unwrap_or(v.comm.len());
    let comm = String::from_utf8_lossy(&v.comm[..comm_len]).into_owned();
    Refused {
        proto: k.proto,
        local: SocketAddr::new(addr(k.family, &k.local_addr), k.local_port),
        remote: SocketAddr::new(addr(k.family, &k.remote_addr), k.remote_port),
        outbound: v.outbound != 0,
        packets: v.packets,
        bytes: v.bytes,
        attempts: v.attempts,
        pid: (v.pid != 0).then_some(v.pid),
        comm: (!comm.is_empty()).then_some(comm),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn entries_cover_management_allow_list_loopback_and_own_addresses() {
        let exc = Exceptions {
            management: vec!["10.0.0.1:4433".parse().unwrap()],
            allow: vec![
                "10.0.0.9:22/tcp".parse().unwrap(),
                "192.0.2.0/24".parse().unwrap(),
            ],
        };
        let e = allow_entries(&exc, &["10.0.0.5".parse().unwrap()]);
        // 5 IPv4 entries, each also IPv4-mapped, plus ::1.
        assert_eq!(e.len(), 11);
        let m = &e[0];
        assert_eq!((m.family, m.proto, m.port), (AF_INET, 17, 4433));
        assert_eq!(m.addr[0], u32::from_ne_bytes([10, 0, 0, 1]));
        assert_eq!(m.mask[0], u32::MAX);
        let mapped = &e[1];
        assert_eq!(mapped.family, AF_INET6);
        assert_eq!(mapped.addr[3], u32::from_ne_bytes([10, 0, 0, 1]));
        assert_eq!(mapped.addr[2], u32::from_ne_bytes([0, 0, 0xff, 0xff]));
        let net = &e[4];
        assert_eq!((net.proto, net.port), (0, 0));
        assert_eq!(net.mask[0], u32::from_ne_bytes([255, 255, 255, 0]));
    }

    #[test]
    fn refused_entries_read_back() {
        let mut k = FlowKey::zeroed();
        k.family = AF_INET;
        k.proto = 6;
        k.remote_addr[..4].copy_from_slice(&[10, 0, 0, 2]);
        k.remote_port = 80;
        let mut v = RefusedCounters {
            attempts: 2,
            pid: 42,
            outbound: 1,
            ..Default::default()
        };
        v.comm[..4].copy_from_slice(b"curl");
        let r = refused(&k, &v);
        assert_eq!(r.remote, "10.0.0.2:80".parse().unwrap());
        assert_eq!(r.local, "0.0.0.0:0".parse().unwrap());
        assert_eq!(
            (r.attempts, r.pid, r.comm.as_deref()),
            (2, Some(42), Some("curl"))
        );
        assert!(r.outbound);
    }
}
