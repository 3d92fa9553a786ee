//! The web console in a real browser (root): the fleet lab with a collector and two hosts
//! running real agents, and headless Chromium (Debian's, driven by Playwright for Python,
//! `tests/console/browser.py`) in the collector's namespace, against the console on its
//! loopback. Signing in and out, a flow that appears live without a reload, the one-click
//! filter, isolating h1 from its page — after which h2's connections to h1 fail — and
//! releasing it, a read-only user with no isolate button whom the server refuses too,
//! forged and missing CSRF tokens and a missing session refused, and the other screens
//! with real data. Screenshots go to target/lab-logs/console-*/shots.
use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use cordon_tests::{
    cluster::{Cluster, stop_agent},
    ns_command, servers_py, wait_for, wait_until,
};

/// Asks on the console, then releases the host (harmless when it is not isolated): a
/// run whose approval the browser gives.
const PLAYBOOK: &str = "name: ask-on-console\ntrigger:\n  type: COMPLIANCE\n  severity_at_least: HIGH\n  direction: outbound\nsteps:\n  - id: ask\n    approve:\n      via: console\n      timeout: 10m\n      default: deny\n      on_deny: end\n  - id: all-clear\n    release:\n      reason: \"console approval test (run {run})\"\n";

const POLICY: &str = "name: console\ngroups:\n  web:\n    label: {role: web}\n  clients:\n    label: {role: client}\nrules:\n  - name: clients-to-web\n    consumer: clients\n    provider: web\n    ports: [tcp/8080]\n    action: allow\ncatch_all:\n  - action: deny\n    severity: HIGH\n";

/// A policy of `apps` applications of four tiers each (lb → web → api → db) and one
/// monitoring group allowed to every group: `4 × apps + 1` groups.
fn big_policy(apps: usize) -> String {
    let tiers = ["lb", "web", "api", "db"];
    let ports = ["tcp/443", "tcp/8080", "tcp/9000", "tcp/5432"];
    let mut y =
        String::from("name: many-groups\ngroups:\n  monitoring:\n    label: {role: monitoring}\n");
    for a in 0..apps {
        for t in tiers {
            y.push_str(&format!(
                "  app{a:02}-{t}:\n    label: {{app: app{a:02}, tier: {t}}}\n"
            ));
        }
    }
    y.push_str("rules:\n");
    for a in 0..apps {
        for (i, pair) in tiers.windows(2).enumerate() {
            y.push_str(&format!(
                "  - name: app{a:02}-{}-to-{}\n    consumer: app{a:02}-{}\n    provider: app{a:02}-{}\n    ports: [{}]\n    action: allow\n",
                pair[0], pair[1], pair[0], pair[1], ports[i + 1]
            ));
        }
        for t in tiers {
            y.push_str(&format!(
                "  - name: scrape-app{a:02}-{t}\n    consumer: monitoring\n    provider: app{a:02}-{t}\n    ports: [tcp/9100]\n    action: allow\n"
            ));
        }
    }
    y.push_str("catch_all:\n  - action: deny\n    severity: HIGH\n");
    y
}

fn script() -> String {
    cordon_tests::workspace()
        .join("tests/console/browser.py")
        .to_string_lossy()
        .into_owned()
}

/// `browser.py PHASE ARGS` in the collector's namespace, as a command.
fn browser(c: &Cluster, read_token: &Path, shots: &Path, phase: &str, args: &[&str]) -> Command {
    let (console, admin, read, shots) = (
        "CONSOLE=http://127.0.0.1:7480".to_string(),
        format!("ADMIN_TOKEN={}", c.admin_token),
        format!("READ_TOKEN={}", read_token.display()),
        format!("SHOTS={}", shots.display()),
    );
    let py = script();
    let mut cmd = vec![
        "env", &console, &admin, &read, &shots, "python3", &py, phase,
    ];
    cmd.extend_from_slice(args);
    ns_command(&c.fleet.collector_ns, None, &cmd)
}

/// Runs a phase to its end; panics with its output unless it succeeded.
fn phase(c: &Cluster, read_token: &Path, shots: &Path, name: &str, args: &[&str]) {
    let out = browser(c, read_token, shots, name, args)
        .stdin(Stdio::null())
        .output()
        .expect("running the browser");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "browser phase {name} failed:\n{text}");
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn the_console_in_a_real_browser_signs_in_shows_flows_live_and_isolates_a_host() {
    let playbooks = cordon_tests::workspace()
        .join("target/lab-logs")
        .join(format!("console-playbooks-{}", std::process::id()));
    std::fs::create_dir_all(&playbooks).expect("playbook dir");
    std::fs::write(playbooks.join("ask.yaml"), PLAYBOOK).expect("playbook");
    let c = Cluster::start(
        "console",
        2,
        &format!(
            "[alerts]\nrepublish_secs = 0\n[response]\nplaybook_dir = \"{}\"\n",
            playbooks.display()
        ),
    );
    c.enroll_all();
    let (h1, h2) = (c.fleet.host("h1"), c.fleet.host("h2"));
    let agents: Vec<_> = [h1, h2].iter().map(|h| c.start_agent(h, 1)).collect();
    let py = servers_py();
    c.fleet.start_server(
        &h1.ns,
        Some(&h1.cgroup),
        &["python3", &py, "tcp-serve", &h1.ip, "8080"],
        &c.dir.join("server-8080.log"),
    );
    let read = c.cordon(&[
        "token", "create", "--name", "analyst", "--scope", "read", "--json",
    ]);
    let read_token = c.dir.join("read.token");
    std::fs::write(&read_token, read["token"].as_str().expect("secret")).expect("read token");
    let shots = c.dir.join("shots");
    std::fs::create_dir_all(&shots).expect("shots dir");
    // A published policy, so flows carry verdicts and the escaped one raises an alert.
    c.cordon(&["hosts", "label", "h1", "role=web"]);
    c.cordon(&["hosts", "label", "h2", "role=client"]);
    let file = c.dir.join("policy.yaml");
    std::fs::write(&file, POLICY).expect("policy");
    c.cordon(&["policy", "apply", &file.to_string_lossy()]);
    c.cordon(&["policy", "publish", "1"]);
    let connect = |port: &str| {
        c.fleet
            .run_in(
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
            .status
            .success()
    };
    assert!(connect("8080"), "h2 reaches h1:8080 before any isolation");

    phase(&c, &read_token, &shots, "signin", &[]);

    // Live: the page is open before the flow exists.
    let log = c.dir.join("browser-live.log");
    let f = std::fs::File::create(&log).expect("log");
    let mut live = browser(&c, &read_token, &shots, "live", &["h2", "9090"])
        .stdin(Stdio::null())
        .stdout(f.try_clone().expect("log"))
        .stderr(f)
        .spawn()
        .expect("starting the browser");
    wait_for(&log, "READY live", Duration::from_secs(60));
    // An escaped attempt (nothing listens on 9090): a flow and an alert.
    let _ = connect("9090");
    let status = live.wait().expect("browser");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "live phase failed:\n{text}");
    eprint!("{text}");

    // The escaped flow started a run that waits for an approval on the console.
    phase(&c, &read_token, &shots, "approve", &[]);
    let approvals = c.cordon(&["approvals", "--json"]);
    assert_eq!(approvals[0]["state"], "approved", "{approvals}");
    assert_eq!(
        approvals[0]["decided_by"], "console:lab test",
        "{approvals}"
    );
    let runs = c.cordon(&["runs", "--json"]);
    assert_eq!(runs[0]["state"], "done", "{runs}");

    let count = || {
        c.cordon(&["commands", "--json"])
            .as_array()
            .map_or(0, Vec::len)
    };
    let before = count();
    phase(&c, &read_token, &shots, "readonly", &["h1"]);
    phase(&c, &read_token, &shots, "refusals", &["h1"]);
    assert_eq!(count(), before, "nothing refused may queue a command");

    // Isolation from the console; then traffic from h2 to h1 must fail.
    phase(&c, &read_token, &shots, "isolate", &["h1"]);
    let started = Instant::now();
    wait_until("h2 → h1:8080 to fail", Duration::from_secs(10), || {
        (!connect("8080")).then_some(())
    });
    eprintln!(
        "isolated: h2 → h1:8080 fails, {:?} after the page showed it (each attempt waits up to 3 s)",
        started.elapsed()
    );
    let commands = c.cordon(&["commands", "--json"]);
    assert_eq!(commands[0]["kind"], "isolate", "{commands}");
    assert_eq!(commands[0]["created_by"], "lab test", "{commands}");
    phase(&c, &read_token, &shots, "release", &["h1"]);
    wait_until(
        "h2 → h1:8080 to work again",
        Duration::from_secs(10),
        || connect("8080").then_some(()),
    );

    phase(&c, &read_token, &shots, "screens", &[]);

    // A learned draft from the lab's traffic, reviewed and published in the browser.
    let learned = c.cordon(&["learn", "--since", "10m", "--json"]);
    let version = learned["version"].as_i64().expect("the draft's version");
    phase(&c, &read_token, &shots, "review", &[&version.to_string()]);
    // What would the lab's policy (v1) say about h2 → h1 on the allowed port and another.
    phase(&c, &read_token, &shots, "check", &["1", "h2", &h1.ip]);

    // The service map of a policy of 121 groups (30 applications of 4 tiers, and a
    // monitoring group that scrapes every one of them).
    let map_file = c.dir.join("map-policy.yaml");
    std::fs::write(&map_file, big_policy(30)).expect("map policy");
    c.cordon(&["policy", "apply", &map_file.to_string_lossy()]);
    let map_version = c
        .cordon(&["policy", "list", "--json"])
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["version"].as_i64())
        .max()
        .expect("the map policy's version");
    phase(
        &c,
        &read_token,
        &shots,
        "map",
        &[&map_version.to_string(), "121"],
    );

    let list = c.cordon(&["policy", "list", "--json"]);
    let published: Vec<_> = list
        .as_array()
        .expect("versions")
        .iter()
        .filter(|v| v["state"] == "published")
        .map(|v| v["version"].as_i64())
        .collect();
    // The draft without the rejected rule (the next version) was published; the learned
    // one stays a draft.
    assert_eq!(published, vec![Some(version + 1)], "{list}");
    let learned_state = list
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["version"].as_i64() == Some(version))
        .map(|v| v["state"].clone());
    assert_eq!(learned_state, Some("draft".into()), "{list}");
    for shot in [
        "signin",
        "flows-live",
        "flows-filtered",
        "hosts",
        "isolate-confirm",
        "host-isolated",
        "host-readonly",
        "alerts",
        "response",
        "audit",
        "flow-record",
        "policy-check",
        "service-map",
        "service-map-group",
    ] {
        let p = shots.join(format!("{shot}.png"));
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 5_000, "screenshot {} missing or empty", p.display());
    }
    for (pid, log) in agents {
        stop_agent(pid, &log, false);
    }
    let _ = std::fs::remove_dir_all(&playbooks);
}
