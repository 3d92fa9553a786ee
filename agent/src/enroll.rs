//! Enrollment, agent side: a fresh key that stays on this host, and a signing request for
//! the collector. Over the network (`cordon-agent enroll`): the agent trusts the collector
//! by the CA fingerprint the operator gives it, sends its join token and request, and saves
//! the certificate and the CA it gets back. Offline: `cordon-agent csr`, then
//! `cordon-collector sign-agent` on the collector.
use std::{
    fs,
    io::Write,
    net::SocketAddr,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use cordon_wire::{
    Enroll, Message,
    transport::{enroll_client_config, read_message, write_message},
};
use rcgen::{CertificateParams, KeyPair};

use crate::{
    config::UplinkConfig,
    uplink::{Collector, CollectorAddr, KnownAddrs},
};

/// What `cordon-agent enroll` needs.
pub struct EnrollArgs {
    /// `IP:port`, `[IPv6]:port` or `name:port`, as in `uplink.collectors`.
    pub collector: CollectorAddr,
    /// The name in the collector's certificate; empty: the collector's host as written
    /// (its IP or its DNS name), as for `cordon-agent run`.
    pub server_name: String,
    pub token: String,
    pub ca_fingerprint: String,
    pub host_name: String,
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "creating {} (an agent key is never overwritten)",
                path.display()
            )
        })?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Writes `text` to `path` through a temporary file and a rename, so a crash never leaves
/// half a certificate.
fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Enrolls with the collector and stores the key, certificate and CA where `uplink` says;
/// returns the agent id. An existing certificate is an error (already enrolled); an
/// existing key without one (an interrupted enrollment) is used again.
pub async fn enroll(uplink: &UplinkConfig, args: &EnrollArgs) -> anyhow::Result<String> {
    if uplink.cert_file.exists() {
        bail!(
            "{} exists: this agent is already enrolled (remove it, and {}, to enroll again)",
            uplink.cert_file.display(),
            uplink.key_file.display()
        );
    }
    let key = if uplink.key_file.exists() {
        let pem = fs::read_to_string(&uplink.key_file)
            .with_context(|| format!("reading {}", uplink.key_file.display()))?;
        KeyPair::from_pem(&pem).with_context(|| format!("{}", uplink.key_file.display()))?
    } else {
        let key = KeyPair::generate()?;
        write_private(&uplink.key_file, &key.serialize_pem())?;
        key
    };
    let csr_pem = CertificateParams::new(Vec::<String>::new())?
        .serialize_request(&key)?
        .pem()?;
    let cfg = enroll_client_config(&args.ca_fingerprint).context("--ca-fingerprint")?;
    let collector = Collector::new(args.collector.clone(), &args.server_name);
    let (endpoint, conn) = connect(&collector, cfg).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    write_message(
        &mut send,
        &Message::Enroll(Enroll {
            token: args.token.trim().to_string(),
            csr_pem,
            host_name: args.host_name.clone(),
        }),
    )
    .await?;
    send.finish()?;
    let reply = read_message(&mut recv).await?;
    conn.close(0u32.into(), b"enrolled");
    endpoint.wait_idle().await;
    match reply {
        Some(Message::Enrolled(e)) => {
            write_atomic(&uplink.ca_file, &e.ca_pem)?;
            write_atomic(&uplink.cert_file, &e.cert_pem)?;
            Ok(e.agent_id)
        }
        Some(Message::Goodbye(g)) => bail!("the collector said: {}", g.reason),
        Some(_) => bail!("the collector answered out of protocol"),
        None => bail!("the collector closed the connection without an answer"),
    }
}

/// The agent id a certificate names (its subject's common name), as the collector reads
/// it; `None` if the PEM holds no certificate with one.
pub fn agent_id(cert_pem: &str) -> Option<String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

/// Connects to the first of the collector's addresses that answers (a name's are looked
/// up, each tried for at most 15 s), checking its certificate for `server_name`.
async fn connect(
    collector: &Collector,
    cfg: quinn::ClientConfig,
) -> anyhow::Result<(quinn::Endpoint, quinn::Connection)> {
    let candidates = KnownAddrs::default()
        .resolve(std::slice::from_ref(collector))
        .await;
    if candidates.is_empty() {
        bail!("{}: the name does not resolve", collector.addr);
    }
    let mut last = None;
    for c in candidates {
        let bind = if c.addr.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let mut endpoint = quinn::Endpoint::client(bind)?;
        endpoint.set_default_client_config(cfg.clone());
        let err = match endpoint.connect(c.addr, &c.server_name) {
            Ok(connecting) => {
                match tokio::time::timeout(std::time::Duration::from_secs(15), connecting).await {
                    Ok(Ok(conn)) => return Ok((endpoint, conn)),
                    Ok(Err(e)) => anyhow::Error::new(e),
                    Err(_) => anyhow::anyhow!("timed out"),
                }
            }
            Err(e) => anyhow::Error::new(e),
        }
        .context(format!("connecting to {c}"));
        tracing::warn!(error = %format!("{err:#}"), "enrollment: trying the next address");
        last = Some(err);
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("{}: no address", collector.addr)))
}

/// Writes `agent.key` (0600, refusing to overwrite one) and `agent.csr` into `dir`;
/// returns the request's path.
pub fn write_csr(dir: &Path) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = KeyPair::generate()?;
    let csr = CertificateParams::new(Vec::<String>::new())?
        .serialize_request(&key)?
        .pem()?;
    write_private(&dir.join("agent.key"), &key.serialize_pem())?;
    let csr_path = dir.join("agent.csr");
    fs::write(&csr_path, csr).with_context(|| format!("writing {}", csr_path.display()))?;
    Ok(csr_path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn writes_a_private_key_once_and_a_request() {
        let tmp = tempfile::tempdir().expect("tmp");
        let csr = write_csr(tmp.path()).expect("csr");
        let text = fs::read_to_string(&csr).expect("read");
        assert!(text.contains("CERTIFICATE REQUEST"));
        let mode = fs::metadata(tmp.path().join("agent.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            write_csr(tmp.path()).is_err(),
            "an existing key was overwritten"
        );
    }
}
