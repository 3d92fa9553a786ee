//! The policy document: YAML as people write it (see `docs/policy.md`). Parsing keeps the
//! location of every value, so an error names the line and the field.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

/// Alert severity, as in Tetration's alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
    ImmediateAction,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
            Severity::ImmediateAction => "IMMEDIATE_ACTION",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
            Severity::ImmediateAction,
        ]
        .into_iter()
        .find(|v| v.as_str().eq_ignore_ascii_case(s))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
}

/// Absolute rules are considered before default ones; the catch-all comes last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rank {
    Absolute,
    #[default]
    Default,
}

/// A named set of endpoints. Every filter kind given must match (AND); within a kind, any
/// value may (OR); `label` needs every pair.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupDef {
    /// Host names, `*` and `?` wildcards allowed.
    #[serde(default)]
    pub hostname: Vec<Spanned<String>>,
    /// Host labels (`cordon hosts label HOST key=value`).
    #[serde(default)]
    pub label: BTreeMap<String, String>,
    /// Addresses: `10.0.0.0/8`, `2001:db8::/32`, or one address.
    #[serde(default)]
    pub cidr: Vec<Spanned<String>>,
    /// Executable paths of the process on the endpoint, wildcards allowed.
    #[serde(default)]
    pub process: Vec<Spanned<String>>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    /// Shown in verdicts and alerts; default `rule N` (its position, from 1).
    pub name: Option<Spanned<String>>,
    /// The group that opens the connection (`any` for everyone).
    pub consumer: Spanned<String>,
    /// The group that accepts it.
    pub provider: Spanned<String>,
    /// `tcp/443`, `udp/53`, `tcp/8000-8100`, `tcp` (every TCP port), `icmp`, `any`.
    /// Empty or absent: any protocol and port.
    #[serde(default)]
    pub ports: Vec<Spanned<String>>,
    /// The consumer's executable (wildcards allowed). Checked where that process is known:
    /// on the consumer's own host.
    pub process: Option<Spanned<String>>,
    pub action: Spanned<Action>,
    #[serde(default)]
    pub rank: Rank,
    /// Severity of the alert a violation raises (deny rules); default MEDIUM.
    pub severity: Option<Spanned<Severity>>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatchAllDef {
    /// The group this catch-all is for (the endpoint that reported the flow is in it);
    /// absent: everything. The first entry that applies decides.
    pub scope: Option<Spanned<String>>,
    pub action: Spanned<Action>,
    pub severity: Option<Spanned<Severity>>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    pub name: Spanned<String>,
    #[serde(default)]
    pub groups: BTreeMap<String, Spanned<GroupDef>>,
    #[serde(default)]
    pub rules: Vec<Spanned<RuleDef>>,
    /// At least one entry, and the last without a scope.
    pub catch_all: Vec<Spanned<CatchAllDef>>,
}

/// An error in a policy file, with where it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {field}{message}")]
pub struct PolicyError {
    pub line: u64,
    pub column: u64,
    /// `field `rules[2].provider`: ` (with the separator), or empty.
    pub field: String,
    pub message: String,
}

impl PolicyError {
    pub fn at<T>(value: &Spanned<T>, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            line: value.referenced.line(),
            column: value.referenced.column(),
            field: format!("field `{}`: ", field.into()),
            message: message.into(),
        }
    }
}

/// A YAML syntax or type error as a [`PolicyError`]: its location, and the plain message
/// without the library's snippet and its own location suffix.
pub fn yaml_error(e: serde_saphyr::Error) -> PolicyError {
    let loc = e.location();
    let text = e.without_snippet().to_string();
    let message = text
        .rfind(" at line ")
        .map_or(text.as_str(), |i| &text[..i])
        .to_string();
    PolicyError {
        line: loc.map_or(0, |l| l.line()),
        column: loc.map_or(0, |l| l.column()),
        field: String::new(),
        message,
    }
}

/// Parses a policy document (syntax and types; `compile` checks the meaning).
pub fn parse(text: &str) -> Result<Document, PolicyError> {
    serde_saphyr::from_str(text).map_err(yaml_error)
}
