//! Isolation in the fleet lab, driven through the collector, with each enforcer backend
//! (nftables and eBPF): `cordon isolate h2` cuts TCP, UDP and ICMP both ways between h2
//! and h1, while h2's agent keeps its connection (commands still arrive, even though the
//! command's own allow-list names nothing of the collector) and keeps streaming: its
//! refused attempts arrive as `rejected` flows. The allow-listed port still works.
//! Isolation survives an agent restart and an agent killed with SIGKILL; release restores
//! traffic; an isolation with an expiry lifts by itself; and the local break-glass
//! `cordon-enforcer release` works without the collector (it never asks it).
use std::time::Duration;

use cordon_tests::{
    agent::workspace_bin,
    cluster::{Cluster, ok, stop_agent},
    fleet::FleetHost,
    servers_py, wait_until,
};
use serde_json::Value;

/// Everything is a violation here, so every flow gets a verdict.
const POLICY: &str = "name: isolation-lab\ncatch_all:\n  - action: deny\n    severity: LOW\n";
/// A port h2's agent config allow-lists (on h1).
const ALLOWED_PORT: u16 = 2222;

fn curl(c: &Cluster, from: &FleetHost, to: &FleetHost, port: u16) -> bool {
    c.fleet.http_get(from, to, port, "curl")
}

/// Which kinds of traffic get from `from` to `to` right now: (tcp, udp, icmp).
fn reach(c: &Cluster, from: &FleetHost, to: &FleetHost) -> (bool, bool, bool) {
    let py = servers_py();
    let run = |cmd: &[&str]| {
        c.fleet
            .run_in(&from.ns, Some(&from.cgroup), cmd)
            .status
            .success()
    };
    let tcp = curl(c, from, to, 8080);
    let udp = run(&[
        "timeout", "4", "python3", &py, "udp-send", &to.ip, "5353", "probe",
    ]);
    let icmp = run(&["python3", &py, "icmp-ping", &to.ip, "0"]);
    (tcp, udp, icmp)
}

const OPEN: (bool, bool, bool) = (true, true, true);
const SHUT: (bool, bool, bool) = (false, false, false);

fn last_command(c: &Cluster, kind: &str) -> Value {
    wait_until(
        &format!("the {kind} result"),
        Duration::from_secs(20),
        || {
            let list = c.cordon(&["commands", "--host", "h2", "--json"]);
            let r = list.as_array()?.iter().find(|r| r["kind"] == kind)?.clone();
            (r["state"] != "pending" && r["state"] != "sent").then_some(r)
        },
    )
}

/// h2's rejected flows to h1 on `port` (waits until there is one).
fn rejected(c: &Cluster, h1: &FleetHost, port: u16) -> Vec<Value> {
    wait_until("rejected flows", Duration::from_secs(15), || {
        let f = c.cordon(&[
            "flows",
            "--host",
            "h2",
            "--port",
            &port.to_string(),
            "--verdict",
            "rejected",
            "--json",
        ]);
        let rows: Vec<Value> = f
            .as_array()?
            .iter()
            .filter(|r| r["remote_ip"] == h1.ip.as_str() && r["verdict"] == "dropped")
            .cloned()
            .collect();
        (!rows.is_empty()).then_some(rows)
    })
}

fn scenario(backend: &'static str) {
    let mut c = Cluster::start(&format!("isolation-{backend}"), 2, "");
    c.enforcer_backend = backend;
    let h1_ip = c.fleet.host("h1").ip.clone();
    c.agent_allow = vec![format!("{h1_ip}:{ALLOWED_PORT}/tcp")];
    c.enroll_all();
    let (h1, h2) = (c.fleet.host("h1"), c.fleet.host("h2"));
    let mut agents: Vec<_> = [h1, h2].iter().map(|h| c.start_agent(h, 1)).collect();
    let py = servers_py();
    for h in [h1, h2] {
        for (kind, port) in [("tcp-serve", "8080"), ("udp-echo", "5353")] {
            c.fleet.start_server(
                &h.ns,
                Some(&h.cgroup),
                &["python3", &py, kind, &h.ip, port],
                &c.dir.join(format!("{kind}-{}.log", h.name)),
            );
        }
    }
    c.fleet.start_server(
        &h1.ns,
        Some(&h1.cgroup),
        &[
            "python3",
            &py,
            "tcp-serve",
            &h1.ip,
            &ALLOWED_PORT.to_string(),
        ],
        &c.dir.join("allowed-h1.log"),
    );
    let file = c.dir.join("policy.yaml");
    std::fs::write(&file, POLICY).expect("policy");
    c.cordon(&["policy", "apply", &file.to_string_lossy()]);
    c.cordon(&["policy", "publish", "1"]);
    assert_eq!(reach(&c, h2, h1), OPEN, "h2 -> h1 before isolation");
    assert_eq!(reach(&c, h1, h2), OPEN, "h1 -> h2 before isolation");

    // Isolated: nothing either way, but the agent is still there for commands. The
    // command's allow-list names an address that is not the collector's.
    c.cordon(&[
        "isolate",
        "h2",
        "--reason",
        "lab",
        "--allow",
        "10.231.1.250:9",
    ]);
    let done = last_command(&c, "isolate");
    assert_eq!(done["state"], "done", "{done}");
    let hosts = c.cordon(&["hosts", "--json"]);
    let h2_row = hosts
        .as_array()
        .and_then(|a| a.iter().find(|h| h["host_name"] == "h2"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(h2_row["enforcement_backend"], backend, "{h2_row}");
    assert_eq!(reach(&c, h2, h1), SHUT, "h2 -> h1 while isolated");
    assert_eq!(reach(&c, h1, h2), SHUT, "h1 -> h2 while isolated");
    assert!(
        curl(&c, h2, h1, ALLOWED_PORT),
        "the allow-listed port must work while isolated"
    );
    // h2's agent still streams: its refused attempts to h1:8080 arrive as rejected flows.
    let rows = rejected(&c, h1, 8080);
    if backend == "ebpf" {
        // Refused at connect(), before any packet: no local address yet, and the process
        // that tried is known (curl exits at once; the capture's process cache still
        // knows its exe).
        assert!(
            rows.iter().any(|r| r["direction"] == "outbound"
                && r["local_port"] == 0
                && r["pid"].as_u64().is_some_and(|p| p > 0)
                && r["exe"].as_str().is_some_and(|e| e.ends_with("curl"))),
            "refused connect without its process: {rows:?}"
        );
    } else {
        // Dropped by nftables: the SYNs, with the ephemeral port they came from.
        assert!(
            rows.iter()
                .any(|r| r["direction"] == "outbound" && r["local_port"] != 0),
            "{rows:?}"
        );
    }
    // h1's attempts towards h2 are refused at h2's door, and h2 reports those too.
    let inbound = wait_until("rejected inbound flows", Duration::from_secs(15), || {
        let f = c.cordon(&["flows", "--host", "h2", "--verdict", "rejected", "--json"]);
        let n = f
            .as_array()?
            .iter()
            .filter(|r| r["direction"] == "inbound" && r["remote_ip"] == h1.ip.as_str())
            .count();
        (n > 0).then_some(n)
    });
    assert!(inbound > 0);

    // The agent restarts (clean stop, then start): still isolated, and it reconnects
    // through the management channel.
    let (pid, log) = agents.remove(1);
    stop_agent(pid, &log, false);
    assert_eq!(reach(&c, h2, h1), SHUT, "while the agent is stopped");
    let (pid, log) = c.start_agent(h2, 2);
    assert_eq!(reach(&c, h2, h1), SHUT, "after the agent restarted");
    // SIGKILL: the ruleset (or the pinned programs) is kernel state and stays.
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(reach(&c, h2, h1), SHUT, "after the agent was killed");
    let _ = log;
    agents.push(c.start_agent(h2, 3));

    // Released by command: traffic flows again.
    c.cordon(&["release", "h2", "--reason", "done"]);
    assert_eq!(last_command(&c, "release")["state"], "done");
    assert_eq!(reach(&c, h2, h1), OPEN, "h2 -> h1 after release");
    assert_eq!(reach(&c, h1, h2), OPEN, "h1 -> h2 after release");

    // An isolation with an expiry lifts by itself, and the collector hears of it.
    c.cordon(&["isolate", "h2", "--reason", "short", "--for", "4s"]);
    wait_until("the isolation", Duration::from_secs(10), || {
        (!reach(&c, h2, h1).0).then_some(())
    });
    wait_until("the expiry", Duration::from_secs(15), || {
        reach(&c, h2, h1).0.then_some(())
    });
    wait_until("the expiry reported", Duration::from_secs(10), || {
        let hosts = c.cordon(&["hosts", "--json"]);
        let h = hosts
            .as_array()?
            .iter()
            .find(|h| h["host_name"] == "h2")?
            .clone();
        (h["isolated"] == false).then_some(())
    });

    // Break-glass: the local CLI releases without the collector.
    c.cordon(&["isolate", "h2", "--reason", "until break-glass"]);
    wait_until("the isolation", Duration::from_secs(10), || {
        (!reach(&c, h2, h1).0).then_some(())
    });
    let state = c.agent_dir(h2).join("enforcer.json");
    let pins = c.pin_base().join("h2");
    let out = c.fleet.run(
        &h2.ns,
        &[
            &workspace_bin("cordon-enforcer"),
            "release",
            "--state",
            &state.to_string_lossy(),
            "--bpf-pin-dir",
            &pins.to_string_lossy(),
            "--reason",
            "break-glass test",
        ],
    );
    ok(out, "cordon-enforcer release");
    assert_eq!(reach(&c, h2, h1), OPEN, "after break-glass release");
    for (pid, log) in agents {
        stop_agent(pid, &log, false);
    }
}

#[test]
fn isolation_with_nftables() {
    scenario("nftables");
}

#[test]
fn isolation_with_ebpf() {
    scenario("ebpf");
}
