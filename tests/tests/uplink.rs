//! The uplink end to end, in one process over loopback QUIC: an agent's spool and uplink
//! against the collector's ingest and store. A collector outage loses nothing: batches
//! made while it is down wait in the spool and arrive exactly once after it returns; a dead
//! collector address and a name that does not resolve are skipped.
use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use cordon_agent::{
    spool::Spool,
    uplink::{
        Backoff, Candidate, Collector, Identity, KnownAddrs, Uplink,
        order::{home_index, spread_hash},
    },
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

/// Collector nodes sharing one CA and one store, as a cluster's do.
struct Collectors {
    ca: Arc<Ca>,
    store: SharedStore,
}

impl Collectors {
    fn new(dir: &std::path::Path) -> Self {
        Self {
            ca: Arc::new(Ca::generate("Cordon test CA").expect("ca")),
            store: Arc::new(Mutex::new(
                Store::open(&dir.join("cordon.db")).expect("store"),
            )),
        }
    }

    /// A node's server certificate, for its own names.
    fn server_cert(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        self.ca.issue_server(&names).expect("server cert")
    }

    /// A node's endpoint and ingest, on the current runtime.
    fn start(
        &self,
        cert: &(String, String),
        addr: SocketAddr,
    ) -> (quinn::Endpoint, tokio::task::JoinHandle<()>, Ingest) {
        let cfg = server_config(&self.ca.cert_pem, &cert.0, &cert.1).expect("server config");
        let endpoint = quinn::Endpoint::server(cfg, addr).expect("bind the collector");
        let ingest = Ingest::new(self.store.clone(), self.ca.clone());
        let task = tokio::spawn(serve(endpoint.clone(), ingest.clone()));
        (endpoint, task, ingest)
    }

    /// The remote ports of every stored flow (one per record made), sorted.
    fn ports(&self) -> Vec<u16> {
        let rows = self
            .store
            .lock()
            .expect("lock")
            .flows(&FlowFilter {
                limit: 10_000,
                ..Default::default()
            })
            .expect("query");
        let mut ports: Vec<u16> = rows.iter().map(|r| r.remote_port).collect();
        ports.sort_unstable();
        ports
    }

    fn flows(&self) -> usize {
        self.ports().len()
    }

    /// The agent's TLS: a key, and a certificate for `agent_id` from the CA.
    fn enrol(&self, agent_id: &str) -> quinn::ClientConfig {
        let key = KeyPair::generate().expect("key");
        let csr = CertificateParams::new(Vec::<String>::new())
            .expect("params")
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem");
        let cert = self.ca.sign_agent(&csr, agent_id, 1).expect("enrol");
        client_config(&self.ca.cert_pem, &cert, &key.serialize_pem()).expect("tls")
    }
}

/// An agent id whose first collector (see `cordon_agent::uplink::order`) is `addr`.
fn id_starting_at(candidates: &[Candidate], addr: SocketAddr) -> String {
    let want = candidates
        .iter()
        .position(|c| c.addr == addr)
        .expect("a candidate");
    (0..)
        .map(|i| format!("agent-{i}"))
        .find(|id| home_index(spread_hash(id), candidates.len()) == want)
        .expect("some id")
}

fn uplink(
    dir: &std::path::Path,
    collectors: Vec<Collector>,
    agent_id: &str,
    tls: quinn::ClientConfig,
    dead_after: Duration,
    backoff: Backoff,
) -> Uplink {
    let (_inventory_tx, inventory) = tokio::sync::watch::channel(None);
    Uplink {
        inventory,
        collectors,
        agent_id: agent_id.into(),
        dead_after,
        known: KnownAddrs::default(),
        tls,
        identity: Identity {
            host_name: "h1".into(),
            capture: "ebpf".into(),
            boot_id: "boot-1".into(),
        },
        spool: Spool::open(&dir.join("spool"), 1 << 20).expect("spool"),
        backoff,
        stats: Default::default(),
        commands: Box::new(cordon_agent::uplink::NoEnforcer),
        isolation: Default::default(),
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
    let collectors = Collectors::new(tmp.path());
    // Reached as "localhost:PORT": its certificate must carry that name.
    let cert = collectors.server_cert(&["127.0.0.1", "localhost"]);
    let (endpoint, task, _) = collectors.start(&cert, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let live = endpoint.local_addr().expect("addr");
    // A port nothing listens on (bound and released).
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port");
    let configured = vec![
        Collector::new(dead.into(), ""),
        // Never resolves: left out of every round, with a warning.
        Collector::new("no-such-collector.invalid:7470".parse().expect("name"), ""),
        Collector::new(
            format!("localhost:{}", live.port()).parse().expect("name"),
            "",
        ),
    ];
    let candidates = KnownAddrs::default().resolve(&configured).await;
    assert!(
        candidates.iter().any(|c| c.addr == live),
        "localhost resolves to the collector: {candidates:?}"
    );
    // Starts at the dead address, so it must be skipped.
    let agent_id = id_starting_at(&candidates, dead);
    let mut uplink = uplink(
        tmp.path(),
        configured,
        &agent_id,
        collectors.enrol(&agent_id),
        Duration::from_millis(800),
        Backoff::new(Duration::from_millis(50), Duration::from_millis(400)),
    );
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
    let (endpoint, task, _) = collectors.start(&cert, live);
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
    assert!(uplink.stats.sessions_lost >= 1, "{:?}", uplink.stats);
    // Back on the same collector: not a failover.
    assert_eq!(uplink.stats.failovers, 0, "{:?}", uplink.stats);
    // Exactly once: twenty distinct remote ports, no duplicates.
    let mut ports = collectors.ports();
    assert_eq!(ports.len(), 20);
    ports.dedup();
    assert_eq!(ports.len(), 20);
    endpoint.close(0u32.into(), b"done");
    task.abort();
}
