//! The collector's certificate authority.
//!
//! At first start the collector creates a CA (ECDSA P-256) in its data directory; agents
//! enroll by sending a certificate signing request and get back a client certificate signed
//! by it, which is their identity from then on. The CA signs only the public key of a
//! request: subject, validity, key usage and the fact that it is not a CA are the
//! collector's choice, whatever the request asks for.
mod store;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

pub use store::{CA_CERT, CA_KEY, load_or_create};

/// Why a certificate operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate signing request: {0}")]
    BadRequest(String),
    #[error("agent id `{0}`: 1 to 64 characters of a-z, A-Z, 0-9, '.', '-', '_'")]
    BadAgentId(String),
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

pub use cordon_wire::transport::fingerprint;

/// The CA: its certificate and the key that signs.
pub struct Ca {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    // A little slack for clocks slightly behind the collector's.
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(days);
}

fn valid_agent_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

impl Ca {
    /// A new CA named `name`, valid for ten years.
    pub fn generate(name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, 3650);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A CA from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let cert_der = pem::parse(cert_pem)
            .map_err(|e| PkiError::BadRequest(format!("CA certificate: {e}")))?
            .into_contents();
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            cert_der,
            issuer,
        })
    }

    /// The CA's private key (PEM): only for storing it where the nodes of a cluster share
    /// it.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// The CA's fingerprint (SHA-256 of its DER).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }

    /// A server certificate and key for the collector's endpoint, for `names` (DNS names or
    /// IP addresses), valid for a year.
    pub fn issue_server(&self, names: &[String]) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().map_or("cordon-collector", String::as_str),
        );
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, 365);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Signs an agent's request: the certificate carries the request's public key and
    /// nothing else from it. Its subject is `agent_id`, it is good for client
    /// authentication only, and it is valid for `days`.
    pub fn sign_agent(&self, csr_pem: &str, agent_id: &str, days: i64) -> Result<String, PkiError> {
        if !valid_agent_id(agent_id) {
            return Err(PkiError::BadAgentId(agent_id.to_string()));
        }
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::BadRequest(e.to_string()))?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, agent_id);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut params, days);
        Ok(params.signed_by(&csr.public_key, &self.issuer)?.pem())
    }
}

#[cfg(test)]
mod tests;
