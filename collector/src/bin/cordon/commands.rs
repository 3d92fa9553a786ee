//! One function per command: ask the API, print a table (or the JSON with `--json`).
use serde_json::{Value, json};

use crate::{FlowArgs, client::Client, table};

pub(crate) fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn print_json(v: &Value) -> anyhow::Result<()> {
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
    } else if h["isolated"] == true {
        format!(
            "ISOLATED since {} by {} ({})",
            table::time(h["isolated_since_ns"].as_u64()),
            s(&h["isolated_by"]),
            s(&h["enforcement_backend"])
        )
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
        ("verdict", a.verdict.clone()),
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
                s(&f["policy_verdict"]),
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
            "VERDICT",
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

pub fn label(c: &Client, host: &str, labels: &[String], remove: &[String]) -> anyhow::Result<()> {
    let mut set = serde_json::Map::new();
    for l in labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("`{l}`: labels are key=value"))?;
        set.insert(k.to_string(), json!(v));
    }
    let now = c.post(
        &format!("/api/v1/hosts/{host}/labels"),
        &json!({"set": set, "remove": remove}),
    )?;
    let text: Vec<String> = now
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", s(v)))
        .collect();
    println!(
        "{host}: {}",
        if text.is_empty() {
            "no labels".to_string()
        } else {
            text.join(" ")
        }
    );
    Ok(())
}

pub fn policy_apply(c: &Client, file: &std::path::Path) -> anyhow::Result<()> {
    let yaml = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
    let r = c
        .post("/api/v1/policies", &json!({"yaml": yaml}))
        .map_err(|e| anyhow::anyhow!("{}: {e:#}", file.display()))?;
    println!(
        "policy `{}` applied as draft version {} (publish it with: cordon policy publish {})",
        s(&r["name"]),
        s(&r["version"]),
        s(&r["version"])
    );
    Ok(())
}

pub fn policy_publish(c: &Client, version: i64) -> anyhow::Result<()> {
    c.post(&format!("/api/v1/policies/{version}/publish"), &json!({}))?;
    println!("policy version {version} published");
    Ok(())
}

pub fn policy_show(c: &Client, version: &str) -> anyhow::Result<()> {
    let p = c.get(&format!("/api/v1/policies/{version}"), &[])?;
    eprintln!(
        "# version {} `{}` ({}), applied {} by {}",
        s(&p["version"]),
        s(&p["name"]),
        s(&p["state"]),
        table::time(p["created_ns"].as_u64()),
        s(&p["created_by"])
    );
    print!("{}", p["body"].as_str().unwrap_or_default());
    Ok(())
}

pub fn policy_list(c: &Client, json: bool) -> anyhow::Result<()> {
    let list = c.get("/api/v1/policies", &[])?;
    if json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            vec![
                s(&p["version"]),
                s(&p["name"]),
                s(&p["state"]),
                table::time(p["created_ns"].as_u64()),
                s(&p["created_by"]),
                table::time(p["published_ns"].as_u64()),
                s(&p["published_by"]),
            ]
        })
        .collect();
    table::print(
        &[
            "VERSION",
            "NAME",
            "STATE",
            "APPLIED",
            "BY",
            "PUBLISHED",
            "BY",
        ],
        &rows,
    );
    Ok(())
}

pub fn policy_diff(c: &Client, from: &str, to: &str) -> anyhow::Result<()> {
    let d = c.get(
        "/api/v1/policies/diff",
        &[("from", from.to_string()), ("to", to.to_string())],
    )?;
    let changes: Vec<&str> = d["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    if changes.is_empty() {
        println!("no differences");
    }
    for l in changes {
        println!("{l}");
    }
    Ok(())
}

pub fn alerts(
    c: &Client,
    host: Option<String>,
    severity: Option<String>,
    since: Option<String>,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    let mut q = vec![("limit", limit.to_string())];
    q.extend(
        [("host", host), ("severity", severity), ("since", since)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v))),
    );
    let list = c.get("/api/v1/alerts", &q)?;
    if json {
        for a in list.as_array().into_iter().flatten() {
            println!("{a}");
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let state = if a["muted"] == true {
                "muted".to_string()
            } else if a["snoozed_until_ns"].as_u64().unwrap_or(0) > 0 {
                format!(
                    "snoozed until {}",
                    table::time(a["snoozed_until_ns"].as_u64())
                )
            } else {
                "active".to_string()
            };
            vec![
                table::time(a["last_ns"].as_u64()),
                s(&a["severity"]),
                s(&a["count"]),
                s(&a["key_id"]),
                state,
                s(&a["alert"]["alert_text"]),
            ]
        })
        .collect();
    table::print(
        &["LAST SEEN", "SEVERITY", "COUNT", "KEY", "STATE", "ALERT"],
        &rows,
    );
    Ok(())
}

pub fn alert_action(c: &Client, key: &str, action: &str, body: Value) -> anyhow::Result<()> {
    c.post(&format!("/api/v1/alerts/{key}/{action}"), &body)?;
    println!("alert {key}: {action} done");
    Ok(())
}

pub fn isolate(
    c: &Client,
    host: &str,
    reason: &str,
    duration: Option<String>,
    allow: &[String],
) -> anyhow::Result<()> {
    let mut body = json!({"reason": reason, "allow": allow});
    if let Some(d) = duration {
        body["expires_in"] = json!(d);
    }
    let r = c.post(&format!("/api/v1/hosts/{host}/isolate"), &body)?;
    println!(
        "isolate {host}: command {} queued (see `cordon commands --host {}`)",
        s(&r["id"]),
        s(&r["host"])
    );
    Ok(())
}

pub fn release(c: &Client, host: &str, reason: Option<String>) -> anyhow::Result<()> {
    let body = match reason {
        Some(r) => json!({"reason": r}),
        None => json!({}),
    };
    let r = c.post(&format!("/api/v1/hosts/{host}/release"), &body)?;
    println!("release {host}: command {} queued", s(&r["id"]));
    Ok(())
}

pub fn command_list(c: &Client, host: Option<String>, json: bool) -> anyhow::Result<()> {
    let q: Vec<(&str, String)> = host.map(|h| ("host", h)).into_iter().collect();
    let header = ["ID", "HOST", "KIND", "STATE", "CREATED", "BY", "RESULT"];
    list(c, "/api/v1/commands", &q, json, &header, |r| {
        vec![
            s(&r["id"]),
            s(&r["host"]),
            s(&r["kind"]),
            s(&r["state"]),
            table::time(r["created_ns"].as_u64()),
            s(&r["created_by"]),
            s(&r["result"]),
        ]
    })
}

pub fn audit(c: &Client, since: Option<String>, limit: usize, json: bool) -> anyhow::Result<()> {
    let mut q = vec![("limit", limit.to_string())];
    if let Some(v) = since {
        q.push(("since", v));
    }
    let header = ["TIME", "ACTOR", "ACTION", "TARGET", "DETAIL"];
    list(c, "/api/v1/audit", &q, json, &header, |a| {
        vec![
            table::time(a["ts_ns"].as_u64()),
            s(&a["actor"]),
            s(&a["action"]),
            s(&a["target"]),
            a["detail"].to_string(),
        ]
    })
}

/// GET `path`; print the JSON with `--json`, else a table with one row per element.
pub(crate) fn list(
    c: &Client,
    path: &str,
    q: &[(&str, String)],
    json: bool,
    header: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
) -> anyhow::Result<()> {
    let list = c.get(path, q)?;
    if json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list.as_array().into_iter().flatten().map(row).collect();
    table::print(header, &rows);
    Ok(())
}
