use cordon_wire::{Direction, FlowBatch, FlowEvent, FlowRecord, Process, Proto, Verdict};

use super::*;

const T0: u64 = 1_700_000_000_000_000_000;

fn rec(event: FlowEvent, port: u16, exe: &str, t: u64) -> FlowRecord {
    FlowRecord {
        event,
        first_seen_ns: t,
        last_seen_ns: t + 1_000,
        proto: Proto::Tcp,
        direction: Direction::Outbound,
        local: "10.0.0.1:40000".parse().expect("addr"),
        remote: format!("10.0.0.2:{port}").parse().expect("addr"),
        bytes_out: 100,
        bytes_in: 200,
        packets_out: 2,
        packets_in: 2,
        tcp_flags: (0x12, 0x12),
        closed: event == FlowEvent::End,
        verdict: Verdict::Forwarded,
        process: Some(Process {
            pid: 42,
            ppid: Some(1),
            uid: 0,
            user: Some("root".into()),
            comm: "curl".into(),
            exe: Some(exe.into()),
            cmdline: Some("curl x".into()),
            cgroup: Some("/".into()),
        }),
        unattributed_reason: None,
    }
}

fn batch(seq: u64, records: Vec<FlowRecord>) -> FlowBatch {
    FlowBatch {
        seq,
        records,
        dropped_before: 0,
    }
}

fn store_with_h1() -> Store {
    let mut s = Store::in_memory().expect("store");
    let (_, seq) = s
        .host_connected("h1-agent", "h1", "0.1.0", "ebpf", T0)
        .expect("host");
    assert_eq!(seq, 0);
    s
}

#[test]
fn batches_are_stored_once_and_resends_are_recognised() {
    let mut s = store_with_h1();
    let b = batch(1, vec![rec(FlowEvent::Start, 443, "/usr/bin/curl", T0)]);
    assert_eq!(
        s.store_batch("h1-agent", &b).expect("store"),
        Stored::New { records: 1 }
    );
    assert_eq!(
        s.store_batch("h1-agent", &b).expect("resend"),
        Stored::Duplicate
    );
    assert_eq!(s.flows(&FlowFilter::default()).expect("query").len(), 1);
    // The stored sequence survives a reconnect.
    let (_, seq) = s
        .host_connected("h1-agent", "h1", "0.1.1", "ebpf", T0 + 5)
        .expect("host");
    assert_eq!(seq, 1);
    assert!(matches!(
        s.store_batch("nobody", &b),
        Err(StoreError::UnknownAgent(_))
    ));
}

#[test]
fn a_group_commit_stores_each_batch_once_and_fails_only_the_bad_one() {
    let mut s = store_with_h1();
    s.host_connected("h2-agent", "h2", "0.1.0", "ebpf", T0)
        .expect("host");
    let one = batch(1, vec![rec(FlowEvent::Start, 443, "/usr/bin/curl", T0)]);
    let two = batch(
        2,
        vec![rec(FlowEvent::Start, 443, "/usr/bin/curl", T0 + 1); 3],
    );
    let results = s
        .store_batches(
            &[
                ("h1-agent", &one),
                ("nobody", &one),
                ("h1-agent", &one), // a resend within the same group
                ("h2-agent", &one),
                ("h1-agent", &two),
            ],
            &mut Compliance::none(),
        )
        .expect("commit");
    assert!(matches!(results[0], Ok(Stored::New { records: 1 })));
    assert!(matches!(results[1], Err(StoreError::UnknownAgent(_))));
    assert!(matches!(results[2], Ok(Stored::Duplicate)));
    assert!(matches!(results[3], Ok(Stored::New { records: 1 })));
    assert!(matches!(results[4], Ok(Stored::New { records: 3 })));
    assert_eq!(s.flows(&FlowFilter::default()).expect("query").len(), 5);
    let (_, seq) = s
        .host_connected("h1-agent", "h1", "0.1.0", "ebpf", T0 + 5)
        .expect("host");
    assert_eq!(seq, 2);
    // Both agents' edges were counted once per start record.
    assert_eq!(s.conversations("h1-agent").expect("edges")[0].flows, 4);
    assert_eq!(s.conversations("h2-agent").expect("edges")[0].flows, 1);
}

#[test]
fn flows_are_filtered_and_limited() {
    let mut s = store_with_h1();
    s.host_connected("h2-agent", "h2", "0.1.0", "procfs", T0)
        .expect("host");
    s.store_batch(
        "h1-agent",
        &batch(
            1,
            vec![
                rec(FlowEvent::Start, 443, "/usr/bin/curl", T0),
                rec(FlowEvent::End, 443, "/usr/bin/curl", T0 + 10),
                rec(FlowEvent::Start, 5432, "/usr/bin/psql", T0 + 20),
            ],
        ),
    )
    .expect("store");
    s.store_batch(
        "h2-agent",
        &batch(1, vec![rec(FlowEvent::Start, 22, "/usr/bin/ssh", T0)]),
    )
    .expect("store");
    let q = |f: FlowFilter| s.flows(&f).expect("query");
    assert_eq!(q(FlowFilter::default()).len(), 4);
    assert_eq!(
        q(FlowFilter {
            host: Some("h2".into()),
            ..Default::default()
        })
        .len(),
        1
    );
    assert_eq!(
        q(FlowFilter {
            host: Some("h1-agent".into()),
            ..Default::default()
        })
        .len(),
        3
    );
    assert_eq!(
        q(FlowFilter {
            port: Some(443),
            ..Default::default()
        })
        .len(),
        2
    );
    let psql = q(FlowFilter {
        exe: Some("/usr/bin/psql".into()),
        ..Default::default()
    });
    assert_eq!(psql.len(), 1);
    assert_eq!((psql[0].remote_port, psql[0].pid), (5432, Some(42)));
    assert_eq!(
        q(FlowFilter {
            since_ns: Some(T0 + 1_015),
            ..Default::default()
        })
        .len(),
        1
    );
    assert_eq!(
        q(FlowFilter {
            until_ns: Some(T0 + 5),
            ..Default::default()
        })
        .len(),
        2
    );
    let newest = q(FlowFilter {
        limit: 1,
        ..Default::default()
    });
    assert_eq!(newest[0].remote_port, 5432);
    assert_eq!(
        q(FlowFilter {
            remote_ip: Some("10.0.0.9".parse().expect("ip")),
            ..Default::default()
        })
        .len(),
        0
    );
}

#[test]
fn conversations_count_flow_starts_per_edge() {
    let mut s = store_with_h1();
    let recs = vec![
        rec(FlowEvent::Start, 443, "/usr/bin/curl", T0),
        rec(FlowEvent::End, 443, "/usr/bin/curl", T0),
        rec(FlowEvent::Start, 443, "/usr/bin/curl", T0 + 1),
        rec(FlowEvent::Start, 5432, "/usr/bin/psql", T0 + 2),
    ];
    s.store_batch("h1-agent", &batch(1, recs)).expect("store");
    let edges = s.conversations("h1-agent").expect("edges");
    assert_eq!(edges.len(), 2);
    assert_eq!(
        edges[0],
        Conversation {
            direction: "outbound".into(),
            proto: "tcp".into(),
            remote_ip: "10.0.0.2".into(),
            port: 443,
            exe: "/usr/bin/curl".into(),
            flows: 2,
        }
    );
}

#[test]
fn retention_removes_old_flows_and_the_file_reopens() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("cordon.db");
    {
        let mut s = Store::open(&path).expect("open");
        s.host_connected("h1-agent", "h1", "0.1.0", "ebpf", T0)
            .expect("host");
        s.store_batch(
            "h1-agent",
            &batch(
                1,
                vec![
                    rec(FlowEvent::Start, 1, "/a", T0),
                    rec(FlowEvent::Start, 2, "/b", T0 + 1_000_000),
                ],
            ),
        )
        .expect("store");
        assert_eq!(s.apply_retention(T0 + 500_000).expect("retention"), 1);
    }
    let s = Store::open(&path).expect("reopen");
    let left = s.flows(&FlowFilter::default()).expect("query");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].remote_port, 2);
}

#[test]
fn a_newer_schema_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("cordon.db");
    drop(Store::open(&path).expect("create"));
    let conn = rusqlite::Connection::open(&path).expect("raw");
    conn.pragma_update(None, "user_version", 99).expect("bump");
    drop(conn);
    assert!(matches!(
        Store::open(&path),
        Err(StoreError::TooNew { found: 99, .. })
    ));
}

#[test]
fn outbox_ids_never_go_back_after_a_full_prune() {
    let mut s = Store::in_memory().expect("store");
    let env = |n: u64| crate::outputs::Envelope {
        key: "k".into(),
        hec: serde_json::json!({ "n": n }),
    };
    s.queue_envelope(&env(1), T0).expect("queue");
    let (id, _) = s.outbox_after(0, 10).expect("outbox")[0].clone();
    s.set_sink_position("kafka", id, 0).expect("delivered");
    assert_eq!(s.prune_outbox(&["kafka"]).expect("prune"), 1);
    // The outbox is empty and the sink is at `id`: the next envelope must come after it,
    // or the sink never delivers it.
    s.queue_envelope(&env(2), T0).expect("queue");
    let next = s.outbox_after(id, 10).expect("after");
    assert_eq!(next.len(), 1);
    assert!(next[0].0 > id);
}

/// A database of schema version 7 whose outbox was pruned empty gets ids above every
/// sink's position after the migration.
#[test]
fn migration_8_starts_outbox_ids_above_every_sink() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("cordon.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("raw");
        for sql in [
            include_str!("sqlite/schema.sql"),
            include_str!("sqlite/schema_v2.sql"),
            include_str!("sqlite/schema_v3.sql"),
            include_str!("sqlite/schema_v4.sql"),
            include_str!("sqlite/schema_v5.sql"),
            include_str!("sqlite/schema_v6.sql"),
            include_str!("sqlite/schema_v7.sql"),
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
    s.queue_envelope(
        &crate::outputs::Envelope {
            key: "k".into(),
            hec: serde_json::json!({}),
        },
        T0,
    )
    .expect("queue");
    assert_eq!(s.outbox_after(5, 10).expect("after").len(), 1);
}
