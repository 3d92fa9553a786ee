//! Local isolation for Cordon hosts (nftables and eBPF backends). The backends arrive with
//! the isolation work; this crate exists now so the workspace has its final shape.

/// Name of the nftables table the enforcer owns (and the only one it ever touches).
pub const NFT_TABLE: &str = "cordon";
