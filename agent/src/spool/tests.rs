use cordon_wire::{Direction, FlowEvent, FlowRecord, Message, Proto, Verdict, decode};

use super::*;

fn rec(port: u16) -> FlowRecord {
    FlowRecord {
        event: FlowEvent::Start,
        first_seen_ns: 1,
        last_seen_ns: 2,
        proto: Proto::Udp,
        direction: Direction::Outbound,
        local: "10.0.0.1:5000".parse().expect("addr"),
        remote: format!("10.0.0.2:{port}").parse().expect("addr"),
        bytes_out: 60,
        bytes_in: 0,
        packets_out: 1,
        packets_in: 0,
        tcp_flags: (0, 0),
        closed: false,
        verdict: Verdict::Forwarded,
        process: None,
        unattributed_reason: Some("test".into()),
    }
}

fn batches(spool: &Spool) -> Vec<FlowBatch> {
    spool
        .pending()
        .map(|b| match decode(&b.expect("read")).expect("decode") {
            Message::FlowBatch(b) => b,
            other => panic!("not a batch: {other:?}"),
        })
        .collect()
}

#[test]
fn batches_survive_a_restart_until_acknowledged() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut s = Spool::open(tmp.path(), 1 << 20).expect("open");
    assert_eq!(s.push(vec![rec(1)]).expect("push"), 1);
    assert_eq!(s.push(vec![rec(2), rec(3)]).expect("push"), 2);
    assert_eq!(s.push(vec![rec(4)]).expect("push"), 3);
    s.ack(1);
    drop(s);
    let mut s = Spool::open(tmp.path(), 1 << 20).expect("reopen");
    let left = batches(&s);
    assert_eq!(left.iter().map(|b| b.seq).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(left[0].records.len(), 2);
    assert_eq!(s.push(vec![rec(5)]).expect("push"), 4);
    s.ack(4);
    assert_eq!(s.pending_batches(), 0);
    assert_eq!(s.bytes(), 0);
}

#[test]
fn sequence_numbers_are_never_reused_even_when_empty() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut s = Spool::open(tmp.path(), 1 << 20).expect("open");
    s.push(vec![rec(1)]).expect("push");
    s.push(vec![rec(1)]).expect("push");
    s.ack(2);
    drop(s);
    let mut s = Spool::open(tmp.path(), 1 << 20).expect("reopen");
    assert_eq!(s.push(vec![rec(1)]).expect("push"), 3);
    // The collector acknowledges what it has.
    s.collector_has(3).expect("ack");
    assert_eq!(s.pending_batches(), 0);
    assert_eq!(s.push(vec![rec(1)]).expect("push"), 4);
}

#[test]
fn a_lost_spool_renumbers_instead_of_discarding() {
    let tmp = tempfile::tempdir().expect("tmp");
    // A fresh spool (the old one was lost) with two batches made offline...
    let mut s = Spool::open(tmp.path(), 1 << 20).expect("open");
    s.push(vec![rec(1)]).expect("push");
    s.push(vec![rec(2), rec(3)]).expect("push");
    // ...meets a collector that stored up to 10 from this agent before.
    s.collector_has(10).expect("renumber");
    let left = batches(&s);
    assert_eq!(left.iter().map(|b| b.seq).collect::<Vec<_>>(), vec![11, 12]);
    assert_eq!(left[1].records.len(), 2);
    assert_eq!(s.push(vec![rec(4)]).expect("push"), 13);
    drop(s);
    let s = Spool::open(tmp.path(), 1 << 20).expect("reopen");
    assert_eq!(s.pending_batches(), 3);
    assert_eq!(s.next_seq(), 14);
}

#[test]
fn a_full_spool_drops_the_oldest_and_reports_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let one = encode(&Message::FlowBatch(FlowBatch {
        seq: 1,
        records: vec![rec(1), rec(2)],
        dropped_before: 0,
    }))
    .expect("encode")
    .len() as u64;
    // Room for two batches of two records.
    let mut s = Spool::open(tmp.path(), 2 * one + one / 2).expect("open");
    for port in 0..3 {
        s.push(vec![rec(port), rec(port + 100)]).expect("push");
    }
    assert_eq!(s.drops.full_records, 2);
    let left = batches(&s);
    assert_eq!(left.iter().map(|b| b.seq).collect::<Vec<_>>(), vec![2, 3]);
    // The batch made right after the drop says so.
    assert_eq!(left[1].dropped_before, 2);
    assert!(s.bytes() <= 2 * one + one / 2);
    let huge: Vec<FlowRecord> = (0..100).map(rec).collect();
    assert!(matches!(s.push(huge), Err(SpoolError::TooLarge { .. })));
}

#[test]
fn unreadable_files_are_removed_and_counted() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut s = Spool::open(tmp.path(), 1 << 20).expect("open");
    s.push(vec![rec(1)]).expect("push");
    drop(s);
    std::fs::write(tmp.path().join(format!("{:020}.batch", 7)), b"garbage").expect("write");
    std::fs::write(tmp.path().join(format!("{:020}.tmp", 8)), b"half").expect("write");
    let s = Spool::open(tmp.path(), 1 << 20).expect("reopen");
    assert_eq!(s.drops.corrupt_batches, 1);
    assert_eq!(s.pending_batches(), 1);
    assert!(!tmp.path().join(format!("{:020}.tmp", 8)).exists());
}
