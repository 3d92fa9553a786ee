//! Enrollment over the agent port: a connection without a client certificate may send
//! one `Enroll` (a join token and a certificate signing request). With a valid token the
//! collector signs the request for a new agent id and answers `Enrolled`; otherwise it
//! answers `Goodbye` with the reason. The private key never leaves the agent.
use cordon_wire::{
    Enroll, Enrolled, Goodbye, Message,
    transport::{fingerprint, read_message, write_message},
};

use super::{Ingest, IngestError, kind, now_ns, with_store};
use crate::{
    metrics::Outcome,
    store::{Scope, Store, StoreError},
    tokens,
};

/// An agent id from a host name: its allowed characters, at most 56 of them, and a
/// number after it when the name is taken (a re-installed host gets a new identity; the
/// operator revokes the old one).
fn pick_agent_id(store: &Store, host_name: &str) -> Result<String, StoreError> {
    let base: String = host_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(56)
        .collect();
    let base = if base.is_empty() {
        "agent".into()
    } else {
        base
    };
    if !store.agent_id_taken(&base)? {
        return Ok(base);
    }
    for n in 2.. {
        let id = format!("{base}-{n}");
        if !store.agent_id_taken(&id)? {
            return Ok(id);
        }
    }
    unreachable!("an unbounded range ends only by returning")
}

/// The certificate for `req`, or why not. The token is checked (and one use of it
/// spent) only once the request has been signed, so a bad request does not use it up.
fn sign(
    store: &mut Store,
    ingest_ca: &crate::pki::Ca,
    days: i64,
    req: &Enroll,
) -> Result<Result<Enrolled, String>, StoreError> {
    if !tokens::well_formed(&req.token) {
        return Ok(Err("malformed join token".into()));
    }
    let agent_id = pick_agent_id(store, &req.host_name)?;
    let cert_pem = match ingest_ca.sign_agent(&req.csr_pem, &agent_id, days) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let now = now_ns();
    let token = match store.use_token(&tokens::hash(&req.token), Scope::Enroll, now)? {
        Ok(t) => t,
        Err(refusal) => return Ok(Err(refusal.to_string())),
    };
    let der = pem::parse(&cert_pem)
        .map(|p| p.into_contents())
        .unwrap_or_default();
    store.record_enrollment(&agent_id, &req.host_name, token.id, &fingerprint(&der), now)?;
    tracing::info!(agent = %agent_id, host = %req.host_name, token = %token.name, "agent enrolled");
    Ok(Ok(Enrolled {
        agent_id,
        cert_pem,
        ca_pem: ingest_ca.cert_pem.clone(),
    }))
}

pub(super) async fn handle(conn: &quinn::Connection, ingest: &Ingest) -> Result<(), IngestError> {
    let (mut send, mut recv) = conn.accept_bi().await?;
    let req = match read_message(&mut recv).await? {
        Some(Message::Enroll(req)) => req,
        Some(other) => {
            return Err(IngestError::Protocol(format!(
                "a connection without a certificate may only enroll, got {}",
                kind(&other)
            )));
        }
        None => return Ok(()),
    };
    let (ca, days) = (ingest.ca.clone(), ingest.agent_cert_days);
    let outcome = with_store(&ingest.store, move |s| sign(s, &ca, days, &req)).await?;
    let (reply, res, label) = match outcome {
        Ok(enrolled) => (Message::Enrolled(enrolled), Ok(()), "enrolled"),
        Err(reason) => (
            Message::Goodbye(Goodbye {
                reason: format!("enrollment refused: {reason}"),
            }),
            Err(IngestError::EnrollRefused(reason)),
            "refused",
        ),
    };
    ingest
        .metrics
        .enrollments
        .get_or_create(&Outcome { outcome: label })
        .inc();
    write_message(&mut send, &reply).await?;
    send.finish()?;
    // Let the answer reach the agent before the connection goes away.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), send.stopped()).await;
    res
}
