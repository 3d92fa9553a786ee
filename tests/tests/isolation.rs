//! Isolation in the fleet lab with the nftables enforcer, driven through the collector:
//! `cordon isolate h2` cuts TCP, UDP and ICMP both ways between h2 and h1 while h2's agent
//! keeps its connection (commands still arrive); isolation survives an agent restart and
//! an agent killed with SIGKILL; release restores traffic; an isolation with an expiry
//! lifts by itself; and the local break-glass `cordon-enforcer release` works with the
//! collector unreachable from the host's point of view (it never asks it).
use std::time::Duration;

use cordon_tests::{
    agent::workspace_bin,
    cluster::{Cluster, ok, stop_agent},
    fleet::FleetHost,
    servers_py, wait_until,
};

/// Which kinds of traffic get from `from` to `to` right now: (tcp, udp, icmp).
fn reach(c: &Cluster, from: &FleetHost, to: &FleetHost) -> (bool, bool, bool) {
    let py = servers_py();
    let run = |cmd: &[&str]| {
        c.fleet
            .run_in(&from.ns, Some(&from.cgroup), cmd)
            .status
            .success()
    };
    let tcp = run(&[
        "curl",
        "-s",
        "-m",
        "2",
        "-o",
        "/dev/null",
        &format!("http://{}:8080/", to.ip),
    ]);
    let udp = run(&[
        "timeout", "4", "python3", &py, "udp-send", &to.ip, "5353", "probe",
    ]);
    let icmp = run(&["python3", &py, "icmp-ping", &to.ip, "0"]);
    (tcp, udp, icmp)
}

const OPEN: (bool, bool, bool) = (true, true, true);
const SHUT: (bool, bool, bool) = (false, false, false);

fn last_command(c: &Cluster, kind: &str) -> serde_json::Value {
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

#[test]
fn isolation_cuts_h2_off_and_holds_through_agent_restarts_until_released() {
    let c = Cluster::start("isolation", 2, "");
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
    assert_eq!(reach(&c, h2, h1), OPEN, "h2 -> h1 before isolation");
    assert_eq!(reach(&c, h1, h2), OPEN, "h1 -> h2 before isolation");

    // Isolated: nothing either way, but the agent is still there for commands.
    c.cordon(&["isolate", "h2", "--reason", "lab"]);
    assert_eq!(last_command(&c, "isolate")["state"], "done");
    assert_eq!(reach(&c, h2, h1), SHUT, "h2 -> h1 while isolated");
    assert_eq!(reach(&c, h1, h2), SHUT, "h1 -> h2 while isolated");

    // The agent restarts (clean stop, then start): still isolated, and it reconnects
    // through the management channel.
    let (pid, log) = agents.remove(1);
    stop_agent(pid, &log, false);
    assert_eq!(reach(&c, h2, h1), SHUT, "while the agent is stopped");
    let (pid, log) = c.start_agent(h2, 2);
    assert_eq!(reach(&c, h2, h1), SHUT, "after the agent restarted");
    // SIGKILL: the ruleset is kernel state and stays.
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

    // An isolation with an expiry lifts by itself.
    c.cordon(&["isolate", "h2", "--reason", "short", "--for", "4s"]);
    wait_until("the isolation", Duration::from_secs(10), || {
        (!reach(&c, h2, h1).0).then_some(())
    });
    wait_until("the expiry", Duration::from_secs(15), || {
        reach(&c, h2, h1).0.then_some(())
    });

    // Break-glass: the local CLI releases without the collector.
    c.cordon(&["isolate", "h2", "--reason", "until break-glass"]);
    wait_until("the isolation", Duration::from_secs(10), || {
        (!reach(&c, h2, h1).0).then_some(())
    });
    let state = c.agent_dir(h2).join("enforcer.json");
    let out = c.fleet.run(
        &h2.ns,
        &[
            &workspace_bin("cordon-enforcer"),
            "release",
            "--state",
            &state.to_string_lossy(),
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
