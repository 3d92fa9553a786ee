use std::{fs, path::Path, time::Instant};

use super::*;

/// A fake /proc with one process.
fn fake_proc(root: &Path, pid: u32, exe: &str, cmdline: &[u8], starttime_ticks: u64) {
    let dir = root.join(pid.to_string());
    fs::create_dir_all(&dir).expect("dir");
    let stat = format!(
        "{pid} (my (odd) comm) S 77 {pid} {pid} 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 {starttime_ticks} 1000 100 18446744073709551615"
    );
    fs::write(dir.join("stat"), stat).expect("stat");
    fs::write(dir.join("cmdline"), cmdline).expect("cmdline");
    fs::write(
        dir.join("status"),
        "Name:\tx\nUid:\t1000\t1000\t1000\t1000\n",
    )
    .expect("status");
    fs::write(dir.join("cgroup"), "0::/lab/h1\n").expect("cgroup");
    std::os::unix::fs::symlink(exe, dir.join("exe")).expect("exe link");
}

fn cache(root: &Path) -> ProcessCache {
    ProcessCache::with_proc_root(
        CgroupPaths::new(root.join("no-cgroup-fs")),
        root.to_path_buf(),
    )
}

fn ident(tgid: u32, ktime_ns: u64) -> KernelIdentity {
    KernelIdentity {
        tgid,
        uid: 1000,
        comm: "kcomm".into(),
        cgroup_id: 0,
        ktime_ns,
    }
}

#[test]
fn reads_proc_for_processes_older_than_the_agent() {
    let tmp = tempfile::tempdir().expect("tmp");
    fake_proc(
        tmp.path(),
        4242,
        "/usr/bin/curl",
        b"curl\0-s\0http://x/\0",
        100,
    );
    let mut c = cache(tmp.path());
    let p = c.resolve(&ident(4242, 5_000_000_000));
    assert_eq!(p.exe.as_deref(), Some("/usr/bin/curl"));
    assert_eq!(p.cmdline.as_deref(), Some("curl -s http://x/"));
    assert_eq!(p.comm, "my (odd) comm");
    assert_eq!((p.pid, p.ppid, p.uid), (4242, Some(77), 1000));
    assert_eq!(c.stats.from_proc, 1);
    // Second time from the cache.
    c.resolve(&ident(4242, 6_000_000_000));
    assert_eq!(c.stats.from_cache, 1);
}

#[test]
fn exec_events_keep_short_lived_processes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut c = cache(tmp.path());
    c.on_exec(ExecInfo {
        tgid: 9000,
        ppid: 1,
        uid: 0,
        comm: "bash".into(),
        cgroup_id: 0,
        filename: "/usr/bin/bash".into(),
        args: vec!["bash".into(), "-c".into(), "echo hi".into()],
        args_truncated: true,
        ktime_ns: 1_000,
    });
    c.on_exit(9000, 2_000);
    // The socket was used before the exit: still this process, with the exec's facts.
    let p = c.resolve(&ident(9000, 1_500));
    assert_eq!(p.exe.as_deref(), Some("/usr/bin/bash"));
    assert_eq!(p.cmdline.as_deref(), Some("bash -c echo hi …"));
    assert_eq!(p.ppid, Some(1));
    // A socket used after the exit belongs to a recycled pid: not the cached process.
    let q = c.resolve(&ident(9000, 3_000));
    assert_eq!(q.exe, None);
    assert_eq!(q.comm, "kcomm");
    assert_eq!(c.stats.from_kernel_only, 1);
}

#[test]
fn exited_processes_are_forgotten_after_the_grace_period() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut c = cache(tmp.path());
    c.on_exec(ExecInfo {
        tgid: 1,
        filename: "/bin/true".into(),
        ..ExecInfo::default()
    });
    c.on_exit(1, 10);
    c.expire_exited(Instant::now());
    assert_eq!(c.len(), 1);
    c.expire_exited(Instant::now() + EXIT_GRACE + std::time::Duration::from_secs(1));
    assert!(c.is_empty());
}

#[test]
fn command_lines_are_capped_at_4_kib() {
    let long = vec![b'a'; 10_000];
    let s = join_cmdline(&long).expect("cmdline");
    assert_eq!(s.len(), MAX_CMDLINE);
    assert_eq!(join_cmdline(b""), None);
    assert_eq!(join_cmdline(b"a\0b\0").as_deref(), Some("a b"));
}

#[test]
fn stat_parsing_survives_odd_comms() {
    let f = procinfo::parse_stat("1 ((sd-pam)) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0")
        .expect("stat");
    assert_eq!(f.comm.as_deref(), Some("(sd-pam)"));
    assert_eq!(f.ppid, Some(0));
    assert!(f.start_ns.is_some());
    assert!(procinfo::parse_stat("garbage").is_none());
}
