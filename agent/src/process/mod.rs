//! Attribution: which process is behind a flow.
//!
//! The cache is keyed by process id and filled from exec events (which carry the image and
//! arguments even for processes gone a millisecond later) and, for processes that started
//! before the agent, from /proc on first use. Exits are remembered for a grace period so
//! flows of short-lived processes are still attributed; a recycled pid is detected by
//! comparing the process's start time with the time the socket was used.
mod cgroups;
pub mod procinfo;
mod users;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

pub use cgroups::CgroupPaths;
pub use procinfo::{MAX_CMDLINE, ProcFacts, join_cmdline, read_proc};
pub use users::UserNames;

use crate::record::ProcessInfo;

/// How long an exited process stays in the cache.
const EXIT_GRACE: Duration = Duration::from_secs(60);
/// Most processes remembered; the oldest exited ones go first when it is full.
const MAX_ENTRIES: usize = 65_536;

/// What the kernel knew about the process when it touched the socket.
#[derive(Clone, Debug, Default)]
pub struct KernelIdentity {
    pub tgid: u32,
    pub uid: u32,
    pub comm: String,
    pub cgroup_id: u64,
    /// CLOCK_BOOTTIME ns when the identity was taken.
    pub ktime_ns: u64,
}

/// An exec seen by the kernel.
#[derive(Clone, Debug, Default)]
pub struct ExecInfo {
    pub tgid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub comm: String,
    pub cgroup_id: u64,
    pub filename: String,
    pub args: Vec<String>,
    pub args_truncated: bool,
    pub ktime_ns: u64,
}

struct Entry {
    info: Arc<ProcessInfo>,
    /// CLOCK_BOOTTIME ns the process (image) started, when known.
    start_ns: Option<u64>,
    exited: Option<Instant>,
    /// CLOCK_BOOTTIME ns of the exit.
    exit_ns: Option<u64>,
}

/// Counters of how attribution went.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttributionStats {
    pub from_cache: u64,
    pub from_proc: u64,
    pub from_kernel_only: u64,
    pub evicted: u64,
}

pub struct ProcessCache {
    entries: HashMap<u32, Entry>,
    users: UserNames,
    cgroups: CgroupPaths,
    proc_root: std::path::PathBuf,
    pub stats: AttributionStats,
}

impl ProcessCache {
    pub fn new(cgroups: CgroupPaths) -> Self {
        Self::with_proc_root(cgroups, "/proc".into())
    }

    pub fn with_proc_root(cgroups: CgroupPaths, proc_root: std::path::PathBuf) -> Self {
        Self {
            entries: HashMap::new(),
            users: UserNames::default(),
            cgroups,
            proc_root,
            stats: AttributionStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A new program image: replaces what was known about this pid.
    pub fn on_exec(&mut self, ev: ExecInfo) {
        let facts = read_proc(&self.proc_root, ev.tgid);
        let kernel_cmdline = {
            let mut s = ev.args.join(" ");
            if ev.args_truncated {
                s.push_str(" …");
            }
            s
        };
        let facts_ok = facts
            .as_ref()
            .filter(|f| f.start_ns.is_none_or(|s| s <= ev.ktime_ns + 1_000_000_000));
        let exe = facts_ok
            .and_then(|f| f.exe.clone())
            .or_else(|| (!ev.filename.is_empty()).then(|| ev.filename.clone()));
        let cmdline = facts_ok
            .and_then(|f| f.cmdline.clone())
            .or_else(|| (!kernel_cmdline.is_empty()).then_some(kernel_cmdline));
        let ppid = (ev.ppid != 0)
            .then_some(ev.ppid)
            .or_else(|| facts_ok.and_then(|f| f.ppid));
        let info = ProcessInfo {
            pid: ev.tgid,
            ppid,
            uid: ev.uid,
            user: self.users.name(ev.uid),
            comm: ev.comm,
            exe,
            cmdline,
            cgroup: self.cgroups.path(ev.cgroup_id),
            json: Default::default(),
        };
        self.insert(ev.tgid, info, Some(ev.ktime_ns));
    }

    /// The process ended; keep it for flows still being reported.
    pub fn on_exit(&mut self, tgid: u32, ktime_ns: u64) {
        if let Some(e) = self.entries.get_mut(&tgid) {
            e.exited = Some(Instant::now());
            e.exit_ns = Some(ktime_ns);
        }
    }

    /// The process behind a socket the kernel attributed to `id`.
    pub fn resolve(&mut self, id: &KernelIdentity) -> Arc<ProcessInfo> {
        if let Some(e) = self.entries.get(&id.tgid) {
            let recycled = e.exit_ns.is_some_and(|x| x < id.ktime_ns)
                || e.start_ns.is_some_and(|s| s > id.ktime_ns);
            if !recycled {
                self.stats.from_cache += 1;
                return e.info.clone();
            }
        }
        let facts = read_proc(&self.proc_root, id.tgid)
            .filter(|f| f.start_ns.is_none_or(|s| s <= id.ktime_ns + 1_000_000_000));
        let info = match facts {
            Some(f) => {
                self.stats.from_proc += 1;
                let start = f.start_ns;
                let info = ProcessInfo {
                    pid: id.tgid,
                    ppid: f.ppid,
                    uid: f.uid.unwrap_or(id.uid),
                    user: self.users.name(f.uid.unwrap_or(id.uid)),
                    comm: f.comm.unwrap_or_else(|| id.comm.clone()),
                    exe: f.exe,
                    cmdline: f.cmdline,
                    cgroup: self.cgroups.path(id.cgroup_id),
                    json: Default::default(),
                };
                return self.insert(id.tgid, info, start);
            }
            None => {
                self.stats.from_kernel_only += 1;
                ProcessInfo {
                    pid: id.tgid,
                    ppid: None,
                    uid: id.uid,
                    user: self.users.name(id.uid),
                    comm: id.comm.clone(),
                    exe: None,
                    cmdline: None,
                    cgroup: self.cgroups.path(id.cgroup_id),
                    json: Default::default(),
                }
            }
        };
        // Not cached: the process is gone and a later lookup may find better facts.
        Arc::new(info)
    }

    /// What the cache knows of `pid`, even if it has exited since (kept for a grace
    /// period): a process that tried something and ended at once is still known.
    pub fn recent(&self, pid: u32) -> Option<Arc<ProcessInfo>> {
        self.entries.get(&pid).map(|e| e.info.clone())
    }

    /// The process with this pid as /proc shows it now (procfs capture).
    pub fn resolve_pid(&mut self, pid: u32) -> Option<Arc<ProcessInfo>> {
        if let Some(e) = self.entries.get(&pid)
            && e.exited.is_none()
        {
            self.stats.from_cache += 1;
            return Some(e.info.clone());
        }
        let f = read_proc(&self.proc_root, pid)?;
        self.stats.from_proc += 1;
        let uid = f.uid.unwrap_or(0);
        let start = f.start_ns;
        let cgroup = f.cgroup.clone();
        let info = ProcessInfo {
            pid,
            ppid: f.ppid,
            uid,
            user: self.users.name(uid),
            comm: f.comm.unwrap_or_default(),
            exe: f.exe,
            cmdline: f.cmdline,
            cgroup,
            json: Default::default(),
        };
        Some(self.insert(pid, info, start))
    }

    fn insert(&mut self, tgid: u32, info: ProcessInfo, start_ns: Option<u64>) -> Arc<ProcessInfo> {
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(&tgid) {
            self.expire(Instant::now(), Duration::ZERO);
        }
        let info = Arc::new(info);
        self.entries.insert(
            tgid,
            Entry {
                info: info.clone(),
                start_ns,
                exited: None,
                exit_ns: None,
            },
        );
        info
    }

    /// Forgets processes that exited more than the grace period ago.
    pub fn expire_exited(&mut self, now: Instant) {
        self.expire(now, EXIT_GRACE);
    }

    fn expire(&mut self, now: Instant, grace: Duration) {
        let before = self.entries.len();
        self.entries
            .retain(|_, e| e.exited.is_none_or(|t| now.duration_since(t) < grace));
        self.stats.evicted += (before - self.entries.len()) as u64;
    }
}

#[cfg(test)]
mod tests;
