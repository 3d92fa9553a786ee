//! The commands part of the PostgreSQL backend: commands to agents (each new one sends
//! `NOTIFY cordon_commands` with the agent id, so the node holding the agent delivers it),
//! agents' enforcement reports, and the audit log.
use ::postgres::{GenericClient, Row};

use super::{PgStore, audit_in, hosts::rows, json, limit, listen, notify};
use crate::store::*;

const COMMAND: &str = "SELECT c.id, h.agent_id, c.kind, c.body, c.created_ns, c.created_by,
        c.state, c.sent_ns, c.done_ns, c.result
    FROM commands c JOIN hosts h ON h.id = c.host_id";

fn command_row(r: &Row) -> Result<CommandRow, StoreError> {
    let body: String = r.try_get(3)?;
    Ok(CommandRow {
        id: r.try_get(0)?,
        host: r.try_get(1)?,
        kind: r.try_get(2)?,
        body: json(&body),
        created_ns: u(r.try_get(4)?),
        created_by: r.try_get(5)?,
        state: r.try_get(6)?,
        sent_ns: r.try_get::<_, Option<i64>>(7)?.map(u),
        done_ns: r.try_get::<_, Option<i64>>(8)?.map(u),
        result: r.try_get(9)?,
    })
}

/// One command by id, inside the caller's transaction.
fn command_by_id(c: &mut impl GenericClient, id: i64) -> Result<CommandRow, StoreError> {
    command_row(&c.query_one(&format!("{COMMAND} WHERE c.id = $1"), &[&id])?)
}

/// Inserts a pending command, its audit entry and its notification in the caller's
/// transaction; `None` if there is no such host.
pub(super) fn insert_command(
    c: &mut impl GenericClient,
    agent_id: &str,
    cmd: &NewCommand,
    now_ns: u64,
) -> Result<Option<i64>, StoreError> {
    let Some(host) = c.query_opt("SELECT id FROM hosts WHERE agent_id = $1", &[&agent_id])? else {
        return Ok(None);
    };
    let host_id: i64 = host.try_get(0)?;
    let id: i64 = c
        .query_one(
            "INSERT INTO commands (host_id, kind, body, created_ns, created_by, state)
             VALUES ($1, $2, $3, $4, $5, 'pending') RETURNING id",
            &[
                &host_id,
                &cmd.kind,
                &cmd.body.to_string(),
                &ns(now_ns),
                &cmd.by,
            ],
        )?
        .try_get(0)?;
    audit_in(
        c,
        &cmd.by,
        &format!("{}.requested", cmd.kind),
        agent_id,
        &serde_json::json!({"command_id": id, "command": cmd.body}),
        now_ns,
    )?;
    notify(c, listen::COMMANDS, agent_id)?;
    Ok(Some(id))
}

impl CommandStore for PgStore {
    fn audit(
        &mut self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &serde_json::Value,
        now_ns: u64,
    ) -> Result<(), StoreError> {
        self.with_mut(|c, _| audit_in(c, actor, action, target, detail, now_ns))
    }

    fn audit_log(&self, since_ns: u64, n: usize) -> Result<Vec<AuditRow>, StoreError> {
        self.with(|c, _| {
            rows(
                c.query(
                    "SELECT id, ts_ns, actor, action, target, detail FROM audit
                     WHERE ts_ns >= $1 ORDER BY id DESC LIMIT $2",
                    &[&ns(since_ns), &limit(n.clamp(1, 10_000))],
                )?,
                |r| {
                    let d: String = r.try_get(5)?;
                    Ok(AuditRow {
                        id: r.try_get(0)?,
                        ts_ns: u(r.try_get(1)?),
                        actor: r.try_get(2)?,
                        action: r.try_get(3)?,
                        target: r.try_get(4)?,
                        detail: json(&d),
                    })
                },
            )
        })
    }

    fn create_command(
        &mut self,
        agent_id: &str,
        c: &NewCommand,
        now_ns: u64,
    ) -> Result<Option<CommandRow>, StoreError> {
        self.tx(|tx, _| match insert_command(tx, agent_id, c, now_ns)? {
            Some(id) => Ok(Some(command_by_id(tx, id)?)),
            None => Ok(None),
        })
    }

    fn open_commands(&self, agent_id: &str, resend: bool) -> Result<Vec<CommandRow>, StoreError> {
        self.with(|c, _| {
            rows(
                c.query(
                    &format!(
                        "{COMMAND} WHERE h.agent_id = $1
                             AND (c.state = 'pending' OR ($2 AND c.state = 'sent'))
                         ORDER BY c.id"
                    ),
                    &[&agent_id, &resend],
                )?,
                command_row,
            )
        })
    }

    fn commands(&self, agent_id: Option<&str>, n: usize) -> Result<Vec<CommandRow>, StoreError> {
        self.with(|c, _| {
            rows(
                c.query(
                    &format!(
                        "{COMMAND} WHERE $1::text IS NULL OR h.agent_id = $1
                         ORDER BY c.id DESC LIMIT $2"
                    ),
                    &[&agent_id, &limit(n.clamp(1, 10_000))],
                )?,
                command_row,
            )
        })
    }

    fn mark_sent(&mut self, id: i64, now_ns: u64) -> Result<(), StoreError> {
        self.with_mut(|c, _| {
            c.execute(
                "UPDATE commands SET state = 'sent', sent_ns = $2
                 WHERE id = $1 AND state = 'pending'",
                &[&id, &ns(now_ns)],
            )?;
            Ok(())
        })
    }

    fn command_result(
        &mut self,
        agent_id: &str,
        id: i64,
        ok: bool,
        message: &str,
        now_ns: u64,
    ) -> Result<Option<CommandRow>, StoreError> {
        let state = if ok { "done" } else { "failed" };
        self.tx(|tx, _| {
            let n = tx.execute(
                "UPDATE commands SET state = $3, done_ns = $4, result = $5
                 WHERE id = $1 AND host_id = (SELECT id FROM hosts WHERE agent_id = $2)",
                &[&id, &agent_id, &state, &ns(now_ns), &message],
            )?;
            if n == 0 {
                return Ok(None);
            }
            let row = command_by_id(tx, id)?;
            audit_in(
                tx,
                agent_id,
                &format!("{}.{state}", row.kind),
                agent_id,
                &serde_json::json!({"command_id": id, "result": message}),
                now_ns,
            )?;
            Ok(Some(row))
        })
    }

    fn set_enforcement(
        &mut self,
        agent_id: &str,
        e: &HostEnforcement<'_>,
        now_ns: u64,
    ) -> Result<(), StoreError> {
        let opt = |v: u64| (v > 0 && e.isolated).then_some(ns(v));
        self.tx(|tx, _| {
            let before: Option<bool> = match tx.query_opt(
                "SELECT isolated FROM hosts WHERE agent_id = $1 FOR UPDATE",
                &[&agent_id],
            )? {
                Some(r) => Some(r.try_get(0)?),
                None => None,
            };
            tx.execute(
                "UPDATE hosts SET isolated = $2, isolated_since_ns = $3, isolated_by = $4,
                     isolation_reason = $5, isolation_expires_ns = $6, enforcement_backend = $7
                 WHERE agent_id = $1",
                &[
                    &agent_id,
                    &e.isolated,
                    &opt(e.since_ns),
                    &e.isolated.then_some(e.by),
                    &e.isolated.then_some(e.reason),
                    &opt(e.expires_ns),
                    &e.backend,
                ],
            )?;
            if before.is_some_and(|b| b != e.isolated) {
                audit_in(
                    tx,
                    agent_id,
                    if e.isolated {
                        "host.isolated"
                    } else {
                        "host.released"
                    },
                    agent_id,
                    &serde_json::json!({"backend": e.backend, "by": e.by, "reason": e.reason}),
                    now_ns,
                )?;
            }
            Ok(())
        })
    }
}
