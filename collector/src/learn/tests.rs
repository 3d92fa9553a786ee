//! Learning on synthetic tiers: web, app, db and monitoring hosts, external clients and a
//! resolver, ephemeral client ports and a little noise.
use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use cordon_wire::{
    Direction, FlowBatch, FlowEvent, FlowRecord, Interface, Inventory, Message, Process, Proto,
    Verdict,
};

use super::*;
use crate::policy::{Action, Context, Evaluator, FlowView};

const T0: u64 = 1_700_000_000_000_000_000;
const HOUR: u64 = 3_600_000_000_000;

struct Lab {
    store: Store,
    /// host name → (agent id, ip)
    hosts: BTreeMap<String, (String, IpAddr)>,
    pending: BTreeMap<String, Vec<FlowRecord>>,
    seq: u64,
    port: u16,
}

fn record(out: bool, local: (IpAddr, u16), remote: (IpAddr, u16), exe: &str, t: u64) -> FlowRecord {
    FlowRecord {
        event: FlowEvent::Start,
        first_seen_ns: t,
        last_seen_ns: t + 1_000,
        proto: if remote.1 == 53 || local.1 == 53 {
            Proto::Udp
        } else {
            Proto::Tcp
        },
        direction: if out {
            Direction::Outbound
        } else {
            Direction::Inbound
        },
        local: local.into(),
        remote: remote.into(),
        bytes_out: 100,
        bytes_in: 100,
        packets_out: 1,
        packets_in: 1,
        tcp_flags: (2, 0),
        closed: false,
        verdict: Verdict::Forwarded,
        process: Some(Process {
            pid: 7,
            ppid: Some(1),
            uid: 0,
            user: None,
            comm: "x".into(),
            exe: Some(exe.into()),
            cmdline: None,
            cgroup: None,
        }),
        unattributed_reason: None,
    }
}

impl Lab {
    fn new() -> Self {
        Self {
            store: Store::in_memory().expect("store"),
            hosts: BTreeMap::new(),
            pending: BTreeMap::new(),
            seq: 0,
            port: 40_000,
        }
    }

    fn host(&mut self, name: &str, ip: &str, labels: &[(&str, &str)]) {
        let agent = format!("{name}-agent");
        let ip: IpAddr = ip.parse().expect("ip");
        self.store
            .host_connected(&agent, name, "0.1.0", "ebpf", T0)
            .expect("host");
        let inv = Inventory {
            host_name: name.into(),
            os: "linux".into(),
            kernel: "6".into(),
            cpus: 1,
            memory_bytes: 1,
            interfaces: vec![Interface {
                name: "eth0".into(),
                addresses: vec![ip, "127.0.0.1".parse().expect("lo")],
            }],
            listening: vec![],
        };
        let body = cordon_wire::encode(&Message::Inventory(inv)).expect("encode");
        self.store
            .store_inventory(&agent, &body, T0)
            .expect("inventory");
        for (k, v) in labels {
            self.store.set_label(&agent, k, Some(v)).expect("label");
        }
        self.hosts.insert(name.into(), (agent, ip));
    }

    fn ip(&self, who: &str) -> IpAddr {
        self.hosts
            .get(who)
            .map_or_else(|| who.parse().expect("address"), |h| h.1)
    }

    /// `n` conversations from `client` to `server:port` (names or addresses), recorded
    /// by each end that is enrolled, from ephemeral client ports.
    fn talk(&mut self, client: &str, server: &str, port: u16, exe: &str, n: u32) {
        let (cip, sip) = (self.ip(client), self.ip(server));
        for i in 0..n {
            self.port = if self.port >= 60_000 {
                40_000
            } else {
                self.port + 1
            };
            let t = T0 + u64::from(i) * 1_000_000_000;
            if let Some((agent, _)) = self.hosts.get(client) {
                let r = record(true, (cip, self.port), (sip, port), exe, t);
                self.pending.entry(agent.clone()).or_default().push(r);
            }
            if let Some((agent, _)) = self.hosts.get(server) {
                let r = record(false, (sip, port), (cip, self.port), "/usr/sbin/server", t);
                self.pending.entry(agent.clone()).or_default().push(r);
            }
        }
    }

    fn flush(&mut self) {
        for (agent, records) in std::mem::take(&mut self.pending) {
            self.seq += 1;
            let b = FlowBatch {
                seq: self.seq,
                records,
                dropped_before: 0,
            };
            self.store.store_batch(&agent, &b).expect("batch");
        }
    }
}

/// web-1..3, app-1..3, db-1..2, mon-1; clients on the internet, a resolver, noise.
fn tiers(labels: bool) -> Lab {
    let mut lab = Lab::new();
    let tier = |t: &'static str| -> Vec<(&'static str, &'static str)> {
        if labels { vec![("tier", t)] } else { vec![] }
    };
    for i in 1..=3 {
        lab.host(&format!("web-{i}"), &format!("10.0.1.{i}"), &tier("web"));
        lab.host(&format!("app-{i}"), &format!("10.0.2.{i}"), &tier("app"));
    }
    for i in 1..=2 {
        lab.host(&format!("db-{i}"), &format!("10.0.3.{i}"), &tier("db"));
    }
    lab.host("mon-1", "10.0.4.1", &tier("mon"));
    let all: Vec<String> = lab.hosts.keys().cloned().collect();
    for w in 1..=3 {
        for c in 1..=8 {
            lab.talk(
                &format!("203.0.113.{}", c + w * 10),
                &format!("web-{w}"),
                443,
                "",
                3,
            );
        }
        for a in 1..=3 {
            lab.talk(
                &format!("web-{w}"),
                &format!("app-{a}"),
                8080,
                "/usr/sbin/nginx",
                5,
            );
        }
    }
    for a in 1..=3 {
        for d in 1..=2 {
            lab.talk(
                &format!("app-{a}"),
                &format!("db-{d}"),
                5432,
                "/opt/app/bin/app",
                4,
            );
        }
    }
    for h in &all {
        if h != "mon-1" {
            lab.talk("mon-1", h, 9100, "/usr/bin/prometheus", 2);
        }
        lab.talk(h, "192.0.2.53", 53, "/usr/lib/systemd/systemd-resolved", 3);
    }
    // Noise: one call out to the internet.
    lab.talk("app-2", "198.51.100.7", 443, "/usr/bin/curl", 1);
    lab.flush();
    lab
}

fn params() -> LearnParams {
    LearnParams {
        since_ns: T0 - HOUR,
        until_ns: T0 + HOUR,
        cluster: ClusterParams::default(),
        groups: GroupMode::Clusters,
        name: "learned".into(),
    }
}

fn members(r: &LearnReport) -> BTreeMap<String, Vec<String>> {
    r.clusters
        .iter()
        .map(|c| {
            (
                c.group.clone(),
                c.hosts.iter().map(|h| h.name.clone()).collect(),
            )
        })
        .collect()
}

fn rule<'a>(r: &'a LearnReport, name: &str) -> &'a RuleStats {
    r.rules.iter().find(|x| x.name == name).unwrap_or_else(|| {
        panic!(
            "no rule {name} in {:?}",
            r.rules.iter().map(|x| &x.name).collect::<Vec<_>>()
        )
    })
}

/// Every stored record judged against `yaml`: the number denied.
fn escaped(store: &Store, yaml: &str) -> u64 {
    let (_, compiled) = crate::policy::load(yaml).expect("compiles");
    let (hosts, ip_hosts) = crate::policy::state::host_context(&**store).expect("hosts");
    let agents: BTreeMap<i64, String> = store
        .learn_hosts()
        .expect("hosts")
        .into_iter()
        .map(|h| (h.id, h.agent_id))
        .collect();
    let mut ev = Evaluator::new(Arc::new(Context {
        policy: Arc::new(compiled),
        version: 1,
        hosts,
        ip_hosts,
    }));
    let mut denied = 0;
    store
        .for_each_flow(0, u64::MAX / 2, &mut |o| {
            let d = ev.evaluate(&FlowView {
                host: &agents[&o.host_id],
                proto: graph::proto_number(o.proto),
                outbound: o.outbound,
                local_ip: o.local_ip.parse().expect("ip"),
                local_port: o.local_port,
                remote_ip: o.remote_ip.parse().expect("ip"),
                remote_port: o.remote_port,
                exe: o.exe,
            });
            if d.action == Action::Deny {
                denied += 1;
            }
        })
        .expect("flows");
    denied
}

#[test]
fn tiers_become_groups_and_rules() {
    let lab = tiers(false);
    let l = learn(&lab.store, &params(), None).expect("learn");
    let m = members(&l.report);
    assert_eq!(m["web"], ["web-1", "web-2", "web-3"], "{m:?}");
    assert_eq!(m["app"], ["app-1", "app-2", "app-3"], "{m:?}");
    assert_eq!(m["db"], ["db-1", "db-2"], "{m:?}");
    assert_eq!(m["mon"], ["mon-1"], "{m:?}");
    assert_eq!(m.len(), 4, "{m:?}");
    for c in &l.report.clusters {
        assert!(c.confidence > 0.3, "{c:?}");
    }
    let r = rule(&l.report, "web-to-app-tcp-8080");
    assert_eq!(r.process.as_deref(), Some("/usr/sbin/nginx"));
    // 3 webs × 3 apps × 5, each seen by both ends but counted once.
    assert_eq!(r.flows, 45);
    assert!(!r.broad && !r.unused);
    assert_eq!(rule(&l.report, "app-to-db-tcp-5432").flows, 24);
    assert_eq!(rule(&l.report, "mon-to-db-tcp-9100").flows, 4);
    // No rule on an ephemeral port, none from the servers' side.
    let ports: std::collections::BTreeSet<&str> = l
        .report
        .rules
        .iter()
        .flat_map(|r| r.ports.iter().map(String::as_str))
        .collect();
    assert_eq!(
        ports.into_iter().collect::<Vec<_>>(),
        ["tcp/443", "tcp/5432", "tcp/8080", "tcp/9100", "udp/53"]
    );
    assert!(!l.yaml.contains("db-to-app"));
    // The clients on the internet: one group of /24s for the web's port 443.
    let ext = l
        .report
        .external_groups
        .iter()
        .find(|e| e.addresses == 24)
        .expect("clients");
    assert!(ext.cidrs.iter().all(|c| c.ends_with("/24")), "{ext:?}");
    assert_eq!(l.report.uncovered_flows, 0);
    // The catch-all denies; the training flows are all allowed.
    assert!(l.yaml.contains("catch_all:\n  - action: deny"));
    assert_eq!(escaped(&lab.store, &l.yaml), 0, "{}", l.yaml);
}

#[test]
fn lateral_movement_is_not_allowed() {
    let mut lab = tiers(false);
    let l = learn(&lab.store, &params(), None).expect("learn");
    let before = escaped(&lab.store, &l.yaml);
    lab.talk("web-1", "db-1", 5432, "/usr/bin/psql", 1);
    lab.talk("db-2", "web-3", 22, "/usr/bin/ssh", 1);
    lab.flush();
    // Each seen by both ends.
    assert_eq!(escaped(&lab.store, &l.yaml) - before, 4);
}

#[test]
fn the_same_input_gives_the_same_draft() {
    let a = learn(&tiers(false).store, &params(), None).expect("learn");
    let b = learn(&tiers(false).store, &params(), None).expect("learn");
    assert_eq!(a.yaml, b.yaml);
    assert_eq!(a.report.clusters, b.report.clusters);
    assert_eq!(a.report.rules, b.report.rules);
}

#[test]
fn partitions_are_never_crossed() {
    let mut lab = Lab::new();
    for (i, env) in [(1, "prod"), (2, "prod"), (3, "staging")] {
        lab.host(&format!("web-{i}"), &format!("10.0.1.{i}"), &[("env", env)]);
    }
    lab.host("db-1", "10.0.3.1", &[("env", "prod")]);
    for i in 1..=3 {
        lab.talk(&format!("web-{i}"), "db-1", 5432, "/usr/bin/app", 2);
    }
    lab.flush();
    let without = learn(&lab.store, &params(), None).expect("learn");
    assert_eq!(members(&without.report)["web"], ["web-1", "web-2", "web-3"]);
    let mut p = params();
    p.cluster.partition = Partition::parse("label:env").expect("partition");
    let with = learn(&lab.store, &p, None).expect("learn");
    let m = members(&with.report);
    assert_eq!(m["web"], ["web-1", "web-2"], "{m:?}");
    assert_eq!(m["web-2"], ["web-3"], "{m:?}");
    assert_eq!(escaped(&lab.store, &with.yaml), 0);
    let mut p = params();
    p.cluster.partition = Partition::parse("cidr:10.0.1.3/32").expect("partition");
    let m = members(&learn(&lab.store, &p, None).expect("learn").report);
    assert_eq!(m["web"], ["web-1", "web-2"], "{m:?}");
}

#[test]
fn groups_can_come_from_labels() {
    let lab = tiers(true);
    let mut p = params();
    p.groups = GroupMode::Labels;
    let l = learn(&lab.store, &p, None).expect("learn");
    assert!(l.yaml.contains("label: {\"tier\": \"web\"}"), "{}", l.yaml);
    assert_eq!(escaped(&lab.store, &l.yaml), 0);
}

#[test]
fn approved_items_survive_a_new_run() {
    let mut lab = tiers(false);
    let (r1, yaml1) = learn_and_store(&mut lab.store, &params(), "alice", T0).expect("learn");
    // People edit the draft (a wildcard group, a tighter rule) and approve those items.
    let edited = yaml1
        .replace(
            "hostname: [\"web-1\", \"web-2\", \"web-3\"]",
            "hostname: [\"web-*\"]",
        )
        .replace(
            "process: \"/usr/sbin/nginx\"",
            "process: \"/usr/sbin/ngin?\"",
        );
    assert_ne!(edited, yaml1);
    crate::policy::load(&edited).expect("edited compiles");
    let v2 = lab
        .store
        .apply_policy("learned", &edited, "alice", T0)
        .expect("apply");
    assert!(v2 > r1.version);
    lab.store
        .approve_items(
            v2,
            &["web".into()],
            &["web-to-app-tcp-8080".into()],
            "alice",
            T0,
        )
        .expect("approve");
    // New traffic: another web server, and the rule's consumers now use another program.
    lab.host("web-4", "10.0.1.4", &[]);
    lab.talk("web-4", "app-1", 8080, "/usr/bin/other", 3);
    lab.flush();
    let (r3, yaml3) = learn_and_store(&mut lab.store, &params(), "bob", T0).expect("learn");
    assert_eq!(r3.carried_from, Some(v2));
    assert_eq!(r3.carried_groups, ["web"]);
    assert_eq!(r3.carried_rules, ["web-to-app-tcp-8080"]);
    assert!(yaml3.contains("hostname: [\"web-*\"]"), "{yaml3}");
    assert!(yaml3.contains("process: \"/usr/sbin/ngin?\""), "{yaml3}");
    assert_eq!(yaml3.matches("name: \"web-to-app-tcp-8080\"").count(), 1);
    assert!(rule(&r3, "web-to-app-tcp-8080").approved);
    // The approvals go on with the new draft, so a third run keeps them too.
    let a = lab.store.policy_approvals(r3.version).expect("approvals");
    assert_eq!(a.groups, [("web".to_string(), "alice".to_string())]);
    let (r4, yaml4) = learn_and_store(&mut lab.store, &params(), "bob", T0).expect("learn");
    assert_eq!(r4.carried_from, Some(r3.version));
    assert_eq!(yaml4.matches("process: \"/usr/sbin/ngin?\"").count(), 1);
    // The stored report is what the stats endpoint serves.
    let stored = lab.store.learning_report(r4.version).expect("report");
    let back: LearnReport = serde_json::from_str(&stored.expect("present")).expect("json");
    assert_eq!(back.version, r4.version);
}

#[test]
fn broad_and_unused_rules_are_flagged() {
    let mut lab = Lab::new();
    lab.host("app-1", "10.0.2.1", &[]);
    lab.host("mq-1", "10.0.5.1", &[]);
    lab.host("db-1", "10.0.3.1", &[]);
    for i in 1..=6 {
        let w = format!("web-{i}");
        lab.host(&w, &format!("10.0.1.{i}"), &[]);
        lab.talk(&w, "192.0.2.10", 443, "/usr/bin/app", 3);
        lab.talk(&w, "192.0.2.11", 8443, "/usr/bin/app", 3);
        lab.talk(&w, "app-1", 8080, "/usr/bin/app", 3);
        lab.talk(&w, "app-1", 8081, "/usr/bin/app", 3);
        lab.talk(&w, "mq-1", 5672, "/usr/bin/app", 3);
    }
    // One web server once logged in to the database.
    lab.talk("web-1", "db-1", 22, "/usr/bin/ssh", 1);
    lab.flush();
    let l = learn(&lab.store, &params(), None).expect("learn");
    assert_eq!(
        members(&l.report)["web"].len(),
        6,
        "{:?}",
        l.report.clusters
    );
    let r = rule(&l.report, "web-to-db-tcp-22");
    assert!(r.broad, "{r:?}");
    assert_eq!((r.consumers_used, r.consumer_members), (1, Some(6)));
    assert!(l.yaml.contains("[BROAD]"), "{}", l.yaml);
    assert!(!rule(&l.report, "web-to-app-tcp-8080").broad);
    assert!(l.report.rules.iter().all(|r| !r.unused));
}

#[test]
fn an_empty_window_is_an_error() {
    let lab = tiers(false);
    let mut p = params();
    p.since_ns = T0 + 10 * HOUR;
    p.until_ns = T0 + 11 * HOUR;
    assert!(matches!(
        learn(&lab.store, &p, None),
        Err(LearnError::NoFlows)
    ));
}
