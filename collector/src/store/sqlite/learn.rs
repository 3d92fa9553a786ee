//! The learn part of the SQLite backend.
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::store::*;

fn text<'a>(r: &'a rusqlite::Row<'_>, i: usize) -> rusqlite::Result<&'a str> {
    r.get_ref(i)?.as_str().map_err(Into::into)
}

impl LearnStore for SqliteStore {
    fn learn_hosts(&self) -> Result<Vec<LearnHost>, StoreError> {
        let mut q = self
            .conn
            .prepare("SELECT id, agent_id, host_name FROM hosts ORDER BY id")?;
        let rows = q.query_map([], |r| {
            Ok(LearnHost {
                id: r.get(0)?,
                agent_id: r.get(1)?,
                host_name: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn for_each_flow(
        &self,
        since_ns: u64,
        until_ns: u64,
        f: &mut dyn FnMut(&FlowObservation<'_>),
    ) -> Result<u64, StoreError> {
        // A window that starts at 0 reads the whole table: a scan in rowid order beats the
        // time index (which would add a lookup per row).
        let sql = if since_ns == 0 {
            "SELECT host_id, event, proto, direction, local_ip, local_port, remote_ip,
                    remote_port, exe, first_seen_ns, last_seen_ns
             FROM flows NOT INDEXED WHERE last_seen_ns >= ?1 AND first_seen_ns < ?2"
        } else {
            "SELECT host_id, event, proto, direction, local_ip, local_port, remote_ip,
                    remote_port, exe, first_seen_ns, last_seen_ns
             FROM flows WHERE last_seen_ns >= ?1 AND first_seen_ns < ?2"
        };
        let mut q = self.conn.prepare(sql)?;
        let mut rows = q.query(params![ns(since_ns), ns(until_ns)])?;
        let mut n = 0u64;
        while let Some(r) = rows.next()? {
            let exe = match r.get_ref(8)? {
                rusqlite::types::ValueRef::Text(t) => std::str::from_utf8(t).ok(),
                _ => None,
            };
            let obs = FlowObservation {
                host_id: r.get(0)?,
                start: text(r, 1)? == "start",
                proto: text(r, 2)?,
                outbound: text(r, 3)? == "outbound",
                local_ip: text(r, 4)?,
                local_port: r.get(5)?,
                remote_ip: text(r, 6)?,
                remote_port: r.get(7)?,
                exe: exe.filter(|e| !e.is_empty()),
                first_seen_ns: u(r.get(9)?),
                last_seen_ns: u(r.get(10)?),
            };
            f(&obs);
            n += 1;
        }
        Ok(n)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_learned_policy(
        &mut self,
        name: &str,
        body: &str,
        by: &str,
        now_ns: u64,
        window: (u64, u64),
        report: &str,
        carried: &Approvals,
    ) -> Result<i64, StoreError> {
        let tx = self.write_tx()?;
        tx.execute(
            "INSERT INTO policies (name, body, state, created_ns, created_by)
             VALUES (?1, ?2, 'draft', ?3, ?4)",
            params![name, body, ns(now_ns), by],
        )?;
        let version = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO policy_learning (version, since_ns, until_ns, created_ns, report)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![version, ns(window.0), ns(window.1), ns(now_ns), report],
        )?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT OR IGNORE INTO policy_approvals (version, kind, name, approved_by, approved_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (kind, list) in [("group", &carried.groups), ("rule", &carried.rules)] {
                for (item, who) in list {
                    ins.execute(params![version, kind, item, who, ns(now_ns)])?;
                }
            }
        }
        tx.commit()?;
        Ok(version)
    }

    fn learning_report(&self, version: i64) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT report FROM policy_learning WHERE version = ?1",
                [version],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn set_learning_report(&mut self, version: i64, report: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE policy_learning SET report = ?2 WHERE version = ?1",
            params![version, report],
        )?;
        Ok(())
    }

    fn approve_items(
        &mut self,
        version: i64,
        groups: &[String],
        rules: &[String],
        by: &str,
        now_ns: u64,
    ) -> Result<(), StoreError> {
        let tx = self.write_tx()?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO policy_approvals (version, kind, name, approved_by, approved_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(version, kind, name) DO UPDATE SET approved_by = ?4, approved_ns = ?5",
            )?;
            for (kind, list) in [("group", groups), ("rule", rules)] {
                for item in list {
                    ins.execute(params![version, kind, item, by, ns(now_ns)])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn policy_approvals(&self, version: i64) -> Result<Approvals, StoreError> {
        let mut out = Approvals {
            version,
            ..Approvals::default()
        };
        let mut q = self.conn.prepare(
            "SELECT kind, name, approved_by FROM policy_approvals WHERE version = ?1
             ORDER BY kind, name",
        )?;
        for r in q.query_map([version], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })? {
            let (kind, name, by) = r?;
            match kind.as_str() {
                "group" => out.groups.push((name, by)),
                _ => out.rules.push((name, by)),
            }
        }
        Ok(out)
    }

    fn latest_approvals(&self) -> Result<Option<Approvals>, StoreError> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT max(version) FROM policy_approvals", [], |r| {
                r.get(0)
            })
            .optional()?
            .flatten();
        v.map(|v| self.policy_approvals(v)).transpose()
    }
}
