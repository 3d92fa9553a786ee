//! Verdicts and alerts through the store: a published policy judges stored records;
//! escaped flows raise one alert per key with a count; the outbox gets new alerts and
//! republished ones, not while snoozed or muted.
use std::sync::Arc;

use cordon_wire::{Direction, FlowBatch, FlowEvent, FlowRecord, Process, Proto, Verdict};

use super::*;
use crate::{
    policy::state::{Judge, PolicyState},
    store::{AlertFilter, Compliance, FlowFilter, Store},
};

const POLICY: &str = "name: t\ngroups:\n  h1:\n    hostname: [h1]\n  h2:\n    cidr: [10.0.0.2]\nrules:\n  - name: web\n    consumer: any\n    provider: h2\n    ports: [tcp/8080]\n    action: allow\ncatch_all:\n  - action: deny\n    severity: HIGH\n";
const T0: u64 = 1_700_000_000_000_000_000;

fn rec(port: u16, event: FlowEvent, verdict: Verdict, exe: &str, t: u64) -> FlowRecord {
    FlowRecord {
        event,
        first_seen_ns: t,
        last_seen_ns: t + 5,
        proto: Proto::Tcp,
        direction: Direction::Outbound,
        local: "10.0.0.1:40000".parse().expect("addr"),
        remote: std::net::SocketAddr::from(([10, 0, 0, 2], port)),
        bytes_out: 60,
        bytes_in: 0,
        packets_out: 1,
        packets_in: 0,
        tcp_flags: (2, 0),
        closed: false,
        verdict,
        process: Some(Process {
            pid: 7,
            ppid: Some(1),
            uid: 0,
            user: Some("root".into()),
            comm: "nc".into(),
            exe: Some(exe.into()),
            cmdline: Some("nc 10.0.0.2 9090".into()),
            cgroup: Some("/".into()),
        }),
        unattributed_reason: None,
    }
}

fn store_with_policy() -> (Store, Judge) {
    let mut s = Store::in_memory().expect("store");
    s.host_connected("h1", "h1", "0.1.0", "ebpf", T0)
        .expect("host");
    let v = s.apply_policy("t", POLICY, "test", T0).expect("apply");
    s.publish_policy(v, "test", T0)
        .expect("store")
        .expect("publish");
    let state = PolicyState::new();
    state.reload(&*s).expect("reload");
    let mut judge = Judge::new(Arc::clone(&state));
    judge.refresh();
    (s, judge)
}

fn put(
    s: &mut Store,
    judge: &mut Judge,
    seq: u64,
    records: Vec<FlowRecord>,
    settings: &AlertSettings,
    now: u64,
) -> u64 {
    let batch = FlowBatch {
        seq,
        records,
        dropped_before: 0,
    };
    let mut f = |a: &str, r: &FlowRecord| judge.judge(a, r);
    let mut c = Compliance {
        judge: Some(&mut f),
        settings,
        now_ns: now,
        raised: 0,
    };
    s.store_batches(&[("h1", &batch)], &mut c).expect("store");
    c.raised
}

#[test]
fn verdicts_are_stored_and_violations_alert_once_per_key_with_counts() {
    let (mut s, mut judge) = store_with_policy();
    let settings = AlertSettings {
        republish_secs: 60,
        index: "security".into(),
        source: "cordon".into(),
    };
    let nc = "/usr/bin/nc";
    let raised = put(
        &mut s,
        &mut judge,
        1,
        vec![
            rec(
                8080,
                FlowEvent::Start,
                Verdict::Forwarded,
                "/usr/bin/curl",
                T0,
            ),
            rec(9090, FlowEvent::Start, Verdict::Forwarded, nc, T0),
            rec(9090, FlowEvent::End, Verdict::Forwarded, nc, T0),
            rec(9091, FlowEvent::Start, Verdict::Dropped, nc, T0),
        ],
        &settings,
        T0 + 10,
    );
    assert_eq!(raised, 2, "one per violating flow start");
    let verdicts = |v: &str| {
        s.flows(&FlowFilter {
            verdict: Some(v.into()),
            limit: 100,
            ..Default::default()
        })
        .expect("flows")
    };
    assert_eq!(verdicts("permitted").len(), 1);
    let escaped = verdicts("escaped");
    assert_eq!(escaped.len(), 2, "start and end of the 9090 flow");
    assert_eq!(escaped[0].policy_rule.as_deref(), Some("catch-all"));
    assert_eq!(verdicts("rejected").len(), 1, "dropped by enforcement");

    // The same violation again (a new flow, same key) within the republish interval:
    // counted, not queued again. A minute later: queued again with the new count.
    put(
        &mut s,
        &mut judge,
        2,
        vec![rec(
            9090,
            FlowEvent::Start,
            Verdict::Forwarded,
            nc,
            T0 + 1_000,
        )],
        &settings,
        T0 + 20,
    );
    put(
        &mut s,
        &mut judge,
        3,
        vec![rec(
            9090,
            FlowEvent::Start,
            Verdict::Forwarded,
            nc,
            T0 + 2_000,
        )],
        &settings,
        T0 + 61_000_000_000,
    );
    let alerts = s.alerts(&AlertFilter::default()).expect("alerts");
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let a = alerts
        .iter()
        .find(|a| a.count == 3)
        .expect("the 9090 alert counted 3");
    assert_eq!(a.severity, "HIGH");
    let out = s.outbox_after(0, 100).expect("outbox");
    let mine: Vec<_> = out.iter().filter(|(_, e)| e.key == a.key_id).collect();
    assert_eq!(mine.len(), 2, "new, then republished after 60 s");
    let env = &mine[1].1.hec;
    assert_eq!(env["sourcetype"], "cordon:alert");
    assert_eq!(env["index"], "security");
    assert_eq!(env["host"], "h1");
    let ev = &env["event"];
    assert_eq!(ev["type"], "COMPLIANCE");
    assert_eq!(ev["key_id"], a.key_id.as_str());
    assert_eq!(ev["alert_details_json"]["count"], 3);
    assert_eq!(ev["alert_details_json"]["process"]["exe"], nc);
    assert_eq!(ev["alert_details_json"]["verdict"], "escaped");
    let details: serde_json::Value =
        serde_json::from_str(ev["alert_details"].as_str().expect("string")).expect("json");
    assert_eq!(details, ev["alert_details_json"]);
    assert!(
        ev["alert_text"]
            .as_str()
            .expect("text")
            .contains("10.0.0.2:9090")
    );

    // Snoozed, then muted: still counted, not queued.
    assert!(
        s.snooze_alert(&a.key_id, T0 + 1_000_000_000_000)
            .expect("snooze")
    );
    put(
        &mut s,
        &mut judge,
        4,
        vec![rec(
            9090,
            FlowEvent::Start,
            Verdict::Forwarded,
            nc,
            T0 + 3_000,
        )],
        &settings,
        T0 + 200_000_000_000,
    );
    assert!(s.snooze_alert(&a.key_id, 0).expect("unsnooze"));
    assert!(s.mute_alert(&a.key_id, true).expect("mute"));
    put(
        &mut s,
        &mut judge,
        5,
        vec![rec(
            9090,
            FlowEvent::Start,
            Verdict::Forwarded,
            nc,
            T0 + 4_000,
        )],
        &settings,
        T0 + 400_000_000_000,
    );
    let out = s.outbox_after(0, 100).expect("outbox");
    assert_eq!(out.iter().filter(|(_, e)| e.key == a.key_id).count(), 2);
    let a = s
        .alerts(&AlertFilter::default())
        .expect("alerts")
        .into_iter()
        .find(|x| x.key_id == a.key_id)
        .expect("alert");
    assert_eq!(a.count, 5);
    assert!(a.muted);
    // A different process on the same remote and port is a different alert.
    put(
        &mut s,
        &mut judge,
        6,
        vec![rec(
            9090,
            FlowEvent::Start,
            Verdict::Forwarded,
            "/usr/bin/ncat",
            T0 + 5_000,
        )],
        &settings,
        T0 + 500_000_000_000,
    );
    assert_eq!(s.alerts(&AlertFilter::default()).expect("alerts").len(), 3);
}

#[test]
fn without_a_published_policy_records_have_no_verdict() {
    let mut s = Store::in_memory().expect("store");
    s.host_connected("h1", "h1", "0.1.0", "ebpf", T0)
        .expect("host");
    let v = s.apply_policy("t", POLICY, "test", T0).expect("apply");
    let state = PolicyState::new();
    state.reload(&*s).expect("reload");
    let mut judge = Judge::new(state);
    judge.refresh();
    let settings = AlertSettings::default();
    put(
        &mut s,
        &mut judge,
        1,
        vec![rec(9090, FlowEvent::Start, Verdict::Forwarded, "/x", T0)],
        &settings,
        T0,
    );
    let f = s.flows(&FlowFilter::default()).expect("flows");
    assert_eq!(
        f[0].policy_verdict, None,
        "a draft (version {v}) judges nothing"
    );
    assert!(
        s.alerts(&AlertFilter::default())
            .expect("alerts")
            .is_empty()
    );
}
