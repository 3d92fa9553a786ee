//! `{placeholder}` substitution in playbook messages (the names are checked at load).
use serde_json::Value;

use super::trigger::AlertFacts;

/// Renders `text` for a run: alert facts, then what earlier steps left in the context.
pub fn render(text: &str, playbook: &str, run: i64, f: &AlertFacts, ctx: &Value) -> String {
    let c = |k: &str| ctx[k].as_str().unwrap_or("").to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find('}') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let name = &rest[i + 1..i + j];
        let v = match name {
            "playbook" => playbook.to_string(),
            "run" => run.to_string(),
            "host" => f.host.clone(),
            "severity" => f.severity.clone(),
            "alert_text" => f.alert_text.clone(),
            "key_id" => f.key_id.clone(),
            "rule" => f.rule.clone(),
            "remote" => f.remote.clone(),
            "exe" => f.exe.clone(),
            "count" => f.count.to_string(),
            "outcome" => c("outcome"),
            "decided_by" => c("decided_by"),
            "incident" => c("incident"),
            "approval_link" => c("approval_link"),
            other => format!("{{{other}}}"),
        };
        out.push_str(&v);
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    out
}
