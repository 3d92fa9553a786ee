//! The reference scenario end to end in the fleet lab (root): the shipped playbook
//! `isolate-on-violation`, with a real Kafka-protocol broker and the Duo, ServiceNow and
//! SMTP stand-ins in the collector's namespace (`cordon_tests::response_lab`).
//!
//! 1. curl on h2 to h1:9090 breaks the policy → the alert is read back from Kafka → Duo
//!    push (approved) → h2 isolated (traffic really stops; the management channel stays)
//!    → an incident with the alert's key → e-mails → the analyst approves the release on
//!    the CLI → h2 released, the incident resolved.
//! 2. Deny: another violation, the push is denied → no isolation, the incident records it.
//! 3. The collector is killed while a push waits for an answer and started again; the
//!    answer comes → the run completes once: one push, one isolation, one incident.
//!
//! The same scenario runs on a cluster of three nodes where one node is the only worker
//! (the alerts are raised there) and the other two run the playbooks: in step 3 the node
//! whose engine sent the push is killed, and the other one completes the run — each step
//! once, each alert once on Kafka.
use std::time::{Duration, Instant};

use cordon_connectors::standin::duo::Behaviour;
use cordon_tests::{
    cluster_lab::log_text,
    deploy::Deploy,
    in_netns,
    kafka_broker::ALERTS_TOPIC,
    response_lab::{ANALYST, ResponseLab, Roles},
    wait_until,
};
use serde_json::Value;

fn isolate_commands(lab: &ResponseLab) -> usize {
    let cmds = lab.c.cordon(&["commands", "--host", "h2", "--json"]);
    cmds.as_array()
        .map_or(0, |a| a.iter().filter(|x| x["kind"] == "isolate").count())
}

fn pushes(lab: &ResponseLab) -> usize {
    lab.duo
        .requests()
        .iter()
        .filter(|r| r.path == "/auth/v2/auth")
        .count()
}

/// Messages on the alerts topic about h2's flows to `port`.
fn alerts_on_kafka(lab: &ResponseLab, port: u16) -> usize {
    in_netns(&lab.c.fleet().collector_ns, || {
        lab.broker()
            .consume(ALERTS_TOPIC, usize::MAX, Duration::from_secs(1))
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice::<Value>(&v).ok())
            .filter(|e| {
                let d = &e["event"]["alert_details_json"];
                d["host"]["name"] == "h2" && d["flow"]["remote_port"] == port
            })
            .count()
    })
}

/// The run's steps in order, as stored: each must be there once.
fn steps_once(lab: &ResponseLab, run: &Value) {
    let id = run["id"].to_string();
    let shown = lab.c.cordon(&["run", "show", &id, "--json"]);
    let steps: Vec<String> = shown["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["state"] == "done")
        .map(|s| s["step"].as_str().unwrap_or("").to_string())
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for s in &steps {
        assert!(seen.insert(s), "step {s} done twice: {steps:?}");
    }
}

#[test]
fn the_reference_scenario_runs_end_to_end() {
    reference_scenario(ResponseLab::start("response"));
}

#[test]
fn the_reference_scenario_runs_on_a_cluster_whose_engine_node_dies_mid_run() {
    reference_scenario(ResponseLab::start_cluster(
        "response-cluster",
        3,
        Roles::Split,
    ));
}

/// Kills the collector whose engine sent the push of the run for `port` (on one
/// collector: kills it and starts it again).
fn crash_engine(lab: &mut ResponseLab, port: u16) {
    let run = lab.run_for(port).expect("the run");
    let needle = format!("run={} ", run["id"]);
    match &mut lab.c {
        Deploy::One(c) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &c.collector_pid.to_string()])
                .status();
            std::thread::sleep(Duration::from_millis(300));
            let (pid, _log) = c.start_collector(2);
            c.collector_pid = pid;
        }
        Deploy::Nodes(l) => {
            let pushed = (0..l.nodes.len())
                .find(|i| {
                    log_text(&l.node_log(*i))
                        .lines()
                        .any(|x| x.contains("Duo push sent") && x.contains(&needle))
                })
                .expect("the node that sent the push");
            assert_ne!(pushed, 0, "node 0 runs no playbooks");
            eprintln!(
                "killing {}, whose engine sent the push",
                l.nodes[pushed].name
            );
            l.kill_node(pushed);
        }
    }
}

fn reference_scenario(mut lab: ResponseLab) {
    let (h1, h2) = (lab.h1().clone(), lab.h2().clone());
    let (h1, h2) = (&h1, &h2);
    assert!(
        lab.connect(h2, h1, 8080, "curl"),
        "allowed before anything happened"
    );

    // 1. Violation → Kafka → Duo (approved) → isolation → incident → e-mail → release.
    lab.duo.set_user(ANALYST, Behaviour::ApproveAfter(1));
    let start = Instant::now();
    assert!(lab.connect(h2, h1, 9090, "curl"));
    let key = in_netns(&lab.c.fleet().collector_ns, || {
        wait_until("h2's alert on Kafka", Duration::from_secs(20), || {
            lab.broker()
                .consume(ALERTS_TOPIC, usize::MAX, Duration::from_secs(1))
                .into_iter()
                .filter_map(|(_, v)| serde_json::from_slice::<Value>(&v).ok())
                .find(|e| {
                    let d = &e["event"]["alert_details_json"];
                    d["host"]["name"] == "h2" && d["flow"]["remote_port"] == 9090
                })
                .and_then(|e| e["event"]["key_id"].as_str().map(str::to_string))
        })
    });
    let run = lab.wait_step(9090, Some("ask-release"), 30);
    eprintln!("violation → isolated, incident open: {:?}", start.elapsed());
    assert_eq!(run["alert_key"], key.as_str());
    assert_eq!(run["context"]["outcome"], "approved");
    assert_eq!(run["context"]["decided_by"], format!("duo:{ANALYST}"));
    // h2 is cut off, but its agent still takes commands (the release below arrives).
    assert!(!lab.connect(h2, h1, 8080, "curl"), "h2 must be isolated");
    assert_eq!(isolate_commands(&lab), 1);
    // Duo saw one push, with what the analyst needs to decide.
    let push: Vec<_> = lab
        .duo
        .requests()
        .into_iter()
        .filter(|r| r.path == "/auth/v2/auth")
        .collect();
    assert_eq!(push.len(), 1);
    let info = push[0].pushinfo.clone().unwrap_or_default();
    let get = |k: &str| {
        info.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(get("host"), "h2");
    assert!(get("process").ends_with("/curl"), "{info:?}");
    assert_eq!(get("remote"), format!("{}:9090/tcp", h1.ip));
    // One incident, keyed by the alert.
    let inc = lab.snow.incidents();
    assert_eq!(inc.len(), 1);
    assert_eq!(
        inc[0].fields.get("correlation_id").map(String::as_str),
        Some(key.as_str())
    );
    assert_eq!(inc[0].fields.get("cmdb_ci").map(String::as_str), Some("h2"));
    let number = inc[0].number.clone();
    assert_eq!(run["context"]["incident"], number.as_str());
    // Two e-mails: the violation, then the isolation with the incident number.
    let mails = lab.smtp.messages();
    assert_eq!(mails.len(), 2, "{mails:?}");
    assert!(
        mails[0].data.contains("policy violation on h2"),
        "{}",
        mails[0].data
    );
    assert!(mails[1].data.contains(&number), "{}", mails[1].data);
    // The analyst approves the release on the CLI: released, incident resolved.
    lab.approve_release(&run);
    let done = lab.wait_step(9090, None, 30);
    assert_eq!(done["state"], "done", "{done}");
    assert!(lab.connect(h2, h1, 8080, "curl"), "released");
    let inc = lab.snow.incidents();
    assert_eq!(
        inc[0].fields.get("state").map(String::as_str),
        Some("6"),
        "{:?}",
        inc[0].fields
    );

    // 2. Denied: no isolation; the incident records the denial.
    lab.duo.set_user(ANALYST, Behaviour::Deny);
    assert!(
        !lab.connect(h2, h1, 9091, "curl"),
        "nothing listens on 9091"
    );
    let denied = lab.wait_step(9091, None, 30);
    assert_eq!(denied["state"], "done", "{denied}");
    assert!(
        denied["context"]["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("denied"))
    );
    assert_eq!(isolate_commands(&lab), 1, "no isolation after a denial");
    assert!(lab.connect(h2, h1, 8080, "curl"));
    let inc = lab.snow.incidents();
    assert_eq!(inc.len(), 2);
    assert!(
        inc[1]
            .fields
            .get("short_description")
            .is_some_and(|d| d.contains("not approved")),
        "{:?}",
        inc[1].fields
    );

    // 3. The collector dies while the push waits; the run completes once after restart.
    lab.duo.set_user(ANALYST, Behaviour::Timeout);
    let before = pushes(&lab);
    assert!(!lab.connect(h2, h1, 9092, "curl"));
    wait_until("the push", Duration::from_secs(20), || {
        (pushes(&lab) > before).then_some(())
    });
    crash_engine(&mut lab, 9092);
    assert_eq!(lab.duo.answer_pending(true), 1, "one push was waiting");
    let run = lab.wait_step(9092, Some("ask-release"), 40);
    assert_eq!(run["context"]["outcome"], "approved");
    assert_eq!(
        pushes(&lab),
        before + 1,
        "the waiting push was polled again, not sent again"
    );
    assert_eq!(isolate_commands(&lab), 2, "isolated once for this run");
    assert!(!lab.connect(h2, h1, 8080, "curl"));
    assert_eq!(lab.snow.incidents().len(), 3);
    lab.approve_release(&run);
    let done = lab.wait_step(9092, None, 30);
    assert!(lab.connect(h2, h1, 8080, "curl"), "released");
    steps_once(&lab, &done);
    for port in [9090, 9091, 9092] {
        assert_eq!(
            alerts_on_kafka(&lab, port),
            1,
            "the alert about :{port} once"
        );
    }
    lab.stop();
}
