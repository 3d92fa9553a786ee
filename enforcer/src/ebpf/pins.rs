//! The pin directory: generations of pinned maps and links, interfaces and addresses.
use std::ffi::CString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::error::EnforcerError;

/// Where the eBPF backend pins its programs' links and maps by default.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/cordon";
/// `BPF_FS_MAGIC` from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

fn io(what: String) -> impl FnOnce(std::io::Error) -> EnforcerError {
    move |e| EnforcerError::Ebpf(format!("{what}: {e}"))
}

/// The pin directory must be on bpffs (its nearest existing ancestor, when it does not
/// exist yet: it is created on the first isolation).
pub fn check_bpffs(dir: &Path) -> Result<(), EnforcerError> {
    let probe = dir.ancestors().find(|a| a.exists()).unwrap_or(dir);
    let c = CString::new(probe.as_os_str().as_encoded_bytes())
        .map_err(|_| EnforcerError::Ebpf(format!("bad path {}", probe.display())))?;
    // SAFETY: statfs on a valid C string into a zeroed struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(EnforcerError::Ebpf(format!(
            "enforcer pin directory {}: {}",
            probe.display(),
            std::io::Error::last_os_error()
        )));
    }
    if st.f_type as i64 != BPF_FS_MAGIC {
        return Err(EnforcerError::Invalid {
            field: "bpf_pin_dir",
            detail: format!(
                "{} is not on a BPF file system (mount one: mount -t bpf bpf /sys/fs/bpf)",
                probe.display()
            ),
        });
    }
    Ok(())
}

/// Where a BPF file system is normally mounted; mounted there when it is not.
const BPFFS: &str = "/sys/fs/bpf";

/// Like [`check_bpffs`], but mounts bpffs on /sys/fs/bpf first when the pin directory is
/// under it and nothing is mounted there yet (as systemd would have).
pub fn ensure_bpffs(dir: &Path) -> Result<(), EnforcerError> {
    if check_bpffs(dir).is_ok() || !dir.starts_with(BPFFS) || !Path::new(BPFFS).is_dir() {
        return check_bpffs(dir);
    }
    tracing::warn!(path = BPFFS, "no BPF file system mounted; mounting one");
    nix::mount::mount(
        Some("bpf"),
        BPFFS,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| EnforcerError::Ebpf(format!("mounting bpffs on {BPFFS}: {e}")))?;
    check_bpffs(dir)
}

/// Generation directories, oldest first (`g<nanoseconds>`).
pub fn generations(pin_dir: &Path) -> Result<Vec<PathBuf>, EnforcerError> {
    let rd = match std::fs::read_dir(pin_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("reading {}", pin_dir.display()))(e)),
    };
    let mut gens: Vec<(u128, PathBuf)> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name().to_str()?.strip_prefix('g')?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    gens.sort();
    Ok(gens.into_iter().map(|(_, p)| p).collect())
}

pub fn create_generation(pin_dir: &Path) -> Result<PathBuf, EnforcerError> {
    std::fs::create_dir_all(pin_dir).map_err(io(format!("creating {}", pin_dir.display())))?;
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = pin_dir.join(format!("g{n}"));
    std::fs::create_dir(&dir).map_err(io(format!("creating {}", dir.display())))?;
    Ok(dir)
}

/// Unpins everything of a generation: links detach as their last reference goes.
pub fn remove_generation(dir: &Path) -> Result<(), EnforcerError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(format!("reading {}", dir.display()))(e)),
    };
    for e in rd.filter_map(Result::ok) {
        std::fs::remove_file(e.path()).map_err(io(format!("unpinning {}", e.path().display())))?;
    }
    std::fs::remove_dir(dir).map_err(io(format!("removing {}", dir.display())))
}

pub fn tc_pin_name(iface: &str, tag: &str) -> String {
    format!("tc_{iface}_{tag}")
}

/// Every interface of this network namespace except loopback.
pub fn interfaces() -> Result<Vec<String>, EnforcerError> {
    let list = nix::net::if_::if_nameindex()
        .map_err(|e| EnforcerError::Ebpf(format!("listing interfaces: {e}")))?;
    Ok(list
        .iter()
        .map(|i| i.name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect())
}

/// This host's own addresses (connects to them stay local).
pub fn local_addresses() -> Result<Vec<IpAddr>, EnforcerError> {
    let addrs = nix::ifaddrs::getifaddrs()
        .map_err(|e| EnforcerError::Ebpf(format!("listing addresses: {e}")))?;
    let mut out: Vec<IpAddr> = addrs
        .filter_map(|a| {
            let sa = a.address?;
            if let Some(v4) = sa.as_sockaddr_in() {
                return Some(IpAddr::V4(v4.ip()));
            }
            sa.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}
