//! The playbook engine: takes new alerts from the outbox (as one more reader, `response`),
//! starts the runs their playbooks ask for, and moves each run on, one step at a time.
//! Every transition is stored before the next external call, so a restarted collector
//! resumes each run where it was: an approval still pending keeps its Duo transaction, an
//! isolation already queued is not queued again.
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Value, json};

use super::{
    integrations::{ActionError, DuoAnswer, IncidentText, Integrations},
    playbook::{Action, Channel, Playbook, Step, TicketOp, Via},
    template::render,
    trigger::{AlertFacts, matches},
};
use crate::{
    ingest::Live,
    outputs::Wake,
    store::{NewCommand, Next, RunRow, StepRecord, Store, StoreError},
};

/// The engine's position in the alert outbox.
pub const SINK: &str = "response";
/// The lease of the outbox reader that starts runs.
pub const INTAKE_LEASE: &str = "response.intake";
/// Retries of a step whose call failed but may work later, before the run fails.
const MAX_ATTEMPTS: i64 = 8;
/// How long a step waits for an agent to carry out a command before the run fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);
/// How often a pending Duo push is polled: every 250 ms for its first 5 s (an approver who
/// has the phone in hand answers within seconds, and the isolation should follow at once),
/// then every second.
const DUO_POLL_FAST: Duration = Duration::from_millis(250);
const DUO_POLL: Duration = Duration::from_secs(1);
const DUO_FAST_FOR: Duration = Duration::from_secs(5);
/// How long a claimed run is this engine's alone past its node's last heartbeat (which
/// renews the claims it holds): an engine that dies mid-step leaves its runs to another
/// collector of the cluster after this long.
pub const RUN_LEASE: Duration = crate::cluster::LEASE_TTL;

pub struct Engine {
    pub store: Arc<Mutex<Store>>,
    pub live: Arc<Live>,
    pub playbooks: Vec<Playbook>,
    pub integrations: Box<dyn Integrations>,
    /// Woken when the engine puts a notification in the outbox.
    pub outbox: Arc<Wake>,
    pub alerts: crate::alerts::AlertSettings,
    /// Base URL of this collector's API as approvers reach it (for approval links).
    pub public_url: Option<String>,
    pub clock: Box<dyn Fn() -> u64 + Send>,
    /// This collector's node name: the owner of the runs it claims.
    pub node: String,
}

fn err(e: StoreError) -> String {
    e.to_string()
}

/// A step's outcome.
enum Outcome {
    /// Finished; on to `next` with this detail.
    Done { next: String, detail: Value },
    /// Not finished: look again at this time.
    Park { wake_ns: u64 },
    /// Failed for good.
    Failed(String),
    /// Failed, may work later.
    Retry(String),
}

impl Engine {
    fn now(&self) -> u64 {
        (self.clock)()
    }

    fn with_store<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, String> {
        let mut s = self
            .store
            .lock()
            .map_err(|_| "store lock poisoned".to_string())?;
        f(&mut s).map_err(err)
    }

    /// One round: new alerts, then every run that is due. Returns how much was done.
    pub fn tick(&mut self) -> Result<usize, String> {
        let started = self.intake()?;
        let now = self.now();
        let (owner, lease) = (self.node.clone(), RUN_LEASE.as_nanos() as u64);
        let due = self.with_store(|s| s.claim_due_runs(now, 100, &owner, lease))?;
        let n = due.len();
        for run in due {
            self.advance(run)?;
        }
        Ok(started + n)
    }

    /// Starts runs for the alerts that arrived since the last round. In a cluster one node
    /// at a time does this (the lease [`INTAKE_LEASE`]); every node advances runs.
    fn intake(&mut self) -> Result<usize, String> {
        let (node, now) = (self.node.clone(), self.now());
        let ttl = crate::cluster::ns(crate::cluster::LEASE_TTL);
        if !self.with_store(|s| s.try_lease(INTAKE_LEASE, &node, now, ttl))? {
            return Ok(0);
        }
        let pos = self.with_store(|s| s.sink_position(SINK))?;
        let entries = self.with_store(|s| s.outbox_after(pos, 500))?;
        let Some(last) = entries.last().map(|(id, _)| *id) else {
            return Ok(0);
        };
        let mut started = 0;
        for (_, env) in &entries {
            if env.hec["sourcetype"] != "cordon:alert" {
                continue;
            }
            let Some(facts) = AlertFacts::from_alert(&env.hec["event"]) else {
                continue;
            };
            let agent = facts.agent_id.clone();
            let labels = self.with_store(|s| s.labels(&agent))?;
            for pb in self
                .playbooks
                .iter()
                .filter(|p| matches(&p.trigger, &facts, &labels))
            {
                let Some(first) = pb.steps.first() else {
                    continue;
                };
                let now = self.now();
                let facts_json = serde_json::to_value(&facts).unwrap_or(Value::Null);
                let id = self.with_store(|s| {
                    s.start_run(
                        &pb.name,
                        &facts.key_id,
                        &facts.agent_id,
                        &facts.host,
                        &facts_json,
                        &first.id,
                        now,
                    )
                })?;
                if let Some(id) = id {
                    tracing::info!(run = id, playbook = %pb.name, host = %facts.host, key = %facts.key_id, "playbook run started");
                    started += 1;
                }
            }
        }
        self.with_store(|s| s.set_sink_position(SINK, last, 0))?;
        Ok(started)
    }

    fn advance(&mut self, run: RunRow) -> Result<(), String> {
        let now = self.now();
        let Some(step_id) = run.step.clone() else {
            return Ok(());
        };
        let found = self
            .playbooks
            .iter()
            .find(|p| p.name == run.playbook)
            .and_then(|p| p.steps.iter().find(|s| s.id == step_id).cloned());
        let Some(step) = found else {
            let rec = StepRecord {
                step: &step_id,
                kind: "missing",
                state: "failed",
                started_ns: now,
                detail: json!({"error": "the playbook or step is no longer loaded"}),
            };
            return self.with_store(|s| {
                s.finish_step(
                    &run,
                    &rec,
                    &run.context,
                    Next::Failed("playbook changed under the run"),
                    now,
                )
            });
        };
        let mut ctx = if run.context.is_object() {
            run.context.clone()
        } else {
            json!({})
        };
        let started_key = format!("started:{step_id}");
        let started_ns = ctx[&started_key].as_u64().unwrap_or(now);
        ctx[&started_key] = Value::from(started_ns);
        let outcome = self.execute(&run, &step, &mut ctx, now);
        let kind = kind(&step.action);
        match outcome {
            Outcome::Done { next, detail } => {
                let rec = StepRecord {
                    step: &step_id,
                    kind,
                    state: "done",
                    started_ns,
                    detail,
                };
                let to = if next == super::playbook::END {
                    Next::Done
                } else {
                    Next::Step(&next)
                };
                tracing::info!(run = run.id, step = %step_id, kind, next = %next, node = %self.node, "playbook step done");
                self.with_store(|s| s.finish_step(&run, &rec, &ctx, to, now))
            }
            Outcome::Park { wake_ns } => {
                self.with_store(|s| s.park_run(run.id, 1, run.attempts, &ctx, wake_ns, None, now))
            }
            Outcome::Failed(e) => {
                tracing::warn!(run = run.id, step = %step_id, error = %e, "playbook step failed");
                let rec = StepRecord {
                    step: &step_id,
                    kind,
                    state: "failed",
                    started_ns,
                    detail: json!({"error": e}),
                };
                self.with_store(|s| s.finish_step(&run, &rec, &ctx, Next::Failed(&e), now))
            }
            Outcome::Retry(e) if run.attempts + 1 >= MAX_ATTEMPTS => {
                let e = format!("{e} (gave up after {MAX_ATTEMPTS} attempts)");
                tracing::warn!(run = run.id, step = %step_id, error = %e, "playbook step failed");
                let rec = StepRecord {
                    step: &step_id,
                    kind,
                    state: "failed",
                    started_ns,
                    detail: json!({"error": e}),
                };
                self.with_store(|s| s.finish_step(&run, &rec, &ctx, Next::Failed(&e), now))
            }
            Outcome::Retry(e) => {
                let backoff = Duration::from_millis(500u64 << run.attempts.clamp(0, 6) as u32)
                    .min(Duration::from_secs(30));
                tracing::info!(run = run.id, step = %step_id, error = %e, retry_in = ?backoff, "playbook step will be retried");
                let wake = now + backoff.as_nanos() as u64;
                self.with_store(|s| {
                    s.park_run(
                        run.id,
                        run.phase,
                        run.attempts + 1,
                        &ctx,
                        wake,
                        Some(&e),
                        now,
                    )
                })
            }
        }
    }

    fn text(&self, run: &RunRow, t: &str, ctx: &Value) -> String {
        let f: AlertFacts = serde_json::from_value(run.facts.clone()).unwrap_or_default();
        render(t, &run.playbook, run.id, &f, ctx)
    }

    fn execute(&mut self, run: &RunRow, step: &Step, ctx: &mut Value, now: u64) -> Outcome {
        let from = |r: Result<Value, ActionError>, next: &str| match r {
            Ok(detail) => Outcome::Done {
                next: next.to_string(),
                detail,
            },
            Err(e) if e.retryable => Outcome::Retry(e.message),
            Err(e) => Outcome::Failed(e.message),
        };
        match &step.action {
            Action::Notify {
                channel,
                subject,
                message,
            } => {
                let text = self.text(run, message, ctx);
                let subject = self.text(run, subject, ctx);
                from(self.notify(run, *channel, &subject, &text).map(|()| json!({"channel": format!("{channel:?}").to_lowercase(), "message": text})), &step.next)
            }
            Action::Approve { .. } => self.approve(run, step, ctx, now),
            Action::Isolate { reason, duration } => {
                let expires_at = duration.map_or(0, |d| now / 1_000_000_000 + d.as_secs().max(1));
                let body = json!({"reason": self.text(run, reason, ctx), "expires_at": expires_at, "allow": []});
                self.command(run, step, ctx, "isolate", body, now)
            }
            Action::Release { reason } => {
                let body = json!({"reason": self.text(run, reason, ctx)});
                self.command(run, step, ctx, "release", body, now)
            }
            Action::Ticket { op } => {
                let r = self.ticket(run, op, ctx);
                from(r, &step.next)
            }
            Action::Soar { label } => {
                let f: AlertFacts = serde_json::from_value(run.facts.clone()).unwrap_or_default();
                let r = self.integrations.soar_case(&f, label.as_deref()).map(|id| {
                    ctx["soar_container"] = Value::from(id);
                    json!({"container": id})
                });
                from(r, &step.next)
            }
            Action::Wait(d) => {
                let key = format!("until:{}", step.id);
                match ctx[&key].as_u64() {
                    Some(until) if now >= until => Outcome::Done {
                        next: step.next.clone(),
                        detail: json!({"waited_s": d.as_secs()}),
                    },
                    Some(until) => Outcome::Park { wake_ns: until },
                    None => {
                        let until = now + d.as_nanos() as u64;
                        ctx[&key] = Value::from(until);
                        Outcome::Park { wake_ns: until }
                    }
                }
            }
        }
    }

    fn notify(
        &self,
        run: &RunRow,
        channel: Channel,
        subject: &str,
        text: &str,
    ) -> Result<(), ActionError> {
        let event = json!({
            "type": "cordon_response", "run": run.id, "playbook": run.playbook,
            "host": run.host_name, "alert_key": run.alert_key, "subject": subject, "message": text,
        });
        match channel {
            Channel::Webhook => self.integrations.webhook(&event),
            Channel::Email => self.integrations.email(subject, text),
            Channel::Outputs => {
                let mut hec = json!({
                    "time": self.now() as f64 / 1e9, "host": run.host_name,
                    "source": self.alerts.source, "sourcetype": "cordon:response", "event": event,
                });
                if !self.alerts.index.is_empty() {
                    hec["index"] = json!(self.alerts.index);
                }
                let env = crate::outputs::Envelope {
                    key: run.alert_key.clone(),
                    hec,
                };
                let now = self.now();
                self.with_store(|s| s.queue_envelope(&env, now))
                    .map_err(ActionError::retry)?;
                self.outbox.notify();
                Ok(())
            }
        }
    }

    fn ticket(&self, run: &RunRow, op: &TicketOp, ctx: &mut Value) -> Result<Value, ActionError> {
        let sys_id = ctx["incident_sys_id"].as_str().map(str::to_string);
        match op {
            TicketOp::Create {
                short_description,
                urgency,
                impact,
            } => {
                let short = self.text(run, short_description, ctx);
                let description = self.text(run, "{alert_text}\n\nHost {host}, rule {rule}, remote {remote}, process {exe}.\nCordon playbook {playbook}, run {run}; alert key {key_id}.", ctx);
                let inc = self.integrations.ticket_create(&IncidentText {
                    correlation_id: &run.alert_key,
                    short_description: &short,
                    description: &description,
                    urgency: *urgency,
                    impact: *impact,
                    cmdb_ci: &run.host_name,
                })?;
                ctx["incident"] = Value::from(inc.number.clone());
                ctx["incident_sys_id"] = Value::from(inc.sys_id.clone());
                Ok(json!({"incident": inc.number, "sys_id": inc.sys_id}))
            }
            TicketOp::Note(t) | TicketOp::Resolve(t) => {
                let Some(sys_id) = sys_id else {
                    return Err(ActionError::permanent(
                        "no incident was opened earlier in this run",
                    ));
                };
                let text = self.text(run, t, ctx);
                if matches!(op, TicketOp::Note(_)) {
                    self.integrations.ticket_note(&sys_id, &text)?;
                } else {
                    self.integrations.ticket_resolve(&sys_id, &text)?;
                }
                Ok(json!({"incident": ctx["incident"], "text": text}))
            }
        }
    }

    /// Isolate or release: queue the command once (atomically noting its id in the run),
    /// then wait for the agent's answer.
    fn command(
        &self,
        run: &RunRow,
        step: &Step,
        ctx: &mut Value,
        kind: &'static str,
        body: Value,
        now: u64,
    ) -> Outcome {
        let key = format!("command:{}", step.id);
        let Some(id) = ctx[&key].as_i64() else {
            let c = NewCommand {
                kind,
                body,
                by: format!("playbook:{}", run.playbook),
            };
            return match self.with_store(|s| s.run_command(run, ctx, &c, now)) {
                Ok(Some(id)) => {
                    ctx[&key] = Value::from(id);
                    self.live.poke(&run.agent_id);
                    Outcome::Park {
                        wake_ns: now + 100_000_000,
                    }
                }
                Ok(None) => Outcome::Failed(format!("host {} is not known", run.agent_id)),
                Err(e) => Outcome::Retry(e),
            };
        };
        match self.with_store(|s| s.command_state(id)) {
            Ok(Some((state, result))) if state == "done" => Outcome::Done {
                next: step.next.clone(),
                detail: json!({"command": id, "result": result}),
            },
            Ok(Some((state, result))) if state == "failed" => {
                Outcome::Failed(format!("command {id}: {}", result.unwrap_or_default()))
            }
            Ok(Some(_)) => {
                let started = ctx[&format!("started:{}", step.id)].as_u64().unwrap_or(now);
                if now.saturating_sub(started) > COMMAND_TIMEOUT.as_nanos() as u64 {
                    Outcome::Failed(format!(
                        "command {id}: no answer from the agent in {COMMAND_TIMEOUT:?}"
                    ))
                } else {
                    Outcome::Park {
                        wake_ns: now + 100_000_000,
                    }
                }
            }
            Ok(None) => Outcome::Failed(format!("command {id} is gone")),
            Err(e) => Outcome::Retry(e),
        }
    }

    fn approve(&self, run: &RunRow, step: &Step, ctx: &mut Value, now: u64) -> Outcome {
        let Action::Approve {
            via,
            user,
            send_link_to,
            timeout,
            default_approve,
            on_approve,
            on_deny,
        } = &step.action
        else {
            return Outcome::Failed("not an approval".into());
        };
        let existing = match self.with_store(|s| s.approval_for(run.id, &step.id)) {
            Ok(a) => a,
            Err(e) => return Outcome::Retry(e),
        };
        let approval = match existing {
            Some(a) => a,
            None => {
                let question = self.text(run, "Isolate {host}? {alert_text}", ctx);
                let deadline = now + timeout.as_nanos() as u64;
                let mut token = None;
                if *via == Via::Link {
                    let t = super::approval_link::new_token();
                    token = Some(t);
                }
                let hash = token.as_deref().map(super::approval_link::hash);
                let id = match self.with_store(|s| {
                    s.request_approval(
                        run,
                        via.as_str(),
                        user,
                        &question,
                        deadline,
                        hash.as_deref(),
                        ctx,
                        now,
                    )
                }) {
                    Ok(id) => id,
                    Err(e) => return Outcome::Retry(e),
                };
                if let (Some(t), Some(base)) = (token, &self.public_url) {
                    let link = super::approval_link::url(base, id, &t);
                    ctx["approval_link"] = Value::from(link.clone());
                    // The link is a credential: it goes to the approver, not into the store.
                    let text = self.text(run, "Cordon asks for your approval: isolate {host}?\n{alert_text}\n\nApprove: {approval_link}&decision=approve\nDeny:    {approval_link}&decision=deny\n", ctx);
                    ctx.as_object_mut().map(|o| o.remove("approval_link"));
                    if let Some(ch) = send_link_to
                        && let Err(e) = self.notify(run, *ch, "Cordon: approval needed", &text)
                    {
                        tracing::warn!(run = run.id, error = %e, "could not send the approval link");
                    }
                }
                match self.with_store(|s| s.approval(id)) {
                    Ok(Some(a)) => a,
                    Ok(None) => return Outcome::Retry("approval vanished".into()),
                    Err(e) => return Outcome::Retry(e),
                }
            }
        };
        let mut state = approval.state.clone();
        let mut decided_by = approval.decided_by.clone().unwrap_or_default();
        if state == "pending" && *via == Via::Duo {
            match &approval.duo_txid {
                None => {
                    let f: AlertFacts =
                        serde_json::from_value(run.facts.clone()).unwrap_or_default();
                    let info = vec![
                        ("host".to_string(), f.host.clone()),
                        ("process".to_string(), f.exe.clone()),
                        ("remote".to_string(), f.remote.clone()),
                        ("rule".to_string(), f.rule.clone()),
                        ("action".to_string(), "isolate host".to_string()),
                    ];
                    match self.integrations.duo_push(user, &info) {
                        Ok(txid) => {
                            tracing::info!(run = run.id, approval = approval.id, node = %self.node, "Duo push sent");
                            if let Err(e) = self.with_store(|s| s.set_duo_txid(approval.id, &txid))
                            {
                                return Outcome::Retry(e);
                            }
                        }
                        Err(e) if e.retryable && now < approval.deadline_ns => {
                            return Outcome::Retry(e.message);
                        }
                        Err(e) if now < approval.deadline_ns => {
                            return Outcome::Failed(format!("Duo push: {}", e.message));
                        }
                        Err(_) => {}
                    }
                }
                Some(txid) => match self.integrations.duo_status(txid) {
                    Ok(DuoAnswer::Allow) => {
                        if let Ok(Some(a)) = self.with_store(|s| {
                            s.decide_approval(approval.id, "approved", &format!("duo:{user}"), now)
                        }) {
                            state = a.state;
                            decided_by = a.decided_by.unwrap_or_default();
                        }
                    }
                    Ok(DuoAnswer::Deny(why)) => {
                        if let Ok(Some(a)) = self.with_store(|s| {
                            s.decide_approval(approval.id, "denied", &format!("duo:{user}"), now)
                        }) {
                            state = a.state;
                            decided_by = format!("{} ({why})", a.decided_by.unwrap_or_default());
                        }
                    }
                    Ok(DuoAnswer::Waiting) => {}
                    Err(e) => {
                        tracing::info!(run = run.id, error = %e, "Duo status not available yet")
                    }
                },
            }
        }
        if state == "pending" {
            if now < approval.deadline_ns {
                let every =
                    if now.saturating_sub(approval.requested_ns) < DUO_FAST_FOR.as_nanos() as u64 {
                        DUO_POLL_FAST
                    } else {
                        DUO_POLL
                    };
                let poll = if *via == Via::Duo {
                    now + every.as_nanos() as u64
                } else {
                    approval.deadline_ns
                };
                return Outcome::Park {
                    wake_ns: poll.min(approval.deadline_ns),
                };
            }
            match self.with_store(|s| s.decide_approval(approval.id, "timed_out", "timeout", now)) {
                Ok(Some(a)) => {
                    state = a.state;
                    decided_by = "timeout".into();
                }
                Ok(None) => return Outcome::Park { wake_ns: now },
                Err(e) => return Outcome::Retry(e),
            }
        }
        let approved = match state.as_str() {
            "approved" => true,
            "denied" => false,
            _ => *default_approve,
        };
        let outcome = match (state.as_str(), approved) {
            ("timed_out", true) => "approved (timeout default)",
            ("timed_out", false) => "denied (timeout default)",
            (_, true) => "approved",
            (_, false) => "denied",
        };
        ctx["outcome"] = Value::from(outcome);
        ctx["decided_by"] = Value::from(decided_by.clone());
        Outcome::Done {
            next: if approved {
                on_approve.clone()
            } else {
                on_deny.clone()
            },
            detail: json!({"approval": approval.id, "via": via.as_str(), "outcome": outcome, "decided_by": decided_by}),
        }
    }

    /// Runs the engine on its own thread until `stop`: a round every 100 ms (the finest
    /// wake-up a parked run gets), sooner when the outbox is woken.
    pub fn spawn(
        mut self,
        stop: Arc<std::sync::atomic::AtomicBool>,
        wake: Arc<Wake>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("cordon-response".into())
            .spawn(move || {
                let mut seen = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match self.tick() {
                        Ok(n) if n > 0 => continue,
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "response engine round failed"),
                    }
                    wake.wait(&mut seen, Duration::from_millis(100));
                }
            })
    }
}

fn kind(a: &Action) -> &'static str {
    match a {
        Action::Notify { .. } => "notify",
        Action::Approve { .. } => "approve",
        Action::Isolate { .. } => "isolate",
        Action::Release { .. } => "release",
        Action::Ticket { .. } => "ticket",
        Action::Soar { .. } => "soar",
        Action::Wait(_) => "wait",
    }
}
