//! A cluster without its database: a node that cannot reach PostgreSQL at start says so
//! and exits non-zero; nodes that lose it while running stop acknowledging agents (which
//! keep their batches in their spools) and recover by themselves when it is back — and
//! then every connection the load generator had answered is stored, once.
use std::time::{Duration, Instant};

use cordon_tests::{
    agent::collector_bin,
    cluster_lab::{ClusterLab, log_text},
    interrupt, servers_py, wait_for, wait_until,
};

const PORT: u16 = 9000;

#[test]
fn nodes_stop_acknowledging_without_postgres_and_lose_nothing_when_it_returns() {
    let mut lab = ClusterLab::new("cluster-outage", 2, 2, |_| String::new(), |_| String::new());

    // A node whose database is not there refuses to start, naming it.
    let bad = lab.dir.join("bad.toml");
    let good = std::fs::read_to_string(&lab.nodes[0].cfg).expect("config");
    std::fs::write(&bad, good.replace("port=55432", "port=55433")).expect("bad config");
    let t = Instant::now();
    let out = lab.fleet.run(
        &lab.fleet.collector_ns,
        &[&collector_bin(), "run", "--config", &bad.to_string_lossy()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it must exit non-zero: {err}");
    assert!(
        err.contains("PostgreSQL") && err.contains("55433"),
        "the error names the database: {err}"
    );
    assert!(!err.contains(&lab.pg_password), "never the password: {err}");
    eprintln!(
        "a node without its database exits in {:?}: {}",
        t.elapsed(),
        err.trim()
    );

    lab.start_all();
    lab.enroll_all(0);
    let (h1, h2) = (lab.fleet.host("h1").clone(), lab.fleet.host("h2").clone());
    let agents: Vec<_> = [&h1, &h2].iter().map(|h| lab.start_agent(h, 1)).collect();
    lab.wait_all_placed(0, Duration::from_secs(30));
    let py = servers_py();
    lab.fleet.start_server(
        &h2.ns,
        Some(&h2.cgroup),
        &["python3", &py, "tcp-serve", &h2.ip, &PORT.to_string()],
        &lab.dir.join("serve.log"),
    );
    let load_log = lab.dir.join("load.log");
    let load = lab.fleet.spawn(
        &h1.ns,
        Some(&h1.cgroup),
        &["python3", &py, "tcp-load", &h2.ip, &PORT.to_string(), "20"],
        &load_log,
    );
    wait_for(&load_log, "ready", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(3));

    lab.pg.stop();
    let down = Instant::now();
    for i in 0..lab.nodes.len() {
        wait_for(
            &lab.node_log(i),
            "the store does not answer",
            Duration::from_secs(15),
        );
    }
    eprintln!("both nodes noticed in {:?}", down.elapsed());
    // While it is away the agents keep what they cannot get acknowledged.
    std::thread::sleep(Duration::from_secs(5));
    lab.pg.resume();
    let back = Instant::now();
    for i in 0..lab.nodes.len() {
        wait_for(
            &lab.node_log(i),
            "the store answers again",
            Duration::from_secs(30),
        );
    }
    eprintln!(
        "both nodes recovered {:?} after the database came back",
        back.elapsed()
    );
    std::thread::sleep(Duration::from_secs(3));
    interrupt(load);
    wait_for(&load_log, "accepted", Duration::from_secs(10));
    let text = log_text(&load_log);
    let line = text
        .lines()
        .rfind(|l| l.starts_with("accepted"))
        .unwrap_or("");
    let parts: Vec<&str> = line.split_whitespace().collect();
    let accepted: i64 = parts[1].parse().expect("accepted");
    assert_eq!(parts[3], "0", "the load failed: {line}");

    let count = |host: &str, dir: &str, port_col: &str| {
        lab.sql_row(&format!(
            "SELECT count(*) FROM flows f JOIN hosts h ON h.id = f.host_id \
             WHERE h.host_name = '{host}' AND f.event = 'start' AND f.direction = '{dir}' \
             AND f.{port_col} = {PORT}"
        ))[0]
    };
    let stored = wait_until(
        "every answered connection stored",
        Duration::from_secs(90),
        || {
            let s = (
                count("h1", "outbound", "remote_port"),
                count("h2", "inbound", "local_port"),
            );
            (s == (accepted, accepted)).then_some(s)
        },
    );
    eprintln!("{accepted} answered connections, stored {stored:?}");
    let dups = lab.sql_row(
        "SELECT count(*), count(DISTINCT (host_id, event, direction, local_ip, local_port, \
         remote_ip, remote_port, first_seen_ns)) FROM flows",
    );
    assert_eq!(dups[0], dups[1], "a record was stored twice: {dups:?}");
    // The agents held their batches meanwhile: their connections were refused or closed.
    let refused: usize = (0..lab.nodes.len())
        .map(|i| {
            log_text(&lab.node_log(i))
                .matches("not acknowledging")
                .count()
        })
        .sum();
    assert!(
        refused > 0,
        "the nodes refused to acknowledge while the store was away"
    );
    for (pid, log) in &agents {
        cordon_tests::cluster::stop_agent(*pid, log, false);
    }
}
