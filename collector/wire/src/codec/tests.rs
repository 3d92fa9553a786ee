use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use super::*;
use crate::messages::*;

fn record(cmdline: &str) -> FlowRecord {
    FlowRecord {
        event: FlowEvent::End,
        first_seen_ns: 1_700_000_000_000_000_000,
        last_seen_ns: 1_700_000_000_500_000_000,
        proto: Proto::Tcp,
        direction: Direction::Outbound,
        local: "10.0.0.1:40000".parse().expect("addr"),
        remote: "10.0.0.2:443".parse().expect("addr"),
        bytes_out: 399,
        bytes_in: 2640,
        packets_out: 6,
        packets_in: 6,
        tcp_flags: (0x1b, 0x1b),
        closed: true,
        verdict: Verdict::Forwarded,
        process: Some(Process {
            pid: 4242,
            ppid: Some(1),
            uid: 0,
            user: Some("root".into()),
            comm: "curl".into(),
            exe: Some("/usr/bin/curl".into()),
            cmdline: Some(cmdline.into()),
            cgroup: Some("/".into()),
        }),
        unattributed_reason: None,
    }
}

fn every_kind() -> Vec<Message> {
    vec![
        Message::Hello(Hello {
            protocol_min: 1,
            protocol_max: 1,
            agent_version: "0.1.0".into(),
            host_name: "h1".into(),
            capture: "ebpf".into(),
            boot_id: "b00t".into(),
            last_seq: 7,
        }),
        Message::Welcome(Welcome {
            protocol: 1,
            stored_seq: 6,
        }),
        Message::FlowBatch(FlowBatch {
            seq: 7,
            records: vec![record("curl https://x/"), record("curl -v https://y/")],
            dropped_before: 0,
        }),
        Message::Ack(Ack { seq: 7 }),
        Message::Inventory(Inventory {
            host_name: "h1".into(),
            os: "Debian GNU/Linux 12".into(),
            kernel: "6.18".into(),
            cpus: 2,
            memory_bytes: 24 << 30,
            interfaces: vec![Interface {
                name: "eth0".into(),
                addresses: vec!["10.0.0.1".parse().expect("ip")],
            }],
            listening: vec![Listener {
                proto: Proto::Tcp,
                local: "0.0.0.0:22".parse().expect("addr"),
                process: None,
            }],
        }),
        Message::Command(Command {
            id: 1,
            kind: CommandKind::Isolate {
                reason: "escaped flow to db".into(),
                expires_at: 0,
                allow: vec!["10.0.0.9:22".parse().expect("addr")],
            },
        }),
        Message::CommandResult(CommandResult {
            id: 1,
            ok: true,
            message: "isolated (nftables)".into(),
        }),
        Message::Goodbye(Goodbye {
            reason: "shutting down".into(),
        }),
        Message::Enroll(Enroll {
            token: "cdn_0123".into(),
            csr_pem: "-----BEGIN CERTIFICATE REQUEST-----".into(),
            host_name: "h1".into(),
        }),
        Message::Enrolled(Enrolled {
            agent_id: "h1".into(),
            cert_pem: "-----BEGIN CERTIFICATE-----".into(),
            ca_pem: "-----BEGIN CERTIFICATE-----".into(),
        }),
        Message::EnforcementState(EnforcementState {
            backend: "nftables".into(),
            isolated: true,
            since: 1_764_000_000,
            expires_at: 0,
            by: "analyst".into(),
            reason: "escaped flow".into(),
        }),
    ]
}

#[test]
fn every_message_round_trips_through_frames() {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    let msgs = every_kind();
    for m in &msgs {
        codec.encode(m, &mut buf).expect("encode");
    }
    // Fed one byte at a time, the decoder waits for whole frames.
    let mut out = Vec::new();
    let mut feed = BytesMut::new();
    for b in buf.iter() {
        feed.extend_from_slice(&[*b]);
        while let Some(m) = codec.decode(&mut feed).expect("decode") {
            out.push(m);
        }
    }
    assert_eq!(out, msgs);
}

#[test]
fn variant_positions_are_the_wire_ids() {
    // Append-only: the first byte of a body is the variant's position. A change here means
    // a variant was inserted or removed, which breaks deployed agents.
    let ids: Vec<u8> = every_kind()
        .iter()
        .map(|m| encode(m).expect("encode")[0])
        .collect();
    assert_eq!(ids, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
}

#[test]
fn oversize_lengths_are_refused_before_the_body_arrives() {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(&((MAX_FRAME_BYTES as u32) + 1).to_be_bytes()[..]);
    match codec.decode(&mut buf) {
        Err(WireError::FrameTooLarge { max }) => assert_eq!(max, MAX_FRAME_BYTES),
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    // The same length at the limit is fine: the codec waits for the body.
    let mut buf = BytesMut::from(&(MAX_FRAME_BYTES as u32).to_be_bytes()[..]);
    assert!(
        FrameCodec::new()
            .decode(&mut buf)
            .expect("within the limit")
            .is_none()
    );
    // A body handed to decode() directly is checked too.
    let big = vec![0u8; MAX_FRAME_BYTES + 1];
    assert!(matches!(decode(&big), Err(WireError::Oversize { .. })));
}

#[test]
fn garbage_trailing_bytes_and_bad_values_are_errors() {
    assert!(matches!(
        decode(&[0xff, 0xff, 0xff]),
        Err(WireError::Decode(_))
    ));
    assert!(matches!(decode(&[]), Err(WireError::Decode(_))));
    let mut body = encode(&Message::Ack(Ack { seq: 1 }))
        .expect("encode")
        .to_vec();
    body.push(0);
    assert!(matches!(decode(&body), Err(WireError::Trailing(1))));

    let long = "x".repeat(MAX_CMDLINE + 1);
    let batch = Message::FlowBatch(FlowBatch {
        seq: 1,
        records: vec![record(&long)],
        dropped_before: 0,
    });
    let body = encode(&batch).expect("encode");
    match decode(&body) {
        Err(WireError::Invalid { field, .. }) => assert_eq!(field, "process.cmdline"),
        other => panic!("expected Invalid, got {other:?}"),
    }

    let mut backwards = record("curl");
    backwards.last_seen_ns = 0;
    let body = encode(&Message::FlowBatch(FlowBatch {
        seq: 1,
        records: vec![backwards],
        dropped_before: 0,
    }))
    .expect("encode");
    assert!(matches!(
        decode(&body),
        Err(WireError::Invalid {
            field: "flow.last_seen_ns",
            ..
        })
    ));
}

#[test]
fn too_many_records_are_refused() {
    let batch = Message::FlowBatch(FlowBatch {
        seq: 1,
        records: vec![record("a"); MAX_BATCH_RECORDS + 1],
        dropped_before: 0,
    });
    let body = encode(&batch).expect("encode");
    assert!(matches!(
        decode(&body),
        Err(WireError::Invalid {
            field: "flow_batch.records",
            ..
        })
    ));
}

#[test]
fn every_truncation_and_bit_flip_is_handled_without_panicking() {
    for m in every_kind() {
        let body = encode(&m).expect("encode");
        for n in 0..body.len() {
            let _ = decode(&body[..n]);
        }
        for i in 0..body.len() {
            let mut flipped = body.to_vec();
            flipped[i] ^= 0x5a;
            let _ = decode(&flipped);
        }
    }
}
