//! What policy learning reads and writes: flows of a window, learned drafts with their
//! reports, approvals carried from one version to the next.
use cordon_wire::FlowEvent;

use super::*;
use crate::store::*;

fn flows_of_a_window_are_streamed(f: &Fixture) {
    let mut s = store_with_h1(f);
    s.host_connected("h2-agent", "h2", "0.1.0", "ebpf", T0)
        .expect("h2");
    let hosts = s.learn_hosts().expect("hosts");
    assert_eq!(
        hosts
            .iter()
            .map(|h| h.agent_id.as_str())
            .collect::<Vec<_>>(),
        ["h1-agent", "h2-agent"]
    );
    assert!(hosts[0].id < hosts[1].id);
    let mut records: Vec<_> = (0..25_000u64)
        .map(|i| rec(FlowEvent::Start, 443, "/usr/bin/curl", T0 + i * 10))
        .collect();
    records[1].event = FlowEvent::End;
    if let Some(p) = records[2].process.as_mut() {
        p.exe = None;
    }
    s.store_batch("h1-agent", &batch(1, records))
        .expect("store");
    s.store_batch(
        "h2-agent",
        &batch(1, vec![rec(FlowEvent::Start, 22, "", T0 + 5)]),
    )
    .expect("store");
    let mut seen = Vec::new();
    let n = s
        .for_each_flow(0, u64::MAX / 2, &mut |o| {
            seen.push((
                o.host_id,
                o.start,
                o.proto.to_string(),
                o.outbound,
                o.local_ip.to_string(),
                o.local_port,
                o.remote_ip.to_string(),
                o.remote_port,
                o.exe.map(str::to_string),
                o.first_seen_ns,
                o.last_seen_ns,
            ))
        })
        .expect("all");
    assert_eq!(n, 25_001);
    assert_eq!(seen.len(), 25_001);
    let first = seen.iter().find(|o| o.9 == T0).expect("first record");
    assert_eq!(
        first,
        &(
            hosts[0].id,
            true,
            "tcp".to_string(),
            true,
            "10.0.0.1".to_string(),
            40000,
            "10.0.0.2".to_string(),
            443,
            Some("/usr/bin/curl".to_string()),
            T0,
            T0 + 1_000
        )
    );
    assert!(
        seen.iter().any(|o| o.9 == T0 + 10 && !o.1),
        "the end record"
    );
    assert!(
        seen.iter().any(|o| o.9 == T0 + 20 && o.8.is_none()),
        "no exe"
    );
    assert!(
        seen.iter().any(|o| o.0 == hosts[1].id && o.8.is_none()),
        "an empty exe is none"
    );
    // Active in [since, until): last seen at or after since, first seen before until.
    let count = |since, until| s.for_each_flow(since, until, &mut |_| {}).expect("window");
    assert_eq!(
        count(T0 + 1_005, T0 + 21),
        3,
        "h1's at T0+10 and T0+20, h2's"
    );
    assert_eq!(count(T0 + 1_000, T0 + 1), 1, "h1's first only");
    assert_eq!(count(u64::MAX / 2, u64::MAX / 2 + 1), 0);
}

fn learned_drafts_keep_reports_and_carried_approvals(f: &Fixture) {
    let mut s = f.open();
    assert!(s.latest_approvals().expect("none").is_none());
    let carried = Approvals {
        version: 0,
        groups: vec![("web".into(), "alice".into())],
        rules: vec![("web-to-db".into(), "bob".into())],
    };
    let v = s
        .apply_learned_policy(
            "learned",
            "name: learned\n",
            "learn",
            T0,
            (T0 - 100, T0),
            "{\"clusters\":1}",
            &carried,
        )
        .expect("learned");
    let p = s.policy(Some(v)).expect("policy").expect("draft");
    assert_eq!(
        (p.state.as_str(), p.created_by.as_str()),
        ("draft", "learn")
    );
    assert_eq!(
        s.learning_report(v).expect("report").as_deref(),
        Some("{\"clusters\":1}")
    );
    s.set_learning_report(v, "{\"clusters\":2}").expect("set");
    assert_eq!(
        s.learning_report(v).expect("report").as_deref(),
        Some("{\"clusters\":2}")
    );
    let plain = s
        .apply_policy("hand", "name: hand\n", "ops", T0)
        .expect("plain");
    assert!(s.learning_report(plain).expect("none").is_none());
    let a = s.policy_approvals(v).expect("approvals");
    assert_eq!(
        a,
        Approvals {
            version: v,
            groups: vec![("web".into(), "alice".into())],
            rules: vec![("web-to-db".into(), "bob".into())],
        }
    );
    // Approving again replaces who approved; new items are added; sorted by name.
    s.approve_items(
        v,
        &["web".into(), "Db".into()],
        &["any-to-web".into()],
        "carol",
        T0 + 1,
    )
    .expect("approve");
    let a = s.policy_approvals(v).expect("approvals");
    assert_eq!(
        a.groups,
        vec![
            ("Db".to_string(), "carol".to_string()),
            ("web".to_string(), "carol".to_string())
        ]
    );
    assert_eq!(
        a.rules,
        vec![
            ("any-to-web".to_string(), "carol".to_string()),
            ("web-to-db".to_string(), "bob".to_string())
        ]
    );
    assert_eq!(
        s.latest_approvals().expect("latest").expect("some").version,
        v
    );
    // A later learned version carries them; duplicates in what is carried are ignored.
    let mut again = a.clone();
    again.groups.push(("web".into(), "someone".into()));
    let v2 = s
        .apply_learned_policy(
            "learned",
            "name: l2\n",
            "learn",
            T0 + 2,
            (T0, T0 + 2),
            "{}",
            &again,
        )
        .expect("v2");
    let a2 = s.policy_approvals(v2).expect("approvals");
    assert_eq!(a2.groups.len(), 2);
    assert_eq!(a2.groups[1], ("web".to_string(), "carol".to_string()));
    assert_eq!(
        s.latest_approvals().expect("latest").expect("some").version,
        v2
    );
    assert_eq!(
        s.policy_approvals(999).expect("none"),
        Approvals {
            version: 999,
            ..Approvals::default()
        }
    );
}

both!(
    flows_of_a_window_are_streamed,
    learned_drafts_keep_reports_and_carried_approvals,
);
