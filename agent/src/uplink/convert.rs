//! The agent's flow record in its wire form.
use std::{net::SocketAddr, time::UNIX_EPOCH};

use cordon_wire as wire;

use crate::record::{Direction, ExportEvent, FlowRecord, FlowState, ProcessInfo, Proto};

fn unix_ns(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
        .unwrap_or(0)
}

/// TCP flag names back to bits ("SYN,ACK" → 0x12).
fn flag_bits(names: Option<&str>) -> u8 {
    names.map_or(0, |n| {
        n.split(',').fold(0, |acc, f| {
            acc | match f {
                "FIN" => 0x01,
                "SYN" => 0x02,
                "RST" => 0x04,
                "PSH" => 0x08,
                "ACK" => 0x10,
                "URG" => 0x20,
                _ => 0,
            }
        })
    })
}

fn process(p: &ProcessInfo) -> wire::Process {
    wire::Process {
        pid: p.pid,
        ppid: p.ppid,
        uid: p.uid,
        user: p.user.clone(),
        comm: p.comm.clone(),
        exe: p.exe.clone(),
        cmdline: p.cmdline.clone(),
        cgroup: p.cgroup.clone(),
    }
}

pub fn to_wire(r: &FlowRecord) -> wire::FlowRecord {
    wire::FlowRecord {
        event: match r.event {
            ExportEvent::Start => wire::FlowEvent::Start,
            ExportEvent::Update => wire::FlowEvent::Update,
            ExportEvent::End => wire::FlowEvent::End,
        },
        first_seen_ns: unix_ns(r.first_seen),
        last_seen_ns: unix_ns(r.last_seen).max(unix_ns(r.first_seen)),
        proto: match r.proto {
            Proto::Tcp => wire::Proto::Tcp,
            Proto::Udp => wire::Proto::Udp,
            Proto::Icmp => wire::Proto::Icmp,
            Proto::Icmpv6 => wire::Proto::Icmpv6,
            Proto::Other(n) => wire::Proto::Other(n),
        },
        direction: match r.direction {
            Direction::Outbound => wire::Direction::Outbound,
            Direction::Inbound => wire::Direction::Inbound,
        },
        local: SocketAddr::new(r.local_ip, r.local_port),
        remote: SocketAddr::new(r.remote_ip, r.remote_port),
        bytes_out: r.totals.bytes_out,
        bytes_in: r.totals.bytes_in,
        packets_out: r.totals.packets_out,
        packets_in: r.totals.packets_in,
        tcp_flags: (
            flag_bits(r.tcp_flags_out.as_deref()),
            flag_bits(r.tcp_flags_in.as_deref()),
        ),
        closed: r.state == FlowState::Closed,
        verdict: if r.verdict == "dropped" {
            wire::Verdict::Dropped
        } else {
            wire::Verdict::Forwarded
        },
        process: r.process.as_deref().map(process),
        unattributed_reason: r.unattributed_reason.map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;
    use crate::record::{Totals, tcp_flag_names};

    #[test]
    fn records_keep_every_field_on_the_wire() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let rec = FlowRecord {
            kind: "flow",
            host: Arc::from("h1"),
            event: ExportEvent::End,
            first_seen: t,
            last_seen: t + Duration::from_millis(5),
            proto: Proto::Tcp,
            direction: Direction::Inbound,
            local_ip: "10.0.0.1".parse().expect("ip"),
            local_port: 8080,
            remote_ip: "10.0.0.2".parse().expect("ip"),
            remote_port: 40000,
            totals: Totals {
                bytes_out: 1,
                bytes_in: 2,
                packets_out: 3,
                packets_in: 4,
            },
            tcp_flags_out: Some(tcp_flag_names(0x1b)),
            tcp_flags_in: Some(tcp_flag_names(0x14)),
            state: FlowState::Closed,
            verdict: "forwarded",
            process: Some(Arc::new(ProcessInfo {
                pid: 7,
                comm: "srv".into(),
                exe: Some("/usr/bin/srv".into()),
                ..ProcessInfo::default()
            })),
            unattributed_reason: None,
            capture: "ebpf",
        };
        let w = to_wire(&rec);
        assert_eq!(w.event, wire::FlowEvent::End);
        assert_eq!(w.first_seen_ns, 1_700_000_000_000_000_000);
        assert_eq!(w.last_seen_ns - w.first_seen_ns, 5_000_000);
        assert_eq!(w.local.to_string(), "10.0.0.1:8080");
        assert_eq!(
            (w.bytes_out, w.bytes_in, w.packets_out, w.packets_in),
            (1, 2, 3, 4)
        );
        assert_eq!(w.tcp_flags, (0x1b, 0x14));
        assert!(w.closed);
        assert_eq!(w.direction, wire::Direction::Inbound);
        let p = w.process.expect("process");
        assert_eq!((p.pid, p.exe.as_deref()), (7, Some("/usr/bin/srv")));
        // And it passes the collector's checks.
        let msg = wire::Message::FlowBatch(wire::FlowBatch {
            seq: 1,
            records: vec![to_wire(&rec)],
            dropped_before: 0,
        });
        wire::decode(&wire::encode(&msg).expect("encode")).expect("valid on the wire");
    }
}
