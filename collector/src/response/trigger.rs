//! Which alerts start which playbooks.
use std::collections::BTreeMap;

use serde_json::Value;

use super::playbook::Trigger;
use crate::policy::document::Severity;

/// What a trigger and a run's messages need to know about an alert.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlertFacts {
    pub key_id: String,
    pub kind: String,
    pub severity: String,
    pub alert_text: String,
    pub agent_id: String,
    pub host: String,
    pub rule: String,
    pub verdict: String,
    /// `ip:port/proto` of the far end.
    pub remote: String,
    pub remote_ip: String,
    pub remote_port: u16,
    pub local_ip: String,
    pub proto: String,
    /// outbound or inbound, from the alerting host's side.
    #[serde(default)]
    pub direction: String,
    pub exe: String,
    pub count: u64,
}

impl AlertFacts {
    /// From the alert JSON (`None` when it is not an alert: the key is missing).
    pub fn from_alert(a: &Value) -> Option<Self> {
        let d = &a["alert_details_json"];
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let flow = &d["flow"];
        let remote_ip = s(&flow["remote_ip"]);
        let remote_port = flow["remote_port"].as_u64().unwrap_or(0) as u16;
        let proto = s(&flow["proto"]);
        Some(AlertFacts {
            key_id: a["key_id"].as_str()?.to_string(),
            kind: s(&a["type"]),
            severity: s(&a["severity"]),
            alert_text: s(&a["alert_text"]),
            agent_id: s(&d["host"]["id"]),
            host: s(&d["host"]["name"]),
            rule: s(&d["rule"]["name"]),
            verdict: s(&d["verdict"]),
            remote: format!("{remote_ip}:{remote_port}/{proto}"),
            remote_ip,
            remote_port,
            local_ip: s(&flow["local_ip"]),
            proto,
            direction: s(&flow["direction"]),
            exe: d["process"]["exe"]
                .as_str()
                .unwrap_or("unknown")
                .to_string(),
            count: d["count"].as_u64().unwrap_or(1),
        })
    }
}

/// Whether `t` starts a run for this alert on a host with these labels.
pub fn matches(t: &Trigger, a: &AlertFacts, labels: &BTreeMap<String, String>) -> bool {
    let sev_ok = Severity::parse(&a.severity).is_some_and(|s| s >= t.severity_at_least);
    sev_ok
        && t.kind.eq_ignore_ascii_case(&a.kind)
        && t.verdicts.contains(&a.verdict)
        && t.direction.as_ref().is_none_or(|d| *d == a.direction)
        && t.hosts.as_ref().is_none_or(|g| g.is_match(&a.host))
        && (t.rules.is_empty() || t.rules.contains(&a.rule))
        && t.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
}
