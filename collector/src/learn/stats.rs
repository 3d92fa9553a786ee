//! Per-rule statistics of a policy over a conversation graph: every edge is evaluated with
//! the policy engine as its reporter's record would be, so the numbers hold for any
//! version (learned, approved or edited), and the flows no rule allows are counted too.
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

use super::graph::{Graph, Node};
use crate::policy::{
    Action, Compiled, Context, Evaluator, FlowView, Matched,
    eval::host_passes,
    state::{HostMap, IpHostMap},
};

/// What a rule covered in the learning window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleStats {
    pub name: String,
    pub consumer: String,
    pub provider: String,
    pub ports: Vec<String>,
    pub process: Option<String>,
    /// Conversations it decided (each counted once).
    pub flows: u64,
    /// Unix ns of the last one; absent when none.
    pub last_seen_ns: Option<u64>,
    /// Consumer hosts (or external addresses) that used it.
    pub consumers_used: u64,
    /// Enrolled hosts in the consumer group, when it is defined by host names or labels.
    pub consumer_members: Option<u64>,
    /// Most consumer members never used it.
    pub broad: bool,
    /// Nothing in the window used it.
    pub unused: bool,
    /// Approved in an earlier version and copied as it was.
    pub approved: bool,
}

/// Statistics per rule (in file order) and the conversations no allow rule covered.
pub fn rule_stats<'a>(
    g: &'a Graph,
    doc: &super::yaml::DocOut,
    compiled: Arc<Compiled>,
    hosts: &HostMap,
    ip_hosts: &IpHostMap,
    approved: &BTreeSet<String>,
) -> (Vec<RuleStats>, u64) {
    let ctx = Arc::new(Context {
        policy: compiled.clone(),
        version: 0,
        hosts: hosts.clone(),
        ip_hosts: ip_hosts.clone(),
    });
    let mut ev = Evaluator::new(ctx);
    // Compiled rule index → (flows, last seen, consumers).
    let mut acc: BTreeMap<u32, (u64, u64, BTreeSet<Node>)> = BTreeMap::new();
    let mut uncovered = 0u64;
    for e in &g.edges {
        let s = e.sample;
        let reporter = &g.hosts[s.reporter as usize].agent_id;
        let view = |exe: Option<&'a str>| FlowView {
            host: reporter,
            proto: e.key.proto,
            outbound: s.outbound,
            local_ip: s.local_ip,
            local_port: if s.outbound { 0 } else { e.key.port },
            remote_ip: s.remote_ip,
            remote_port: if s.outbound { e.key.port } else { 0 },
            exe,
        };
        // Consumer-side records per process; what the provider saw beyond them goes with
        // the first.
        let mut parts: Vec<(Option<&str>, u64)> = if s.outbound {
            e.consumer_exes
                .iter()
                .map(|(x, n)| ((!x.is_empty()).then_some(x.as_str()), *n))
                .collect()
        } else {
            Vec::new()
        };
        if parts.is_empty() {
            parts.push((None, 0));
        }
        let seen: u64 = parts.iter().map(|p| p.1).sum();
        parts[0].1 += e.flows().saturating_sub(seen);
        for (exe, flows) in parts {
            let d = ev.evaluate(&view(exe));
            match (d.action, d.matched) {
                (Action::Allow, Matched::Rule(i)) => {
                    let a = acc.entry(i).or_insert((0, 0, BTreeSet::new()));
                    a.0 += flows;
                    a.1 = a.1.max(e.last_seen_ns);
                    a.2.insert(e.key.consumer);
                }
                (Action::Allow, Matched::CatchAll(_)) => {}
                (Action::Deny, _) => uncovered += flows,
            }
        }
    }
    let by_name: BTreeMap<&str, u32> = compiled
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| (r.name.as_str(), i as u32))
        .collect();
    let facts: Vec<&crate::policy::HostFacts> = {
        let mut v: Vec<(&String, &crate::policy::HostFacts)> = hosts.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v.into_iter().map(|x| x.1).collect()
    };
    let out = doc
        .rules
        .iter()
        .enumerate()
        .map(|(pos, r)| {
            let name = r
                .name
                .clone()
                .unwrap_or_else(|| format!("rule {}", pos + 1));
            let idx = by_name.get(name.as_str()).copied();
            let (flows, last, used) = idx
                .and_then(|i| acc.get(&i))
                .map_or((0, 0, 0), |a| (a.0, a.1, a.2.len() as u64));
            let members = idx.and_then(|i| {
                let grp = &compiled.groups[compiled.rules[i as usize].consumer];
                let host_defined = (grp.hostname.is_some() || !grp.labels.is_empty())
                    && grp.cidr.is_empty()
                    && grp.process.is_none();
                host_defined.then(|| facts.iter().filter(|f| host_passes(grp, f)).count() as u64)
            });
            RuleStats {
                consumer: r.consumer.clone(),
                provider: r.provider.clone(),
                ports: r.ports.clone(),
                process: r.process.clone(),
                flows,
                last_seen_ns: (flows > 0).then_some(last),
                consumers_used: used,
                consumer_members: members,
                broad: members.is_some_and(|m| m >= 2 && used * 2 < m),
                unused: flows == 0,
                approved: approved.contains(&name),
                name,
            }
        })
        .collect();
    (out, uncovered)
}
