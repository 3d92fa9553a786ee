//! A quick measurement, not a timed test: group-commit ingest (`store_batches`) on SQLite
//! and on PostgreSQL (binary COPY) in the same run, printed as records per second. Groups
//! look like the ingest writer's: 16 agents' batches of 256 records. The number of
//! records is `CORDON_BENCH_RECORDS` (default 32,768); run it in release for figures:
//!
//! `AYA_BUILD_SKIP=1 CORDON_BENCH_RECORDS=1048576 cargo test -p cordon-collector --release
//!  --lib ingest_rate -- --nocapture`
use std::time::Instant;

use cordon_wire::{FlowBatch, FlowEvent};

use super::*;
use crate::store::*;

const AGENTS: usize = 16;
const RECORDS_PER_BATCH: usize = 256;

/// Stores `total` records; returns (records, seconds).
fn ingest(s: &mut Store, total: usize) -> (usize, f64) {
    for a in 0..AGENTS {
        s.host_connected(
            &format!("agent-{a}"),
            &format!("host-{a}"),
            "0.1.0",
            "ebpf",
            T0,
        )
        .expect("host");
    }
    let groups = total.div_ceil(AGENTS * RECORDS_PER_BATCH);
    let mut stored = 0;
    let started = Instant::now();
    for g in 0..groups {
        let batches: Vec<(String, FlowBatch)> = (0..AGENTS)
            .map(|a| {
                let records = (0..RECORDS_PER_BATCH)
                    .map(|i| {
                        let n = (g * RECORDS_PER_BATCH + i) as u64;
                        let event = if i % 3 == 0 {
                            FlowEvent::Start
                        } else {
                            FlowEvent::Update
                        };
                        let mut r = rec(event, 8000 + (i % 32) as u16, "/usr/bin/app", T0 + n);
                        r.remote = std::net::SocketAddr::from((
                            [10, 1, (a % 4) as u8, (i % 200) as u8],
                            r.remote.port(),
                        ));
                        r
                    })
                    .collect();
                (format!("agent-{a}"), batch(g as u64 + 1, records))
            })
            .collect();
        let items: Vec<(&str, &FlowBatch)> = batches.iter().map(|(a, b)| (a.as_str(), b)).collect();
        for r in s
            .store_batches(&items, &mut Compliance::none())
            .expect("group")
        {
            if let Ok(Stored::New { records }) = r {
                stored += records;
            }
        }
    }
    (stored, started.elapsed().as_secs_f64())
}

#[test]
fn ingest_rate_of_both_backends() {
    let total: usize = std::env::var("CORDON_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32_768);
    let sqlite = Fixture::sqlite();
    let mut s = sqlite.open();
    s.set_cache_kib(64 * 1024).expect("cache");
    let (n, secs) = ingest(&mut s, total);
    assert_eq!(
        n,
        total.div_ceil(AGENTS * RECORDS_PER_BATCH) * AGENTS * RECORDS_PER_BATCH
    );
    println!(
        "ingest sqlite (WAL, synchronous=FULL): {n} records in {secs:.2} s = {:.0} records/s",
        n as f64 / secs
    );
    let Some(pg) = Fixture::postgres("ingest_rate_of_both_backends") else {
        return;
    };
    let mut s = pg.open();
    let (n, secs) = ingest(&mut s, total);
    println!(
        "ingest postgresql (binary COPY, test server: fsync=off): {n} records in {secs:.2} s = {:.0} records/s",
        n as f64 / secs
    );
}
