//! Three collector nodes on PostgreSQL and Kafka, three hosts with real agents under
//! continuous load (each host connects to the next one's server 25 times a second). One
//! node is killed (SIGKILL), then another, then both are restarted: every agent fails over
//! to a live node, and at the end the stored flows are exactly what the load generators
//! counted as answered — nothing lost, nothing stored twice. Then an isolation sent
//! through one node takes effect on an agent connected to another (whose first node had
//! died), and traffic really stops.
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use cordon_tests::{
    cluster_lab::{ClusterLab, log_text},
    fleet::FleetHost,
    interrupt, servers_py, wait_for, wait_until,
};

const PORT: u16 = 9000;
const RATE: &str = "25";

/// Node index → how many hosts are on it.
fn load_by_node(lab: &ClusterLab, via: usize) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (_, node) in lab.placement(via) {
        *m.entry(node).or_default() += 1;
    }
    m
}

fn node_index(lab: &ClusterLab, name: &str) -> usize {
    lab.nodes
        .iter()
        .position(|n| n.name == name)
        .expect("a lab node")
}

/// Kills the live node with the most agents; returns its index and how long until no host
/// is recorded on it any more and every host is on a live node (asked of another node).
fn kill_busiest(lab: &mut ClusterLab) -> (usize, Duration) {
    let live: Vec<usize> = (0..lab.nodes.len())
        .filter(|i| lab.nodes[*i].pid.is_some())
        .collect();
    let load = load_by_node(lab, live[0]);
    let (busiest, n) = load
        .iter()
        .filter(|(name, _)| lab.nodes[node_index(lab, name)].pid.is_some())
        .max_by_key(|(_, n)| **n)
        .map(|(name, n)| (name.clone(), *n))
        .expect("a node with agents");
    let victim = node_index(lab, &busiest);
    let via = *live
        .iter()
        .find(|i| **i != victim)
        .expect("another live node");
    eprintln!("killing {busiest} (it has {n} agents); placement {load:?}");
    let start = Instant::now();
    lab.kill_node(victim);
    let hosts = lab.fleet.hosts.len();
    wait_until(
        "every agent off the killed node",
        Duration::from_secs(30),
        || {
            let p = lab.placement(via);
            (p.len() == hosts && p.iter().all(|(_, node)| *node != busiest)).then_some(())
        },
    );
    let took = start.elapsed();
    eprintln!("agents of {busiest} reconnected elsewhere {took:?} after the kill");
    (victim, took)
}

fn count(lab: &ClusterLab, sql: &str) -> i64 {
    lab.sql_row(sql)[0]
}

/// Start records the agent of `host` stored for the load: its outbound ones to `to`'s
/// server and the inbound ones `from` opened to its own server.
fn stored(lab: &ClusterLab, host: &FleetHost, to: &FleetHost, from: &FleetHost) -> (i64, i64) {
    let base = format!(
        "SELECT count(*) FROM flows f JOIN hosts h ON h.id = f.host_id \
         WHERE h.host_name = '{}' AND f.event = 'start' AND f.proto = 'tcp'",
        host.name
    );
    (
        count(
            lab,
            &format!(
                "{base} AND f.direction = 'outbound' AND f.remote_ip = '{}' AND f.remote_port = {PORT}",
                to.ip
            ),
        ),
        count(
            lab,
            &format!(
                "{base} AND f.direction = 'inbound' AND f.remote_ip = '{}' AND f.local_port = {PORT}",
                from.ip
            ),
        ),
    )
}

#[test]
fn three_nodes_lose_and_double_nothing_while_two_die_and_route_commands_across_nodes() {
    let mut lab = ClusterLab::new(
        "cluster-failover",
        3,
        3,
        |_| "[alerts]\nrepublish_secs = 0\n".into(),
        |_| String::new(),
    );
    lab.start_all();
    lab.enroll_all(0);
    let hosts: Vec<FleetHost> = lab.fleet.hosts.clone();
    let agents: Vec<_> = hosts.iter().map(|h| lab.start_agent(h, 1)).collect();
    let (_, placed) = lab.wait_all_placed(0, Duration::from_secs(30));
    eprintln!("placement at start: {placed:?}");
    let nodes_used: std::collections::BTreeSet<_> = placed.iter().map(|(_, n)| n).collect();
    assert!(
        nodes_used.len() > 1,
        "agents must spread over the nodes, not all on one: {placed:?}"
    );

    let py = servers_py();
    for h in &hosts {
        let log = lab.dir.join(format!("serve-{}.log", h.name));
        lab.fleet.start_server(
            &h.ns,
            Some(&h.cgroup),
            &["python3", &py, "tcp-serve", &h.ip, &PORT.to_string()],
            &log,
        );
    }
    // h1 → h2 → h3 → h1.
    let n = hosts.len();
    let mut loads = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let to = &hosts[(i + 1) % n];
        let log = lab.dir.join(format!("load-{}.log", h.name));
        let pid = lab.fleet.spawn(
            &h.ns,
            Some(&h.cgroup),
            &["python3", &py, "tcp-load", &to.ip, &PORT.to_string(), RATE],
            &log,
        );
        wait_for(&log, "ready", Duration::from_secs(10));
        loads.push((pid, log));
    }
    std::thread::sleep(Duration::from_secs(5));

    // Kill the busiest node, then the busiest of the two left.
    let (dead1, took1) = kill_busiest(&mut lab);
    std::thread::sleep(Duration::from_secs(5));
    let (dead2, took2) = kill_busiest(&mut lab);
    let last = (0..lab.nodes.len())
        .find(|i| lab.nodes[*i].pid.is_some())
        .expect("the last live node");
    std::thread::sleep(Duration::from_secs(5));
    for d in [dead1, dead2] {
        lab.spawn_node(d);
        lab.wait_node(d);
    }
    std::thread::sleep(Duration::from_secs(5));

    // Stop the load; every answered connection must be stored, once, on both ends.
    let mut accepted = Vec::new();
    for (pid, log) in &loads {
        interrupt(*pid);
        wait_for(log, "accepted", Duration::from_secs(10));
        let text = log_text(log);
        let line = text
            .lines()
            .rfind(|l| l.starts_with("accepted"))
            .unwrap_or("");
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (ok, failed): (i64, i64) = (
            parts[1].parse().expect("accepted count"),
            parts[3].parse().expect("failed count"),
        );
        assert_eq!(failed, 0, "the load itself failed: {line}");
        accepted.push(ok);
    }
    eprintln!("load generators: {accepted:?} answered connections");
    let expected: Vec<(i64, i64)> = (0..n)
        .map(|i| (accepted[i], accepted[(i + n - 1) % n]))
        .collect();
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < Duration::from_secs(90) {
        seen = (0..n)
            .map(|i| {
                stored(
                    &lab,
                    &hosts[i],
                    &hosts[(i + 1) % n],
                    &hosts[(i + n - 1) % n],
                )
            })
            .collect();
        if seen == expected {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("stored (outbound, inbound) per host: {seen:?}, expected {expected:?}");
    assert_eq!(
        seen, expected,
        "stored start records must equal the answered connections exactly"
    );
    let dups = lab.sql_row(
        "SELECT count(*), count(DISTINCT (host_id, event, direction, local_ip, local_port, \
         remote_ip, remote_port, first_seen_ns)) FROM flows",
    );
    assert_eq!(dups[0], dups[1], "a flow record was stored twice: {dups:?}");

    // An isolation through a restarted node reaches an agent connected to another node.
    let placement = lab.placement(dead1);
    let (target, on) = placement
        .iter()
        .find(|(_, node)| node_index(&lab, node) != dead1)
        .cloned()
        .expect("a host on another node than the one asked");
    eprintln!(
        "isolating {target} (on {on}) through {}",
        lab.nodes[dead1].name
    );
    let victim = hosts
        .iter()
        .find(|h| h.name == target)
        .expect("host")
        .clone();
    let peer = hosts
        .iter()
        .find(|h| h.name != target)
        .expect("peer")
        .clone();
    assert!(
        lab.fleet.http_get(&victim, &peer, PORT, "curl"),
        "before isolation"
    );
    let t = Instant::now();
    let out = lab.cordon_raw(dead1, &["isolate", &target, "--reason", "cluster lab"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("the isolation carried out", Duration::from_secs(10), || {
        let c = lab.cordon(dead1, &["commands", "--host", &target, "--json"]);
        c.as_array()
            .and_then(|a| a.first())
            .filter(|c| c["kind"] == "isolate" && c["state"] == "done")
            .map(|_| ())
    });
    let routed = t.elapsed();
    eprintln!(
        "isolate via {} done by the agent on {on} in {routed:?}",
        lab.nodes[dead1].name
    );
    assert!(
        !lab.fleet.http_get(&victim, &peer, PORT, "curl"),
        "traffic from the isolated host must fail"
    );
    let audit = lab.cordon(last, &["audit", "--json"]);
    assert!(
        audit
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["action"] == "isolate.done" && a["target"] == target.as_str()),
        "the isolation's audit row is visible from every node: {audit}"
    );
    let out = lab.cordon_raw(last, &["release", &target]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("traffic again", Duration::from_secs(15), || {
        lab.fleet
            .http_get(&victim, &peer, PORT, "curl")
            .then_some(())
    });
    eprintln!(
        "failover: {took1:?} and {took2:?} from kill to every agent on a live node; \
         command routed across nodes in {routed:?}"
    );
    assert!(
        took1 < Duration::from_secs(5) && took2 < Duration::from_secs(5),
        "agents must be on a live node within 5 s of a node's death: {took1:?}, {took2:?}"
    );
    for (pid, log) in &agents {
        cordon_tests::cluster::stop_agent(*pid, log, false);
    }
}
