//! What the agent exports for each flow: a record modelled on Tetration's flow observation.
//! Sent when a flow is first seen, then every export interval with totals, and at its end.
use std::{net::IpAddr, sync::Arc, time::SystemTime};

use serde::{Serialize, Serializer};

/// Transport protocol of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    Other(u8),
}

impl Proto {
    pub fn from_number(n: u8) -> Self {
        match n {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            1 => Proto::Icmp,
            58 => Proto::Icmpv6,
            other => Proto::Other(other),
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Icmp => 1,
            Proto::Icmpv6 => 58,
            Proto::Other(n) => n,
        }
    }

    pub fn name(self) -> String {
        match self {
            Proto::Tcp => "tcp".into(),
            Proto::Udp => "udp".into(),
            Proto::Icmp => "icmp".into(),
            Proto::Icmpv6 => "icmpv6".into(),
            Proto::Other(n) => format!("ip-{n}"),
        }
    }
}

impl Serialize for Proto {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

/// A flow's identity from this host's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId {
    pub proto: Proto,
    pub local_ip: IpAddr,
    pub local_port: u16,
    pub remote_ip: IpAddr,
    pub remote_port: u16,
}

/// Who initiated the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// This host sent the first packet.
    Outbound,
    /// The peer did.
    Inbound,
}

/// Why a record is being exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportEvent {
    /// First time the flow is seen.
    Start,
    /// Periodic export of an open flow's totals.
    Update,
    /// Final export: closed (FIN/RST) or idle past the timeout.
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowState {
    Open,
    Closed,
}

/// Bytes (IP layer) and packets each way, totals since the flow was first seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub packets_in: u64,
}

/// The process behind a flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    /// Process id (thread-group id).
    pub pid: u32,
    pub ppid: Option<u32>,
    pub uid: u32,
    pub user: Option<String>,
    pub comm: String,
    /// Path of the executable; `None` when the process was gone before it could be read
    /// and its exec was not seen.
    pub exe: Option<String>,
    /// Command line, arguments separated by spaces, at most 4 KiB.
    pub cmdline: Option<String>,
    /// cgroup v2 path relative to the cgroup2 root.
    pub cgroup: Option<String>,
    /// This object already rendered as JSON: a process has many flows, and escaping its
    /// command line again for each record was the largest cost of JSON output.
    #[serde(skip)]
    pub json: JsonCache,
}

/// A lazily rendered JSON form of a value; ignored by comparisons.
#[derive(Default)]
pub struct JsonCache(std::sync::OnceLock<Box<serde_json::value::RawValue>>);

impl Clone for JsonCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for JsonCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonCache")
    }
}

impl PartialEq for JsonCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for JsonCache {}

fn process_json<S: Serializer>(p: &Option<Arc<ProcessInfo>>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        None => s.serialize_none(),
        Some(p) => {
            let raw = match p.json.0.get() {
                Some(raw) => raw,
                None => {
                    let rendered =
                        serde_json::value::to_raw_value(&**p).map_err(serde::ser::Error::custom)?;
                    p.json.0.get_or_init(|| rendered)
                }
            };
            raw.serialize(s)
        }
    }
}

/// One exported flow record.
#[derive(Clone, Debug, Serialize)]
pub struct FlowRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub host: Arc<str>,
    pub event: ExportEvent,
    #[serde(serialize_with = "rfc3339")]
    pub first_seen: SystemTime,
    #[serde(serialize_with = "rfc3339")]
    pub last_seen: SystemTime,
    pub proto: Proto,
    pub direction: Direction,
    pub local_ip: IpAddr,
    pub local_port: u16,
    pub remote_ip: IpAddr,
    pub remote_port: u16,
    #[serde(flatten)]
    pub totals: Totals,
    /// TCP flags seen sent and received, e.g. "SYN,ACK,FIN".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_flags_out: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_flags_in: Option<String>,
    pub state: FlowState,
    /// Enforcement verdict: "forwarded", or "dropped" for traffic isolation refused.
    pub verdict: &'static str,
    #[serde(serialize_with = "process_json")]
    pub process: Option<Arc<ProcessInfo>>,
    /// Why `process` is null.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unattributed_reason: Option<&'static str>,
    /// Which capture produced the record: "ebpf" or "procfs".
    pub capture: &'static str,
}

fn rfc3339<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_micros(*t))
}

/// TCP flag bits as a readable list.
pub fn tcp_flag_names(bits: u8) -> String {
    const NAMES: [(u8, &str); 6] = [
        (0x02, "SYN"),
        (0x10, "ACK"),
        (0x08, "PSH"),
        (0x01, "FIN"),
        (0x04, "RST"),
        (0x20, "URG"),
    ];
    let mut out = String::new();
    for (bit, name) in NAMES {
        if bits & bit != 0 {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(name);
        }
    }
    out
}
