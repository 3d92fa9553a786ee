//! What changed between two policy versions, item by item (`cordon policy diff A B`).
use std::collections::BTreeMap;

use super::document::{Action, Document, GroupDef, Rank, RuleDef};

fn list(v: &[serde_saphyr::Spanned<String>]) -> String {
    v.iter()
        .map(|s| s.value.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// A group as one line, for comparing and showing.
pub fn group_line(name: &str, g: &GroupDef) -> String {
    let mut parts = vec![];
    if !g.hostname.is_empty() {
        parts.push(format!("hostname={}", list(&g.hostname)));
    }
    if !g.label.is_empty() {
        let l: Vec<String> = g.label.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.push(format!("label={}", l.join(",")));
    }
    if !g.cidr.is_empty() {
        parts.push(format!("cidr={}", list(&g.cidr)));
    }
    if !g.process.is_empty() {
        parts.push(format!("process={}", list(&g.process)));
    }
    format!("group {name}: {}", parts.join(" "))
}

/// A rule as one line.
pub fn rule_line(name: &str, r: &RuleDef) -> String {
    let ports = if r.ports.is_empty() {
        "any".to_string()
    } else {
        list(&r.ports)
    };
    let process = r
        .process
        .as_ref()
        .map_or(String::new(), |p| format!(" process={}", p.value));
    let severity = r
        .severity
        .as_ref()
        .map_or(String::new(), |s| format!(" severity={}", s.value.as_str()));
    format!(
        "rule {name}: {} -> {} {ports}{process} {} rank={}{severity}",
        r.consumer.value,
        r.provider.value,
        action(r.action.value),
        match r.rank {
            Rank::Absolute => "absolute",
            Rank::Default => "default",
        }
    )
}

fn action(a: Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Deny => "deny",
    }
}

fn items(d: &Document) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("name".into(), format!("name: {}", d.name.value));
    for (name, g) in &d.groups {
        m.insert(format!("group {name}"), group_line(name, &g.value));
    }
    for (i, r) in d.rules.iter().enumerate() {
        let name = r
            .value
            .name
            .as_ref()
            .map_or_else(|| format!("rule {}", i + 1), |n| n.value.clone());
        m.insert(format!("rule {name}"), rule_line(&name, &r.value));
    }
    for (i, c) in d.catch_all.iter().enumerate() {
        let scope = c.value.scope.as_ref().map_or("any", |s| s.value.as_str());
        let sev = c
            .value
            .severity
            .as_ref()
            .map_or("MEDIUM", |s| s.value.as_str());
        m.insert(
            format!("catch_all {i}"),
            format!(
                "catch_all {scope}: {} severity={sev}",
                action(c.value.action.value)
            ),
        );
    }
    m
}

/// Lines `- old` / `+ new` for every item removed, added or changed, in a stable order.
pub fn diff(a: &Document, b: &Document) -> Vec<String> {
    let (a, b) = (items(a), items(b));
    let mut out = Vec::new();
    for (k, old) in &a {
        match b.get(k) {
            None => out.push(format!("- {old}")),
            Some(new) if new != old => {
                out.push(format!("- {old}"));
                out.push(format!("+ {new}"));
            }
            Some(_) => {}
        }
    }
    for (k, new) in &b {
        if !a.contains_key(k) {
            out.push(format!("+ {new}"));
        }
    }
    out
}
