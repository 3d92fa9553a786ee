//! Writing a policy document as YAML in the format of `docs/policy.md`. Every string is
//! double-quoted (JSON string syntax is valid YAML), so no name or path can change the
//! document's structure.
use std::{collections::BTreeMap, fmt::Write};

use crate::policy::document::{GroupDef, RuleDef};

/// A group as the draft writes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupOut {
    pub hostname: Vec<String>,
    pub label: BTreeMap<String, String>,
    pub cidr: Vec<String>,
    pub process: Vec<String>,
    /// A comment line above the group (the cluster, its confidence), if any.
    pub comment: Option<String>,
}

/// A rule as the draft writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleOut {
    pub name: Option<String>,
    pub consumer: String,
    pub provider: String,
    pub ports: Vec<String>,
    pub process: Option<String>,
    /// `allow` or `deny`.
    pub action: &'static str,
    /// `absolute` or `default`.
    pub rank: &'static str,
    pub severity: Option<&'static str>,
    pub comment: Option<String>,
}

/// A whole document: groups by name, rules in order, a catch-all that denies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocOut {
    pub name: String,
    pub header: Vec<String>,
    pub groups: BTreeMap<String, GroupOut>,
    pub rules: Vec<RuleOut>,
}

/// A YAML double-quoted scalar.
pub fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A glob that matches `s` literally (the policy's host names and processes are globs).
pub fn glob_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| quote(s)).collect();
    format!("[{}]", items.join(", "))
}

impl From<&GroupDef> for GroupOut {
    fn from(g: &GroupDef) -> Self {
        let v = |l: &[serde_saphyr::Spanned<String>]| l.iter().map(|x| x.value.clone()).collect();
        GroupOut {
            hostname: v(&g.hostname),
            label: g.label.clone(),
            cidr: v(&g.cidr),
            process: v(&g.process),
            comment: Some("approved: kept as it was".into()),
        }
    }
}

impl From<&RuleDef> for RuleOut {
    fn from(r: &RuleDef) -> Self {
        use crate::policy::{Action, Rank};
        RuleOut {
            name: r.name.as_ref().map(|n| n.value.clone()),
            consumer: r.consumer.value.clone(),
            provider: r.provider.value.clone(),
            ports: r.ports.iter().map(|p| p.value.clone()).collect(),
            process: r.process.as_ref().map(|p| p.value.clone()),
            action: match r.action.value {
                Action::Allow => "allow",
                Action::Deny => "deny",
            },
            rank: match r.rank {
                Rank::Absolute => "absolute",
                Rank::Default => "default",
            },
            severity: r.severity.as_ref().map(|s| s.value.as_str()),
            comment: Some("approved: kept as it was".into()),
        }
    }
}

/// The document as YAML.
pub fn emit(d: &DocOut) -> String {
    let mut y = String::new();
    for h in &d.header {
        let _ = writeln!(y, "# {h}");
    }
    let _ = writeln!(y, "name: {}", quote(&d.name));
    y.push_str(if d.groups.is_empty() {
        "\ngroups: {}\n"
    } else {
        "\ngroups:\n"
    });
    for (name, g) in &d.groups {
        if let Some(c) = &g.comment {
            let _ = writeln!(y, "  # {c}");
        }
        let _ = writeln!(y, "  {}:", quote(name));
        if !g.hostname.is_empty() {
            let _ = writeln!(y, "    hostname: {}", list(&g.hostname));
        }
        if !g.label.is_empty() {
            let pairs: Vec<String> = g
                .label
                .iter()
                .map(|(k, v)| format!("{}: {}", quote(k), quote(v)))
                .collect();
            let _ = writeln!(y, "    label: {{{}}}", pairs.join(", "));
        }
        if !g.cidr.is_empty() {
            let _ = writeln!(y, "    cidr: {}", list(&g.cidr));
        }
        if !g.process.is_empty() {
            let _ = writeln!(y, "    process: {}", list(&g.process));
        }
    }
    y.push_str(if d.rules.is_empty() {
        "\nrules: []\n"
    } else {
        "\nrules:\n"
    });
    for r in &d.rules {
        if let Some(c) = &r.comment {
            let _ = writeln!(y, "  # {c}");
        }
        match &r.name {
            Some(n) => {
                let _ = writeln!(y, "  - name: {}", quote(n));
                let _ = writeln!(y, "    consumer: {}", quote(&r.consumer));
            }
            None => {
                let _ = writeln!(y, "  - consumer: {}", quote(&r.consumer));
            }
        }
        let _ = writeln!(y, "    provider: {}", quote(&r.provider));
        if !r.ports.is_empty() {
            let _ = writeln!(y, "    ports: {}", list(&r.ports));
        }
        if let Some(p) = &r.process {
            let _ = writeln!(y, "    process: {}", quote(p));
        }
        let _ = writeln!(y, "    action: {}", r.action);
        if r.rank != "default" {
            let _ = writeln!(y, "    rank: {}", r.rank);
        }
        if let Some(s) = r.severity {
            let _ = writeln!(y, "    severity: {s}");
        }
    }
    y.push_str("\ncatch_all:\n  - action: deny\n");
    y
}
