//! Querying hosts (what `GET /api/v1/hosts` and `cordon hosts` serve).
use rusqlite::OptionalExtension;
use serde::Serialize;

use super::{Store, StoreError};

/// One host: an agent that has connected at least once.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HostRow {
    /// The agent id (its certificate's common name).
    pub id: String,
    pub host_name: String,
    pub agent_version: String,
    /// The capture the agent runs: "ebpf" or "procfs".
    pub capture: String,
    /// Unix ns.
    pub first_seen_ns: u64,
    /// Unix ns of the last connection.
    pub last_seen_ns: u64,
    /// Highest flow batch stored for it.
    pub last_seq: u64,
    pub revoked: bool,
    /// Unix ns of the latest inventory, if one arrived.
    pub inventory_updated_ns: Option<u64>,
    /// Whether the host is isolated, as its agent last reported.
    pub isolated: bool,
    pub isolated_since_ns: Option<u64>,
    pub isolated_by: Option<String>,
    pub isolation_reason: Option<String>,
    pub isolation_expires_ns: Option<u64>,
    /// nftables, ebpf or none, as the agent reported.
    pub enforcement_backend: Option<String>,
}

const SELECT: &str = "SELECT h.agent_id, h.host_name, h.agent_version, h.capture,
        h.first_seen_ns, h.last_seen_ns, h.last_seq, h.revoked, i.updated_ns, h.isolated,
        h.isolated_since_ns, h.isolated_by, h.isolation_reason, h.isolation_expires_ns,
        h.enforcement_backend
    FROM hosts h LEFT JOIN inventory i ON i.host_id = h.id";

fn u(v: i64) -> u64 {
    v.max(0) as u64
}

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
    })
}

impl Store {
    /// Every host, by name.
    pub fn hosts(&self) -> Result<Vec<HostRow>, StoreError> {
        let mut q = self
            .conn
            .prepare(&format!("{SELECT} ORDER BY h.host_name, h.agent_id"))?;
        let rows = q.query_map([], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One host by agent id, or else by host name when exactly one host has it.
    pub fn host(&self, id_or_name: &str) -> Result<Option<HostRow>, StoreError> {
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
}
