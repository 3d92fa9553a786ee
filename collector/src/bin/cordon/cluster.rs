//! `cordon cluster status` and `cordon cluster forget NODE`.
use serde_json::Value;

use super::{client::Client, commands::print_json, table};

/// The nodes, their agents, consumer lag and last heartbeat, as any node answers.
pub fn status(c: &Client, json: bool) -> anyhow::Result<()> {
    let s = c.get("/api/v1/cluster", &[])?;
    if json {
        return print_json(&s);
    }
    println!(
        "{} collector, answered by {}",
        s["mode"].as_str().unwrap_or("?"),
        s["answered_by"].as_str().unwrap_or("?")
    );
    let num = |v: &Value| v.as_i64().map_or_else(|| "-".into(), |n| n.to_string());
    let rows: Vec<Vec<String>> = s["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let st = &n["stats"];
            vec![
                n["name"].as_str().unwrap_or("").to_string(),
                if n["up"].as_bool() == Some(true) {
                    "up".into()
                } else {
                    "DOWN".into()
                },
                format!("{} ms ago", n["heartbeat_age_ms"]),
                n["agent_addr"].as_str().unwrap_or("").to_string(),
                n["agents"].as_array().map_or(0, Vec::len).to_string(),
                num(&st["worker_partitions"]),
                num(&st["worker_lag"]),
                num(&st["batches_appended"]),
                num(&st["batches_stored"]),
                num(&st["worker_rebalances"]),
            ]
        })
        .collect();
    table::print(
        &[
            "NODE",
            "STATE",
            "HEARTBEAT",
            "AGENTS AT",
            "AGENTS",
            "PARTITIONS",
            "LAG",
            "APPENDED",
            "STORED",
            "REBALANCES",
        ],
        &rows,
    );
    let lost = s["agents_disconnected"].as_array().map_or(0, Vec::len);
    if lost > 0 {
        println!("{lost} host(s) on no node that is up");
    }
    Ok(())
}

/// Removes a node taken out of the cluster from the status (refused while it beats).
pub fn forget(c: &Client, node: &str) -> anyhow::Result<()> {
    c.post(
        &format!("/api/v1/cluster/nodes/{node}/forget"),
        &Value::Null,
    )?;
    println!("node {node} forgotten");
    Ok(())
}
