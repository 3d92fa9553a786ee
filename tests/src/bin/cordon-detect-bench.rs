//! Detection latency: in the fleet lab (root), with a published policy that allows
//! nothing from h2 to h1 but tcp/8080, a process on h2 connects to a new port of h1 each
//! time; the time from just before the connect to the alert's arrival on the Kafka
//! broker (tansu, read by a consumer) and at the Splunk HEC stand-in (indexer acks on)
//! is measured for every violation.
//!
//!   cordon-detect-bench [--violations 100]
use std::time::{Duration, Instant};

use clap::Parser;
use cordon_tests::{
    cluster::{Cluster, stop_agent},
    detect_probe::{KafkaAlerts, POLICY, poll, report, violate},
    hec_standin::HecStandin,
    in_netns,
    kafka_broker::Broker,
};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100)]
    violations: u16,
    /// Pause between violations, in milliseconds.
    #[arg(long, default_value_t = 100)]
    gap_ms: u64,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mut hec = None;
    let mut broker = None;
    let c = Cluster::start_with("detect-bench", 2, |fleet| {
        let s = in_netns(&fleet.collector_ns, || {
            HecStandin::start("bench-token", true)
        });
        let k = in_netns(&fleet.collector_ns, Broker::start);
        let extra = format!(
            "[alerts]\nrepublish_secs = 0\n[outputs.hec]\nurl = \"{}\"\ntoken = \"bench-token\"\nuse_ack = true\nack_poll_ms = 20\n[outputs.kafka]\nbrokers = [\"{}\"]\n",
            s.url(),
            k.bootstrap()
        );
        hec = Some(s);
        broker = Some(k);
        extra
    });
    let hec = hec.ok_or_else(|| anyhow::anyhow!("no stand-in"))?;
    let broker = broker.ok_or_else(|| anyhow::anyhow!("no broker"))?;
    // Arrival time on Kafka of each alert, by the violating port.
    let on_kafka = KafkaAlerts::follow(&broker, &c.fleet.collector_ns, "h2");
    c.enroll_all();
    let (h1, h2) = (c.fleet.host("h1"), c.fleet.host("h2"));
    let agents: Vec<_> = [h1, h2].iter().map(|h| c.start_agent(h, 1)).collect();
    c.cordon(&["hosts", "label", "h1", "role=web"]);
    c.cordon(&["hosts", "label", "h2", "role=client"]);
    let file = c.dir.join("policy.yaml");
    std::fs::write(&file, POLICY)?;
    c.cordon(&["policy", "apply", &file.to_string_lossy()]);
    c.cordon(&["policy", "publish", "1"]);
    let mut lat = Vec::new();
    let mut kafka_lat = Vec::new();
    for i in 0..a.violations {
        let port = 20_000 + i;
        let start = Instant::now();
        violate(&c.fleet, h2, &h1.ip, port);
        let found = poll(start, || {
            hec.events()
                .iter()
                .any(|e| {
                    let d = &e["event"]["alert_details_json"];
                    d["host"]["name"] == "h2" && d["flow"]["remote_port"] == port
                })
                .then(|| start.elapsed())
        });
        match found {
            Some(d) => lat.push(d),
            None => eprintln!("violation {i} (port {port}): no alert at HEC within 10 s"),
        }
        let on_broker = on_kafka.wait(port, start);
        match on_broker {
            Some(d) => kafka_lat.push(d),
            None => eprintln!("violation {i} (port {port}): no alert on Kafka within 10 s"),
        }
        std::thread::sleep(Duration::from_millis(a.gap_ms));
    }
    for (pid, log) in agents {
        stop_agent(pid, &log, false);
    }
    drop(on_kafka);
    let missed = report(
        "connect() on h2 → alert read by a consumer from the Kafka broker",
        kafka_lat,
        a.violations,
    ) + report(
        "connect() on h2 → alert accepted and acked by HEC",
        lat,
        a.violations,
    );
    if missed > 0 {
        anyhow::bail!("{missed} alerts did not arrive");
    }
    Ok(())
}
