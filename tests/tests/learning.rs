//! Learning in the fleet lab (root): six hosts in three tiers (web h1-h2, app h3-h4, db
//! h5-h6) exchange real traffic (web → app on tcp/8080, app → db on tcp/5432); `cordon
//! learn` turns it into a draft policy, which is published; a fresh round of the same
//! benign traffic gives no escaped flow, and a lateral connection (web → db directly) is
//! escaped and alerted.
use std::time::Duration;

use cordon_tests::{cluster::Cluster, fleet::FleetHost, servers_py, wait_until};
use serde_json::Value;

fn curl(c: &Cluster, from: &FleetHost, to: &FleetHost, port: u16) -> bool {
    c.fleet.http_get(from, to, port, "curl")
}

/// One round of the tiers' normal traffic.
fn benign_round(c: &Cluster) {
    let h = |n: &str| c.fleet.host(n);
    for (web, app) in [("h1", "h3"), ("h1", "h4"), ("h2", "h3"), ("h2", "h4")] {
        assert!(curl(c, h(web), h(app), 8080), "{web} -> {app}:8080");
    }
    for (app, db) in [("h3", "h5"), ("h3", "h6"), ("h4", "h5"), ("h4", "h6")] {
        assert!(curl(c, h(app), h(db), 5432), "{app} -> {db}:5432");
    }
}

fn escaped(c: &Cluster, since: &str) -> Vec<Value> {
    let f = c.cordon(&["flows", "--verdict", "escaped", "--since", since, "--json"]);
    f.as_array().cloned().unwrap_or_default()
}

#[test]
fn learned_policy_passes_benign_traffic_and_catches_a_lateral_connection() {
    let c = Cluster::start("learning", 6, "[alerts]\nrepublish_secs = 0\n");
    c.enroll_all();
    let hosts: Vec<FleetHost> = (1..=6)
        .map(|i| c.fleet.host(&format!("h{i}")).clone())
        .collect();
    let agents: Vec<_> = hosts.iter().map(|h| c.start_agent(h, 1)).collect();
    let py = servers_py();
    for (h, port) in [
        ("h3", "8080"),
        ("h4", "8080"),
        ("h5", "5432"),
        ("h6", "5432"),
    ] {
        let host = c.fleet.host(h);
        c.fleet.start_server(
            &host.ns,
            Some(&host.cgroup),
            &["python3", &py, "tcp-serve", &host.ip, port],
            &c.dir.join(format!("server-{h}.log")),
        );
    }
    for _ in 0..3 {
        benign_round(&c);
    }
    // Every training flow stored (both ends report each connection).
    wait_until("the training flows", Duration::from_secs(20), || {
        let f = c.cordon(&["flows", "--since", "10m", "--limit", "10000", "--json"]);
        (f.as_array()?.len() >= 48).then_some(())
    });

    let learned = c.cordon(&["learn", "--since", "10m", "--json"]);
    let version = learned["version"].as_i64().expect("the draft's version");
    let clusters = learned["clusters"].as_array().cloned().unwrap_or_default();
    assert_eq!(clusters.len(), 3, "three tiers: {learned}");
    c.cordon(&["policy", "publish", &version.to_string()]);

    std::thread::sleep(Duration::from_secs(1));
    // Flows stored before the publish have no verdict: only the fresh round can escape.
    let t = "10m";
    benign_round(&c);
    std::thread::sleep(Duration::from_secs(2));
    let esc = escaped(&c, t);
    assert!(
        esc.is_empty(),
        "benign traffic escaped the learned policy: {esc:?}"
    );

    // Lateral: web → db directly.
    let (h1, h5) = (c.fleet.host("h1"), c.fleet.host("h5"));
    assert!(curl(&c, h1, h5, 5432));
    let alert = wait_until("the lateral alert", Duration::from_secs(15), || {
        let a = c.cordon(&["alerts", "--json"]);
        a.as_array()?
            .iter()
            .find(|a| {
                let d = &a["alert"]["alert_details_json"];
                d["host"]["name"] == "h1" && d["flow"]["remote_port"] == 5432
            })
            .cloned()
    });
    assert!(alert.to_string().contains("escaped"), "{alert}");
    for (pid, log) in agents {
        cordon_tests::cluster::stop_agent(pid, &log, false);
    }
}
