//! Facts about one process read from /proc/<pid>.
use std::{fs, path::Path};

/// Longest command line kept, in bytes.
pub const MAX_CMDLINE: usize = 4096;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcFacts {
    pub comm: Option<String>,
    pub exe: Option<String>,
    pub cmdline: Option<String>,
    pub ppid: Option<u32>,
    pub uid: Option<u32>,
    /// CLOCK_BOOTTIME ns at which the process started (from `stat` field 22).
    pub start_ns: Option<u64>,
    /// cgroup v2 path (from /proc/<pid>/cgroup, the `0::` line).
    pub cgroup: Option<String>,
}

/// Reads what it can; `None` when the process does not exist (any more).
pub fn read_proc(root: &Path, pid: u32) -> Option<ProcFacts> {
    let dir = root.join(pid.to_string());
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    let mut facts = parse_stat(&stat).unwrap_or_default();
    facts.exe = fs::read_link(dir.join("exe")).ok().map(|p| {
        p.to_string_lossy()
            .trim_end_matches(" (deleted)")
            .to_string()
    });
    facts.cmdline = fs::read(dir.join("cmdline"))
        .ok()
        .and_then(|b| join_cmdline(&b));
    if let Ok(status) = fs::read_to_string(dir.join("status")) {
        facts.uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok());
    }
    if let Ok(cg) = fs::read_to_string(dir.join("cgroup")) {
        facts.cgroup = cg
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(str::to_string);
    }
    Some(facts)
}

/// `comm`, `ppid` and start time from /proc/<pid>/stat. The comm is in parentheses and may
/// itself contain spaces and parentheses, so fields are counted from the last ')'.
pub fn parse_stat(stat: &str) -> Option<ProcFacts> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); ppid is field 4, starttime field 22.
    let ppid = rest.get(1).and_then(|v| v.parse().ok());
    let ticks: Option<u64> = rest.get(19).and_then(|v| v.parse().ok());
    let start_ns = ticks.map(|t| t.saturating_mul(1_000_000_000) / clock_ticks());
    Some(ProcFacts {
        comm: Some(comm),
        ppid,
        start_ns,
        ..ProcFacts::default()
    })
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// NUL-separated arguments joined by spaces, capped at `MAX_CMDLINE` bytes.
pub fn join_cmdline(raw: &[u8]) -> Option<String> {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    if raw.is_empty() {
        return None;
    }
    let capped = &raw[..raw.len().min(MAX_CMDLINE)];
    let text: Vec<u8> = capped
        .iter()
        .map(|&b| if b == 0 { b' ' } else { b })
        .collect();
    let mut s = String::from_utf8_lossy(&text).into_owned();
    while s.len() > MAX_CMDLINE {
        s.pop();
    }
    Some(s)
}
