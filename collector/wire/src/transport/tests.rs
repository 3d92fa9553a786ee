//! Real QUIC handshakes on loopback: a client certificate from the CA gets in, others do
//! not, and framed messages cross a stream.
use std::net::{Ipv4Addr, SocketAddr};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

use super::*;
use crate::{Hello, Welcome};

struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn pki(name: &str) -> Pki {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let cert = params.self_signed(&key).expect("ca");
    Pki {
        ca_pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// (cert, key) PEMs signed by `ca`.
fn leaf(ca: &Pki, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, &ca.issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

fn server(ca: &Pki) -> quinn::Endpoint {
    let (cert, key) = leaf(ca, &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let cfg = server_config(&ca.ca_pem, &cert, &key).expect("server config");
    quinn::Endpoint::server(cfg, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("endpoint")
}

async fn connect(
    server: &quinn::Endpoint,
    trust: &Pki,
    identity: (String, String),
) -> Result<quinn::Connection, String> {
    let cfg = client_config(&trust.ca_pem, &identity.0, &identity.1).map_err(|e| e.to_string())?;
    let mut client =
        quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("client");
    client.set_default_client_config(cfg);
    let addr = server.local_addr().expect("addr");
    let conn = client
        .connect(addr, "127.0.0.1")
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    // A refused client certificate shows when the server closes the connection, right
    // after the client's side of the handshake; a stream round trip makes it visible.
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    write_message(&mut send, &hello())
        .await
        .map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    match read_message(&mut recv).await.map_err(|e| e.to_string())? {
        Some(Message::Welcome(_)) => Ok(conn),
        other => Err(format!("no welcome: {other:?}")),
    }
}

fn hello() -> Message {
    Message::Hello(Hello {
        protocol_min: 1,
        protocol_max: 1,
        agent_version: "0.1.0".into(),
        host_name: "h1".into(),
        capture: "ebpf".into(),
        boot_id: "b".into(),
        last_seq: 0,
    })
}

/// Accepts connections and answers each Hello with a Welcome; returns, for each completed
/// handshake, the size of the client certificate the server saw (0: none).
fn serve(endpoint: quinn::Endpoint) -> tokio::task::JoinHandle<Vec<usize>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(incoming) = endpoint.accept().await {
            let Ok(conn) = incoming.await else { continue };
            seen.push(peer_certificate(&conn).map_or(0, |c| c.len()));
            let Ok((mut send, mut recv)) = conn.accept_bi().await else {
                continue;
            };
            if let Ok(Some(Message::Hello(_))) = read_message(&mut recv).await {
                let _ = write_message(
                    &mut send,
                    &Message::Welcome(Welcome {
                        protocol: 1,
                        stored_seq: 0,
                    }),
                )
                .await;
                let _ = send.finish();
                let _ = send.stopped().await;
            }
        }
        seen
    })
}

#[tokio::test]
async fn mutual_tls_admits_only_certificates_from_the_ca() {
    let ca = pki("Cordon test CA");
    let other = pki("Some other CA");
    let endpoint = server(&ca);
    let task = serve(endpoint.clone());

    // An agent with a certificate from the CA: in, and a Hello gets a Welcome.
    let good = leaf(&ca, &["h1-agent"], ExtendedKeyUsagePurpose::ClientAuth);
    let conn = connect(&endpoint, &ca, good)
        .await
        .expect("a CA-signed agent connects");
    let peer = peer_certificate(&conn).expect("the collector's certificate");
    assert!(!peer.is_empty());

    // A certificate from another CA: refused.
    let stranger = leaf(&other, &["h1-agent"], ExtendedKeyUsagePurpose::ClientAuth);
    assert!(
        connect(&endpoint, &ca, stranger).await.is_err(),
        "a foreign certificate got in"
    );

    // An agent that does not trust the collector's CA refuses the collector.
    let good_again = leaf(&ca, &["h2-agent"], ExtendedKeyUsagePurpose::ClientAuth);
    assert!(
        connect(&endpoint, &other, good_again).await.is_err(),
        "an unknown collector was trusted"
    );

    endpoint.close(0u32.into(), b"done");
    let seen = task.await.expect("server task");
    assert_eq!(
        seen.len(),
        1,
        "exactly one client completed the handshake: {seen:?}"
    );
    assert!(seen[0] > 0, "the server saw the client's certificate");
}

#[tokio::test]
async fn frames_cross_a_stream_and_oversize_lengths_are_refused() {
    let (mut a, mut b) = tokio::io::duplex(1 << 16);
    write_message(&mut a, &hello()).await.expect("write");
    assert_eq!(read_message(&mut b).await.expect("read"), Some(hello()));
    drop(a);
    assert_eq!(read_message(&mut b).await.expect("eof"), None);

    let (mut a, mut b) = tokio::io::duplex(64);
    tokio::io::AsyncWriteExt::write_all(&mut a, &u32::MAX.to_be_bytes())
        .await
        .expect("write");
    assert!(matches!(
        read_message(&mut b).await,
        Err(WireError::FrameTooLarge { .. })
    ));
}

#[test]
fn bad_pem_is_a_clear_error() {
    let ca = pki("Cordon test CA");
    let (cert, key) = leaf(&ca, &["x"], ExtendedKeyUsagePurpose::ClientAuth);
    let err = client_config("not a pem", &cert, &key).expect_err("bad CA");
    assert!(err.to_string().contains("CA certificate"), "{err}");
    let err = server_config(&ca.ca_pem, &cert, "nope").expect_err("bad key");
    assert!(err.to_string().contains("private key"), "{err}");
}

/// Connects without a client certificate, trusting the CA only by `fingerprint`.
async fn enroll_connect(server: &quinn::Endpoint, fingerprint: &str) -> Result<(), String> {
    let cfg = enroll_client_config(fingerprint).map_err(|e| e.to_string())?;
    let mut client =
        quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("client");
    client.set_default_client_config(cfg);
    let addr = server.local_addr().expect("addr");
    client
        .connect(addr, "127.0.0.1")
        .map_err(|e| e.to_string())?
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn enrolling_agents_trust_the_collector_by_ca_fingerprint() {
    let ca = pki("Cordon test CA");
    let (cert, key) = leaf(&ca, &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    // The collector sends its CA after its own certificate.
    let chain = format!("{cert}{}", ca.ca_pem);
    let cfg = server_config(&ca.ca_pem, &chain, &key).expect("server config");
    let endpoint =
        quinn::Endpoint::server(cfg, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("endpoint");
    let task = serve(endpoint.clone());
    let ca_der = CertificateDer::from_pem_slice(ca.ca_pem.as_bytes()).expect("ca der");
    let right = fingerprint(&ca_der);
    // Upper case with colons, as tools print it, is the same fingerprint.
    let printed: String = right
        .to_ascii_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    enroll_connect(&endpoint, &printed)
        .await
        .expect("the right fingerprint is trusted");

    let other = pki("Impostor CA");
    let other_der = CertificateDer::from_pem_slice(other.ca_pem.as_bytes()).expect("der");
    let err = enroll_connect(&endpoint, &fingerprint(&other_der))
        .await
        .expect_err("a wrong fingerprint was trusted");
    assert!(err.contains("fingerprint"), "{err}");
    let err = enroll_connect(&endpoint, "abc")
        .await
        .expect_err("a malformed fingerprint was accepted");
    assert!(err.contains("64 hex digits"), "{err}");

    endpoint.close(0u32.into(), b"done");
    let seen = task.await.expect("server task");
    assert_eq!(seen, vec![0], "one certificate-less handshake: {seen:?}");
}

#[tokio::test]
async fn the_agent_side_gives_up_a_handshake_with_a_silent_address() {
    let ca = pki("Cordon test CA");
    let agent = leaf(&ca, &["h1-agent"], ExtendedKeyUsagePurpose::ClientAuth);
    // Bound but never read: the address of a collector that no longer answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let cfg = client_config(&ca.ca_pem, &agent.0, &agent.1).expect("client config");
    let mut client =
        quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("client");
    client.set_default_client_config(cfg);
    let start = std::time::Instant::now();
    let res = client
        .connect(silent.local_addr().expect("addr"), "127.0.0.1")
        .expect("connect")
        .await;
    let took = start.elapsed();
    assert!(
        matches!(res, Err(quinn::ConnectionError::TimedOut)),
        "{res:?}"
    );
    // The idle timeout (DEFAULT_DEAD_AFTER), not the collector side's 10 s.
    assert!(
        took < DEFAULT_DEAD_AFTER + Duration::from_secs(1),
        "{took:?}"
    );
    println!("handshake with a silent address given up after {took:?}");
}

#[test]
fn the_agent_transport_notices_a_dead_collector_within_dead_after() {
    // What client_transport sets is only visible through Debug; check the numbers there:
    // keep-alive interval plus idle timeout is dead_after.
    let t = format!("{:?}", client_transport(Duration::from_millis(3000)));
    assert!(t.contains("keep_alive_interval: Some(750ms)"), "{t}");
    assert!(t.contains("max_idle_timeout: Some(2250)"), "{t}");
}
