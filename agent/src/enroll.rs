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

use crate::config::UplinkConfig;

/// What `cordon-agent enroll` needs.
pub struct EnrollArgs {
    pub collector: SocketAddr,
    /// The name in the collector's certificate; empty: the collector's IP.
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
    let bind = if args.collector.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let mut endpoint = quinn::Endpoint::client(bind)?;
    endpoint.set_default_client_config(cfg);
    let name = if args.server_name.is_empty() {
        args.collector.ip().to_string()
    } else {
        args.server_name.clone()
    };
    let conn = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        endpoint.connect(args.collector, &name)?,
    )
    .await
    .with_context(|| format!("connecting to {}: timed out", args.collector))?
    .with_context(|| format!("connecting to {}", args.collector))?;
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
