//! Evaluating flows against a compiled policy. An [`Evaluator`] belongs to one thread and
//! caches, per host, address and executable, which groups they can be in, so a flow costs
//! a few hash lookups and a scan of the rules for its service port.
use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::Arc,
};

use fixedbitset::FixedBitSet;

use super::{
    compile::{Compiled, Group},
    document::{Action, Severity},
};

/// What the policy needs to know about an enrolled host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFacts {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// A published policy and the inventory it is evaluated against.
#[derive(Debug)]
pub struct Context {
    pub policy: Arc<Compiled>,
    pub version: i64,
    /// Agent id → facts.
    pub hosts: HashMap<String, HostFacts>,
    /// Addresses of enrolled hosts (from their inventory) → agent id, so the remote end
    /// of a flow is known by its labels and name too.
    pub ip_hosts: HashMap<IpAddr, String>,
}

/// One flow record as the policy sees it.
#[derive(Clone, Copy, Debug)]
pub struct FlowView<'a> {
    /// Agent id of the host that reported it.
    pub host: &'a str,
    pub proto: u8,
    pub outbound: bool,
    pub local_ip: IpAddr,
    pub local_port: u16,
    pub remote_ip: IpAddr,
    pub remote_port: u16,
    /// The reporting host's process, if known.
    pub exe: Option<&'a str>,
}

/// Which part of the policy decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matched {
    /// Index into `Compiled::rules`.
    Rule(u32),
    /// Index into `Compiled::catch_all`.
    CatchAll(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub matched: Matched,
    pub severity: Severity,
}

impl Decision {
    /// The rule's name, or `catch-all` / `catch-all <scope>`.
    pub fn rule_name(&self, p: &Compiled) -> String {
        match self.matched {
            Matched::Rule(i) => p.rules[i as usize].name.clone(),
            Matched::CatchAll(i) => {
                let scope = p.catch_all[i as usize].scope;
                if scope == 0 {
                    "catch-all".into()
                } else {
                    format!("catch-all {}", p.groups[scope].name)
                }
            }
        }
    }
}

const CACHE_MAX: usize = 100_000;

pub struct Evaluator {
    ctx: Arc<Context>,
    /// Agent id → groups whose host filters (name, labels) it passes.
    host_bits: HashMap<String, FixedBitSet>,
    /// Groups without host filters: what an unknown host can be in.
    unknown_host: FixedBitSet,
    ip_bits: HashMap<IpAddr, FixedBitSet>,
    proc_bits: HashMap<String, FixedBitSet>,
    /// Groups without a process filter: what an endpoint of unknown process can be in.
    no_process: FixedBitSet,
    no_cidr: FixedBitSet,
}

/// Whether a host passes a group's host filters (name and labels).
pub fn host_passes(g: &Group, h: &HostFacts) -> bool {
    g.hostname.as_ref().is_none_or(|set| set.is_match(&h.name))
        && g.labels
            .iter()
            .all(|(k, v)| h.labels.get(k).is_some_and(|x| x == v))
}

impl Evaluator {
    pub fn new(ctx: Arc<Context>) -> Self {
        let groups = &ctx.policy.groups;
        let mut unknown_host = FixedBitSet::with_capacity(groups.len());
        let mut no_process = FixedBitSet::with_capacity(groups.len());
        let mut no_cidr = FixedBitSet::with_capacity(groups.len());
        for (i, g) in groups.iter().enumerate() {
            unknown_host.set(i, g.hostname.is_none() && g.labels.is_empty());
            no_process.set(i, g.process.is_none());
            no_cidr.set(i, g.cidr.is_empty());
        }
        Self {
            ctx,
            host_bits: HashMap::new(),
            unknown_host,
            ip_bits: HashMap::new(),
            proc_bits: HashMap::new(),
            no_process,
            no_cidr,
        }
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    fn ensure_host(&mut self, id: &str) {
        if self.host_bits.contains_key(id) {
            return;
        }
        let Some(facts) = self.ctx.hosts.get(id) else {
            return;
        };
        let groups = &self.ctx.policy.groups;
        let mut bits = FixedBitSet::with_capacity(groups.len());
        for (i, g) in groups.iter().enumerate() {
            bits.set(i, host_passes(g, facts));
        }
        self.host_bits.insert(id.to_string(), bits);
    }

    fn ensure_ip(&mut self, ip: IpAddr) {
        if self.ip_bits.contains_key(&ip) {
            return;
        }
        let groups = &self.ctx.policy.groups;
        let mut bits = FixedBitSet::with_capacity(groups.len());
        for (i, g) in groups.iter().enumerate() {
            bits.set(
                i,
                g.cidr.is_empty() || g.cidr.iter().any(|n| n.contains(&ip)),
            );
        }
        self.ip_bits.insert(ip, bits);
    }

    fn ensure_process(&mut self, exe: &str) {
        if self.proc_bits.contains_key(exe) {
            return;
        }
        let groups = &self.ctx.policy.groups;
        let mut bits = FixedBitSet::with_capacity(groups.len());
        for (i, g) in groups.iter().enumerate() {
            bits.set(i, g.process.as_ref().is_none_or(|set| set.is_match(exe)));
        }
        self.proc_bits.insert(exe.to_string(), bits);
    }

    /// The policy's decision for one flow record.
    pub fn evaluate(&mut self, f: &FlowView<'_>) -> Decision {
        // Bounded caches: start over when one is full (before filling, so every entry
        // this evaluation needs is present below).
        if self.ip_bits.len() >= CACHE_MAX {
            self.ip_bits.clear();
        }
        if self.proc_bits.len() >= CACHE_MAX {
            self.proc_bits.clear();
        }
        let remote_host = self.ctx.ip_hosts.get(&f.remote_ip).cloned();
        self.ensure_host(f.host);
        if let Some(h) = &remote_host {
            self.ensure_host(h);
        }
        self.ensure_ip(f.local_ip);
        self.ensure_ip(f.remote_ip);
        if let Some(exe) = f.exe {
            self.ensure_process(exe);
        }
        let host_of = |id: Option<&str>| {
            id.and_then(|id| self.host_bits.get(id))
                .unwrap_or(&self.unknown_host)
        };
        // Present: ensured above (the fallback, "no address filter", is never used).
        let ip_of = |ip: &IpAddr| self.ip_bits.get(ip).unwrap_or(&self.no_cidr);
        let local = Endpoint {
            host: host_of(Some(f.host)),
            ip: ip_of(&f.local_ip),
            process: f
                .exe
                .and_then(|e| self.proc_bits.get(e))
                .unwrap_or(&self.no_process),
        };
        let remote = Endpoint {
            host: host_of(remote_host.as_deref()),
            ip: ip_of(&f.remote_ip),
            process: &self.no_process,
        };
        let p = &self.ctx.policy;
        let (consumer, provider, port) = if f.outbound {
            (&local, &remote, f.remote_port)
        } else {
            (&remote, &local, f.local_port)
        };
        let consumer_exe = if f.outbound { f.exe } else { None };
        let exact = p
            .by_port
            .get(&(f.proto, port))
            .map_or(&[][..], Vec::as_slice);
        for i in merged(exact, &p.wide) {
            let r = &p.rules[i as usize];
            if !r.ports.iter().any(|s| s.covers(f.proto, port)) {
                continue;
            }
            if !consumer.is(r.consumer) || !provider.is(r.provider) {
                continue;
            }
            // The consumer's process is known only on its own host; elsewhere the
            // condition is left to that host's record of the same connection.
            if let (Some(set), Some(exe)) = (&r.process, consumer_exe) {
                if !set.is_match(exe) {
                    continue;
                }
            } else if r.process.is_some() && f.outbound {
                // Outbound without a known process: the condition cannot hold.
                continue;
            }
            return Decision {
                action: r.action,
                matched: Matched::Rule(i),
                severity: r.severity,
            };
        }
        for (i, c) in p.catch_all.iter().enumerate() {
            if local.is(c.scope) {
                return Decision {
                    action: c.action,
                    matched: Matched::CatchAll(i as u32),
                    severity: c.severity,
                };
            }
        }
        // compile() makes the last catch-all scopeless, and `any` holds every endpoint.
        Decision {
            action: Action::Allow,
            matched: Matched::CatchAll(p.catch_all.len().saturating_sub(1) as u32),
            severity: Severity::Low,
        }
    }
}

struct Endpoint<'a> {
    host: &'a FixedBitSet,
    ip: &'a FixedBitSet,
    process: &'a FixedBitSet,
}

impl Endpoint<'_> {
    fn is(&self, group: usize) -> bool {
        self.host.contains(group) && self.ip.contains(group) && self.process.contains(group)
    }
}

/// Two ascending index lists merged, without duplicates.
fn merged<'a>(a: &'a [u32], b: &'a [u32]) -> impl Iterator<Item = u32> + 'a {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        let next = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) if x == y => {
                i += 1;
                j += 1;
                x
            }
            (Some(&x), Some(&y)) if x < y => {
                i += 1;
                x
            }
            (_, Some(&y)) => {
                j += 1;
                y
            }
            (Some(&x), None) => {
                i += 1;
                x
            }
            (None, None) => return None,
        };
        Some(next)
    })
}
