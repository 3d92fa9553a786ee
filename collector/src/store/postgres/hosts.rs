//! The hosts part of the PostgreSQL backend: enrolled hosts, revocation, inventories.
use ::postgres::Row;

use super::{PgStore, listen, notify, text};
use crate::store::*;

const SELECT: &str = "SELECT h.agent_id, h.host_name, h.agent_version, h.capture,
        h.first_seen_ns, h.last_seen_ns, h.last_seq, h.revoked, i.updated_ns, h.isolated,
        h.isolated_since_ns, h.isolated_by, h.isolation_reason, h.isolation_expires_ns,
        h.enforcement_backend, h.node, h.connected_ns
    FROM hosts h LEFT JOIN inventory i ON i.host_id = h.id";

fn row(r: &Row) -> Result<HostRow, StoreError> {
    Ok(HostRow {
        id: r.try_get(0)?,
        host_name: r.try_get(1)?,
        agent_version: r.try_get(2)?,
        capture: r.try_get(3)?,
        first_seen_ns: u(r.try_get(4)?),
        last_seen_ns: u(r.try_get(5)?),
        last_seq: u(r.try_get(6)?),
        revoked: r.try_get(7)?,
        inventory_updated_ns: r.try_get::<_, Option<i64>>(8)?.map(u),
        isolated: r.try_get(9)?,
        isolated_since_ns: r.try_get::<_, Option<i64>>(10)?.map(u),
        isolated_by: r.try_get(11)?,
        isolation_reason: r.try_get(12)?,
        isolation_expires_ns: r.try_get::<_, Option<i64>>(13)?.map(u),
        enforcement_backend: r.try_get(14)?,
        node: r.try_get(15)?,
        connected_ns: r.try_get::<_, Option<i64>>(16)?.map(u),
    })
}

/// Rows into values, the first error winning.
pub(super) fn rows<T>(
    rows: Vec<Row>,
    f: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(f).collect()
}

impl HostStore for PgStore {
    fn hosts(&self) -> Result<Vec<HostRow>, StoreError> {
        self.with(|c, _| {
            rows(
                c.query(&format!("{SELECT} ORDER BY h.host_name, h.agent_id"), &[])?,
                row,
            )
        })
    }

    fn host(&self, id_or_name: &str) -> Result<Option<HostRow>, StoreError> {
        self.with(|c, _| {
            if let Some(r) =
                c.query_opt(&format!("{SELECT} WHERE h.agent_id = $1"), &[&id_or_name])?
            {
                return Ok(Some(row(&r)?));
            }
            let found = c.query(
                &format!("{SELECT} WHERE h.host_name = $1 LIMIT 2"),
                &[&id_or_name],
            )?;
            Ok(match found.as_slice() {
                [one] => Some(row(one)?),
                _ => None,
            })
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
        let (host_name, agent_version, capture) =
            (text(host_name), text(agent_version), text(capture));
        self.with_mut(|c, _| {
            let r = c.query_one(
                "INSERT INTO hosts (agent_id, host_name, agent_version, capture, first_seen_ns,
                     last_seen_ns)
                 VALUES ($1, $2, $3, $4, $5, $5)
                 ON CONFLICT (agent_id) DO UPDATE SET host_name = EXCLUDED.host_name,
                     agent_version = EXCLUDED.agent_version, capture = EXCLUDED.capture,
                     last_seen_ns = EXCLUDED.last_seen_ns
                 RETURNING id, last_seq",
                &[
                    &agent_id,
                    &host_name.as_ref(),
                    &agent_version.as_ref(),
                    &capture.as_ref(),
                    &ns(now_ns),
                ],
            )?;
            let seq: i64 = r.try_get(1)?;
            Ok((r.try_get(0)?, u64::try_from(seq).unwrap_or(0)))
        })
    }

    fn is_revoked(&self, agent_id: &str) -> Result<bool, StoreError> {
        self.with(|c, _| {
            Ok(
                match c.query_opt(
                    "SELECT revoked FROM hosts WHERE agent_id = $1",
                    &[&agent_id],
                )? {
                    Some(r) => r.try_get(0)?,
                    None => false,
                },
            )
        })
    }

    fn revoke(&mut self, agent_id: &str) -> Result<bool, StoreError> {
        self.tx(|tx, _| {
            let n = tx.execute(
                "UPDATE hosts SET revoked = true WHERE agent_id = $1",
                &[&agent_id],
            )?;
            if n == 1 {
                notify(tx, listen::REVOKED, agent_id)?;
            }
            Ok(n == 1)
        })
    }

    fn store_inventory(
        &mut self,
        agent_id: &str,
        body: &[u8],
        now_ns: u64,
    ) -> Result<(), StoreError> {
        self.tx(|tx, _| {
            let n = tx.execute(
                "INSERT INTO inventory (host_id, updated_ns, body)
                 SELECT id, $2, $3 FROM hosts WHERE agent_id = $1
                 ON CONFLICT (host_id) DO UPDATE SET updated_ns = EXCLUDED.updated_ns,
                     body = EXCLUDED.body",
                &[&agent_id, &ns(now_ns), &body],
            )?;
            if n == 0 {
                return Err(StoreError::UnknownAgent(agent_id.to_string()));
            }
            notify(tx, listen::POLICY, &format!("inventory:{agent_id}"))
        })
    }

    fn inventory(&self, agent_id: &str) -> Result<Option<cordon_wire::Inventory>, StoreError> {
        let body: Option<Vec<u8>> = self.with(|c, _| {
            Ok(
                match c.query_opt(
                    "SELECT i.body FROM inventory i JOIN hosts h ON h.id = i.host_id
                     WHERE h.agent_id = $1",
                    &[&agent_id],
                )? {
                    Some(r) => Some(r.try_get(0)?),
                    None => None,
                },
            )
        })?;
        Ok(body.and_then(|b| match cordon_wire::decode(&b) {
            Ok(cordon_wire::Message::Inventory(inv)) => Some(inv),
            _ => None,
        }))
    }
}
