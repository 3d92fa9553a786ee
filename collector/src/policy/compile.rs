//! From a document to indexed structures: groups as filters with a bit each, rules in
//! evaluation order with an index by protocol and port, so evaluation looks only at the
//! rules that can apply to a flow's service port.
use std::collections::HashMap;

use globset::{Glob, GlobSet, GlobSetBuilder};
use ipnet::IpNet;
use serde_saphyr::Spanned;

use super::document::{Action, Document, PolicyError, Rank, Severity};

/// The group every endpoint is in.
pub const ANY: &str = "any";

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_ICMPV6: u8 = 58;

#[derive(Debug)]
pub struct Group {
    pub name: String,
    pub hostname: Option<GlobSet>,
    pub labels: Vec<(String, String)>,
    pub cidr: Vec<IpNet>,
    pub process: Option<GlobSet>,
}

/// Which flows a rule's port spec covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortSpec {
    /// Every protocol and port.
    Any,
    /// Every port of one protocol.
    Proto(u8),
    /// A port range of one protocol, inclusive.
    Range(u8, u16, u16),
}

impl PortSpec {
    pub fn covers(self, proto: u8, port: u16) -> bool {
        match self {
            PortSpec::Any => true,
            PortSpec::Proto(p) => p == proto,
            PortSpec::Range(p, lo, hi) => p == proto && (lo..=hi).contains(&port),
        }
    }
}

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub consumer: usize,
    pub provider: usize,
    pub ports: Vec<PortSpec>,
    pub process: Option<GlobSet>,
    pub action: Action,
    pub rank: Rank,
    pub severity: Severity,
}

#[derive(Debug)]
pub struct CatchAll {
    pub scope: usize,
    pub action: Action,
    pub severity: Severity,
}

/// A policy ready to evaluate.
#[derive(Debug)]
pub struct Compiled {
    pub name: String,
    /// Group 0 is `any`.
    pub groups: Vec<Group>,
    /// In evaluation order: absolute rules, then default ones, each in file order.
    pub rules: Vec<Rule>,
    pub catch_all: Vec<CatchAll>,
    /// (proto, port) → rules with exactly that single port, in evaluation order.
    pub by_port: HashMap<(u8, u16), Vec<u32>>,
    /// Rules with a range, a whole protocol or any port: checked for every flow.
    pub wide: Vec<u32>,
}

fn glob_set<'a>(
    values: impl IntoIterator<Item = &'a Spanned<String>>,
    field: &str,
) -> Result<Option<GlobSet>, PolicyError> {
    let mut b = GlobSetBuilder::new();
    let mut any = false;
    for v in values {
        let glob = Glob::new(&v.value)
            .map_err(|e| PolicyError::at(v, field, format!("`{}`: {e}", v.value)))?;
        b.add(glob);
        any = true;
    }
    if !any {
        return Ok(None);
    }
    b.build().map(Some).map_err(|e| PolicyError {
        line: 0,
        column: 0,
        field: format!("field `{field}`: "),
        message: e.to_string(),
    })
}

fn proto_number(name: &str) -> Option<u8> {
    match name {
        "tcp" => Some(PROTO_TCP),
        "udp" => Some(PROTO_UDP),
        "icmp" => Some(PROTO_ICMP),
        "icmpv6" => Some(PROTO_ICMPV6),
        _ => None,
    }
}

/// `tcp/443`, `udp/53`, `tcp/8000-8100`, `tcp`, `icmp`, `any`.
pub fn parse_port_spec(s: &str) -> Result<PortSpec, String> {
    let s = s.trim().to_ascii_lowercase();
    if s == "any" {
        return Ok(PortSpec::Any);
    }
    let (proto, ports) = match s.split_once('/') {
        Some((p, ports)) => (p, Some(ports)),
        None => (s.as_str(), None),
    };
    let proto = proto_number(proto)
        .ok_or_else(|| format!("`{s}`: protocol must be tcp, udp, icmp or icmpv6"))?;
    let Some(ports) = ports else {
        return Ok(PortSpec::Proto(proto));
    };
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Err(format!("`{s}`: only tcp and udp have ports"));
    }
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("`{s}`: `{p}` is not a port (0-65535)"))
    };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(ports)?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(format!("`{s}`: the range is empty"));
    }
    Ok(PortSpec::Range(proto, lo, hi))
}

/// Checks a document's meaning and builds the evaluation structures.
pub fn compile(doc: &Document) -> Result<Compiled, PolicyError> {
    let mut groups = vec![Group {
        name: ANY.into(),
        hostname: None,
        labels: Vec::new(),
        cidr: Vec::new(),
        process: None,
    }];
    let mut index: HashMap<&str, usize> = HashMap::from([(ANY, 0)]);
    for (name, g) in &doc.groups {
        let field = |f: &str| format!("groups.{name}.{f}");
        if name == ANY {
            return Err(PolicyError::at(
                g,
                format!("groups.{name}"),
                "`any` is built in",
            ));
        }
        if name.is_empty() || name.len() > 128 {
            return Err(PolicyError::at(
                g,
                "groups",
                "a group name is 1 to 128 characters",
            ));
        }
        let def = &g.value;
        if def.hostname.is_empty()
            && def.label.is_empty()
            && def.cidr.is_empty()
            && def.process.is_empty()
        {
            return Err(PolicyError::at(
                g,
                format!("groups.{name}"),
                "a group needs at least one of hostname, label, cidr, process",
            ));
        }
        let mut cidr = Vec::new();
        for c in &def.cidr {
            let net = c
                .value
                .parse::<IpNet>()
                .or_else(|_| c.value.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    PolicyError::at(
                        c,
                        field("cidr"),
                        format!("`{}` is not an address or CIDR", c.value),
                    )
                })?;
            cidr.push(net.trunc());
        }
        index.insert(name.as_str(), groups.len());
        groups.push(Group {
            name: name.clone(),
            hostname: glob_set(&def.hostname, &field("hostname"))?,
            labels: def
                .label
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            cidr,
            process: glob_set(&def.process, &field("process"))?,
        });
    }
    let group = |s: &Spanned<String>, field: String| {
        index
            .get(s.value.as_str())
            .copied()
            .ok_or_else(|| PolicyError::at(s, field, format!("unknown group `{}`", s.value)))
    };
    let mut rules = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, r) in doc.rules.iter().enumerate() {
        let f = |x: &str| format!("rules[{i}].{x}");
        let def = &r.value;
        let name = def
            .name
            .as_ref()
            .map_or_else(|| format!("rule {}", i + 1), |n| n.value.clone());
        if let Some(prev) = names.insert(name.clone(), i) {
            let at = def.name.as_ref().map_or_else(
                || PolicyError::at(r, f("name"), ""),
                |n| PolicyError::at(n, f("name"), ""),
            );
            return Err(PolicyError {
                message: format!("`{name}` is also the name of rules[{prev}]"),
                ..at
            });
        }
        let mut ports = Vec::new();
        for p in &def.ports {
            ports.push(parse_port_spec(&p.value).map_err(|m| PolicyError::at(p, f("ports"), m))?);
        }
        if ports.is_empty() {
            ports.push(PortSpec::Any);
        }
        let process = match &def.process {
            Some(p) => glob_set([p], &f("process"))?,
            None => None,
        };
        rules.push(Rule {
            name,
            consumer: group(&def.consumer, f("consumer"))?,
            provider: group(&def.provider, f("provider"))?,
            ports,
            process,
            action: def.action.value,
            rank: def.rank,
            severity: def.severity.as_ref().map_or(Severity::Medium, |s| s.value),
        });
    }
    // Absolute first, each rank in file order (a stable sort keeps it).
    rules.sort_by_key(|r| match r.rank {
        Rank::Absolute => 0,
        Rank::Default => 1,
    });
    let mut catch_all = Vec::new();
    for (i, c) in doc.catch_all.iter().enumerate() {
        let scope = match &c.value.scope {
            Some(s) => group(s, format!("catch_all[{i}].scope"))?,
            None => 0,
        };
        catch_all.push(CatchAll {
            scope,
            action: c.value.action.value,
            severity: c
                .value
                .severity
                .as_ref()
                .map_or(Severity::Medium, |s| s.value),
        });
    }
    match doc.catch_all.last() {
        None => {
            return Err(PolicyError::at(
                &doc.name,
                "catch_all",
                "at least one entry is needed (the last one without a scope)",
            ));
        }
        Some(last) if last.value.scope.is_some() => {
            return Err(PolicyError::at(
                last,
                format!("catch_all[{}].scope", doc.catch_all.len() - 1),
                "the last catch-all must have no scope, so every flow gets a verdict",
            ));
        }
        Some(_) => {}
    }
    let mut by_port: HashMap<(u8, u16), Vec<u32>> = HashMap::new();
    let mut wide = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        for p in &r.ports {
            match *p {
                PortSpec::Range(proto, lo, hi) if lo == hi => {
                    let list = by_port.entry((proto, lo)).or_default();
                    if list.last() != Some(&(i as u32)) {
                        list.push(i as u32);
                    }
                }
                _ => {
                    if wide.last() != Some(&(i as u32)) {
                        wide.push(i as u32);
                    }
                }
            }
        }
    }
    Ok(Compiled {
        name: doc.name.value.clone(),
        groups,
        rules,
        catch_all,
        by_port,
        wide,
    })
}
