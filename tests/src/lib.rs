//! Helpers for Cordon's privileged end-to-end tests (root, real kernel), and a Kafka
//! broker for the unprivileged Kafka output tests (`kafka_broker`).
//!
//! A `Lab` is two network namespaces joined by a veth pair — the host under test and a
//! peer — plus a cgroup for the host's processes. Addresses live only inside these
//! namespaces, neither has a default route, and everything is torn down on drop, also when
//! a test fails. Names carry the test process id and a counter so parallel runs never
//! collide.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

pub mod agent;
pub mod bench_check;
pub mod bench_rig;
pub mod cluster;
pub mod cluster_lab;
pub mod collector_proc;
pub mod deploy;
pub mod detect_probe;
pub mod fleet;
pub mod hec_standin;
pub mod kafka_broker;
pub mod procstat;
pub mod response_lab;
pub mod simagent;
pub mod synth_dc;

pub use agent::Agent;

/// Address of the host under test and of its peer (inside the lab namespaces only).
pub const HOST_IP: &str = "10.231.0.1";
pub const PEER_IP: &str = "10.231.0.2";
/// An address on the lab subnet that nobody owns: packets to it are dropped.
pub const VOID_IP: &str = "10.231.0.3";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The workspace root (tests/..).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The lab's helper script (servers and clients).
pub fn servers_py() -> String {
    workspace()
        .join("tests/lab/servers.py")
        .to_string_lossy()
        .into_owned()
}

/// The cgroup2 mount point, from /proc/self/mountinfo.
pub fn cgroup2_root() -> PathBuf {
    let info = fs::read_to_string("/proc/self/mountinfo").expect("reading mountinfo");
    info.lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount = left.split_whitespace().nth(4)?;
            (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount))
        })
        .expect("a cgroup2 mount (the agent mounts one, tests expect it present)")
}

pub(crate) fn run(cmd: &[&str]) -> Output {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub struct Lab {
    pub host_ns: String,
    pub peer_ns: String,
    /// The host's cgroup (absolute path under the cgroup2 mount).
    pub cgroup: PathBuf,
    children: Mutex<Vec<Child>>,
}

impl Lab {
    /// Builds the lab. Panics (failing the test) when not root.
    pub fn new() -> Self {
        assert!(
            fs::metadata("/proc/self").is_ok() && is_root(),
            "the privileged tests need root"
        );
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}x{n}", std::process::id() % 100_000);
        let lab = Lab {
            host_ns: format!("cordon-h{tag}"),
            peer_ns: format!("cordon-p{tag}"),
            cgroup: cgroup2_root().join(format!("cordon-test-{tag}")),
            children: Mutex::new(Vec::new()),
        };
        // From here on, Drop cleans up whatever was made.
        let (vh, vp) = (format!("cv{tag}h"), format!("cv{tag}p"));
        run(&["ip", "netns", "add", &lab.host_ns]);
        run(&["ip", "netns", "add", &lab.peer_ns]);
        run(&[
            "ip",
            "link",
            "add",
            &vh,
            "netns",
            &lab.host_ns,
            "type",
            "veth",
            "peer",
            "name",
            &vp,
            "netns",
            &lab.peer_ns,
        ]);
        for (ns, dev, ip) in [(&lab.host_ns, &vh, HOST_IP), (&lab.peer_ns, &vp, PEER_IP)] {
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                dev,
            ]);
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
            // Safety net: no default route in any lab namespace.
            let routes = run(&["ip", "-n", ns, "route", "show", "default"]);
            assert!(
                routes.stdout.is_empty(),
                "lab namespace {ns} has a default route"
            );
        }
        fs::create_dir(&lab.cgroup)
            .unwrap_or_else(|e| panic!("creating cgroup {}: {e}", lab.cgroup.display()));
        lab
    }

    fn command(&self, ns: &str, cgroup: Option<&Path>, cmd: &[&str]) -> Command {
        ns_command(ns, cgroup, cmd)
    }

    fn spawn(&self, mut c: Command, out: Stdio, err: Stdio) -> u32 {
        let child = c
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawning a lab process");
        let pid = child.id();
        self.children.lock().expect("lab lock").push(child);
        pid
    }

    /// Starts a process on the host under test, inside its cgroup; returns its pid (the
    /// same pid the command has once started: `nsenter` and `sh` both exec).
    pub fn spawn_host(&self, cmd: &[&str], out: Stdio, err: Stdio) -> u32 {
        self.spawn(
            self.command(&self.host_ns, Some(&self.cgroup), cmd),
            out,
            err,
        )
    }

    /// Starts a process on the peer (outside the host's cgroup).
    pub fn spawn_peer(&self, cmd: &[&str], out: Stdio, err: Stdio) -> u32 {
        self.spawn(self.command(&self.peer_ns, None, cmd), out, err)
    }

    /// Runs a command on the host, in its cgroup, to completion; returns (pid, output).
    pub fn run_host(&self, cmd: &[&str]) -> (u32, Output) {
        let child = self
            .command(&self.host_ns, Some(&self.cgroup), cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning a lab client");
        let pid = child.id();
        (
            pid,
            child.wait_with_output().expect("waiting for a lab client"),
        )
    }

    /// Runs a command on the peer to completion.
    pub fn run_peer(&self, cmd: &[&str]) -> Output {
        self.command(&self.peer_ns, None, cmd)
            .stdin(Stdio::null())
            .output()
            .expect("running a peer client")
    }

    /// Starts a server on the peer or host and waits until it printed "ready".
    pub fn start_server(&self, on_host: bool, cmd: &[&str], log: &Path) -> u32 {
        let f = fs::File::create(log).expect("server log");
        let e = f.try_clone().expect("server log");
        let pid = if on_host {
            self.spawn_host(cmd, f.into(), e.into())
        } else {
            self.spawn_peer(cmd, f.into(), e.into())
        };
        wait_for(log, "ready", Duration::from_secs(10));
        pid
    }
}

/// `cmd` in network namespace `ns`, inside `cgroup` if given (`nsenter` and `sh` both
/// exec, so the child's pid is the command's).
pub fn ns_command(ns: &str, cgroup: Option<&Path>, cmd: &[&str]) -> Command {
    // nsenter switches only the network namespace; `ip netns exec` would also remount
    // /sys, hiding the cgroup2 mount from the agent.
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{ns}")).args(["sh", "-c"]);
    match cgroup {
        // Join the cgroup first, then become the command (same pid throughout).
        Some(cg) => c.arg(format!(
            "echo $$ > '{}/cgroup.procs' && exec \"$@\"",
            cg.display()
        )),
        None => c.arg("exec \"$@\""),
    };
    c.arg("sh").args(cmd);
    c
}

/// Runs `f` on a thread that has entered network namespace `ns` (sockets it opens live
/// there); the calling thread's namespace does not change.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let path = format!("/run/netns/{ns}");
                let fd = fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                // SAFETY: setns on a valid descriptor; it changes only this thread.
                let rc = unsafe {
                    libc::setns(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::CLONE_NEWNET)
                };
                assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("netns thread")
    })
}

/// Kills `children` and anything left in `cgroups`, deletes `namespaces` and removes the
/// cgroups: a lab's teardown, also after a failure.
fn teardown(children: &Mutex<Vec<Child>>, namespaces: &[&String], cgroups: &[&PathBuf]) {
    if let Ok(mut children) = children.lock() {
        for c in children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    for cg in cgroups {
        // Anything else still in the cgroup (grandchildren) goes too.
        if let Ok(procs) = fs::read_to_string(cg.join("cgroup.procs")) {
            for pid in procs.split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
    }
    for ns in namespaces {
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
    }
    for cg in cgroups {
        for _ in 0..50 {
            if fs::remove_dir(cg).is_ok() || !cg.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Sends SIGINT to `pid` (a lab process) so it can stop cleanly.
pub fn interrupt(pid: u32) {
    let _ = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
}

/// Polls `f` every 10 ms until it gives a value; panics naming `what` after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `path` contains `needle`; panics with the file's text after `timeout`.
pub fn wait_for(path: &Path, needle: &str, timeout: Duration) {
    let start = Instant::now();
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {needle:?} in {}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

impl Drop for Lab {
    fn drop(&mut self) {
        teardown(
            &self.children,
            &[&self.host_ns, &self.peer_ns],
            &[&self.cgroup],
        );
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}
