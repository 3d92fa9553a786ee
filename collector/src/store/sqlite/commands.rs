//! The commands part of the SQLite backend.
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::store::*;

const COMMAND: &str = "SELECT c.id, h.agent_id, c.kind, c.body, c.created_ns, c.created_by,
        c.state, c.sent_ns, c.done_ns, c.result
    FROM commands c JOIN hosts h ON h.id = c.host_id";

fn command_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CommandRow> {
    let body: String = r.get(3)?;
    Ok(CommandRow {
        id: r.get(0)?,
        host: r.get(1)?,
        kind: r.get(2)?,
        body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        created_ns: u(r.get(4)?),
        created_by: r.get(5)?,
        state: r.get(6)?,
        sent_ns: r.get::<_, Option<i64>>(7)?.map(u),
        done_ns: r.get::<_, Option<i64>>(8)?.map(u),
        result: r.get(9)?,
    })
}

/// Inserts a pending command and its audit entry in `tx`; `None` if there is no such host.
pub(super) fn insert_command(
    tx: &rusqlite::Transaction<'_>,
    agent_id: &str,
    c: &NewCommand,
    now_ns: u64,
) -> Result<Option<i64>, StoreError> {
    let Some(host_id): Option<i64> = tx
        .query_row(
            "SELECT id FROM hosts WHERE agent_id = ?1",
            [agent_id],
            |r| r.get(0),
        )
        .optional()?
    else {
        return Ok(None);
    };
    tx.execute(
        "INSERT INTO commands (host_id, kind, body, created_ns, created_by, state)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending')",
        params![host_id, c.kind, c.body.to_string(), ns(now_ns), c.by],
    )?;
    let id = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO audit (ts_ns, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            ns(now_ns),
            c.by,
            format!("{}.requested", c.kind),
            agent_id,
            serde_json::json!({"command_id": id, "command": c.body}).to_string()
        ],
    )?;
    Ok(Some(id))
}

impl CommandStore for SqliteStore {
    fn audit(
        &mut self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &serde_json::Value,
        now_ns: u64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO audit (ts_ns, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![ns(now_ns), actor, action, target, detail.to_string()],
        )?;
        Ok(())
    }

    fn audit_log(&self, since_ns: u64, limit: usize) -> Result<Vec<AuditRow>, StoreError> {
        let mut q = self.conn.prepare(
            "SELECT id, ts_ns, actor, action, target, detail FROM audit WHERE ts_ns >= ?1
             ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = q.query_map(params![ns(since_ns), limit.clamp(1, 10_000) as i64], |r| {
            let d: String = r.get(5)?;
            Ok(AuditRow {
                id: r.get(0)?,
                ts_ns: u(r.get(1)?),
                actor: r.get(2)?,
                action: r.get(3)?,
                target: r.get(4)?,
                detail: serde_json::from_str(&d).unwrap_or(serde_json::Value::Null),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn create_command(
        &mut self,
        agent_id: &str,
        c: &NewCommand,
        now_ns: u64,
    ) -> Result<Option<CommandRow>, StoreError> {
        let tx = self.write_tx()?;
        let Some(id) = insert_command(&tx, agent_id, c, now_ns)? else {
            return Ok(None);
        };
        let row = tx.query_row(&format!("{COMMAND} WHERE c.id = ?1"), [id], command_row)?;
        tx.commit()?;
        Ok(Some(row))
    }

    fn open_commands(&self, agent_id: &str, resend: bool) -> Result<Vec<CommandRow>, StoreError> {
        let mut q = self.conn.prepare(&format!(
            "{COMMAND} WHERE h.agent_id = ?1
                 AND (c.state = 'pending' OR (?2 AND c.state = 'sent')) ORDER BY c.id"
        ))?;
        let rows = q.query_map(params![agent_id, resend], command_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn commands(
        &self,
        agent_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CommandRow>, StoreError> {
        let mut q = self.conn.prepare(&format!(
            "{COMMAND} WHERE ?1 IS NULL OR h.agent_id = ?1 ORDER BY c.id DESC LIMIT ?2"
        ))?;
        let rows = q.query_map(
            params![agent_id, limit.clamp(1, 10_000) as i64],
            command_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn mark_sent(&mut self, id: i64, now_ns: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE commands SET state = 'sent', sent_ns = ?2 WHERE id = ?1 AND state = 'pending'",
            params![id, ns(now_ns)],
        )?;
        Ok(())
    }

    fn command_result(
        &mut self,
        agent_id: &str,
        id: i64,
        ok: bool,
        message: &str,
        now_ns: u64,
    ) -> Result<Option<CommandRow>, StoreError> {
        let tx = self.write_tx()?;
        let n = tx.execute(
            "UPDATE commands SET state = ?3, done_ns = ?4, result = ?5
             WHERE id = ?1 AND host_id = (SELECT id FROM hosts WHERE agent_id = ?2)",
            params![
                id,
                agent_id,
                if ok { "done" } else { "failed" },
                ns(now_ns),
                message
            ],
        )?;
        if n == 0 {
            return Ok(None);
        }
        let row = tx.query_row(&format!("{COMMAND} WHERE c.id = ?1"), [id], command_row)?;
        tx.execute(
            "INSERT INTO audit (ts_ns, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                ns(now_ns),
                agent_id,
                format!("{}.{}", row.kind, if ok { "done" } else { "failed" }),
                agent_id,
                serde_json::json!({"command_id": id, "result": message}).to_string()
            ],
        )?;
        tx.commit()?;
        Ok(Some(row))
    }

    fn set_enforcement(
        &mut self,
        agent_id: &str,
        e: &HostEnforcement<'_>,
        now_ns: u64,
    ) -> Result<(), StoreError> {
        let before: Option<bool> = self
            .conn
            .query_row(
                "SELECT isolated FROM hosts WHERE agent_id = ?1",
                [agent_id],
                |r| r.get(0),
            )
            .optional()?;
        let opt = |v: u64| (v > 0).then_some(ns(v));
        self.conn.execute(
            "UPDATE hosts SET isolated = ?2, isolated_since_ns = ?3, isolated_by = ?4,
                 isolation_reason = ?5, isolation_expires_ns = ?6, enforcement_backend = ?7
             WHERE agent_id = ?1",
            params![
                agent_id,
                e.isolated,
                opt(e.since_ns).filter(|_| e.isolated),
                (e.isolated).then_some(e.by),
                (e.isolated).then_some(e.reason),
                opt(e.expires_ns).filter(|_| e.isolated),
                e.backend
            ],
        )?;
        if before.is_some_and(|b| b != e.isolated) {
            self.audit(
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
    }
}
