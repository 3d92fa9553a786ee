//! API tokens and join (enrollment) tokens. Only a hash of each secret is stored; a token
//! is found by the hash of what a client presents.
use serde::Serialize;

use super::StoreError;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read the API.
    Read,
    /// Read and change through the API (tokens, and later isolation and policy).
    Admin,
    /// Enroll agents (not valid on the API).
    Enroll,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
            Scope::Enroll => "enroll",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Scope::Read),
            "admin" => Some(Scope::Admin),
            "enroll" => Some(Scope::Enroll),
            _ => None,
        }
    }

    /// Whether a token of this scope may do what `needed` requires.
    pub fn allows(self, needed: Scope) -> bool {
        match needed {
            Scope::Read => matches!(self, Scope::Read | Scope::Admin),
            Scope::Admin => self == Scope::Admin,
            Scope::Enroll => self == Scope::Enroll,
        }
    }
}

/// A token's record (never its secret).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub scope: Scope,
    pub created_ns: u64,
    pub expires_ns: Option<u64>,
    pub uses_left: Option<u64>,
    pub revoked: bool,
}

/// Why a presented token was not accepted (kept vague towards the client, precise in logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("unknown token")]
    Unknown,
    #[error("token revoked")]
    Revoked,
    #[error("token expired")]
    Expired,
    #[error("token used up")]
    UsedUp,
    #[error("token scope does not allow this")]
    Scope,
}

pub trait TokenStore {
    /// Records a new token by the hash of its secret; returns its id.
    fn create_token(
        &mut self,
        name: &str,
        scope: Scope,
        hash: &str,
        now_ns: u64,
        expires_ns: Option<u64>,
        uses: Option<u64>,
    ) -> Result<i64, StoreError>;

    /// Checks a presented token (by hash) for `needed`; for enroll tokens this also uses
    /// one enrollment up, in the same transaction.
    fn use_token(
        &mut self,
        hash: &str,
        needed: Scope,
        now_ns: u64,
    ) -> Result<Result<TokenInfo, TokenRefusal>, StoreError>;

    /// Every token, newest first.
    fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError>;

    /// Revokes token `id`; false if there is none.
    fn revoke_token(&mut self, id: i64) -> Result<bool, StoreError>;

    /// Whether an agent id is in use (enrolled, or seen connected).
    fn agent_id_taken(&self, agent_id: &str) -> Result<bool, StoreError>;

    /// Records that `agent_id` was enrolled with token `token_id`.
    fn record_enrollment(
        &mut self,
        agent_id: &str,
        host_name: &str,
        token_id: i64,
        cert_fingerprint: &str,
        now_ns: u64,
    ) -> Result<(), StoreError>;
}
