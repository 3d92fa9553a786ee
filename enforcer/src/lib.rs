//! Local isolation for Cordon hosts.
//!
//! An [`Enforcer`] owns one [`Backend`] (today [`NftBackend`], the nftables table
//! `inet cordon`; an eBPF backend comes later) and a state file. Isolation denies everything
//! in and out except loopback, the management channel to the collector (always) and an
//! operator allow-list. The ruleset is kernel state, so it stays in force if the agent dies
//! (fail closed); `tick` re-asserts it if someone flushes it. See `docs/enforcer.md`.

pub mod backend;
pub mod ebpf;
pub mod enforcer;
pub mod error;
pub mod model;
pub mod nft;
pub mod refused;
pub mod state;

pub use backend::{Backend, DropCounters};
pub use ebpf::{DEFAULT_PIN_DIR, EbpfBackend};
pub use enforcer::{Enforcer, SELF_NAME, Status, now_unix};
pub use error::EnforcerError;
pub use model::{AllowRule, AllowRuleError, Exceptions, Isolation, Proto};
pub use nft::NftBackend;
pub use refused::Refused;
pub use state::{Action, Change, DEFAULT_STATE_PATH, State, StateStore};

/// Name of the nftables table the enforcer owns (and the only one it ever touches).
pub const NFT_TABLE: &str = "cordon";

#[cfg(test)]
pub(crate) mod testutil {
    use std::path::PathBuf;

    /// A fresh, not yet created, directory under the system temp dir.
    pub(crate) fn temp_dir(tag: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "cordon-enforcer-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }
}
