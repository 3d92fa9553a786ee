//! One-time approval links: a random token goes to the approver; the store keeps only its
//! SHA-256, and the first use decides the approval.
use sha2::{Digest, Sha256};

/// 32 random bytes, hex.
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    // getrandom only fails when the OS has no randomness source at all.
    if getrandom::fill(&mut b).is_err() {
        tracing::error!("no randomness for an approval link");
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// The link without its decision (`&decision=approve|deny` is appended).
pub fn url(base: &str, approval: i64, token: &str) -> String {
    format!(
        "{}/api/v1/approvals/{approval}/link?token={token}",
        base.trim_end_matches('/')
    )
}

/// Compares a presented token with the stored hash in constant time.
pub fn matches(token: &str, stored_hash: &str) -> bool {
    crate::tokens::same(&hash(token), stored_hash)
}
