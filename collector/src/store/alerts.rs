//! Alerts (deduplicated by key), snooze and mute, and the outbox the output sinks read.
use serde::Serialize;

use super::StoreError;
use crate::outputs::Envelope;

/// One alert as listed.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AlertRow {
    pub key_id: String,
    pub severity: String,
    pub host: String,
    pub rule: String,
    pub policy_version: i64,
    pub count: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub snoozed_until_ns: u64,
    pub muted: bool,
    /// The latest alert JSON (Tetration form).
    #[schema(value_type = Object)]
    pub alert: serde_json::Value,
}

#[derive(Clone, Debug, Default)]
pub struct AlertFilter {
    pub host: Option<String>,
    /// At least this severity.
    pub min_severity: Option<crate::policy::Severity>,
    pub since_ns: Option<u64>,
    pub limit: usize,
}

pub trait AlertStore {
    /// Alerts, most recent first.
    fn alerts(&self, f: &AlertFilter) -> Result<Vec<AlertRow>, StoreError>;

    /// Snoozes an alert until `until_ns` (0 ends a snooze); false if unknown.
    fn snooze_alert(&mut self, key_id: &str, until_ns: u64) -> Result<bool, StoreError>;

    /// Mutes or unmutes an alert; false if unknown.
    fn mute_alert(&mut self, key_id: &str, muted: bool) -> Result<bool, StoreError>;

    /// Puts an envelope (a playbook's notification) in the outbox for every output.
    fn queue_envelope(
        &mut self,
        env: &crate::outputs::Envelope,
        now_ns: u64,
    ) -> Result<(), StoreError>;

    /// Up to `limit` outbox entries after `after_id`, in order.
    fn outbox_after(&self, after_id: i64, limit: usize)
    -> Result<Vec<(i64, Envelope)>, StoreError>;

    /// Where sink `sink` is in the outbox (0: nothing delivered yet).
    fn sink_position(&self, sink: &str) -> Result<i64, StoreError>;

    /// Records that `sink` is done with everything up to `id` (`dead` of them given up).
    fn set_sink_position(&mut self, sink: &str, id: i64, dead: u64) -> Result<(), StoreError>;

    /// Deletes outbox entries every sink in `sinks` has passed; returns how many.
    fn prune_outbox(&mut self, sinks: &[&str]) -> Result<usize, StoreError>;
}
