//! The flows part of the PostgreSQL backend: querying flows and conversations, storing
//! batches (the group commit itself is in `ingest`), retention.
use ::postgres::types::ToSql;
use cordon_wire::FlowBatch;

use super::{PgStore, hosts::rows, ingest};
use crate::store::{
    flow_sql::{self, Arg, Hosts},
    flows::bucketed,
    *,
};

/// Runs a statement built by [`flow_sql`].
fn query(c: &mut ::postgres::Client, q: flow_sql::Sql) -> Result<Vec<::postgres::Row>, StoreError> {
    let args: Vec<Box<dyn ToSql + Sync>> = q
        .args
        .into_iter()
        .map(|a| -> Box<dyn ToSql + Sync> {
            match a {
                Arg::Int(v) => Box::new(v),
                Arg::Big(v) => Box::new(v),
                Arg::Text(v) => Box::new(v),
            }
        })
        .collect();
    let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|b| b.as_ref()).collect();
    Ok(c.query(&q.text, &params)?)
}

/// A [`FlowRow`] from the first [`flow_sql::ROW_COLUMNS`] of `r`.
fn flow_row(r: &::postgres::Row) -> Result<FlowRow, StoreError> {
    Ok(FlowRow {
        id: r.try_get(0)?,
        host: r.try_get(1)?,
        event: r.try_get(2)?,
        first_seen_ns: u(r.try_get(3)?),
        last_seen_ns: u(r.try_get(4)?),
        proto: r.try_get(5)?,
        direction: r.try_get(6)?,
        local_ip: r.try_get(7)?,
        local_port: port(r.try_get(8)?),
        remote_ip: r.try_get(9)?,
        remote_port: port(r.try_get(10)?),
        bytes_out: u(r.try_get(11)?),
        bytes_in: u(r.try_get(12)?),
        pid: r
            .try_get::<_, Option<i64>>(13)?
            .and_then(|p| u32::try_from(p).ok()),
        exe: r.try_get(14)?,
        verdict: r.try_get(15)?,
        policy_verdict: r.try_get(16)?,
        policy_rule: r.try_get(17)?,
        policy_version: r.try_get(18)?,
    })
}

/// A stored port (INTEGER) back to `u16`.
pub(super) fn port(v: i32) -> u16 {
    u16::try_from(v).unwrap_or(0)
}

impl FlowStore for PgStore {
    fn flows(&self, f: &FlowFilter) -> Result<Vec<FlowRow>, StoreError> {
        let q = flow_sql::search(f, '$', &Hosts::Select);
        self.with(|c, _| rows(query(c, q)?, flow_row))
    }

    fn flow(&self, id: i64) -> Result<Option<FlowDetail>, StoreError> {
        let sql = flow_sql::detail('$');
        let n = flow_sql::ROW_FIELDS;
        self.with(|c, _| {
            let Some(r) = c.query_opt(&sql, &[&id])? else {
                return Ok(None);
            };
            Ok(Some(FlowDetail {
                row: flow_row(&r)?,
                agent_id: r.try_get(n)?,
                packets_out: u(r.try_get(n + 1)?),
                packets_in: u(r.try_get(n + 2)?),
                closed: r.try_get(n + 3)?,
                uid: r
                    .try_get::<_, Option<i64>>(n + 4)?
                    .and_then(|v| u32::try_from(v).ok()),
                user: r.try_get(n + 5)?,
                comm: r.try_get(n + 6)?,
                cmdline: r.try_get(n + 7)?,
                cgroup: r.try_get(n + 8)?,
                unattributed_reason: r.try_get(n + 9)?,
            }))
        })
    }

    fn flow_summary(&self, f: &FlowFilter, buckets: usize) -> Result<FlowSummary, StoreError> {
        let plan = flow_sql::summary(f, buckets, crate::ingest::now_ns(), '$', &Hosts::Select);
        self.with(|c, _| {
            let series = rows(query(c, plan.series)?, |r| {
                Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
            })?;
            let top_hosts = rows(query(c, plan.top_hosts)?, |r| {
                Ok(TopHost {
                    host: r.try_get(0)?,
                    flows: u(r.try_get(1)?),
                })
            })?;
            let top_escaped_ports = rows(query(c, plan.escaped_ports)?, |r| {
                Ok((port(r.try_get(0)?), u(r.try_get(1)?)))
            })?;
            Ok(FlowSummary {
                start_ns: plan.start_ns,
                width_ns: plan.width_ns,
                buckets: bucketed(series, plan.buckets),
                top_hosts,
                top_escaped_ports,
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
            let n = c.execute(
                "DELETE FROM flows WHERE last_seen_ns < $1",
                &[&ns(before_ns)],
            )?;
            // The periods wholly before the cut go with their flows.
            for p in flow_sql::PERIODS {
                c.execute(
                    &format!("DELETE FROM {} WHERE period < $1", p.table),
                    &[&ns(before_ns / p.ns)],
                )?;
            }
            Ok(n as usize)
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
