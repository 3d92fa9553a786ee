use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use x509_parser::{
    certificate::X509Certificate, extensions::ParsedExtension, pem::parse_x509_pem,
    prelude::FromDer,
};

use super::*;

fn parse(pem_text: &str) -> Vec<u8> {
    parse_x509_pem(pem_text.as_bytes()).expect("pem").1.contents
}

/// A request that asks for far more than an agent should get.
fn greedy_csr() -> (String, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["collector.evil".to_string()]).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let csr = params.serialize_request(&key).expect("csr");
    (csr.pem().expect("pem"), key)
}

#[test]
fn signs_only_the_public_key_of_a_request() {
    let ca = Ca::generate("test CA").expect("ca");
    let (csr, key) = greedy_csr();
    let cert_pem = ca.sign_agent(&csr, "h1-agent", 30).expect("signed");
    let der = parse(&cert_pem);
    let (_, cert) = X509Certificate::from_der(&der).expect("x509");
    let (_, ca_cert) = X509Certificate::from_der(&ca.cert_der).expect("ca x509");

    // Chains to the CA, carries the requester's key.
    cert.verify_signature(Some(ca_cert.public_key()))
        .expect("signed by the CA");
    assert_eq!(cert.issuer(), ca_cert.subject());
    assert_eq!(
        &*cert.public_key().subject_public_key.data,
        key.public_key_raw()
    );
    // The collector's choices, not the request's.
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok());
    assert_eq!(cn, Some("h1-agent"));
    let mut client_auth = false;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => assert!(!bc.ca, "issued a CA"),
            ParsedExtension::SubjectAlternativeName(_) => panic!("copied the requested SAN"),
            ParsedExtension::ExtendedKeyUsage(eku) => {
                client_auth = eku.client_auth;
                assert!(!eku.server_auth, "agent certificate usable as a server");
            }
            _ => {}
        }
    }
    assert!(client_auth, "no clientAuth usage");
    let days =
        (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86_400;
    assert_eq!(days, 30);
}

#[test]
fn refuses_bad_requests_and_ids() {
    let ca = Ca::generate("test CA").expect("ca");
    let (csr, _) = greedy_csr();
    assert!(matches!(
        ca.sign_agent("not a csr", "h1", 30),
        Err(PkiError::BadRequest(_))
    ));
    for id in ["", "h 1", "../etc", &"x".repeat(65)] {
        assert!(
            matches!(ca.sign_agent(&csr, id, 30), Err(PkiError::BadAgentId(_))),
            "{id:?}"
        );
    }
}

#[test]
fn server_certificates_chain_to_the_ca() {
    let ca = Ca::generate("test CA").expect("ca");
    let (cert_pem, key_pem) = ca
        .issue_server(&["127.0.0.1".into(), "collector.lab".into()])
        .expect("server");
    assert!(key_pem.contains("PRIVATE KEY"));
    let der = parse(&cert_pem);
    let (_, cert) = X509Certificate::from_der(&der).expect("x509");
    let (_, ca_cert) = X509Certificate::from_der(&ca.cert_der).expect("ca x509");
    cert.verify_signature(Some(ca_cert.public_key()))
        .expect("signed by the CA");
}

#[test]
fn the_ca_is_created_once_then_loaded_with_a_private_key() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data/pki");
    let first = load_or_create(&dir, "Cordon CA").expect("create");
    let again = load_or_create(&dir, "Cordon CA").expect("load");
    assert_eq!(first.fingerprint(), again.fingerprint());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join(CA_KEY))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The loaded CA still signs certificates that verify against the stored one.
    let (csr, _) = greedy_csr();
    let der = parse(&again.sign_agent(&csr, "h2", 1).expect("sign"));
    let (_, cert) = X509Certificate::from_der(&der).expect("x509");
    let (_, ca_cert) = X509Certificate::from_der(&first.cert_der).expect("ca");
    cert.verify_signature(Some(ca_cert.public_key()))
        .expect("chains");

    // A key others can read, or half a pair, is refused rather than replaced.
    std::fs::set_permissions(dir.join(CA_KEY), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    assert!(load_or_create(&dir, "Cordon CA").is_err());
    std::fs::remove_file(dir.join(CA_KEY)).expect("rm");
    let err = load_or_create(&dir, "Cordon CA")
        .err()
        .expect("half a pair");
    assert!(err.to_string().contains("orphan"), "{err}");
}

#[test]
fn fingerprints_compare_in_any_notation() {
    let ca = Ca::generate("test CA").expect("ca");
    let fp = ca.fingerprint();
    assert_eq!(fp.len(), 64);
    let colons: Vec<String> = fp
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_uppercase())
        .collect();
    let given = cordon_wire::transport::normalize_fingerprint(&colons.join(":"));
    assert_eq!(given.as_deref(), Some(fp.as_str()));
    assert_ne!(fp, Ca::generate("another CA").expect("ca").fingerprint());
}
