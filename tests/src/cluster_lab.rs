//! A collector cluster in a fleet lab: PostgreSQL 15 and a Kafka-protocol broker (tansu)
//! in the lab's bridge namespace, N collector nodes there too — each its own process on its
//! own address of the bridge (10.231.1.101, .102, …) with its own API port — and the
//! fleet's hosts with agents that know every node. Killing a node is SIGKILL of its
//! process; the namespace and the other nodes stay. Everything is torn down on drop.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, Instant},
};

use cordon_collector::testing::postgres::PgServer;
use serde_json::Value;

use crate::{
    agent::{agent_bin, cli_bin, collector_bin},
    cluster::{agent_toml, cli_value, enroll_agent, ok},
    fleet::{Fleet, FleetHost},
    in_netns,
    kafka_broker::Broker,
    run, wait_for, wait_until, workspace,
};

pub const AGENT_PORT: u16 = 7443;
/// Partitions of the lab's flow stream.
pub const PARTITIONS: i32 = 6;

/// One collector node of the lab.
pub struct LabNode {
    /// n1, n2, …
    pub name: String,
    /// Its address on the lab bridge (agents connect to it).
    pub ip: String,
    /// Its API, on the bridge namespace's loopback.
    pub api: String,
    pub cfg: PathBuf,
    /// The running process, if any.
    pub pid: Option<u32>,
    /// How many times it was started (numbers its logs).
    pub starts: u32,
}

pub struct ClusterLab {
    pub fleet: Fleet,
    pub dir: PathBuf,
    pub pg: PgServer,
    pub broker: Broker,
    pub nodes: Vec<LabNode>,
    pub admin_token: PathBuf,
    pub fingerprint: String,
    /// `postgresql://…` of the cluster's database (password in `pg_password_file`).
    pub pg_url: String,
    pub pg_password: String,
}

impl ClusterLab {
    /// `hosts` lab hosts, `nodes` collector nodes (not started yet); `node_extra(i)` is
    /// appended to node i's config (0-based) — `[cluster]` keys go in `cluster_extra(i)`.
    pub fn new(
        name: &str,
        hosts: usize,
        nodes: usize,
        node_extra: impl Fn(usize) -> String,
        cluster_extra: impl Fn(usize) -> String,
    ) -> ClusterLab {
        let mut lab = Self::prepare(name, hosts, nodes);
        lab.configure(node_extra, cluster_extra);
        lab
    }

    /// The namespaces, PostgreSQL and the broker, and the nodes' addresses; their configs
    /// are written by [`configure`](Self::configure) (after, say, stand-ins were started
    /// in the bridge namespace).
    pub fn prepare(name: &str, hosts: usize, nodes: usize) -> ClusterLab {
        let fleet = Fleet::new(hosts);
        let dir = workspace()
            .join("target/lab-logs")
            .join(format!("{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("lab dir");
        let ns = fleet.collector_ns.clone();
        let nsenter = format!("--net=/run/netns/{ns}");
        let pg = PgServer::start_in(&["nsenter", &nsenter], "127.0.0.1", 55432);
        let db = pg.database();
        let broker = in_netns(&ns, Broker::start);
        let mut list = Vec::new();
        for i in 0..nodes {
            let ip = format!("10.231.1.{}", 101 + i);
            run(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "br0",
            ]);
            list.push(LabNode {
                name: format!("n{}", i + 1),
                api: format!("http://127.0.0.1:{}", 7481 + i),
                cfg: dir.join(format!("n{}.toml", i + 1)),
                ip,
                pid: None,
                starts: 0,
            });
        }
        ClusterLab {
            fleet,
            dir: dir.clone(),
            pg_url: db.url.clone(),
            pg_password: db.password.unwrap_or_default(),
            pg,
            broker,
            nodes: list,
            admin_token: dir.join("admin.token"),
            fingerprint: String::new(),
        }
    }

    /// Writes every node's config: `node_extra(i)` before `[api]`, `cluster_extra(i)` in
    /// `[cluster]`.
    pub fn configure(
        &mut self,
        node_extra: impl Fn(usize) -> String,
        cluster_extra: impl Fn(usize) -> String,
    ) {
        let pw_file = self.dir.join("pg.password");
        fs::write(&pw_file, &self.pg_password).expect("password file");
        fs::set_permissions(
            &pw_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod the password file");
        for (i, n) in self.nodes.iter().enumerate() {
            fs::write(
                &n.cfg,
                format!(
                    "listen = \"{ip}:{AGENT_PORT}\"\ndata_dir = \"{data}\"\n\
                     server_names = [\"{ip}\"]\n{extra}\n\
                     [api]\nlisten = \"127.0.0.1:{api}\"\n\
                     [cluster]\nnode_name = \"{name}\"\npostgres_url = \"{url}\"\n\
                     postgres_password_file = \"{pw}\"\nkafka_brokers = [\"{kafka}\"]\n\
                     flows_partitions = {PARTITIONS}\nflows_replication = 1\n{cextra}\n",
                    ip = n.ip,
                    data = self.dir.join(&n.name).display(),
                    extra = node_extra(i),
                    api = 7481 + i,
                    name = n.name,
                    url = self.pg_url,
                    pw = pw_file.display(),
                    kafka = self.broker.bootstrap(),
                    cextra = cluster_extra(i),
                ),
            )
            .expect("node config");
        }
    }

    pub fn node_log(&self, i: usize) -> PathBuf {
        let n = &self.nodes[i];
        self.dir.join(format!("{}-{}.err", n.name, n.starts))
    }

    /// Starts node `i` without waiting for it.
    pub fn spawn_node(&mut self, i: usize) {
        self.nodes[i].starts += 1;
        let log = self.node_log(i);
        let cfg = self.nodes[i].cfg.to_string_lossy().into_owned();
        let pid = self.fleet.spawn(
            &self.fleet.collector_ns,
            None,
            &[&collector_bin(), "run", "--config", &cfg],
            &log,
        );
        self.nodes[i].pid = Some(pid);
    }

    /// Waits until node `i` listens; fails at once with its log if it exits first.
    pub fn wait_node(&self, i: usize) {
        let log = self.node_log(i);
        wait_until(
            &format!("{} listening", self.nodes[i].name),
            Duration::from_secs(60),
            || {
                let text = log_text(&log);
                assert!(
                    !text.contains("cordon-collector: "),
                    "{} did not start:\n{text}",
                    self.nodes[i].name
                );
                text.contains("collector listening").then_some(())
            },
        );
    }

    /// Starts every node at once (they migrate the schema together) and waits for all;
    /// makes the first admin token and reads the CA fingerprint.
    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.spawn_node(i);
        }
        for i in 0..self.nodes.len() {
            self.wait_node(i);
        }
        let text = fs::read_to_string(self.node_log(0)).expect("log");
        self.fingerprint = text
            .split("ca_fingerprint=")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .expect("the node logs its CA fingerprint")
            .to_string();
        let cfg = self.nodes[0].cfg.to_string_lossy().into_owned();
        let admin = ok(
            self.fleet.run(
                &self.fleet.collector_ns,
                &[
                    &collector_bin(),
                    "token",
                    "create",
                    "--config",
                    &cfg,
                    "--name",
                    "lab test",
                ],
            ),
            "token create",
        );
        fs::write(&self.admin_token, admin.trim()).expect("admin token");
    }

    /// SIGKILL of node `i` (a crash: no goodbye to anyone).
    pub fn kill_node(&mut self, i: usize) {
        if let Some(pid) = self.nodes[i].pid.take() {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    }

    /// `cordon ARGS` against node `i`'s API.
    pub fn cordon_raw(&self, i: usize, args: &[&str]) -> Output {
        let (cli, token) = (cli_bin(), self.admin_token.to_string_lossy().into_owned());
        let mut cmd = vec![
            cli.as_str(),
            "--api",
            &self.nodes[i].api,
            "--token-file",
            &token,
        ];
        cmd.extend_from_slice(args);
        self.fleet.run(&self.fleet.collector_ns, &cmd)
    }

    /// `cordon ARGS` against node `i`, which must succeed; with `--json`, parsed (as
    /// [`cli_value`] does).
    pub fn cordon(&self, i: usize, args: &[&str]) -> Value {
        let out = ok(self.cordon_raw(i, args), &format!("cordon {args:?}"));
        cli_value(args, out)
    }

    /// The first node that runs now.
    pub fn live_node(&self) -> usize {
        (0..self.nodes.len())
            .find(|i| self.nodes[*i].pid.is_some())
            .expect("a live node")
    }

    /// Every node's agent address, as agents list them.
    pub fn collectors(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("{}:{AGENT_PORT}", n.ip))
            .collect()
    }

    pub fn agent_dir(&self, h: &FleetHost) -> PathBuf {
        self.dir.join(&h.name)
    }

    pub fn agent_cfg(&self, h: &FleetHost) -> String {
        self.agent_dir(h)
            .join("agent.toml")
            .to_string_lossy()
            .into_owned()
    }

    /// Writes each host's agent config (every node listed) and enrolls it through node
    /// `via` with one join token made on node 0; `enforcer` as in [`agent_toml`].
    pub fn enroll_all(&self, via: usize) {
        self.enroll_all_with(via, "backend = \"nftables\"\n");
    }

    pub fn enroll_all_with(&self, via: usize, enforcer: &str) {
        let n = self.fleet.hosts.len().to_string();
        let join = self.cordon(0, &["token", "create", "--enroll", "--uses", &n, "--json"]);
        let join_file = self.dir.join("join.token");
        fs::write(&join_file, join["token"].as_str().expect("secret")).expect("join token");
        let mut collectors = self.collectors();
        // Enrollment goes to the first collector listed.
        collectors.rotate_left(via);
        for h in &self.fleet.hosts {
            let d = self.agent_dir(h);
            fs::create_dir_all(&d).expect("agent dir");
            fs::write(self.agent_cfg(h), agent_toml(h, &d, &collectors, enforcer))
                .expect("agent config");
            enroll_agent(
                &self.fleet,
                h,
                &self.agent_cfg(h),
                &join_file,
                &self.fingerprint,
            );
        }
    }

    /// Starts a host's agent and waits until it is connected to some node.
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

    /// `cordon cluster status --json` from node `i`.
    pub fn status(&self, i: usize) -> Value {
        self.cordon(i, &["cluster", "status", "--json"])
    }

    /// Host name → node it is connected to, per node `i`'s answer (only nodes up).
    pub fn placement(&self, i: usize) -> Vec<(String, String)> {
        let s = self.status(i);
        let mut out = Vec::new();
        for n in s["nodes"].as_array().into_iter().flatten() {
            for a in n["agents"].as_array().into_iter().flatten() {
                out.push((
                    a.as_str().unwrap_or("").to_string(),
                    n["name"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
        out.sort();
        out
    }

    /// Waits until every host is on a node that is up (per node `i`); returns how long
    /// that took and the placement.
    pub fn wait_all_placed(
        &self,
        i: usize,
        timeout: Duration,
    ) -> (Duration, Vec<(String, String)>) {
        let start = Instant::now();
        let want = self.fleet.hosts.len();
        let p = wait_until("every agent on a live node", timeout, || {
            let s = self.status(i);
            let placed = self.placement(i);
            (s["agents_disconnected"]
                .as_array()
                .is_some_and(Vec::is_empty)
                && placed.len() == want)
                .then_some(placed)
        });
        (start.elapsed(), p)
    }

    /// A SQL query on the cluster's database (from the bridge namespace), one row of
    /// i64 columns.
    pub fn sql_row(&self, sql: &str) -> Vec<i64> {
        let (url, pw) = (self.pg_url.clone(), self.pg_password.clone());
        let sql = sql.to_string();
        in_netns(&self.fleet.collector_ns, move || {
            let mut cfg: postgres::Config = url.parse().expect("pg url");
            cfg.password(pw.as_str());
            let mut c = cfg
                .connect(postgres::NoTls)
                .expect("connect to the lab's PostgreSQL");
            let row = c.query_one(sql.as_str(), &[]).expect("query");
            (0..row.len()).map(|k| row.get::<_, i64>(k)).collect()
        })
    }
}

/// Where a lab process logs.
pub fn log_text(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_default()
}
