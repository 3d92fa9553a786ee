//! The flows part of the SQLite backend.
use cordon_wire::{Direction, FlowBatch, FlowEvent};
use rusqlite::{Connection, OptionalExtension, ToSql, params, types::Value};

use super::SqliteStore;
use crate::store::*;

impl FlowStore for SqliteStore {
    fn flows(&self, f: &FlowFilter) -> Result<Vec<FlowRow>, StoreError> {
        let mut sql = String::from(
            "SELECT h.host_name, f.event, f.first_seen_ns, f.last_seen_ns, f.proto, f.direction,
                    f.local_ip, f.local_port, f.remote_ip, f.remote_port, f.bytes_out,
                    f.bytes_in, f.pid, f.exe, f.verdict, f.policy_verdict, f.policy_rule,
                    f.policy_version
             FROM flows f JOIN hosts h ON h.id = f.host_id WHERE 1 = 1",
        );
        let mut args: Vec<Value> = Vec::new();
        let mut add = |clause: &str, values: Vec<Value>| {
            sql.push_str(clause);
            args.extend(values);
        };
        if let Some(h) = &f.host {
            // The host's ids first, so the flows are read in order from flows_host
            // (an OR across the join made SQLite sort every flow of the host).
            let ids: Vec<i64> = self
                .conn
                .prepare_cached("SELECT id FROM hosts WHERE agent_id = ?1 OR host_name = ?1")?
                .query_map([h], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let marks = vec!["?"; ids.len()].join(", ");
            add(
                &format!(" AND f.host_id IN ({marks})"),
                ids.into_iter().map(Value::Integer).collect(),
            );
        }
        if let Some(ip) = f.remote_ip {
            add(" AND f.remote_ip = ?", vec![ip.to_string().into()]);
        }
        if let Some(p) = f.port {
            add(
                " AND (f.remote_port = ? OR f.local_port = ?)",
                vec![i64::from(p).into(), i64::from(p).into()],
            );
        }
        if let Some(exe) = &f.exe {
            add(" AND f.exe = ?", vec![exe.clone().into()]);
        }
        match f.verdict.as_deref() {
            // Violations have their own partial index, which SQLite uses only when the
            // query repeats its condition word for word (it proves no implication from a
            // parameter, nor from `= 'escaped'`); otherwise it walked flows_time newest
            // first through every row when none matched (14-17 s on 10 million).
            Some(v @ ("escaped" | "rejected")) => add(
                &format!(
                    " AND f.policy_verdict IN ('escaped', 'rejected') AND f.policy_verdict = '{v}'"
                ),
                vec![],
            ),
            Some(v) => add(" AND f.policy_verdict = ?", vec![v.to_string().into()]),
            None => {}
        }
        if let Some(t) = f.since_ns {
            add(" AND f.last_seen_ns >= ?", vec![ns(t).into()]);
        }
        if let Some(t) = f.until_ns {
            add(" AND f.first_seen_ns < ?", vec![ns(t).into()]);
        }
        let limit = match f.limit {
            0 => 100,
            n => n.min(MAX_FLOW_LIMIT),
        };
        sql.push_str(" ORDER BY f.last_seen_ns DESC, f.id DESC LIMIT ?");
        args.push(Value::Integer(limit as i64));
        let params: Vec<&dyn ToSql> = args.iter().map(|v| v as &dyn ToSql).collect();
        let mut q = self.conn.prepare(&sql)?;
        let rows = q.query_map(params.as_slice(), |r| {
            Ok(FlowRow {
                host: r.get(0)?,
                event: r.get(1)?,
                first_seen_ns: r.get::<_, i64>(2)? as u64,
                last_seen_ns: r.get::<_, i64>(3)? as u64,
                proto: r.get(4)?,
                direction: r.get(5)?,
                local_ip: r.get(6)?,
                local_port: r.get(7)?,
                remote_ip: r.get(8)?,
                remote_port: r.get(9)?,
                bytes_out: r.get::<_, i64>(10)? as u64,
                bytes_in: r.get::<_, i64>(11)? as u64,
                pid: r.get(12)?,
                exe: r.get(13)?,
                verdict: r.get(14)?,
                policy_verdict: r.get(15)?,
                policy_rule: r.get(16)?,
                policy_version: r.get(17)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
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
            .execute("DELETE FROM flows WHERE last_seen_ns < ?1", [ns(before_ns)])?)
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
            for r in &batch.records {
                let p = r.process.as_ref();
                let judged = compliance.judge.as_mut().and_then(|j| j(agent_id, r));
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
