//! The flows part of the PostgreSQL backend: querying flows and conversations, storing
//! batches (the group commit itself is in `ingest`), retention.
use ::postgres::types::ToSql;
use cordon_wire::FlowBatch;

use super::{PgStore, hosts::rows, ingest, limit};
use crate::store::*;

/// A stored port (INTEGER) back to `u16`.
pub(super) fn port(v: i32) -> u16 {
    u16::try_from(v).unwrap_or(0)
}

impl FlowStore for PgStore {
    fn flows(&self, f: &FlowFilter) -> Result<Vec<FlowRow>, StoreError> {
        let mut sql = String::from(
            "SELECT h.host_name, f.event, f.first_seen_ns, f.last_seen_ns, f.proto, f.direction,
                    f.local_ip, f.local_port, f.remote_ip, f.remote_port, f.bytes_out,
                    f.bytes_in, f.pid, f.exe, f.verdict, f.policy_verdict, f.policy_rule,
                    f.policy_version
             FROM flows f JOIN hosts h ON h.id = f.host_id WHERE true",
        );
        // Literals, so even a generic plan uses the partial index flows_violations.
        if let Some(v @ ("escaped" | "rejected")) = f.verdict.as_deref() {
            sql.push_str(&format!(
                " AND f.policy_verdict IN ('escaped', 'rejected') AND f.policy_verdict = '{v}'"
            ));
        }
        let mut args: Vec<Box<dyn ToSql + Sync>> = Vec::new();
        let mut add = |clause: &str, value: Box<dyn ToSql + Sync>| {
            args.push(value);
            // Every clause takes one parameter, used as often as `$` appears.
            sql.push_str(&clause.replace('$', &format!("${}", args.len())));
        };
        if let Some(h) = &f.host {
            add(
                " AND f.host_id IN (SELECT id FROM hosts WHERE agent_id = $ OR host_name = $)",
                Box::new(h.clone()),
            );
        }
        if let Some(ip) = f.remote_ip {
            add(" AND f.remote_ip = $", Box::new(ip.to_string()));
        }
        if let Some(p) = f.port {
            add(
                " AND (f.remote_port = $ OR f.local_port = $)",
                Box::new(i32::from(p)),
            );
        }
        if let Some(exe) = &f.exe {
            add(" AND f.exe = $", Box::new(exe.clone()));
        }
        match f.verdict.as_deref() {
            Some("escaped" | "rejected") | None => {}
            Some(v) => add(" AND f.policy_verdict = $", Box::new(v.to_string())),
        }
        if let Some(t) = f.since_ns {
            add(" AND f.last_seen_ns >= $", Box::new(ns(t)));
        }
        if let Some(t) = f.until_ns {
            add(" AND f.first_seen_ns < $", Box::new(ns(t)));
        }
        let n = match f.limit {
            0 => 100,
            n => n.min(MAX_FLOW_LIMIT),
        };
        add(
            " ORDER BY f.last_seen_ns DESC, f.id DESC LIMIT $",
            Box::new(limit(n)),
        );
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|b| b.as_ref()).collect();
        self.with(|c, _| {
            rows(c.query(&sql, &params)?, |r| {
                Ok(FlowRow {
                    host: r.try_get(0)?,
                    event: r.try_get(1)?,
                    first_seen_ns: u(r.try_get(2)?),
                    last_seen_ns: u(r.try_get(3)?),
                    proto: r.try_get(4)?,
                    direction: r.try_get(5)?,
                    local_ip: r.try_get(6)?,
                    local_port: port(r.try_get(7)?),
                    remote_ip: r.try_get(8)?,
                    remote_port: port(r.try_get(9)?),
                    bytes_out: u(r.try_get(10)?),
                    bytes_in: u(r.try_get(11)?),
                    pid: r
                        .try_get::<_, Option<i64>>(12)?
                        .and_then(|p| u32::try_from(p).ok()),
                    exe: r.try_get(13)?,
                    verdict: r.try_get(14)?,
                    policy_verdict: r.try_get(15)?,
                    policy_rule: r.try_get(16)?,
                    policy_version: r.try_get(17)?,
                })
            })
        })
    }

    fn store_batch(&mut self, agent_id: &str, batch: &FlowBatch) -> Result<Stored, StoreError> {
        let mut results = self.store_batches(&[(agent_id, batch)], &mut Compliance::none())?;
        match results.pop() {
            Some(r) => r,
            None => Ok(Stored::Duplicate),
        }
    }

    fn store_batches(
        &mut self,
        batches: &[(&str, &FlowBatch)],
        compliance: &mut Compliance<'_>,
    ) -> Result<Vec<Result<Stored, StoreError>>, StoreError> {
        self.tx(|tx, st| ingest::store_group(tx, st, batches, compliance))
    }

    fn set_cache_kib(&mut self, _kib: u32) -> Result<(), StoreError> {
        // The cache is the server's (shared_buffers).
        Ok(())
    }

    fn apply_retention(&mut self, before_ns: u64) -> Result<usize, StoreError> {
        self.with_mut(|c, _| {
            Ok(c.execute(
                "DELETE FROM flows WHERE last_seen_ns < $1",
                &[&ns(before_ns)],
            )? as usize)
        })
    }

    fn conversations(&self, agent_id: &str) -> Result<Vec<Conversation>, StoreError> {
        self.with(|c, _| {
            rows(
                c.query(
                    "SELECT c.direction, c.proto, c.remote_ip, c.port, c.exe, c.flows
                     FROM conversations c JOIN hosts h ON h.id = c.host_id
                     WHERE h.agent_id = $1 ORDER BY c.flows DESC, c.remote_ip, c.port, c.direction, c.proto, c.exe",
                    &[&agent_id],
                )?,
                |r| {
                    Ok(Conversation {
                        direction: r.try_get(0)?,
                        proto: r.try_get(1)?,
                        remote_ip: r.try_get(2)?,
                        port: port(r.try_get(3)?),
                        exe: r.try_get(4)?,
                        flows: u(r.try_get(5)?),
                    })
                },
            )
        })
    }
}
