//! Packet counting for the procfs capture: one AF_PACKET socket (cooked, SOCK_DGRAM) on
//! every interface, reading only the first 128 bytes of each packet for its headers.
//!
//! pnet's datalink channel cannot tell an outgoing packet from an incoming one, and on the
//! loopback interface every packet is seen twice (once each way); the packet type in
//! `sockaddr_ll` can, so this uses the socket directly: on loopback only outgoing copies
//! count, elsewhere everything does.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

/// (proto, src, sport, dst, dport)
pub type PacketKey = (u8, IpAddr, u16, IpAddr, u16);

#[derive(Clone, Copy, Debug, Default)]
pub struct Count {
    pub bytes: u64,
    pub packets: u64,
    pub last: Option<Instant>,
}

/// Most directions tracked at once; packets of new ones beyond it are dropped and counted.
const MAX_KEYS: usize = 262_144;

#[derive(Default)]
pub struct Shared {
    pub counts: Mutex<HashMap<PacketKey, Count>>,
    pub dropped_full: AtomicU64,
    pub packets_seen: AtomicU64,
    stop: AtomicBool,
}

pub struct PacketCounter {
    pub shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PacketCounter {
    /// Opens the socket and starts the reader thread. `interfaces` empty means all.
    pub fn start(interfaces: &[String]) -> std::io::Result<Self> {
        let allowed: Vec<i32> = interfaces
            .iter()
            .map(|name| {
                nix::net::if_::if_nametoindex(name.as_str())
                    .map(|i| i as i32)
                    .map_err(|e| std::io::Error::other(format!("interface {name}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let lo = nix::net::if_::if_nametoindex("lo")
            .map(|i| i as i32)
            .unwrap_or(1);
        let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
        // SAFETY: plain socket(2) call; the fd is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                proto,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor we own.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: setsockopt with a valid timeval of the right size.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as u32,
            );
        }
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("cordon-packets".into())
            .spawn(move || read_loop(fd, s, allowed, lo))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Totals for one direction.
    pub fn get(&self, key: &PacketKey) -> Count {
        self.shared
            .counts
            .lock()
            .map(|m| m.get(key).copied().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Drops directions not seen since `before`.
    pub fn prune(&self, before: Instant) {
        if let Ok(mut m) = self.shared.counts.lock() {
            m.retain(|_, c| c.last.is_some_and(|t| t >= before));
        }
    }
}

impl Drop for PacketCounter {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_loop(fd: std::os::fd::OwnedFd, shared: Arc<Shared>, allowed: Vec<i32>, lo: i32) {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 128];
    while !shared.stop.load(Ordering::Relaxed) {
        // SAFETY: zeroed sockaddr_ll is a valid value for recvfrom to fill.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut alen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: buffer and address are valid for the sizes passed.
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
                (&raw mut addr).cast(),
                &mut alen,
            )
        };
        if n <= 0 {
            continue;
        }
        if !allowed.is_empty() && !allowed.contains(&addr.sll_ifindex) {
            continue;
        }
        if addr.sll_ifindex == lo && addr.sll_pkttype != libc::PACKET_OUTGOING {
            continue;
        }
        shared.packets_seen.fetch_add(1, Ordering::Relaxed);
        let Some((key, len)) = parse(&buf[..(n as usize).min(buf.len())]) else {
            continue;
        };
        let Ok(mut m) = shared.counts.lock() else {
            return;
        };
        if m.len() >= MAX_KEYS && !m.contains_key(&key) {
            shared.dropped_full.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let c = m.entry(key).or_default();
        c.bytes += len;
        c.packets += 1;
        c.last = Some(Instant::now());
    }
}

/// Key and IP-layer length of a packet starting at its IP header.
pub fn parse(p: &[u8]) -> Option<(PacketKey, u64)> {
    let v = p.first()? >> 4;
    let (proto, src, dst, l4, len) = match v {
        4 => {
            let ihl = usize::from(p.first()? & 0x0f) * 4;
            let len = u16::from_be_bytes([*p.get(2)?, *p.get(3)?]) as u64;
            let frag = u16::from_be_bytes([*p.get(6)?, *p.get(7)?]) & 0x1fff;
            let src: [u8; 4] = p.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = p.get(16..20)?.try_into().ok()?;
            let l4 = if frag == 0 { Some(ihl) } else { None };
            (
                *p.get(9)?,
                IpAddr::V4(Ipv4Addr::from(src)),
                IpAddr::V4(Ipv4Addr::from(dst)),
                l4,
                len,
            )
        }
        6 => {
            let len = u16::from_be_bytes([*p.get(4)?, *p.get(5)?]) as u64 + 40;
            let src: [u8; 16] = p.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = p.get(24..40)?.try_into().ok()?;
            (
                *p.get(6)?,
                IpAddr::V6(Ipv6Addr::from(src)),
                IpAddr::V6(Ipv6Addr::from(dst)),
                Some(40),
                len,
            )
        }
        _ => return None,
    };
    let (sport, dport) = match l4 {
        Some(o) if proto == 6 || proto == 17 => (
            u16::from_be_bytes([*p.get(o)?, *p.get(o + 1)?]),
            u16::from_be_bytes([*p.get(o + 2)?, *p.get(o + 3)?]),
        ),
        _ => (0, 0),
    };
    Some(((proto, src, sport, dst, dport), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_ipv4_tcp_header() {
        let mut p = [0u8; 40];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&60u16.to_be_bytes());
        p[9] = 6;
        p[12..16].copy_from_slice(&[127, 0, 0, 1]);
        p[16..20].copy_from_slice(&[127, 0, 0, 2]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&80u16.to_be_bytes());
        let ((proto, src, sport, dst, dport), len) = parse(&p).expect("ipv4");
        assert_eq!((proto, sport, dport, len), (6, 40000, 80, 60));
        assert_eq!(src.to_string(), "127.0.0.1");
        assert_eq!(dst.to_string(), "127.0.0.2");
    }

    #[test]
    fn refuses_truncated_headers() {
        assert!(parse(&[0x45, 0, 0]).is_none());
        assert!(parse(&[]).is_none());
        assert!(parse(&[0x60; 20]).is_none());
    }
}
