//! Alerts through the whole collector path to Splunk HEC, with failures: violations
//! judged by a published policy raise alerts in the store's outbox; the dispatcher
//! delivers them to the HEC stand-in while it answers 503 (busy), 429 and loses an
//! indexer ack, and across a dispatcher restart. Every alert arrives; duplicates only
//! where an ack was lost; the position survives the restart. (Loopback only.)
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, atomic::AtomicBool},
    time::{Duration, Instant},
};

use cordon_collector::{
    alerts::AlertSettings,
    metrics::Metrics,
    outputs::{
        Wake,
        dispatch::Dispatcher,
        hec::{HecConfig, HecSink},
    },
    policy::state::{Judge, PolicyState},
    store::{Compliance, Store},
};
use cordon_tests::hec_standin::{Fault, HecStandin};
use cordon_wire::{Direction, FlowBatch, FlowEvent, FlowRecord, Process, Proto, Verdict};

const POLICY: &str = "name: t\ngroups:\n  ok:\n    cidr: [10.0.0.2]\nrules:\n  - name: web\n    consumer: any\n    provider: ok\n    ports: [tcp/80]\n    action: allow\ncatch_all:\n  - action: deny\n";
const T0: u64 = 1_700_000_000_000_000_000;

fn violation(port: u16) -> FlowRecord {
    FlowRecord {
        event: FlowEvent::Start,
        first_seen_ns: T0,
        last_seen_ns: T0,
        proto: Proto::Tcp,
        direction: Direction::Outbound,
        local: "10.0.0.1:40000".parse().expect("addr"),
        remote: std::net::SocketAddr::from(([10, 0, 0, 3], port)),
        bytes_out: 60,
        bytes_in: 0,
        packets_out: 1,
        packets_in: 0,
        tcp_flags: (2, 0),
        closed: false,
        verdict: Verdict::Forwarded,
        process: Some(Process {
            pid: 1,
            ppid: None,
            uid: 0,
            user: None,
            comm: "nc".into(),
            exe: Some("/usr/bin/nc".into()),
            cmdline: None,
            cgroup: None,
        }),
        unattributed_reason: None,
    }
}

/// Stores `ports.len()` violations in one batch; returns the alerts raised.
fn raise(
    store: &Mutex<Store>,
    judge: &mut Judge,
    seq: u64,
    ports: std::ops::Range<u16>,
    wake: &Wake,
) -> u64 {
    let batch = FlowBatch {
        seq,
        records: ports.map(violation).collect(),
        dropped_before: 0,
    };
    let settings = AlertSettings::default();
    let mut f = |a: &str, r: &FlowRecord| judge.judge(a, r);
    let mut c = Compliance {
        judge: Some(&mut f),
        settings: &settings,
        now_ns: T0,
        raised: 0,
    };
    store
        .lock()
        .expect("lock")
        .store_batches(&[("h1", &batch)], &mut c)
        .expect("store");
    wake.notify();
    c.raised
}

fn keys(hec: &HecStandin) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for e in hec.events() {
        *m.entry(e["event"]["key_id"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    m
}

#[test]
fn every_alert_reaches_hec_through_failures_and_a_dispatcher_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("cordon.db");
    let mut s = Store::open(&db).expect("store");
    s.host_connected("h1", "h1", "0.1.0", "ebpf", T0)
        .expect("host");
    let v = s.apply_policy("t", POLICY, "test", T0).expect("apply");
    s.publish_policy(v, "test", T0)
        .expect("db")
        .expect("publish");
    let policy = PolicyState::new();
    policy.reload(&*s).expect("reload");
    let mut judge = Judge::new(policy);
    judge.refresh();
    let writer_store = Mutex::new(s);

    let hec = HecStandin::start("t0ken", true);
    let cfg: HecConfig = toml::from_str(&format!(
        "url = \"{}\"\ntoken = \"t0ken\"\nuse_ack = true\nack_poll_ms = 20\nack_timeout_secs = 1\nbackoff_initial_ms = 10\nbackoff_max_ms = 50\nmax_batch_bytes = 4096\n",
        hec.url()
    ))
    .expect("hec config");
    let wake = Arc::new(Wake::default());
    let metrics = Arc::new(Metrics::new());
    let dispatcher = |stop: &Arc<AtomicBool>| Dispatcher {
        store: Arc::new(Mutex::new(Store::open(&db).expect("dispatcher store"))),
        wake: wake.clone(),
        metrics: metrics.clone(),
        stop: stop.clone(),
        all_sinks: vec!["hec"],
        node: "test-node".into(),
    };

    // Failures while the first 40 alerts go out.
    hec.inject(Fault::Busy503 { times: 2 });
    hec.inject(Fault::TooMany429 {
        times: 1,
        retry_after: None,
    });
    hec.inject(Fault::LoseAcks { times: 1 });
    let stop = Arc::new(AtomicBool::new(false));
    let t = dispatcher(&stop)
        .spawn(Box::new(HecSink::new(cfg.clone()).expect("sink")))
        .expect("spawn");
    assert_eq!(raise(&writer_store, &mut judge, 1, 1000..1040, &wake), 40);
    let wait_keys = |n: usize| {
        let start = Instant::now();
        while keys(&hec).len() < n {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "only {} of {n} alerts arrived",
                keys(&hec).len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_keys(40);
    // The dispatcher stops and another starts from the saved position (a restart).
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    wake.notify();
    t.join().expect("dispatcher thread");
    let before = hec.events().len();
    assert_eq!(raise(&writer_store, &mut judge, 2, 2000..2030, &wake), 30);
    let stop = Arc::new(AtomicBool::new(false));
    let t = dispatcher(&stop)
        .spawn(Box::new(HecSink::new(cfg).expect("sink")))
        .expect("spawn");
    wait_keys(70);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    wake.notify();
    t.join().expect("dispatcher thread");

    let counts = keys(&hec);
    assert_eq!(counts.len(), 70, "every alert, by key");
    // After the restart nothing from before was sent again.
    let after: Vec<_> = hec.events()[before..]
        .iter()
        .map(|e| {
            e["event"]["alert_details_json"]["flow"]["remote_port"]
                .as_u64()
                .unwrap_or(0)
        })
        .collect();
    assert!(after.iter().all(|p| (2000..2030).contains(p)), "{after:?}");
    // Duplicates: only the events of the one request whose ack was lost, and each repeat
    // carries the same delivery id as the first copy (a consumer drops it by that key).
    let dups: usize = counts.values().map(|n| n - 1).sum();
    let mut ids = std::collections::HashMap::new();
    for e in hec.events() {
        let id = e["fields"]["cordon_delivery_id"]
            .as_str()
            .expect("every delivery has its id")
            .to_string();
        *ids.entry(id).or_insert(0usize) += 1;
    }
    assert_eq!(ids.len(), 70, "one delivery id per outbox entry");
    assert_eq!(
        ids.values().map(|n| n - 1).sum::<usize>(),
        dups,
        "every duplicate repeats a delivery id"
    );
    let lost_request_events = 4096 / 1200; // at most a few envelopes fit in 4 KiB
    assert!(
        dups <= lost_request_events + 1,
        "{dups} duplicates: {counts:?}"
    );
    // The failures did happen (the sink retried them inside its deliveries).
    let statuses: Vec<u16> = hec.event_requests().iter().map(|r| r.status).collect();
    assert!(
        statuses.contains(&503) && statuses.contains(&429),
        "{statuses:?}"
    );
    let text = metrics.render();
    let delivered: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("cordon_collector_output_delivered_total{sink=\"hec\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(delivered >= 70, "{text}");
    assert!(
        !text.contains("output_dead_lettered_total"),
        "nothing dead-lettered: {text}"
    );
}
