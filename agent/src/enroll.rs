//! Enrollment, agent side: a fresh key that stays on this host, and a signing request for
//! the collector. (The join-token exchange over the network comes with the rest of the
//! uplink work; until then an operator carries the request to `cordon-collector sign-agent`
//! and the certificate back.)
use std::{
    fs,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use anyhow::Context;
use rcgen::{CertificateParams, KeyPair};

/// Writes `agent.key` (0600, refusing to overwrite one) and `agent.csr` into `dir`;
/// returns the request's path.
pub fn write_csr(dir: &Path) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = KeyPair::generate()?;
    let csr = CertificateParams::new(Vec::<String>::new())?
        .serialize_request(&key)?
        .pem()?;
    let key_path = dir.join("agent.key");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .with_context(|| {
            format!(
                "creating {} (an agent key is never overwritten)",
                key_path.display()
            )
        })?;
    f.write_all(key.serialize_pem().as_bytes())?;
    f.sync_all()?;
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
