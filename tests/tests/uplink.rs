//! The uplink end to end, in one process over loopback QUIC: an agent's spool and uplink
//! against the collector's ingest and store. A collector outage loses nothing: batches
//! made while it is down wait in the spool and arrive exactly once after it returns; a dead
//! collector address and a name that does not resolve are skipped. With two collector
//! nodes sharing a store, killing the agent's node moves the agent to the other within
//! 5 s, and every batch is stored exactly once.
use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
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
use tokio::net::UdpSocket;

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
    // The dead address first tried is outrun by the live one (its attempt is abandoned,
    // not failed); during the outage every attempt fails.
    assert!(
        uplink.stats.connect_failures >= 1,
        "the outage: {:?}",
        uplink.stats
    );
    assert!(uplink.stats.rounds_failed >= 1, "{:?}", uplink.stats);
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

/// A UDP relay from `front` to the collector at `back`, for one client (the agent). Once
/// `dead` is set it forwards nothing in either direction.
async fn relay(front: UdpSocket, back: SocketAddr, dead: Arc<AtomicBool>) {
    let upstream = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    upstream.connect(back).await.expect("connect");
    let mut peer = None;
    let (mut a, mut b) = (vec![0u8; 65_536], vec![0u8; 65_536]);
    loop {
        tokio::select! {
            got = front.recv_from(&mut a) => {
                let Ok((n, from)) = got else { continue };
                if !dead.load(Ordering::SeqCst) {
                    peer = Some(from);
                    let _ = upstream.send(&a[..n]).await;
                }
            }
            got = upstream.recv(&mut b) => {
                let Ok(n) = got else { continue };
                if let (false, Some(p)) = (dead.load(Ordering::SeqCst), peer) {
                    let _ = front.send_to(&b[..n], p).await;
                }
            }
        }
    }
}

/// A collector node as a process of its own: its endpoint and ingest run on a runtime of
/// their own, and the agent reaches it through a relay on that runtime (so its packets
/// can be cut off at one instant). [`Node::kill`] is `kill -9` of that process on a host
/// that stays up: from that instant nothing more leaves it, no CONNECTION_CLOSE either,
/// then all its tasks stop and its sockets close (the port is closed, as the kernel closes
/// a killed process's sockets).
struct Node {
    rt: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
    dead: Arc<AtomicBool>,
}

impl Node {
    async fn start(collectors: &Collectors, cert: &(String, String)) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let cfg = server_config(&collectors.ca.cert_pem, &cert.0, &cert.1).expect("config");
        let ingest = Ingest::new(collectors.store.clone(), collectors.ca.clone());
        let dead = Arc::new(AtomicBool::new(false));
        let (up_tx, up_rx) = tokio::sync::oneshot::channel();
        let cut = dead.clone();
        rt.spawn(async move {
            let endpoint = quinn::Endpoint::server(cfg, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
                .expect("bind the collector");
            let back = endpoint.local_addr().expect("addr");
            let front = UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind the relay");
            let _ = up_tx.send(front.local_addr().expect("addr"));
            tokio::spawn(serve(endpoint, ingest));
            relay(front, back, cut).await;
        });
        let addr = up_rx.await.expect("node started");
        Self {
            rt: Some(rt),
            addr,
            dead,
        }
    }

    /// Kills the node; returns the instant it fell silent.
    async fn kill(&mut self) -> Instant {
        self.dead.store(true, Ordering::SeqCst);
        let killed = Instant::now();
        if let Some(rt) = self.rt.take() {
            tokio::task::spawn_blocking(move || rt.shutdown_timeout(Duration::from_secs(2)))
                .await
                .expect("shutdown");
        }
        killed
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Not blocking: this may run inside the test's runtime (a failed assertion).
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

#[tokio::test]
async fn when_its_collector_is_killed_the_agent_streams_to_another_node_within_5_s() {
    let tmp = tempfile::tempdir().expect("tmp");
    let collectors = Collectors::new(tmp.path());
    // Two nodes, each with a certificate for its own address only: the agent must check
    // each against the address it was listed as.
    let mut a = Node::start(&collectors, &collectors.server_cert(&["127.0.0.1"])).await;
    let b_cert = collectors.server_cert(&["127.0.0.2"]);
    let (b_endpoint, b_task, b) = collectors.start(&b_cert, SocketAddr::from(([127, 0, 0, 2], 0)));
    let b_addr = b_endpoint.local_addr().expect("addr");
    let configured = vec![
        Collector::new(a.addr.into(), ""),
        Collector::new(b_addr.into(), ""),
    ];
    let candidates = KnownAddrs::default().resolve(&configured).await;
    let agent_id = id_starting_at(&candidates, a.addr);
    let dead_after = Duration::from_millis(cordon_agent::config::DEFAULT_DEAD_AFTER_MS);
    let mut uplink = uplink(
        tmp.path(),
        configured,
        &agent_id,
        collectors.enrol(&agent_id),
        dead_after,
        // The agent's own reconnect backoff: failing over must not wait for it.
        Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
    );
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let agent = tokio::spawn(async move {
        uplink.run(rx).await.expect("uplink");
        uplink
    });

    // A batch of one record every 100 ms, as a busy host's batcher makes them.
    let mut made = 0u32;
    let started = Instant::now();
    while made < 40 || collectors.flows() < 40 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not streaming to A"
        );
        tx.send(vec![record(made)]).await.expect("send");
        made += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(b.live.get(&agent_id).is_none(), "the agent started on B");

    // Kill A; keep making batches; the first one made after the kill must reach B.
    let first_after = made;
    let killed = a.kill().await;
    let mut on_b = None;
    let stored_after = loop {
        let since = killed.elapsed();
        assert!(
            since < Duration::from_secs(5),
            "no batch made after the kill was stored within {since:?}"
        );
        if on_b.is_none() && b.live.get(&agent_id).is_some() {
            on_b = Some(since);
        }
        if collectors.ports().last() >= Some(&(10_000 + first_after as u16)) {
            break since;
        }
        tx.send(vec![record(made)]).await.expect("send");
        made += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let on_b = on_b.unwrap_or(stored_after);
    println!(
        "failover: agent connected to B {on_b:?} after A was killed, first new batch stored on B after {stored_after:?} (dead_after {dead_after:?})"
    );

    // A little more, then stop: everything made is stored, once.
    for _ in 0..10 {
        tx.send(vec![record(made)]).await.expect("send");
        made += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for("every batch made", || collectors.flows() >= made as usize).await;
    drop(tx);
    let uplink = agent.await.expect("agent task");
    let ports = collectors.ports();
    let want: Vec<u16> = (0..made).map(|n| 10_000 + n as u16).collect();
    assert_eq!(ports, want, "every record stored exactly once");
    assert_eq!(uplink.spool.pending_batches(), 0);
    assert_eq!(uplink.stats.failovers, 1, "{:?}", uplink.stats);
    assert_eq!(uplink.stats.sessions_lost, 1, "{:?}", uplink.stats);
    assert_eq!(
        uplink.stats.rounds_failed, 0,
        "no backoff wait: {:?}",
        uplink.stats
    );
    b_endpoint.close(0u32.into(), b"done");
    b_task.abort();
}

/// The node after the lost one is down without a word (a host that is off: no answer, not
/// even a refusal). Attempts overlap, so the agent does not wait out a whole handshake
/// timeout on it before trying the next node: it is on the third node well within twice
/// `dead_after` (what one attempt after the other needed).
#[tokio::test]
async fn a_silent_node_next_in_line_does_not_hold_up_the_failover() {
    let tmp = tempfile::tempdir().expect("tmp");
    let collectors = Collectors::new(tmp.path());
    let mut a = Node::start(&collectors, &collectors.server_cert(&["127.0.0.1"])).await;
    // Bound and never read: datagrams to it vanish, as to a host that is off.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let b_cert = collectors.server_cert(&["127.0.0.3"]);
    let (b_endpoint, b_task, b) = collectors.start(&b_cert, SocketAddr::from(([127, 0, 0, 3], 0)));
    let b_addr = b_endpoint.local_addr().expect("addr");
    let configured = vec![
        Collector::new(a.addr.into(), ""),
        Collector::new(silent_addr.into(), ""),
        Collector::new(b_addr.into(), ""),
    ];
    let candidates = KnownAddrs::default().resolve(&configured).await;
    let agent_id = id_starting_at(&candidates, a.addr);
    let dead_after = Duration::from_millis(cordon_agent::config::DEFAULT_DEAD_AFTER_MS);
    let mut uplink = uplink(
        tmp.path(),
        configured,
        &agent_id,
        collectors.enrol(&agent_id),
        dead_after,
        Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
    );
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let agent = tokio::spawn(async move {
        uplink.run(rx).await.expect("uplink");
        uplink
    });
    tx.send(vec![record(0)]).await.expect("send");
    wait_for("the first flow on A", || collectors.flows() == 1).await;
    assert!(b.live.get(&agent_id).is_none(), "the agent started on B");

    let killed = a.kill().await;
    let on_b = loop {
        let since = killed.elapsed();
        if b.live.get(&agent_id).is_some() {
            break since;
        }
        assert!(since < dead_after * 2, "not on B {since:?} after the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("on B {on_b:?} after A was killed (dead_after {dead_after:?}), past a silent node");
    assert!(
        on_b < dead_after + Duration::from_millis(1500),
        "on B only {on_b:?} after the kill: the silent node held the agent up"
    );
    tx.send(vec![record(1)]).await.expect("send");
    wait_for("the second flow, on B", || collectors.flows() == 2).await;
    drop(tx);
    let uplink = agent.await.expect("agent task");
    assert_eq!(uplink.stats.failovers, 1, "{:?}", uplink.stats);
    assert_eq!(uplink.stats.rounds_failed, 0, "{:?}", uplink.stats);
    drop(silent);
    b_endpoint.close(0u32.into(), b"done");
    b_task.abort();
}
