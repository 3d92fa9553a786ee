//! Playbook runs, their steps and approvals: everything a run needs to resume after a
//! collector restart. Each transition is one transaction, with its audit entry.
use serde::Serialize;
use serde_json::Value;

use super::{StoreError, commands::NewCommand};

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RunRow {
    pub id: i64,
    pub playbook: String,
    pub alert_key: String,
    pub agent_id: String,
    pub host_name: String,
    #[schema(value_type = Object)]
    pub facts: Value,
    #[schema(value_type = Object)]
    pub context: Value,
    /// running, waiting, done or failed.
    pub state: String,
    /// The step in progress; absent when finished.
    pub step: Option<String>,
    /// 0 before the step started its external work, then 1.
    pub phase: i64,
    pub attempts: i64,
    pub wake_ns: u64,
    pub created_ns: u64,
    pub updated_ns: u64,
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RunStepRow {
    pub step: String,
    pub kind: String,
    /// done, failed or retry.
    pub state: String,
    pub started_ns: u64,
    pub finished_ns: u64,
    #[schema(value_type = Object)]
    pub detail: Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ApprovalRow {
    pub id: i64,
    pub run_id: i64,
    pub step: String,
    pub via: String,
    pub username: String,
    /// pending, approved, denied or timed_out.
    pub state: String,
    pub question: String,
    pub requested_ns: u64,
    pub deadline_ns: u64,
    pub decided_ns: Option<u64>,
    pub decided_by: Option<String>,
    #[serde(skip)]
    pub duo_txid: Option<String>,
    #[serde(skip)]
    pub link_hash: Option<String>,
}

/// One finished step (or attempt), for `run_steps`.
pub struct StepRecord<'a> {
    pub step: &'a str,
    pub kind: &'a str,
    pub state: &'a str,
    pub started_ns: u64,
    pub detail: Value,
}

/// Where a run goes after a step.
pub enum Next<'a> {
    /// On to this step (running).
    Step(&'a str),
    /// Finished.
    Done,
    /// Failed for good, with why.
    Failed(&'a str),
}

pub trait RunStore {
    /// Starts a run of `playbook` for an alert, unless one is already unfinished for the
    /// same playbook and alert key; returns the new run's id.
    #[allow(clippy::too_many_arguments)]
    fn start_run(
        &mut self,
        playbook: &str,
        alert_key: &str,
        agent_id: &str,
        host_name: &str,
        facts: &Value,
        first_step: &str,
        now_ns: u64,
    ) -> Result<Option<i64>, StoreError>;

    /// Unfinished runs whose wake time has come, oldest first.
    /// Claims up to `limit` unfinished runs whose wake time has come and that no live
    /// engine holds, for `owner` until `now_ns + lease_ns`, oldest first. The end of the
    /// step ([`finish_step`](Self::finish_step) or [`park_run`](Self::park_run)) gives the
    /// claim back; what a step records on its way ([`run_command`](Self::run_command),
    /// [`request_approval`](Self::request_approval)) keeps it, so no other engine starts
    /// the same step while this one is in the middle of it (say, between recording an
    /// approval and sending its Duo push). An engine that dies mid-step leaves the claim
    /// to expire, and another engine takes the run over then. On PostgreSQL the claim skips rows another engine
    /// is claiming at the same moment (`FOR UPDATE SKIP LOCKED`), so two nodes never get
    /// the same run.
    fn claim_due_runs(
        &mut self,
        now_ns: u64,
        limit: usize,
        owner: &str,
        lease_ns: u64,
    ) -> Result<Vec<RunRow>, StoreError>;

    fn run(&self, id: i64) -> Result<Option<RunRow>, StoreError>;

    /// Runs, newest first (only those in `state`, if given).
    fn runs(&self, state: Option<&str>, limit: usize) -> Result<Vec<RunRow>, StoreError>;

    fn run_steps(&self, run_id: i64) -> Result<Vec<RunStepRow>, StoreError>;

    /// Records a finished step and moves the run on, in one transaction.
    fn finish_step(
        &mut self,
        run: &RunRow,
        rec: &StepRecord<'_>,
        context: &Value,
        next: Next<'_>,
        now_ns: u64,
    ) -> Result<(), StoreError>;

    /// The step is under way: it waits (external answer, deadline, backoff) until `wake_ns`.
    #[allow(clippy::too_many_arguments)]
    fn park_run(
        &mut self,
        run_id: i64,
        phase: i64,
        attempts: i64,
        context: &Value,
        wake_ns: u64,
        error: Option<&str>,
        now_ns: u64,
    ) -> Result<(), StoreError>;

    /// Queues a command for the run's host and records its id in the run, atomically, so a
    /// restart never sends the step's command twice.
    fn run_command(
        &mut self,
        run: &RunRow,
        context: &Value,
        c: &NewCommand,
        now_ns: u64,
    ) -> Result<Option<i64>, StoreError>;

    /// State of command `id` (pending, sent, done, failed) and its result.
    fn command_state(&self, id: i64) -> Result<Option<(String, Option<String>)>, StoreError>;

    /// Opens an approval for a run's step and parks the run on it.
    #[allow(clippy::too_many_arguments)]
    fn request_approval(
        &mut self,
        run: &RunRow,
        via: &str,
        username: &str,
        question: &str,
        deadline_ns: u64,
        link_hash: Option<&str>,
        context: &Value,
        now_ns: u64,
    ) -> Result<i64, StoreError>;

    fn set_duo_txid(&mut self, approval_id: i64, txid: &str) -> Result<(), StoreError>;

    fn approval(&self, id: i64) -> Result<Option<ApprovalRow>, StoreError>;

    fn approval_for(&self, run_id: i64, step: &str) -> Result<Option<ApprovalRow>, StoreError>;

    /// Approvals, newest first (only those in `state`, if given).
    fn approvals(&self, state: Option<&str>, limit: usize) -> Result<Vec<ApprovalRow>, StoreError>;

    /// Decides a pending approval (approved, denied or timed_out) and wakes its run; `None`
    /// if there is no such approval or it was already decided (the first answer wins).
    fn decide_approval(
        &mut self,
        id: i64,
        state: &str,
        by: &str,
        now_ns: u64,
    ) -> Result<Option<ApprovalRow>, StoreError>;
}
