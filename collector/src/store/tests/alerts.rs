//! Verdicts and alerts through the store (moved here from `alerts::tests` to run on both
//! backends): a published policy judges stored records; escaped flows raise one alert per
//! key with a count; the outbox gets new alerts and republished ones, not while snoozed
//! or muted; sinks keep their positions in the outbox.
use std::sync::Arc;

use cordon_wire::{Direction, FlowBatch, FlowEvent, FlowRecord, Process, Proto, Verdict};

use super::{Fixture, both};
use crate::{
    alerts::AlertSettings,
    outputs::Envelope,
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

fn store_with_policy(f: &Fixture) -> (Store, Judge) {
    let mut s = f.open();
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

fn verdicts_are_stored_and_violations_alert_once_per_key_with_counts(f: &Fixture) {
    let (mut s, mut judge) = store_with_policy(f);
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

fn without_a_published_policy_records_have_no_verdict(f: &Fixture) {
    let mut s = f.open();
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

fn envelope(key: &str, n: u64) -> Envelope {
    Envelope {
        key: key.into(),
        hec: serde_json::json!({"event": {"n": n}}),
    }
}

fn the_outbox_keeps_each_sinks_position_and_ids_never_go_back(f: &Fixture) {
    let mut s = f.open();
    assert!(s.outbox_after(0, 10).expect("empty").is_empty());
    assert_eq!(s.sink_position("kafka").expect("position"), 0);
    for n in 0..3 {
        s.queue_envelope(&envelope("k", n), super::T0 + n)
            .expect("queue");
    }
    let all = s.outbox_after(0, 10).expect("outbox");
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "in id order");
    assert_eq!(all[2].1, envelope("k", 2));
    assert_eq!(s.outbox_after(all[0].0, 1).expect("page")[0].0, all[1].0);
    // Positions only move forward; dead letters add up.
    s.set_sink_position("kafka", all[1].0, 0).expect("set");
    s.set_sink_position("kafka", all[0].0, 2).expect("set back");
    s.set_sink_position("hec", all[2].0, 1).expect("set");
    assert_eq!(s.sink_position("kafka").expect("position"), all[1].0);
    // Pruning keeps what the slowest sink has not delivered.
    assert_eq!(s.prune_outbox(&["kafka", "hec"]).expect("prune"), 2);
    assert_eq!(s.outbox_after(0, 10).expect("left").len(), 1);
    s.set_sink_position("kafka", all[2].0, 0).expect("set");
    assert_eq!(s.prune_outbox(&["kafka", "hec"]).expect("prune"), 1);
    // Everything was delivered and pruned: a new envelope still comes after every sink's
    // position, or the sinks would never deliver it.
    s.queue_envelope(&envelope("k", 3), super::T0 + 3)
        .expect("queue");
    let pos = s.sink_position("hec").expect("position");
    let next = s.outbox_after(pos, 10).expect("after");
    assert_eq!(
        next.len(),
        1,
        "a new envelope after a full prune is delivered"
    );
    assert_eq!(next[0].1, envelope("k", 3));
    // No sinks: nothing will read it.
    assert_eq!(s.prune_outbox(&[]).expect("prune all"), 1);
}

fn snooze_and_mute_of_unknown_alerts_are_refused(f: &Fixture) {
    let mut s = f.open();
    assert!(!s.snooze_alert("nope", 5).expect("snooze"));
    assert!(!s.mute_alert("nope", true).expect("mute"));
}

fn alerts_are_filtered_by_host_severity_and_time(f: &Fixture) {
    let (mut s, mut judge) = store_with_policy(f);
    s.host_connected("h2", "h2", "0.1.0", "ebpf", T0)
        .expect("host");
    let settings = AlertSettings::default();
    put(
        &mut s,
        &mut judge,
        1,
        vec![rec(9090, FlowEvent::Start, Verdict::Forwarded, "/x", T0)],
        &settings,
        T0,
    );
    let all = s.alerts(&AlertFilter::default()).expect("alerts");
    assert_eq!(all.len(), 1);
    let a = &all[0];
    assert_eq!((a.host.as_str(), a.count, a.first_ns), ("h1", 1, T0));
    assert_eq!(a.alert["key_id"], a.key_id.as_str());
    let q = |f: AlertFilter| s.alerts(&f).expect("alerts").len();
    assert_eq!(
        q(AlertFilter {
            host: Some("h2".into()),
            ..Default::default()
        }),
        0
    );
    assert_eq!(
        q(AlertFilter {
            host: Some("h1".into()),
            min_severity: crate::policy::Severity::parse("HIGH"),
            since_ns: Some(T0),
            limit: 5,
        }),
        1
    );
    assert_eq!(
        q(AlertFilter {
            min_severity: crate::policy::Severity::parse("CRITICAL"),
            ..Default::default()
        }),
        0
    );
    assert_eq!(
        q(AlertFilter {
            since_ns: Some(T0 + 1),
            ..Default::default()
        }),
        0
    );
}

both!(
    verdicts_are_stored_and_violations_alert_once_per_key_with_counts,
    without_a_published_policy_records_have_no_verdict,
    the_outbox_keeps_each_sinks_position_and_ids_never_go_back,
    snooze_and_mute_of_unknown_alerts_are_refused,
    alerts_are_filtered_by_host_severity_and_time,
);

/// SQLite only: a database of schema version 7 whose outbox was pruned empty gets ids
/// above every sink's position after the migration.
#[test]
fn sqlite_migration_8_starts_outbox_ids_above_every_sink() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("cordon.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("raw");
        for sql in [
            include_str!("../sqlite/schema.sql"),
            include_str!("../sqlite/schema_v2.sql"),
            include_str!("../sqlite/schema_v3.sql"),
            include_str!("../sqlite/schema_v4.sql"),
            include_str!("../sqlite/schema_v5.sql"),
            include_str!("../sqlite/schema_v6.sql"),
            include_str!("../sqlite/schema_v7.sql"),
        ] {
            conn.execute_batch(sql).expect("schema");
        }
        conn.execute_batch(
            "PRAGMA user_version = 7;
             INSERT INTO alert_outbox (id, key_id, envelope, created_ns) VALUES (3, 'k', '{}', 0);
             INSERT INTO sink_progress (sink, delivered_id) VALUES ('kafka', 5), ('hec', 3);",
        )
        .expect("v7 data");
    }
    let mut s = Store::open(&path).expect("migrate");
    assert_eq!(
        s.outbox_after(0, 10).expect("kept")[0].0,
        3,
        "rows are kept"
    );
    assert_eq!(s.prune_outbox(&["kafka", "hec"]).expect("prune"), 1);
    s.queue_envelope(&envelope("k", 1), T0).expect("queue");
    let next = s.outbox_after(5, 10).expect("after kafka's position");
    assert_eq!(next.len(), 1, "above every sink's position");
}
