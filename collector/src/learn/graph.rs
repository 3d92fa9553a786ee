//! The conversation graph of a time window: who talks to whom, on which service port, by
//! which processes, how often.
//!
//! Each stored record is seen from the host that reported it. The service port is the
//! listening side's: the remote port of an outbound record, the local port of an inbound
//! one (the other side's port is ephemeral and says nothing). The far end is an enrolled
//! host when its address is in a host's inventory (the same map the policy evaluator uses),
//! otherwise an external address. A conversation between two enrolled hosts is recorded
//! by both; each edge keeps the two sides' counts apart and counts the larger, so a
//! conversation is counted once.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
};

use crate::{
    policy::{
        HostFacts,
        state::{HostMap, IpHostMap},
    },
    store::{Store, StoreError},
};

/// An endpoint of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    /// Index into [`Graph::hosts`].
    Host(u32),
    /// An address no enrolled host has.
    External(IpAddr),
}

/// An enrolled host that took part in at least one conversation of the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    pub agent_id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Its interfaces' addresses (from its inventory), sorted.
    pub addresses: Vec<IpAddr>,
}

/// Who opens the connection, who accepts it, on what.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EdgeKey {
    pub consumer: Node,
    pub provider: Node,
    /// IP protocol number (6 tcp, 17 udp, 1 icmp, ...).
    pub proto: u8,
    /// The service port (0 for protocols without ports).
    pub port: u16,
}

/// One record of the edge as its reporter saw it, to evaluate the edge with a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Index into [`Graph::hosts`] of the host that reported it.
    pub reporter: u32,
    pub outbound: bool,
    pub local_ip: IpAddr,
    pub remote_ip: IpAddr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    pub key: EdgeKey,
    /// Flows started, as the consumer's records count them (0 when it is not enrolled).
    pub flows_consumer_side: u64,
    /// As the provider's records count them.
    pub flows_provider_side: u64,
    /// Consumer executables (from the consumer's own records) → flows; `""` when unknown.
    pub consumer_exes: BTreeMap<String, u64>,
    /// Provider executables, when the provider's own records show them.
    pub provider_exes: BTreeSet<String>,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// A consumer-side record when there is one, else a provider-side one.
    pub sample: Sample,
}

impl Edge {
    /// Conversations on this edge, each counted once (see the module docs).
    pub fn flows(&self) -> u64 {
        self.flows_consumer_side.max(self.flows_provider_side)
    }
}

/// The conversation graph of a window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Graph {
    /// Sorted by name, then agent id.
    pub hosts: Vec<HostInfo>,
    /// Sorted by key.
    pub edges: Vec<Edge>,
    /// Flow records read.
    pub records: u64,
}

/// IP protocol number of a stored protocol name (`tcp`, `udp`, `icmp`, `icmpv6`, `ip-N`).
pub fn proto_number(name: &str) -> u8 {
    match name {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmpv6" => 58,
        other => other
            .strip_prefix("ip-")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    }
}

struct Acc {
    flows_c: u64,
    flows_p: u64,
    /// Interned exe id → flows (0 is unknown).
    c_exes: BTreeMap<u32, u64>,
    p_exes: BTreeSet<u32>,
    first: u64,
    last: u64,
    sample: Sample,
}

/// Interns strings: lookups by `&str` allocate nothing once a string is known.
#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.to_string());
        self.ids.insert(s.to_string(), i);
        i
    }
}

impl Graph {
    /// Reads the records of `[since_ns, until_ns)` from `store` (one query, streamed).
    pub fn from_store(store: &Store, since_ns: u64, until_ns: u64) -> Result<Self, StoreError> {
        let (facts, ip_hosts) = crate::policy::state::host_context(&**store)?;
        let hosts = store.learn_hosts()?;
        let mut b = Builder::new(
            hosts.iter().map(|h| (h.id, h.agent_id.as_str())),
            &facts,
            &ip_hosts,
        );
        let records = store.for_each_flow(since_ns, until_ns, &mut |o| {
            let Ok(local_ip) = o.local_ip.parse::<IpAddr>() else {
                return;
            };
            let Ok(remote_ip) = o.remote_ip.parse::<IpAddr>() else {
                return;
            };
            b.add(&Observed {
                host_id: o.host_id,
                start: o.start,
                proto: proto_number(o.proto),
                outbound: o.outbound,
                local_ip,
                local_port: o.local_port,
                remote_ip,
                remote_port: o.remote_port,
                exe: o.exe,
                first_seen_ns: o.first_seen_ns,
                last_seen_ns: o.last_seen_ns,
            });
        })?;
        let mut g = b.finish();
        g.records = records;
        Ok(g)
    }
}

/// One record, parsed.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    pub host_id: i64,
    pub start: bool,
    pub proto: u8,
    pub outbound: bool,
    pub local_ip: IpAddr,
    pub local_port: u16,
    pub remote_ip: IpAddr,
    pub remote_port: u16,
    pub exe: Option<&'a str>,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
}

/// Builds a graph record by record.
pub struct Builder<'a> {
    /// hosts.id → sorted index.
    by_db_id: HashMap<i64, u32>,
    /// Agent id → sorted index.
    by_agent: HashMap<&'a str, u32>,
    ip_hosts: &'a IpHostMap,
    hosts: Vec<HostInfo>,
    exes: Interner,
    edges: HashMap<EdgeKey, Acc>,
}

impl<'a> Builder<'a> {
    /// `hosts`: (hosts.id, agent id) of every enrolled host.
    pub fn new(
        hosts: impl IntoIterator<Item = (i64, &'a str)>,
        facts: &'a HostMap,
        ip_hosts: &'a IpHostMap,
    ) -> Self {
        let mut list: Vec<(i64, &'a str)> = hosts.into_iter().collect();
        let name = |a: &str| facts.get(a).map_or("", |f: &HostFacts| f.name.as_str());
        list.sort_by(|x, y| (name(x.1), x.1).cmp(&(name(y.1), y.1)));
        let mut addresses: HashMap<&str, Vec<IpAddr>> = HashMap::new();
        for (ip, agent) in ip_hosts {
            addresses.entry(agent.as_str()).or_default().push(*ip);
        }
        let mut by_db_id = HashMap::new();
        let mut by_agent = HashMap::new();
        let mut infos = Vec::with_capacity(list.len());
        for (i, (id, agent)) in list.iter().enumerate() {
            by_db_id.insert(*id, i as u32);
            by_agent.insert(*agent, i as u32);
            let f = facts.get(*agent);
            let mut addrs = addresses.remove(agent).unwrap_or_default();
            addrs.sort();
            infos.push(HostInfo {
                agent_id: agent.to_string(),
                name: f.map_or_else(String::new, |f| f.name.clone()),
                labels: f.map_or_else(BTreeMap::new, |f| f.labels.clone()),
                addresses: addrs,
            });
        }
        let mut exes = Interner::default();
        exes.id("");
        Self {
            by_db_id,
            by_agent,
            ip_hosts,
            hosts: infos,
            exes,
            edges: HashMap::new(),
        }
    }

    /// Adds one record.
    pub fn add(&mut self, o: &Observed<'_>) {
        let Some(&me) = self.by_db_id.get(&o.host_id) else {
            return;
        };
        let far = match self
            .ip_hosts
            .get(&o.remote_ip)
            .and_then(|a| self.by_agent.get(a.as_str()))
        {
            Some(&h) => Node::Host(h),
            None => Node::External(o.remote_ip),
        };
        let (consumer, provider, port) = if o.outbound {
            (Node::Host(me), far, o.remote_port)
        } else {
            (far, Node::Host(me), o.local_port)
        };
        let port = if matches!(o.proto, 6 | 17) { port } else { 0 };
        let key = EdgeKey {
            consumer,
            provider,
            proto: o.proto,
            port,
        };
        let exe = self.exes.id(o.exe.unwrap_or(""));
        let sample = Sample {
            reporter: me,
            outbound: o.outbound,
            local_ip: o.local_ip,
            remote_ip: o.remote_ip,
        };
        let started = u64::from(o.start);
        let acc = self.edges.entry(key).or_insert(Acc {
            flows_c: 0,
            flows_p: 0,
            c_exes: BTreeMap::new(),
            p_exes: BTreeSet::new(),
            first: o.first_seen_ns,
            last: o.last_seen_ns,
            sample,
        });
        acc.first = acc.first.min(o.first_seen_ns);
        acc.last = acc.last.max(o.last_seen_ns);
        if o.outbound {
            acc.flows_c += started;
            *acc.c_exes.entry(exe).or_default() += started;
            if !acc.sample.outbound {
                acc.sample = sample;
            }
        } else {
            acc.flows_p += started;
            if exe != 0 {
                acc.p_exes.insert(exe);
            }
        }
    }

    /// The graph: only hosts that took part in a conversation, everything sorted.
    pub fn finish(self) -> Graph {
        let mut used = vec![false; self.hosts.len()];
        for k in self.edges.keys() {
            for n in [k.consumer, k.provider] {
                if let Node::Host(h) = n {
                    used[h as usize] = true;
                }
            }
        }
        // Old index → new index among the hosts kept (order preserved).
        let mut remap = vec![u32::MAX; self.hosts.len()];
        let mut hosts = Vec::new();
        for (i, h) in self.hosts.into_iter().enumerate() {
            if used[i] {
                remap[i] = hosts.len() as u32;
                hosts.push(h);
            }
        }
        let node = |n: Node| match n {
            Node::Host(h) => Node::Host(remap[h as usize]),
            e => e,
        };
        let names = &self.exes.names;
        let mut edges: Vec<Edge> = self
            .edges
            .into_iter()
            .map(|(k, a)| {
                // A flow seen only by update/end records still happened once.
                let (fc, fp) = match (a.flows_c, a.flows_p) {
                    (0, 0) => (1, 1),
                    other => other,
                };
                let mut c_exes = BTreeMap::new();
                for (e, n) in a.c_exes {
                    *c_exes.entry(names[e as usize].clone()).or_insert(0) += n;
                }
                Edge {
                    key: EdgeKey {
                        consumer: node(k.consumer),
                        provider: node(k.provider),
                        ..k
                    },
                    flows_consumer_side: fc,
                    flows_provider_side: fp,
                    consumer_exes: c_exes,
                    provider_exes: a
                        .p_exes
                        .into_iter()
                        .map(|e| names[e as usize].clone())
                        .collect(),
                    first_seen_ns: a.first,
                    last_seen_ns: a.last,
                    sample: Sample {
                        reporter: remap[a.sample.reporter as usize],
                        ..a.sample
                    },
                }
            })
            .collect();
        edges.sort_by_key(|a| a.key);
        Graph {
            hosts,
            edges,
            records: 0,
        }
    }
}
