//! The tokens part of the SQLite backend.
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::store::*;

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenInfo> {
    let scope: String = r.get(2)?;
    Ok(TokenInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        scope: Scope::parse(&scope).unwrap_or(Scope::Read),
        created_ns: r.get::<_, i64>(3)?.max(0) as u64,
        expires_ns: r.get::<_, Option<i64>>(4)?.map(|v| v.max(0) as u64),
        uses_left: r.get::<_, Option<i64>>(5)?.map(|v| v.max(0) as u64),
        revoked: r.get(6)?,
    })
}

const COLUMNS: &str = "id, name, scope, created_ns, expires_ns, uses_left, revoked";

impl TokenStore for SqliteStore {
    fn create_token(
        &mut self,
        name: &str,
        scope: Scope,
        hash: &str,
        now_ns: u64,
        expires_ns: Option<u64>,
        uses: Option<u64>,
    ) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO tokens (name, scope, hash, created_ns, expires_ns, uses_left)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                name,
                scope.as_str(),
                hash,
                ns(now_ns),
                expires_ns.map(ns),
                uses.map(ns)
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn use_token(
        &mut self,
        hash: &str,
        needed: Scope,
        now_ns: u64,
    ) -> Result<Result<TokenInfo, TokenRefusal>, StoreError> {
        let tx = self.write_tx()?;
        let found = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM tokens WHERE hash = ?1"),
                [hash],
                row,
            )
            .optional()?;
        let Some(info) = found else {
            return Ok(Err(TokenRefusal::Unknown));
        };
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
            "UPDATE tokens SET last_used_ns = ?2,
                uses_left = CASE WHEN uses_left IS NULL THEN NULL ELSE uses_left - 1 END
             WHERE id = ?1",
            params![info.id, ns(now_ns)],
        )?;
        tx.commit()?;
        Ok(Ok(info))
    }

    fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let mut q = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM tokens ORDER BY id DESC"))?;
        let rows = q.query_map([], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn revoke_token(&mut self, id: i64) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .execute("UPDATE tokens SET revoked = 1 WHERE id = ?1", [id])?
            == 1)
    }

    fn agent_id_taken(&self, agent_id: &str) -> Result<bool, StoreError> {
        Ok(self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM enrollments WHERE agent_id = ?1)
                 OR EXISTS(SELECT 1 FROM hosts WHERE agent_id = ?1)",
            [agent_id],
            |r| r.get(0),
        )?)
    }

    fn record_enrollment(
        &mut self,
        agent_id: &str,
        host_name: &str,
        token_id: i64,
        cert_fingerprint: &str,
        now_ns: u64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO enrollments (agent_id, host_name, token_id, cert_fingerprint, enrolled_ns)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![agent_id, host_name, token_id, cert_fingerprint, ns(now_ns)],
        )?;
        Ok(())
    }
}
