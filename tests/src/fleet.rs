//! A fleet lab: a collector namespace holding a bridge, and N host namespaces on it, each
//! with its own cgroup (so each host can have its own agent watching only its processes).
//! No namespace has a default route; everything is torn down on drop, also after a
//! failure.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Output, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use crate::{cgroup2_root, is_root, ns_command, run, teardown, wait_for};

/// The collector's address on the lab bridge.
pub const COLLECTOR_IP: &str = "10.231.1.100";

static COUNTER: AtomicU32 = AtomicU32::new(0);

#[derive(Clone, Debug)]
pub struct FleetHost {
    /// "h1", "h2", ...
    pub name: String,
    pub ns: String,
    /// 10.231.1.1, 10.231.1.2, ...
    pub ip: String,
    pub cgroup: PathBuf,
}

pub struct Fleet {
    pub collector_ns: String,
    pub hosts: Vec<FleetHost>,
    children: Mutex<Vec<Child>>,
}

impl Fleet {
    pub fn new(hosts: usize) -> Self {
        assert!(is_root(), "the privileged tests need root");
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}f{n}", std::process::id() % 100_000);
        let fleet = Fleet {
            collector_ns: format!("cordon-c{tag}"),
            hosts: (1..=hosts)
                .map(|i| FleetHost {
                    name: format!("h{i}"),
                    ns: format!("cordon-h{i}-{tag}"),
                    ip: format!("10.231.1.{i}"),
                    cgroup: cgroup2_root().join(format!("cordon-test-{tag}-h{i}")),
                })
                .collect(),
            children: Mutex::new(Vec::new()),
        };
        let c = fleet.collector_ns.as_str();
        run(&["ip", "netns", "add", c]);
        run(&["ip", "-n", c, "link", "set", "lo", "up"]);
        run(&["ip", "-n", c, "link", "add", "br0", "type", "bridge"]);
        run(&[
            "ip",
            "-n",
            c,
            "addr",
            "add",
            &format!("{COLLECTOR_IP}/24"),
            "dev",
            "br0",
        ]);
        run(&["ip", "-n", c, "link", "set", "br0", "up"]);
        for (i, h) in fleet.hosts.iter().enumerate() {
            let (vh, vc) = (format!("cf{tag}h{i}"), format!("cf{tag}c{i}"));
            run(&["ip", "netns", "add", &h.ns]);
            run(&[
                "ip", "link", "add", &vh, "netns", &h.ns, "type", "veth", "peer", "name", &vc,
                "netns", c,
            ]);
            run(&["ip", "-n", c, "link", "set", &vc, "master", "br0", "up"]);
            run(&["ip", "-n", &h.ns, "link", "set", "lo", "up"]);
            run(&[
                "ip",
                "-n",
                &h.ns,
                "addr",
                "add",
                &format!("{}/24", h.ip),
                "dev",
                &vh,
            ]);
            run(&["ip", "-n", &h.ns, "link", "set", &vh, "up"]);
            fs::create_dir(&h.cgroup)
                .unwrap_or_else(|e| panic!("creating cgroup {}: {e}", h.cgroup.display()));
        }
        for ns in std::iter::once(c).chain(fleet.hosts.iter().map(|h| h.ns.as_str())) {
            let routes = run(&["ip", "-n", ns, "route", "show", "default"]);
            assert!(routes.stdout.is_empty(), "{ns} has a default route");
        }
        fleet
    }

    pub fn host(&self, name: &str) -> &FleetHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no lab host {name}"))
    }

    /// Starts `cmd` in namespace `ns` (inside `cgroup` if given), output to `log`.
    pub fn spawn(&self, ns: &str, cgroup: Option<&Path>, cmd: &[&str], log: &Path) -> u32 {
        let f = fs::File::create(log).expect("log");
        let e = f.try_clone().expect("log");
        let child = ns_command(ns, cgroup, cmd)
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(e)
            .spawn()
            .expect("spawning a lab process");
        let pid = child.id();
        self.children.lock().expect("fleet lock").push(child);
        pid
    }

    /// Starts a server and waits until it printed "ready".
    pub fn start_server(&self, ns: &str, cgroup: Option<&Path>, cmd: &[&str], log: &Path) {
        self.spawn(ns, cgroup, cmd, log);
        wait_for(log, "ready", Duration::from_secs(10));
    }

    /// Runs `cmd` in namespace `ns` to completion.
    pub fn run(&self, ns: &str, cmd: &[&str]) -> Output {
        self.run_in(ns, None, cmd)
    }

    /// Whether `exe` (curl, or a copy of it) on `from`, in its cgroup, gets an HTTP answer
    /// from `to`:`port` within 2 s.
    pub fn http_get(&self, from: &FleetHost, to: &FleetHost, port: u16, exe: &str) -> bool {
        let url = format!("http://{}:{port}/", to.ip);
        self.run_in(
            &from.ns,
            Some(&from.cgroup),
            &[exe, "-s", "-m", "2", "-o", "/dev/null", &url],
        )
        .status
        .success()
    }

    /// Runs `cmd` in namespace `ns`, inside `cgroup` if given, to completion.
    pub fn run_in(&self, ns: &str, cgroup: Option<&Path>, cmd: &[&str]) -> Output {
        ns_command(ns, cgroup, cmd)
            .stdin(Stdio::null())
            .output()
            .expect("running a lab command")
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let mut namespaces = vec![&self.collector_ns];
        namespaces.extend(self.hosts.iter().map(|h| &h.ns));
        let cgroups: Vec<&PathBuf> = self.hosts.iter().map(|h| &h.cgroup).collect();
        teardown(&self.children, &namespaces, &cgroups);
    }
}
