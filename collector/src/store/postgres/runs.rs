//! The runs part of the PostgreSQL backend: playbook runs, their steps and approvals. Runs
//! are claimed with `FOR UPDATE SKIP LOCKED`, so engines on two nodes never get the same
//! run; starting a run and deciding an approval send `NOTIFY cordon_runs` (the run id).
use ::postgres::{GenericClient, Row};
use serde_json::Value;

use super::{
    PgStore, audit_in, commands::insert_command, hosts::rows, json, limit, listen, notify,
};
use crate::store::*;

const RUN: &str = "SELECT id, playbook, alert_key, agent_id, host_name, facts, context, state,
    step, phase, attempts, wake_ns, created_ns, updated_ns, error FROM runs";

fn run_row(r: &Row) -> Result<RunRow, StoreError> {
    let (facts, context): (String, String) = (r.try_get(5)?, r.try_get(6)?);
    Ok(RunRow {
        id: r.try_get(0)?,
        playbook: r.try_get(1)?,
        alert_key: r.try_get(2)?,
        agent_id: r.try_get(3)?,
        host_name: r.try_get(4)?,
        facts: json(&facts),
        context: json(&context),
        state: r.try_get(7)?,
        step: r.try_get(8)?,
        phase: r.try_get(9)?,
        attempts: r.try_get(10)?,
        wake_ns: u(r.try_get(11)?),
        created_ns: u(r.try_get(12)?),
        updated_ns: u(r.try_get(13)?),
        error: r.try_get(14)?,
    })
}

const APPROVAL: &str = "SELECT id, run_id, step, via, username, state, question, requested_ns,
    deadline_ns, decided_ns, decided_by, duo_txid, link_hash FROM approvals";

fn approval_row(r: &Row) -> Result<ApprovalRow, StoreError> {
    Ok(ApprovalRow {
        id: r.try_get(0)?,
        run_id: r.try_get(1)?,
        step: r.try_get(2)?,
        via: r.try_get(3)?,
        username: r.try_get(4)?,
        state: r.try_get(5)?,
        question: r.try_get(6)?,
        requested_ns: u(r.try_get(7)?),
        deadline_ns: u(r.try_get(8)?),
        decided_ns: r.try_get::<_, Option<i64>>(9)?.map(u),
        decided_by: r.try_get(10)?,
        duo_txid: r.try_get(11)?,
        link_hash: r.try_get(12)?,
    })
}

fn one_approval(
    c: &mut impl GenericClient,
    clause: &str,
    params: &[&(dyn ::postgres::types::ToSql + Sync)],
) -> Result<Option<ApprovalRow>, StoreError> {
    c.query_opt(&format!("{APPROVAL} {clause}"), params)?
        .as_ref()
        .map(approval_row)
        .transpose()
}

impl RunStore for PgStore {
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
        self.tx(|tx, _| {
            let Some(r) = tx.query_opt(
                "INSERT INTO runs (playbook, alert_key, agent_id, host_name, facts, context,
                     state, step, created_ns, updated_ns)
                 VALUES ($1, $2, $3, $4, $5, '{}', 'running', $6, $7, $7)
                 ON CONFLICT (playbook, alert_key) WHERE state IN ('running', 'waiting')
                     DO NOTHING
                 RETURNING id",
                &[
                    &playbook,
                    &alert_key,
                    &agent_id,
                    &host_name,
                    &facts.to_string(),
                    &first_step,
                    &ns(now_ns),
                ],
            )?
            else {
                return Ok(None);
            };
            let id: i64 = r.try_get(0)?;
            audit_in(
                tx,
                &format!("playbook:{playbook}"),
                "run.started",
                agent_id,
                &serde_json::json!({"run": id, "alert_key": alert_key}),
                now_ns,
            )?;
            notify(tx, listen::RUNS, &id.to_string())?;
            Ok(Some(id))
        })
    }

    fn claim_due_runs(
        &mut self,
        now_ns: u64,
        n: usize,
        owner: &str,
        lease_ns: u64,
    ) -> Result<Vec<RunRow>, StoreError> {
        self.with_mut(|c, _| {
            let mut out = rows(
                c.query(
                    "WITH due AS (
                         SELECT id FROM runs
                         WHERE state IN ('running', 'waiting') AND wake_ns <= $1
                             AND lease_until_ns <= $1
                         ORDER BY id LIMIT $2
                         FOR UPDATE SKIP LOCKED)
                     UPDATE runs r SET owner = $3, lease_until_ns = $4 FROM due
                     WHERE r.id = due.id
                     RETURNING r.id, r.playbook, r.alert_key, r.agent_id, r.host_name, r.facts,
                         r.context, r.state, r.step, r.phase, r.attempts, r.wake_ns,
                         r.created_ns, r.updated_ns, r.error",
                    &[
                        &ns(now_ns),
                        &limit(n),
                        &owner,
                        &ns(now_ns.saturating_add(lease_ns)),
                    ],
                )?,
                run_row,
            )?;
            out.sort_by_key(|r| r.id);
            Ok(out)
        })
    }

    fn run(&self, id: i64) -> Result<Option<RunRow>, StoreError> {
        self.with(|c, _| {
            c.query_opt(&format!("{RUN} WHERE id = $1"), &[&id])?
                .as_ref()
                .map(run_row)
                .transpose()
        })
    }

    fn runs(&self, state: Option<&str>, n: usize) -> Result<Vec<RunRow>, StoreError> {
        self.with(|c, _| {
            rows(
                c.query(
                    &format!(
                        "{RUN} WHERE $1::text IS NULL OR state = $1 ORDER BY id DESC LIMIT $2"
                    ),
                    &[&state, &limit(n.clamp(1, 10_000))],
                )?,
                run_row,
            )
        })
    }

    fn run_steps(&self, run_id: i64) -> Result<Vec<RunStepRow>, StoreError> {
        self.with(|c, _| {
            rows(
                c.query(
                    "SELECT step, kind, state, started_ns, finished_ns, detail FROM run_steps
                     WHERE run_id = $1 ORDER BY id",
                    &[&run_id],
                )?,
                |r| {
                    let d: String = r.try_get(5)?;
                    Ok(RunStepRow {
                        step: r.try_get(0)?,
                        kind: r.try_get(1)?,
                        state: r.try_get(2)?,
                        started_ns: u(r.try_get(3)?),
                        finished_ns: u(r.try_get(4)?),
                        detail: json(&d),
                    })
                },
            )
        })
    }

    fn finish_step(
        &mut self,
        run: &RunRow,
        rec: &StepRecord<'_>,
        context: &Value,
        next: Next<'_>,
        now_ns: u64,
    ) -> Result<(), StoreError> {
        let (state, step, error) = match next {
            Next::Step(s) => ("running", Some(s), None),
            Next::Done => ("done", None, None),
            Next::Failed(e) => ("failed", None, Some(e)),
        };
        self.tx(|tx, _| {
            tx.execute(
                "INSERT INTO run_steps (run_id, step, kind, state, started_ns, finished_ns, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &run.id,
                    &rec.step,
                    &rec.kind,
                    &rec.state,
                    &ns(rec.started_ns),
                    &ns(now_ns),
                    &rec.detail.to_string(),
                ],
            )?;
            tx.execute(
                "UPDATE runs SET state = $2, step = $3, phase = 0, attempts = 0, wake_ns = 0,
                     owner = NULL, lease_until_ns = 0,
                     context = $4, updated_ns = $5, error = $6 WHERE id = $1",
                &[
                    &run.id,
                    &state,
                    &step,
                    &context.to_string(),
                    &ns(now_ns),
                    &error,
                ],
            )?;
            let actor = format!("playbook:{}", run.playbook);
            let mut detail = serde_json::json!({"run": run.id, "step": rec.step,
                "kind": rec.kind, "result": rec.state, "detail": rec.detail});
            if let Some(e) = error {
                detail["error"] = Value::from(e);
            }
            audit_in(
                tx,
                &actor,
                &format!("run.step.{}", rec.state),
                &run.agent_id,
                &detail,
                now_ns,
            )?;
            if state != "running" {
                audit_in(
                    tx,
                    &actor,
                    &format!("run.{state}"),
                    &run.agent_id,
                    &serde_json::json!({"run": run.id}),
                    now_ns,
                )?;
            }
            Ok(())
        })
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
        self.with_mut(|c, _| {
            c.execute(
                "UPDATE runs SET state = 'waiting', phase = $2, attempts = $3, context = $4,
                     owner = NULL, lease_until_ns = 0,
                     wake_ns = $5, updated_ns = $6, error = $7 WHERE id = $1",
                &[
                    &run_id,
                    &phase,
                    &attempts,
                    &context.to_string(),
                    &ns(wake_ns),
                    &ns(now_ns),
                    &error,
                ],
            )?;
            Ok(())
        })
    }

    fn run_command(
        &mut self,
        run: &RunRow,
        context: &Value,
        c: &NewCommand,
        now_ns: u64,
    ) -> Result<Option<i64>, StoreError> {
        self.tx(|tx, _| {
            let Some(id) = insert_command(tx, &run.agent_id, c, now_ns)? else {
                return Ok(None);
            };
            let mut ctx = context.clone();
            if let (Some(step), Some(o)) = (&run.step, ctx.as_object_mut()) {
                o.insert(format!("command:{step}"), Value::from(id));
            }
            tx.execute(
                "UPDATE runs SET state = 'waiting', phase = 1, context = $2, updated_ns = $3
                 WHERE id = $1",
                &[&run.id, &ctx.to_string(), &ns(now_ns)],
            )?;
            Ok(Some(id))
        })
    }

    fn command_state(&self, id: i64) -> Result<Option<(String, Option<String>)>, StoreError> {
        self.with(|c, _| {
            match c.query_opt("SELECT state, result FROM commands WHERE id = $1", &[&id])? {
                Some(r) => Ok(Some((r.try_get(0)?, r.try_get(1)?))),
                None => Ok(None),
            }
        })
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
        let step = run.step.clone().unwrap_or_default();
        self.tx(|tx, _| {
            tx.execute(
                "INSERT INTO approvals (run_id, step, via, username, state, question,
                     requested_ns, deadline_ns, link_hash)
                 VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8)
                 ON CONFLICT (run_id, step) DO NOTHING",
                &[
                    &run.id,
                    &step,
                    &via,
                    &username,
                    &question,
                    &ns(now_ns),
                    &ns(deadline_ns),
                    &link_hash,
                ],
            )?;
            let id: i64 = tx
                .query_one(
                    "SELECT id FROM approvals WHERE run_id = $1 AND step = $2",
                    &[&run.id, &step],
                )?
                .try_get(0)?;
            tx.execute(
                "UPDATE runs SET state = 'waiting', phase = 1, context = $2, wake_ns = 0,
                     updated_ns = $3
                 WHERE id = $1",
                &[&run.id, &context.to_string(), &ns(now_ns)],
            )?;
            audit_in(
                tx,
                &format!("playbook:{}", run.playbook),
                "approval.requested",
                &run.agent_id,
                &serde_json::json!({"run": run.id, "approval": id, "via": via,
                    "user": username}),
                now_ns,
            )?;
            Ok(id)
        })
    }

    fn set_duo_txid(&mut self, approval_id: i64, txid: &str) -> Result<(), StoreError> {
        self.with_mut(|c, _| {
            c.execute(
                "UPDATE approvals SET duo_txid = $2 WHERE id = $1",
                &[&approval_id, &txid],
            )?;
            Ok(())
        })
    }

    fn approval(&self, id: i64) -> Result<Option<ApprovalRow>, StoreError> {
        self.with(|c, _| one_approval(c, "WHERE id = $1", &[&id]))
    }

    fn approval_for(&self, run_id: i64, step: &str) -> Result<Option<ApprovalRow>, StoreError> {
        self.with(|c, _| one_approval(c, "WHERE run_id = $1 AND step = $2", &[&run_id, &step]))
    }

    fn approvals(&self, state: Option<&str>, n: usize) -> Result<Vec<ApprovalRow>, StoreError> {
        self.with(|c, _| {
            rows(
                c.query(
                    &format!(
                        "{APPROVAL} WHERE $1::text IS NULL OR state = $1 ORDER BY id DESC LIMIT $2"
                    ),
                    &[&state, &limit(n.clamp(1, 10_000))],
                )?,
                approval_row,
            )
        })
    }

    fn decide_approval(
        &mut self,
        id: i64,
        state: &str,
        by: &str,
        now_ns: u64,
    ) -> Result<Option<ApprovalRow>, StoreError> {
        self.tx(|tx, _| {
            let n = tx.execute(
                "UPDATE approvals SET state = $2, decided_ns = $3, decided_by = $4
                 WHERE id = $1 AND state = 'pending'",
                &[&id, &state, &ns(now_ns), &by],
            )?;
            if n == 0 {
                return Ok(None);
            }
            let Some(row) = one_approval(tx, "WHERE id = $1", &[&id])? else {
                return Ok(None);
            };
            tx.execute("UPDATE runs SET wake_ns = 0 WHERE id = $1", &[&row.run_id])?;
            let agent: String =
                match tx.query_opt("SELECT agent_id FROM runs WHERE id = $1", &[&row.run_id])? {
                    Some(r) => r.try_get(0)?,
                    None => String::new(),
                };
            audit_in(
                tx,
                by,
                &format!("approval.{state}"),
                &agent,
                &serde_json::json!({"approval": id, "run": row.run_id, "via": row.via}),
                now_ns,
            )?;
            notify(tx, listen::RUNS, &row.run_id.to_string())?;
            Ok(Some(row))
        })
    }
}
