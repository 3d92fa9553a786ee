//! Where a lab's collector runs: one collector on its embedded store ([`Cluster`]), or a
//! cluster of nodes on PostgreSQL and Kafka ([`ClusterLab`]). The response lab, its tests
//! and the demo run on either.
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{
    cluster::Cluster,
    cluster_lab::ClusterLab,
    fleet::{Fleet, FleetHost},
};

/// Both boxed: each is large, and they differ in size.
pub enum Deploy {
    One(Box<Cluster>),
    Nodes(Box<ClusterLab>),
}

impl Deploy {
    pub fn fleet(&self) -> &Fleet {
        match self {
            Deploy::One(c) => &c.fleet,
            Deploy::Nodes(l) => &l.fleet,
        }
    }

    /// The lab's logs and state.
    pub fn dir(&self) -> &Path {
        match self {
            Deploy::One(c) => &c.dir,
            Deploy::Nodes(l) => &l.dir,
        }
    }

    /// `cordon ARGS` (through the first node that runs, in a cluster); must succeed.
    pub fn cordon(&self, args: &[&str]) -> Value {
        match self {
            Deploy::One(c) => c.cordon(args),
            Deploy::Nodes(l) => l.cordon(l.live_node(), args),
        }
    }

    /// The namespace and loopback address of a collector's API and web console (in a
    /// cluster, the first node that runs).
    pub fn console(&self) -> (String, String) {
        match self {
            Deploy::One(c) => (c.fleet.collector_ns.clone(), "127.0.0.1:7480".into()),
            Deploy::Nodes(l) => (
                l.fleet.collector_ns.clone(),
                l.nodes[l.live_node()]
                    .api
                    .trim_start_matches("http://")
                    .to_string(),
            ),
        }
    }

    /// Starts a host's agent and waits until it is connected.
    pub fn start_agent(&self, h: &FleetHost, run: u32) -> (u32, PathBuf) {
        match self {
            Deploy::One(c) => c.start_agent(h, run),
            Deploy::Nodes(l) => l.start_agent(h, run),
        }
    }

    /// The single collector (panics on a cluster).
    pub fn one_mut(&mut self) -> &mut Cluster {
        match self {
            Deploy::One(c) => c,
            Deploy::Nodes(_) => panic!("this lab runs a cluster, not one collector"),
        }
    }

    /// The cluster (panics on a single collector).
    pub fn nodes_mut(&mut self) -> &mut ClusterLab {
        match self {
            Deploy::Nodes(l) => l,
            Deploy::One(_) => panic!("this lab runs one collector, not a cluster"),
        }
    }

    pub fn nodes(&self) -> &ClusterLab {
        match self {
            Deploy::Nodes(l) => l,
            Deploy::One(_) => panic!("this lab runs one collector, not a cluster"),
        }
    }
}
