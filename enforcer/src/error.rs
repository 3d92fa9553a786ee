//! Errors of the enforcer library.

use std::path::PathBuf;

/// Everything that can go wrong while isolating, releasing or reading state.
#[derive(Debug, thiserror::Error)]
pub enum EnforcerError {
    /// The `nft` program (or its command prefix) could not be started.
    #[error("cannot run {program:?} to {action}: {source}")]
    NftSpawn {
        program: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// `nft` ran but refused the request.
    #[error("nft failed to {action} (exit status {status}): {stderr}")]
    NftFailed {
        action: &'static str,
        status: String,
        stderr: String,
    },
    /// `nft` printed something we could not understand.
    #[error("cannot read nft output while trying to {action}: {detail}")]
    NftOutput {
        action: &'static str,
        detail: String,
    },
    /// Reading or writing the state file failed.
    #[error("state file {path}: {source}")]
    StateIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The state file exists but is not valid.
    #[error("state file {path} is not valid: {detail}")]
    StateInvalid { path: PathBuf, detail: String },
    /// Loading, attaching, pinning or reading the eBPF isolation programs failed.
    #[error("eBPF enforcement: {0}")]
    Ebpf(String),
    /// A request was rejected before anything was changed.
    #[error("invalid {field}: {detail}")]
    Invalid { field: &'static str, detail: String },
}
