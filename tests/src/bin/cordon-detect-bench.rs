//! Detection latency: in the fleet lab (root), with a published policy that allows
//! nothing from h2 to h1 but tcp/8080, a process on h2 connects to a new port of h1 each
//! time; the time from just before the connect to the alert's arrival on the Kafka
//! broker (tansu, read by a consumer) and at the Splunk HEC stand-in (indexer acks on)
//! is measured for every violation.
//!
//!   cordon-detect-bench [--violations 100]
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Parser;
use cordon_tests::{
    cluster::{Cluster, stop_agent},
    hec_standin::HecStandin,
    in_netns,
    kafka_broker::{ALERTS_TOPIC, Broker},
};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100)]
    violations: u16,
    /// Pause between violations, in milliseconds.
    #[arg(long, default_value_t = 100)]
    gap_ms: u64,
}

const POLICY: &str = "name: bench\ngroups:\n  web:\n    label: {role: web}\n  clients:\n    label: {role: client}\nrules:\n  - name: clients-to-web\n    consumer: clients\n    provider: web\n    ports: [tcp/8080]\n    action: allow\ncatch_all:\n  - action: deny\n    severity: HIGH\n";

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
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
    let on_kafka: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let follower = {
        let (seen, stop) = (on_kafka.clone(), stop.clone());
        in_netns(&c.fleet.collector_ns, || {
            broker.follow(ALERTS_TOPIC, stop, move |_, v| {
                let now = Instant::now();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(v) {
                    let d = &v["event"]["alert_details_json"];
                    if d["host"]["name"] == "h2"
                        && let Some(p) = d["flow"]["remote_port"].as_u64()
                        && let Ok(mut m) = seen.lock()
                    {
                        m.entry(p).or_insert(now);
                    }
                }
            })
        })
    };
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
        // Nothing listens there: the SYN goes out and is refused; the attempt is the flow.
        let _ = c.fleet.run_in(
            &h2.ns,
            Some(&h2.cgroup),
            &["python3", "-c", &format!(
                "import socket\ns=socket.socket()\ns.settimeout(2)\ntry: s.connect(('{}', {port}))\nexcept OSError: pass",
                h1.ip
            )],
        );
        let found = loop {
            let hit = hec.events().iter().any(|e| {
                let d = &e["event"]["alert_details_json"];
                d["host"]["name"] == "h2" && d["flow"]["remote_port"] == port
            });
            if hit {
                break Some(start.elapsed());
            }
            if start.elapsed() > Duration::from_secs(10) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        match found {
            Some(d) => lat.push(d),
            None => eprintln!("violation {i} (port {port}): no alert at HEC within 10 s"),
        }
        let on_broker = loop {
            if let Some(t) = on_kafka
                .lock()
                .ok()
                .and_then(|m| m.get(&u64::from(port)).copied())
            {
                break Some(t.duration_since(start));
            }
            if start.elapsed() > Duration::from_secs(10) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        match on_broker {
            Some(d) => kafka_lat.push(d),
            None => eprintln!("violation {i} (port {port}): no alert on Kafka within 10 s"),
        }
        std::thread::sleep(Duration::from_millis(a.gap_ms));
    }
    for (pid, log) in agents {
        stop_agent(pid, &log, false);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = follower.join();
    let mut missed = 0;
    for (what, mut l) in [
        ("read by a consumer from the Kafka broker", kafka_lat),
        ("accepted and acked by HEC", lat),
    ] {
        let m = usize::from(a.violations) - l.len();
        missed += m;
        l.sort();
        let Some(max) = l.last().copied() else {
            println!("{what}: no alert arrived");
            continue;
        };
        println!(
            "detection latency, connect() on h2 → alert {what} ({} violations, {m} missed):",
            a.violations
        );
        println!(
            "  p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            pct(&l, 0.5).as_secs_f64() * 1e3,
            pct(&l, 0.9).as_secs_f64() * 1e3,
            pct(&l, 0.99).as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }
    if missed > 0 {
        anyhow::bail!("{missed} alerts did not arrive");
    }
    Ok(())
}
