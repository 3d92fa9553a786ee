//! The flows part of the SQLite backend.
use cordon_wire::{Direction, FlowBatch, FlowEvent};
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter, types::Value};

use super::SqliteStore;
use crate::store::{
    flow_sql::{self, Arg, Hosts},
    flows::bucketed,
    *,
};

/// The per-period counts' upserts, in the order of [`flow_sql::PERIODS`].
const UPSERT_SLOTS: [&str; 2] = [
    "INSERT INTO flow_minutes (period, host_id, verdict, flows) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT DO UPDATE SET flows = flows + excluded.flows",
    "INSERT INTO flow_hours (period, host_id, verdict, flows) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT DO UPDATE SET flows = flows + excluded.flows",
];

fn values(args: Vec<Arg>) -> Vec<Value> {
    args.into_iter()
        .map(|a| match a {
            Arg::Int(v) => Value::Integer(v.into()),
            Arg::Big(v) => Value::Integer(v),
            Arg::Text(v) => Value::Text(v),
        })
        .collect()
}

fn hosts(ids: &[i64]) -> Hosts<'_> {
    Hosts::Ids(ids)
}

/// A [`FlowRow`] from the first [`flow_sql::ROW_COLUMNS`] of `r`.
fn flow_row(r: &Row<'_>) -> rusqlite::Result<FlowRow> {
    Ok(FlowRow {
        id: r.get(0)?,
        host: r.get(1)?,
        event: r.get(2)?,
        first_seen_ns: r.get::<_, i64>(3)? as u64,
        last_seen_ns: r.get::<_, i64>(4)? as u64,
        proto: r.get(5)?,
        direction: r.get(6)?,
        local_ip: r.get(7)?,
        local_port: r.get(8)?,
        remote_ip: r.get(9)?,
        remote_port: r.get(10)?,
        bytes_out: r.get::<_, i64>(11)? as u64,
        bytes_in: r.get::<_, i64>(12)? as u64,
        pid: r.get(13)?,
        exe: r.get(14)?,
        verdict: r.get(15)?,
        policy_verdict: r.get(16)?,
        policy_rule: r.get(17)?,
        policy_version: r.get(18)?,
    })
}

impl SqliteStore {
    /// The ids of the host `f` asks for (read in order from `flows_host` only as a list
    /// of literals: an OR across the join made SQLite sort every flow of the host); `None`
    /// when there is no such host, so nothing matches. Empty without a host filter.
    fn host_ids(&self, f: &FlowFilter) -> Result<Option<Vec<i64>>, StoreError> {
        let Some(h) = &f.host else {
            return Ok(Some(Vec::new()));
        };
        let ids: Vec<i64> = self
            .conn
            .prepare_cached("SELECT id FROM hosts WHERE agent_id = ?1 OR host_name = ?1")?
            .query_map([h], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok((!ids.is_empty()).then_some(ids))
    }
}

impl FlowStore for SqliteStore {
    fn flows(&self, f: &FlowFilter) -> Result<Vec<FlowRow>, StoreError> {
        let Some(ids) = self.host_ids(f)? else {
            return Ok(Vec::new());
        };
        let q = flow_sql::search(f, '?', &hosts(&ids));
        let mut stmt = self.conn.prepare(&q.text)?;
        let rows = stmt.query_map(params_from_iter(values(q.args)), flow_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn flow(&self, id: i64) -> Result<Option<FlowDetail>, StoreError> {
        let sql = flow_sql::detail('?');
        let n = flow_sql::ROW_FIELDS;
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([id], |r| {
                Ok(FlowDetail {
                    row: flow_row(r)?,
                    agent_id: r.get(n)?,
                    packets_out: r.get::<_, i64>(n + 1)? as u64,
                    packets_in: r.get::<_, i64>(n + 2)? as u64,
                    closed: r.get::<_, i64>(n + 3)? != 0,
                    uid: r.get(n + 4)?,
                    user: r.get(n + 5)?,
                    comm: r.get(n + 6)?,
                    cmdline: r.get(n + 7)?,
                    cgroup: r.get(n + 8)?,
                    unattributed_reason: r.get(n + 9)?,
                })
            })
            .optional()?)
    }

    fn flow_summary(&self, f: &FlowFilter, buckets: usize) -> Result<FlowSummary, StoreError> {
        let ids = self.host_ids(f)?;
        let plan = flow_sql::summary(
            f,
            buckets,
            crate::ingest::now_ns(),
            '?',
            &hosts(ids.as_deref().unwrap_or(&[])),
        );
        let mut out = FlowSummary {
            start_ns: plan.start_ns,
            width_ns: plan.width_ns,
            buckets: vec![VerdictCounts::default(); plan.buckets],
            ..Default::default()
        };
        if ids.is_none() {
            return Ok(out);
        }
        let mut stmt = self.conn.prepare(&plan.series.text)?;
        let rows = stmt
            .query_map(params_from_iter(values(plan.series.args)), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        out.buckets = bucketed(rows, plan.buckets);
        let mut stmt = self.conn.prepare(&plan.top_hosts.text)?;
        out.top_hosts = stmt
            .query_map(params_from_iter(values(plan.top_hosts.args)), |r| {
                Ok(TopHost {
                    host: r.get(0)?,
                    flows: r.get::<_, i64>(1)? as u64,
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut stmt = self.conn.prepare(&plan.escaped_ports.text)?;
        out.top_escaped_ports = stmt
            .query_map(params_from_iter(values(plan.escaped_ports.args)), |r| {
                Ok((r.get::<_, u16>(0)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect::<Result<_, _>>()?;
        Ok(out)
    }

    fn store_batch(&mut self, agent_id: &str, batch: &FlowBatch) -> Result<Stored, StoreError> {
        let tx = self.write_tx()?;
        let stored = Self::insert_batch(&tx, agent_id, batch, &mut Compliance::none())?;
        tx.commit()?;
        Ok(stored)
    }

    fn store_batches(
        &mut self,
        batches: &[(&str, &FlowBatch)],
        compliance: &mut Compliance<'_>,
    ) -> Result<Vec<Result<Stored, StoreError>>, StoreError> {
        let tx = self.write_tx()?;
        let mut out = Vec::with_capacity(batches.len());
        for (agent_id, batch) in batches {
            match Self::insert_batch(&tx, agent_id, batch, compliance) {
                Ok(stored) => out.push(Ok(stored)),
                Err(e @ StoreError::UnknownAgent(_)) => out.push(Err(e)),
                // Dropping the transaction rolls the group back.
                Err(e) => return Err(e),
            }
        }
        tx.commit()?;
        Ok(out)
    }

    fn set_cache_kib(&mut self, kib: u32) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "cache_size", -i64::from(kib))?;
        Ok(())
    }

    fn apply_retention(&mut self, before_ns: u64) -> Result<usize, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM flows WHERE last_seen_ns < ?1", [ns(before_ns)])
            .and_then(|n| {
                // The periods wholly before the cut go with their flows.
                for p in flow_sql::PERIODS {
                    self.conn.execute(
                        &format!("DELETE FROM {} WHERE period < ?1", p.table),
                        [ns(before_ns / p.ns)],
                    )?;
                }
                Ok(n)
            })?)
    }

    fn conversations(&self, agent_id: &str) -> Result<Vec<Conversation>, StoreError> {
        let mut q = self.conn.prepare(
            "SELECT c.direction, c.proto, c.remote_ip, c.port, c.exe, c.flows
             FROM conversations c JOIN hosts h ON h.id = c.host_id
             WHERE h.agent_id = ?1 ORDER BY c.flows DESC, c.remote_ip, c.port, c.direction, c.proto, c.exe",
        )?;
        let rows = q.query_map([agent_id], |r| {
            let flows: i64 = r.get(5)?;
            Ok(Conversation {
                direction: r.get(0)?,
                proto: r.get(1)?,
                remote_ip: r.get(2)?,
                port: r.get(3)?,
                exe: r.get(4)?,
                flows: flows.max(0) as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl SqliteStore {
    /// One batch inside the caller's transaction (or savepoint): its records, their
    /// conversation edges and the agent's new sequence number; nothing for a resend.
    fn insert_batch(
        tx: &Connection,
        agent_id: &str,
        batch: &FlowBatch,
        compliance: &mut Compliance<'_>,
    ) -> Result<Stored, StoreError> {
        let (host_id, last_seq, host_name): (i64, i64, String) = tx
            .query_row(
                "SELECT id, last_seq, host_name FROM hosts WHERE agent_id = ?1",
                [agent_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?
            .ok_or_else(|| StoreError::UnknownAgent(agent_id.to_string()))?;
        if ns(batch.seq) <= last_seq {
            return Ok(Stored::Duplicate);
        }
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO flows (host_id, event, first_seen_ns, last_seen_ns, proto, direction,
                    local_ip, local_port, remote_ip, remote_port, bytes_out, bytes_in,
                    packets_out, packets_in, closed, verdict, pid, uid, user_name, comm, exe,
                    cmdline, cgroup, unattributed_reason, policy_verdict, policy_rule,
                    policy_version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                    ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)",
            )?;
            let mut edge = tx.prepare_cached(
                "INSERT INTO conversations (host_id, direction, proto, remote_ip, port, exe, flows,
                    first_seen_ns, last_seen_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7)
                 ON CONFLICT DO UPDATE SET flows = flows + 1,
                    last_seen_ns = max(last_seen_ns, ?7)",
            )?;
            // Flows per (period kind, period, verdict): the summaries' counts.
            let mut slots: std::collections::BTreeMap<(usize, i64, &str), i64> = Default::default();
            for r in &batch.records {
                let p = r.process.as_ref();
                let judged = compliance.judge.as_mut().and_then(|j| j(agent_id, r));
                for (k, p) in flow_sql::PERIODS.iter().enumerate() {
                    *slots
                        .entry((
                            k,
                            ns(r.last_seen_ns / p.ns),
                            judged.as_ref().map_or("", |j| j.verdict),
                        ))
                        .or_default() += 1;
                }
                insert.execute(params![
                    host_id,
                    event_name(r.event),
                    ns(r.first_seen_ns),
                    ns(r.last_seen_ns),
                    proto_name(r.proto),
                    direction_name(r.direction),
                    r.local.ip().to_string(),
                    r.local.port(),
                    r.remote.ip().to_string(),
                    r.remote.port(),
                    ns(r.bytes_out),
                    ns(r.bytes_in),
                    ns(r.packets_out),
                    ns(r.packets_in),
                    r.closed,
                    verdict_name(r.verdict),
                    p.map(|p| p.pid),
                    p.map(|p| p.uid),
                    p.and_then(|p| p.user.as_deref()),
                    p.map(|p| p.comm.as_str()),
                    p.and_then(|p| p.exe.as_deref()),
                    p.and_then(|p| p.cmdline.as_deref()),
                    p.and_then(|p| p.cgroup.as_deref()),
                    r.unattributed_reason.as_deref(),
                    judged.as_ref().map(|j| j.verdict),
                    judged.as_ref().map(|j| j.rule.as_str()),
                    judged.as_ref().map(|j| j.version),
                ])?;
                // One alert occurrence per violating flow: counted at its start.
                if let Some(j) = judged.as_ref().filter(|j| j.verdict != "permitted")
                    && r.event == FlowEvent::Start
                {
                    {
                        let v = crate::alerts::Violation {
                            agent_id,
                            host_name: &host_name,
                            record: r,
                            rule: &j.rule,
                            action: "deny",
                            policy_version: j.version,
                            severity: j.severity,
                            verdict: j.verdict,
                        };
                        super::alerts::raise(
                            tx,
                            host_id,
                            &v,
                            compliance.settings,
                            compliance.now_ns,
                        )?;
                        compliance.raised += 1;
                    }
                }
                if r.event == FlowEvent::Start {
                    let port = match r.direction {
                        Direction::Outbound => r.remote.port(),
                        Direction::Inbound => r.local.port(),
                    };
                    edge.execute(params![
                        host_id,
                        direction_name(r.direction),
                        proto_name(r.proto),
                        r.remote.ip().to_string(),
                        port,
                        p.and_then(|p| p.exe.as_deref()).unwrap_or(""),
                        ns(r.first_seen_ns),
                    ])?;
                }
            }
            for ((k, period, verdict), n) in slots {
                tx.prepare_cached(UPSERT_SLOTS[k])?
                    .execute(params![period, host_id, verdict, n])?;
            }
        }
        tx.execute(
            "UPDATE hosts SET last_seq = ?2 WHERE id = ?1",
            params![host_id, ns(batch.seq)],
        )?;
        Ok(Stored::New {
            records: batch.records.len(),
        })
    }
}
