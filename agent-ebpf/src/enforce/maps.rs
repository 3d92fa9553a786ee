//! The isolation programs' maps; the enforcer pins them with the programs' links.
use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap},
};
use cordon_abi::{AllowEntry, EnforceConfig, FlowKey, MAX_ALLOW, RefusedCounters};

/// Entry 0: isolated or not, and how many `ALLOW` entries are in use.
#[map]
pub static ENF_CONFIG: Array<EnforceConfig> = Array::with_max_entries(1, 0);

/// What isolation lets through.
#[map]
pub static ALLOW: Array<AllowEntry> = Array::with_max_entries(MAX_ALLOW, 0);

/// What isolation refused, per flow; the agent reads and deletes the entries.
#[map]
pub static REFUSED: LruHashMap<FlowKey, RefusedCounters> = LruHashMap::with_max_entries(16384, 0);
