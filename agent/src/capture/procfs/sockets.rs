//! The kernel's socket tables: /proc/net/{tcp,tcp6,udp,udp6}.
use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use crate::record::Proto;

/// TCP states as /proc/net/tcp numbers them.
pub const TCP_ESTABLISHED: u8 = 0x01;
pub const TCP_TIME_WAIT: u8 = 0x06;
pub const TCP_CLOSE: u8 = 0x07;
pub const TCP_LISTEN: u8 = 0x0A;

/// One row of a socket table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketEntry {
    pub proto: Proto,
    pub local_ip: IpAddr,
    pub local_port: u16,
    pub remote_ip: IpAddr,
    pub remote_port: u16,
    pub state: u8,
    pub uid: u32,
    /// 0 for sockets without an inode (TIME_WAIT).
    pub inode: u64,
}

const TABLES: [(&str, Proto); 4] = [
    ("tcp", Proto::Tcp),
    ("tcp6", Proto::Tcp),
    ("udp", Proto::Udp),
    ("udp6", Proto::Udp),
];

/// Every row of every table under `net_dir` (normally /proc/net); missing tables (no IPv6)
/// are skipped.
pub fn read_all(net_dir: &Path) -> Vec<SocketEntry> {
    let mut out = Vec::new();
    for (file, proto) in TABLES {
        if let Ok(text) = std::fs::read_to_string(net_dir.join(file)) {
            out.extend(text.lines().skip(1).filter_map(|l| parse_line(l, proto)));
        }
    }
    out
}

/// Ports with a listening TCP socket or a bound, unconnected UDP socket.
pub fn listening(entries: &[SocketEntry]) -> HashSet<(Proto, u16)> {
    entries
        .iter()
        .filter(|e| match e.proto {
            Proto::Tcp => e.state == TCP_LISTEN,
            _ => e.state == TCP_CLOSE && e.remote_port == 0,
        })
        .map(|e| (e.proto, e.local_port))
        .collect()
}

/// Parses "  0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0  0 1234 ...".
pub fn parse_line(line: &str, proto: Proto) -> Option<SocketEntry> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 10 {
        return None;
    }
    let (local_ip, local_port) = parse_endpoint(f[1])?;
    let (remote_ip, remote_port) = parse_endpoint(f[2])?;
    Some(SocketEntry {
        proto,
        local_ip,
        local_port,
        remote_ip,
        remote_port,
        state: u8::from_str_radix(f[3], 16).ok()?,
        uid: f[7].parse().ok()?,
        inode: f[9].parse().ok()?,
    })
}

/// "0100007F:1F90": the address is printed as 32-bit words in host byte order.
fn parse_endpoint(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            let v6 = Ipv6Addr::from(b);
            // Dual-stack sockets show IPv4 peers as ::ffff:a.b.c.d; report them as IPv4.
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some((ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ipv4_rows() {
        let l = "   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 424242 1 0000000000000000 20 4 30 10 -1";
        let e = parse_line(l, Proto::Tcp).expect("row");
        assert_eq!(e.local_ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(e.local_port, 8080);
        assert_eq!(e.remote_port, 0xD431);
        assert_eq!(e.state, TCP_ESTABLISHED);
        assert_eq!(e.uid, 1000);
        assert_eq!(e.inode, 424242);
    }

    #[test]
    fn parses_ipv6_and_mapped_rows() {
        let l = "   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1";
        let e = parse_line(l, Proto::Tcp).expect("row");
        assert_eq!(e.local_ip, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(e.state, TCP_LISTEN);
        let mapped = "   0: 0000000000000000FFFF00000100007F:0016 0000000000000000FFFF00000100007F:A000 01 00000000:00000000 00:00000000 00000000     0        0 7 1";
        let e = parse_line(mapped, Proto::Tcp).expect("row");
        assert_eq!(e.local_ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        let set = listening(&[parse_line(l, Proto::Tcp).expect("row")]);
        assert!(set.contains(&(Proto::Tcp, 22)));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_line("sl local rem", Proto::Tcp), None);
        assert_eq!(parse_line("0: zz:1 00:0 01 a b c 0 0 1", Proto::Tcp), None);
    }
}
