//! Compliance alerts in Tetration's form (`docs/alerts.md`): one alert per `key_id` —
//! the host, process, remote address, service port and rule of an escaped flow — with a
//! count and first/last times; published to the outputs as Splunk HEC envelopes when new,
//! and again at most every `republish_secs` while it keeps happening (unless snoozed or
//! muted).
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{outputs::Envelope, policy::Severity};

/// `[alerts]` in the collector's config.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// An alert that keeps happening is published again at most this often, in seconds
    /// (with its updated count); 0: only when new.
    pub republish_secs: u64,
    /// Splunk index for the HEC envelope (`index`); empty: the token's default.
    pub index: String,
    /// The envelope's `source`.
    pub source: String,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            republish_secs: 60,
            index: String::new(),
            source: "cordon".into(),
        }
    }
}

/// What a violation is about: everything in the alert except times and counts.
#[derive(Clone, Debug)]
pub struct Violation<'a> {
    pub agent_id: &'a str,
    pub host_name: &'a str,
    pub record: &'a cordon_wire::FlowRecord,
    pub rule: &'a str,
    pub action: &'a str,
    pub policy_version: i64,
    pub severity: Severity,
    /// escaped (or rejected).
    pub verdict: &'a str,
}

fn proto(p: cordon_wire::Proto) -> String {
    crate::store::proto_name(p)
}

impl Violation<'_> {
    /// The service port: the remote one for outbound flows, the local one for inbound.
    pub fn service_port(&self) -> u16 {
        match self.record.direction {
            cordon_wire::Direction::Outbound => self.record.remote.port(),
            cordon_wire::Direction::Inbound => self.record.local.port(),
        }
    }

    /// The dedup key: host, process, remote address, service port, rule.
    pub fn key_id(&self) -> String {
        let exe = self
            .record
            .process
            .as_ref()
            .and_then(|p| p.exe.as_deref())
            .unwrap_or("");
        let mut h = Sha256::new();
        for part in [
            self.agent_id,
            exe,
            &self.record.remote.ip().to_string(),
            &self.service_port().to_string(),
            &proto(self.record.proto),
            self.rule,
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The alert JSON, Tetration style.
    pub fn alert(
        &self,
        key_id: &str,
        count: u64,
        first_ns: u64,
        last_ns: u64,
        now_ns: u64,
    ) -> Value {
        let r = self.record;
        let ms = |ns: u64| ns / 1_000_000;
        let process = r.process.as_ref().map(|p| {
            json!({
                "pid": p.pid, "ppid": p.ppid, "uid": p.uid, "user": p.user, "comm": p.comm,
                "exe": p.exe, "cmdline": p.cmdline, "cgroup": p.cgroup,
            })
        });
        let exe = r
            .process
            .as_ref()
            .and_then(|p| p.exe.clone())
            .unwrap_or_else(|| "unknown process".into());
        let direction = match r.direction {
            cordon_wire::Direction::Outbound => "outbound",
            cordon_wire::Direction::Inbound => "inbound",
        };
        let details = json!({
            "host": {"id": self.agent_id, "name": self.host_name},
            "flow": {
                "proto": proto(r.proto), "direction": direction,
                "local_ip": r.local.ip().to_string(), "local_port": r.local.port(),
                "remote_ip": r.remote.ip().to_string(), "remote_port": r.remote.port(),
                "first_seen": ms(r.first_seen_ns), "last_seen": ms(r.last_seen_ns),
                "bytes_out": r.bytes_out, "bytes_in": r.bytes_in,
            },
            "process": process,
            "rule": {"name": self.rule, "action": self.action},
            "policy_version": self.policy_version,
            "verdict": self.verdict,
            "count": count,
            "first_seen": ms(first_ns),
            "last_seen": ms(last_ns),
        });
        let arrow = if direction == "outbound" { "->" } else { "<-" };
        let text = format!(
            "{} flow on {}: {exe} {}:{} {arrow} {}:{}/{} violates {} (policy version {})",
            if self.verdict == "rejected" {
                "Rejected"
            } else {
                "Escaped"
            },
            self.host_name,
            r.local.ip(),
            r.local.port(),
            r.remote.ip(),
            r.remote.port(),
            proto(r.proto),
            self.rule,
            self.policy_version,
        );
        json!({
            "key_id": key_id,
            "type": "COMPLIANCE",
            "severity": self.severity.as_str(),
            "event_time": ms(r.first_seen_ns),
            "alert_time": ms(now_ns),
            "alert_text": text,
            "alert_details": details.to_string(),
            "alert_details_json": details,
        })
    }
}

/// The HEC envelope of an alert.
pub fn envelope(
    settings: &AlertSettings,
    host_name: &str,
    key_id: &str,
    alert: Value,
    now_ns: u64,
) -> Envelope {
    let mut hec = json!({
        "time": now_ns as f64 / 1e9,
        "host": host_name,
        "source": settings.source,
        "sourcetype": "cordon:alert",
        "event": alert,
    });
    if !settings.index.is_empty() {
        hec["index"] = json!(settings.index);
    }
    Envelope {
        key: key_id.to_string(),
        hec,
    }
}
