//! The tokens part of the PostgreSQL backend: API and join tokens (by the hash of their
//! secret) and enrollments. Using a token locks its row, so two nodes enrolling with the
//! last use of a join token cannot both succeed.
use ::postgres::Row;

use super::{PgStore, hosts::rows};
use crate::store::*;

const COLUMNS: &str = "id, name, scope, created_ns, expires_ns, uses_left, revoked";

fn row(r: &Row) -> Result<TokenInfo, StoreError> {
    let scope: String = r.try_get(2)?;
    Ok(TokenInfo {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        scope: Scope::parse(&scope).unwrap_or(Scope::Read),
        created_ns: u(r.try_get(3)?),
        expires_ns: r.try_get::<_, Option<i64>>(4)?.map(u),
        uses_left: r.try_get::<_, Option<i64>>(5)?.map(u),
        revoked: r.try_get(6)?,
    })
}

impl TokenStore for PgStore {
    fn create_token(
        &mut self,
        name: &str,
        scope: Scope,
        hash: &str,
        now_ns: u64,
        expires_ns: Option<u64>,
        uses: Option<u64>,
    ) -> Result<i64, StoreError> {
        self.with_mut(|c, _| {
            Ok(c.query_one(
                "INSERT INTO tokens (name, scope, hash, created_ns, expires_ns, uses_left)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &name,
                    &scope.as_str(),
                    &hash,
                    &ns(now_ns),
                    &expires_ns.map(ns),
                    &uses.map(ns),
                ],
            )?
            .try_get(0)?)
        })
    }

    fn use_token(
        &mut self,
        hash: &str,
        needed: Scope,
        now_ns: u64,
    ) -> Result<Result<TokenInfo, TokenRefusal>, StoreError> {
        self.tx(|tx, _| {
            let Some(r) = tx.query_opt(
                &format!("SELECT {COLUMNS} FROM tokens WHERE hash = $1 FOR UPDATE"),
                &[&hash],
            )?
            else {
                return Ok(Err(TokenRefusal::Unknown));
            };
            let info = row(&r)?;
            let refusal = if info.revoked {
                Some(TokenRefusal::Revoked)
            } else if info.expires_ns.is_some_and(|t| t <= now_ns) {
                Some(TokenRefusal::Expired)
            } else if !info.scope.allows(needed) {
                Some(TokenRefusal::Scope)
            } else if info.uses_left == Some(0) {
                Some(TokenRefusal::UsedUp)
            } else {
                None
            };
            if let Some(r) = refusal {
                return Ok(Err(r));
            }
            tx.execute(
                "UPDATE tokens SET last_used_ns = $2, uses_left = uses_left - 1 WHERE id = $1",
                &[&info.id, &ns(now_ns)],
            )?;
            Ok(Ok(info))
        })
    }

    fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        self.with(|c, _| {
            rows(
                c.query(
                    &format!("SELECT {COLUMNS} FROM tokens ORDER BY id DESC"),
                    &[],
                )?,
                row,
            )
        })
    }

    fn revoke_token(&mut self, id: i64) -> Result<bool, StoreError> {
        self.with_mut(|c, _| {
            Ok(c.execute("UPDATE tokens SET revoked = true WHERE id = $1", &[&id])? == 1)
        })
    }

    fn agent_id_taken(&self, agent_id: &str) -> Result<bool, StoreError> {
        self.with(|c, _| {
            Ok(c.query_one(
                "SELECT EXISTS(SELECT 1 FROM enrollments WHERE agent_id = $1)
                     OR EXISTS(SELECT 1 FROM hosts WHERE agent_id = $1)",
                &[&agent_id],
            )?
            .try_get(0)?)
        })
    }

    fn record_enrollment(
        &mut self,
        agent_id: &str,
        host_name: &str,
        token_id: i64,
        cert_fingerprint: &str,
        now_ns: u64,
    ) -> Result<(), StoreError> {
        self.with_mut(|c, _| {
            c.execute(
                "INSERT INTO enrollments (agent_id, host_name, token_id, cert_fingerprint,
                     enrolled_ns)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &agent_id,
                    &host_name,
                    &token_id,
                    &cert_fingerprint,
                    &ns(now_ns),
                ],
            )?;
            Ok(())
        })
    }
}
