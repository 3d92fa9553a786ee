//! Coordination: leases, heartbeats and nodes, which node each agent is connected to.
use serde_json::json;

use super::*;
use crate::store::*;

const SEC: u64 = 1_000_000_000;

fn a_lease_has_one_holder_renews_expires_and_is_released(f: &Fixture) {
    let (mut a, mut b) = (f.open(), f.open());
    assert!(
        a.try_lease("outputs", "node-a", T0, 10 * SEC)
            .expect("take")
    );
    assert!(
        !b.try_lease("outputs", "node-b", T0 + SEC, 10 * SEC)
            .expect("held")
    );
    // The holder renews; the other still cannot take it before the renewed expiry.
    assert!(
        a.try_lease("outputs", "node-a", T0 + 5 * SEC, 10 * SEC)
            .expect("renew")
    );
    assert!(
        !b.try_lease("outputs", "node-b", T0 + 12 * SEC, 10 * SEC)
            .expect("renewed")
    );
    // Expired: taken over.
    assert!(
        b.try_lease("outputs", "node-b", T0 + 15 * SEC, 10 * SEC)
            .expect("expired")
    );
    assert!(
        !a.try_lease("outputs", "node-a", T0 + 16 * SEC, 10 * SEC)
            .expect("lost")
    );
    // Only the holder releases; then anyone takes it.
    a.release_lease("outputs", "node-a").expect("not mine");
    assert!(
        !a.try_lease("outputs", "node-a", T0 + 17 * SEC, 10 * SEC)
            .expect("still b's")
    );
    b.release_lease("outputs", "node-b").expect("release");
    assert!(
        a.try_lease("outputs", "node-a", T0 + 17 * SEC, 10 * SEC)
            .expect("free")
    );
    // Leases are independent by name.
    assert!(
        b.try_lease("retention", "node-b", T0 + 17 * SEC, 10 * SEC)
            .expect("other")
    );
}

fn one_of_many_racing_owners_gets_a_lease(f: &Fixture) {
    let winners = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for i in 0..4 {
            let mut s = f.open();
            let winners = &winners;
            scope.spawn(move || {
                let me = format!("node-{i}");
                for _ in 0..20 {
                    if s.try_lease("engine", &me, T0, 60 * SEC).expect("lease") {
                        winners.lock().expect("lock").push(me.clone());
                    }
                }
            });
        }
    });
    let mut w = winners.into_inner().expect("winners");
    w.dedup();
    assert_eq!(w.len(), 1, "{w:?}");
}

fn node<'a>(name: &'a str, version: &'a str, stats: &'a serde_json::Value) -> NodeInfo<'a> {
    NodeInfo {
        name,
        agent_addr: "10.0.0.1:7443",
        api_addr: "10.0.0.1:8080",
        version,
        stats,
    }
}

fn heartbeats_record_nodes(f: &Fixture) {
    let mut s = f.open();
    assert!(s.nodes().expect("none").is_empty());
    let (three, five) = (json!({"agents": 3}), json!({"agents": 5}));
    s.heartbeat(&node("n2", "0.1.0", &three), T0).expect("n2");
    s.heartbeat(&node("n1", "0.1.0", &three), T0 + 1)
        .expect("n1");
    s.heartbeat(&node("n2", "0.2.0", &five), T0 + 10)
        .expect("n2 again");
    let nodes = s.nodes().expect("nodes");
    assert_eq!(
        nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["n1", "n2"]
    );
    assert_eq!(
        nodes[1],
        NodeRow {
            name: "n2".into(),
            agent_addr: "10.0.0.1:7443".into(),
            api_addr: "10.0.0.1:8080".into(),
            version: "0.2.0".into(),
            started_ns: T0,
            heartbeat_ns: T0 + 10,
            stats: json!({"agents": 5}),
        }
    );
    assert!(s.forget_node("n1").expect("forget"));
    assert!(!s.forget_node("n1").expect("again"));
    assert_eq!(s.nodes().expect("nodes").len(), 1);
}

fn agents_are_on_the_node_they_last_connected_to(f: &Fixture) {
    let mut s = store_with_h1(f);
    assert!(matches!(
        s.agent_connected("nobody", "n1", T0),
        Err(StoreError::UnknownAgent(_))
    ));
    s.agent_connected("h1-agent", "n1", T0 + 1).expect("n1");
    let h = s.host("h1-agent").expect("host").expect("h1");
    assert_eq!(
        (h.node.as_deref(), h.connected_ns),
        (Some("n1"), Some(T0 + 1))
    );
    // It reconnects to n2 before n1 noticed it went: n1's late disconnect is ignored.
    s.agent_connected("h1-agent", "n2", T0 + 2).expect("n2");
    s.agent_disconnected("h1-agent", "n1").expect("late");
    let h = s.host("h1-agent").expect("host").expect("h1");
    assert_eq!(
        (h.node.as_deref(), h.connected_ns),
        (Some("n2"), Some(T0 + 2))
    );
    s.agent_disconnected("h1-agent", "n2").expect("gone");
    let h = s.host("h1-agent").expect("host").expect("h1");
    assert_eq!((h.node, h.connected_ns), (None, None));
    s.agent_disconnected("nobody", "n2")
        .expect("unknown is fine");
    // Forgetting a node forgets its agents' connections.
    s.agent_connected("h1-agent", "n3", T0 + 3).expect("n3");
    s.heartbeat(
        &NodeInfo {
            name: "n3",
            stats: &json!({}),
            ..NodeInfo::default()
        },
        T0,
    )
    .expect("n3");
    assert!(s.forget_node("n3").expect("forget"));
    assert_eq!(s.host("h1-agent").expect("host").expect("h1").node, None);
}

both!(
    a_lease_has_one_holder_renews_expires_and_is_released,
    one_of_many_racing_owners_gets_a_lease,
    heartbeats_record_nodes,
    agents_are_on_the_node_they_last_connected_to,
);
