//! The fleet lab set up for response automation: the shipped playbook, a Kafka-protocol
//! broker and the Splunk HEC, Duo, ServiceNow and SMTP stand-ins in the collector's
//! namespace, a policy that allows h2 ("app") → h1 ("web") on tcp/8080 only, and servers on
//! h1:8080 and h1:9090. Used by tests/response.rs, `cordon-demo` and the response benchmark.
use std::{path::PathBuf, time::Duration};

use cordon_connectors::standin::{duo::DuoStandin, servicenow::ServiceNowStandin, smtp::SmtpSink};
use serde_json::Value;

use crate::{
    cluster::{Cluster, stop_agent},
    cluster_lab::ClusterLab,
    deploy::Deploy,
    fleet::FleetHost,
    hec_standin::HecStandin,
    in_netns,
    kafka_broker::Broker,
    servers_py, wait_until, workspace,
};

/// The Duo user the shipped playbook pushes to.
pub const ANALYST: &str = "soc-analyst";

pub const POLICY: &str = "name: shop\ngroups:\n  web:\n    label: {role: web}\n  app:\n    label: {role: app}\n\
rules:\n  - name: app-to-web\n    consumer: app\n    provider: web\n    ports: [tcp/8080]\n    action: allow\n\
catch_all:\n  - action: deny\n    severity: HIGH\n";

pub struct ResponseLab {
    pub c: Deploy,
    pub hec: HecStandin,
    pub duo: DuoStandin,
    pub snow: ServiceNowStandin,
    pub smtp: SmtpSink,
    /// The broker of a single collector's lab (a cluster lab has its own, `c.nodes().broker`).
    broker: Option<Broker>,
    pub agents: Vec<(u32, PathBuf)>,
    playbooks: PathBuf,
}

/// The stand-ins a response lab needs, in the collector's namespace.
type Standins = (HecStandin, DuoStandin, ServiceNowStandin, SmtpSink);

const DUO: (&str, &str, &str) = (
    "DILABLABLABLABLABLA0",
    "lab-duo-secret-key-0123456789abcdefghij",
    "api-lab.duosecurity.com",
);

fn start_standins(ns: &str) -> Standins {
    in_netns(ns, || {
        (
            HecStandin::start("lab-hec-token", true),
            DuoStandin::start(DUO.0, DUO.1, DUO.2),
            ServiceNowStandin::start("cordon", "snow-pass").expect("servicenow stand-in"),
            SmtpSink::start().expect("smtp sink"),
        )
    })
}

/// The collector config for the response lab: alerts, outputs and, with `response`, the
/// playbooks and their integrations (the stand-ins).
fn response_config(
    s: &Standins,
    kafka: &str,
    playbooks: &std::path::Path,
    response: bool,
) -> String {
    let (ikey, skey, host) = DUO;
    let outputs = format!(
        "[alerts]\nrepublish_secs = 0\n\
         [outputs.hec]\nurl = \"{hec}\"\ntoken = \"lab-hec-token\"\nuse_ack = true\n\
         [outputs.kafka]\nbrokers = [\"{kafka}\"]\n",
        hec = s.0.url(),
    );
    if !response {
        return outputs;
    }
    outputs
        + &format!(
            "[response]\nplaybook_dir = \"{pb}\"\n\
         [response.duo]\napi_host = \"{host}\"\nbase_url = \"{duo}\"\n\
         ikey = \"{ikey}\"\nskey = \"{skey}\"\n\
         [response.servicenow]\ninstance_url = \"{snow}\"\n\
         auth = {{ type = \"basic\", username = \"cordon\", password = \"snow-pass\" }}\n\
         [response.email]\nhost = \"127.0.0.1\"\nport = {smtp}\ntls = \"none\"\n\
         from = \"cordon@lab.test\"\nto = [\"soc@lab.test\"]\n",
            duo = s.1.url(),
            snow = s.2.url(),
            smtp = s.3.addr().port(),
            pb = playbooks.display(),
        )
}

/// How the nodes of a cluster lab share the work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Roles {
    /// Every node does everything.
    Uniform,
    /// The first node stores and judges flows (the only worker) and runs no playbooks;
    /// the others run the playbooks and store nothing: an alert is raised on one node and
    /// its playbook's steps run on another.
    Split,
}

impl ResponseLab {
    /// Everything up on one collector, and the policy published.
    pub fn start(name: &str) -> ResponseLab {
        Self::start_on(name, None)
    }

    /// Everything up on a cluster of `nodes` collector nodes, and the policy published.
    pub fn start_cluster(name: &str, nodes: usize, roles: Roles) -> ResponseLab {
        Self::start_on(name, Some((nodes, roles)))
    }

    fn start_on(name: &str, nodes: Option<(usize, Roles)>) -> ResponseLab {
        let playbooks = workspace()
            .join("target/lab-logs")
            .join(format!("{name}-playbooks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&playbooks);
        std::fs::create_dir_all(&playbooks).expect("playbook dir");
        std::fs::copy(
            workspace().join("packaging/playbooks/isolate-on-violation.yaml"),
            playbooks.join("isolate-on-violation.yaml"),
        )
        .expect("the shipped playbook");
        let (c, stand, broker) = match nodes {
            None => {
                let mut stand = None;
                let mut broker = None;
                let c = Cluster::start_with(name, 2, |fleet| {
                    let s = start_standins(&fleet.collector_ns);
                    let b = in_netns(&fleet.collector_ns, Broker::start);
                    let extra = response_config(&s, &b.bootstrap(), &playbooks, true);
                    stand = Some(s);
                    broker = Some(b);
                    extra
                });
                c.enroll_all();
                (Deploy::One(Box::new(c)), stand.expect("stand-ins"), broker)
            }
            Some((n, roles)) => {
                let mut lab = ClusterLab::prepare(name, 2, n);
                let s = start_standins(&lab.fleet.collector_ns);
                let kafka = lab.broker.bootstrap();
                let split = roles == Roles::Split;
                lab.configure(
                    |i| response_config(&s, &kafka, &playbooks, !split || i > 0),
                    |i| {
                        if split && i > 0 {
                            "worker = false\n".into()
                        } else {
                            String::new()
                        }
                    },
                );
                lab.start_all();
                lab.enroll_all(0);
                (Deploy::Nodes(Box::new(lab)), s, None)
            }
        };
        let (hec, duo, snow, smtp) = stand;
        let agents = ["h1", "h2"]
            .iter()
            .map(|h| c.start_agent(c.fleet().host(h), 1))
            .collect();
        let h1 = c.fleet().host("h1");
        let py = servers_py();
        for port in ["8080", "9090"] {
            c.fleet().start_server(
                &h1.ns,
                Some(&h1.cgroup),
                &["python3", &py, "tcp-serve", &h1.ip, port],
                &c.dir().join(format!("server-{port}.log")),
            );
        }
        c.cordon(&["hosts", "label", "h1", "role=web"]);
        c.cordon(&["hosts", "label", "h2", "role=app"]);
        let file = c.dir().join("policy.yaml");
        std::fs::write(&file, POLICY).expect("policy");
        c.cordon(&["policy", "apply", &file.to_string_lossy()]);
        c.cordon(&["policy", "publish", "1"]);
        ResponseLab {
            c,
            hec,
            duo,
            snow,
            smtp,
            broker,
            agents,
            playbooks,
        }
    }

    /// The broker the alerts go to.
    pub fn broker(&self) -> &Broker {
        match (&self.broker, &self.c) {
            (Some(b), _) => b,
            (None, Deploy::Nodes(l)) => &l.broker,
            (None, Deploy::One(_)) => unreachable!("a single collector's lab has its broker"),
        }
    }

    pub fn h1(&self) -> &FleetHost {
        self.c.fleet().host("h1")
    }

    pub fn h2(&self) -> &FleetHost {
        self.c.fleet().host("h2")
    }

    /// `exe` (curl or a copy) in `from`'s namespace and cgroup, to `to`:`port`.
    pub fn connect(&self, from: &FleetHost, to: &FleetHost, port: u16, exe: &str) -> bool {
        self.c.fleet().http_get(from, to, port, exe)
    }

    /// The run for h2's alert about `port`.
    pub fn run_for(&self, port: u16) -> Option<Value> {
        let runs = self.c.cordon(&["runs", "--json"]);
        runs.as_array()?
            .iter()
            .find(|r| r["host_name"] == "h2" && r["facts"]["remote_port"] == port)
            .cloned()
    }

    /// Waits until that run is at `step` (`None`: finished).
    pub fn wait_step(&self, port: u16, step: Option<&str>, secs: u64) -> Value {
        wait_until(
            &format!("the run for :{port} at {step:?}"),
            Duration::from_secs(secs),
            || {
                let r = self.run_for(port)?;
                (r["step"].as_str() == step).then_some(r)
            },
        )
    }

    /// Approves the console approval of `run` (the release question).
    pub fn approve_release(&self, run: &Value) {
        let run_id = run["id"].as_i64().expect("run id");
        let pending = self
            .c
            .cordon(&["approvals", "--state", "pending", "--json"]);
        let a = pending
            .as_array()
            .and_then(|l| {
                l.iter()
                    .find(|a| a["run_id"] == run_id && a["via"] == "console")
            })
            .cloned()
            .expect("the release approval");
        self.c.cordon(&["approve", &a["id"].to_string()]);
    }

    /// Stops the agents (the rest goes when the lab is dropped).
    pub fn stop(&mut self) {
        for (pid, log) in self.agents.drain(..) {
            stop_agent(pid, &log, false);
        }
    }
}

impl Drop for ResponseLab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.playbooks);
    }
}
