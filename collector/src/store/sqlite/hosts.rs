//! The hosts part of the SQLite backend.
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::store::*;

const SELECT: &str = "SELECT h.agent_id, h.host_name, h.agent_version, h.capture,
        h.first_seen_ns, h.last_seen_ns, h.last_seq, h.revoked, i.updated_ns, h.isolated,
        h.isolated_since_ns, h.isolated_by, h.isolation_reason, h.isolation_expires_ns,
        h.enforcement_backend, h.node, h.connected_ns
    FROM hosts h LEFT JOIN inventory i ON i.host_id = h.id";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HostRow> {
    Ok(HostRow {
        id: r.get(0)?,
        host_name: r.get(1)?,
        agent_version: r.get(2)?,
        capture: r.get(3)?,
        first_seen_ns: u(r.get(4)?),
        last_seen_ns: u(r.get(5)?),
        last_seq: u(r.get(6)?),
        revoked: r.get(7)?,
        inventory_updated_ns: r.get::<_, Option<i64>>(8)?.map(u),
        isolated: r.get(9)?,
        isolated_since_ns: r.get::<_, Option<i64>>(10)?.map(u),
        isolated_by: r.get(11)?,
        isolation_reason: r.get(12)?,
        isolation_expires_ns: r.get::<_, Option<i64>>(13)?.map(u),
        enforcement_backend: r.get(14)?,
        node: r.get(15)?,
        connected_ns: r.get::<_, Option<i64>>(16)?.map(u),
    })
}

impl HostStore for SqliteStore {
    fn hosts(&self) -> Result<Vec<HostRow>, StoreError> {
        let mut q = self
            .conn
            .prepare(&format!("{SELECT} ORDER BY h.host_name, h.agent_id"))?;
        let rows = q.query_map([], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn host(&self, id_or_name: &str) -> Result<Option<HostRow>, StoreError> {
        if let Some(h) = self
            .conn
            .query_row(
                &format!("{SELECT} WHERE h.agent_id = ?1"),
                [id_or_name],
                row,
            )
            .optional()?
        {
            return Ok(Some(h));
        }
        let mut q = self
            .conn
            .prepare(&format!("{SELECT} WHERE h.host_name = ?1 LIMIT 2"))?;
        let found: Vec<HostRow> = q.query_map([id_or_name], row)?.collect::<Result<_, _>>()?;
        Ok(match found.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        })
    }

    fn host_connected(
        &mut self,
        agent_id: &str,
        host_name: &str,
        agent_version: &str,
        capture: &str,
        now_ns: u64,
    ) -> Result<(i64, u64), StoreError> {
        let now = ns(now_ns);
        self.conn.execute(
            "INSERT INTO hosts (agent_id, host_name, agent_version, capture, first_seen_ns, last_seen_ns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT(agent_id) DO UPDATE SET host_name = ?2, agent_version = ?3,
                 capture = ?4, last_seen_ns = ?5",
            params![agent_id, host_name, agent_version, capture, now],
        )?;
        let (id, seq): (i64, i64) = self.conn.query_row(
            "SELECT id, last_seq FROM hosts WHERE agent_id = ?1",
            [agent_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((id, u64::try_from(seq).unwrap_or(0)))
    }

    fn is_revoked(&self, agent_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT revoked FROM hosts WHERE agent_id = ?1",
                [agent_id],
                |r| r.get::<_, bool>(0),
            )
            .optional()?
            .unwrap_or(false))
    }

    fn revoke(&mut self, agent_id: &str) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "UPDATE hosts SET revoked = 1 WHERE agent_id = ?1",
            [agent_id],
        )? == 1)
    }

    fn store_inventory(
        &mut self,
        agent_id: &str,
        body: &[u8],
        now_ns: u64,
    ) -> Result<(), StoreError> {
        let n = self.conn.execute(
            "INSERT INTO inventory (host_id, updated_ns, body)
             SELECT id, ?2, ?3 FROM hosts WHERE agent_id = ?1
             ON CONFLICT(host_id) DO UPDATE SET updated_ns = ?2, body = ?3",
            params![agent_id, ns(now_ns), body],
        )?;
        if n == 0 {
            return Err(StoreError::UnknownAgent(agent_id.to_string()));
        }
        Ok(())
    }

    fn inventory(&self, agent_id: &str) -> Result<Option<cordon_wire::Inventory>, StoreError> {
        let body: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT i.body FROM inventory i JOIN hosts h ON h.id = i.host_id WHERE h.agent_id = ?1",
                [agent_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(body.and_then(|b| match cordon_wire::decode(&b) {
            Ok(cordon_wire::Message::Inventory(inv)) => Some(inv),
            _ => None,
        }))
    }
}
