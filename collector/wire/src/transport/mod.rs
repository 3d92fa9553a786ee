//! The secure transport: QUIC (quinn) with TLS 1.3 only, mutual authentication against the
//! collector's CA, one crypto provider (ring) everywhere, and a protocol name (ALPN) so a
//! stray client of another protocol is refused in the handshake. Messages travel on a
//! stream as frames ([`write_message`] / [`read_message`]).
use std::{sync::Arc, time::Duration};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::{
    RootCertStore,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{MAX_FRAME_BYTES, Message, WireError, decode, encode};

mod pinned;
pub use pinned::{fingerprint, normalize_fingerprint};

/// ALPN protocol name of this protocol.
pub const ALPN: &[u8] = b"cordon/1";

/// A peer silent this long is gone (agents keep their connection alive more often).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
const KEEP_ALIVE: Duration = Duration::from_secs(3);

/// The agent's default dead-peer detection ([`client_transport`]).
pub const DEFAULT_DEAD_AFTER: Duration = Duration::from_secs(3);

/// The collector's side (and enrollment's): 10 s idle timeout, 3 s keep-alives.
fn transport() -> Arc<quinn::TransportConfig> {
    idle_and_keep_alive(IDLE_TIMEOUT, KEEP_ALIVE)
}

fn idle_and_keep_alive(idle: Duration, keep_alive: Duration) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    let ms = u32::try_from(idle.as_millis()).unwrap_or(u32::MAX);
    t.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(ms))));
    t.keep_alive_interval(Some(keep_alive));
    Arc::new(t)
}

/// The agent's side of a session: a collector silent for `dead_after` is gone, and a
/// handshake with no answer for that long is given up (quinn applies the idle timeout to
/// the handshake too). The agent sends keep-alives every quarter of it, and its idle
/// timeout is the other three quarters: QUIC restarts the idle timer at the first
/// ack-eliciting packet sent after the last one received (RFC 9000 §10.1), so a dead
/// collector is noticed at most a keep-alive interval plus the idle timeout after it was
/// last heard — `dead_after` (with the idle timeout at `dead_after` itself it took up to a
/// third longer: 4.0 s for 3 s measured). A live but quiet collector answers three
/// keep-alives within the idle timeout. QUIC uses the smaller of both sides' idle
/// timeouts, so the collector's 10 s does not lengthen it. At least 100 ms (0 would
/// disable the timeout).
pub fn client_transport(dead_after: Duration) -> Arc<quinn::TransportConfig> {
    let dead_after = dead_after.max(Duration::from_millis(100));
    let keep_alive = dead_after / 4;
    idle_and_keep_alive(dead_after - keep_alive, keep_alive)
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{what}: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("QUIC crypto: {0}")]
    Quic(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &str) -> Result<Arc<RootCertStore>, TransportError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| TransportError::Pem {
            what: "CA certificate",
            reason: e.to_string(),
        })?;
        roots.add(cert)?;
    }
    if roots.is_empty() {
        return Err(TransportError::Pem {
            what: "CA certificate",
            reason: "no certificate in the PEM".into(),
        });
    }
    Ok(Arc::new(roots))
}

fn identity(
    cert_pem: &str,
    key_pem: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TransportError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransportError::Pem {
            what: "certificate",
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TransportError::Pem {
            what: "certificate",
            reason: "no certificate in the PEM".into(),
        });
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| TransportError::Pem {
            what: "private key",
            reason: e.to_string(),
        })?;
    Ok((certs, key))
}

/// The collector's side: its certificate chain (its own certificate, then the CA's, which
/// enrolling agents check against the fingerprint they were given), and client
/// certificates checked against the CA. A client without a certificate completes the
/// handshake but may only enroll (the collector enforces that on the connection); a
/// certificate that does not chain to the CA is refused in the handshake.
pub fn server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<quinn::ServerConfig, TransportError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider())
        .allow_unauthenticated()
        .build()?;
    let (certs, key) = identity(cert_pem, key_pem)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicServerConfig::try_from(tls).map_err(|e| TransportError::Quic(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(transport());
    Ok(cfg)
}

/// The agent's side: the collector must present a certificate from the CA, and the agent
/// presents its own. Dead-peer detection is [`client_transport`] with
/// [`DEFAULT_DEAD_AFTER`]; set another with `transport_config`.
pub fn client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<quinn::ClientConfig, TransportError> {
    let (certs, key) = identity(cert_pem, key_pem)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(certs, key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|e| TransportError::Quic(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(client_transport(DEFAULT_DEAD_AFTER));
    Ok(cfg)
}

/// An enrolling agent's side: no certificate of its own yet, and the collector's CA known
/// only by its SHA-256 fingerprint (see [`pinned`]).
pub fn enroll_client_config(ca_fingerprint: &str) -> Result<quinn::ClientConfig, TransportError> {
    let pin = normalize_fingerprint(ca_fingerprint).ok_or(TransportError::Pem {
        what: "CA fingerprint",
        reason: "expected 64 hex digits (SHA-256), colons allowed".into(),
    })?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(pinned::PinnedCa::new(pin, provider())))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|e| TransportError::Quic(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(transport());
    Ok(cfg)
}

/// The certificate the peer authenticated with (its identity), if any.
pub fn peer_certificate(conn: &quinn::Connection) -> Option<CertificateDer<'static>> {
    conn.peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?
        .into_iter()
        .next()
}

/// Writes one framed message.
pub async fn write_message(
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
    msg: &Message,
) -> Result<(), WireError> {
    let body = encode(msg)?;
    out.write_all(&(body.len() as u32).to_be_bytes()).await?;
    out.write_all(&body).await?;
    Ok(())
}

/// The messages of a stream, read by a task of their own: a `read_message` cut short by
/// `select!` would lose part of a frame, a receive from this never does. The task ends
/// at the end of the stream, at the first error (delivered last), or when this is dropped.
pub struct MessageReader {
    messages: tokio::sync::mpsc::Receiver<Result<Option<Message>, WireError>>,
    task: tokio::task::JoinHandle<()>,
}

impl MessageReader {
    pub fn spawn(mut input: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Self {
        let (tx, messages) = tokio::sync::mpsc::channel(16);
        let task = tokio::spawn(async move {
            loop {
                let m = read_message(&mut input).await;
                let end = !matches!(m, Ok(Some(_)));
                if tx.send(m).await.is_err() || end {
                    return;
                }
            }
        });
        Self { messages, task }
    }

    /// The next message; `Ok(None)` once the stream has ended.
    pub async fn next(&mut self) -> Result<Option<Message>, WireError> {
        self.messages.recv().await.unwrap_or(Ok(None))
    }
}

impl Drop for MessageReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one framed message; `None` at a clean end of stream. The length is checked
/// before the body is read.
pub async fn read_message(
    input: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Result<Option<Message>, WireError> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(WireError::FrameTooLarge {
            max: MAX_FRAME_BYTES,
        });
    }
    let mut body = vec![0u8; len];
    input.read_exact(&mut body).await?;
    decode(&body).map(Some)
}

#[cfg(test)]
mod tests;
