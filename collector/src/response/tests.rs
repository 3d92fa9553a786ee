//! Playbook validation and the run state machine, against an in-memory (or on-disk, for
//! the restart case) store and fake integrations.
#![allow(clippy::unwrap_used)] // tests may panic

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use serde_json::{Value, json};

use super::{
    engine::Engine,
    integrations::{ActionError, DuoAnswer, Incident, IncidentText, Integrations},
    playbook::{Available, Playbook, parse},
    trigger::AlertFacts,
};
use crate::{ingest::Live, outputs::Wake, store::Store};

const ALL: Available = Available {
    duo: true,
    servicenow: true,
    soar: true,
    webhook: true,
    email: true,
    link: true,
};

const REFERENCE: &str = r#"
name: isolate-on-violation
trigger:
  severity_at_least: HIGH
steps:
  - id: tell
    notify: {channel: email, message: "{alert_text}"}
  - id: ask
    approve: {via: duo, user: alice, timeout: 5m, default: deny, on_deny: record-denial}
  - id: isolate
    isolate: {reason: "playbook {playbook} run {run}: {rule}"}
  - id: incident
    ticket: {action: create, short_description: "Isolated {host}"}
  - id: mail
    notify: {channel: email, message: "{host} isolated, incident {incident}"}
    next: end
  - id: record-denial
    ticket: {action: create, short_description: "Isolation of {host} denied by {decided_by}"}
"#;

#[derive(Default)]
struct Calls {
    duo_pushes: Vec<(String, Vec<(String, String)>)>,
    duo_polls: u64,
    tickets: Vec<String>,
    notes: Vec<String>,
    emails: Vec<(String, String)>,
}

/// Fake integrations: Duo answers `duo` after `duo_after` polls; ServiceNow returns the same
/// incident for the same correlation id.
#[derive(Clone)]
struct Fake {
    calls: Arc<Mutex<Calls>>,
    duo: Arc<Mutex<DuoAnswer>>,
    duo_after: u64,
    fail_email_once: Arc<Mutex<bool>>,
}

impl Fake {
    fn new(duo: DuoAnswer, after: u64) -> Fake {
        Fake {
            calls: Arc::default(),
            duo: Arc::new(Mutex::new(duo)),
            duo_after: after,
            fail_email_once: Arc::default(),
        }
    }
}

impl Integrations for Fake {
    fn available(&self) -> Available {
        ALL
    }
    fn duo_push(&self, user: &str, info: &[(String, String)]) -> Result<String, ActionError> {
        let mut c = self.calls.lock().unwrap();
        c.duo_pushes.push((user.into(), info.to_vec()));
        Ok(format!("tx{}", c.duo_pushes.len()))
    }
    fn duo_status(&self, _txid: &str) -> Result<DuoAnswer, ActionError> {
        let mut c = self.calls.lock().unwrap();
        c.duo_polls += 1;
        if c.duo_polls < self.duo_after {
            return Ok(DuoAnswer::Waiting);
        }
        Ok(self.duo.lock().unwrap().clone())
    }
    fn ticket_create(&self, t: &IncidentText<'_>) -> Result<Incident, ActionError> {
        self.calls
            .lock()
            .unwrap()
            .tickets
            .push(format!("{}|{}", t.correlation_id, t.short_description));
        Ok(Incident {
            sys_id: format!("sys-{}", t.correlation_id),
            number: "INC0010001".into(),
        })
    }
    fn ticket_note(&self, _: &str, text: &str) -> Result<(), ActionError> {
        self.calls.lock().unwrap().notes.push(text.into());
        Ok(())
    }
    fn ticket_resolve(&self, _: &str, text: &str) -> Result<(), ActionError> {
        self.calls
            .lock()
            .unwrap()
            .notes
            .push(format!("resolved: {text}"));
        Ok(())
    }
    fn soar_case(&self, _: &AlertFacts, _: Option<&str>) -> Result<u64, ActionError> {
        Ok(7)
    }
    fn webhook(&self, _: &Value) -> Result<(), ActionError> {
        Ok(())
    }
    fn email(&self, subject: &str, body: &str) -> Result<(), ActionError> {
        let mut once = self.fail_email_once.lock().unwrap();
        if *once {
            *once = false;
            return Err(ActionError::retry("SMTP 421 try later"));
        }
        self.calls
            .lock()
            .unwrap()
            .emails
            .push((subject.into(), body.into()));
        Ok(())
    }
}

struct Rig {
    engine: Engine,
    store: Arc<Mutex<Store>>,
    clock: Arc<AtomicU64>,
    fake: Fake,
}

const T0: u64 = 1_800_000_000_000_000_000;
const SEC: u64 = 1_000_000_000;

fn engine(store: Arc<Mutex<Store>>, pb: Playbook, fake: Fake, clock: Arc<AtomicU64>) -> Engine {
    let c = clock.clone();
    Engine {
        store,
        live: Arc::new(Live::default()),
        playbooks: vec![pb],
        integrations: Box::new(fake),
        outbox: Arc::new(Wake::default()),
        alerts: Default::default(),
        public_url: Some("http://127.0.0.1:7480".into()),
        clock: Box::new(move || c.load(Ordering::Relaxed)),
        node: "test-node".into(),
    }
}

fn rig_with(store: Store, yaml: &str, fake: Fake) -> Rig {
    let store = Arc::new(Mutex::new(store));
    let clock = Arc::new(AtomicU64::new(T0));
    let pb = parse(yaml, &ALL).unwrap();
    Rig {
        engine: engine(store.clone(), pb, fake.clone(), clock.clone()),
        store,
        clock,
        fake,
    }
}

fn alert(severity: &str, key: &str) -> Value {
    json!({
        "key_id": key, "type": "COMPLIANCE", "severity": severity,
        "alert_text": "Escaped flow on h1: /usr/bin/curl 10.0.0.1:40000 -> 10.0.0.9:9090/tcp violates catch-all",
        "alert_details_json": {
            "host": {"id": "h1-agent", "name": "h1"},
            "flow": {"proto": "tcp", "local_ip": "10.0.0.1", "remote_ip": "10.0.0.9", "remote_port": 9090},
            "process": {"exe": "/usr/bin/curl"},
            "rule": {"name": "catch-all"}, "verdict": "escaped", "count": 1
        }
    })
}

impl Rig {
    fn new(yaml: &str, fake: Fake) -> Rig {
        let mut s = Store::in_memory().unwrap();
        s.host_connected("h1-agent", "h1", "0.1.0", "ebpf", T0)
            .unwrap();
        rig_with(s, yaml, fake)
    }

    fn raise(&self, severity: &str, key: &str) {
        let env = crate::outputs::Envelope {
            key: key.into(),
            hec: json!({"sourcetype": "cordon:alert", "event": alert(severity, key)}),
        };
        self.store.lock().unwrap().queue_envelope(&env, T0).unwrap();
    }

    fn advance(&self, secs: u64) {
        self.clock.fetch_add(secs * SEC, Ordering::Relaxed);
    }

    /// Ticks until nothing is due (bounded).
    fn settle(&mut self) {
        for _ in 0..50 {
            if self.engine.tick().unwrap() == 0 {
                return;
            }
        }
    }

    fn run(&self) -> crate::store::RunRow {
        let runs = self.store.lock().unwrap().runs(None, 10).unwrap();
        assert_eq!(runs.len(), 1, "{runs:?}");
        runs[0].clone()
    }

    /// The agent answers every open command.
    fn agent_answers(&self, ok: bool) -> usize {
        let mut s = self.store.lock().unwrap();
        let open = s.open_commands("h1-agent", true).unwrap();
        for c in &open {
            s.mark_sent(c.id, T0).unwrap();
            s.command_result(
                "h1-agent",
                c.id,
                ok,
                if ok {
                    "isolated (nftables)"
                } else {
                    "nft failed"
                },
                T0,
            )
            .unwrap();
        }
        open.len()
    }

    fn commands(&self) -> Vec<crate::store::CommandRow> {
        self.store.lock().unwrap().commands(None, 100).unwrap()
    }
}

#[test]
fn reference_playbook_validates() {
    let pb = parse(REFERENCE, &ALL).unwrap();
    assert_eq!(pb.steps.len(), 6);
    assert_eq!(pb.steps[0].next, "ask");
    assert_eq!(pb.steps[4].next, "end");
}

#[test]
fn the_shipped_reference_playbook_validates() {
    let text = include_str!("../../../packaging/playbooks/isolate-on-violation.yaml");
    let pb = parse(text, &ALL).unwrap();
    assert_eq!(pb.trigger.direction.as_deref(), Some("outbound"));
    assert_eq!(pb.steps.len(), 9);
}

#[test]
fn bad_playbooks_are_refused_with_line_and_reason() {
    let cases: [(&str, u64, &str); 8] = [
        (
            "name: x\ntrigger: {}\nsteps:\n  - id: a\n    wait: soon\n",
            5,
            "steps[0].wait",
        ),
        (
            "name: x\ntrigger: {severity_at_least: HUGE}\nsteps:\n  - id: a\n    wait: 1s\n",
            2,
            "trigger.severity_at_least",
        ),
        (
            "name: x\ntrigger: {}\nsteps:\n  - id: a\n    wait: 1s\n    next: b\n",
            6,
            "steps[0].next",
        ),
        (
            "name: x\ntrigger: {}\nsteps:\n  - id: a\n    notify: {channel: email, message: \"{nope}\"}\n",
            5,
            "unknown placeholder",
        ),
        (
            "name: x\ntrigger: {}\nsteps:\n  - id: a\n    wait: 1s\n    notify: {channel: email, message: hi}\n",
            4,
            "exactly one",
        ),
        (
            "name: x\ntrigger: {}\nsteps:\n  - id: a\n    wait: 1s\n    next: b\n  - id: b\n    wait: 1s\n    next: a\n",
            4,
            "loop",
        ),
        (
            "name: x\ntrigger: {}\nsteps:\n  - id: a\n    approve: {via: duo, timeout: 1m, default: deny}\n",
            5,
            "needs the Duo user",
        ),
        // Unknown keys are reported where their mapping starts.
        (
            "name: x\ntrigger: {}\nsteps:\n  - id: a\n    wiat: 1s\n",
            4,
            "wiat",
        ),
    ];
    for (yaml, line, needle) in cases {
        let e = parse(yaml, &ALL).unwrap_err();
        let text = e.to_string();
        assert_eq!(e.line, line, "{yaml}\n{text}");
        assert!(text.contains(needle), "{yaml}\n{text}");
    }
    // An integration the collector does not have.
    let e = parse(
        REFERENCE,
        &Available {
            email: true,
            ..Available::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("response.duo"), "{e}");
}

#[test]
fn approved_run_isolates_once_opens_the_incident_and_mails() {
    let mut r = Rig::new(REFERENCE, Fake::new(DuoAnswer::Allow, 3));
    *r.fake.fail_email_once.lock().unwrap() = true;
    r.raise("LOW", "k-low"); // below the trigger
    r.raise("HIGH", "k1");
    r.raise("HIGH", "k1"); // republished: same run
    r.settle();
    // The first e-mail failed once (retryable) and is retried after its backoff.
    assert_eq!(r.run().state, "waiting");
    r.advance(1);
    r.settle();
    // Duo: one push with what the analyst needs to decide.
    for _ in 0..5 {
        r.advance(1);
        r.settle();
    }
    {
        let c = r.fake.calls.lock().unwrap();
        assert_eq!(c.duo_pushes.len(), 1);
        let info: Vec<&str> = c.duo_pushes[0].1.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(info, ["host", "process", "remote", "rule", "action"]);
        assert_eq!(c.duo_pushes[0].1[1].1, "/usr/bin/curl");
    }
    // Approved: one isolate command, waiting for the agent.
    let cmds = r.commands();
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].kind, "isolate");
    assert!(
        cmds[0].body["reason"]
            .as_str()
            .unwrap()
            .starts_with("playbook isolate-on-violation run 1")
    );
    r.advance(1);
    r.settle();
    assert_eq!(r.commands().len(), 1, "the command is queued once");
    assert_eq!(r.agent_answers(true), 1);
    r.advance(1);
    r.settle();
    let run = r.run();
    assert_eq!(run.state, "done", "{run:?}");
    assert_eq!(run.context["outcome"], "approved");
    assert_eq!(run.context["decided_by"], "duo:alice");
    let c = r.fake.calls.lock().unwrap();
    assert_eq!(c.tickets, ["k1|Isolated h1"]);
    assert_eq!(c.emails.len(), 2);
    assert_eq!(c.emails[1].1, "h1 isolated, incident INC0010001");
    let steps = r.store.lock().unwrap().run_steps(run.id).unwrap();
    let kinds: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| (s.step.as_str(), s.state.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("tell", "done"),
            ("ask", "done"),
            ("isolate", "done"),
            ("incident", "done"),
            ("mail", "done")
        ]
    );
    // Every step and the decision are in the audit log.
    let audit = r.store.lock().unwrap().audit_log(0, 100).unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    for a in [
        "run.started",
        "approval.requested",
        "approval.approved",
        "isolate.requested",
        "run.step.done",
        "run.done",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
}

#[test]
fn denied_run_does_not_isolate_and_records_the_denial() {
    let mut r = Rig::new(REFERENCE, Fake::new(DuoAnswer::Deny("deny".into()), 1));
    r.raise("CRITICAL", "k2");
    for _ in 0..4 {
        r.settle();
        r.advance(1);
    }
    r.settle();
    assert!(r.commands().is_empty(), "no isolation after a denial");
    let run = r.run();
    assert_eq!(run.state, "done");
    assert_eq!(run.context["outcome"], "denied");
    let c = r.fake.calls.lock().unwrap();
    assert_eq!(c.tickets, ["k2|Isolation of h1 denied by duo:alice (deny)"]);
}

#[test]
fn timeout_applies_the_default_outcome() {
    let yaml = REFERENCE.replace("default: deny", "default: approve");
    let mut r = Rig::new(&yaml, Fake::new(DuoAnswer::Waiting, 0));
    r.raise("HIGH", "k3");
    r.settle();
    r.advance(299);
    r.settle();
    assert!(r.commands().is_empty(), "still waiting before the deadline");
    r.advance(2);
    r.settle();
    assert_eq!(r.commands().len(), 1, "the default (approve) isolates");
    let a = r.store.lock().unwrap().approvals(None, 10).unwrap();
    assert_eq!(a[0].state, "timed_out");
    assert_eq!(r.run().context["outcome"], "approved (timeout default)");
}

#[test]
fn console_approval_and_first_answer_wins() {
    let yaml = REFERENCE.replace("via: duo, user: alice", "via: console");
    let mut r = Rig::new(&yaml, Fake::new(DuoAnswer::Waiting, 0));
    r.raise("HIGH", "k4");
    r.settle();
    let id = r
        .store
        .lock()
        .unwrap()
        .approvals(Some("pending"), 10)
        .unwrap()[0]
        .id;
    let first = r
        .store
        .lock()
        .unwrap()
        .decide_approval(id, "approved", "bob", T0)
        .unwrap();
    assert!(first.is_some());
    let second = r
        .store
        .lock()
        .unwrap()
        .decide_approval(id, "denied", "eve", T0)
        .unwrap();
    assert!(second.is_none(), "an approval is decided once");
    r.settle();
    assert_eq!(r.commands().len(), 1);
    assert_eq!(r.run().context["decided_by"], "bob");
}

#[test]
fn a_restart_between_request_and_answer_completes_the_run_once() {
    let dir = std::env::temp_dir().join(format!("cordon-response-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("cordon.db");
    let fake = Fake::new(DuoAnswer::Allow, 2);
    {
        let mut s = Store::open(&db).unwrap();
        s.host_connected("h1-agent", "h1", "0.1.0", "ebpf", T0)
            .unwrap();
        let mut r = rig_with(s, REFERENCE, fake.clone());
        r.raise("HIGH", "k5");
        r.settle(); // notify, approval requested, push sent
        assert_eq!(fake.calls.lock().unwrap().duo_pushes.len(), 1);
        assert_eq!(r.run().state, "waiting");
    } // the collector stops
    let mut r = rig_with(Store::open(&db).unwrap(), REFERENCE, fake.clone());
    for _ in 0..4 {
        r.advance(1);
        r.settle();
    }
    assert_eq!(r.agent_answers(true), 1);
    r.advance(1);
    r.settle();
    assert_eq!(r.run().state, "done");
    let c = fake.calls.lock().unwrap();
    assert_eq!(
        c.duo_pushes.len(),
        1,
        "the pending push was resumed, not sent again"
    );
    assert_eq!(r.commands().len(), 1, "isolated once");
    assert_eq!(c.tickets.len(), 1);
    assert_eq!(
        c.emails.len(),
        2,
        "the first notification was not sent again"
    );
    drop(c);
    drop(r);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failed_isolation_fails_the_run() {
    let yaml = "name: x\ntrigger: {}\nsteps:\n  - id: iso\n    isolate: {reason: test}\n  - id: after\n    wait: 1s\n";
    let mut r = Rig::new(yaml, Fake::new(DuoAnswer::Waiting, 0));
    r.raise("LOW", "k6");
    r.settle();
    assert_eq!(r.agent_answers(false), 1);
    r.advance(1);
    r.settle();
    let run = r.run();
    assert_eq!(run.state, "failed");
    assert!(run.error.unwrap().contains("nft failed"));
}
