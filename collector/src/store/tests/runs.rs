//! Playbook runs: one unfinished run per playbook and alert, claims (exclusive, expiring,
//! given back by every transition), steps, commands and approvals.
use std::collections::HashSet;

use serde_json::{Value, json};

use super::*;
use crate::store::*;

const SEC: u64 = 1_000_000_000;

fn start(s: &mut Store, key: &str, now: u64) -> Option<i64> {
    s.start_run(
        "isolate",
        key,
        "h1-agent",
        "h1",
        &json!({"severity": "HIGH"}),
        "ask",
        now,
    )
    .expect("start")
}

fn one_unfinished_run_per_playbook_and_alert(f: &Fixture) {
    let mut s = store_with_h1(f);
    let id = start(&mut s, "k1", T0).expect("started");
    assert_eq!(start(&mut s, "k1", T0 + 1), None, "already running");
    let other = start(&mut s, "k2", T0 + 1).expect("another alert");
    let r = s.run(id).expect("run").expect("row");
    assert_eq!(
        r,
        RunRow {
            id,
            playbook: "isolate".into(),
            alert_key: "k1".into(),
            agent_id: "h1-agent".into(),
            host_name: "h1".into(),
            facts: json!({"severity": "HIGH"}),
            context: json!({}),
            state: "running".into(),
            step: Some("ask".into()),
            phase: 0,
            attempts: 0,
            wake_ns: 0,
            created_ns: T0,
            updated_ns: T0,
            error: None,
        }
    );
    // Finished, the same alert may start the playbook again.
    let rec = StepRecord {
        step: "ask",
        kind: "notify",
        state: "done",
        started_ns: T0,
        detail: json!({"sent": 1}),
    };
    s.finish_step(&r, &rec, &json!({"x": 1}), Next::Done, T0 + 2)
        .expect("finish");
    let done = s.run(id).expect("run").expect("row");
    assert_eq!((done.state.as_str(), done.step.clone()), ("done", None));
    assert_eq!(done.context, json!({"x": 1}));
    assert!(start(&mut s, "k1", T0 + 3).is_some());
    assert_eq!(s.runs(Some("done"), 10).expect("done").len(), 1);
    assert_eq!(s.runs(None, 10).expect("all").len(), 3);
    assert_eq!(s.runs(None, 10).expect("all")[2].id, id, "newest first");
    assert_eq!(s.runs(Some("running"), 1).expect("limit").len(), 1);
    assert!(s.run(9999).expect("none").is_none());
    assert_ne!(other, id);
    let steps = s.run_steps(id).expect("steps");
    assert_eq!(
        steps,
        vec![RunStepRow {
            step: "ask".into(),
            kind: "notify".into(),
            state: "done".into(),
            started_ns: T0,
            finished_ns: T0 + 2,
            detail: json!({"sent": 1}),
        }]
    );
    let actions: Vec<String> = s
        .audit_log(0, 100)
        .expect("audit")
        .into_iter()
        .rev()
        .map(|a| a.action)
        .collect();
    assert_eq!(
        actions,
        [
            "run.started",
            "run.started",
            "run.step.done",
            "run.done",
            "run.started"
        ]
    );
}

fn claims_are_exclusive_expire_and_are_given_back(f: &Fixture) {
    let mut s = store_with_h1(f);
    let ids: Vec<i64> = (0..3)
        .map(|i| start(&mut s, &format!("k{i}"), T0).expect("run"))
        .collect();
    let claim = |s: &mut Store, now, owner: &str| -> Vec<i64> {
        s.claim_due_runs(now, 10, owner, 60 * SEC)
            .expect("claim")
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    assert_eq!(claim(&mut s, T0, "a"), ids, "oldest first");
    let mut b = f.open();
    assert!(claim(&mut b, T0 + SEC, "b").is_empty(), "all claimed by a");
    // A limit.
    assert!(
        s.claim_due_runs(T0 + 61 * SEC, 2, "b", 60 * SEC)
            .expect("claim")
            .len()
            == 2
    );
    // a's claims expired: b took two, the third is free too.
    assert_eq!(claim(&mut b, T0 + 61 * SEC, "c"), [ids[2]]);
    // Each transition gives the claim back.
    let now = T0 + 62 * SEC;
    let run = |s: &Store, id| s.run(id).expect("run").expect("row");
    let r0 = run(&s, ids[0]);
    s.park_run(r0.id, 1, 2, &json!({"p": 1}), now, Some("backoff"), now)
        .expect("park");
    let parked = run(&s, ids[0]);
    assert_eq!(
        (
            parked.state.as_str(),
            parked.phase,
            parked.attempts,
            parked.wake_ns
        ),
        ("waiting", 1, 2, now)
    );
    assert_eq!(parked.error.as_deref(), Some("backoff"));
    let r1 = run(&s, ids[1]);
    let cmd = NewCommand {
        kind: "isolate",
        body: json!({}),
        by: "playbook:isolate".into(),
    };
    let cid = s
        .run_command(&r1, &json!({}), &cmd, now)
        .expect("command")
        .expect("id");
    assert_eq!(run(&s, ids[1]).context, json!({ "command:ask": cid }));
    assert_eq!(
        s.command_state(cid).expect("state"),
        Some(("pending".to_string(), None))
    );
    let r2 = run(&s, ids[2]);
    s.request_approval(
        &r2,
        "console",
        "ops",
        "isolate?",
        now + SEC,
        None,
        &json!({}),
        now,
    )
    .expect("approval");
    // What a step records on its way keeps its claim: no other engine may start the same
    // step (and send its push again) while this one is in the middle of it. Only the
    // parked run is free.
    assert_eq!(claim(&mut b, now, "d"), [ids[0]]);
    for id in &ids[1..] {
        let r = run(&s, *id);
        s.park_run(r.id, 1, 0, &r.context, now, None, now)
            .expect("park");
    }
    // Parked at the end of their steps: claimable again (their wake times have come).
    let mut again = claim(&mut b, now, "e");
    again.sort();
    assert_eq!(again, ids[1..]);
    // finish_step gives it back too.
    let r = run(&s, ids[0]);
    let rec = StepRecord {
        step: "ask",
        kind: "notify",
        state: "retry",
        started_ns: now,
        detail: Value::Null,
    };
    s.finish_step(&r, &rec, &json!({}), Next::Step("isolate"), now)
        .expect("next step");
    assert_eq!(claim(&mut s, now, "e"), [ids[0]]);
    assert_eq!(run(&s, ids[0]).step.as_deref(), Some("isolate"));
    // A run whose wake time has not come is not due; finished runs never are.
    s.park_run(ids[0], 0, 0, &json!({}), now + 100 * SEC, None, now)
        .expect("park");
    assert!(
        claim(&mut s, now + 99 * SEC, "f")
            .iter()
            .all(|id| *id != ids[0])
    );
    let r = run(&s, ids[0]);
    s.finish_step(&r, &rec, &json!({}), Next::Failed("boom"), now)
        .expect("fail");
    assert_eq!(run(&s, ids[0]).error.as_deref(), Some("boom"));
    assert!(
        claim(&mut s, now + 200 * SEC, "g")
            .iter()
            .all(|id| *id != ids[0])
    );
}

fn two_claimers_never_get_the_same_run(f: &Fixture) {
    let mut s = store_with_h1(f);
    let total = 60;
    for i in 0..total {
        start(&mut s, &format!("k{i}"), T0).expect("run");
    }
    let claimed = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for owner in ["a", "b"] {
            let mut s = f.open();
            let claimed = &claimed;
            scope.spawn(move || {
                loop {
                    let got = s.claim_due_runs(T0, 3, owner, 60 * SEC).expect("claim");
                    if got.is_empty() {
                        break;
                    }
                    claimed
                        .lock()
                        .expect("lock")
                        .extend(got.into_iter().map(|r| r.id));
                }
            });
        }
    });
    let claimed = claimed.into_inner().expect("claimed");
    let unique: HashSet<i64> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), total, "every run claimed once: {claimed:?}");
    assert_eq!(unique.len(), total);
}

fn approvals_are_decided_once(f: &Fixture) {
    let mut s = store_with_h1(f);
    let id = start(&mut s, "k", T0).expect("run");
    let r = s.run(id).expect("run").expect("row");
    let a = s
        .request_approval(
            &r,
            "duo",
            "alice",
            "isolate h1?",
            T0 + 60 * SEC,
            Some("hash"),
            &json!({"c": 1}),
            T0,
        )
        .expect("request");
    // Asking again for the same step gives the same approval.
    assert_eq!(
        s.request_approval(
            &r,
            "duo",
            "alice",
            "isolate h1?",
            T0 + 60 * SEC,
            Some("hash"),
            &json!({"c": 1}),
            T0
        )
        .expect("again"),
        a
    );
    s.set_duo_txid(a, "tx-1").expect("txid");
    let row = s.approval(a).expect("approval").expect("row");
    assert_eq!(
        row,
        ApprovalRow {
            id: a,
            run_id: id,
            step: "ask".into(),
            via: "duo".into(),
            username: "alice".into(),
            state: "pending".into(),
            question: "isolate h1?".into(),
            requested_ns: T0,
            deadline_ns: T0 + 60 * SEC,
            decided_ns: None,
            decided_by: None,
            duo_txid: Some("tx-1".into()),
            link_hash: Some("hash".into()),
        }
    );
    assert_eq!(s.approval_for(id, "ask").expect("for").expect("row").id, a);
    assert!(s.approval_for(id, "other").expect("none").is_none());
    assert_eq!(s.approvals(Some("pending"), 10).expect("pending").len(), 1);
    let parked = s.run(id).expect("run").expect("row");
    assert_eq!((parked.state.as_str(), parked.phase), ("waiting", 1));
    s.park_run(id, 1, 0, &json!({"c": 1}), T0 + 60 * SEC, None, T0)
        .expect("wait for the answer");
    // The first answer wins; the run wakes at once.
    let decided = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for (who, answer) in [("bob", "approved"), ("carol", "denied")] {
            let mut s = f.open();
            let decided = &decided;
            scope.spawn(move || {
                if let Some(row) = s.decide_approval(a, answer, who, T0 + SEC).expect("decide") {
                    decided.lock().expect("lock").push(row);
                }
            });
        }
    });
    let decided = decided.into_inner().expect("decided");
    assert_eq!(decided.len(), 1, "{decided:?}");
    let row = &decided[0];
    assert_eq!(row.decided_ns, Some(T0 + SEC));
    assert_eq!(
        s.approval(a).expect("approval").expect("row").state,
        row.state
    );
    assert!(
        s.decide_approval(a, "denied", "dave", T0 + 2 * SEC)
            .expect("late")
            .is_none()
    );
    assert!(
        s.decide_approval(999, "denied", "dave", T0)
            .expect("unknown")
            .is_none()
    );
    assert_eq!(s.run(id).expect("run").expect("row").wake_ns, 0);
    assert_eq!(s.approvals(None, 10).expect("all").len(), 1);
    assert!(s.approvals(Some("pending"), 10).expect("none").is_empty());
    let log = s.audit_log(0, 10).expect("audit");
    assert_eq!(log[0].action, format!("approval.{}", row.state));
    assert_eq!(log[0].target, "h1-agent");
    assert_eq!(log[1].action, "approval.requested");
}

fn a_run_command_for_an_unknown_host_is_refused(f: &Fixture) {
    let mut s = f.open();
    let id = s
        .start_run("p", "k", "ghost", "ghost", &json!({}), "isolate", T0)
        .expect("start")
        .expect("run");
    let r = s.run(id).expect("run").expect("row");
    let cmd = NewCommand {
        kind: "isolate",
        body: json!({}),
        by: "playbook:p".into(),
    };
    assert_eq!(
        s.run_command(&r, &json!({}), &cmd, T0).expect("command"),
        None
    );
    assert_eq!(s.run(id).expect("run").expect("row").state, "running");
}

/// A live node's heartbeat renews what it holds: its leases and its run claims; another
/// owner's stay as they were.
fn renew_extends_an_owners_leases_and_claims_only(f: &Fixture) {
    let mut s = store_with_h1(f);
    let id = start(&mut s, "k", T0).expect("run");
    assert_eq!(s.claim_due_runs(T0, 10, "a", SEC).expect("claim").len(), 1);
    assert!(s.try_lease("output.kafka", "a", T0, SEC).expect("lease"));
    assert!(s.try_lease("retention", "b", T0, SEC).expect("lease"));
    s.renew("a", T0 + SEC / 2, 10 * SEC).expect("renew");
    let mut other = f.open();
    let later = T0 + 5 * SEC;
    assert!(
        other
            .claim_due_runs(later, 10, "c", SEC)
            .expect("claim")
            .is_empty(),
        "run {id} is still a's"
    );
    assert!(
        !other
            .try_lease("output.kafka", "c", later, SEC)
            .expect("lease")
    );
    assert!(
        other
            .try_lease("retention", "c", later, SEC)
            .expect("lease"),
        "b did not renew: its lease expired"
    );
    // Without renewal, a's claim ends too.
    let much_later = T0 + 11 * SEC;
    assert_eq!(
        other
            .claim_due_runs(much_later, 10, "c", SEC)
            .expect("claim")
            .len(),
        1
    );
}

both!(
    renew_extends_an_owners_leases_and_claims_only,
    one_unfinished_run_per_playbook_and_alert,
    claims_are_exclusive_expire_and_are_given_back,
    two_claimers_never_get_the_same_run,
    approvals_are_decided_once,
    a_run_command_for_an_unknown_host_is_refused,
);
