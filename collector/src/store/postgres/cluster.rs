//! The coordination part of the PostgreSQL backend: leases (an upsert that only takes a
//! lease that is free, expired or already the caller's, so exactly one node holds it),
//! node heartbeats, and which node each agent is connected to.
use super::{PgStore, hosts::rows, json};
use crate::store::*;

impl ClusterStore for PgStore {
    fn try_lease(
        &mut self,
        name: &str,
        owner: &str,
        now_ns: u64,
        ttl_ns: u64,
    ) -> Result<bool, StoreError> {
        self.with_mut(|c, _| {
            let n = c.execute(
                "INSERT INTO leases (name, owner, until_ns) VALUES ($1, $2, $4)
                 ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner,
                     until_ns = EXCLUDED.until_ns
                 WHERE leases.owner = EXCLUDED.owner OR leases.until_ns <= $3",
                &[
                    &name,
                    &owner,
                    &ns(now_ns),
                    &ns(now_ns.saturating_add(ttl_ns)),
                ],
            )?;
            Ok(n == 1)
        })
    }

    fn renew(&mut self, owner: &str, now_ns: u64, ttl_ns: u64) -> Result<(), StoreError> {
        let until = ns(now_ns.saturating_add(ttl_ns));
        self.with_mut(|c, _| {
            let mut tx = c.transaction()?;
            tx.execute(
                "UPDATE leases SET until_ns = $2 WHERE owner = $1",
                &[&owner, &until],
            )?;
            tx.execute(
                "UPDATE runs SET lease_until_ns = $2 WHERE owner = $1 AND lease_until_ns > 0",
                &[&owner, &until],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn release_lease(&mut self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.with_mut(|c, _| {
            c.execute(
                "DELETE FROM leases WHERE name = $1 AND owner = $2",
                &[&name, &owner],
            )?;
            Ok(())
        })
    }

    fn heartbeat(&mut self, node: &NodeInfo<'_>, now_ns: u64) -> Result<(), StoreError> {
        self.with_mut(|c, _| {
            c.execute(
                "INSERT INTO nodes (name, agent_addr, api_addr, version, started_ns,
                     heartbeat_ns, stats)
                 VALUES ($1, $2, $3, $4, $5, $5, $6)
                 ON CONFLICT (name) DO UPDATE SET agent_addr = EXCLUDED.agent_addr,
                     api_addr = EXCLUDED.api_addr, version = EXCLUDED.version,
                     heartbeat_ns = EXCLUDED.heartbeat_ns, stats = EXCLUDED.stats",
                &[
                    &node.name,
                    &node.agent_addr,
                    &node.api_addr,
                    &node.version,
                    &ns(now_ns),
                    &node.stats.to_string(),
                ],
            )?;
            Ok(())
        })
    }

    fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        self.with(|c, _| {
            rows(
                c.query(
                    "SELECT name, agent_addr, api_addr, version, started_ns, heartbeat_ns, stats
                     FROM nodes ORDER BY name",
                    &[],
                )?,
                |r| {
                    let stats: String = r.try_get(6)?;
                    Ok(NodeRow {
                        name: r.try_get(0)?,
                        agent_addr: r.try_get(1)?,
                        api_addr: r.try_get(2)?,
                        version: r.try_get(3)?,
                        started_ns: u(r.try_get(4)?),
                        heartbeat_ns: u(r.try_get(5)?),
                        stats: json(&stats),
                    })
                },
            )
        })
    }

    fn forget_node(&mut self, name: &str) -> Result<bool, StoreError> {
        self.tx(|tx, _| {
            let n = tx.execute("DELETE FROM nodes WHERE name = $1", &[&name])?;
            tx.execute(
                "UPDATE hosts SET node = NULL, connected_ns = NULL WHERE node = $1",
                &[&name],
            )?;
            Ok(n == 1)
        })
    }

    fn agent_connected(
        &mut self,
        agent_id: &str,
        node: &str,
        now_ns: u64,
    ) -> Result<(), StoreError> {
        self.with_mut(|c, _| {
            let n = c.execute(
                "UPDATE hosts SET node = $2, connected_ns = $3 WHERE agent_id = $1",
                &[&agent_id, &node, &ns(now_ns)],
            )?;
            if n == 0 {
                return Err(StoreError::UnknownAgent(agent_id.to_string()));
            }
            Ok(())
        })
    }

    fn agent_disconnected(&mut self, agent_id: &str, node: &str) -> Result<(), StoreError> {
        self.with_mut(|c, _| {
            c.execute(
                "UPDATE hosts SET node = NULL, connected_ns = NULL
                 WHERE agent_id = $1 AND node = $2",
                &[&agent_id, &node],
            )?;
            Ok(())
        })
    }
}
