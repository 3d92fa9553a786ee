//! The interface every isolation backend implements.

use serde::{Deserialize, Serialize};

use crate::error::EnforcerError;
use crate::model::{Exceptions, Isolation};
use crate::refused::Refused;

/// Packets dropped by the isolation ruleset, per direction, since it was last applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropCounters {
    pub input_packets: u64,
    pub output_packets: u64,
    pub forward_packets: u64,
}

/// An isolation mechanism (nftables or eBPF).
pub trait Backend: Send {
    /// Short name reported to the collector (`"nftables"`).
    fn name(&self) -> &'static str;
    /// Put isolation in force (atomically replacing any previous isolation ruleset).
    fn apply(&mut self, iso: &Isolation, exc: &Exceptions) -> Result<(), EnforcerError>;
    /// Remove isolation; succeeds when there is nothing to remove.
    fn clear(&mut self) -> Result<(), EnforcerError>;
    /// Is our isolation ruleset present and intact?
    fn in_force(&self) -> Result<bool, EnforcerError>;
    /// Drop counters of the ruleset in force, if the backend keeps any.
    fn drop_counters(&self) -> Result<Option<DropCounters>, EnforcerError> {
        Ok(None)
    }
    /// Traffic refused since the previous call, per flow (deltas; empty when the backend
    /// does not count per flow or nothing was refused).
    fn take_refused(&mut self) -> Result<Vec<Refused>, EnforcerError> {
        Ok(Vec::new())
    }
}
