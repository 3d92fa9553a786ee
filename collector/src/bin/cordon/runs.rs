//! `cordon runs`, `cordon run show`, `cordon approvals`, `cordon approve`, `cordon deny`.
use serde_json::{Value, json};

use crate::{
    client::Client,
    commands::{list, print_json, s},
    table,
};

pub fn runs(c: &Client, state: Option<String>, json: bool) -> anyhow::Result<()> {
    let q: Vec<(&str, String)> = state.map(|v| ("state", v)).into_iter().collect();
    let header = [
        "ID", "PLAYBOOK", "HOST", "STATE", "STEP", "STARTED", "APPROVAL", "INCIDENT", "ERROR",
    ];
    list(c, "/api/v1/runs", &q, json, &header, |r| {
        vec![
            s(&r["id"]),
            s(&r["playbook"]),
            s(&r["host_name"]),
            s(&r["state"]),
            s(&r["step"]),
            table::time(r["created_ns"].as_u64()),
            s(&r["context"]["outcome"]),
            s(&r["context"]["incident"]),
            s(&r["error"]),
        ]
    })
}

pub fn run_show(c: &Client, id: i64, json: bool) -> anyhow::Result<()> {
    let d = c.get(&format!("/api/v1/runs/{id}"), &[])?;
    if json {
        return print_json(&d);
    }
    let r = &d["run"];
    println!(
        "run {} of playbook {} on {} ({}), alert {}",
        s(&r["id"]),
        s(&r["playbook"]),
        s(&r["host_name"]),
        s(&r["state"]),
        s(&r["alert_key"])
    );
    println!("alert: {}", s(&r["facts"]["alert_text"]));
    if let Some(e) = r["error"].as_str() {
        println!("error: {e}");
    }
    let rows: Vec<Vec<String>> = d["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|st| {
            vec![
                s(&st["step"]),
                s(&st["kind"]),
                s(&st["state"]),
                table::time(st["finished_ns"].as_u64()),
                st["detail"].to_string(),
            ]
        })
        .collect();
    table::print(&["STEP", "KIND", "RESULT", "FINISHED", "DETAIL"], &rows);
    if let Some(step) = r["step"].as_str() {
        println!(
            "now at: {step} (until {})",
            table::time(r["wake_ns"].as_u64())
        );
    }
    Ok(())
}

pub fn approvals(c: &Client, state: Option<String>, json: bool) -> anyhow::Result<()> {
    let q: Vec<(&str, String)> = state.map(|v| ("state", v)).into_iter().collect();
    let header = [
        "ID",
        "RUN",
        "VIA",
        "STATE",
        "DEADLINE",
        "DECIDED BY",
        "QUESTION",
    ];
    list(c, "/api/v1/approvals", &q, json, &header, |a| {
        vec![
            s(&a["id"]),
            s(&a["run_id"]),
            s(&a["via"]),
            s(&a["state"]),
            table::time(a["deadline_ns"].as_u64()),
            s(&a["decided_by"]),
            s(&a["question"]),
        ]
    })
}

pub fn decide(c: &Client, id: i64, approve: bool, json: bool) -> anyhow::Result<()> {
    let verb = if approve { "approve" } else { "deny" };
    let a: Value = c.post(&format!("/api/v1/approvals/{id}/{verb}"), &json!({}))?;
    if json {
        return print_json(&a);
    }
    println!(
        "approval {} {} by {}",
        s(&a["id"]),
        s(&a["state"]),
        s(&a["decided_by"])
    );
    Ok(())
}
