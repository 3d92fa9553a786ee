//! A two-namespace lab for the privileged enforcer tests: `host` (where isolation is
//! applied) and `peer`, joined by a veth pair on 10.232.N.0/24, no default route, created
//! directly inside the namespaces (nothing in the caller's namespace) and deleted on drop.

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// Root, and `ip`, `nft` and `nsenter` present?
pub fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let have = |p: &str, arg: &str| {
        Command::new(p)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    root && have("ip", "-V") && have("nft", "--version") && have("nsenter", "--version")
}

pub fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

pub fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub struct Lab {
    pub host: String,
    pub peer: String,
    pub host_ip: Ipv4Addr,
    pub peer_ip: Ipv4Addr,
}

impl Lab {
    /// `tag` keeps the labs of parallel tests apart (one character).
    pub fn new(tag: char) -> Lab {
        let pid = std::process::id();
        let net = ((pid as usize + tag as usize) % 250) as u8 + 1;
        let lab = Lab {
            host: format!("cdh{pid}{tag}"),
            peer: format!("cdp{pid}{tag}"),
            host_ip: Ipv4Addr::new(10, 232, net, 1),
            peer_ip: Ipv4Addr::new(10, 232, net, 2),
        };
        // Constructed first so that Drop cleans up whatever part of the set-up succeeded.
        let (vh, vp) = (format!("vh{pid}{tag}"), format!("vp{pid}{tag}"));
        run_ok(&["ip", "netns", "add", &lab.host]);
        run_ok(&["ip", "netns", "add", &lab.peer]);
        run_ok(&[
            "ip", "link", "add", "name", &vh, "netns", &lab.host, "type", "veth", "peer", "name",
            &vp, "netns", &lab.peer,
        ]);
        for (ns, dev, ip) in [(&lab.host, &vh, lab.host_ip), (&lab.peer, &vp, lab.peer_ip)] {
            run_ok(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                dev,
            ]);
            run_ok(&["ip", "-n", ns, "link", "set", dev, "up"]);
            run_ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            let routes = run_ok(&["ip", "-n", ns, "route", "show", "default"]);
            assert!(
                routes.trim().is_empty(),
                "no default route in a lab namespace"
            );
        }
        lab
    }

    /// `nft` inside the host namespace.
    pub fn nft_command(&self) -> Vec<String> {
        vec![
            "nsenter".into(),
            format!("--net=/run/netns/{}", self.host),
            "nft".into(),
        ]
    }

    /// Run `nft ARGS` in the host namespace.
    pub fn nft(&self, args: &[&str]) -> Output {
        let mut v: Vec<&str> = vec!["ip", "netns", "exec", &self.host, "nft"];
        v.extend_from_slice(args);
        run(&v)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and with it the other.
        for ns in [&self.host, &self.peer] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Run `f` on a thread inside network namespace `ns`. Sockets created there stay in that
/// namespace whichever thread uses them later.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let f_ns = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: valid fd of a network namespace; only this thread switches.
        let rc = unsafe { libc::setns(f_ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("namespace thread panicked")
}

/// TCP and UDP echo servers on `ip` in namespace `ns`, running until the process exits.
pub fn echo_servers(ns: &str, ip: Ipv4Addr, tcp_ports: &[u16], udp_ports: &[u16]) {
    let (tcp_ports, udp_ports) = (tcp_ports.to_vec(), udp_ports.to_vec());
    let (tcp, udp) = in_ns(ns, move || {
        let tcp: Vec<TcpListener> = tcp_ports
            .iter()
            .map(|p| TcpListener::bind((ip, *p)).expect("bind tcp"))
            .collect();
        let udp: Vec<UdpSocket> = udp_ports
            .iter()
            .map(|p| UdpSocket::bind((ip, *p)).expect("bind udp"))
            .collect();
        (tcp, udp)
    });
    for l in tcp {
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 512];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 || c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
    }
    for s in udp {
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], from);
            }
        });
    }
}

/// Send a line on an open connection and expect it back.
pub fn echo_on(c: &mut TcpStream) -> bool {
    let _ = c.set_read_timeout(Some(PROBE_TIMEOUT * 2));
    let mut buf = [0u8; 8];
    c.write_all(b"ping").is_ok() && c.read_exact(&mut buf[..4]).is_ok() && &buf[..4] == b"ping"
}

/// Connect from namespace `ns` to `to` over TCP (the socket stays in `ns`).
pub fn tcp_connect(ns: &str, to: SocketAddr) -> Option<TcpStream> {
    in_ns(ns, move || {
        TcpStream::connect_timeout(&to, PROBE_TIMEOUT).ok()
    })
}

/// Can namespace `ns` open a TCP connection to `to` and get an echo?
pub fn tcp_ok(ns: &str, to: SocketAddr) -> bool {
    tcp_connect(ns, to).is_some_and(|mut c| echo_on(&mut c))
}

/// Does a UDP datagram from `ns` to `to` come back?
pub fn udp_ok(ns: &str, to: SocketAddr) -> bool {
    in_ns(ns, move || {
        let Ok(s) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(PROBE_TIMEOUT));
        let mut buf = [0u8; 16];
        s.send_to(b"udp-ping", to).is_ok()
            && matches!(s.recv_from(&mut buf), Ok((8, from)) if from == to)
    })
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for ch in data.chunks(2) {
        let w = u16::from_be_bytes([ch[0], *ch.get(1).unwrap_or(&0)]);
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// ICMP echo from `ns` to `to` over a raw socket (root): did a reply come back?
pub fn ping_ok(ns: &str, to: Ipv4Addr) -> bool {
    in_ns(ns, move || {
        // SAFETY: plain socket(2) call; the fd is closed below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let id = (std::process::id() & 0xffff) as u16;
        let mut pkt = [0u8; 16];
        pkt[0] = 8; // echo request
        pkt[4..6].copy_from_slice(&id.to_be_bytes());
        pkt[6..8].copy_from_slice(&1u16.to_be_bytes());
        pkt[8..16].copy_from_slice(b"cordon!!");
        let ck = checksum(&pkt);
        pkt[2..4].copy_from_slice(&ck.to_be_bytes());
        let dst = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(to).to_be(),
            },
            sin_zero: [0; 8],
        };
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: valid fd, pointers to live, correctly sized values.
        let sent = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
            libc::sendto(
                fd,
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&dst as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        let mut ok = false;
        let deadline = Instant::now() + PROBE_TIMEOUT;
        while sent > 0 && !ok && Instant::now() < deadline {
            let mut buf = [0u8; 256];
            // SAFETY: valid fd and buffer.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 28 {
                continue;
            }
            let ihl = usize::from(buf[0] & 0x0f) * 4;
            let src = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
            let icmp = &buf[ihl..n as usize];
            ok = src == to && icmp.len() >= 8 && icmp[0] == 0 && icmp[4..6] == id.to_be_bytes();
        }
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
        ok
    })
}
