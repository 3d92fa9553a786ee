//! What policy learning reads and writes: flow records of a time window, streamed without
//! building rows; the learning report stored next to the draft it created; approvals of a
//! version's groups and rules.
use super::StoreError;

/// One flow record as learning sees it, borrowed from the row being read.
#[derive(Clone, Copy, Debug)]
pub struct FlowObservation<'a> {
    /// The reporting host: `hosts.id` (see [`LearnStore::learn_hosts`]).
    pub host_id: i64,
    /// A `start` record (the beginning of a flow); others continue one.
    pub start: bool,
    pub proto: &'a str,
    pub outbound: bool,
    pub local_ip: &'a str,
    pub local_port: u16,
    pub remote_ip: &'a str,
    pub remote_port: u16,
    /// The reporting host's executable, when known.
    pub exe: Option<&'a str>,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
}

/// An enrolled host as learning names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnHost {
    /// `hosts.id`, as in [`FlowObservation::host_id`].
    pub id: i64,
    pub agent_id: String,
    pub host_name: String,
}

/// Approved items of one version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Approvals {
    pub version: i64,
    /// (name, approved by), sorted by name.
    pub groups: Vec<(String, String)>,
    pub rules: Vec<(String, String)>,
}

pub trait LearnStore {
    /// Every enrolled host, by id.
    fn learn_hosts(&self) -> Result<Vec<LearnHost>, StoreError>;

    /// Calls `f` for every flow record active in `[since_ns, until_ns)` (last seen at or
    /// after `since_ns`, first seen before `until_ns`), in storage order, with one query;
    /// the strings are borrowed from SQLite's row. Returns how many records were seen.
    fn for_each_flow(
        &self,
        since_ns: u64,
        until_ns: u64,
        f: &mut dyn FnMut(&FlowObservation<'_>),
    ) -> Result<u64, StoreError>;

    /// Stores a learned draft, its learning report and the approvals it carries over from
    /// an earlier version, in one transaction; returns the new version.
    #[allow(clippy::too_many_arguments)]
    fn apply_learned_policy(
        &mut self,
        name: &str,
        body: &str,
        by: &str,
        now_ns: u64,
        window: (u64, u64),
        report: &str,
        carried: &Approvals,
    ) -> Result<i64, StoreError>;

    /// The learning report stored with `version` (JSON), if it was learned.
    fn learning_report(&self, version: i64) -> Result<Option<String>, StoreError>;

    /// Replaces the learning report of `version`.
    fn set_learning_report(&mut self, version: i64, report: &str) -> Result<(), StoreError>;

    /// Records approvals of groups and rules of `version` by name.
    fn approve_items(
        &mut self,
        version: i64,
        groups: &[String],
        rules: &[String],
        by: &str,
        now_ns: u64,
    ) -> Result<(), StoreError>;

    /// Approvals of one version.
    fn policy_approvals(&self, version: i64) -> Result<Approvals, StoreError>;

    /// The newest version that has approvals, with them: what a learning run keeps.
    fn latest_approvals(&self) -> Result<Option<Approvals>, StoreError>;
}
