//! `cordon learn` (a draft policy from observed flows) and `cordon policy approve`.
use std::{
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    client::Client,
    commands::{print_json, s},
    table,
};

/// What `cordon learn` asks for.
pub struct LearnArgs {
    pub since: String,
    pub until: Option<String>,
    pub partition: Option<String>,
    pub threshold: Option<f64>,
    pub groups: Option<String>,
    pub name: Option<String>,
    pub json: bool,
}

fn f3(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".into(), |x| format!("{x:.2}"))
}

pub fn learn(c: &Client, a: &LearnArgs) -> anyhow::Result<()> {
    let mut body = json!({ "since": a.since });
    for (k, v) in [
        ("until", &a.until),
        ("partition", &a.partition),
        ("groups", &a.groups),
        ("name", &a.name),
    ] {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    if let Some(t) = a.threshold {
        body["threshold"] = json!(t);
    }
    eprintln!("learning from the flows since {}…", a.since);
    // The API answers when the draft is stored; meanwhile, show that it is working.
    let done = Arc::new(AtomicBool::new(false));
    let ticker = {
        let done = done.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            while !done.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(250));
                let s = t.elapsed().as_secs();
                if s >= 3 && t.elapsed().subsec_millis() < 250 && !done.load(Ordering::Acquire) {
                    eprint!("\r  still learning… {s} s");
                    let _ = std::io::stderr().flush();
                }
            }
        })
    };
    let res = c.post_slow("/api/v1/learn", &body, Duration::from_secs(30 * 60));
    done.store(true, Ordering::Release);
    let _ = ticker.join();
    let r = res?;
    if a.json {
        return print_json(&r);
    }
    eprintln!(
        "\rlearned from {} flow records ({} conversations, {} hosts) in {:.1} s",
        s(&r["records"]),
        s(&r["conversations"]),
        s(&r["hosts"]),
        r["elapsed_ms"].as_f64().unwrap_or(0.0) / 1000.0
    );
    let empty = Vec::new();
    let list = |v: &Value| v.as_array().unwrap_or(&empty).clone();
    let clusters: Vec<Vec<String>> = list(&r["clusters"])
        .iter()
        .map(|c| {
            let hosts: Vec<String> = list(&c["hosts"]).iter().map(|h| s(&h["name"])).collect();
            let shown = if hosts.len() > 4 {
                format!("{}, … ({} hosts)", hosts[..3].join(", "), hosts.len())
            } else {
                hosts.join(", ")
            };
            vec![
                s(&c["group"]),
                hosts.len().to_string(),
                f3(&c["confidence"]),
                if c["replaced_by_approved"].as_bool() == Some(true) {
                    "approved kept".into()
                } else {
                    String::new()
                },
                shown,
            ]
        })
        .collect();
    println!();
    table::print(
        &["GROUP", "HOSTS", "CONFIDENCE", "NOTE", "MEMBERS"],
        &clusters,
    );
    let rules: Vec<Vec<String>> = list(&r["rules"])
        .iter()
        .map(|x| {
            let mut flags = Vec::new();
            for (k, label) in [
                ("approved", "approved"),
                ("broad", "BROAD"),
                ("unused", "UNUSED"),
            ] {
                if x[k].as_bool() == Some(true) {
                    flags.push(label);
                }
            }
            let ports: Vec<String> = list(&x["ports"]).iter().map(s).collect();
            let used = match x["consumer_members"].as_u64() {
                Some(m) => format!("{}/{m}", s(&x["consumers_used"])),
                None => s(&x["consumers_used"]),
            };
            vec![
                s(&x["name"]),
                ports.join(","),
                if x["process"].is_null() {
                    String::new()
                } else {
                    s(&x["process"])
                },
                s(&x["flows"]),
                used,
                table::time(x["last_seen_ns"].as_u64()),
                flags.join(","),
            ]
        })
        .collect();
    println!();
    table::print(
        &[
            "RULE",
            "PORTS",
            "PROCESS",
            "FLOWS",
            "USED BY",
            "LAST SEEN",
            "FLAGS",
        ],
        &rules,
    );
    let v = s(&r["version"]);
    println!();
    if let Some(from) = r["carried_from"].as_i64() {
        println!(
            "kept as approved in version {from}: groups {}; rules {}",
            list(&r["carried_groups"])
                .iter()
                .map(s)
                .collect::<Vec<_>>()
                .join(", "),
            list(&r["carried_rules"])
                .iter()
                .map(s)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "draft version {v} stored. Review: cordon policy show {v} / cordon policy diff published {v}; \
         approve: cordon policy approve {v} --group G --rule R; publish: cordon policy publish {v}"
    );
    Ok(())
}

pub fn approve(
    c: &Client,
    version: i64,
    groups: &[String],
    rules: &[String],
    json: bool,
) -> anyhow::Result<()> {
    if groups.is_empty() && rules.is_empty() {
        anyhow::bail!("name at least one --group or --rule");
    }
    let r = c.post(
        &format!("/api/v1/policies/{version}/approve"),
        &json!({"groups": groups, "rules": rules}),
    )?;
    if json {
        return print_json(&r);
    }
    let names = |k: &str| {
        r[k].as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    println!(
        "version {version}: approved groups: {}; approved rules: {}",
        names("groups"),
        names("rules")
    );
    Ok(())
}
