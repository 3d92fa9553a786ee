//! One function per command: ask the API, print a table (or the JSON with `--json`).
use serde_json::{Value, json};

use crate::{FlowArgs, client::Client, table};

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub fn health(c: &Client) -> anyhow::Result<()> {
    let h = c.get("/api/v1/health", &[])?;
    println!(
        "{} (version {}, {} agents connected)",
        s(&h["status"]),
        s(&h["version"]),
        s(&h["agents_connected"])
    );
    Ok(())
}

fn host_row(h: &Value) -> Vec<String> {
    let state = if h["revoked"] == true {
        "revoked".to_string()
    } else if h["connected"] == true {
        format!("connected from {}", s(&h["remote"]))
    } else {
        "offline".to_string()
    };
    vec![
        s(&h["id"]),
        s(&h["host_name"]),
        state,
        s(&h["capture"]),
        s(&h["agent_version"]),
        table::time(h["last_seen_ns"].as_u64()),
    ]
}

const HOST_HEADER: [&str; 6] = ["ID", "HOST", "STATE", "CAPTURE", "VERSION", "LAST CONNECT"];

pub fn hosts(c: &Client, json: bool) -> anyhow::Result<()> {
    let hosts = c.get("/api/v1/hosts", &[])?;
    if json {
        return print_json(&hosts);
    }
    let rows: Vec<Vec<String>> = hosts
        .as_array()
        .into_iter()
        .flatten()
        .map(host_row)
        .collect();
    table::print(&HOST_HEADER, &rows);
    Ok(())
}

pub fn host(c: &Client, id: &str, json: bool) -> anyhow::Result<()> {
    let h = c.get(&format!("/api/v1/hosts/{id}"), &[])?;
    if json {
        return print_json(&h);
    }
    table::print(&HOST_HEADER, &[host_row(&h)]);
    let inv = &h["inventory"];
    if inv.is_null() {
        println!("\nno inventory yet");
        return Ok(());
    }
    println!(
        "\n{} / kernel {} / {} CPUs / {} MiB",
        s(&inv["os"]),
        s(&inv["kernel"]),
        s(&inv["cpus"]),
        inv["memory_bytes"].as_u64().unwrap_or(0) >> 20
    );
    println!();
    let rows: Vec<Vec<String>> = inv["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let addrs: Vec<String> = i["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .map(s)
                .collect();
            vec![s(&i["name"]), addrs.join(", ")]
        })
        .collect();
    table::print(&["INTERFACE", "ADDRESSES"], &rows);
    println!();
    let rows: Vec<Vec<String>> = inv["listening"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let p = &l["process"];
            vec![
                s(&l["proto"]).to_lowercase(),
                s(&l["local"]),
                s(&p["pid"]),
                s(&p["exe"]),
            ]
        })
        .collect();
    table::print(&["PROTO", "LISTENING", "PID", "EXE"], &rows);
    Ok(())
}

pub fn revoke(c: &Client, id: &str) -> anyhow::Result<()> {
    c.post(&format!("/api/v1/hosts/{id}/revoke"), &json!({}))?;
    println!("{id} revoked: its certificate is refused from now on");
    Ok(())
}

pub fn flows(c: &Client, a: &FlowArgs) -> anyhow::Result<()> {
    let mut q: Vec<(&str, String)> = vec![("limit", a.limit.to_string())];
    let opts = [
        ("host", a.host.clone()),
        ("remote_ip", a.remote_ip.clone()),
        ("port", a.port.map(|p| p.to_string())),
        ("exe", a.exe.clone()),
        ("since", a.since.clone()),
        ("until", a.until.clone()),
    ];
    q.extend(opts.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    let flows = c.get("/api/v1/flows", &q)?;
    if a.json {
        // One record per line, like `cordon-agent watch --json`.
        for f in flows.as_array().into_iter().flatten() {
            println!("{f}");
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = flows
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let arrow = if f["direction"] == "inbound" {
                "<-"
            } else {
                "->"
            };
            vec![
                table::time(f["last_seen_ns"].as_u64()),
                s(&f["host"]),
                s(&f["event"]),
                s(&f["proto"]),
                format!("{}:{}", s(&f["local_ip"]), s(&f["local_port"])),
                arrow.into(),
                format!("{}:{}", s(&f["remote_ip"]), s(&f["remote_port"])),
                format!("{}/{}", s(&f["bytes_out"]), s(&f["bytes_in"])),
                s(&f["pid"]),
                s(&f["exe"]),
            ]
        })
        .collect();
    table::print(
        &[
            "LAST SEEN",
            "HOST",
            "EVENT",
            "PROTO",
            "LOCAL",
            "",
            "REMOTE",
            "BYTES OUT/IN",
            "PID",
            "EXE",
        ],
        &rows,
    );
    Ok(())
}

pub fn token_create(
    c: &Client,
    name: &str,
    scope: &str,
    expires_in: Option<String>,
    uses: Option<u64>,
    json: bool,
) -> anyhow::Result<()> {
    let mut body = json!({"name": name, "scope": scope});
    if let Some(e) = expires_in {
        body["expires_in"] = json!(e);
    }
    if let Some(u) = uses {
        body["uses"] = json!(u);
    }
    let t = c.post("/api/v1/tokens", &body)?;
    if json {
        return print_json(&t);
    }
    // The secret alone on stdout, so `cordon token create > file` keeps just it.
    println!("{}", s(&t["token"]));
    eprintln!(
        "token {} ({}, scope {}, expires {}{}): shown once, store it now",
        s(&t["id"]),
        s(&t["name"]),
        s(&t["scope"]),
        table::time(t["expires_ns"].as_u64()),
        t["uses_left"]
            .as_u64()
            .map_or(String::new(), |u| format!(", {u} uses"))
    );
    Ok(())
}

pub fn token_list(c: &Client, json: bool) -> anyhow::Result<()> {
    let list = c.get("/api/v1/tokens", &[])?;
    if json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            vec![
                s(&t["id"]),
                s(&t["name"]),
                s(&t["scope"]),
                table::time(t["created_ns"].as_u64()),
                table::time(t["expires_ns"].as_u64()),
                s(&t["uses_left"]),
                if t["revoked"] == true {
                    "revoked"
                } else {
                    "active"
                }
                .into(),
            ]
        })
        .collect();
    table::print(
        &[
            "ID",
            "NAME",
            "SCOPE",
            "CREATED",
            "EXPIRES",
            "USES LEFT",
            "STATE",
        ],
        &rows,
    );
    Ok(())
}

pub fn token_revoke(c: &Client, id: i64) -> anyhow::Result<()> {
    c.post(&format!("/api/v1/tokens/{id}/revoke"), &json!({}))?;
    println!("token {id} revoked");
    Ok(())
}
