//! The coordination part of the SQLite backend. One collector writes this file, so a
//! lease is a row it always gets; the same calls serve a cluster on PostgreSQL.
use rusqlite::params;

use super::SqliteStore;
use crate::store::*;

impl ClusterStore for SqliteStore {
    fn try_lease(
        &mut self,
        name: &str,
        owner: &str,
        now_ns: u64,
        ttl_ns: u64,
    ) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "INSERT INTO leases (name, owner, until_ns) VALUES (?1, ?2, ?4)
             ON CONFLICT(name) DO UPDATE SET owner = ?2, until_ns = ?4
                 WHERE leases.owner = ?2 OR leases.until_ns <= ?3",
            params![name, owner, ns(now_ns), ns(now_ns.saturating_add(ttl_ns))],
        )?;
        Ok(n == 1)
    }

    fn renew(&mut self, owner: &str, now_ns: u64, ttl_ns: u64) -> Result<(), StoreError> {
        let until = ns(now_ns.saturating_add(ttl_ns));
        self.conn.execute(
            "UPDATE leases SET until_ns = ?2 WHERE owner = ?1",
            params![owner, until],
        )?;
        self.conn.execute(
            "UPDATE runs SET lease_until_ns = ?2 WHERE owner = ?1 AND lease_until_ns > 0",
            params![owner, until],
        )?;
        Ok(())
    }

    fn release_lease(&mut self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM leases WHERE name = ?1 AND owner = ?2",
            params![name, owner],
        )?;
        Ok(())
    }

    fn heartbeat(&mut self, node: &NodeInfo<'_>, now_ns: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO nodes (name, agent_addr, api_addr, version, started_ns, heartbeat_ns, stats)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)
             ON CONFLICT(name) DO UPDATE SET agent_addr = ?2, api_addr = ?3, version = ?4,
                 heartbeat_ns = ?5, stats = ?6",
            params![
                node.name,
                node.agent_addr,
                node.api_addr,
                node.version,
                ns(now_ns),
                node.stats.to_string()
            ],
        )?;
        Ok(())
    }

    fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        let mut q = self.conn.prepare(
            "SELECT name, agent_addr, api_addr, version, started_ns, heartbeat_ns, stats
             FROM nodes ORDER BY name",
        )?;
        let rows = q.query_map([], |r| {
            let stats: String = r.get(6)?;
            Ok(NodeRow {
                name: r.get(0)?,
                agent_addr: r.get(1)?,
                api_addr: r.get(2)?,
                version: r.get(3)?,
                started_ns: u(r.get(4)?),
                heartbeat_ns: u(r.get(5)?),
                stats: serde_json::from_str(&stats).unwrap_or(serde_json::Value::Null),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn forget_node(&mut self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM nodes WHERE name = ?1", [name])?;
        self.conn.execute(
            "UPDATE hosts SET node = NULL, connected_ns = NULL WHERE node = ?1",
            [name],
        )?;
        Ok(n == 1)
    }

    fn agent_connected(
        &mut self,
        agent_id: &str,
        node: &str,
        now_ns: u64,
    ) -> Result<(), StoreError> {
        let n = self.conn.execute(
            "UPDATE hosts SET node = ?2, connected_ns = ?3 WHERE agent_id = ?1",
            params![agent_id, node, ns(now_ns)],
        )?;
        if n == 0 {
            return Err(StoreError::UnknownAgent(agent_id.to_string()));
        }
        Ok(())
    }

    fn agent_disconnected(&mut self, agent_id: &str, node: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE hosts SET node = NULL, connected_ns = NULL WHERE agent_id = ?1 AND node = ?2",
            params![agent_id, node],
        )?;
        Ok(())
    }
}
