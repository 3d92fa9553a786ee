//! The runs part of the SQLite backend.
use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::Value;

use super::SqliteStore;
use crate::store::*;

const RUN: &str =
    "SELECT id, playbook, alert_key, agent_id, host_name, facts, context, state, step,
    phase, attempts, wake_ns, created_ns, updated_ns, error FROM runs";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    let json = |i: usize| -> rusqlite::Result<Value> {
        let s: String = r.get(i)?;
        Ok(serde_json::from_str(&s).unwrap_or(Value::Null))
    };
    Ok(RunRow {
        id: r.get(0)?,
        playbook: r.get(1)?,
        alert_key: r.get(2)?,
        agent_id: r.get(3)?,
        host_name: r.get(4)?,
        facts: json(5)?,
        context: json(6)?,
        state: r.get(7)?,
        step: r.get(8)?,
        phase: r.get(9)?,
        attempts: r.get(10)?,
        wake_ns: u(r.get(11)?),
        created_ns: u(r.get(12)?),
        updated_ns: u(r.get(13)?),
        error: r.get(14)?,
    })
}

const APPROVAL: &str = "SELECT id, run_id, step, via, username, state, question, requested_ns,
    deadline_ns, decided_ns, decided_by, duo_txid, link_hash FROM approvals";

fn approval_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApprovalRow> {
    Ok(ApprovalRow {
        id: r.get(0)?,
        run_id: r.get(1)?,
        step: r.get(2)?,
        via: r.get(3)?,
        username: r.get(4)?,
        state: r.get(5)?,
        question: r.get(6)?,
        requested_ns: u(r.get(7)?),
        deadline_ns: u(r.get(8)?),
        decided_ns: r.get::<_, Option<i64>>(9)?.map(u),
        decided_by: r.get(10)?,
        duo_txid: r.get(11)?,
        link_hash: r.get(12)?,
    })
}

fn audit_tx(
    tx: &Transaction<'_>,
    actor: &str,
    action: &str,
    target: &str,
    detail: &Value,
    now_ns: u64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO audit (ts_ns, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![ns(now_ns), actor, action, target, detail.to_string()],
    )?;
    Ok(())
}

impl RunStore for SqliteStore {
    #[allow(clippy::too_many_arguments)]
    fn start_run(
        &mut self,
        playbook: &str,
        alert_key: &str,
        agent_id: &str,
        host_name: &str,
        facts: &Value,
        first_step: &str,
        now_ns: u64,
    ) -> Result<Option<i64>, StoreError> {
        let tx = self.write_tx()?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO runs (playbook, alert_key, agent_id, host_name, facts, context,
                 state, step, created_ns, updated_ns)
             VALUES (?1, ?2, ?3, ?4, ?5, '{}', 'running', ?6, ?7, ?7)",
            params![
                playbook,
                alert_key,
                agent_id,
                host_name,
                facts.to_string(),
                first_step,
                ns(now_ns)
            ],
        )?;
        if n == 0 {
            return Ok(None);
        }
        let id = tx.last_insert_rowid();
        audit_tx(
            &tx,
            &format!("playbook:{playbook}"),
            "run.started",
            agent_id,
            &serde_json::json!({"run": id, "alert_key": alert_key}),
            now_ns,
        )?;
        tx.commit()?;
        Ok(Some(id))
    }

    fn claim_due_runs(
        &mut self,
        now_ns: u64,
        limit: usize,
        owner: &str,
        lease_ns: u64,
    ) -> Result<Vec<RunRow>, StoreError> {
        let tx = self.write_tx()?;
        let ids: Vec<i64> = {
            let mut q = tx.prepare(
                "SELECT id FROM runs WHERE state IN ('running', 'waiting') AND wake_ns <= ?1
                     AND lease_until_ns <= ?1 ORDER BY id LIMIT ?2",
            )?;
            q.query_map(params![ns(now_ns), limit as i64], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            tx.execute(
                "UPDATE runs SET owner = ?2, lease_until_ns = ?3 WHERE id = ?1",
                params![id, owner, ns(now_ns.saturating_add(lease_ns))],
            )?;
            out.push(tx.query_row(&format!("{RUN} WHERE id = ?1"), [id], run_row)?);
        }
        tx.commit()?;
        Ok(out)
    }

    fn run(&self, id: i64) -> Result<Option<RunRow>, StoreError> {
        Ok(self
            .conn
            .query_row(&format!("{RUN} WHERE id = ?1"), [id], run_row)
            .optional()?)
    }

    fn runs(&self, state: Option<&str>, limit: usize) -> Result<Vec<RunRow>, StoreError> {
        let mut q = self.conn.prepare(&format!(
            "{RUN} WHERE ?1 IS NULL OR state = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = q.query_map(params![state, limit.clamp(1, 10_000) as i64], run_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn run_steps(&self, run_id: i64) -> Result<Vec<RunStepRow>, StoreError> {
        let mut q = self.conn.prepare(
            "SELECT step, kind, state, started_ns, finished_ns, detail FROM run_steps
             WHERE run_id = ?1 ORDER BY id",
        )?;
        let rows = q.query_map([run_id], |r| {
            let d: String = r.get(5)?;
            Ok(RunStepRow {
                step: r.get(0)?,
                kind: r.get(1)?,
                state: r.get(2)?,
                started_ns: u(r.get(3)?),
                finished_ns: u(r.get(4)?),
                detail: serde_json::from_str(&d).unwrap_or(Value::Null),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn finish_step(
        &mut self,
        run: &RunRow,
        rec: &StepRecord<'_>,
        context: &Value,
        next: Next<'_>,
        now_ns: u64,
    ) -> Result<(), StoreError> {
        let tx = self.write_tx()?;
        tx.execute(
            "INSERT INTO run_steps (run_id, step, kind, state, started_ns, finished_ns, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                run.id,
                rec.step,
                rec.kind,
                rec.state,
                ns(rec.started_ns),
                ns(now_ns),
                rec.detail.to_string()
            ],
        )?;
        let (state, step, error) = match next {
            Next::Step(s) => ("running", Some(s), None),
            Next::Done => ("done", None, None),
            Next::Failed(e) => ("failed", None, Some(e)),
        };
        tx.execute(
            "UPDATE runs SET state = ?2, step = ?3, phase = 0, attempts = 0, wake_ns = 0,
                 owner = NULL, lease_until_ns = 0,
                 context = ?4, updated_ns = ?5, error = ?6 WHERE id = ?1",
            params![run.id, state, step, context.to_string(), ns(now_ns), error],
        )?;
        let actor = format!("playbook:{}", run.playbook);
        let mut detail = serde_json::json!({"run": run.id, "step": rec.step, "kind": rec.kind,
            "result": rec.state, "detail": rec.detail});
        if let Some(e) = error {
            detail["error"] = Value::from(e);
        }
        audit_tx(
            &tx,
            &actor,
            &format!("run.step.{}", rec.state),
            &run.agent_id,
            &detail,
            now_ns,
        )?;
        if state != "running" {
            audit_tx(
                &tx,
                &actor,
                &format!("run.{state}"),
                &run.agent_id,
                &serde_json::json!({"run": run.id}),
                now_ns,
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn park_run(
        &mut self,
        run_id: i64,
        phase: i64,
        attempts: i64,
        context: &Value,
        wake_ns: u64,
        error: Option<&str>,
        now_ns: u64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE runs SET state = 'waiting', phase = ?2, attempts = ?3, context = ?4,
                 owner = NULL, lease_until_ns = 0,
                 wake_ns = ?5, updated_ns = ?6, error = ?7 WHERE id = ?1",
            params![
                run_id,
                phase,
                attempts,
                context.to_string(),
                ns(wake_ns),
                ns(now_ns),
                error
            ],
        )?;
        Ok(())
    }

    fn run_command(
        &mut self,
        run: &RunRow,
        context: &Value,
        c: &NewCommand,
        now_ns: u64,
    ) -> Result<Option<i64>, StoreError> {
        let tx = self.write_tx()?;
        let Some(id) = super::commands::insert_command(&tx, &run.agent_id, c, now_ns)? else {
            return Ok(None);
        };
        let mut ctx = context.clone();
        if let (Some(step), Some(o)) = (&run.step, ctx.as_object_mut()) {
            o.insert(format!("command:{step}"), Value::from(id));
        }
        tx.execute(
            "UPDATE runs SET state = 'waiting', phase = 1, context = ?2, updated_ns = ?3
             WHERE id = ?1",
            params![run.id, ctx.to_string(), ns(now_ns)],
        )?;
        tx.commit()?;
        Ok(Some(id))
    }

    fn command_state(&self, id: i64) -> Result<Option<(String, Option<String>)>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT state, result FROM commands WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    #[allow(clippy::too_many_arguments)]
    fn request_approval(
        &mut self,
        run: &RunRow,
        via: &str,
        username: &str,
        question: &str,
        deadline_ns: u64,
        link_hash: Option<&str>,
        context: &Value,
        now_ns: u64,
    ) -> Result<i64, StoreError> {
        let tx = self.write_tx()?;
        let step = run.step.clone().unwrap_or_default();
        tx.execute(
            "INSERT OR IGNORE INTO approvals (run_id, step, via, username, state, question,
                 requested_ns, deadline_ns, link_hash)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7, ?8)",
            params![
                run.id,
                step,
                via,
                username,
                question,
                ns(now_ns),
                ns(deadline_ns),
                link_hash
            ],
        )?;
        let id: i64 = tx.query_row(
            "SELECT id FROM approvals WHERE run_id = ?1 AND step = ?2",
            params![run.id, step],
            |r| r.get(0),
        )?;
        tx.execute(
            "UPDATE runs SET state = 'waiting', phase = 1, context = ?2, wake_ns = 0, updated_ns = ?3
             WHERE id = ?1",
            params![run.id, context.to_string(), ns(now_ns)],
        )?;
        audit_tx(
            &tx,
            &format!("playbook:{}", run.playbook),
            "approval.requested",
            &run.agent_id,
            &serde_json::json!({"run": run.id, "approval": id, "via": via, "user": username}),
            now_ns,
        )?;
        tx.commit()?;
        Ok(id)
    }

    fn set_duo_txid(&mut self, approval_id: i64, txid: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE approvals SET duo_txid = ?2 WHERE id = ?1",
            params![approval_id, txid],
        )?;
        Ok(())
    }

    fn approval(&self, id: i64) -> Result<Option<ApprovalRow>, StoreError> {
        Ok(self
            .conn
            .query_row(&format!("{APPROVAL} WHERE id = ?1"), [id], approval_row)
            .optional()?)
    }

    fn approval_for(&self, run_id: i64, step: &str) -> Result<Option<ApprovalRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("{APPROVAL} WHERE run_id = ?1 AND step = ?2"),
                params![run_id, step],
                approval_row,
            )
            .optional()?)
    }

    fn approvals(&self, state: Option<&str>, limit: usize) -> Result<Vec<ApprovalRow>, StoreError> {
        let mut q = self.conn.prepare(&format!(
            "{APPROVAL} WHERE ?1 IS NULL OR state = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = q.query_map(params![state, limit.clamp(1, 10_000) as i64], approval_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn decide_approval(
        &mut self,
        id: i64,
        state: &str,
        by: &str,
        now_ns: u64,
    ) -> Result<Option<ApprovalRow>, StoreError> {
        let tx = self.write_tx()?;
        let n = tx.execute(
            "UPDATE approvals SET state = ?2, decided_ns = ?3, decided_by = ?4
             WHERE id = ?1 AND state = 'pending'",
            params![id, state, ns(now_ns), by],
        )?;
        if n == 0 {
            return Ok(None);
        }
        let row = tx.query_row(&format!("{APPROVAL} WHERE id = ?1"), [id], approval_row)?;
        tx.execute("UPDATE runs SET wake_ns = 0 WHERE id = ?1", [row.run_id])?;
        let agent: String = tx
            .query_row(
                "SELECT agent_id FROM runs WHERE id = ?1",
                [row.run_id],
                |r| r.get(0),
            )
            .unwrap_or_default();
        audit_tx(
            &tx,
            by,
            &format!("approval.{state}"),
            &agent,
            &serde_json::json!({"approval": id, "run": row.run_id, "via": row.via}),
            now_ns,
        )?;
        tx.commit()?;
        Ok(Some(row))
    }
}
