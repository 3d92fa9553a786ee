//! The file systems the capture needs: cgroup2 (to attach) and tracefs (tracepoints).
//! Mounted when absent, as the design asks.
use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use nix::mount::{MsFlags, mount};

/// Where Cordon mounts cgroup2 when the host has not.
const OWN_CGROUP2: &str = "/run/cordon/cgroup2";

/// The mount point of a file system of type `fstype`, from /proc/self/mountinfo.
pub fn find_mount(fstype: &str) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        // "36 35 0:30 / /sys/fs/cgroup/unified rw,... shared:9 - cgroup2 cgroup2 rw"
        let (left, right) = line.split_once(" - ")?;
        let ty = right.split_whitespace().next()?;
        (ty == fstype).then(|| left.split_whitespace().nth(4).map(unescape))?
    })
}

/// mountinfo escapes spaces and a few other bytes as \ooo.
fn unescape(s: &str) -> PathBuf {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(String::from_utf8_lossy(&out).into_owned())
}

/// The cgroup2 mount point, mounting one under /run/cordon when there is none.
pub fn cgroup2_root() -> anyhow::Result<PathBuf> {
    if let Some(p) = find_mount("cgroup2") {
        return Ok(p);
    }
    tracing::warn!(path = OWN_CGROUP2, "no cgroup2 mount found; mounting one");
    std::fs::create_dir_all(OWN_CGROUP2).with_context(|| format!("creating {OWN_CGROUP2}"))?;
    mount(
        Some("cgroup2"),
        OWN_CGROUP2,
        Some("cgroup2"),
        MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("mounting cgroup2 on {OWN_CGROUP2}"))?;
    Ok(PathBuf::from(OWN_CGROUP2))
}

/// The tracefs directory with an `events/` tree, mounting tracefs when needed.
pub fn tracefs_root() -> anyhow::Result<PathBuf> {
    for p in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if Path::new(p).join("events").is_dir() {
            return Ok(PathBuf::from(p));
        }
    }
    if let Some(p) = find_mount("tracefs")
        && p.join("events").is_dir()
    {
        return Ok(p);
    }
    let target = "/sys/kernel/tracing";
    tracing::warn!(path = target, "tracefs is not mounted; mounting it");
    mount(
        Some("tracefs"),
        target,
        Some("tracefs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("mounting tracefs on {target}"))?;
    Ok(PathBuf::from(target))
}

/// The cgroup the capture watches.
#[derive(Clone, Debug)]
pub struct CgroupTarget {
    /// Absolute path of the cgroup directory.
    pub path: PathBuf,
    /// The cgroup2 mount it lives under.
    pub root: PathBuf,
    /// cgroup id (the directory's inode number).
    pub id: u64,
    /// Depth below the cgroup2 root (0 for the root).
    pub level: u32,
}

/// Resolves `--cgroup PATH` (or the root when `None`) against the cgroup2 mount.
pub fn cgroup_target(root: &Path, path: Option<&Path>) -> anyhow::Result<CgroupTarget> {
    let root = root
        .canonicalize()
        .with_context(|| format!("cgroup2 root {}", root.display()))?;
    let path = match path {
        Some(p) => p
            .canonicalize()
            .with_context(|| format!("cgroup {} does not exist", p.display()))?,
        None => root.clone(),
    };
    let Ok(rel) = path.strip_prefix(&root) else {
        bail!(
            "cgroup {} is not under the cgroup2 mount {}",
            path.display(),
            root.display()
        );
    };
    let meta = std::fs::metadata(&path).with_context(|| format!("stat {}", path.display()))?;
    if !meta.is_dir() {
        bail!("cgroup {} is not a directory", path.display());
    }
    Ok(CgroupTarget {
        level: rel.components().count() as u32,
        id: meta.ino(),
        path,
        root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_octal() {
        assert_eq!(unescape("/a\\040b"), PathBuf::from("/a b"));
        assert_eq!(unescape("/plain"), PathBuf::from("/plain"));
        assert_eq!(unescape("/trail\\04"), PathBuf::from("/trail\\04"));
    }
}
