//! Querying stored flows (what `GET /api/v1/flows` and `cordon flows` will serve).
use rusqlite::{ToSql, types::Value};

use super::{Store, StoreError};

/// Most rows one query returns.
pub const MAX_LIMIT: usize = 10_000;

/// Filters; every one is optional, all given ones must match.
#[derive(Clone, Debug, Default)]
pub struct FlowFilter {
    /// Agent id or host name.
    pub host: Option<String>,
    pub remote_ip: Option<std::net::IpAddr>,
    /// Local or remote port.
    pub port: Option<u16>,
    /// Exact executable path.
    pub exe: Option<String>,
    /// Compliance verdict: permitted, escaped or rejected.
    pub verdict: Option<String>,
    /// Flows last seen at or after this Unix ns.
    pub since_ns: Option<u64>,
    /// Flows first seen before this Unix ns.
    pub until_ns: Option<u64>,
    /// At most this many rows, newest first (0 means 100; capped at `MAX_LIMIT`).
    pub limit: usize,
}

/// One stored flow record. Times are Unix ns.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct FlowRow {
    /// The host's name.
    pub host: String,
    /// start, update or end.
    pub event: String,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub proto: String,
    pub direction: String,
    pub local_ip: String,
    pub local_port: u16,
    pub remote_ip: String,
    pub remote_port: u16,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub pid: Option<u32>,
    pub exe: Option<String>,
    /// forwarded or dropped, as the network saw it.
    pub verdict: String,
    /// Against the published policy: permitted, escaped (a violation the network let
    /// through) or rejected (denied and blocked); absent when no policy was published.
    pub policy_verdict: Option<String>,
    /// The rule (or catch-all) that decided.
    pub policy_rule: Option<String>,
    pub policy_version: Option<i64>,
}

impl Store {
    pub fn flows(&self, f: &FlowFilter) -> Result<Vec<FlowRow>, StoreError> {
        let mut sql = String::from(
            "SELECT h.host_name, f.event, f.first_seen_ns, f.last_seen_ns, f.proto, f.direction,
                    f.local_ip, f.local_port, f.remote_ip, f.remote_port, f.bytes_out,
                    f.bytes_in, f.pid, f.exe, f.verdict, f.policy_verdict, f.policy_rule,
                    f.policy_version
             FROM flows f JOIN hosts h ON h.id = f.host_id WHERE 1 = 1",
        );
        let mut args: Vec<Value> = Vec::new();
        let mut add = |clause: &str, values: Vec<Value>| {
            sql.push_str(clause);
            args.extend(values);
        };
        if let Some(h) = &f.host {
            add(
                " AND (h.agent_id = ? OR h.host_name = ?)",
                vec![h.clone().into(), h.clone().into()],
            );
        }
        if let Some(ip) = f.remote_ip {
            add(" AND f.remote_ip = ?", vec![ip.to_string().into()]);
        }
        if let Some(p) = f.port {
            add(
                " AND (f.remote_port = ? OR f.local_port = ?)",
                vec![i64::from(p).into(), i64::from(p).into()],
            );
        }
        if let Some(exe) = &f.exe {
            add(" AND f.exe = ?", vec![exe.clone().into()]);
        }
        if let Some(v) = &f.verdict {
            add(" AND f.policy_verdict = ?", vec![v.clone().into()]);
        }
        if let Some(t) = f.since_ns {
            add(" AND f.last_seen_ns >= ?", vec![super::ns(t).into()]);
        }
        if let Some(t) = f.until_ns {
            add(" AND f.first_seen_ns < ?", vec![super::ns(t).into()]);
        }
        let limit = match f.limit {
            0 => 100,
            n => n.min(MAX_LIMIT),
        };
        sql.push_str(" ORDER BY f.last_seen_ns DESC, f.id DESC LIMIT ?");
        args.push(Value::Integer(limit as i64));
        let params: Vec<&dyn ToSql> = args.iter().map(|v| v as &dyn ToSql).collect();
        let mut q = self.conn.prepare(&sql)?;
        let rows = q.query_map(params.as_slice(), |r| {
            Ok(FlowRow {
                host: r.get(0)?,
                event: r.get(1)?,
                first_seen_ns: r.get::<_, i64>(2)? as u64,
                last_seen_ns: r.get::<_, i64>(3)? as u64,
                proto: r.get(4)?,
                direction: r.get(5)?,
                local_ip: r.get(6)?,
                local_port: r.get(7)?,
                remote_ip: r.get(8)?,
                remote_port: r.get(9)?,
                bytes_out: r.get::<_, i64>(10)? as u64,
                bytes_in: r.get::<_, i64>(11)? as u64,
                pid: r.get(12)?,
                exe: r.get(13)?,
                verdict: r.get(14)?,
                policy_verdict: r.get(15)?,
                policy_rule: r.get(16)?,
                policy_version: r.get(17)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
