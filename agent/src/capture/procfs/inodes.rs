//! Socket inode → owning process, by scanning /proc/<pid>/fd for `socket:[inode]` links.
//! The scan is the expensive part of procfs attribution, so it runs at most once per
//! `min_interval` and only when an inode is not known yet.
use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

pub struct InodeOwners {
    proc_root: PathBuf,
    owners: HashMap<u64, u32>,
    last_scan: Option<Instant>,
    min_interval: Duration,
}

impl InodeOwners {
    pub fn new(proc_root: PathBuf, min_interval: Duration) -> Self {
        Self {
            proc_root,
            owners: HashMap::new(),
            last_scan: None,
            min_interval,
        }
    }

    /// The process holding socket `inode`, rescanning /proc if it is unknown and the last
    /// scan is old enough.
    pub fn owner(&mut self, inode: u64) -> Option<u32> {
        if inode == 0 {
            return None;
        }
        if let Some(pid) = self.owners.get(&inode) {
            return Some(*pid);
        }
        if self
            .last_scan
            .is_some_and(|t| t.elapsed() < self.min_interval)
        {
            return None;
        }
        self.scan();
        self.owners.get(&inode).copied()
    }

    fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        self.owners.clear();
        let Ok(procs) = std::fs::read_dir(&self.proc_root) else {
            return;
        };
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                let Ok(target) = std::fs::read_link(fd.path()) else {
                    continue;
                };
                let t = target.to_string_lossy();
                if let Some(inode) = t
                    .strip_prefix("socket:[")
                    .and_then(|s| s.strip_suffix(']'))
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    // The first holder wins; shared sockets belong to the lowest pid seen.
                    self.owners.entry(inode).or_insert(pid);
                }
            }
        }
    }
}
