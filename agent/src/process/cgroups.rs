//! cgroup id → path. On cgroup v2 a cgroup's id is the inode number of its directory, so
//! the map is built by walking the cgroup2 mount, and walked again (at most once a second)
//! when an unknown id shows up.
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

pub struct CgroupPaths {
    root: PathBuf,
    paths: HashMap<u64, String>,
    last_scan: Option<Instant>,
}

/// Deepest level walked, against pathological trees.
const MAX_DEPTH: usize = 16;

impl CgroupPaths {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            paths: HashMap::new(),
            last_scan: None,
        }
    }

    /// Path relative to the cgroup2 root ("/" for the root itself).
    pub fn path(&mut self, id: u64) -> Option<String> {
        if id == 0 {
            return None;
        }
        if let Some(p) = self.paths.get(&id) {
            return Some(p.clone());
        }
        if self
            .last_scan
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return None;
        }
        self.rescan();
        self.paths.get(&id).cloned()
    }

    fn rescan(&mut self) {
        self.last_scan = Some(Instant::now());
        self.paths.clear();
        let root = self.root.clone();
        self.walk(&root, 0);
    }

    fn walk(&mut self, dir: &Path, depth: usize) {
        let Ok(meta) = std::fs::metadata(dir) else {
            return;
        };
        let rel = dir.strip_prefix(&self.root).unwrap_or(dir);
        self.paths
            .insert(meta.ino(), format!("/{}", rel.to_string_lossy()));
        if depth >= MAX_DEPTH {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                self.walk(&e.path(), depth + 1);
            }
        }
    }
}
