//! Policy versions (draft → published → retired) and host labels.
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::StoreError;

/// Agent id → (host name, labels).
pub type HostFactsMap = HashMap<String, (String, BTreeMap<String, String>)>;

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PolicyRow {
    pub version: i64,
    pub name: String,
    /// draft, published or retired.
    pub state: String,
    pub created_ns: u64,
    pub created_by: String,
    pub published_ns: Option<u64>,
    pub published_by: Option<String>,
    /// The YAML as applied.
    pub body: String,
}

/// Why a publish did not happen.
#[derive(Debug, PartialEq, Eq)]
pub enum PublishRefusal {
    NoSuchVersion,
    NotDraft(String),
}

pub trait PolicyStore {
    /// Stores a checked policy as a new draft; returns its version.
    fn apply_policy(
        &mut self,
        name: &str,
        body: &str,
        by: &str,
        now_ns: u64,
    ) -> Result<i64, StoreError>;

    /// Publishes draft `version`; the previously published one is retired.
    fn publish_policy(
        &mut self,
        version: i64,
        by: &str,
        now_ns: u64,
    ) -> Result<Result<(), PublishRefusal>, StoreError>;

    /// One version, or the published one.
    fn policy(&self, version: Option<i64>) -> Result<Option<PolicyRow>, StoreError>;

    /// Every version, newest first.
    fn policies(&self) -> Result<Vec<PolicyRow>, StoreError>;

    /// Sets (or, with `None`, removes) a label on a host (agent id). False: no such host.
    fn set_label(
        &mut self,
        agent_id: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<bool, StoreError>;

    /// Labels of one host.
    fn labels(&self, agent_id: &str) -> Result<BTreeMap<String, String>, StoreError>;

    /// Every host's name and labels, by agent id (what policy groups are matched against).
    fn host_facts(&self) -> Result<HostFactsMap, StoreError>;

    /// Addresses of every host's interfaces (from its latest inventory) → agent id;
    /// loopback and link-local addresses are left out (they say nothing about who).
    fn host_addresses(&self) -> Result<HashMap<std::net::IpAddr, String>, StoreError>;
}
