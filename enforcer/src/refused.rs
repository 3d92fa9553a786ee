//! Traffic that isolation refused, counted per flow so the agent can report it: those
//! flows get the verdict `rejected` at the collector, distinct from `escaped`.

use std::net::SocketAddr;

use crate::model::Exceptions;

/// Packets or connects of one flow that enforcement refused since the last report.
///
/// For the nftables backend the key is the packet's full 5-tuple and only packets are
/// counted. For the eBPF backend a refused `connect()`/`sendmsg()` has no local address yet
/// (`local` is unspecified with port 0) and is counted in `attempts`, with the process that
/// tried; dropped packets are counted per 5-tuple without a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// IP protocol number (6 tcp, 17 udp, 1 icmp, 58 icmpv6, ...).
    pub proto: u8,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// True when the refused traffic was leaving this host.
    pub outbound: bool,
    /// Packets dropped (delta since the previous report).
    pub packets: u64,
    /// Bytes of those packets, where the backend counts them.
    pub bytes: u64,
    /// Socket calls refused with EPERM (delta since the previous report).
    pub attempts: u64,
    /// Process that made the refused call (eBPF connect/sendmsg only).
    pub pid: Option<u32>,
    /// Its command name (`comm`), when known.
    pub comm: Option<String>,
}

/// The protocol numbers an allow rule's [`crate::Proto`] stands for.
fn proto_matches(rule: Option<crate::Proto>, proto: u8) -> bool {
    match rule {
        None => true,
        Some(crate::Proto::Tcp) => proto == 6,
        Some(crate::Proto::Udp) => proto == 17,
        Some(crate::Proto::Icmp) => proto == 1 || proto == 58,
    }
}

impl Exceptions {
    /// Would isolation with these exceptions let this flow through? The same decision as
    /// the rulesets (see `docs/enforcer.md`): loopback, the management channel (UDP to or
    /// from a collector's port), and allow rules — a rule with a port admits flows this host
    /// opens *to* that port (replies come back on them), a rule without a port admits
    /// flows either way.
    pub fn permits(
        &self,
        proto: u8,
        local: SocketAddr,
        remote: SocketAddr,
        outbound: bool,
    ) -> bool {
        let rip = remote.ip().to_canonical();
        if rip.is_loopback() || rip == local.ip().to_canonical() {
            return true;
        }
        if proto == 17
            && self
                .management
                .iter()
                .any(|m| m.ip().to_canonical() == rip && m.port() == remote.port())
        {
            return true;
        }
        self.allow.iter().any(|r| {
            r.net.contains(&rip)
                && proto_matches(r.proto, proto)
                && match r.port {
                    None => true,
                    Some(p) => outbound && remote.port() == p,
                }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    fn exc() -> Exceptions {
        Exceptions {
            management: vec!["10.0.0.1:4433".parse().unwrap()],
            allow: [
                "10.0.0.9:22/tcp",
                "10.0.0.53:53/udp",
                "192.0.2.0/24",
                "10.0.0.7/icmp",
            ]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect(),
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn decisions_follow_the_ruleset() {
        let e = exc();
        let me = sa("10.0.0.5:40000");
        // Management: UDP only, either way, the collector's port only.
        assert!(e.permits(17, me, sa("10.0.0.1:4433"), true));
        assert!(e.permits(17, me, sa("10.0.0.1:4433"), false));
        assert!(!e.permits(6, me, sa("10.0.0.1:4433"), true));
        assert!(!e.permits(17, me, sa("10.0.0.1:4434"), true));
        // Port rules: only flows this host opens to the port.
        assert!(e.permits(6, me, sa("10.0.0.9:22"), true));
        assert!(!e.permits(6, me, sa("10.0.0.9:22"), false));
        assert!(!e.permits(6, me, sa("10.0.0.9:23"), true));
        assert!(!e.permits(17, me, sa("10.0.0.9:22"), true));
        assert!(e.permits(17, me, sa("10.0.0.53:53"), true));
        // Port-less rules: both ways, any protocol the rule names.
        assert!(e.permits(6, me, sa("192.0.2.77:8080"), false));
        assert!(e.permits(1, me, sa("10.0.0.7:0"), false));
        assert!(!e.permits(6, me, sa("10.0.0.7:80"), true));
        // Loopback and the host's own address.
        assert!(e.permits(6, me, sa("127.0.0.1:80"), true));
        assert!(e.permits(6, me, sa("10.0.0.5:80"), true));
        // Everything else.
        assert!(!e.permits(6, me, sa("10.0.0.2:8080"), true));
        assert!(!e.permits(1, me, sa("10.0.0.2:0"), false));
    }

    #[test]
    fn mapped_addresses_count_as_ipv4() {
        let e = exc();
        let me = sa("[::ffff:10.0.0.5]:40000");
        assert!(e.permits(6, me, sa("[::ffff:10.0.0.9]:22"), true));
        assert!(!e.permits(6, me, sa("[::ffff:10.0.0.2]:22"), true));
    }
}
