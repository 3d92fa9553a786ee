//! A running Cordon in a fleet lab: the collector in its namespace (first admin token made
//! on its host, CA fingerprint read from its log), agents enrolled over the network with a
//! join token, and the `cordon` CLI run in the collector's namespace.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use serde_json::Value;

use crate::{
    agent::{agent_bin, cli_bin, collector_bin},
    fleet::{COLLECTOR_IP, Fleet, FleetHost},
    interrupt, wait_for, workspace,
};

pub const AGENT_PORT: u16 = 7443;

/// The stdout of a command that must have succeeded.
pub fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub struct Cluster {
    pub fleet: Fleet,
    /// Logs and state, under target/lab-logs.
    pub dir: PathBuf,
    /// The collector's data directory.
    pub data: PathBuf,
    pub collector_cfg: String,
    pub admin_token: String,
    pub fingerprint: String,
    /// The collector running now.
    pub collector_pid: u32,
    /// The agents' enforcer backend ("nftables" or "ebpf"), read by `enroll_all`.
    pub enforcer_backend: &'static str,
    /// The agents' `enforcer.allow` list, read by `enroll_all`.
    pub agent_allow: Vec<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The eBPF backend's pins outlive the agents (as they must); unpinning detaches.
        if self.enforcer_backend == "ebpf" {
            let _ = fs::remove_dir_all(self.pin_base());
        }
    }
}

impl Cluster {
    /// A fleet of `hosts` and a collector with `extra` appended to its config.
    pub fn start(name: &str, hosts: usize, extra: &str) -> Cluster {
        Self::start_with(name, hosts, |_| extra.to_string())
    }

    /// Like `start`, with the config's extra part made once the namespaces exist (to
    /// start stand-ins inside the collector's namespace first).
    pub fn start_with(name: &str, hosts: usize, extra: impl FnOnce(&Fleet) -> String) -> Cluster {
        let fleet = Fleet::new(hosts);
        let extra = extra(&fleet);
        let dir = workspace()
            .join("target/lab-logs")
            .join(format!("{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        let data = dir.join("collector");
        let cfg = dir.join("collector.toml");
        fs::write(
            &cfg,
            format!(
                "listen = \"{COLLECTOR_IP}:{AGENT_PORT}\"\ndata_dir = \"{}\"\n\
                 server_names = [\"{COLLECTOR_IP}\"]\n{extra}\n[api]\nlisten = \"127.0.0.1:7480\"\n",
                data.display()
            ),
        )
        .expect("collector config");
        let mut c = Cluster {
            fleet,
            dir: dir.clone(),
            data,
            collector_cfg: cfg.to_string_lossy().into_owned(),
            admin_token: dir.join("admin.token").to_string_lossy().into_owned(),
            fingerprint: String::new(),
            collector_pid: 0,
            enforcer_backend: "nftables",
            agent_allow: Vec::new(),
        };
        let (pid, log) = c.start_collector(1);
        c.collector_pid = pid;
        let text = fs::read_to_string(&log).expect("log");
        c.fingerprint = text
            .split("ca_fingerprint=")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .expect("the collector logs its CA fingerprint")
            .to_string();
        // The first admin token is made on the collector host.
        let admin = ok(
            c.fleet.run(
                &c.fleet.collector_ns,
                &[
                    &collector_bin(),
                    "token",
                    "create",
                    "--config",
                    &c.collector_cfg,
                    "--name",
                    "lab test",
                ],
            ),
            "token create",
        );
        fs::write(&c.admin_token, admin.trim()).expect("admin token");
        c
    }

    pub fn start_collector(&self, run: u32) -> (u32, PathBuf) {
        let log = self.dir.join(format!("collector-{run}.err"));
        let pid = self.fleet.spawn(
            &self.fleet.collector_ns,
            None,
            &[&collector_bin(), "run", "--config", &self.collector_cfg],
            &log,
        );
        wait_for(&log, "collector listening", Duration::from_secs(20));
        (pid, log)
    }

    /// `cordon ARGS` in the collector's namespace, as run.
    pub fn cordon_raw(&self, args: &[&str]) -> Output {
        let cli = cli_bin();
        let mut cmd = vec![cli.as_str(), "--token-file", &self.admin_token];
        cmd.extend_from_slice(args);
        self.fleet.run(&self.fleet.collector_ns, &cmd)
    }

    /// `cordon ARGS`, which must succeed; with `--json`, parsed ([`cli_value`]).
    pub fn cordon(&self, args: &[&str]) -> Value {
        let out = ok(self.cordon_raw(args), &format!("cordon {args:?}"));
        cli_value(args, out)
    }

    pub fn agent_dir(&self, h: &FleetHost) -> PathBuf {
        self.dir.join(&h.name)
    }

    /// Where this lab's eBPF enforcers pin their programs (one directory per host).
    pub fn pin_base(&self) -> PathBuf {
        let name = self.dir.file_name().unwrap_or_default().to_string_lossy();
        PathBuf::from("/sys/fs/bpf").join(format!("cordon-lab-{name}"))
    }

    fn enforcer_toml(&self, h: &FleetHost) -> String {
        let mut t = format!("backend = \"{}\"\n", self.enforcer_backend);
        if self.enforcer_backend == "ebpf" {
            t += &format!(
                "bpf_pin_dir = \"{}\"\n",
                self.pin_base().join(&h.name).display()
            );
        }
        if !self.agent_allow.is_empty() {
            let list: Vec<String> = self
                .agent_allow
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect();
            t += &format!("allow = [{}]\n", list.join(", "));
        }
        t
    }

    pub fn agent_cfg(&self, h: &FleetHost) -> String {
        self.agent_dir(h)
            .join("agent.toml")
            .to_string_lossy()
            .into_owned()
    }

    /// Writes each host's agent config and enrolls it over the network with one join
    /// token for all of them; returns the token's file.
    pub fn enroll_all(&self) -> PathBuf {
        let n = self.fleet.hosts.len().to_string();
        let join = self.cordon(&["token", "create", "--enroll", "--uses", &n, "--json"]);
        let join_file = self.dir.join("join.token");
        fs::write(&join_file, join["token"].as_str().expect("secret")).expect("join token");
        for h in &self.fleet.hosts {
            let d = self.agent_dir(h);
            fs::create_dir_all(&d).expect("agent dir");
            let collectors = [format!("{COLLECTOR_IP}:{AGENT_PORT}")];
            fs::write(
                self.agent_cfg(h),
                agent_toml(h, &d, &collectors, &self.enforcer_toml(h)),
            )
            .expect("agent config");
            enroll_agent(
                &self.fleet,
                h,
                &self.agent_cfg(h),
                &join_file,
                &self.fingerprint,
            );
        }
        join_file
    }

    /// Starts a host's agent (`run` numbers its log) and waits until it is connected.
    pub fn start_agent(&self, h: &FleetHost, run: u32) -> (u32, PathBuf) {
        let log = self.dir.join(format!("agent-{}-{run}.err", h.name));
        let pid = self.fleet.spawn(
            &h.ns,
            None,
            &[&agent_bin(), "run", "--config", &self.agent_cfg(h)],
            &log,
        );
        wait_for(&log, "connected to the collector", Duration::from_secs(30));
        (pid, log)
    }
}

/// What `cordon ARGS` printed: with `--json`, parsed (JSON lines for `flows` and `alerts`
/// become an array); otherwise the text.
pub fn cli_value(args: &[&str], out: String) -> Value {
    let lines = matches!(args.first(), Some(&"flows") | Some(&"alerts"));
    if args.contains(&"--json") && lines {
        Value::Array(
            out.lines()
                .map(|l| serde_json::from_str(l).expect("JSON line"))
                .collect(),
        )
    } else if args.contains(&"--json") {
        serde_json::from_str(&out).expect("JSON")
    } else {
        Value::String(out)
    }
}

/// A lab host's agent config: its cgroup, quick capture timings, the `collectors` it
/// streams to, state under `dir`, and `enforcer` (the `[enforcer]` lines before its state
/// file).
/// Enrolls host `h`'s agent (config at `cfg`) over the network with the join token in
/// `join_file`, pinning the CA by `fingerprint`; panics unless it enrolled as itself.
pub fn enroll_agent(fleet: &Fleet, h: &FleetHost, cfg: &str, join_file: &Path, fingerprint: &str) {
    let out = ok(
        fleet.run(
            &h.ns,
            &[
                &agent_bin(),
                "enroll",
                "--config",
                cfg,
                "--token-file",
                &join_file.to_string_lossy(),
                "--ca-fingerprint",
                fingerprint,
            ],
        ),
        "enroll",
    );
    assert!(out.contains(&format!("enrolled as {}", h.name)), "{out}");
}

pub fn agent_toml(h: &FleetHost, dir: &Path, collectors: &[String], enforcer: &str) -> String {
    let list: Vec<String> = collectors.iter().map(|c| format!("\"{c}\"")).collect();
    format!(
        "host_name = \"{name}\"\n[capture]\ncgroup_path = \"{cg}\"\npoll_interval_ms = 200\n\
         close_linger_ms = 200\nidle_timeout_ms = 2000\n[uplink]\n\
         collectors = [{list}]\nca_file = \"{d}/ca.pem\"\n\
         cert_file = \"{d}/agent.pem\"\nkey_file = \"{d}/agent.key\"\n\
         spool_dir = \"{d}/spool\"\nbatch_interval_ms = 100\n\
         [enforcer]\n{enforcer}state_file = \"{d}/enforcer.json\"\n",
        list = list.join(", "),
        name = h.name,
        cg = h.cgroup.display(),
        d = dir.display()
    )
}

/// Stops an agent; `drained`: it must have had every batch acknowledged (otherwise its
/// spool keeps them for the next run).
pub fn stop_agent(pid: u32, log: &Path, drained: bool) {
    interrupt(pid);
    wait_for(log, "uplink stopped", Duration::from_secs(30));
    let text = fs::read_to_string(log).expect("log");
    let last = text
        .lines()
        .rfind(|l| l.contains("uplink stopped"))
        .unwrap_or_default();
    assert!(
        !drained || last.contains(" pending=0 "),
        "batches left unacknowledged: {last}\n{text}"
    );
}
