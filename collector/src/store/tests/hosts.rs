//! Hosts: connections, lookups by id or name, revocation, inventories, labels and the
//! facts policies match on.
use std::collections::BTreeMap;

use cordon_wire::{Interface, Inventory, Message};

use super::*;
use crate::store::*;

fn inventory(name: &str, addresses: &[&str]) -> Vec<u8> {
    let inv = Inventory {
        host_name: name.into(),
        os: "linux".into(),
        kernel: "6.18".into(),
        cpus: 2,
        memory_bytes: 1 << 30,
        interfaces: vec![Interface {
            name: "eth0".into(),
            addresses: addresses.iter().map(|a| a.parse().expect("ip")).collect(),
        }],
        listening: vec![],
    };
    cordon_wire::encode(&Message::Inventory(inv))
        .expect("encode")
        .to_vec()
}

fn hosts_are_recorded_and_found_by_id_or_unique_name(f: &Fixture) {
    let mut s = f.open();
    assert!(s.hosts().expect("hosts").is_empty());
    let (id1, seq) = s
        .host_connected("a-agent", "web", "0.1.0", "ebpf", T0)
        .expect("a");
    assert_eq!(seq, 0);
    let (id2, _) = s
        .host_connected("b-agent", "db", "0.1.0", "procfs", T0 + 1)
        .expect("b");
    assert_ne!(id1, id2);
    // A reconnect keeps the id and first-seen time, updates the rest.
    let (again, _) = s
        .host_connected("a-agent", "web", "0.2.0", "procfs", T0 + 10)
        .expect("a again");
    assert_eq!(again, id1);
    let a = s.host("a-agent").expect("lookup").expect("a");
    assert_eq!(
        a,
        HostRow {
            id: "a-agent".into(),
            host_name: "web".into(),
            agent_version: "0.2.0".into(),
            capture: "procfs".into(),
            first_seen_ns: T0,
            last_seen_ns: T0 + 10,
            last_seq: 0,
            revoked: false,
            inventory_updated_ns: None,
            isolated: false,
            isolated_since_ns: None,
            isolated_by: None,
            isolation_reason: None,
            isolation_expires_ns: None,
            enforcement_backend: None,
            node: None,
            connected_ns: None,
        }
    );
    assert_eq!(s.host("db").expect("by name").expect("b").id, "b-agent");
    assert!(s.host("nope").expect("unknown").is_none());
    // A name two hosts share finds neither.
    s.host_connected("c-agent", "db", "0.1.0", "ebpf", T0)
        .expect("c");
    assert!(s.host("db").expect("ambiguous").is_none());
    // By name, then id; byte order like SQLite's (upper case first).
    s.host_connected("d-agent", "Zed", "0.1.0", "ebpf", T0)
        .expect("d");
    let names: Vec<(String, String)> = s
        .hosts()
        .expect("hosts")
        .into_iter()
        .map(|h| (h.host_name, h.id))
        .collect();
    let expect = [
        ("Zed", "d-agent"),
        ("db", "b-agent"),
        ("db", "c-agent"),
        ("web", "a-agent"),
    ];
    assert_eq!(
        names,
        expect.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
    );
}

fn revoked_agents_are_refused(f: &Fixture) {
    let mut s = f.open();
    s.host_connected("a-agent", "web", "0.1.0", "ebpf", T0)
        .expect("a");
    assert!(!s.is_revoked("a-agent").expect("not yet"));
    assert!(!s.is_revoked("nobody").expect("unknown"));
    assert!(s.revoke("a-agent").expect("revoke"));
    assert!(!s.revoke("nobody").expect("revoke unknown"));
    assert!(f.open().is_revoked("a-agent").expect("revoked"));
    assert!(s.host("a-agent").expect("a").expect("a").revoked);
}

fn inventories_are_kept_and_give_host_addresses(f: &Fixture) {
    let mut s = f.open();
    s.host_connected("a-agent", "web", "0.1.0", "ebpf", T0)
        .expect("a");
    s.host_connected("b-agent", "db", "0.1.0", "ebpf", T0)
        .expect("b");
    assert!(s.inventory("a-agent").expect("none").is_none());
    assert!(matches!(
        s.store_inventory("nobody", &inventory("x", &[]), T0),
        Err(StoreError::UnknownAgent(_))
    ));
    s.store_inventory("a-agent", &inventory("web", &["10.0.0.1", "127.0.0.1"]), T0)
        .expect("a");
    s.store_inventory(
        "a-agent",
        &inventory("web", &["10.0.0.5", "fe80::1"]),
        T0 + 5,
    )
    .expect("a again");
    s.store_inventory(
        "b-agent",
        &inventory("db", &["10.0.0.2", "169.254.1.1"]),
        T0,
    )
    .expect("b");
    let inv = s.inventory("a-agent").expect("inv").expect("some");
    assert_eq!(inv.interfaces[0].addresses.len(), 2);
    assert_eq!(inv.kernel, "6.18");
    assert_eq!(
        s.host("a-agent")
            .expect("a")
            .expect("a")
            .inventory_updated_ns,
        Some(T0 + 5)
    );
    // Not loopback, not link-local; the latest inventory only.
    let addrs = s.host_addresses().expect("addresses");
    let mut got: Vec<(String, String)> = addrs
        .iter()
        .map(|(ip, id)| (ip.to_string(), id.clone()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("10.0.0.2".to_string(), "b-agent".to_string()),
            ("10.0.0.5".to_string(), "a-agent".to_string())
        ]
    );
}

fn labels_are_set_removed_and_matched_on(f: &Fixture) {
    let mut s = f.open();
    s.host_connected("a-agent", "web", "0.1.0", "ebpf", T0)
        .expect("a");
    s.host_connected("b-agent", "db", "0.1.0", "ebpf", T0)
        .expect("b");
    assert!(!s.set_label("nobody", "env", Some("prod")).expect("unknown"));
    assert!(s.set_label("a-agent", "env", Some("dev")).expect("set"));
    assert!(
        s.set_label("a-agent", "env", Some("prod"))
            .expect("replace")
    );
    assert!(s.set_label("a-agent", "Tier", Some("web")).expect("set"));
    assert!(s.set_label("a-agent", "gone", Some("x")).expect("set"));
    assert!(s.set_label("a-agent", "gone", None).expect("remove"));
    assert!(
        s.set_label("a-agent", "never", None)
            .expect("remove absent")
    );
    let labels = s.labels("a-agent").expect("labels");
    assert_eq!(
        labels.into_iter().collect::<Vec<_>>(),
        vec![
            ("Tier".to_string(), "web".to_string()),
            ("env".to_string(), "prod".to_string())
        ]
    );
    assert!(s.labels("nobody").expect("none").is_empty());
    let facts = s.host_facts().expect("facts");
    assert_eq!(facts.len(), 2);
    assert_eq!(facts["a-agent"].0, "web");
    assert_eq!(
        facts["a-agent"].1.get("env").map(String::as_str),
        Some("prod")
    );
    assert_eq!(facts["b-agent"], ("db".to_string(), BTreeMap::new()));
}

fn text_with_nul_bytes_is_stored(f: &Fixture) {
    // SQLite keeps NUL in TEXT, PostgreSQL cannot: an agent's odd string must not fail
    // the whole group commit there.
    let mut s = f.open();
    s.host_connected("a-agent", "we\0b", "0.1\0", "ebpf", T0)
        .expect("a");
    let mut r = rec(cordon_wire::FlowEvent::Start, 443, "/usr/bin/cu\0rl", T0);
    if let Some(p) = r.process.as_mut() {
        p.cmdline = Some("curl\0x\0".into());
        p.comm = "cu\0".into();
    }
    assert_eq!(
        s.store_batch("a-agent", &batch(1, vec![r])).expect("store"),
        Stored::New { records: 1 }
    );
    let flows = s.flows(&FlowFilter::default()).expect("flows");
    assert_eq!(flows.len(), 1);
    let exe = flows[0].exe.clone().expect("exe");
    assert!(
        exe.starts_with("/usr/bin/cu") && exe.ends_with("rl"),
        "{exe:?}"
    );
    assert_eq!(s.conversations("a-agent").expect("edges").len(), 1);
}

both!(
    hosts_are_recorded_and_found_by_id_or_unique_name,
    revoked_agents_are_refused,
    inventories_are_kept_and_give_host_addresses,
    labels_are_set_removed_and_matched_on,
    text_with_nul_bytes_is_stored,
);
