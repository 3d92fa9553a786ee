//! Compliance end to end in the fleet lab: labels and a published policy that allows h2 →
//! h1:8080 only; h2's curl to h1:8080 is permitted on both sides; a curl on h2 to h1:9090
//! is escaped, and its alert — with that process's exe — arrives at the Splunk HEC
//! stand-in (indexer acks on) and is read back by a consumer from a real Kafka-protocol
//! broker (tansu), both running in the collector's namespace.
use std::time::{Duration, Instant};

use cordon_tests::{
    cluster::{Cluster, stop_agent},
    hec_standin::HecStandin,
    in_netns,
    kafka_broker::{ALERTS_TOPIC, Broker},
    servers_py, wait_until,
};
use serde_json::Value;

const POLICY: &str = r#"name: lab
groups:
  web:
    label: {role: web}
  clients:
    label: {role: client}
rules:
  - name: clients-to-web
    consumer: clients
    provider: web
    ports: [tcp/8080]
    action: allow
catch_all:
  - action: deny
    severity: HIGH
"#;

#[test]
fn an_escaped_flow_is_alerted_with_its_process_to_kafka_and_splunk_hec() {
    let mut hec: Option<HecStandin> = None;
    let mut broker: Option<Broker> = None;
    let c = Cluster::start_with("compliance", 2, |fleet| {
        let standin = in_netns(&fleet.collector_ns, || {
            HecStandin::start("hec-test-token", true)
        });
        let kafka = in_netns(&fleet.collector_ns, Broker::start);
        let extra = format!(
            "[alerts]\nrepublish_secs = 0\nindex = \"cordon\"\n\
             [outputs.hec]\nurl = \"{}\"\ntoken = \"hec-test-token\"\nuse_ack = true\nack_poll_ms = 50\n\
             [outputs.kafka]\nbrokers = [\"{}\"]\n",
            standin.url(),
            kafka.bootstrap()
        );
        hec = Some(standin);
        broker = Some(kafka);
        extra
    });
    let hec = hec.expect("stand-in");
    let broker = broker.expect("broker");
    c.enroll_all();
    let (h1, h2) = (c.fleet.host("h1"), c.fleet.host("h2"));
    let agents: Vec<_> = [h1, h2].iter().map(|h| c.start_agent(h, 1)).collect();
    let py = servers_py();
    for port in ["8080", "9090"] {
        c.fleet.start_server(
            &h1.ns,
            Some(&h1.cgroup),
            &["python3", &py, "tcp-serve", &h1.ip, port],
            &c.dir.join(format!("server-{port}.log")),
        );
    }

    // Labels, then the policy: applied as a draft, published.
    c.cordon(&["hosts", "label", "h1", "role=web"]);
    c.cordon(&["hosts", "label", "h2", "role=client"]);
    let file = c.dir.join("policy.yaml");
    std::fs::write(&file, POLICY).expect("policy");
    let bad = c.dir.join("bad.yaml");
    std::fs::write(&bad, POLICY.replace("provider: web", "provider: webz")).expect("bad");
    let out = c.cordon_raw(&["policy", "apply", &bad.to_string_lossy()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("line 10") && err.contains("rules[0].provider"),
        "{err}"
    );
    let applied = c.cordon(&["policy", "apply", &file.to_string_lossy()]);
    assert!(
        applied.as_str().expect("text").contains("draft version 1"),
        "{applied}"
    );
    c.cordon(&["policy", "publish", "1"]);

    // Allowed: h2 → h1:8080, permitted as seen from both hosts.
    let curl = |port: &str| {
        c.fleet.run_in(
            &h2.ns,
            Some(&h2.cgroup),
            &[
                "curl",
                "-s",
                "-m",
                "3",
                "-o",
                "/dev/null",
                &format!("http://{}:{port}/", h1.ip),
            ],
        )
    };
    assert!(curl("8080").status.success());
    for host in ["h1", "h2"] {
        let flows = wait_until("permitted flows", Duration::from_secs(15), || {
            let f = c.cordon(&[
                "flows",
                "--host",
                host,
                "--port",
                "8080",
                "--verdict",
                "permitted",
                "--json",
            ]);
            (!f.as_array()?.is_empty()).then_some(f)
        });
        assert_eq!(flows[0]["policy_rule"], "clients-to-web", "{flows}");
    }

    // Violation: curl on h2 to h1:9090. Time from the connect to the alert at HEC.
    let before = hec.events().len();
    let start = Instant::now();
    assert!(curl("9090").status.success());
    let alert: Value = wait_until("the alert at HEC", Duration::from_secs(10), || {
        hec.events().into_iter().skip(before).find(|e| {
            let d = &e["event"]["alert_details_json"];
            d["flow"]["remote_port"] == 9090 && d["host"]["name"] == "h2"
        })
    });
    let latency = start.elapsed();
    eprintln!("violation → alert at HEC: {latency:?}");
    let ev = &alert["event"];
    assert_eq!(alert["sourcetype"], "cordon:alert");
    assert_eq!(alert["index"], "cordon");
    assert_eq!(alert["host"], "h2");
    assert_eq!(ev["type"], "COMPLIANCE");
    assert_eq!(ev["severity"], "HIGH");
    assert_eq!(ev["alert_details_json"]["verdict"], "escaped");
    assert_eq!(ev["alert_details_json"]["rule"]["name"], "catch-all");
    assert!(
        ev["alert_details_json"]["process"]["exe"]
            .as_str()
            .is_some_and(|e| e.ends_with("/curl")),
        "{ev}"
    );
    let key = ev["key_id"].as_str().expect("key").to_string();

    // The same alert on Kafka: key = key_id, value = the HEC envelope.
    let from_kafka = in_netns(&c.fleet.collector_ns, || {
        let start = Instant::now();
        loop {
            let msgs = broker.consume(ALERTS_TOPIC, usize::MAX, Duration::from_secs(2));
            if let Some((_, v)) = msgs.into_iter().find(|(k, _)| *k == key) {
                break Some(v);
            }
            if start.elapsed() > Duration::from_secs(20) {
                break None;
            }
        }
    });
    let value: Value =
        serde_json::from_slice(&from_kafka.expect("the alert on Kafka")).expect("JSON value");
    assert_eq!(value["sourcetype"], "cordon:alert");
    assert_eq!(value["event"]["key_id"], key.as_str());
    assert_eq!(
        value["event"]["alert_details_json"]["process"]["exe"],
        ev["alert_details_json"]["process"]["exe"]
    );

    // The same alert through the CLI, and the escaped flow on both sides.
    let alerts = c.cordon(&["alerts", "--json"]);
    assert!(
        alerts
            .as_array()
            .expect("alerts")
            .iter()
            .any(|a| a["key_id"] == key.as_str()),
        "{alerts}"
    );
    for host in ["h1", "h2"] {
        let f = c.cordon(&[
            "flows",
            "--host",
            host,
            "--port",
            "9090",
            "--verdict",
            "escaped",
            "--json",
        ]);
        assert!(!f.as_array().expect("flows").is_empty(), "{host}: {f}");
    }
    // Nothing permitted was alerted.
    assert!(
        hec.events()
            .iter()
            .all(
                |e| e["event"]["alert_details_json"]["flow"]["remote_port"] != 8080
                    && e["event"]["alert_details_json"]["flow"]["local_port"] != 8080
            ),
        "a permitted flow was alerted"
    );

    // The response: `cordon isolate h2` reaches h2's agent over its connection, its
    // nftables enforcer cuts h2 off (h2 → h1:8080 now fails), the management channel stays
    // up (the release command still arrives), and release brings traffic back. Every step
    // is in the audit log.
    let command_done = |kind: &str| {
        wait_until(
            &format!("the {kind} result"),
            Duration::from_secs(15),
            || {
                let list = c.cordon(&["commands", "--host", "h2", "--json"]);
                list.as_array()?
                    .iter()
                    .find(|r| r["kind"] == kind && r["state"] != "pending" && r["state"] != "sent")
                    .cloned()
            },
        )
    };
    c.cordon(&[
        "isolate",
        "h2",
        "--reason",
        "escaped flow to 9090",
        "--for",
        "1h",
    ]);
    let cmd = command_done("isolate");
    assert_eq!(cmd["state"], "done", "{cmd}");
    assert_eq!(cmd["result"], "isolated (nftables)", "{cmd}");
    let host = wait_until("h2 isolated", Duration::from_secs(10), || {
        let h = c.cordon(&["hosts", "h2", "--json"]);
        (h["isolated"] == true).then_some(h)
    });
    assert_eq!(host["enforcement_backend"], "nftables", "{host}");
    assert_eq!(host["isolation_reason"], "escaped flow to 9090");
    assert!(
        !curl("8080").status.success(),
        "h2 still reaches h1 while isolated"
    );
    c.cordon(&["release", "h2", "--reason", "cleaned up"]);
    let cmd = command_done("release");
    assert_eq!(cmd["state"], "done", "{cmd}");
    wait_until("h2 released", Duration::from_secs(10), || {
        let h = c.cordon(&["hosts", "h2", "--json"]);
        (h["isolated"] == false).then_some(())
    });
    assert!(
        curl("8080").status.success(),
        "h2 cannot reach h1 after release"
    );
    let audit = c.cordon(&["audit", "--json"]).to_string();
    for action in [
        "isolate.requested",
        "isolate.done",
        "host.isolated",
        "release.done",
        "host.released",
    ] {
        assert!(audit.contains(action), "{action} missing: {audit}");
    }

    for (pid, log) in agents {
        stop_agent(pid, &log, true);
    }
}
