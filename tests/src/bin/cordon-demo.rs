//! `make demo`: the reference threat-response scenario on this machine, narrated, in a lab
//! of network namespaces (root). A collector and two servers (h1 "web", h2 "app"), each
//! with its agent; a Kafka-protocol broker (tansu) and local stand-ins for Splunk HEC,
//! Duo (it approves), ServiceNow and an SMTP server, all inside the collector's namespace
//! (`cordon_tests::response_lab`). The shipped playbook `isolate-on-violation` does the
//! rest. Everything is torn down at the end (also on failure); no traffic leaves the lab.
use std::time::{Duration, Instant};

use cordon_connectors::standin::duo::Behaviour;
use cordon_tests::{
    cluster::Cluster,
    in_netns,
    kafka_broker::ALERTS_TOPIC,
    response_lab::{ANALYST, POLICY, ResponseLab},
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

fn cli(c: &Cluster, args: &[&str]) {
    println!("    $ cordon {}", args.join(" "));
    show(c.cordon(args).as_str().unwrap_or_default());
}

fn main() {
    let t0 = Instant::now();
    say(
        "A lab of network namespaces: a collector, h1 (web) and h2 (app), each with its agent; a Kafka broker and stand-ins for Splunk HEC, Duo, ServiceNow and SMTP next to the collector",
    );
    let mut lab = ResponseLab::start("demo");
    lab.duo.set_user(ANALYST, Behaviour::ApproveAfter(1));
    let (c, h1, h2) = (&lab.c, lab.h1(), lab.h2());
    println!(
        "    collector log: {}",
        c.dir.join("collector-1.err").display()
    );
    println!("    agents enrolled over the network with a join token; mTLS from then on");
    cli(c, &["hosts"]);

    say(
        "The policy people approved (published), and the playbook packaging/playbooks/isolate-on-violation.yaml",
    );
    show(POLICY);

    say("Normal traffic: the app calls the web tier");
    assert!(lab.connect(h2, h1, 8080, "curl"), "app -> web");
    std::thread::sleep(Duration::from_millis(800));
    cli(
        c,
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

    say("An attacker's program on h2 ('exfil', a copy of curl) reaches the admin port h1:9090");
    let exfil = c.dir.join("exfil");
    std::fs::copy("/usr/bin/curl", &exfil).expect("copy curl");
    let started = Instant::now();
    assert!(lab.connect(h2, h1, 9090, &exfil.to_string_lossy()));

    say("The alert on Kafka (topic cordon.alerts, key = key_id, value = the HEC envelope)");
    let alert = in_netns(&c.fleet.collector_ns, || {
        wait_until("the alert on Kafka", Duration::from_secs(20), || {
            lab.broker
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
    lab.stop();
    drop(lab);
    say(&format!(
        "Done in {:.0?}; the lab is torn down.",
        t0.elapsed()
    ));
}
