//! The reference scenario end to end in the fleet lab (root): the shipped playbook
//! `isolate-on-violation`, with a real Kafka-protocol broker and the Duo, ServiceNow and
//! SMTP stand-ins in the collector's namespace.
//!
//! 1. curl on h2 to h1:9090 breaks the policy → the alert is read back from Kafka → Duo
//!    push (approved) → h2 isolated (traffic really stops; the management channel stays)
//!    → an incident with the alert's key → e-mails → the analyst approves the release on
//!    the CLI → h2 released, the incident resolved.
//! 2. Deny: another violation, the push is denied → no isolation, the incident records it.
//! 3. The collector is killed while a push waits for an answer and started again; the
//!    answer comes → the run completes once: one push, one isolation, one incident.
use std::time::{Duration, Instant};

use cordon_connectors::standin::{
    duo::{Behaviour, DuoStandin},
    servicenow::ServiceNowStandin,
    smtp::SmtpSink,
};
use cordon_tests::{
    cluster::{Cluster, stop_agent},
    fleet::FleetHost,
    in_netns,
    kafka_broker::{ALERTS_TOPIC, Broker},
    servers_py, wait_until, workspace,
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
const ANALYST: &str = "soc-analyst";

fn curl(c: &Cluster, from: &FleetHost, to: &FleetHost, port: u16) -> bool {
    c.fleet
        .run_in(
            &from.ns,
            Some(&from.cgroup),
            &[
                "curl",
                "-s",
                "-m",
                "2",
                "-o",
                "/dev/null",
                &format!("http://{}:{port}/", to.ip),
            ],
        )
        .status
        .success()
}

/// The run of the playbook for h2's alert about `port`.
fn run_for(c: &Cluster, port: u16) -> Option<Value> {
    let runs = c.cordon(&["runs", "--json"]);
    runs.as_array()?
        .iter()
        .find(|r| r["host_name"] == "h2" && r["facts"]["remote_port"] == port)
        .cloned()
}

/// Waits until that run is at `step` (or finished, for `None`).
fn wait_step(c: &Cluster, port: u16, step: Option<&str>, secs: u64) -> Value {
    wait_until(
        &format!("the run for :{port} at {step:?}"),
        Duration::from_secs(secs),
        || {
            let r = run_for(c, port)?;
            let at = r["step"].as_str();
            (at == step).then_some(r)
        },
    )
}

fn isolate_commands(c: &Cluster) -> usize {
    let cmds = c.cordon(&["commands", "--host", "h2", "--json"]);
    cmds.as_array()
        .map_or(0, |a| a.iter().filter(|x| x["kind"] == "isolate").count())
}

/// Approves the console approval of the run (the release question).
fn approve_release(c: &Cluster, run: &Value) {
    let run_id = run["id"].as_i64().expect("run id");
    let pending = c.cordon(&["approvals", "--state", "pending", "--json"]);
    let a = pending
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|a| a["run_id"] == run_id && a["via"] == "console")
        })
        .cloned()
        .expect("the release approval");
    let out = c.cordon(&["approve", &a["id"].to_string()]);
    assert!(
        out.as_str().is_some_and(|s| s.contains("approved")),
        "{out}"
    );
}

#[test]
fn the_reference_scenario_runs_end_to_end() {
    let playbooks = workspace()
        .join("target/lab-logs")
        .join(format!("response-playbooks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&playbooks);
    std::fs::create_dir_all(&playbooks).expect("playbook dir");
    std::fs::copy(
        workspace().join("packaging/playbooks/isolate-on-violation.yaml"),
        playbooks.join("isolate-on-violation.yaml"),
    )
    .expect("the shipped playbook");
    let mut stand: Option<(DuoStandin, ServiceNowStandin, SmtpSink, Broker)> = None;
    let mut c = Cluster::start_with("response", 2, |fleet| {
        let (duo, snow, smtp, kafka) = in_netns(&fleet.collector_ns, || {
            (
                DuoStandin::start(
                    "DIXXXXXXXXXXXXXXXXXX",
                    "duo-secret-key-for-tests-0123456789abcd",
                    "api-lab.duosecurity.com",
                ),
                ServiceNowStandin::start("cordon", "snow-pass").expect("servicenow stand-in"),
                SmtpSink::start().expect("smtp sink"),
                Broker::start(),
            )
        });
        let extra = format!(
            "[alerts]\nrepublish_secs = 0\n\
             [outputs.kafka]\nbrokers = [\"{kafka}\"]\n\
             [response]\nplaybook_dir = \"{pb}\"\n\
             [response.duo]\napi_host = \"api-lab.duosecurity.com\"\nbase_url = \"{duo}\"\n\
             ikey = \"DIXXXXXXXXXXXXXXXXXX\"\nskey = \"duo-secret-key-for-tests-0123456789abcd\"\n\
             [response.servicenow]\ninstance_url = \"{snow}\"\n\
             auth = {{ type = \"basic\", username = \"cordon\", password = \"snow-pass\" }}\n\
             [response.email]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\n\
             from = \"cordon@lab.test\"\nto = [\"soc@lab.test\"]\n",
            kafka = kafka.bootstrap(),
            pb = playbooks.display(),
            duo = duo.url(),
            snow = snow.url(),
            smtp_port = smtp.addr().port(),
        );
        stand = Some((duo, snow, smtp, kafka));
        extra
    });
    let (duo, snow, smtp, broker) = stand.expect("stand-ins");
    c.enroll_all();
    let (h1, h2) = (c.fleet.host("h1"), c.fleet.host("h2"));
    let mut agents: Vec<_> = [h1, h2].iter().map(|h| c.start_agent(h, 1)).collect();
    let py = servers_py();
    for port in ["8080", "9090"] {
        c.fleet.start_server(
            &h1.ns,
            Some(&h1.cgroup),
            &["python3", &py, "tcp-serve", &h1.ip, port],
            &c.dir.join(format!("server-{port}.log")),
        );
    }
    c.cordon(&["hosts", "label", "h1", "role=web"]);
    c.cordon(&["hosts", "label", "h2", "role=client"]);
    let file = c.dir.join("policy.yaml");
    std::fs::write(&file, POLICY).expect("policy");
    c.cordon(&["policy", "apply", &file.to_string_lossy()]);
    c.cordon(&["policy", "publish", "1"]);
    assert!(curl(&c, h2, h1, 8080), "allowed before anything happened");

    // 1. Violation → Kafka → Duo (approved) → isolation → incident → e-mail → release.
    duo.set_user(ANALYST, Behaviour::ApproveAfter(1));
    let start = Instant::now();
    assert!(curl(&c, h2, h1, 9090));
    let key = in_netns(&c.fleet.collector_ns, || {
        wait_until("h2's alert on Kafka", Duration::from_secs(20), || {
            broker
                .consume(ALERTS_TOPIC, usize::MAX, Duration::from_secs(1))
                .into_iter()
                .filter_map(|(_, v)| serde_json::from_slice::<Value>(&v).ok())
                .find(|e| {
                    e["event"]["alert_details_json"]["host"]["name"] == "h2"
                        && e["event"]["alert_details_json"]["flow"]["remote_port"] == 9090
                })
                .and_then(|e| e["event"]["key_id"].as_str().map(str::to_string))
        })
    });
    let run = wait_step(&c, 9090, Some("ask-release"), 30);
    eprintln!("violation → isolated, incident open: {:?}", start.elapsed());
    assert_eq!(run["alert_key"], key.as_str());
    assert_eq!(run["context"]["outcome"], "approved");
    assert_eq!(run["context"]["decided_by"], format!("duo:{ANALYST}"));
    // h2 is cut off, but its agent still takes commands (checked by the release below).
    assert!(!curl(&c, h2, h1, 8080), "h2 must be isolated");
    assert_eq!(isolate_commands(&c), 1);
    // Duo saw one push, with what the analyst needs to decide.
    let pushes: Vec<_> = duo
        .requests()
        .into_iter()
        .filter(|r| r.path == "/auth/v2/auth")
        .collect();
    assert_eq!(pushes.len(), 1);
    let info = pushes[0].pushinfo.clone().unwrap_or_default();
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
    let inc = snow.incidents();
    assert_eq!(inc.len(), 1);
    assert_eq!(
        inc[0].fields.get("correlation_id").map(String::as_str),
        Some(key.as_str())
    );
    assert_eq!(inc[0].fields.get("cmdb_ci").map(String::as_str), Some("h2"));
    let number = inc[0].number.clone();
    assert_eq!(run["context"]["incident"], number.as_str());
    // Two e-mails: the violation, then the isolation with the incident number.
    let mails = smtp.messages();
    assert_eq!(mails.len(), 2, "{mails:?}");
    assert!(
        mails[0].data.contains("policy violation on h2"),
        "{}",
        mails[0].data
    );
    assert!(mails[1].data.contains(&number), "{}", mails[1].data);
    // The analyst approves the release on the CLI: released, incident resolved.
    approve_release(&c, &run);
    let done = wait_step(&c, 9090, None, 30);
    assert_eq!(done["state"], "done", "{done}");
    assert!(curl(&c, h2, h1, 8080), "released");
    let inc = snow.incidents();
    assert_eq!(
        inc[0].fields.get("state").map(String::as_str),
        Some("6"),
        "{:?}",
        inc[0].fields
    );

    // 2. Denied: no isolation; the incident records the denial.
    duo.set_user(ANALYST, Behaviour::Deny);
    assert!(!curl(&c, h2, h1, 9091), "nothing listens on 9091");
    let denied = wait_step(&c, 9091, None, 30);
    assert_eq!(denied["state"], "done", "{denied}");
    assert!(
        denied["context"]["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("denied"))
    );
    assert_eq!(isolate_commands(&c), 1, "no isolation after a denial");
    assert!(curl(&c, h2, h1, 8080));
    let inc = snow.incidents();
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
    duo.set_user(ANALYST, Behaviour::Timeout);
    let pushes_before = duo
        .requests()
        .iter()
        .filter(|r| r.path == "/auth/v2/auth")
        .count();
    assert!(!curl(&c, h2, h1, 9092));
    wait_until("the push", Duration::from_secs(20), || {
        (duo.requests()
            .iter()
            .filter(|r| r.path == "/auth/v2/auth")
            .count()
            > pushes_before)
            .then_some(())
    });
    let _ = std::process::Command::new("kill")
        .args(["-9", &c.collector_pid.to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(300));
    let (pid, _log) = c.start_collector(2);
    c.collector_pid = pid;
    assert_eq!(duo.answer_pending(true), 1, "one push was waiting");
    let run = wait_step(&c, 9092, Some("ask-release"), 40);
    assert_eq!(run["context"]["outcome"], "approved");
    assert_eq!(
        duo.requests()
            .iter()
            .filter(|r| r.path == "/auth/v2/auth")
            .count(),
        pushes_before + 1,
        "the waiting push was polled again, not sent again"
    );
    assert_eq!(isolate_commands(&c), 2, "isolated once for this run");
    assert!(!curl(&c, h2, h1, 8080));
    assert_eq!(snow.incidents().len(), 3);
    approve_release(&c, &run);
    wait_step(&c, 9092, None, 30);
    assert!(curl(&c, h2, h1, 8080), "released");
    for (pid, log) in agents.drain(..) {
        stop_agent(pid, &log, false);
    }
    let _ = std::fs::remove_dir_all(&playbooks);
}
