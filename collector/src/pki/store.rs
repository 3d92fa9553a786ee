//! The CA on disk: `ca.pem` (public) and `ca.key` (private, mode 0600) in the collector's
//! data directory. Created at first start, loaded afterwards; a half-written pair is an
//! error, not a reason to make a new CA (that would orphan every enrolled agent).
use std::{
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use super::{Ca, PkiError};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), PkiError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io(path))?;
    f.write_all(text.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Loads the CA from `dir`, creating it (and `dir`) at first start.
pub fn load_or_create(dir: &Path, name: &str) -> Result<Ca, PkiError> {
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {
            let mode = fs::metadata(&key_path)
                .map_err(io(&key_path))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(PkiError::Io {
                    path: key_path,
                    source: std::io::Error::other(format!(
                        "the CA key is readable by others (mode {:o}); chmod 600 it",
                        mode & 0o777
                    )),
                });
            }
            let cert = fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
            let key = fs::read_to_string(&key_path).map_err(io(&key_path))?;
            Ca::from_pem(&cert, &key)
        }
        (false, false) => {
            fs::create_dir_all(dir).map_err(io(dir))?;
            let ca = Ca::generate(name)?;
            write_new(&key_path, &ca.issuer.key().serialize_pem(), 0o600)?;
            write_new(&cert_path, &ca.cert_pem, 0o644)?;
            Ok(ca)
        }
        _ => Err(PkiError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::other(format!(
                "only one of {CA_CERT} and {CA_KEY} exists; restore the other (a new CA would orphan every enrolled agent)"
            )),
        }),
    }
}
