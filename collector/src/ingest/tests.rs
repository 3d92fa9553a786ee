//! The ingest endpoint over real QUIC on loopback, against an in-memory store.
use std::net::{Ipv4Addr, SocketAddr};

use cordon_wire::{
    Direction, Enroll, FlowBatch, FlowEvent, FlowRecord, Goodbye, Hello, Proto, Verdict,
    transport::{client_config, enroll_client_config, server_config},
};
use rcgen::{CertificateParams, KeyPair};

use super::*;
use crate::{metrics::Metrics, pki::Ca, store::FlowFilter};

struct Lab {
    ca: Arc<Ca>,
    endpoint: quinn::Endpoint,
    store: SharedStore,
    metrics: Arc<Metrics>,
    live: Arc<Live>,
}

fn lab() -> Lab {
    let ca = Arc::new(Ca::generate("test CA").expect("ca"));
    let (cert, key) = ca.issue_server(&["127.0.0.1".into()]).expect("server cert");
    let chain = format!("{cert}{}", ca.cert_pem);
    let cfg = server_config(&ca.cert_pem, &chain, &key).expect("server config");
    let endpoint =
        quinn::Endpoint::server(cfg, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("endpoint");
    let store: SharedStore = Arc::new(Mutex::new(Store::in_memory().expect("store")));
    let metrics = Arc::new(Metrics::new());
    let mut ingest = Ingest::new(store.clone(), ca.clone());
    ingest.metrics = metrics.clone();
    ingest.agent_cert_days = 1;
    let live = ingest.live.clone();
    tokio::spawn(serve(endpoint.clone(), ingest));
    Lab {
        ca,
        endpoint,
        store,
        metrics,
        live,
    }
}

/// A fresh key and a signing request for it.
fn csr() -> (String, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let csr = CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    (csr, key)
}

/// An agent identity enrolled with the lab's CA.
fn agent(lab: &Lab, id: &str) -> (String, String) {
    let (csr, key) = csr();
    (
        lab.ca.sign_agent(&csr, id, 1).expect("sign"),
        key.serialize_pem(),
    )
}

struct Agent {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    _endpoint: quinn::Endpoint,
}

async fn connect(lab: &Lab, identity: &(String, String)) -> Agent {
    let cfg = client_config(&lab.ca.cert_pem, &identity.0, &identity.1).expect("client config");
    connect_with(lab, cfg).await
}

async fn connect_with(lab: &Lab, cfg: quinn::ClientConfig) -> Agent {
    let mut endpoint =
        quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("client");
    endpoint.set_default_client_config(cfg);
    let conn = endpoint
        .connect(lab.endpoint.local_addr().expect("addr"), "127.0.0.1")
        .expect("connect")
        .await
        .expect("handshake");
    let (send, recv) = conn.open_bi().await.expect("stream");
    Agent {
        send,
        recv,
        _endpoint: endpoint,
    }
}

impl Agent {
    async fn say(&mut self, m: &Message) {
        write_message(&mut self.send, m).await.expect("send");
    }

    async fn hear(&mut self) -> Option<Message> {
        read_message(&mut self.recv).await.ok().flatten()
    }

    async fn hello(&mut self) -> Option<Message> {
        self.say(&Message::Hello(Hello {
            protocol_min: 1,
            protocol_max: 1,
            agent_version: "0.1.0".into(),
            host_name: "h1".into(),
            capture: "ebpf".into(),
            boot_id: "b".into(),
            last_seq: 0,
        }))
        .await;
        self.hear().await
    }
}

fn batch(seq: u64, n: u16) -> Message {
    let records = (0..n)
        .map(|i| FlowRecord {
            event: FlowEvent::Start,
            first_seen_ns: 1_700_000_000_000_000_000,
            last_seen_ns: 1_700_000_000_000_000_001,
            proto: Proto::Tcp,
            direction: Direction::Outbound,
            local: "10.0.0.1:40000".parse().expect("addr"),
            remote: SocketAddr::from(([10, 0, 0, 2], 1000 + i)),
            bytes_out: 60,
            bytes_in: 0,
            packets_out: 1,
            packets_in: 0,
            tcp_flags: (2, 0),
            closed: false,
            verdict: Verdict::Forwarded,
            process: None,
            unattributed_reason: Some("test".into()),
        })
        .collect();
    Message::FlowBatch(FlowBatch {
        seq,
        records,
        dropped_before: 0,
    })
}

fn stored_flows(lab: &Lab) -> usize {
    lab.store
        .lock()
        .expect("lock")
        .flows(&FlowFilter {
            limit: 10_000,
            ..Default::default()
        })
        .expect("query")
        .len()
}

#[tokio::test]
async fn batches_are_acknowledged_once_stored_and_resends_are_not_stored_twice() {
    let lab = lab();
    let id = agent(&lab, "h1-agent");
    let mut a = connect(&lab, &id).await;
    assert_eq!(
        a.hello().await,
        Some(Message::Welcome(Welcome {
            protocol: 1,
            stored_seq: 0
        }))
    );
    a.say(&batch(1, 3)).await;
    assert_eq!(a.hear().await, Some(Message::Ack(Ack { seq: 1 })));
    a.say(&batch(1, 3)).await; // the ack was "lost": a resend
    assert_eq!(a.hear().await, Some(Message::Ack(Ack { seq: 1 })));
    a.say(&batch(2, 2)).await;
    assert_eq!(a.hear().await, Some(Message::Ack(Ack { seq: 2 })));
    assert_eq!(stored_flows(&lab), 5);
    a.say(&Message::Goodbye(Goodbye {
        reason: "restart".into(),
    }))
    .await;

    // After a reconnect the collector says what it has.
    let mut a = connect(&lab, &id).await;
    assert_eq!(
        a.hello().await,
        Some(Message::Welcome(Welcome {
            protocol: 1,
            stored_seq: 2
        }))
    );
}

#[tokio::test]
async fn malformed_input_closes_that_connection_only() {
    let lab = lab();
    let id = agent(&lab, "h1-agent");
    let mut bad = connect(&lab, &id).await;
    assert!(matches!(bad.hello().await, Some(Message::Welcome(_))));
    // A frame that is not a message.
    tokio::io::AsyncWriteExt::write_all(&mut bad.send, &[0, 0, 0, 3, 0xff, 0xff, 0xff])
        .await
        .expect("write");
    assert_eq!(
        bad.hear().await,
        None,
        "the connection stays open after garbage"
    );

    // Another agent, and the same one again, are served as usual.
    let mut good = connect(&lab, &agent(&lab, "h2-agent")).await;
    assert!(matches!(good.hello().await, Some(Message::Welcome(_))));
    good.say(&batch(1, 1)).await;
    assert_eq!(good.hear().await, Some(Message::Ack(Ack { seq: 1 })));

    // Speaking out of turn is refused too.
    let mut rude = connect(&lab, &id).await;
    rude.say(&batch(1, 1)).await;
    assert_eq!(rude.hear().await, None, "a batch before Hello was accepted");
}

#[tokio::test]
async fn revoked_agents_are_turned_away() {
    let lab = lab();
    let id = agent(&lab, "h1-agent");
    let mut a = connect(&lab, &id).await;
    assert!(matches!(a.hello().await, Some(Message::Welcome(_))));
    assert!(
        lab.store
            .lock()
            .expect("lock")
            .revoke("h1-agent")
            .expect("revoke")
    );
    let mut again = connect(&lab, &id).await;
    assert_eq!(again.hello().await, None, "a revoked agent got a Welcome");
}

#[test]
fn agent_ids_come_from_the_certificate_subject() {
    let ca = Ca::generate("test CA").expect("ca");
    let (csr, _key) = csr();
    let pem_text = ca.sign_agent(&csr, "db-3.lab", 1).expect("sign");
    let der = pem::parse(pem_text).expect("pem").into_contents();
    assert_eq!(agent_id(&der).expect("id"), "db-3.lab");
    assert!(matches!(
        agent_id(b"junk"),
        Err(IngestError::BadCertificate(_))
    ));
}

/// Enrolls over the agent port with `token`; the agent's (cert, key) or the refusal.
async fn enroll(lab: &Lab, token: &str, host: &str) -> Result<(String, String), String> {
    let cfg = enroll_client_config(&lab.ca.fingerprint()).expect("enroll config");
    let mut a = connect_with(lab, cfg).await;
    let (csr, key) = csr();
    a.say(&Message::Enroll(Enroll {
        token: token.into(),
        csr_pem: csr,
        host_name: host.into(),
    }))
    .await;
    match a.hear().await {
        Some(Message::Enrolled(e)) => {
            assert_eq!(e.ca_pem, lab.ca.cert_pem);
            let der = pem::parse(&e.cert_pem).expect("pem").into_contents();
            assert_eq!(agent_id(&der).expect("cn"), e.agent_id);
            Ok((e.cert_pem, key.serialize_pem()))
        }
        Some(Message::Goodbye(g)) => Err(g.reason),
        other => Err(format!("unexpected {other:?}")),
    }
}

fn join_token(lab: &Lab, uses: u64) -> String {
    let secret = crate::tokens::generate().expect("secret");
    lab.store
        .lock()
        .expect("lock")
        .create_token(
            "join",
            crate::store::Scope::Enroll,
            &crate::tokens::hash(&secret),
            now_ns(),
            Some(now_ns() + 3_600_000_000_000),
            Some(uses),
        )
        .expect("token");
    secret
}

#[tokio::test]
async fn agents_enroll_with_a_join_token_and_then_connect_with_their_certificate() {
    let lab = lab();
    let token = join_token(&lab, 2);
    let id = enroll(&lab, &token, "web-1").await.expect("enrolled");
    let mut a = connect(&lab, &id).await;
    assert!(matches!(a.hello().await, Some(Message::Welcome(_))));
    // The same host name again gets an id of its own.
    let second = enroll(&lab, &token, "web-1").await.expect("second use");
    let der = pem::parse(&second.0).expect("pem").into_contents();
    assert_eq!(agent_id(&der).expect("cn"), "web-1-2");
    // Used up, unknown, malformed, and an API token: refused, with the reason.
    let err = enroll(&lab, &token, "web-3").await.expect_err("used up");
    assert!(err.contains("used up"), "{err}");
    let unknown = crate::tokens::generate().expect("secret");
    let err = enroll(&lab, &unknown, "x").await.expect_err("unknown");
    assert!(err.contains("unknown token"), "{err}");
    let err = enroll(&lab, "letmein", "x").await.expect_err("malformed");
    assert!(err.contains("malformed"), "{err}");
    // A bad request does not spend a use of a good token.
    let one = join_token(&lab, 1);
    let cfg = enroll_client_config(&lab.ca.fingerprint()).expect("cfg");
    let mut a = connect_with(&lab, cfg).await;
    a.say(&Message::Enroll(Enroll {
        token: one.clone(),
        csr_pem: "not a request".into(),
        host_name: "db-1".into(),
    }))
    .await;
    assert!(matches!(a.hear().await, Some(Message::Goodbye(_))));
    enroll(&lab, &one, "db-1")
        .await
        .expect("the token still works");
    let text = lab.metrics.render();
    assert!(
        text.contains("cordon_collector_enrollments_total{outcome=\"enrolled\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("cordon_collector_enrollments_total{outcome=\"refused\"} 4"),
        "{text}"
    );
}

#[tokio::test]
async fn without_a_certificate_nothing_but_enrollment_is_accepted() {
    let lab = lab();
    let cfg = enroll_client_config(&lab.ca.fingerprint()).expect("cfg");
    let mut a = connect_with(&lab, cfg).await;
    assert_eq!(a.hello().await, None, "a certificate-less Hello got in");
    let cfg = enroll_client_config(&lab.ca.fingerprint()).expect("cfg");
    let mut a = connect_with(&lab, cfg).await;
    a.say(&batch(1, 1)).await;
    assert_eq!(a.hear().await, None);
    assert_eq!(stored_flows(&lab), 0);
    let text = lab.metrics.render();
    assert!(
        text.contains("connections_refused_total{reason=\"protocol\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn commands_are_delivered_at_connect_and_when_queued_and_results_are_recorded() {
    use cordon_wire::{CommandKind, CommandResult, EnforcementState};

    use crate::store::NewCommand;
    let lab = lab();
    let id = agent(&lab, "h1-agent");
    // Known host, offline: the command waits.
    let mut a = connect(&lab, &id).await;
    assert!(matches!(a.hello().await, Some(Message::Welcome(_))));
    a.say(&Message::Goodbye(Goodbye { reason: "x".into() }))
        .await;
    let isolate = NewCommand {
        kind: "isolate",
        body: serde_json::json!({"reason": "escaped flow", "expires_at": 0, "allow": ["10.0.0.9:22"]}),
        by: "analyst".into(),
    };
    let queued = lab
        .store
        .lock()
        .expect("lock")
        .create_command("h1-agent", &isolate, now_ns())
        .expect("store")
        .expect("host");
    let mut a = connect(&lab, &id).await;
    assert!(matches!(a.hello().await, Some(Message::Welcome(_))));
    let Some(Message::Command(c)) = a.hear().await else {
        panic!("no command at connect");
    };
    assert_eq!(c.id, queued.id as u64);
    assert!(matches!(&c.kind, CommandKind::Isolate { reason, allow, .. }
        if reason == "escaped flow" && allow.len() == 1));
    a.say(&Message::CommandResult(CommandResult {
        id: c.id,
        ok: true,
        message: "isolated (nftables)".into(),
    }))
    .await;
    a.say(&Message::EnforcementState(EnforcementState {
        backend: "nftables".into(),
        isolated: true,
        since: 1_764_000_000,
        expires_at: 0,
        by: "analyst".into(),
        reason: "escaped flow".into(),
    }))
    .await;
    // A command queued while connected is pushed at once.
    let release = NewCommand {
        kind: "release",
        body: serde_json::json!({"reason": "clean"}),
        by: "analyst".into(),
    };
    let second = lab
        .store
        .lock()
        .expect("lock")
        .create_command("h1-agent", &release, now_ns())
        .expect("store")
        .expect("host");
    // What the API does after queueing: poke the connection, which sends it at once.
    assert!(lab.live.poke("h1-agent"), "the agent is connected");
    let Some(Message::Command(c)) = a.hear().await else {
        panic!("no release command");
    };
    assert_eq!(c.id, second.id as u64);
    assert!(matches!(c.kind, CommandKind::Release { .. }));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let done = lab
            .store
            .lock()
            .expect("lock")
            .commands(Some("h1-agent"), 10)
            .expect("commands");
        let first = done.iter().find(|r| r.id == queued.id).expect("first");
        let host = lab
            .store
            .lock()
            .expect("lock")
            .host("h1-agent")
            .expect("db")
            .expect("host");
        if first.state == "done" && host.isolated {
            assert_eq!(first.result.as_deref(), Some("isolated (nftables)"));
            assert_eq!(host.enforcement_backend.as_deref(), Some("nftables"));
            assert_eq!(host.isolated_by.as_deref(), Some("analyst"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{done:?} {host:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let audit = lab
        .store
        .lock()
        .expect("lock")
        .audit_log(0, 100)
        .expect("audit");
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    for want in [
        "isolate.requested",
        "isolate.done",
        "host.isolated",
        "release.requested",
    ] {
        assert!(actions.contains(&want), "{actions:?}");
    }
}
