//! A collector's address as configured: `IP:port`, `[IPv6]:port` or `name:port`. A name
//! is looked up at every connection round ([`super::resolve`]); an IP literal is used as it
//! is. The host as written is also the name the collector's certificate must carry unless
//! `uplink.server_name` says otherwise.
use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

/// The host part of a collector address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IP literal (an IPv6 one was written in brackets).
    Ip(IpAddr),
    /// A DNS name, without a trailing dot.
    Name(String),
}

/// Where a collector listens, as configured.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CollectorAddr {
    pub host: Host,
    pub port: u16,
}

/// Why a collector address does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("`{0}`: no port (expected IP:port, [IPv6]:port or name:port)")]
    MissingPort(String),
    #[error("`{0}`: the port must be a number from 1 to 65535")]
    BadPort(String),
    #[error("`{0}`: an IPv6 address is written in brackets, [IPv6]:port")]
    UnbracketedIpv6(String),
    #[error("`{0}`: not an IP address")]
    BadIp(String),
    #[error(
        "`{0}`: not a DNS name (labels of letters, digits, `-` and `_`, each 1 to 63 bytes, 253 in all)"
    )]
    BadName(String),
}

impl CollectorAddr {
    /// The name the collector's certificate must carry when `uplink.server_name` is empty:
    /// the IP literal, or the DNS name as written.
    pub fn server_name(&self) -> String {
        match &self.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => name.clone(),
        }
    }
}

impl From<SocketAddr> for CollectorAddr {
    fn from(addr: SocketAddr) -> Self {
        Self {
            host: Host::Ip(addr.ip()),
            port: addr.port(),
        }
    }
}

impl fmt::Display for CollectorAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(ip) => write!(f, "{ip}:{}", self.port),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

impl FromStr for CollectorAddr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, AddrError> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(AddrError::BadPort(s.into()));
            }
            return Ok(addr.into());
        }
        let bracketed_ip = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
        let Some((host, port)) = s.rsplit_once(':').filter(|_| !bracketed_ip) else {
            return Err(AddrError::MissingPort(s.into()));
        };
        if let Some(inner) = host.strip_prefix('[') {
            // Brackets hold an IPv6 literal only; the parse above refused this one.
            return Err(match inner.strip_suffix(']') {
                Some(ip) if ip.parse::<std::net::Ipv6Addr>().is_ok() => {
                    AddrError::BadPort(s.into())
                }
                _ => AddrError::BadIp(s.into()),
            });
        }
        if host.contains(':') {
            // "::1" (no port), "::1:7470" or "fe80::1:7470": an IPv6 address without brackets.
            return Err(
                if s.parse::<IpAddr>().is_ok() || host.parse::<IpAddr>().is_ok() {
                    AddrError::UnbracketedIpv6(s.into())
                } else {
                    AddrError::BadIp(s.into())
                },
            );
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ if port.is_empty() => return Err(AddrError::MissingPort(s.into())),
            _ => return Err(AddrError::BadPort(s.into())),
        };
        let host = if let Ok(ip) = host.parse::<IpAddr>() {
            Host::Ip(ip)
        } else if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !host.is_empty() {
            return Err(AddrError::BadIp(s.into()));
        } else {
            Host::Name(dns_name(host).ok_or_else(|| AddrError::BadName(s.into()))?)
        };
        Ok(Self { host, port })
    }
}

/// `name` as a DNS host name (a trailing dot removed), or `None` when it is not one. All
/// digits and dots is a mistyped IPv4 address, not a name.
pub fn dns_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    name.split('.').all(label_ok).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> CollectorAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn ip_ipv6_and_names_parse() {
        assert_eq!(
            ok("10.0.0.5:7470"),
            CollectorAddr {
                host: Host::Ip("10.0.0.5".parse().expect("ip")),
                port: 7470
            }
        );
        assert_eq!(ok("[2001:db8::5]:7470").server_name(), "2001:db8::5");
        assert_eq!(ok("[2001:db8::5]:7470").to_string(), "[2001:db8::5]:7470");
        let name = ok("collector-1.example.org:7470");
        assert_eq!(name.host, Host::Name("collector-1.example.org".into()));
        assert_eq!(name.server_name(), "collector-1.example.org");
        assert_eq!(name.to_string(), "collector-1.example.org:7470");
        assert_eq!(ok("localhost:1").server_name(), "localhost");
        // A trailing dot (fully qualified) is accepted; the certificate name has none.
        assert_eq!(
            ok("collector.example.:7470").server_name(),
            "collector.example"
        );
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        let cases = [
            ("10.0.0.5", AddrError::MissingPort("10.0.0.5".into())),
            ("collector", AddrError::MissingPort("collector".into())),
            ("collector:", AddrError::MissingPort("collector:".into())),
            ("collector:0", AddrError::BadPort("collector:0".into())),
            ("10.0.0.5:0", AddrError::BadPort("10.0.0.5:0".into())),
            (
                "collector:70000",
                AddrError::BadPort("collector:70000".into()),
            ),
            (
                "collector:http",
                AddrError::BadPort("collector:http".into()),
            ),
            ("[::1]:x", AddrError::BadPort("[::1]:x".into())),
            ("::1", AddrError::UnbracketedIpv6("::1".into())),
            (
                "2001:db8::5:7470",
                AddrError::UnbracketedIpv6("2001:db8::5:7470".into()),
            ),
            ("[nope]:7470", AddrError::BadIp("[nope]:7470".into())),
            ("[::1", AddrError::BadIp("[::1".into())),
            (
                "10.0.0.300:7470",
                AddrError::BadIp("10.0.0.300:7470".into()),
            ),
            ("[::1]", AddrError::MissingPort("[::1]".into())),
            ("bad name:7470", AddrError::BadName("bad name:7470".into())),
            (
                "-lead.example:7470",
                AddrError::BadName("-lead.example:7470".into()),
            ),
            ("a..b:7470", AddrError::BadName("a..b:7470".into())),
            (":7470", AddrError::BadName(":7470".into())),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<CollectorAddr>(), Err(want), "{text}");
        }
        let long = format!("{}.example:7470", "a".repeat(64));
        assert!(matches!(
            long.parse::<CollectorAddr>(),
            Err(AddrError::BadName(_))
        ));
    }
}
