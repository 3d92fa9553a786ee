//! From the configured collectors to the addresses to try. Names are looked up at every
//! connection round (`tokio::net::lookup_host`), all at once and each for at most
//! [`LOOKUP_TIMEOUT`]; every address a name has is a candidate (one name with several A
//! records is several collector nodes). A name that does not resolve is left out of the
//! round with a warning, or, if it resolved before, stands for the addresses it had then
//! (DNS can be unreachable, for instance while the host is isolated).
use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use super::address::{CollectorAddr, Host};

/// The longest a name lookup may take before the last known addresses are used.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);
/// Distinct addresses remembered for the enforcer, at most.
const MAX_REMEMBERED: usize = 256;

/// A collector as configured: where it listens and the name its certificate must carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collector {
    pub addr: CollectorAddr,
    /// Name the collector's certificate must carry (DNS name or IP address).
    pub server_name: String,
}

impl Collector {
    /// `server_name` empty: the collector's own host, its IP literal or its DNS name as
    /// written (each node of a cluster has a certificate for its own names).
    pub fn new(addr: CollectorAddr, server_name: &str) -> Self {
        let server_name = if server_name.is_empty() {
            addr.server_name()
        } else {
            server_name.to_string()
        };
        Self { addr, server_name }
    }
}

/// One address to connect to in a round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub addr: SocketAddr,
    pub server_name: String,
    /// The configured entry it comes from (all addresses of a name share one).
    pub configured: CollectorAddr,
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.configured.host {
            Host::Ip(_) => write!(f, "{}", self.addr),
            Host::Name(_) => write!(f, "{} ({})", self.addr, self.configured),
        }
    }
}

#[derive(Debug, Default)]
struct Known {
    /// The addresses each name had at its last successful lookup.
    by_name: HashMap<CollectorAddr, Vec<SocketAddr>>,
    /// Every address a collector had so far, in the order first seen.
    every: Vec<SocketAddr>,
}

/// What the agent knows of its collectors' addresses; clones share it. The uplink fills
/// it at every round; the enforcer keeps all of it reachable during an isolation.
#[derive(Clone, Debug, Default)]
pub struct KnownAddrs(Arc<Mutex<Known>>);

impl KnownAddrs {
    /// Every address any collector had so far (at most 256), the first seen first.
    pub fn every(&self) -> Vec<SocketAddr> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .every
            .clone()
    }

    /// This round's candidates, in the configured order: an IP as written, a name as its
    /// addresses sorted (so every agent sees the same list whatever order DNS answers
    /// in), an address that two entries share only once.
    pub async fn resolve(&self, collectors: &[Collector]) -> Vec<Candidate> {
        let mut looked_up = lookup_all(collectors).await;
        let mut known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<Candidate> = Vec::new();
        for (i, c) in collectors.iter().enumerate() {
            let addrs = match &c.addr.host {
                Host::Ip(ip) => vec![SocketAddr::new(*ip, c.addr.port)],
                Host::Name(_) => match looked_up.remove(&i) {
                    Some(Ok(mut addrs)) if !addrs.is_empty() => {
                        addrs.sort_unstable();
                        addrs.dedup();
                        known.by_name.insert(c.addr.clone(), addrs.clone());
                        addrs
                    }
                    other => {
                        let error = match other {
                            Some(Err(e)) => e,
                            _ => "no address".into(),
                        };
                        match known.by_name.get(&c.addr) {
                            Some(last) => {
                                tracing::warn!(collector = %c.addr, %error, addresses = ?last, "cannot resolve the collector's name; using the addresses it had last");
                                last.clone()
                            }
                            None => {
                                tracing::warn!(collector = %c.addr, %error, "cannot resolve the collector's name; left out of this round");
                                Vec::new()
                            }
                        }
                    }
                },
            };
            for addr in addrs {
                if out.iter().any(|o| o.addr == addr) {
                    continue;
                }
                if !known.every.contains(&addr) && known.every.len() < MAX_REMEMBERED {
                    known.every.push(addr);
                }
                out.push(Candidate {
                    addr,
                    server_name: c.server_name.clone(),
                    configured: c.addr.clone(),
                });
            }
        }
        out
    }
}

/// Looks every name up at once; the answers by the collector's index.
async fn lookup_all(collectors: &[Collector]) -> HashMap<usize, Result<Vec<SocketAddr>, String>> {
    let mut lookups = tokio::task::JoinSet::new();
    for (i, c) in collectors.iter().enumerate() {
        if let Host::Name(name) = &c.addr.host {
            let (name, port) = (name.clone(), c.addr.port);
            lookups.spawn(async move {
                let res =
                    tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name, port)))
                        .await;
                let res = match res {
                    Ok(Ok(addrs)) => Ok(addrs.collect()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {LOOKUP_TIMEOUT:?}")),
                };
                (i, res)
            });
        }
    }
    let mut out = HashMap::new();
    while let Some(done) = lookups.join_next().await {
        if let Ok((i, res)) = done {
            out.insert(i, res);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collector(s: &str, server_name: &str) -> Collector {
        Collector::new(s.parse().expect("address"), server_name)
    }

    #[test]
    fn each_collector_is_checked_for_its_own_name_unless_one_is_set() {
        assert_eq!(collector("10.0.0.5:7470", "").server_name, "10.0.0.5");
        assert_eq!(
            collector("[2001:db8::5]:7470", "").server_name,
            "2001:db8::5"
        );
        assert_eq!(
            collector("node-2.example:7470", "").server_name,
            "node-2.example"
        );
        assert_eq!(
            collector("10.0.0.5:7470", "collector.example").server_name,
            "collector.example"
        );
    }

    #[tokio::test]
    async fn names_resolve_and_a_name_that_does_not_is_left_out() {
        let known = KnownAddrs::default();
        let collectors = [
            collector("no-such-collector.invalid:7470", ""),
            collector("localhost:7471", ""),
            collector("10.0.0.5:7470", ""),
            // The same address twice is one candidate.
            collector("10.0.0.5:7470", "other"),
        ];
        let got = known.resolve(&collectors).await;
        let local: Vec<_> = got.iter().filter(|c| c.addr.port() == 7471).collect();
        assert!(!local.is_empty(), "localhost did not resolve: {got:?}");
        for c in &local {
            assert!(c.addr.ip().is_loopback(), "{c}");
            assert_eq!(c.server_name, "localhost");
            assert_eq!(c.to_string(), format!("{} (localhost:7471)", c.addr));
        }
        let last = got.last().expect("candidates");
        assert_eq!(last.addr, "10.0.0.5:7470".parse().expect("addr"));
        assert_eq!(last.server_name, "10.0.0.5");
        assert_eq!(got.len(), local.len() + 1, "{got:?}");
        assert_eq!(known.every().len(), got.len());
    }

    #[tokio::test]
    async fn a_name_that_stops_resolving_keeps_its_last_addresses() {
        let known = KnownAddrs::default();
        let name: CollectorAddr = "collector.invalid:7470".parse().expect("address");
        let addr: SocketAddr = "192.0.2.7:7470".parse().expect("addr");
        known
            .0
            .lock()
            .expect("lock")
            .by_name
            .insert(name.clone(), vec![addr]);
        let got = known.resolve(&[Collector::new(name, "")]).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].addr, addr);
        assert_eq!(got[0].server_name, "collector.invalid");
        assert_eq!(known.every(), vec![addr]);
    }
}
