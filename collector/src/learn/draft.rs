//! From clusters to a draft policy: a group per cluster (named after its hosts), groups of
//! external addresses that play the same part, an allow rule per observed (consumer group,
//! provider group, service port), with the process when the consumers used only one, and a
//! catch-all that denies. Items people approved in an earlier version are copied as they
//! were, and learned items with the same names are left out.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use super::{
    cluster::Clustering,
    graph::{Graph, Node},
    yaml::{DocOut, GroupOut, RuleOut, glob_literal},
};
use crate::policy::Document;

/// How groups of hosts are defined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GroupMode {
    /// A list of host names per cluster.
    #[default]
    Clusters,
    /// The labels every member of a cluster shares, when exactly the cluster's hosts have
    /// them; otherwise the host names.
    Labels,
}

impl GroupMode {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "" | "clusters" => Ok(GroupMode::Clusters),
            "labels" => Ok(GroupMode::Labels),
            other => Err(format!("`{other}`: groups are `clusters` or `labels`")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GroupMode::Clusters => "clusters",
            GroupMode::Labels => "labels",
        }
    }
}

/// Approved items of an earlier version, to copy as they are.
#[derive(Clone, Debug, Default)]
pub struct Approved<'a> {
    pub version: i64,
    pub doc: Option<&'a Document>,
    pub groups: BTreeSet<String>,
    pub rules: BTreeSet<String>,
}

/// A group of external addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalGroup {
    pub name: String,
    pub cidrs: Vec<String>,
    pub addresses: usize,
}

/// What [`build`] made.
#[derive(Clone, Debug, Default)]
pub struct Draft {
    pub doc: DocOut,
    /// Cluster index → its group's name.
    pub cluster_groups: Vec<String>,
    /// Clusters whose learned group was left out for an approved one of the same name.
    pub replaced: Vec<bool>,
    pub externals: Vec<ExternalGroup>,
    /// Approved groups and rules copied.
    pub carried_groups: Vec<String>,
    pub carried_rules: Vec<String>,
    /// Rules learned in this run (not copied).
    pub learned_rules: BTreeSet<String>,
}

/// A name usable as a group name: lower case letters, digits, `-`, `_`, `.`.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.') {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').chars().take(100).collect()
}

/// `web-01` → `web`, `db3` → `db`.
fn host_prefix(name: &str) -> &str {
    name.trim_end_matches(|c: char| c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// The most common non-empty value among `values` (ties: the smallest), if more than half
/// of `total` have it.
fn majority<'a>(values: impl Iterator<Item = &'a str>, total: usize) -> Option<&'a str> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for v in values.filter(|v| !v.is_empty()) {
        *count.entry(v).or_default() += 1;
    }
    let (v, n) = count
        .into_iter()
        .fold(None::<(&str, usize)>, |best, (v, n)| match best {
            Some((_, bn)) if bn >= n => best,
            _ => Some((v, n)),
        })?;
    (n * 2 > total).then_some(v)
}

fn cluster_name(g: &Graph, members: &[u32], i: usize) -> String {
    let hosts = || members.iter().map(|h| &g.hosts[*h as usize]);
    if let Some(p) = majority(hosts().map(|h| host_prefix(&h.name)), members.len()) {
        let s = slug(p);
        if !s.is_empty() {
            return s;
        }
    }
    let labels: Vec<String> = hosts().flat_map(|h| h.labels.values().cloned()).collect();
    if let Some(v) = majority(labels.iter().map(String::as_str), members.len()) {
        let s = slug(v);
        if !s.is_empty() {
            return s;
        }
    }
    format!("cluster-{}", i + 1)
}

fn unique(name: String, taken: &BTreeSet<String>) -> String {
    if name != "any" && !taken.contains(&name) {
        return name;
    }
    (2..)
        .map(|n| format!("{name}-{n}"))
        .find(|c| !taken.contains(c))
        .unwrap_or(name)
}

/// External addresses grouped by the part they play, as CIDRs: an IPv4 /24 (IPv6 /64)
/// where at least 4 of a group's addresses are in it, else single addresses.
fn external_groups(g: &Graph, c: &Clustering) -> Vec<(Vec<IpAddr>, Vec<String>)> {
    type Role = (u8, u32, u8, u16);
    let mut roles: BTreeMap<IpAddr, BTreeSet<Role>> = BTreeMap::new();
    for e in &g.edges {
        let k = e.key;
        match (k.consumer, k.provider) {
            (Node::External(ip), Node::Host(h)) => {
                roles
                    .entry(ip)
                    .or_default()
                    .insert((0, c.of_host[h as usize], k.proto, k.port));
            }
            (Node::Host(h), Node::External(ip)) => {
                roles
                    .entry(ip)
                    .or_default()
                    .insert((1, c.of_host[h as usize], k.proto, k.port));
            }
            _ => {}
        }
    }
    let mut by_role: BTreeMap<BTreeSet<Role>, Vec<IpAddr>> = BTreeMap::new();
    for (ip, r) in roles {
        by_role.entry(r).or_default().push(ip);
    }
    let mut out: Vec<(Vec<IpAddr>, Vec<String>)> = by_role
        .into_values()
        .map(|ips| {
            let mut nets: BTreeMap<ipnet::IpNet, Vec<IpAddr>> = BTreeMap::new();
            for ip in &ips {
                let len = if ip.is_ipv4() { 24 } else { 64 };
                if let Ok(n) = ipnet::IpNet::new(*ip, len) {
                    nets.entry(n.trunc()).or_default().push(*ip);
                }
            }
            let mut cidrs = Vec::new();
            for (net, members) in nets {
                if members.len() >= 4 {
                    cidrs.push(net.to_string());
                } else {
                    cidrs.extend(members.iter().map(|a| ipnet::IpNet::from(*a).to_string()));
                }
            }
            (ips, cidrs)
        })
        .collect();
    out.sort();
    out
}

fn port_spec(proto: u8, port: u16) -> (String, String) {
    match proto {
        6 => (format!("tcp/{port}"), format!("tcp-{port}")),
        17 => (format!("udp/{port}"), format!("udp-{port}")),
        1 => ("icmp".into(), "icmp".into()),
        58 => ("icmpv6".into(), "icmpv6".into()),
        n => ("any".into(), format!("ip{n}")),
    }
}

/// Builds the draft. `name` is the document's name.
pub fn build(
    g: &Graph,
    c: &Clustering,
    mode: GroupMode,
    approved: &Approved<'_>,
    name: &str,
) -> Draft {
    let mut d = Draft {
        doc: DocOut {
            name: name.to_string(),
            ..DocOut::default()
        },
        ..Draft::default()
    };
    // Approved items first: they are kept as they were, with the groups their rules use.
    let mut kept_rules = Vec::new();
    if let Some(prev) = approved.doc {
        let mut groups = approved.groups.clone();
        for (i, r) in prev.rules.iter().enumerate() {
            let rname = r
                .value
                .name
                .as_ref()
                .map_or_else(|| format!("rule {}", i + 1), |n| n.value.clone());
            if approved.rules.contains(&rname) {
                let mut out = RuleOut::from(&r.value);
                out.name = Some(rname.clone());
                groups.insert(out.consumer.clone());
                groups.insert(out.provider.clone());
                kept_rules.push(out);
                d.carried_rules.push(rname);
            }
        }
        for gname in &groups {
            if let Some(def) = prev.groups.get(gname) {
                d.doc
                    .groups
                    .insert(gname.clone(), GroupOut::from(&def.value));
                if approved.groups.contains(gname) {
                    d.carried_groups.push(gname.clone());
                }
            }
        }
    }
    let carried: BTreeSet<String> = d.doc.groups.keys().cloned().collect();
    // A group per cluster.
    let mut taken: BTreeSet<String> = BTreeSet::new();
    for (i, cl) in c.clusters.iter().enumerate() {
        let base = cluster_name(g, &cl.members, i);
        // A learned group named like an approved one gives way to it.
        let n = if carried.contains(&base) && !taken.contains(&base) {
            base
        } else {
            unique(base, &taken.union(&carried).cloned().collect())
        };
        taken.insert(n.clone());
        d.replaced.push(carried.contains(&n));
        d.cluster_groups.push(n.clone());
        if carried.contains(&n) {
            continue;
        }
        let members: Vec<&super::graph::HostInfo> =
            cl.members.iter().map(|h| &g.hosts[*h as usize]).collect();
        let mut group = GroupOut {
            comment: Some(format!(
                "cluster {}: {} host(s), confidence {:.2}{}",
                i + 1,
                members.len(),
                cl.confidence,
                if cl.partition.is_empty() {
                    String::new()
                } else {
                    format!(", partition {}", cl.partition)
                }
            )),
            ..GroupOut::default()
        };
        if mode == GroupMode::Labels {
            let mut common = members
                .first()
                .map(|h| h.labels.clone())
                .unwrap_or_default();
            for h in &members {
                common.retain(|k, v| h.labels.get(k) == Some(v));
            }
            let exact = !common.is_empty()
                && g.hosts.iter().enumerate().all(|(hi, h)| {
                    let has = common.iter().all(|(k, v)| h.labels.get(k) == Some(v));
                    has == (c.of_host[hi] as usize == i)
                });
            if exact {
                group.label = common;
            }
        }
        if group.label.is_empty() {
            let names: BTreeSet<String> = members.iter().map(|h| glob_literal(&h.name)).collect();
            group.hostname = names.into_iter().collect();
        }
        d.doc.groups.insert(n, group);
    }
    // External addresses.
    let mut ext_of: BTreeMap<IpAddr, String> = BTreeMap::new();
    for (ips, cidrs) in external_groups(g, c) {
        let base = format!("ext-{}", slug(&cidrs.first().cloned().unwrap_or_default()));
        let all: BTreeSet<String> = taken.union(&carried).cloned().collect();
        let n = unique(base, &all);
        taken.insert(n.clone());
        for ip in &ips {
            ext_of.insert(*ip, n.clone());
        }
        d.externals.push(ExternalGroup {
            name: n.clone(),
            cidrs: cidrs.clone(),
            addresses: ips.len(),
        });
        if !carried.contains(&n) {
            d.doc.groups.insert(
                n,
                GroupOut {
                    cidr: cidrs,
                    comment: Some(format!("{} external address(es)", ips.len())),
                    ..GroupOut::default()
                },
            );
        }
    }
    // Rules: one per (consumer group, provider group, protocol, port).
    struct Acc {
        exes: BTreeSet<String>,
        consumer_is_host: bool,
    }
    let group_of = |n: Node| match n {
        Node::Host(h) => d.cluster_groups[c.of_host[h as usize] as usize].clone(),
        Node::External(ip) => ext_of.get(&ip).cloned().unwrap_or_else(|| "any".into()),
    };
    let mut rules: BTreeMap<(String, String, u8, u16), Acc> = BTreeMap::new();
    for e in &g.edges {
        let k = e.key;
        let acc = rules
            .entry((group_of(k.consumer), group_of(k.provider), k.proto, k.port))
            .or_insert(Acc {
                exes: BTreeSet::new(),
                consumer_is_host: matches!(k.consumer, Node::Host(_)),
            });
        acc.exes.extend(e.consumer_exes.keys().cloned());
        if e.consumer_exes.is_empty() {
            // No record of the consumer's own: its process is unknown.
            acc.exes.insert(String::new());
        }
    }
    let approved_rules: BTreeSet<&str> = d.carried_rules.iter().map(String::as_str).collect();
    d.doc.rules = kept_rules;
    for ((cg, pg, proto, port), acc) in rules {
        let (spec, tag) = port_spec(proto, port);
        let rname = format!("{cg}-to-{pg}-{tag}");
        if approved_rules.contains(rname.as_str()) {
            continue;
        }
        let process = match (acc.consumer_is_host, acc.exes.len(), acc.exes.first()) {
            (true, 1, Some(exe)) if !exe.is_empty() => Some(glob_literal(exe)),
            _ => None,
        };
        d.learned_rules.insert(rname.clone());
        d.doc.rules.push(RuleOut {
            name: Some(rname),
            consumer: cg,
            provider: pg,
            ports: vec![spec],
            process,
            action: "allow",
            rank: "default",
            severity: None,
            comment: None,
        });
    }
    d
}
