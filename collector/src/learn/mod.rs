//! Policy learning (application dependency mapping): the conversation graph of a time
//! window ([`graph`]), hosts clustered by how alike they talk ([`cluster`]), a draft policy
//! from the clusters ([`draft`]) with statistics and flags per rule ([`stats`]), stored as
//! a draft version next to its learning report. Items approved in an earlier version are
//! copied as they were. See `docs/learning.md`.
pub mod cluster;
pub mod draft;
pub mod graph;
pub mod stats;
pub mod yaml;

use std::{collections::BTreeSet, sync::Arc, time::Instant};

use serde::{Deserialize, Serialize};

pub use cluster::{ClusterParams, Clustering, Partition};
pub use draft::GroupMode;
pub use graph::Graph;
pub use stats::RuleStats;

use crate::store::{Approvals, Store, StoreError};

/// What to learn from and how.
#[derive(Clone, Debug, PartialEq)]
pub struct LearnParams {
    /// The window: records active in `[since_ns, until_ns)`.
    pub since_ns: u64,
    pub until_ns: u64,
    pub cluster: ClusterParams,
    pub groups: GroupMode,
    /// The draft's `name`.
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no flows were recorded in the window")]
    NoFlows,
    /// The version holding approvals does not parse any more (newer syntax).
    #[error("the approved items' version {version} does not parse: {message}")]
    Approved { version: i64, message: String },
    /// A learned draft that does not compile is a bug; the text is kept for the report.
    #[error("the learned draft does not compile: {0}")]
    Draft(String),
    #[error("serializing the report: {0}")]
    Json(#[from] serde_json::Error),
}

/// One host of a cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostReport {
    pub name: String,
    pub agent_id: String,
    /// Own-cluster similarity minus the nearest other cluster's, in [0, 1].
    pub confidence: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterReport {
    /// The group it became.
    pub group: String,
    /// Mean of its hosts' confidences.
    pub confidence: f64,
    /// The partition its hosts are in (empty without partitions).
    pub partition: String,
    /// True when an approved group of the same name was kept instead.
    pub replaced_by_approved: bool,
    pub hosts: Vec<HostReport>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExternalReport {
    pub group: String,
    pub cidrs: Vec<String>,
    pub addresses: u64,
}

/// What a learning run found; stored with the draft (`GET /api/v1/policies/{v}/stats`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LearnReport {
    /// The draft version created.
    pub version: i64,
    pub name: String,
    pub since_ns: u64,
    pub until_ns: u64,
    /// Flow records read.
    pub records: u64,
    /// Distinct (consumer, provider, protocol, port) edges.
    pub conversations: u64,
    pub hosts: u64,
    pub rounds: u32,
    pub threshold: f64,
    pub partition: String,
    pub groups_from: String,
    pub elapsed_ms: u64,
    pub clusters: Vec<ClusterReport>,
    pub external_groups: Vec<ExternalReport>,
    pub rules: Vec<RuleStats>,
    /// The version approved items were copied from.
    pub carried_from: Option<i64>,
    pub carried_groups: Vec<String>,
    pub carried_rules: Vec<String>,
    /// Conversations of the window the draft does not allow (0 unless approved items
    /// narrowed it).
    pub uncovered_flows: u64,
}

/// A learned draft before it is stored.
#[derive(Clone, Debug)]
pub struct Learned {
    pub yaml: String,
    pub report: LearnReport,
    pub carried: Approvals,
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn partition_text(p: &Partition) -> String {
    match p {
        Partition::None => String::new(),
        Partition::Label(k) => format!("label:{k}"),
        Partition::Cidrs(n) => format!(
            "cidr:{}",
            n.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// Learns a draft from `store` (reads only). `approvals` are the items to keep.
pub fn learn(
    store: &Store,
    p: &LearnParams,
    approvals: Option<&Approvals>,
) -> Result<Learned, LearnError> {
    let started = Instant::now();
    let g = Graph::from_store(store, p.since_ns, p.until_ns)?;
    if g.edges.is_empty() {
        return Err(LearnError::NoFlows);
    }
    learn_graph(store, &g, p, approvals, started)
}

/// [`learn`] from a graph already built.
pub fn learn_graph(
    store: &Store,
    g: &Graph,
    p: &LearnParams,
    approvals: Option<&Approvals>,
    started: Instant,
) -> Result<Learned, LearnError> {
    let c = cluster::cluster(g, &p.cluster);
    // The version holding the approvals, parsed.
    let prev = match approvals {
        Some(a) => match store.policy(Some(a.version))? {
            Some(row) => Some((
                a,
                crate::policy::parse(&row.body).map_err(|e| LearnError::Approved {
                    version: a.version,
                    message: e.to_string(),
                })?,
            )),
            None => None,
        },
        None => None,
    };
    let approved = draft::Approved {
        version: prev.as_ref().map_or(0, |x| x.0.version),
        doc: prev.as_ref().map(|x| &x.1),
        groups: prev
            .as_ref()
            .map(|x| x.0.groups.iter().map(|g| g.0.clone()).collect())
            .unwrap_or_default(),
        rules: prev
            .as_ref()
            .map(|x| x.0.rules.iter().map(|r| r.0.clone()).collect())
            .unwrap_or_default(),
    };
    let mut d = draft::build(g, &c, p.groups, &approved, &p.name);
    let plain = yaml::emit(&d.doc);
    let (_, compiled) =
        crate::policy::load(&plain).map_err(|e| LearnError::Draft(e.to_string()))?;
    let (hosts, ip_hosts) = crate::policy::state::host_context(&**store)?;
    let carried_rules: BTreeSet<String> = d.carried_rules.iter().cloned().collect();
    let (rules, uncovered) = stats::rule_stats(
        g,
        &d.doc,
        Arc::new(compiled),
        &hosts,
        &ip_hosts,
        &carried_rules,
    );
    // The statistics as comments, for whoever reviews the YAML.
    for (r, s) in d.doc.rules.iter_mut().zip(&rules) {
        let mut flags = Vec::new();
        if s.approved {
            flags.push("approved");
        }
        if s.broad {
            flags.push("BROAD");
        }
        if s.unused {
            flags.push("UNUSED");
        }
        let used = s.consumer_members.map_or_else(String::new, |m| {
            format!(", used by {}/{m}", s.consumers_used)
        });
        r.comment = Some(format!(
            "{} flow(s){}{}{}",
            s.flows,
            used,
            s.last_seen_ns
                .map_or_else(String::new, |t| format!(", last seen {}", time_text(t))),
            if flags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", flags.join(", "))
            }
        ));
    }
    d.doc.header = vec![
        format!(
            "Learned from {} flow records ({} conversations, {} hosts) between {} and {}.",
            g.records,
            g.edges.len(),
            g.hosts.len(),
            time_text(p.since_ns),
            time_text(p.until_ns)
        ),
        "Review it, edit it (groups, rules), approve items, then publish.".into(),
    ];
    let text = yaml::emit(&d.doc);
    crate::policy::load(&text).map_err(|e| LearnError::Draft(e.to_string()))?;
    let clusters = c
        .clusters
        .iter()
        .enumerate()
        .map(|(i, cl)| ClusterReport {
            group: d.cluster_groups[i].clone(),
            confidence: round3(cl.confidence),
            partition: cl.partition.clone(),
            replaced_by_approved: d.replaced[i],
            hosts: cl
                .members
                .iter()
                .map(|h| HostReport {
                    name: g.hosts[*h as usize].name.clone(),
                    agent_id: g.hosts[*h as usize].agent_id.clone(),
                    confidence: round3(c.host_confidence[*h as usize]),
                })
                .collect(),
        })
        .collect();
    let who = |list: &[(String, String)], name: &str| {
        list.iter()
            .find(|x| x.0 == name)
            .map_or_else(String::new, |x| x.1.clone())
    };
    let carried = Approvals {
        version: approved.version,
        groups: d
            .carried_groups
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    approvals.map_or_else(String::new, |a| who(&a.groups, n)),
                )
            })
            .collect(),
        rules: d
            .carried_rules
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    approvals.map_or_else(String::new, |a| who(&a.rules, n)),
                )
            })
            .collect(),
    };
    let report = LearnReport {
        version: 0,
        name: p.name.clone(),
        since_ns: p.since_ns,
        until_ns: p.until_ns,
        records: g.records,
        conversations: g.edges.len() as u64,
        hosts: g.hosts.len() as u64,
        rounds: c.rounds,
        threshold: p.cluster.threshold,
        partition: partition_text(&p.cluster.partition),
        groups_from: p.groups.as_str().into(),
        elapsed_ms: started.elapsed().as_millis() as u64,
        clusters,
        external_groups: d
            .externals
            .iter()
            .map(|e| ExternalReport {
                group: e.name.clone(),
                cidrs: e.cidrs.clone(),
                addresses: e.addresses as u64,
            })
            .collect(),
        rules,
        carried_from: prev.as_ref().map(|x| x.0.version),
        carried_groups: d.carried_groups.clone(),
        carried_rules: d.carried_rules.clone(),
        uncovered_flows: uncovered,
    };
    Ok(Learned {
        yaml: text,
        report,
        carried,
    })
}

fn time_text(ns: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns))
        .to_string()
}

/// Learns from `store` and stores the draft as a new version with its report and the
/// approvals it carried; returns the report (with the version).
pub fn learn_and_store(
    store: &mut Store,
    p: &LearnParams,
    by: &str,
    now_ns: u64,
) -> Result<(LearnReport, String), LearnError> {
    let approvals = store.latest_approvals()?;
    let mut l = learn(store, p, approvals.as_ref())?;
    let json = serde_json::to_string(&l.report)?;
    let version = store.apply_learned_policy(
        &p.name,
        &l.yaml,
        by,
        now_ns,
        (p.since_ns, p.until_ns),
        &json,
        &l.carried,
    )?;
    l.report.version = version;
    // Stored again with its version (the row exists now; the report is small).
    store.set_learning_report(version, &serde_json::to_string(&l.report)?)?;
    Ok((l.report, l.yaml))
}

#[cfg(test)]
mod tests;
