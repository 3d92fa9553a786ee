//! Commands to agents, their answers, enforcement reports, and the audit rows of each.
use serde_json::json;

use super::*;
use crate::store::*;

fn isolate(by: &str) -> NewCommand {
    NewCommand {
        kind: "isolate",
        body: json!({"reason": "test", "allow": ["10.0.0.9"]}),
        by: by.into(),
    }
}

fn commands_are_queued_sent_answered_and_audited(f: &Fixture) {
    let mut s = store_with_h1(f);
    s.host_connected("h2-agent", "h2", "0.1.0", "ebpf", T0)
        .expect("h2");
    assert!(
        s.create_command("nobody", &isolate("ops"), T0)
            .expect("unknown")
            .is_none()
    );
    let c = s
        .create_command("h1-agent", &isolate("ops"), T0 + 1)
        .expect("create")
        .expect("command");
    assert_eq!(
        (c.host.as_str(), c.kind.as_str(), c.state.as_str()),
        ("h1-agent", "isolate", "pending")
    );
    assert_eq!((c.created_ns, c.created_by.as_str()), (T0 + 1, "ops"));
    assert_eq!(c.body["allow"][0], "10.0.0.9");
    assert_eq!(
        (c.sent_ns, c.done_ns, c.result.as_deref()),
        (None, None, None)
    );
    let c2 = s
        .create_command("h1-agent", &isolate("ops"), T0 + 2)
        .expect("create")
        .expect("command");
    let other = s
        .create_command("h2-agent", &isolate("ops"), T0 + 3)
        .expect("create")
        .expect("command");
    assert!(c.id < c2.id && c2.id < other.id);
    let ids = |v: Vec<CommandRow>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.open_commands("h1-agent", false).expect("open")),
        [c.id, c2.id]
    );
    s.mark_sent(c.id, T0 + 4).expect("sent");
    s.mark_sent(c.id, T0 + 9)
        .expect("sent twice keeps the first");
    assert_eq!(
        ids(s.open_commands("h1-agent", false).expect("open")),
        [c2.id]
    );
    assert_eq!(
        ids(s.open_commands("h1-agent", true).expect("resend")),
        [c.id, c2.id]
    );
    // Only the agent's own commands can be answered by it.
    assert!(
        s.command_result("h2-agent", c.id, true, "ok", T0 + 5)
            .expect("foreign")
            .is_none()
    );
    let done = s
        .command_result("h1-agent", c.id, true, "isolated", T0 + 5)
        .expect("result")
        .expect("row");
    assert_eq!(
        (
            done.state.as_str(),
            done.sent_ns,
            done.done_ns,
            done.result.as_deref()
        ),
        ("done", Some(T0 + 4), Some(T0 + 5), Some("isolated"))
    );
    let failed = s
        .command_result("h1-agent", c2.id, false, "no nft", T0 + 6)
        .expect("result")
        .expect("row");
    assert_eq!(failed.state, "failed");
    assert!(s.open_commands("h1-agent", true).expect("open").is_empty());
    assert_eq!(
        ids(s.commands(Some("h1-agent"), 10).expect("list")),
        [c2.id, c.id]
    );
    assert_eq!(
        ids(s.commands(None, 10).expect("all")),
        [other.id, c2.id, c.id]
    );
    assert_eq!(ids(s.commands(None, 1).expect("limit")), [other.id]);
    assert_eq!(
        s.command_state(c.id).expect("state"),
        Some(("done".to_string(), Some("isolated".to_string())))
    );
    assert_eq!(s.command_state(9999).expect("none"), None);
    let actions: Vec<(String, String, String)> = s
        .audit_log(0, 100)
        .expect("audit")
        .into_iter()
        .rev()
        .map(|a| (a.actor, a.action, a.target))
        .collect();
    let expect = [
        ("ops", "isolate.requested", "h1-agent"),
        ("ops", "isolate.requested", "h1-agent"),
        ("ops", "isolate.requested", "h2-agent"),
        ("h1-agent", "isolate.done", "h1-agent"),
        ("h1-agent", "isolate.failed", "h1-agent"),
    ];
    assert_eq!(
        actions,
        expect
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .to_vec()
    );
    let first = s.audit_log(0, 100).expect("audit").pop().expect("first");
    assert_eq!(first.detail["command_id"], c.id);
    assert_eq!(first.detail["command"]["reason"], "test");
    assert_eq!(first.ts_ns, T0 + 1);
}

fn enforcement_reports_update_the_host_and_audit_changes(f: &Fixture) {
    let mut s = store_with_h1(f);
    let report = |isolated: bool| HostEnforcement {
        backend: "nftables",
        isolated,
        since_ns: T0 + 1,
        expires_ns: if isolated { T0 + 100 } else { 0 },
        by: "ops",
        reason: "test",
    };
    s.set_enforcement("h1-agent", &report(false), T0)
        .expect("initial");
    assert!(
        s.audit_log(0, 10).expect("audit").is_empty(),
        "no change, no audit"
    );
    s.set_enforcement("h1-agent", &report(true), T0 + 1)
        .expect("isolated");
    s.set_enforcement("h1-agent", &report(true), T0 + 2)
        .expect("again");
    let h = s.host("h1-agent").expect("host").expect("h1");
    assert_eq!(
        (
            h.isolated,
            h.isolated_since_ns,
            h.isolated_by.as_deref(),
            h.isolation_reason.as_deref(),
            h.isolation_expires_ns,
            h.enforcement_backend.as_deref()
        ),
        (
            true,
            Some(T0 + 1),
            Some("ops"),
            Some("test"),
            Some(T0 + 100),
            Some("nftables")
        )
    );
    s.set_enforcement("h1-agent", &report(false), T0 + 3)
        .expect("released");
    let h = s.host("h1-agent").expect("host").expect("h1");
    assert_eq!(
        (
            h.isolated,
            h.isolated_since_ns,
            h.isolated_by,
            h.isolation_expires_ns
        ),
        (false, None, None, None)
    );
    let log = s.audit_log(0, 10).expect("audit");
    let actions: Vec<&str> = log.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["host.released", "host.isolated"]);
    assert_eq!(log[1].detail["backend"], "nftables");
    // An unknown agent's report changes nothing and fails nothing.
    s.set_enforcement("nobody", &report(true), T0)
        .expect("unknown");
    assert_eq!(s.audit_log(0, 10).expect("audit").len(), 2);
}

fn the_audit_log_is_newest_first_from_a_time(f: &Fixture) {
    let mut s = f.open();
    for i in 0..5u64 {
        s.audit(
            "ops",
            "thing.done",
            &format!("t{i}"),
            &json!({"i": i}),
            T0 + i,
        )
        .expect("audit");
    }
    let log = s.audit_log(T0 + 2, 2).expect("log");
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].target.as_str(), log[1].target.as_str()),
        ("t4", "t3")
    );
    assert_eq!(log[0].detail, json!({"i": 4}));
    assert!(log[0].id > log[1].id);
    assert_eq!(s.audit_log(T0 + 2, 0).expect("limit 0 is 1").len(), 1);
    assert_eq!(s.audit_log(T0 + 2, 100).expect("from t2").len(), 3);
}

both!(
    commands_are_queued_sent_answered_and_audited,
    enforcement_reports_update_the_host_and_audit_changes,
    the_audit_log_is_newest_first_from_a_time,
);
