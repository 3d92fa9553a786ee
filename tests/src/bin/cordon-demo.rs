//! `make demo`: the reference threat-response scenario on this machine, narrated, in a lab
//! of network namespaces (root). A collector and two servers (h1 "web", h2 "app"), each
//! with its agent; a Kafka-protocol broker (tansu) and local stand-ins for Splunk HEC,
//! Duo (it approves), ServiceNow and an SMTP server, all inside the collector's namespace
//! (`cordon_tests::response_lab`). The shipped playbook `isolate-on-violation` does the
//! rest. Everything is torn down at the end (also on failure); no traffic leaves the lab.
//!
//! `cordon-demo --cluster` (`make demo-cluster`) plays the same scenario on a cluster of
//! three collector nodes on PostgreSQL and Kafka, and kills the node h2's agent is
//! connected to just before the attack: the agent fails over, and the alert, the Duo
//! push, the isolation and the incident follow as on one collector.
//!
//! At the end it prints the web console's address (forwarded from this machine's
//! loopback into the lab) and a sign-in token; with `CORDON_DEMO_KEEP=1` (`make demo
//! KEEP=1`) the lab stays up until Ctrl-C so the scenario can be clicked through.
use std::time::{Duration, Instant};

use cordon_connectors::standin::duo::Behaviour;
use cordon_tests::{
    deploy::Deploy,
    in_netns,
    kafka_broker::ALERTS_TOPIC,
    response_lab::{ANALYST, POLICY, ResponseLab, Roles},
    wait_until,
};
use serde_json::Value;

fn say(s: &str) {
    println!("\n\x1b[1m==> {s}\x1b[0m");
}

fn show(v: &str) {
    for l in v.lines() {
        println!("    {l}");
    }
}

fn cli(c: &Deploy, args: &[&str]) {
    println!("    $ cordon {}", args.join(" "));
    show(c.cordon(args).as_str().unwrap_or_default());
}

/// Kills the node h2's agent is on; returns its index once h2 is on another node.
fn kill_h2s_node(lab: &mut ResponseLab) -> usize {
    let nodes = lab.c.nodes_mut();
    let via = nodes.live_node();
    let on = nodes
        .placement(via)
        .into_iter()
        .find(|(h, _)| h == "h2")
        .map(|(_, n)| n)
        .expect("h2 on a node");
    let i = nodes
        .nodes
        .iter()
        .position(|n| n.name == on)
        .expect("that node");
    println!("    $ kill -9 <{on}>   (h2's agent is connected to it)");
    let t = Instant::now();
    nodes.kill_node(i);
    let via = nodes.live_node();
    let moved = wait_until("h2 on another node", Duration::from_secs(30), || {
        nodes
            .placement(via)
            .into_iter()
            .find(|(h, n)| h == "h2" && *n != on)
            .map(|(_, n)| n)
    });
    println!(
        "    h2's agent reconnected to {moved} {:.1} s after the kill, from its spool: nothing lost",
        t.elapsed().as_secs_f64()
    );
    wait_until(
        "the dead node reported down",
        Duration::from_secs(30),
        || {
            let s = nodes.status(via);
            s["nodes"]
                .as_array()?
                .iter()
                .any(|n| n["name"] == on.as_str() && n["up"] == false)
                .then_some(())
        },
    );
    println!(
        "    {on}'s flow partitions go to the other workers once the consumer group's 6 s session \
         timeout passes; what was appended meanwhile waits in Kafka, nothing is lost"
    );
    i
}

/// Where the console is forwarded to on this machine's loopback.
const CONSOLE_PORT: u16 = 7470;

/// Forwards 127.0.0.1:`CONSOLE_PORT` on this machine to the collector's console inside
/// the lab (connections opened from a thread in the lab's namespace), prints the address
/// and a token, and with `CORDON_DEMO_KEEP=1` waits for Ctrl-C.
fn console(lab: &ResponseLab) {
    let keep = std::env::var("CORDON_DEMO_KEEP").is_ok_and(|v| v == "1");
    let token = lab.c.cordon(&[
        "token",
        "create",
        "--name",
        "demo-analyst",
        "--scope",
        "admin",
        "--expires-in",
        "8h",
        "--json",
    ]);
    let token = token["token"].as_str().unwrap_or_default().to_string();
    let (ns, addr) = lab.c.console();
    say("The web console");
    match std::net::TcpListener::bind(("127.0.0.1", CONSOLE_PORT)) {
        Ok(listener) => {
            std::thread::spawn(move || forward(listener, ns, addr));
            println!(
                "    console: http://127.0.0.1:{CONSOLE_PORT}/console/  (forwarded into the lab)"
            );
        }
        Err(e) => println!(
            "    (127.0.0.1:{CONSOLE_PORT} is taken: {e}; the console is at {addr} in namespace {ns})"
        ),
    }
    println!("    sign in with the token: {token}");
    if keep {
        println!("    the lab stays up (KEEP=1): press Ctrl-C to tear it down");
        wait_for_interrupt();
    } else {
        println!("    (make demo KEEP=1 keeps the lab up to click through it)");
    }
}

fn forward(listener: std::net::TcpListener, ns: String, addr: String) {
    for client in listener.incoming().flatten() {
        let Ok(upstream) = in_netns(&ns, || std::net::TcpStream::connect(&addr)) else {
            continue;
        };
        for (mut from, mut to) in [
            (client.try_clone(), upstream.try_clone()),
            (upstream.try_clone(), client.try_clone()),
        ]
        .into_iter()
        .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
        {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from, &mut to);
                let _ = to.shutdown(std::net::Shutdown::Write);
            });
        }
    }
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Waits for SIGINT or SIGTERM (whichever thread receives it), so the lab's teardown
/// runs after it instead of the process dying with the lab up.
fn wait_for_interrupt() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    while !INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
    println!();
}

fn main() {
    let t0 = Instant::now();
    let clustered = std::env::args().any(|a| a == "--cluster");
    let mut lab = if clustered {
        say(
            "A lab of network namespaces: a collector cluster of three nodes (n1, n2, n3) on PostgreSQL and Kafka, h1 (web) and h2 (app) each with its agent knowing all three nodes; stand-ins for Splunk HEC, Duo, ServiceNow and SMTP",
        );
        ResponseLab::start_cluster("demo-cluster", 3, Roles::Uniform)
    } else {
        say(
            "A lab of network namespaces: a collector, h1 (web) and h2 (app), each with its agent; a Kafka broker and stand-ins for Splunk HEC, Duo, ServiceNow and SMTP next to the collector",
        );
        ResponseLab::start("demo")
    };
    lab.duo.set_user(ANALYST, Behaviour::ApproveAfter(1));
    println!("    logs: {}", lab.c.dir().display());
    println!("    agents enrolled over the network with a join token; mTLS from then on");
    cli(&lab.c, &["hosts"]);
    if clustered {
        cli(&lab.c, &["cluster", "status"]);
    }
    let (h1, h2) = (lab.h1().clone(), lab.h2().clone());
    let (h1, h2) = (&h1, &h2);

    say(
        "The policy people approved (published), and the playbook packaging/playbooks/isolate-on-violation.yaml",
    );
    show(POLICY);

    say("Normal traffic: the app calls the web tier");
    assert!(lab.connect(h2, h1, 8080, "curl"), "app -> web");
    std::thread::sleep(Duration::from_millis(800));
    cli(
        &lab.c,
        &[
            "flows",
            "--host",
            "h2",
            "--verdict",
            "permitted",
            "--limit",
            "2",
        ],
    );

    let killed = clustered.then(|| {
        say("A collector node dies: kill -9 of the node h2's agent is connected to");
        let i = kill_h2s_node(&mut lab);
        cli(&lab.c, &["cluster", "status"]);
        i
    });

    say("An attacker's program on h2 ('exfil', a copy of curl) reaches the admin port h1:9090");
    let c = &lab.c;
    let exfil = c.dir().join("exfil");
    std::fs::copy("/usr/bin/curl", &exfil).expect("copy curl");
    let started = Instant::now();
    assert!(lab.connect(h2, h1, 9090, &exfil.to_string_lossy()));

    say("The alert on Kafka (topic cordon.alerts, key = key_id, value = the HEC envelope)");
    let alert = in_netns(&c.fleet().collector_ns, || {
        wait_until("the alert on Kafka", Duration::from_secs(20), || {
            lab.broker()
                .consume(ALERTS_TOPIC, usize::MAX, Duration::from_secs(1))
                .into_iter()
                .filter_map(|(_, v)| serde_json::from_slice::<Value>(&v).ok())
                .find(|e| e["event"]["alert_details_json"]["host"]["name"] == "h2")
        })
    });
    show(alert["event"]["alert_text"].as_str().unwrap_or_default());
    say("... and in Splunk HEC (the stand-in, indexer acknowledgements on)");
    let at_hec = wait_until("the alert at HEC", Duration::from_secs(20), || {
        lab.hec
            .events()
            .into_iter()
            .find(|e| e["event"]["key_id"] == alert["event"]["key_id"])
    });
    println!(
        "    sourcetype={} severity={} key_id={}",
        at_hec["sourcetype"], at_hec["event"]["severity"], at_hec["event"]["key_id"]
    );

    say("The playbook asks the analyst on their phone: a Duo push (the stand-in approves)");
    let run = lab.wait_step(9090, Some("ask-release"), 30);
    let push = lab
        .duo
        .requests()
        .into_iter()
        .find(|r| r.path == "/auth/v2/auth")
        .expect("the push");
    for (k, v) in push.pushinfo.unwrap_or_default() {
        println!("    pushinfo {k}: {v}");
    }
    println!(
        "    decided by {}; the run reached the release question {} ms after the connect",
        run["context"]["decided_by"],
        started.elapsed().as_millis()
    );

    say("h2 is isolated: the app can no longer reach the web tier, but its agent still reports");
    let cut = !lab.connect(h2, h1, 8080, "curl");
    println!(
        "    curl h2 -> h1:8080: {}",
        if cut { "fails" } else { "works (unexpected!)" }
    );
    cli(c, &["hosts"]);

    say("The ServiceNow incident (one per alert key) and the e-mails to the SOC");
    for i in lab.snow.incidents() {
        let f = |k: &str| i.fields.get(k).cloned().unwrap_or_default();
        println!(
            "    {} {} (correlation_id {})",
            i.number,
            f("short_description"),
            f("correlation_id")
        );
    }
    for m in lab.smtp.messages() {
        let subject = m
            .data
            .lines()
            .find(|l| l.starts_with("Subject:"))
            .unwrap_or_default();
        println!("    mail to {:?}: {subject}", m.to);
    }
    cli(c, &["runs"]);

    if let Some(i) = killed {
        say("The dead node comes back and rejoins the cluster");
        let nodes = lab.c.nodes_mut();
        nodes.spawn_node(i);
        nodes.wait_node(i);
        std::thread::sleep(Duration::from_secs(2));
        cli(&lab.c, &["cluster", "status"]);
    }
    let c = &lab.c;

    say("The analyst cleans h2 and approves the release on the console");
    lab.approve_release(&run);
    println!("    $ cordon approve <the release approval>");
    lab.wait_step(9090, None, 30);
    wait_until("the release", Duration::from_secs(30), || {
        lab.connect(h2, h1, 8080, "curl").then_some(())
    });
    println!("    curl h2 -> h1:8080: works again");
    let resolved = wait_until("the incident resolved", Duration::from_secs(10), || {
        lab.snow
            .incidents()
            .into_iter()
            .find(|i| i.fields.get("state").is_some_and(|s| s == "6"))
    });
    let notes = resolved
        .fields
        .get("close_notes")
        .cloned()
        .unwrap_or_default();
    println!("    {} resolved: {notes}", resolved.number);
    cli(c, &["run", "show", &run["id"].to_string()]);
    cli(c, &["audit", "--limit", "8"]);
    console(&lab);
    lab.stop();
    drop(lab);
    say(&format!(
        "Done in {:.0?}; the lab is torn down.",
        t0.elapsed()
    ));
}
