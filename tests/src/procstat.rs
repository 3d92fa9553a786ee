//! CPU time, memory and threads of processes, from `/proc`: single processes, a process
//! with its children (PostgreSQL's postmaster and its backends), and a process's threads
//! grouped by name.

#[derive(Clone, Copy, Debug, Default)]
pub struct ProcStats {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub cpu_s: f64,
    pub threads: u64,
}

pub fn proc_stats(pid: &str) -> ProcStats {
    let mut s = ProcStats::default();
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        for line in status.lines() {
            let mut it = line.split_whitespace();
            let (key, value) = (it.next(), it.next().and_then(|v| v.parse().ok()));
            match (key, value) {
                (Some("VmRSS:"), Some(v)) => s.rss_kib = v,
                (Some("VmHWM:"), Some(v)) => s.hwm_kib = v,
                (Some("Threads:"), Some(v)) => s.threads = v,
                _ => {}
            }
        }
    }
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Fields after the command name (which may contain spaces) in parentheses.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
            let ticks: u64 = [11, 12]
                .iter()
                .filter_map(|&i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
                .sum();
            // SAFETY: sysconf has no preconditions.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
            s.cpu_s = ticks as f64 / hz as f64;
        }
    }
    s
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// The fields of a `/proc/.../stat` line after the command name, and the name.
fn stat_fields(path: &str) -> Option<(String, Vec<String>)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (left, rest) = stat.rsplit_once(')')?;
    let name = left.split_once('(').map_or("", |(_, n)| n).to_string();
    Some((name, rest.split_whitespace().map(str::to_string).collect()))
}

fn ticks(f: &[String], idx: &[usize]) -> u64 {
    idx.iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

/// CPU seconds of `pid` and of all its children: its own time, the time of the children
/// it has reaped (`cutime`, `cstime`), and that of its live children (one level: enough for
/// PostgreSQL's postmaster and its backends). 0 when it is gone.
pub fn tree_cpu_s(pid: u32) -> f64 {
    let Some((_, f)) = stat_fields(&format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // utime, stime, cutime, cstime: fields 14-17 of the line, 12-15 here.
    let mut t = ticks(&f, &[11, 12, 13, 14]);
    for child in children(pid) {
        if let Some((_, cf)) = stat_fields(&format!("/proc/{child}/stat")) {
            t += ticks(&cf, &[11, 12]);
        }
    }
    t as f64 / clock_ticks()
}

/// The live children of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            stat_fields(&format!("/proc/{p}/stat"))
                .and_then(|(_, f)| f.get(1).and_then(|v| v.parse::<u32>().ok()))
                == Some(pid)
        })
        .collect()
}

/// The first process whose command line contains every one of `words`.
pub fn find_pid(words: &[&str]) -> Option<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| *p != me)
        .find(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            words.iter().all(|w| cmd.contains(w))
        })
}

/// CPU seconds of each live thread of `pid`: thread id → (name, seconds).
pub fn thread_cpu_s(pid: u32) -> std::collections::HashMap<u32, (String, f64)> {
    let mut out = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    let hz = clock_ticks();
    for tid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        if let Some((name, f)) = stat_fields(&format!("/proc/{pid}/task/{tid}/stat")) {
            out.insert(tid, (name, ticks(&f, &[11, 12]) as f64 / hz));
        }
    }
    out
}

/// A thread's role, from its name: the cluster worker, the SQLite writer, librdkafka's
/// threads, tokio's (QUIC, ingest, the API, blocking store calls), or the rest.
pub fn thread_role(name: &str) -> &'static str {
    if name.starts_with("cordon-worker") {
        "worker"
    } else if name.starts_with("cordon-writer") {
        "SQLite writer"
    } else if name.starts_with("rdk:") {
        "librdkafka"
    } else if name.starts_with("tokio") || name.starts_with("cordon-collec") {
        "tokio"
    } else {
        "other"
    }
}
