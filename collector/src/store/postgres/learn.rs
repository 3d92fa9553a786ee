//! The learn part of the PostgreSQL backend: flow records of a window streamed through a
//! portal (a bounded chunk of rows at a time, never the whole window in memory), learned
//! drafts with their reports, and approvals.
use super::{PgStore, hosts::rows, listen, notify};
use crate::store::*;

/// Rows fetched from the portal at a time.
const CHUNK_ROWS: i32 = 10_000;

impl LearnStore for PgStore {
    fn learn_hosts(&self) -> Result<Vec<LearnHost>, StoreError> {
        self.with(|c, _| {
            rows(
                c.query("SELECT id, agent_id, host_name FROM hosts ORDER BY id", &[])?,
                |r| {
                    Ok(LearnHost {
                        id: r.try_get(0)?,
                        agent_id: r.try_get(1)?,
                        host_name: r.try_get(2)?,
                    })
                },
            )
        })
    }

    fn for_each_flow(
        &self,
        since_ns: u64,
        until_ns: u64,
        f: &mut dyn FnMut(&FlowObservation<'_>),
    ) -> Result<u64, StoreError> {
        self.with(|c, _| {
            // A portal lives in a transaction; a read-only one sees one snapshot throughout.
            // No ORDER BY: storage order, as the trait says, without sorting the window.
            let mut tx = c.build_transaction().read_only(true).start()?;
            let portal = tx.bind(
                "SELECT host_id, event, proto, direction, local_ip, local_port, remote_ip,
                        remote_port, exe, first_seen_ns, last_seen_ns
                 FROM flows WHERE last_seen_ns >= $1 AND first_seen_ns < $2",
                &[&ns(since_ns), &ns(until_ns)],
            )?;
            let mut n = 0u64;
            loop {
                let chunk = tx.query_portal(&portal, CHUNK_ROWS)?;
                for r in &chunk {
                    let event: &str = r.try_get(1)?;
                    let direction: &str = r.try_get(3)?;
                    let exe: Option<&str> = r.try_get(8)?;
                    let obs = FlowObservation {
                        host_id: r.try_get(0)?,
                        start: event == "start",
                        proto: r.try_get(2)?,
                        outbound: direction == "outbound",
                        local_ip: r.try_get(4)?,
                        local_port: super::flows::port(r.try_get(5)?),
                        remote_ip: r.try_get(6)?,
                        remote_port: super::flows::port(r.try_get(7)?),
                        exe: exe.filter(|e| !e.is_empty()),
                        first_seen_ns: u(r.try_get(9)?),
                        last_seen_ns: u(r.try_get(10)?),
                    };
                    f(&obs);
                    n += 1;
                }
                if chunk.len() < CHUNK_ROWS as usize {
                    break;
                }
            }
            tx.commit()?;
            Ok(n)
        })
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
        self.tx(|tx, _| {
            let version: i64 = tx
                .query_one(
                    "INSERT INTO policies (name, body, state, created_ns, created_by)
                     VALUES ($1, $2, 'draft', $3, $4) RETURNING version",
                    &[&name, &body, &ns(now_ns), &by],
                )?
                .try_get(0)?;
            tx.execute(
                "INSERT INTO policy_learning (version, since_ns, until_ns, created_ns, report)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&version, &ns(window.0), &ns(window.1), &ns(now_ns), &report],
            )?;
            let ins = tx.prepare(
                "INSERT INTO policy_approvals (version, kind, name, approved_by, approved_ns)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )?;
            for (kind, list) in [("group", &carried.groups), ("rule", &carried.rules)] {
                for (item, who) in list {
                    tx.execute(&ins, &[&version, &kind, item, who, &ns(now_ns)])?;
                }
            }
            notify(tx, listen::POLICY, &format!("draft:{version}"))?;
            Ok(version)
        })
    }

    fn learning_report(&self, version: i64) -> Result<Option<String>, StoreError> {
        self.with(|c, _| {
            match c.query_opt(
                "SELECT report FROM policy_learning WHERE version = $1",
                &[&version],
            )? {
                Some(r) => Ok(Some(r.try_get(0)?)),
                None => Ok(None),
            }
        })
    }

    fn set_learning_report(&mut self, version: i64, report: &str) -> Result<(), StoreError> {
        self.with_mut(|c, _| {
            c.execute(
                "UPDATE policy_learning SET report = $2 WHERE version = $1",
                &[&version, &report],
            )?;
            Ok(())
        })
    }

    fn approve_items(
        &mut self,
        version: i64,
        groups: &[String],
        rules: &[String],
        by: &str,
        now_ns: u64,
    ) -> Result<(), StoreError> {
        self.tx(|tx, _| {
            let ins = tx.prepare(
                "INSERT INTO policy_approvals (version, kind, name, approved_by, approved_ns)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (version, kind, name) DO UPDATE
                     SET approved_by = EXCLUDED.approved_by, approved_ns = EXCLUDED.approved_ns",
            )?;
            for (kind, list) in [("group", groups), ("rule", rules)] {
                for item in list {
                    tx.execute(&ins, &[&version, &kind, item, &by, &ns(now_ns)])?;
                }
            }
            Ok(())
        })
    }

    fn policy_approvals(&self, version: i64) -> Result<Approvals, StoreError> {
        let mut out = Approvals {
            version,
            ..Approvals::default()
        };
        let found: Vec<(String, String, String)> = self.with(|c, _| {
            rows(
                c.query(
                    "SELECT kind, name, approved_by FROM policy_approvals WHERE version = $1
                     ORDER BY kind, name",
                    &[&version],
                )?,
                |r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)),
            )
        })?;
        for (kind, name, by) in found {
            match kind.as_str() {
                "group" => out.groups.push((name, by)),
                _ => out.rules.push((name, by)),
            }
        }
        Ok(out)
    }

    fn latest_approvals(&self) -> Result<Option<Approvals>, StoreError> {
        let v: Option<i64> = self.with(|c, _| {
            Ok(
                c.query_one("SELECT max(version) FROM policy_approvals", &[])?
                    .try_get(0)?,
            )
        })?;
        v.map(|v| self.policy_approvals(v)).transpose()
    }
}
