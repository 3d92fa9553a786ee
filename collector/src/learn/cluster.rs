//! Grouping hosts whose conversations look alike.
//!
//! Each host gets a set of features: the service ports it offers and consumes, and the
//! same with the peer on the other side (`provides tcp/5432 to X`, `consumes tcp/8080
//! from Y`). Features are weighted by rarity (`ln(1 + hosts / hosts having it)`), so what
//! every host does (being scraped by monitoring, asking DNS) counts less than what sets a
//! tier apart. Similarity is the weighted Jaccard index of two hosts' sets. Agglomerative
//! clustering (average linkage) merges the most similar clusters while their similarity
//! is at least the threshold. Then every peer is replaced by its cluster and the hosts are
//! clustered again, until the clusters no longer change: web servers that talk to
//! different members of the same app tier become alike. Hosts in different partitions are
//! never merged. Everything is sorted, ties go to the lowest index: the same graph gives
//! the same clusters.
use std::collections::{BTreeMap, HashMap};

use ipnet::IpNet;

use super::graph::{Graph, Node};

/// What clusters must not cross.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Partition {
    #[default]
    None,
    /// Hosts with different values of this label (or without it) are never together.
    Label(String),
    /// Hosts are in the first of these networks that holds one of their addresses (or in
    /// none of them) and never clustered across.
    Cidrs(Vec<IpNet>),
}

impl Partition {
    /// `label:KEY` or `cidr:NET[,NET...]`; empty for none.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() || s == "none" {
            return Ok(Partition::None);
        }
        if let Some(k) = s.strip_prefix("label:") {
            if k.is_empty() {
                return Err("`label:` needs a label key".into());
            }
            return Ok(Partition::Label(k.to_string()));
        }
        if let Some(list) = s.strip_prefix("cidr:") {
            let nets = list
                .split(',')
                .map(|c| {
                    let c = c.trim();
                    c.parse::<IpNet>()
                        .or_else(|_| c.parse::<std::net::IpAddr>().map(IpNet::from))
                        .map(|n| n.trunc())
                        .map_err(|_| format!("`{c}` is not a CIDR"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Partition::Cidrs(nets));
        }
        Err(format!(
            "`{s}`: a partition is `label:KEY` or `cidr:NET[,NET...]`"
        ))
    }

    /// The partition a host is in.
    fn of(&self, h: &super::graph::HostInfo) -> String {
        match self {
            Partition::None => String::new(),
            Partition::Label(k) => match h.labels.get(k) {
                Some(v) => format!("{k}={v}"),
                None => format!("{k} unset"),
            },
            Partition::Cidrs(nets) => nets
                .iter()
                .find(|n| h.addresses.iter().any(|a| n.contains(a)))
                .map_or_else(|| "other".into(), ToString::to_string),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ClusterParams {
    /// Clusters are merged while their similarity is at least this (0 to 1).
    pub threshold: f64,
    pub partition: Partition,
    /// Refinement rounds at most.
    pub max_rounds: u32,
}

impl Default for ClusterParams {
    fn default() -> Self {
        Self {
            threshold: 0.6,
            partition: Partition::None,
            max_rounds: 10,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    /// Indices into `Graph::hosts`, ascending.
    pub members: Vec<u32>,
    /// Mean of the members' confidences.
    pub confidence: f64,
    /// The partition its hosts are in (empty without partitions).
    pub partition: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Clustering {
    /// Ordered by their first member.
    pub clusters: Vec<Cluster>,
    /// Host index → cluster index.
    pub of_host: Vec<u32>,
    /// Host index → how much it resembles its own cluster more than the nearest other
    /// (mean similarity to own members − to the nearest other cluster's, in [0, 1]).
    pub host_confidence: Vec<f64>,
    /// Clustering rounds run.
    pub rounds: u32,
}

const EXT: u32 = u32::MAX;

fn feature(kind: u64, proto: u8, port: u16, peer: u32) -> u64 {
    (kind << 56) | (u64::from(proto) << 48) | (u64::from(port) << 32) | u64::from(peer)
}

/// Feature sets of every host, peers named by `peer_id`.
fn features(g: &Graph, peer_id: &dyn Fn(u32) -> u32) -> Vec<Vec<u64>> {
    let mut f: Vec<Vec<u64>> = vec![Vec::new(); g.hosts.len()];
    let id = |n: Node| match n {
        Node::Host(h) => peer_id(h),
        Node::External(_) => EXT,
    };
    for e in &g.edges {
        let k = e.key;
        if let Node::Host(c) = k.consumer {
            f[c as usize].push(feature(0, k.proto, k.port, 0));
            f[c as usize].push(feature(2, k.proto, k.port, id(k.provider)));
        }
        if let Node::Host(p) = k.provider {
            f[p as usize].push(feature(1, k.proto, k.port, 0));
            f[p as usize].push(feature(3, k.proto, k.port, id(k.consumer)));
        }
    }
    for v in &mut f {
        v.sort_unstable();
        v.dedup();
    }
    f
}

/// Hosts with the same partition and features, as one weighted item.
struct Item {
    hosts: Vec<u32>,
    partition: usize,
    features: Vec<u64>,
    weights: Vec<f64>,
    total: f64,
}

fn items(feats: &[Vec<u64>], partitions: &[usize]) -> Vec<Item> {
    let n = feats.len() as f64;
    let mut df: HashMap<u64, u32> = HashMap::new();
    for v in feats {
        for x in v {
            *df.entry(*x).or_default() += 1;
        }
    }
    let mut groups: BTreeMap<(usize, &[u64]), Vec<u32>> = BTreeMap::new();
    for (h, v) in feats.iter().enumerate() {
        groups
            .entry((partitions[h], v.as_slice()))
            .or_default()
            .push(h as u32);
    }
    let mut out: Vec<Item> = groups
        .into_iter()
        .map(|((partition, v), hosts)| {
            let weights: Vec<f64> = v
                .iter()
                .map(|x| (1.0 + n / f64::from(df.get(x).copied().unwrap_or(1).max(1))).ln())
                .collect();
            Item {
                hosts,
                partition,
                features: v.to_vec(),
                total: weights.iter().sum(),
                weights,
            }
        })
        .collect();
    out.sort_by_key(|i| i.hosts[0]);
    out
}

/// Weighted Jaccard index of two items' feature sets.
fn similarity(a: &Item, b: &Item) -> f64 {
    let (mut i, mut j, mut inter) = (0, 0, 0.0);
    while i < a.features.len() && j < b.features.len() {
        match a.features[i].cmp(&b.features[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += a.weights[i];
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.total + b.total - inter;
    if union <= 0.0 { 1.0 } else { inter / union }
}

/// Never merged: items in different partitions.
const APART: f64 = -1.0;

/// Pairwise similarities, row-major.
fn matrix(items: &[Item]) -> Vec<f64> {
    let m = items.len();
    let mut s = vec![0.0; m * m];
    for a in 0..m {
        s[a * m + a] = 1.0;
        for b in a + 1..m {
            let v = if items[a].partition == items[b].partition {
                similarity(&items[a], &items[b])
            } else {
                APART
            };
            s[a * m + b] = v;
            s[b * m + a] = v;
        }
    }
    s
}

/// Average-linkage agglomeration of items; returns item → group (groups numbered by
/// their lowest item).
fn agglomerate(items: &[Item], sim: &[f64], threshold: f64) -> Vec<usize> {
    let m = items.len();
    let mut s = sim.to_vec();
    let mut size: Vec<f64> = items.iter().map(|i| i.hosts.len() as f64).collect();
    let mut active = vec![true; m];
    let mut parent: Vec<usize> = (0..m).collect();
    let best_of = |s: &[f64], active: &[bool], i: usize| {
        let mut best = (f64::NEG_INFINITY, usize::MAX);
        for j in 0..m {
            if j != i && active[j] && s[i * m + j] > best.0 {
                best = (s[i * m + j], j);
            }
        }
        best
    };
    let mut best: Vec<(f64, usize)> = (0..m).map(|i| best_of(&s, &active, i)).collect();
    loop {
        let mut pick: Option<usize> = None;
        for i in 0..m {
            if active[i] && best[i].1 != usize::MAX && pick.is_none_or(|p| best[i].0 > best[p].0) {
                pick = Some(i);
            }
        }
        let Some(i) = pick else { break };
        if best[i].0 < threshold {
            break;
        }
        let (lo, hi) = (i.min(best[i].1), i.max(best[i].1));
        let (nl, nh) = (size[lo], size[hi]);
        for k in 0..m {
            if !active[k] || k == lo || k == hi {
                continue;
            }
            let (a, b) = (s[lo * m + k], s[hi * m + k]);
            let v = if a == APART || b == APART {
                APART
            } else {
                (nl * a + nh * b) / (nl + nh)
            };
            s[lo * m + k] = v;
            s[k * m + lo] = v;
        }
        active[hi] = false;
        size[lo] += nh;
        parent[hi] = lo;
        best[hi] = (f64::NEG_INFINITY, usize::MAX);
        best[lo] = best_of(&s, &active, lo);
        for k in 0..m {
            if !active[k] || k == lo {
                continue;
            }
            if best[k].1 == lo || best[k].1 == hi {
                best[k] = best_of(&s, &active, k);
            } else {
                let v = s[k * m + lo];
                if v > best[k].0 || (v == best[k].0 && lo < best[k].1) {
                    best[k] = (v, lo);
                }
            }
        }
    }
    (0..m)
        .map(|mut i| {
            while parent[i] != i {
                i = parent[i];
            }
            i
        })
        .collect()
}

/// Host → cluster, clusters numbered by their first host.
fn canonical(n_hosts: usize, items: &[Item], group_of_item: &[usize]) -> Vec<u32> {
    let mut of_host = vec![0usize; n_hosts];
    for (i, it) in items.iter().enumerate() {
        for h in &it.hosts {
            of_host[*h as usize] = group_of_item[i];
        }
    }
    let mut number: HashMap<usize, u32> = HashMap::new();
    of_host
        .iter()
        .map(|g| {
            let next = number.len() as u32;
            *number.entry(*g).or_insert(next)
        })
        .collect()
}

/// Clusters the hosts of `g`.
pub fn cluster(g: &Graph, p: &ClusterParams) -> Clustering {
    let n = g.hosts.len();
    let names: Vec<String> = g.hosts.iter().map(|h| p.partition.of(h)).collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    let partitions: Vec<usize> = names
        .iter()
        .map(|x| sorted.binary_search(x).unwrap_or(0))
        .collect();
    let threshold = p.threshold.clamp(0.0, 1.0);
    let mut assignment: Vec<u32> = (0..n as u32).collect();
    let mut rounds = 0;
    let (mut its, mut sim);
    loop {
        rounds += 1;
        let feats = if rounds == 1 {
            features(g, &|h| h)
        } else {
            let a = &assignment;
            features(g, &|h| a[h as usize])
        };
        its = items(&feats, &partitions);
        sim = matrix(&its);
        let groups = agglomerate(&its, &sim, threshold);
        let next = canonical(n, &its, &groups);
        let stable = rounds > 1 && next == assignment;
        assignment = next;
        if stable || rounds >= p.max_rounds.max(1) {
            break;
        }
    }
    confidence(n, &its, &sim, assignment, &names, rounds)
}

fn confidence(
    n: usize,
    its: &[Item],
    sim: &[f64],
    of_host: Vec<u32>,
    names: &[String],
    rounds: u32,
) -> Clustering {
    let m = its.len();
    let k = of_host.iter().map(|c| *c as usize + 1).max().unwrap_or(0);
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); k];
    for (h, c) in of_host.iter().enumerate() {
        members[*c as usize].push(h as u32);
    }
    // Items of each cluster, with their weights (host counts).
    let mut cl_items: Vec<Vec<(usize, f64)>> = vec![Vec::new(); k];
    for (i, it) in its.iter().enumerate() {
        let c = of_host[it.hosts[0] as usize] as usize;
        cl_items[c].push((i, it.hosts.len() as f64));
    }
    let mut host_confidence = vec![0.0; n];
    for a in 0..m {
        let own_c = of_host[its[a].hosts[0] as usize] as usize;
        let mean = |c: usize, skip_self: bool| {
            let (mut sum, mut cnt) = (0.0, 0.0);
            for &(b, w) in &cl_items[c] {
                sum += w * sim[a * m + b];
                cnt += w;
            }
            if skip_self {
                sum -= 1.0;
                cnt -= 1.0;
            }
            if cnt <= 0.0 { 1.0 } else { sum / cnt }
        };
        let own = mean(own_c, true);
        let mut nearest: f64 = 0.0;
        for c in 0..k {
            if c != own_c && sim[a * m + cl_items[c][0].0] != APART {
                nearest = nearest.max(mean(c, false));
            }
        }
        let conf = (own - nearest).clamp(0.0, 1.0);
        for h in &its[a].hosts {
            host_confidence[*h as usize] = conf;
        }
    }
    let clusters = members
        .into_iter()
        .map(|hs| Cluster {
            confidence: hs.iter().map(|h| host_confidence[*h as usize]).sum::<f64>()
                / hs.len().max(1) as f64,
            partition: hs
                .first()
                .map_or_else(String::new, |h| names[*h as usize].clone()),
            members: hs,
        })
        .collect();
    Clustering {
        clusters,
        of_host,
        host_confidence,
        rounds,
    }
}
