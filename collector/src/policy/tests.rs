//! Policy parsing, errors with line and field, rank and catch-all semantics, evaluation
//! (table-driven), and diffs.
use std::{collections::HashMap, net::IpAddr, sync::Arc};

use super::*;

const POLICY: &str = r#"
name: lab
groups:
  web:
    hostname: ["web-*"]
  db:
    label: {tier: db}
  lab:
    cidr: [10.231.1.0/24]
  admins:
    cidr: [10.231.1.250]
  psql:
    process: ["/usr/bin/psql"]
rules:
  - name: web-to-db
    consumer: web
    provider: db
    ports: [tcp/5432]
    process: /usr/bin/psql
    action: allow
  - name: no-ssh-to-db
    consumer: any
    provider: db
    ports: [tcp/22]
    action: deny
    rank: absolute
    severity: CRITICAL
  - name: admins-ssh
    consumer: admins
    provider: any
    ports: [tcp/22]
    action: allow
  - name: dns
    consumer: lab
    provider: any
    ports: [udp/53, tcp/53]
    action: allow
  - name: web-high
    consumer: any
    provider: web
    ports: [tcp/8000-8100]
    action: allow
catch_all:
  - scope: db
    action: deny
    severity: HIGH
  - action: allow
"#;

fn ctx(text: &str) -> Arc<Context> {
    let (_, compiled) = load(text).expect("policy");
    let host = |name: &str, labels: &[(&str, &str)]| HostFacts {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    Arc::new(Context {
        policy: Arc::new(compiled),
        version: 1,
        hosts: HashMap::from([
            ("web-1".to_string(), host("web-1", &[("tier", "web")])),
            ("db-1".to_string(), host("db-1", &[("tier", "db")])),
        ]),
        ip_hosts: HashMap::from([
            (ip("10.231.1.1"), "web-1".to_string()),
            (ip("10.231.1.2"), "db-1".to_string()),
        ]),
    })
}

struct Case {
    what: &'static str,
    host: &'static str,
    proto: u8,
    outbound: bool,
    local: (&'static str, u16),
    remote: (&'static str, u16),
    exe: Option<&'static str>,
    want: (Action, &'static str),
}

#[test]
fn evaluation_follows_rank_order_ports_processes_and_catch_all_scope() {
    use compile::{PROTO_TCP as T, PROTO_UDP as U};
    let allow = Action::Allow;
    let deny = Action::Deny;
    let cases = [
        Case {
            what: "psql from web to db on 5432, seen on web",
            host: "web-1",
            proto: T,
            outbound: true,
            local: ("10.231.1.1", 40000),
            remote: ("10.231.1.2", 5432),
            exe: Some("/usr/bin/psql"),
            want: (allow, "web-to-db"),
        },
        Case {
            what: "the same connection seen on db (process unknown there)",
            host: "db-1",
            proto: T,
            outbound: false,
            local: ("10.231.1.2", 5432),
            remote: ("10.231.1.1", 40000),
            exe: Some("/usr/lib/postgresql/bin/postgres"),
            want: (allow, "web-to-db"),
        },
        Case {
            what: "curl from web to db on 5432: not psql, db's catch-all denies",
            host: "web-1",
            proto: T,
            outbound: true,
            local: ("10.231.1.1", 40001),
            remote: ("10.231.1.2", 5432),
            exe: Some("/usr/bin/curl"),
            want: (allow, "catch-all"),
        },
        Case {
            what: "…and on db, inbound from web on 5432 to postgres is allowed by the rule",
            host: "db-1",
            proto: T,
            outbound: false,
            local: ("10.231.1.2", 5432),
            remote: ("10.231.1.1", 40001),
            exe: None,
            want: (allow, "web-to-db"),
        },
        Case {
            what: "db receives on 6379: nothing allows it, db's scoped catch-all denies",
            host: "db-1",
            proto: T,
            outbound: false,
            local: ("10.231.1.2", 6379),
            remote: ("10.231.1.1", 40002),
            exe: None,
            want: (deny, "catch-all db"),
        },
        Case {
            what: "ssh into db from the admin address: absolute deny beats the allow",
            host: "db-1",
            proto: T,
            outbound: false,
            local: ("10.231.1.2", 22),
            remote: ("10.231.1.250", 50000),
            exe: None,
            want: (deny, "no-ssh-to-db"),
        },
        Case {
            what: "ssh into web from the admin address: allowed",
            host: "web-1",
            proto: T,
            outbound: false,
            local: ("10.231.1.1", 22),
            remote: ("10.231.1.250", 50000),
            exe: None,
            want: (allow, "admins-ssh"),
        },
        Case {
            what: "dns over udp from a lab address",
            host: "db-1",
            proto: U,
            outbound: true,
            local: ("10.231.1.2", 33333),
            remote: ("10.231.1.53", 53),
            exe: None,
            want: (allow, "dns"),
        },
        Case {
            what: "dns from outside the lab from db: no rule, db's catch-all",
            host: "db-1",
            proto: U,
            outbound: true,
            local: ("192.168.9.2", 33333),
            remote: ("192.168.9.53", 53),
            exe: None,
            want: (deny, "catch-all db"),
        },
        Case {
            what: "a port inside a range",
            host: "web-1",
            proto: T,
            outbound: false,
            local: ("10.231.1.1", 8080),
            remote: ("10.9.9.9", 1234),
            exe: None,
            want: (allow, "web-high"),
        },
        Case {
            what: "the range's edge",
            host: "web-1",
            proto: T,
            outbound: false,
            local: ("10.231.1.1", 8101),
            remote: ("10.9.9.9", 1234),
            exe: None,
            want: (allow, "catch-all"),
        },
        Case {
            what: "udp on a tcp range does not match",
            host: "db-1",
            proto: U,
            outbound: true,
            local: ("10.231.1.2", 1),
            remote: ("10.231.1.1", 8080),
            exe: None,
            want: (deny, "catch-all db"),
        },
    ];
    let ctx = ctx(POLICY);
    let mut ev = Evaluator::new(ctx.clone());
    for c in &cases {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let d = ev.evaluate(&FlowView {
            host: c.host,
            proto: c.proto,
            outbound: c.outbound,
            local_ip: ip(c.local.0),
            local_port: c.local.1,
            remote_ip: ip(c.remote.0),
            remote_port: c.remote.1,
            exe: c.exe,
        });
        assert_eq!(
            (d.action, d.rule_name(&ctx.policy).as_str()),
            c.want,
            "{}",
            c.what
        );
    }
    // Severity comes from the deciding rule or catch-all.
    let d = ev.evaluate(&FlowView {
        host: "db-1",
        proto: compile::PROTO_TCP,
        outbound: false,
        local_ip: "10.231.1.2".parse().expect("ip"),
        local_port: 22,
        remote_ip: "10.231.1.250".parse().expect("ip"),
        remote_port: 1,
        exe: None,
    });
    assert_eq!(d.severity, Severity::Critical);
}

#[test]
fn errors_name_the_line_and_the_field() {
    let base = |rules: &str| {
        format!(
            "name: t\ngroups:\n  web:\n    hostname: [\"web-*\"]\nrules:\n{rules}catch_all:\n  - action: deny\n"
        )
    };
    let cases: Vec<(String, &str, u64)> = vec![
        (
            base("  - consumer: web\n    provider: dbx\n    action: allow\n"),
            "rules[0].provider`: unknown group `dbx`",
            7,
        ),
        (
            base("  - consumer: web\n    provider: web\n    ports: [tcp/99999]\n    action: allow\n"),
            "rules[0].ports`: `tcp/99999`: `99999` is not a port",
            8,
        ),
        (
            base("  - consumer: web\n    provider: web\n    ports: [sctp/1]\n    action: allow\n"),
            "protocol must be",
            8,
        ),
        (
            base("  - consumer: web\n    provider: web\n    action: permit\n"),
            "permit",
            8,
        ),
        (
            // Unknown keys are reported at the start of their mapping (the rule).
            base("  - consumer: web\n    provider: web\n    action: allow\n    colour: red\n"),
            "unknown field `colour`",
            6,
        ),
        (
            "name: t\ngroups:\n  db:\n    cidr: [10.0.0.300/8]\ncatch_all:\n  - action: deny\n"
                .to_string(),
            "groups.db.cidr`: `10.0.0.300/8` is not an address or CIDR",
            4,
        ),
        (
            "name: t\ngroups:\n  db: {}\ncatch_all:\n  - action: deny\n".to_string(),
            "needs at least one of",
            3,
        ),
        (
            "name: t\ngroups:\n  db:\n    cidr: [10.0.0.0/8]\ncatch_all:\n  - scope: db\n    action: deny\n"
                .to_string(),
            "the last catch-all must have no scope",
            6,
        ),
        (
            base("  - name: a\n    consumer: web\n    provider: web\n    action: allow\n  - name: a\n    consumer: web\n    provider: web\n    action: deny\n"),
            "`a` is also the name of rules[0]",
            10,
        ),
    ];
    for (text, want, line) in cases {
        let err = load(&text)
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{text}"));
        let msg = err.to_string();
        assert!(msg.contains(want), "{msg}\n---\n{text}");
        assert_eq!(err.line, line, "{msg}\n---\n{text}");
    }
    let err = load("name: [").expect_err("syntax error");
    assert!(err.line >= 1, "{err}");
}

#[test]
fn diff_names_what_changed() {
    let (a, _) = load(POLICY).expect("a");
    let changed = POLICY
        .replace("ports: [tcp/5432]", "ports: [tcp/5433]")
        .replace("  - name: dns\n    consumer: lab\n    provider: any\n    ports: [udp/53, tcp/53]\n    action: allow\n", "")
        .replace("  psql:\n", "  monitoring:\n    hostname: [\"mon-*\"]\n  psql:\n");
    let (b, _) = load(&changed).expect("b");
    let d = diff::diff(&a, &b);
    assert!(
        d.iter()
            .any(|l| l.starts_with("- rule web-to-db") && l.contains("tcp/5432")),
        "{d:?}"
    );
    assert!(
        d.iter()
            .any(|l| l.starts_with("+ rule web-to-db") && l.contains("tcp/5433")),
        "{d:?}"
    );
    assert!(d.iter().any(|l| l.starts_with("- rule dns")), "{d:?}");
    assert!(
        d.iter().any(|l| l == "+ group monitoring: hostname=mon-*"),
        "{d:?}"
    );
    assert_eq!(d.len(), 4, "{d:?}");
    assert!(diff::diff(&a, &a).is_empty());
}
