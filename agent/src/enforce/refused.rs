//! Traffic the enforcer refused, as flow records with the verdict "dropped": the collector
//! judges them `rejected`, not `escaped`.
use std::{
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use cordon_enforcer::Refused;

use crate::{
    process::procinfo::read_proc,
    record::{Direction, ExportEvent, FlowRecord, FlowState, ProcessInfo, Proto, Totals},
};

/// `capture` of these records: they come from the enforcer, not from a capture.
pub const SOURCE: &str = "enforcer";

fn process(r: &Refused) -> Option<Arc<ProcessInfo>> {
    let pid = r.pid.filter(|p| *p != 0)?;
    let facts = read_proc(Path::new("/proc"), pid).unwrap_or_default();
    Some(Arc::new(ProcessInfo {
        pid,
        ppid: facts.ppid,
        uid: facts.uid.unwrap_or(0),
        user: None,
        comm: r.comm.clone().or(facts.comm).unwrap_or_default(),
        exe: facts.exe,
        cmdline: facts.cmdline,
        cgroup: facts.cgroup,
        json: Default::default(),
    }))
}

/// One record per refused flow, covering `window` up to now. A refused socket call counts as
/// one outgoing packet that never left.
pub fn records(host: &Arc<str>, refused: &[Refused], window: Duration) -> Vec<FlowRecord> {
    let now = SystemTime::now();
    let since = now.checked_sub(window).unwrap_or(now);
    refused
        .iter()
        .map(|r| {
            let packets = r.packets + r.attempts;
            let totals = if r.outbound {
                Totals {
                    bytes_out: r.bytes,
                    packets_out: packets,
                    ..Totals::default()
                }
            } else {
                Totals {
                    bytes_in: r.bytes,
                    packets_in: packets,
                    ..Totals::default()
                }
            };
            let process = process(r);
            FlowRecord {
                kind: "flow",
                host: host.clone(),
                event: ExportEvent::End,
                first_seen: since,
                last_seen: now,
                proto: Proto::from_number(r.proto),
                direction: if r.outbound {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                },
                local_ip: r.local.ip(),
                local_port: r.local.port(),
                remote_ip: r.remote.ip(),
                remote_port: r.remote.port(),
                totals,
                tcp_flags_out: None,
                tcp_flags_in: None,
                state: FlowState::Closed,
                verdict: "dropped",
                unattributed_reason: process
                    .is_none()
                    .then_some("refused by isolation before reaching a socket"),
                process,
                capture: SOURCE,
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn refused_traffic_becomes_dropped_records() {
        let host: Arc<str> = Arc::from("h1");
        let rs = [
            Refused {
                proto: 6,
                local: "0.0.0.0:0".parse().unwrap(),
                remote: "10.0.0.2:80".parse().unwrap(),
                outbound: true,
                packets: 0,
                bytes: 0,
                attempts: 3,
                pid: Some(std::process::id()),
                comm: Some("curl".into()),
            },
            Refused {
                proto: 1,
                local: "10.0.0.5:0".parse().unwrap(),
                remote: "10.0.0.2:0".parse().unwrap(),
                outbound: false,
                packets: 2,
                bytes: 168,
                attempts: 0,
                pid: None,
                comm: None,
            },
        ];
        let recs = records(&host, &rs, Duration::from_secs(1));
        assert_eq!(recs.len(), 2);
        let c = &recs[0];
        assert_eq!(c.verdict, "dropped");
        assert_eq!(c.direction, Direction::Outbound);
        assert_eq!(c.totals.packets_out, 3);
        let p = c.process.as_ref().unwrap();
        assert_eq!((p.pid, p.comm.as_str()), (std::process::id(), "curl"));
        assert!(
            p.exe.is_some(),
            "this test process is alive: its exe is read"
        );
        let i = &recs[1];
        assert_eq!(i.direction, Direction::Inbound);
        assert_eq!((i.totals.packets_in, i.totals.bytes_in), (2, 168));
        assert!(i.process.is_none() && i.unattributed_reason.is_some());
    }
}
