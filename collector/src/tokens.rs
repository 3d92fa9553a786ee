//! Token secrets: `cdn_` and 64 hex digits (256 random bits from the OS). The prefix lets
//! secret scanners and people recognise a Cordon token; the store keeps only the SHA-256.
use sha2::{Digest, Sha256};

const PREFIX: &str = "cdn_";

/// A new secret.
pub fn generate() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("random bytes: {e}"))?;
    Ok(format!("{PREFIX}{}", hex(&bytes)))
}

/// What the store keeps of a secret.
pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.trim().as_bytes()))
}

/// Whether `s` looks like a token at all (a cheap check before any lookup).
pub fn well_formed(s: &str) -> bool {
    s.strip_prefix(PREFIX)
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Constant-time equality of two secrets (or of values derived from them).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Scope, Store, TokenRefusal};

    const NOW: u64 = 1_700_000_000_000_000_000;

    #[test]
    fn secrets_are_random_well_formed_and_stored_only_as_hashes() {
        let (a, b) = (generate().expect("a"), generate().expect("b"));
        assert_ne!(a, b);
        assert!(well_formed(&a) && well_formed(&b));
        assert!(!well_formed("cdn_xyz") && !well_formed(&a[4..]));
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), hash(&b));
        let mut s = Store::in_memory().expect("store");
        s.create_token("ops", Scope::Admin, &hash(&a), NOW, None, None)
            .expect("create");
        let listed = format!("{:?}", s.tokens().expect("list"));
        assert!(!listed.contains(&a[4..]), "the secret was stored: {listed}");
    }

    #[test]
    fn token_checks_scope_expiry_uses_and_revocation() {
        let mut s = Store::in_memory().expect("store");
        let secret = |n: u8| format!("{PREFIX}{}", hex(&[n; 32]));
        let h = |n: u8| hash(&secret(n));
        s.create_token("reader", Scope::Read, &h(1), NOW, None, None)
            .expect("read");
        let admin = s
            .create_token("admin", Scope::Admin, &h(2), NOW, Some(NOW + 10), None)
            .expect("admin");
        s.create_token("join", Scope::Enroll, &h(3), NOW, None, Some(2))
            .expect("enroll");
        let mut check = |n: u8, needed: Scope, at: u64| {
            s.use_token(&h(n), needed, at)
                .expect("store")
                .map(|t| t.name)
        };
        assert_eq!(check(1, Scope::Read, NOW), Ok("reader".into()));
        assert_eq!(check(1, Scope::Admin, NOW), Err(TokenRefusal::Scope));
        assert_eq!(check(1, Scope::Enroll, NOW), Err(TokenRefusal::Scope));
        assert_eq!(check(2, Scope::Read, NOW + 9), Ok("admin".into()));
        assert_eq!(check(2, Scope::Admin, NOW + 10), Err(TokenRefusal::Expired));
        // A join token is not an API token, and it is good for its number of uses.
        assert_eq!(check(3, Scope::Read, NOW), Err(TokenRefusal::Scope));
        assert_eq!(check(3, Scope::Enroll, NOW), Ok("join".into()));
        assert_eq!(check(3, Scope::Enroll, NOW), Ok("join".into()));
        assert_eq!(check(3, Scope::Enroll, NOW), Err(TokenRefusal::UsedUp));
        assert_eq!(check(9, Scope::Read, NOW), Err(TokenRefusal::Unknown));
        assert!(s.revoke_token(admin).expect("revoke"));
        assert_eq!(
            s.use_token(&h(2), Scope::Read, NOW).expect("store"),
            Err(TokenRefusal::Revoked)
        );
        assert!(!s.revoke_token(999).expect("unknown"));
    }
}
