use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use super::*;
use crate::record::{Direction, ExportEvent, FlowId, FlowState, ProcessInfo, Proto, Totals};

fn cfg() -> TableConfig {
    TableConfig {
        export_interval: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        close_linger: Duration::from_secs(1),
    }
}

fn id(proto: Proto, port: u16) -> FlowId {
    FlowId {
        proto,
        local_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        local_port: 40000,
        remote_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        remote_port: port,
    }
}

fn start() -> FlowStart {
    FlowStart {
        first_seen: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        direction: Direction::Outbound,
        totals: Totals {
            bytes_out: 60,
            packets_out: 1,
            ..Totals::default()
        },
        tcp_flags: (0x02, 0),
        process: Some(Arc::new(ProcessInfo {
            pid: 42,
            comm: "curl".into(),
            ..ProcessInfo::default()
        })),
        unattributed_reason: None,
    }
}

fn update(bytes_out: u64, bytes_in: u64, flags: (u8, u8)) -> Update {
    Update {
        totals: Totals {
            bytes_out,
            bytes_in,
            packets_out: 1,
            packets_in: u64::from(bytes_in > 0),
        },
        last_seen: SystemTime::now(),
        tcp_flags: flags,
        gone: false,
    }
}

fn table() -> FlowTable {
    FlowTable::new(Arc::from("h1"), "ebpf", cfg())
}

#[test]
fn first_sight_exports_a_start_record_once() {
    let mut t = table();
    let t0 = Instant::now();
    let rec = t
        .open(id(Proto::Tcp, 80), start(), t0)
        .expect("start record");
    assert_eq!(rec.event, ExportEvent::Start);
    assert_eq!(rec.state, FlowState::Open);
    assert_eq!(rec.totals.bytes_out, 60);
    assert_eq!(rec.process.as_ref().map(|p| p.pid), Some(42));
    assert!(
        t.open(id(Proto::Tcp, 80), start(), t0).is_none(),
        "repeat event"
    );
    assert_eq!(t.len(), 1);
}

#[test]
fn open_flows_are_exported_every_interval_with_totals() {
    let mut t = table();
    let t0 = Instant::now();
    t.open(id(Proto::Udp, 53), start(), t0);
    assert!(t.due(t0 + Duration::from_secs(5)).0.is_empty());
    t.update(
        &id(Proto::Udp, 53),
        update(500, 900, (0, 0)),
        t0 + Duration::from_secs(6),
    );
    let (recs, ended) = t.due(t0 + Duration::from_secs(10));
    assert!(ended.is_empty());
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].event, ExportEvent::Update);
    assert_eq!(
        (recs[0].totals.bytes_out, recs[0].totals.bytes_in),
        (500, 900)
    );
    // Not again until another interval has passed.
    assert!(t.due(t0 + Duration::from_secs(15)).0.is_empty());
}

#[test]
fn tcp_fin_both_ways_ends_the_flow_after_the_linger() {
    let mut t = table();
    let t0 = Instant::now();
    let f = id(Proto::Tcp, 443);
    t.open(f, start(), t0);
    // FIN one way only: still open.
    t.update(
        &f,
        update(100, 50, (0x11, 0x10)),
        t0 + Duration::from_millis(100),
    );
    assert!(t.due(t0 + Duration::from_secs(3)).1.is_empty());
    t.update(
        &f,
        update(100, 50, (0x11, 0x11)),
        t0 + Duration::from_secs(3),
    );
    assert!(
        t.due(t0 + Duration::from_millis(3500)).1.is_empty(),
        "lingers"
    );
    let (recs, ended) = t.due(t0 + Duration::from_secs(4));
    assert_eq!(ended, vec![f]);
    assert_eq!(recs[0].event, ExportEvent::End);
    assert_eq!(recs[0].state, FlowState::Closed);
    assert_eq!(recs[0].tcp_flags_in.as_deref(), Some("ACK,FIN"));
    assert!(t.is_empty());
}

#[test]
fn rst_ends_a_flow() {
    let mut t = table();
    let t0 = Instant::now();
    let f = id(Proto::Tcp, 8099);
    t.open(f, start(), t0);
    t.update(&f, update(60, 40, (0x02, 0x14)), t0);
    let (_, ended) = t.due(t0 + Duration::from_secs(1));
    assert_eq!(ended, vec![f]);
}

#[test]
fn idle_flows_end_and_active_ones_do_not() {
    let mut t = table();
    let t0 = Instant::now();
    let (quiet, busy) = (id(Proto::Udp, 1), id(Proto::Udp, 2));
    t.open(quiet, start(), t0);
    t.open(busy, start(), t0);
    t.update(&busy, update(1000, 0, (0, 0)), t0 + Duration::from_secs(59));
    let (recs, ended) = t.due(t0 + Duration::from_secs(61));
    assert_eq!(ended, vec![quiet]);
    let end = recs
        .iter()
        .find(|r| r.event == ExportEvent::End)
        .expect("end");
    assert_eq!(end.remote_port, 1);
    assert!(t.contains(&busy));
}

#[test]
fn gone_flows_end_once_and_drain_reports_the_rest() {
    let mut t = table();
    let t0 = Instant::now();
    let (a, b) = (id(Proto::Tcp, 1), id(Proto::Tcp, 2));
    t.open(a, start(), t0);
    t.open(b, start(), t0);
    assert!(t.mark_gone(&a, t0));
    assert!(!t.mark_gone(&a, t0), "already ending");
    let (_, ended) = t.due(t0 + Duration::from_secs(2));
    assert_eq!(ended, vec![a]);
    let rest = t.drain();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].event, ExportEvent::End);
    assert_eq!(rest[0].state, FlowState::Open);
}

#[test]
fn unattributed_flows_say_why() {
    let mut t = table();
    let mut s = start();
    s.process = None;
    s.unattributed_reason = Some("no socket");
    let rec = t.open(id(Proto::Tcp, 9), s, Instant::now()).expect("start");
    let json = serde_json::to_value(&rec).expect("json");
    assert!(json["process"].is_null());
    assert_eq!(json["unattributed_reason"], "no socket");
    for field in [
        "type",
        "host",
        "first_seen",
        "last_seen",
        "proto",
        "direction",
        "local_ip",
        "local_port",
        "remote_ip",
        "remote_port",
        "bytes_out",
        "bytes_in",
        "packets_out",
        "packets_in",
        "state",
        "verdict",
    ] {
        assert!(json.get(field).is_some(), "missing {field} in {json}");
    }
    assert_eq!(json["type"], "flow");
    assert_eq!(json["proto"], "tcp");
    assert_eq!(json["direction"], "outbound");
    assert_eq!(json["verdict"], "forwarded");
    assert_eq!(json["first_seen"], "2023-11-14T22:13:20.000000Z");
}

#[test]
fn a_restarted_flow_ends_the_old_one_and_ignores_stale_totals() {
    let mut t = table();
    let t0 = Instant::now();
    let f = id(Proto::Tcp, 80);
    t.open(f, start(), t0);
    t.update(&f, update(1000, 2000, (0x13, 0x13)), t0);
    // Lower totals before the restart event: a new incarnation, not applied.
    t.update(&f, update(60, 0, (0x02, 0)), t0);
    let recs = t.restart(f, start(), t0);
    assert_eq!(recs.len(), 2);
    assert_eq!(
        (recs[0].event, recs[0].state),
        (ExportEvent::End, FlowState::Closed)
    );
    assert_eq!(
        (recs[0].totals.bytes_out, recs[0].totals.bytes_in),
        (1000, 2000)
    );
    assert_eq!(recs[1].event, ExportEvent::Start);
    assert_eq!(recs[1].totals.bytes_out, 60);
}
