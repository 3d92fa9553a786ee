//! What an isolation is and what it always lets through.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// One isolation order, as received from the collector (or the local dev CLI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Isolation {
    /// Id of the command that ordered it; the same id again is a no-op.
    pub command_id: u64,
    /// Why (free text from the operator or the rule that fired).
    pub reason: String,
    /// Who ordered it (operator or rule name).
    pub by: String,
    /// When it was ordered, Unix seconds.
    pub since_unix: u64,
    /// When it lifts by itself, Unix seconds; `None` = until released.
    pub expires_at_unix: Option<u64>,
}

impl Isolation {
    /// True when the isolation has an expiry time and `now_unix` has reached it.
    pub fn is_expired(&self, now_unix: u64) -> bool {
        self.expires_at_unix.is_some_and(|t| now_unix >= t)
    }
}

/// What isolation never blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exceptions {
    /// Collector QUIC addresses: UDP, both directions, always allowed. A command cannot
    /// remove them; they come from the agent's own configuration.
    pub management: Vec<SocketAddr>,
    /// Operator allow-list from the agent's configuration (jump host, DNS, ...).
    #[serde(default)]
    pub allow: Vec<AllowRule>,
}

impl Exceptions {
    /// Union of two exception sets (duplicates removed, order kept: `self` first).
    pub fn union(&self, other: &Exceptions) -> Exceptions {
        let mut out = self.clone();
        for m in &other.management {
            if !out.management.contains(m) {
                out.management.push(*m);
            }
        }
        for a in &other.allow {
            if !out.allow.contains(a) {
                out.allow.push(a.clone());
            }
        }
        out
    }
}

/// Transport protocol of an allow rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        })
    }
}

impl FromStr for Proto {
    type Err = AllowRuleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "icmp" | "icmpv6" => Ok(Proto::Icmp),
            _ => Err(AllowRuleError::Protocol(s.to_string())),
        }
    }
}

/// One allow-list entry: traffic to `net` (optionally only `proto`, optionally only to
/// `port`) and the replies from it.
///
/// Written as `10.0.0.9:22/tcp`, `10.0.0.53:53/udp`, `192.0.2.0/24`, `[2001:db8::1]:22/tcp`,
/// `10.0.0.1/icmp`, `192.0.2.0/24/tcp`, `[2001:db8::/64]:443/tcp`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AllowRule {
    pub net: IpNet,
    pub proto: Option<Proto>,
    pub port: Option<u16>,
}

/// Why an allow rule did not parse; each variant names the bad part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowRuleError {
    #[error("empty allow rule")]
    Empty,
    #[error(
        "bad address {0:?} (expected an IPv4/IPv6 address or prefix, IPv6 with a port in [brackets])"
    )]
    Address(String),
    #[error("bad prefix {0:?}")]
    Prefix(String),
    #[error("bad port {0:?} (expected 1-65535)")]
    Port(String),
    #[error("bad protocol {0:?} (expected tcp, udp or icmp)")]
    Protocol(String),
    #[error("port {0} needs a protocol: append /tcp or /udp")]
    PortWithoutProto(u16),
    #[error("icmp has no ports (port {0})")]
    PortWithIcmp(u16),
}

fn parse_net(s: &str) -> Result<IpNet, AllowRuleError> {
    if s.contains('/') {
        let (addr, len) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| AllowRuleError::Address(addr.to_string()))?;
        let len: u8 = len
            .parse()
            .map_err(|_| AllowRuleError::Prefix(s.to_string()))?;
        IpNet::new(addr, len)
            .map(|n| n.trunc())
            .map_err(|_| AllowRuleError::Prefix(s.to_string()))
    } else {
        s.parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| AllowRuleError::Address(s.to_string()))
    }
}

fn parse_port(s: &str) -> Result<u16, AllowRuleError> {
    match s.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(AllowRuleError::Port(s.to_string())),
    }
}

impl FromStr for AllowRule {
    type Err = AllowRuleError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        if s.is_empty() {
            return Err(AllowRuleError::Empty);
        }
        // A trailing "/word" is the protocol (a trailing "/digits" is a prefix length).
        let (rest, proto) = match s.rsplit_once('/') {
            Some((rest, p)) if p.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) => {
                (rest, Some(p.parse::<Proto>()?))
            }
            _ => (s, None),
        };
        let (net, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (addr, after) = inner
                .split_once(']')
                .ok_or_else(|| AllowRuleError::Address(rest.to_string()))?;
            let port = match after {
                "" => None,
                p => Some(parse_port(
                    p.strip_prefix(':')
                        .ok_or_else(|| AllowRuleError::Port(p.to_string()))?,
                )?),
            };
            (parse_net(addr)?, port)
        } else if rest.matches(':').count() == 1 {
            // IPv4 with a port (a bare IPv6 address has at least two colons).
            let (addr, port) = rest.split_once(':').unwrap_or((rest, ""));
            (parse_net(addr)?, Some(parse_port(port)?))
        } else {
            (parse_net(rest)?, None)
        };
        match (proto, port) {
            (None, Some(p)) => Err(AllowRuleError::PortWithoutProto(p)),
            (Some(Proto::Icmp), Some(p)) => Err(AllowRuleError::PortWithIcmp(p)),
            _ => Ok(AllowRule { net, proto, port }),
        }
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.net.prefix_len() == self.net.max_prefix_len();
        let addr = if host {
            self.net.addr().to_string()
        } else {
            self.net.to_string()
        };
        match (self.port, self.net) {
            (Some(p), IpNet::V4(_)) if host => write!(f, "{addr}:{p}")?,
            (Some(p), _) => write!(f, "[{addr}]:{p}")?,
            (None, _) => f.write_str(&addr)?,
        }
        if let Some(proto) = self.proto {
            write!(f, "/{proto}")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for AllowRule {
    type Error = AllowRuleError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<AllowRule> for String {
    fn from(r: AllowRule) -> String {
        r.to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    fn ok(s: &str) -> AllowRule {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_good_rules() {
        let r = ok("10.0.0.9:22/tcp");
        assert_eq!(r.net, "10.0.0.9/32".parse::<IpNet>().unwrap());
        assert_eq!((r.proto, r.port), (Some(Proto::Tcp), Some(22)));
        let r = ok("10.0.0.53:53/udp");
        assert_eq!((r.proto, r.port), (Some(Proto::Udp), Some(53)));
        let r = ok("192.0.2.0/24");
        assert_eq!(r.net, "192.0.2.0/24".parse::<IpNet>().unwrap());
        assert_eq!((r.proto, r.port), (None, None));
        let r = ok("[2001:db8::1]:22/tcp");
        assert_eq!(r.net, "2001:db8::1/128".parse::<IpNet>().unwrap());
        assert_eq!(r.port, Some(22));
        let r = ok("10.0.0.1/icmp");
        assert_eq!((r.proto, r.port), (Some(Proto::Icmp), None));
        let r = ok("2001:db8::/32");
        assert_eq!(r.net.prefix_len(), 32);
        let r = ok("192.0.2.0/24/TCP");
        assert_eq!(r.proto, Some(Proto::Tcp));
        let r = ok("[2001:db8::/64]:443/tcp");
        assert_eq!((r.net.prefix_len(), r.port), (64, Some(443)));
        // Host bits are dropped: the rule is about the network.
        assert_eq!(ok("192.0.2.7/24").net.to_string(), "192.0.2.0/24");
        assert_eq!(ok(" 10.0.0.1 ").net.prefix_len(), 32);
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "10.0.0.9:22/tcp",
            "10.0.0.53:53/udp",
            "192.0.2.0/24",
            "[2001:db8::1]:22/tcp",
            "10.0.0.1/icmp",
            "2001:db8::1",
            "[10.0.0.0/8]:443/tcp",
            "2001:db8::/32/udp",
        ] {
            let r = ok(s);
            assert_eq!(r.to_string(), s);
            assert_eq!(ok(&r.to_string()), r);
        }
    }

    #[test]
    fn rejects_bad_rules_naming_the_part() {
        use AllowRuleError as E;
        let err = |s: &str| s.parse::<AllowRule>().unwrap_err();
        assert_eq!(err(""), E::Empty);
        assert_eq!(err("10.0.0.300:22/tcp"), E::Address("10.0.0.300".into()));
        assert_eq!(
            err("host.example:22/tcp"),
            E::Address("host.example".into())
        );
        assert_eq!(err("10.0.0.9:99999/tcp"), E::Port("99999".into()));
        assert_eq!(err("10.0.0.9:0/tcp"), E::Port("0".into()));
        assert_eq!(err("10.0.0.9:ssh/tcp"), E::Port("ssh".into()));
        assert_eq!(err("10.0.0.9:22/sctp"), E::Protocol("sctp".into()));
        assert_eq!(err("10.0.0.9:22"), E::PortWithoutProto(22));
        assert_eq!(err("10.0.0.9:7/icmp"), E::PortWithIcmp(7));
        assert_eq!(err("192.0.2.0/33"), E::Prefix("192.0.2.0/33".into()));
        assert_eq!(err("[2001:db8::1]22/tcp"), E::Port("22".into()));
        assert_eq!(
            err("[2001:db8::1:22/tcp"),
            E::Address("[2001:db8::1:22".into())
        );
        assert!(err("10.0.0.9:99999/tcp").to_string().contains("99999"));
    }

    #[test]
    fn serde_uses_the_string_form() {
        let r = ok("10.0.0.9:22/tcp");
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(j, "\"10.0.0.9:22/tcp\"");
        assert_eq!(serde_json::from_str::<AllowRule>(&j).unwrap(), r);
        assert!(serde_json::from_str::<AllowRule>("\"10.0.0.9:22\"").is_err());
    }

    #[test]
    fn expiry() {
        let iso = Isolation {
            command_id: 1,
            reason: "r".into(),
            by: "b".into(),
            since_unix: 100,
            expires_at_unix: Some(200),
        };
        assert!(!iso.is_expired(199));
        assert!(iso.is_expired(200));
        let forever = Isolation {
            expires_at_unix: None,
            ..iso
        };
        assert!(!forever.is_expired(u64::MAX));
    }
}
