//! The uplink end to end, in one process over loopback QUIC: an agent's spool and uplink
//! against the collector's ingest and store. A collector outage loses nothing: batches
//! made while it is down wait in the spool and arrive exactly once after it returns; a dead
//! first collector address is skipped.
use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use cordon_agent::{
    spool::Spool,
    uplink::{Backoff, Collector, Identity, Uplink},
};
use cordon_collector::{
    ingest::{Ingest, SharedStore, serve},
    pki::Ca,
    store::{FlowFilter, Store},
};
use cordon_wire::{
    Direction, FlowEvent, FlowRecord, Proto, Verdict,
    transport::{client_config, server_config},
};
use rcgen::{CertificateParams, KeyPair};

fn record(n: u32) -> FlowRecord {
    FlowRecord {
        event: FlowEvent::Start,
        first_seen_ns: 1_700_000_000_000_000_000 + u64::from(n),
        last_seen_ns: 1_700_000_000_000_000_000 + u64::from(n),
        proto: Proto::Udp,
        direction: Direction::Outbound,
        local: "10.0.0.1:5353".parse().expect("addr"),
        remote: SocketAddr::from(([10, 0, 0, 2], 10_000 + n as u16)),
        bytes_out: 60,
        bytes_in: 0,
        packets_out: 1,
        packets_in: 0,
        tcp_flags: (0, 0),
        closed: false,
        verdict: Verdict::Forwarded,
        process: None,
        unattributed_reason: Some("synthetic".into()),
    }
}

struct Collectors {
    ca: Arc<Ca>,
    server_cert: (String, String),
    store: SharedStore,
}

impl Collectors {
    fn start(&self, addr: SocketAddr) -> (quinn::Endpoint, tokio::task::JoinHandle<()>) {
        let cfg = server_config(&self.ca.cert_pem, &self.server_cert.0, &self.server_cert.1)
            .expect("server config");
        let endpoint = quinn::Endpoint::server(cfg, addr).expect("bind the collector");
        let ingest = Ingest::new(self.store.clone(), self.ca.clone());
        let task = tokio::spawn(serve(endpoint.clone(), ingest));
        (endpoint, task)
    }

    fn flows(&self) -> usize {
        self.store
            .lock()
            .expect("lock")
            .flows(&FlowFilter {
                limit: 10_000,
                ..Default::default()
            })
            .expect("query")
            .len()
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_collector_outage_loses_nothing_and_dead_addresses_are_skipped() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = Arc::new(Ca::generate("Cordon test CA").expect("ca"));
    let server_cert = ca.issue_server(&["127.0.0.1".into()]).expect("server cert");
    let store: SharedStore = Arc::new(Mutex::new(
        Store::open(&tmp.path().join("cordon.db")).expect("store"),
    ));
    let collectors = Collectors {
        ca,
        server_cert,
        store,
    };
    let (endpoint, task) = collectors.start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let live = endpoint.local_addr().expect("addr");
    // A port nothing listens on (bound and released).
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port");

    let key = KeyPair::generate().expect("key");
    let csr = CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    let cert = collectors
        .ca
        .sign_agent(&csr, "h1-agent", 1)
        .expect("enrol");
    let mut tls = client_config(&collectors.ca.cert_pem, &cert, &key.serialize_pem()).expect("tls");
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(
        Duration::from_millis(800).try_into().expect("timeout"),
    ));
    tls.transport_config(Arc::new(transport));

    let (_inventory_tx, inventory) = tokio::sync::watch::channel(None);
    let mut uplink = Uplink {
        inventory,
        collectors: vec![
            Collector {
                addr: dead,
                server_name: "127.0.0.1".into(),
            },
            Collector {
                addr: live,
                server_name: "127.0.0.1".into(),
            },
        ],
        tls,
        identity: Identity {
            host_name: "h1".into(),
            capture: "ebpf".into(),
            boot_id: "boot-1".into(),
        },
        spool: Spool::open(&tmp.path().join("spool"), 1 << 20).expect("spool"),
        backoff: Backoff::new(Duration::from_millis(50), Duration::from_millis(400)),
        stats: Default::default(),
        commands: Box::new(cordon_agent::uplink::NoEnforcer),
        isolation: Default::default(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let agent = tokio::spawn(async move {
        uplink.run(rx).await.expect("uplink");
        uplink
    });

    for n in 0..5 {
        tx.send(vec![record(n * 2), record(n * 2 + 1)])
            .await
            .expect("send");
    }
    wait_for("the first 10 flows", || collectors.flows() == 10).await;

    // The collector goes away; the agent keeps making batches.
    endpoint.close(0u32.into(), b"maintenance");
    task.abort();
    drop(endpoint);
    for n in 5..10 {
        tx.send(vec![record(n * 2), record(n * 2 + 1)])
            .await
            .expect("send");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        collectors.flows(),
        10,
        "flows arrived while the collector was down"
    );

    // It comes back on the same address, with the same store.
    let (endpoint, task) = collectors.start(live);
    wait_for("all 20 flows after the outage", || collectors.flows() == 20).await;
    drop(tx);
    let uplink = agent.await.expect("agent task");
    assert_eq!(
        uplink.spool.pending_batches(),
        0,
        "unacknowledged batches left"
    );
    assert_eq!(uplink.spool.drops.full_records, 0);
    assert!(uplink.stats.connects >= 2, "{:?}", uplink.stats);
    assert!(
        uplink.stats.connect_failures >= 2,
        "the dead address and the outage: {:?}",
        uplink.stats
    );
    // Exactly once: twenty distinct remote ports, no duplicates.
    let rows = collectors
        .store
        .lock()
        .expect("lock")
        .flows(&FlowFilter {
            limit: 100,
            ..Default::default()
        })
        .expect("query");
    let mut ports: Vec<u16> = rows.iter().map(|r| r.remote_port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 20);
    endpoint.close(0u32.into(), b"done");
    task.abort();
}
