//! The policies part of the PostgreSQL backend: policy versions and host labels. Every
//! change that can alter verdicts (a draft, a publish, a label) sends
//! `NOTIFY cordon_policy`, so every node reloads its policy context.
use std::collections::{BTreeMap, HashMap};

use ::postgres::Row;

use super::{PgStore, hosts::rows, listen, notify};
use crate::store::*;

const COLUMNS: &str =
    "version, name, state, created_ns, created_by, published_ns, published_by, body";

/// Publishing takes this transaction-level advisory lock: two nodes publishing at once
/// are serialised, as SQLite's single writer is ("cordpub" in ASCII).
const PUBLISH_LOCK: i64 = 0x63_6f72_6470_7562;

fn row(r: &Row) -> Result<PolicyRow, StoreError> {
    Ok(PolicyRow {
        version: r.try_get(0)?,
        name: r.try_get(1)?,
        state: r.try_get(2)?,
        created_ns: u(r.try_get(3)?),
        created_by: r.try_get(4)?,
        published_ns: r.try_get::<_, Option<i64>>(5)?.map(u),
        published_by: r.try_get(6)?,
        body: r.try_get(7)?,
    })
}

impl PolicyStore for PgStore {
    fn apply_policy(
        &mut self,
        name: &str,
        body: &str,
        by: &str,
        now_ns: u64,
    ) -> Result<i64, StoreError> {
        self.tx(|tx, _| {
            let version: i64 = tx
                .query_one(
                    "INSERT INTO policies (name, body, state, created_ns, created_by)
                     VALUES ($1, $2, 'draft', $3, $4) RETURNING version",
                    &[&name, &body, &ns(now_ns), &by],
                )?
                .try_get(0)?;
            notify(tx, listen::POLICY, &format!("draft:{version}"))?;
            Ok(version)
        })
    }

    fn publish_policy(
        &mut self,
        version: i64,
        by: &str,
        now_ns: u64,
    ) -> Result<Result<(), PublishRefusal>, StoreError> {
        self.tx(|tx, _| {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PUBLISH_LOCK])?;
            let state: Option<String> =
                match tx.query_opt("SELECT state FROM policies WHERE version = $1", &[&version])? {
                    Some(r) => Some(r.try_get(0)?),
                    None => None,
                };
            match state.as_deref() {
                None => return Ok(Err(PublishRefusal::NoSuchVersion)),
                Some("draft") => {}
                Some(other) => return Ok(Err(PublishRefusal::NotDraft(other.to_string()))),
            }
            tx.execute(
                "UPDATE policies SET state = 'retired' WHERE state = 'published'",
                &[],
            )?;
            tx.execute(
                "UPDATE policies SET state = 'published', published_ns = $2, published_by = $3
                 WHERE version = $1",
                &[&version, &ns(now_ns), &by],
            )?;
            notify(tx, listen::POLICY, &format!("published:{version}"))?;
            Ok(Ok(()))
        })
    }

    fn policy(&self, version: Option<i64>) -> Result<Option<PolicyRow>, StoreError> {
        self.with(|c, _| {
            let r = match version {
                Some(v) => c.query_opt(
                    &format!("SELECT {COLUMNS} FROM policies WHERE version = $1"),
                    &[&v],
                )?,
                None => c.query_opt(
                    &format!("SELECT {COLUMNS} FROM policies WHERE state = 'published'"),
                    &[],
                )?,
            };
            r.as_ref().map(row).transpose()
        })
    }

    fn policies(&self) -> Result<Vec<PolicyRow>, StoreError> {
        self.with(|c, _| {
            rows(
                c.query(
                    &format!("SELECT {COLUMNS} FROM policies ORDER BY version DESC"),
                    &[],
                )?,
                row,
            )
        })
    }

    fn set_label(
        &mut self,
        agent_id: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.tx(|tx, _| {
            let Some(h) = tx.query_opt("SELECT id FROM hosts WHERE agent_id = $1", &[&agent_id])?
            else {
                return Ok(false);
            };
            let host_id: i64 = h.try_get(0)?;
            match value {
                Some(v) => tx.execute(
                    "INSERT INTO host_labels (host_id, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT (host_id, key) DO UPDATE SET value = EXCLUDED.value",
                    &[&host_id, &key, &v],
                )?,
                None => tx.execute(
                    "DELETE FROM host_labels WHERE host_id = $1 AND key = $2",
                    &[&host_id, &key],
                )?,
            };
            notify(tx, listen::POLICY, &format!("label:{agent_id}"))?;
            Ok(true)
        })
    }

    fn labels(&self, agent_id: &str) -> Result<BTreeMap<String, String>, StoreError> {
        self.with(|c, _| {
            c.query(
                "SELECT l.key, l.value FROM host_labels l JOIN hosts h ON h.id = l.host_id
                 WHERE h.agent_id = $1 ORDER BY l.key",
                &[&agent_id],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
        })
    }

    fn host_facts(&self) -> Result<HostFactsMap, StoreError> {
        self.with(|c, _| {
            let mut out = HostFactsMap::new();
            for r in c.query("SELECT agent_id, host_name FROM hosts", &[])? {
                out.insert(r.try_get(0)?, (r.try_get(1)?, BTreeMap::new()));
            }
            for r in c.query(
                "SELECT h.agent_id, l.key, l.value FROM host_labels l
                 JOIN hosts h ON h.id = l.host_id",
                &[],
            )? {
                let id: String = r.try_get(0)?;
                if let Some(h) = out.get_mut(&id) {
                    h.1.insert(r.try_get(1)?, r.try_get(2)?);
                }
            }
            Ok(out)
        })
    }

    fn host_addresses(&self) -> Result<HashMap<std::net::IpAddr, String>, StoreError> {
        let found: Vec<(String, Vec<u8>)> = self.with(|c, _| {
            rows(
                c.query(
                    "SELECT h.agent_id, i.body FROM inventory i JOIN hosts h ON h.id = i.host_id",
                    &[],
                )?,
                |r| Ok((r.try_get(0)?, r.try_get(1)?)),
            )
        })?;
        let mut out = HashMap::new();
        for (id, body) in found {
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
