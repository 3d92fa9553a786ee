//! Detection latency in a cluster (root): the cluster lab (`cordon_tests::cluster_lab`)
//! with 3 collector nodes on PostgreSQL and Kafka, and 2 hosts with real agents that know
//! every node. Every node has the Kafka alert output (`[outputs.kafka]`, the lab's broker);
//! it runs on whichever node holds its lease. With a published policy that allows nothing
//! from h2 to h1 but tcp/8080, a process on h2 connects to a new port of h1 each time; the
//! time from just before the connect to the alert's arrival on the broker (read by a
//! consumer that follows the alerts topic) is measured for every violation. The path
//! crosses nodes: the agent's node appends the batch to the flow stream, the worker that
//! owns the agent's partition judges it and writes the alert to the outbox in PostgreSQL,
//! and the node holding the output's lease is woken (LISTEN/NOTIFY) and publishes it.
//!
//!   cordon-cluster-detect-bench [--violations 100] [--gap-ms 100]
use std::{
    fs::OpenOptions,
    io::Write,
    time::{Duration, Instant},
};

use clap::Parser;
use cordon_tests::{
    cluster::stop_agent,
    cluster_lab::ClusterLab,
    detect_probe::{KafkaAlerts, POLICY, report, violate},
};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100)]
    violations: u16,
    /// Pause between violations, in milliseconds.
    #[arg(long, default_value_t = 100)]
    gap_ms: u64,
    /// Collector nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mut lab = ClusterLab::new(
        "cluster-detect-bench",
        2,
        a.nodes,
        |_| "[alerts]\nrepublish_secs = 0\n".into(),
        |_| String::new(),
    );
    // The alert output on every node, to the lab's broker.
    for n in &lab.nodes {
        let mut f = OpenOptions::new().append(true).open(&n.cfg)?;
        write!(
            f,
            "\n[outputs.kafka]\nbrokers = [\"{}\"]\n",
            lab.broker.bootstrap()
        )?;
    }
    lab.start_all();
    lab.enroll_all(0);
    // Arrival time on Kafka of each alert, by the violating port.
    let on_kafka = KafkaAlerts::follow(&lab.broker, &lab.fleet.collector_ns, "h2");
    let (h1, h2) = (lab.fleet.host("h1").clone(), lab.fleet.host("h2").clone());
    let agents: Vec<_> = [&h1, &h2].iter().map(|h| lab.start_agent(h, 1)).collect();
    let (_, placed) = lab.wait_all_placed(0, Duration::from_secs(30));
    lab.cordon(0, &["hosts", "label", "h1", "role=web"]);
    lab.cordon(0, &["hosts", "label", "h2", "role=client"]);
    let file = lab.dir.join("policy.yaml");
    std::fs::write(&file, POLICY)?;
    lab.cordon(0, &["policy", "apply", &file.to_string_lossy()]);
    lab.cordon(0, &["policy", "publish", "1"]);
    // Every node rebuilds its policy context on the notification; give them a moment.
    std::thread::sleep(Duration::from_secs(2));
    let mut lat = Vec::new();
    for i in 0..a.violations {
        let port = 20_000 + i;
        let start = Instant::now();
        violate(&lab.fleet, &h2, &h1.ip, port);
        let on_broker = on_kafka.wait(port, start);
        match on_broker {
            Some(d) => lat.push(d),
            None => eprintln!("violation {i} (port {port}): no alert on Kafka within 10 s"),
        }
        std::thread::sleep(Duration::from_millis(a.gap_ms));
    }
    // Which node published: the holder of the Kafka output's lease (n1, n2, …).
    let lease = lab.sql_row(
        "SELECT coalesce(max(substring(owner from 2)::bigint), 0) FROM leases \
         WHERE name = 'output.kafka'",
    )[0];
    for (pid, log) in agents {
        stop_agent(pid, &log, false);
    }
    drop(on_kafka);
    println!("agents on: {placed:?}; the Kafka output's lease held by n{lease}");
    let missed = report(
        &format!(
            "{} nodes, connect() on h2 → alert read by a consumer from the Kafka broker",
            a.nodes
        ),
        lat,
        a.violations,
    );
    if missed > 0 {
        anyhow::bail!("{missed} alerts did not arrive");
    }
    Ok(())
}
