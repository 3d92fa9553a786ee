//! The policies part of the SQLite backend.
use rusqlite::{OptionalExtension, params};
use std::collections::{BTreeMap, HashMap};

use super::SqliteStore;
use crate::store::*;

const COLUMNS: &str =
    "version, name, state, created_ns, created_by, published_ns, published_by, body";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PolicyRow> {
    Ok(PolicyRow {
        version: r.get(0)?,
        name: r.get(1)?,
        state: r.get(2)?,
        created_ns: r.get::<_, i64>(3)?.max(0) as u64,
        created_by: r.get(4)?,
        published_ns: r.get::<_, Option<i64>>(5)?.map(|v| v.max(0) as u64),
        published_by: r.get(6)?,
        body: r.get(7)?,
    })
}

impl PolicyStore for SqliteStore {
    fn apply_policy(
        &mut self,
        name: &str,
        body: &str,
        by: &str,
        now_ns: u64,
    ) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO policies (name, body, state, created_ns, created_by)
             VALUES (?1, ?2, 'draft', ?3, ?4)",
            params![name, body, ns(now_ns), by],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn publish_policy(
        &mut self,
        version: i64,
        by: &str,
        now_ns: u64,
    ) -> Result<Result<(), PublishRefusal>, StoreError> {
        let tx = self.write_tx()?;
        let state: Option<String> = tx
            .query_row(
                "SELECT state FROM policies WHERE version = ?1",
                [version],
                |r| r.get(0),
            )
            .optional()?;
        match state.as_deref() {
            None => return Ok(Err(PublishRefusal::NoSuchVersion)),
            Some("draft") => {}
            Some(other) => return Ok(Err(PublishRefusal::NotDraft(other.to_string()))),
        }
        tx.execute(
            "UPDATE policies SET state = 'retired' WHERE state = 'published'",
            [],
        )?;
        tx.execute(
            "UPDATE policies SET state = 'published', published_ns = ?2, published_by = ?3
             WHERE version = ?1",
            params![version, ns(now_ns), by],
        )?;
        tx.commit()?;
        Ok(Ok(()))
    }

    fn policy(&self, version: Option<i64>) -> Result<Option<PolicyRow>, StoreError> {
        let q = match version {
            Some(_) => format!("SELECT {COLUMNS} FROM policies WHERE version = ?1"),
            None => {
                format!("SELECT {COLUMNS} FROM policies WHERE state = 'published' AND ?1 IS NULL")
            }
        };
        Ok(self.conn.query_row(&q, [version], row).optional()?)
    }

    fn policies(&self) -> Result<Vec<PolicyRow>, StoreError> {
        let mut q = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM policies ORDER BY version DESC"
        ))?;
        let rows = q.query_map([], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_label(
        &mut self,
        agent_id: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<bool, StoreError> {
        let Some(host_id): Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM hosts WHERE agent_id = ?1",
                [agent_id],
                |r| r.get(0),
            )
            .optional()?
        else {
            return Ok(false);
        };
        match value {
            Some(v) => self.conn.execute(
                "INSERT INTO host_labels (host_id, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT(host_id, key) DO UPDATE SET value = ?3",
                params![host_id, key, v],
            )?,
            None => self.conn.execute(
                "DELETE FROM host_labels WHERE host_id = ?1 AND key = ?2",
                params![host_id, key],
            )?,
        };
        Ok(true)
    }

    fn labels(&self, agent_id: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let mut q = self.conn.prepare(
            "SELECT l.key, l.value FROM host_labels l JOIN hosts h ON h.id = l.host_id
             WHERE h.agent_id = ?1 ORDER BY l.key",
        )?;
        let rows = q.query_map([agent_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn host_facts(&self) -> Result<HostFactsMap, StoreError> {
        let mut out = HostFactsMap::new();
        let mut q = self.conn.prepare("SELECT agent_id, host_name FROM hosts")?;
        for r in q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (id, name) = r?;
            out.insert(id, (name, BTreeMap::new()));
        }
        let mut q = self.conn.prepare(
            "SELECT h.agent_id, l.key, l.value FROM host_labels l JOIN hosts h ON h.id = l.host_id",
        )?;
        for r in q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })? {
            let (id, k, v) = r?;
            if let Some(h) = out.get_mut(&id) {
                h.1.insert(k, v);
            }
        }
        Ok(out)
    }

    fn host_addresses(&self) -> Result<HashMap<std::net::IpAddr, String>, StoreError> {
        let mut q = self.conn.prepare(
            "SELECT h.agent_id, i.body FROM inventory i JOIN hosts h ON h.id = i.host_id",
        )?;
        let mut out = HashMap::new();
        for r in q.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })? {
            let (id, body) = r?;
            if let Ok(cordon_wire::Message::Inventory(inv)) = cordon_wire::decode(&body) {
                for a in inv.interfaces.iter().flat_map(|i| i.addresses.iter()) {
                    let skip = a.is_loopback()
                        || match a {
                            std::net::IpAddr::V4(v4) => v4.is_link_local(),
                            std::net::IpAddr::V6(v6) => v6.is_unicast_link_local(),
                        };
                    if !skip {
                        out.insert(*a, id.clone());
                    }
                }
            }
        }
        Ok(out)
    }
}
